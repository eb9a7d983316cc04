"""The shell's loop: a prompt with history and completion on a terminal, or lines from a pipe.

Piped input gets no prompt and no colours and exactly one result per command
line; blank lines and `#` comments get none. Both end with status 0 at the
end of input or at `exit`. SIGHUP (the terminal closed, an SSH link dropped) and
SIGTERM end either as the end of input does, with status 128 + the signal.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from kopilka.bank import Bank
from kopilka.errors import Forbidden, KopilkaError, mark_settled
from kopilka.held_signals import held
from kopilka.redaction import hide_secrets
from kopilka.shell.commands import (
    APPLIED_THEN_INTERRUPTED,
    READS_ONLY,
    calls_handed,
    execute,
    interrupted_write,
    mark_answered,
    settle_write,
)
from kopilka.shell.output import AnswerNotWritten, Exit, Output
from kopilka.shell.parser import LINE_LENGTH_MAX, line_too_long, parse_line, split_line

if TYPE_CHECKING:
    from prompt_toolkit.application import Application

    from kopilka.shell.completion import KnownClients

PROMPT = "> "
# Commands after which the list of client names may have grown.
_ADDS_CLIENTS = frozenset({"deposit", "open_account", "add-user"})


# Signals that end a session as the end of its input does. Left to their default, they
# killed the process where it stood, and a network sandbox was not dropped: it counted
# against its token's sandboxes until the server's idle timeout dropped it.
ENDING_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGHUP", "SIGTERM") if hasattr(signal, name)
)


class SessionEnded(SystemExit):
    """A signal in ENDING_SIGNALS arrived; its code is the status a shell reports for a
    command a signal ended. A SystemExit: no handler of a command's errors takes it for
    one and carries on."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


class SignalEnding:
    """While entered, SIGHUP and SIGTERM end the session, which unwinds and closes its
    bank. Reading a piped line or running a command, SessionEnded is raised where the
    shell stands. At the prompt it is not: raised inside prompt_toolkit's event loop, it
    could leave the terminal without echo, or, in a callback, go to prompt_toolkit's
    handler, which prints it and waits for Enter. There the prompt is ended as Ctrl-D
    ends it, in the loop's own turn, and `check` raises it once the prompt has returned.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.prompt: Application[str] | None = None  # the terminal's, once it has one
        self.prompting = False  # inside the prompt's call, its loop running or not yet
        self._before: dict[int, Any] = {}

    def __enter__(self) -> SignalEnding:
        self._before = {ending: signal.signal(ending, self._arrived) for ending in ENDING_SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for ending, handler in self._before.items():
            # Only its own handler: once a signal has come they are ignored, for the rest
            # of the program's end (put back, the default killed it as it shut down), and
            # the handlers of a command's decided end (kopilka.decided) stay.
            if signal.getsignal(ending) == self._arrived:
                signal.signal(ending, handler)

    def check(self) -> None:
        if self.signum is not None:
            raise SessionEnded(self.signum)

    def _arrived(self, signum: int, frame: FrameType | None) -> None:
        # Once is enough: a closing terminal may send SIGHUP again, and the bank's
        # close (a sandbox dropped on the server) must not be cut short by it.
        for ending in ENDING_SIGNALS:
            signal.signal(ending, signal.SIG_IGN)
        self.signum = signum
        if not self.prompting:  # the main thread's own code: it unwinds from here
            raise SessionEnded(signum)
        loop = self.prompt.loop if self.prompt is not None else None
        # No loop yet (or no more): raised now, it would break the one being made, in
        # a traceback. `prompt_started` ends the prompt once it runs, `check` after it.
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: `check` will say
                loop.call_soon_threadsafe(self._end_prompt)

    def prompt_started(self) -> None:
        """Called by the prompt once its loop runs: a signal that came before ends it."""
        if self.signum is not None:
            self._end_prompt()

    def _end_prompt(self) -> None:
        prompt = self.prompt
        if prompt is not None and prompt.future is not None and not prompt.future.done():
            prompt.exit(exception=EOFError())  # else a line was read: `check` stops it


def run_line(line: str, bank: Bank, output: Output, clients: KnownClients | None = None) -> bool:
    """Run one line and show its one result; False when the shell should end. A Ctrl-C
    or a signal that stops it is told what became of a write the line made, for the
    caller to say."""
    since = calls_handed(bank)
    answered = False
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
    except (KeyboardInterrupt, SystemExit) as interruption:  # SessionEnded too
        settle_write(interruption, bank, since)
        raise
    try:  # from here on, a write the line made is done: a signal is told so, wherever
        if clients is not None and parsed.spec.name in _ADDS_CLIENTS:
            clients.invalidate()
        goes_on = not isinstance(reply, Exit)  # before the answer: nothing of it left after
        # A write's answer (one line) is written whole, a signal held until it is; a
        # read's (a long statement) may be stopped as it is written.
        writes = parsed.spec.name not in READS_ONLY
        with held() if writes else contextlib.nullcontext():
            output.show(reply)
            answered = True
    except (KeyboardInterrupt, SystemExit) as interruption:
        if answered:
            mark_answered(interruption)
        else:
            mark_settled(interruption, True)  # it ran: a write was applied
        raise
    return goes_on


# UTF-16's byte order marks, as bytes that are not UTF-8 are read (surrogateescape),
# or as an 8-bit encoding reads them (a Windows console's cp1252, Latin-1).
_UTF16_MARKS = ("\udcff\udcfe", "\udcfe\udcff", "\xff\xfe", "\xfe\xff")


def run_piped(bank: Bank, lines: Iterable[str], output: Output) -> int:
    """Run each line in turn. `lines` a terminal (typed, with no line editor): Ctrl-C
    while a line is typed drops it, and while it runs stops it, as at the prompt; from a
    pipe or a file it ends the run, a script stopped where it stood."""
    typed = _is_terminal(lines)
    if typed:
        lines = _skipping_interrupted(lines)
    elif callable(readline := getattr(lines, "readline", None)):
        lines = _bounded_lines(readline)
    for number, line in enumerate(lines):
        # Refused here, whatever was kept of it: its ends stripped ("\r\r" past the
        # bound), that part could fit the bound and run as if it were the line; all
        # blanks, it read as a blank line.
        cut_short = isinstance(line, _CutShort)
        # A script saved by some Windows editors starts with a byte order mark, and
        # scripts joined with `cat` have one where each began.
        line = line.removeprefix("\ufeff")
        if number == 0 and line.startswith(_UTF16_MARKS):  # each line would be garbled
            output.error(
                "the input is UTF-16 text; give the shell UTF-8"
                " (PowerShell: Out-File -Encoding utf8)"
            )
            return 1
        if cut_short and not line.lstrip().startswith("#"):  # a comment is of any length
            output.error(line_too_long().message)
            continue
        if typed and not line.endswith("\n"):
            # Ctrl-D twice on a line typed: the terminal hands over what was typed of it,
            # unended. That was a line given up and a session left, not a line to run (a
            # half-typed deposit was applied); the prompt runs none either.
            if line.strip():
                output.error("the line not ended with Enter was not run", after_unended_text=True)
            break
        try:
            if not run_line(line.rstrip("\r\n"), bank, output):
                break
        except (KeyboardInterrupt, SessionEnded) as interruption:
            if typed and isinstance(interruption, KeyboardInterrupt):
                # The session goes on, as at the prompt: ending it lost a sandbox.
                _say_interrupted(line, interruption, output)
                continue
            if _may_write(line):  # a script's log says so, as a one-shot command does
                # Its answer begun, it was applied: not "may have been", with no key.
                said = APPLIED_THEN_INTERRUPTED if output.cut_short else None
                said = said or interrupted_write(interruption)
                # Only where it goes at once: the exit status tells the rest.
                if said is not None and output.error_goes_at_once():
                    with contextlib.suppress(AnswerNotWritten):  # the interruption tells
                        output.error(said)
            raise
    return 0


def _say_interrupted(
    line: str, interruption: KeyboardInterrupt, output: Output, pasted_after: int = 0
) -> None:
    """What a person at a terminal is told of a line Ctrl-C stopped while it ran, and of
    the lines pasted after it, which are not run."""
    not_run = ""
    if pasted_after:
        lines = "line" if pasted_after == 1 else f"{pasted_after:,} lines"
        not_run = f"; the {lines} pasted after it not run"
    said: str | None = None
    if output.cut_short:  # its answer had begun: the command ran
        output.said_cut_short()
    elif _may_write(line):  # on its way, it may be: what became of it
        said = interrupted_write(interruption)  # None: its answer, written whole, said it
    else:  # a read: nothing to tell of it, but the prompt is not left beside the "^C"
        said = "interrupted"
    if said is not None or not_run:
        output.error(f"{said or 'interrupted'}{not_run}")


class _CutShort(str):
    """The first characters of a line longer than the parser takes, the rest dropped."""


def _bounded_lines(readline: Callable[[int], str]) -> Iterator[str]:
    """The lines read, none held longer than the parser takes and two more characters:
    of a longer one (a file of no lines piped in by mistake, a stuck producer) the rest
    is read and dropped, and the parser refuses what is kept by its length. Read whole,
    such a line held twice its size in memory before it was refused."""
    read_max = LINE_LENGTH_MAX + 2  # room for "\r\n": a line of exactly the most
    while line := readline(read_max):
        if len(line) == read_max and not line.endswith("\n"):
            longer = False  # than its ends ("\r", "\n"), which would be stripped
            # Its first character shown, if any: a blank line or a comment, however
            # long and however far indented, is skipped, not refused.
            shown = line.lstrip()[:1]
            while rest := readline(64 * 1024):
                longer = longer or bool(rest.rstrip("\r\n"))
                shown = shown or rest.lstrip()[:1]
                if rest.endswith("\n"):
                    break
            if longer and shown not in ("", "#"):
                line = _CutShort(line)
        yield line


def _client_names(bank: Bank, wait_seconds: float, starting_with: str = "") -> list[str]:
    """The names Tab offers (those starting with `starting_with`): every client's, or a
    client token's own, as that token may list no accounts."""
    try:
        accounts = bank.accounts(wait_seconds=wait_seconds, starting_with=starting_with)
        return [account.client for account in accounts]
    except Forbidden:
        whoami = getattr(bank, "whoami", None)  # over HTTP: the server knows the token
        if whoami is None:
            raise
        client = whoami(wait_seconds=wait_seconds).get("client")  # Tab waits no longer
        return [client] if isinstance(client, str) and client.startswith(starting_with) else []


def _is_terminal(lines: Iterable[str]) -> bool:
    isatty = getattr(lines, "isatty", None)
    return callable(isatty) and bool(isatty())


def _skipping_interrupted(lines: Iterable[str]) -> Iterator[str]:
    """The lines typed, a Ctrl-C while one is read dropping it (the terminal has thrown
    away what was typed of it), not the session: that lost a sandbox and all in it."""
    typed = iter(lines)
    while True:
        try:
            line = next(typed)
        except StopIteration:
            return
        except KeyboardInterrupt:
            continue
        yield line


def _split_pasted(text: str) -> list[str]:
    """Lines pasted at once, split where piped input is: at a newline only, a carriage
    return before it dropped. str.splitlines() split at U+2028, a form feed and the like
    too, which a pipe reads as part of the line: the terminal ran another line."""
    lines = text.split("\n")
    if len(lines) > 1 and not lines[-1]:
        lines.pop()  # what ends the last line starts none
    return [line.rstrip("\r") for line in lines]


def _words(line: str) -> list[str]:
    """The line's words as the shell reads them, or as spaces split it when it cannot."""
    try:
        return split_line(line)
    except KopilkaError:  # an unclosed quote, a line too long
        return line.split()


def _runs(line: str) -> bool:
    """Whether a line asks anything: not blank, nor a comment."""
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _may_write(line: str) -> bool:
    try:
        parsed = parse_line(line)
    except KopilkaError:
        return False
    return parsed is not None and parsed.spec.name not in READS_ONLY


def run_terminal(
    bank: Bank, output: Output, history_path: Path, greeting: str, ending: SignalEnding
) -> int:
    # prompt_toolkit is loaded only for a person at a terminal: pipes start faster without it.
    from prompt_toolkit import PromptSession
    from prompt_toolkit.input.typeahead import clear_typeahead

    from kopilka.shell.completion import (
        NAMES_WAIT_SECONDS,
        KnownClients,
        ShellCompleter,
        completion_keys,
    )
    from kopilka.shell.history import history_at

    clients = KnownClients(
        lambda: _client_names(bank, NAMES_WAIT_SECONDS),
        lambda typed: _client_names(bank, NAMES_WAIT_SECONDS, typed),
    )
    completer = ShellCompleter(clients)
    session: PromptSession[str] = PromptSession(
        history=history_at(history_path),
        completer=completer,
        complete_while_typing=False,
        key_bindings=completion_keys(completer),
    )
    ending.prompt = session.app
    output.note(greeting)
    while True:
        ending.prompting = True
        try:
            line = session.prompt(PROMPT, pre_run=ending.prompt_started)
        except KeyboardInterrupt:
            continue  # Ctrl-C drops the line being typed, as in other shells
        except EOFError:
            ending.check()  # the prompt a signal ended
            return 0  # Ctrl-D
        except OSError:
            ending.check()  # the terminal SIGHUP told of is gone: the last redraw failed
            raise
        finally:
            ending.prompting = False
        # Lines pasted at once come as one, each run in turn as if typed.
        pasted = _split_pasted(line)
        for place, typed in enumerate(pasted, start=1):
            ending.check()  # a line read as the signal came is not run
            try:
                if not run_line(typed, bank, output, clients):
                    return 0
            except KeyboardInterrupt as interruption:
                left = sum(1 for later in pasted[place:] if _runs(later))
                _say_interrupted(typed, interruption, output, left)
                # Nor the lines that came with it, typed or pasted unbracketed: the
                # prompt read them ahead, and its next one would run them (the kernel
                # drops only what it still held at the Ctrl-C).
                clear_typeahead(session.input)
                break  # and the lines pasted after it are not run
            except SessionEnded as ending_signal:
                said = interrupted_write(ending_signal) if _may_write(typed) else None
                if said is not None:
                    # Where the terminal is still there to tell (SIGTERM); a closed one fails.
                    with contextlib.suppress(KopilkaError, OSError):
                        output.error(said)
                raise
