"""The interactive shell: grammar (specs, parser), commands, rendering, the REPL."""
