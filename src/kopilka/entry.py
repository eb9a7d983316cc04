"""The `kopilka` command's first step. Ctrl-C while the program is still loading, or
setting itself up before a command runs, ends it as Ctrl-C does once it runs (status
130, nothing said), not in a traceback of wherever it came.

It imports nothing as it loads, not even `from __future__` (an import all the same):
a Ctrl-C there was a traceback of this very file."""


def main() -> None:
    try:
        from kopilka.interrupts import kept_while_loading

        with kept_while_loading():
            from kopilka.cli import main as run
            from kopilka.decided import answered
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    try:
        status = run()
    except KeyboardInterrupt:  # outside what the command itself answers (its streams set up)
        status = 130
    # Decided: a signal as the interpreter shuts down (joining threads, running exit
    # handlers) ends it so, at once, not in a traceback of where it landed.
    answered(status)
    raise SystemExit(status)
