"""The shell's loop: a prompt with history and completion on a terminal, or lines from a pipe.

Piped input gets no prompt and no colours and exactly one result per command
line; blank lines and `#` comments get none. Both end with status 0 at the
end of input or at `exit`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from kopilka.bank import Bank
from kopilka.errors import KopilkaError
from kopilka.settings import hide_secrets
from kopilka.shell.commands import INTERRUPTED_WRITE, READS_ONLY, execute
from kopilka.shell.output import Exit, Output
from kopilka.shell.parser import parse_line, split_line

if TYPE_CHECKING:
    from prompt_toolkit.history import History

    from kopilka.shell.completion import KnownClients

PROMPT = "> "
# Commands after which the list of client names may have grown.
_ADDS_CLIENTS = frozenset({"deposit", "open_account", "add-user"})


def run_line(line: str, bank: Bank, output: Output, clients: KnownClients | None = None) -> bool:
    """Run one line and show its one result; False when the shell should end."""
    try:
        parsed = parse_line(line)
        if parsed is None:
            return True
        reply = execute(parsed, bank)
    except KopilkaError as error:
        # A URL among the line's words, quoted back, shows no password (Output.error
        # knows only the command line's words).
        output.error(hide_secrets(error.message, _words(line)))
        return True
    output.show(reply)
    if clients is not None and parsed.spec.name in _ADDS_CLIENTS:
        clients.invalidate()
    return not isinstance(reply, Exit)


def run_piped(bank: Bank, lines: Iterable[str], output: Output) -> int:
    for number, line in enumerate(lines):
        if number == 0:
            # A script saved by some Windows editors starts with a byte order mark.
            line = line.removeprefix("\ufeff")
        try:
            if not run_line(line.rstrip("\r\n"), bank, output):
                break
        except KeyboardInterrupt:
            if _may_write(line):  # a script's log says so, as a one-shot command does
                output.error(INTERRUPTED_WRITE)
            raise
    return 0


def _words(line: str) -> list[str]:
    """The line's words as the shell reads them, or as spaces split it when it cannot."""
    try:
        return split_line(line)
    except KopilkaError:  # an unclosed quote, a line too long
        return line.split()


def _may_write(line: str) -> bool:
    try:
        parsed = parse_line(line)
    except KopilkaError:
        return False
    return parsed is not None and parsed.spec.name not in READS_ONLY


def run_terminal(bank: Bank, output: Output, history_path: Path, greeting: str) -> int:
    # prompt_toolkit is loaded only for a person at a terminal: pipes start faster without it.
    from prompt_toolkit import PromptSession

    from kopilka.shell.completion import KnownClients, ShellCompleter, completion_keys

    clients = KnownClients(lambda: [account.client for account in bank.accounts()])
    completer = ShellCompleter(clients)
    session: PromptSession[str] = PromptSession(
        history=_history(history_path),
        completer=completer,
        complete_while_typing=False,
        key_bindings=completion_keys(completer),
    )
    output.note(greeting)
    while True:
        try:
            line = session.prompt(PROMPT)
        except KeyboardInterrupt:
            continue  # Ctrl-C drops the line being typed, as in other shells
        except EOFError:
            return 0  # Ctrl-D
        try:
            if not run_line(line, bank, output, clients):
                return 0
        except KeyboardInterrupt:
            # A write may already be on its way: say so rather than guess.
            if _may_write(line):
                output.error(INTERRUPTED_WRITE)


def _history(path: Path) -> History:
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()  # a read-only home still gets a working shell
    return FileHistory(str(path))
