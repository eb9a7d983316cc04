"""What a command answers, and writing it for a terminal or for a pipe.

On a terminal, rich draws tables and colours messages. Anywhere else the
output is plain text, one result per command, so it can be scripted and
compared exactly.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from kopilka.errors import KopilkaError
from kopilka.redaction import hide_secrets
from kopilka.shell.render import Table, plain_table, rich_table, rich_table_fits

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True, slots=True)
class Message:
    """A one-line answer, such as `Deposit operation was successful!`."""

    text: str


@dataclass(frozen=True, slots=True)
class Block:
    """Text shown exactly as it is (csv, json, help), never wrapped or coloured."""

    text: str


@dataclass(frozen=True, slots=True)
class Exit:
    """Leave the shell."""


Reply = Message | Block | Table | Exit

# The exit status when a command ran but its answer could not be written: not 1, which
# says nothing was done, as a script would then repeat a deposit that was made.
ANSWER_NOT_WRITTEN_EXIT = 3
# The exit status of a write whose outcome is not known (the answer lost on its way):
# not 1 either, and not 3, as it may or may not have been applied.
OUTCOME_UNKNOWN_EXIT = 4


def exit_status(error: KopilkaError) -> int:
    """A command's exit status for the error that stopped it: 1, refused and nothing
    changed, unless a write may have been applied."""
    return OUTCOME_UNKNOWN_EXIT if error.code == "outcome_unknown" else 1


# Encoding error handlers that fail on a character the encoding lacks (surrogateescape
# only writes back the bytes input could not read): an answer is written escaped instead.
FAILING_ERROR_HANDLERS = (None, "strict", "surrogateescape")
# What an unwritten answer adds for a command that may have changed something.
CHECK_BEFORE_REPEATING = "; check before repeating it"


class AnswerNotWritten(KopilkaError):
    """Standard output failed (a full disk, a closed descriptor) after the command ran."""


# rich lays a table out whole before it draws a line of it, about half a millisecond a
# row: a statement of 40,000 operations showed nothing for 18 s. Past this many rows a
# table takes the plain form, which is drawn some sixty times faster.
RICH_TABLE_ROWS_MAX = 1_000


class Output:
    def __init__(self, stream: TextIO, errors: TextIO, *, terminal: bool) -> None:
        self._stream = stream
        self._errors = errors
        self.terminal = terminal
        self._errors_to_a_terminal = errors.isatty()
        self._console: Console | None = None
        self._error_console: Console | None = None
        if terminal:
            self._make_consoles()
        # An answer begun and not written whole (Ctrl-C while a long one is drawn).
        self.cut_short = False

    def _make_consoles(self) -> None:
        # rich is loaded only for a terminal: piped and scripted runs start faster.
        from rich.console import Console

        # No emoji codes: a client named ":moneybag:" is shown as named. An error goes to
        # a terminal in colour, elsewhere (2>file) as the plain line it is.
        self._console = Console(file=self._stream, highlight=False, emoji=False)
        if self._errors_to_a_terminal:
            self._error_console = Console(file=self._errors, highlight=False, emoji=False)

    @classmethod
    def for_streams(cls, stream: TextIO, errors: TextIO | None = None) -> Output:
        """Rich output only when the answers go to a terminal."""
        return cls(stream, errors or stream, terminal=stream.isatty())

    def show(self, reply: Reply) -> None:
        self.cut_short = True
        try:
            self._show(reply)
        except KeyboardInterrupt:
            raise  # cut short: said_cut_short tells
        except BaseException:
            self.cut_short = False  # failed whole, and said so
            raise
        self.cut_short = False

    def said_cut_short(self) -> None:
        """The answer cut short ends its line, and says so: the prompt had come up in the
        middle of a statement's row, the rows above read as all there were."""
        self.cut_short = False
        if self._console is not None:
            # rich keeps what it had yet to write when the write failed, and wrote it all
            # again ahead of the next answer: a new console holds nothing.
            self._make_consoles()
        with contextlib.suppress(OSError):
            self._write(self._stream, "")
        self.error("interrupted; the answer was cut short")

    def _show(self, reply: Reply) -> None:
        if isinstance(reply, Exit):
            return
        console = self._console
        if console is None:
            text = plain_table(reply) if isinstance(reply, Table) else reply.text
            _written(lambda: self._write(self._stream, text))
        elif isinstance(reply, Table):
            if len(reply.rows) <= RICH_TABLE_ROWS_MAX and rich_table_fits(reply, console.width):
                _written(lambda: console.print(rich_table(reply)))
            else:  # too narrow to show whole, or too long to draw soon: the plain form
                _written(lambda: self._write(self._stream, plain_table(reply)))
        elif isinstance(reply, Message):
            # soft_wrap: one line stays one line, however narrow the terminal.
            _written(lambda: console.print(reply.text, style="green", markup=False, soft_wrap=True))
        else:
            _written(lambda: self._write(self._stream, reply.text))

    def error(self, message: str, *, after_unended_text: bool = False) -> None:
        """An error line. Should it not be written (2>/dev/full), the exit status still
        tells: not 3 (AnswerNotWritten), which says that a refused command ran. Unless it
        goes among the answers (a piped shell's), as one of them: a script's refusals
        lost, it ended 0 with an empty log. `after_unended_text`: the terminal shows text
        typed with no line break after it, which the error would go on if it goes there."""
        line_break = "\n" if after_unended_text and self._errors_to_a_terminal else ""
        line = f"{line_break}Error: {hide_secrets(message)}"
        console = self._error_console
        try:
            if console is None:
                self._write(self._errors, line)
            else:
                console.print(line, style="bold red", markup=False, soft_wrap=True)
        except BrokenPipeError:
            if self._errors is self._stream and not self.terminal:
                raise  # the reader left (`| head`): the shell stops quietly, as at an answer
        except OSError as error:
            if self._errors is self._stream and not self.terminal:
                raise AnswerNotWritten(
                    "answer_not_written",
                    f"the shell's output could not be written ({error.strerror}): it stopped"
                    " at a line it refused; check what the lines before it did before"
                    " running them again",
                ) from error

    def note(self, text: str) -> None:
        """Something for a person at a terminal only (a greeting); pipes never see it."""
        if self._console is not None:
            self._console.print(text, style="dim", markup=False, soft_wrap=True)

    def error_goes_at_once(self) -> bool:
        """Whether an error line would be written without waiting: a reader that stopped
        leaves a pipe full, and a line written to it holds the process for ever, each
        later signal waiting in it too."""
        try:
            descriptor = self._errors.fileno()
            return bool(select.select([], [descriptor], [], 0)[1])
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return True  # not a file (a test's): nothing to wait for

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        """One answer, written whole or failing. Flushed per answer, so a program driving
        the shell over a pipe sees each one as it comes."""
        try:
            descriptor = stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):  # not a file (a test's)
            stream.write(text + "\n")
            stream.flush()
            return
        # To the descriptor, not through the stream: when a pipe's reader leaves in the
        # middle of a long answer, the stream's one short write is taken for all of it,
        # the rest dropped without an error. Here the next write meets the closed pipe.
        stream.flush()
        # A character the stream's encoding lacks is shown escaped, as Python's stderr
        # shows it, rather than fail the answer of a command that has run.
        errors = stream.errors
        if errors in FAILING_ERROR_HANDLERS:
            errors = "backslashreplace"
        data = memoryview((text + "\n").encode(stream.encoding or "utf-8", errors))
        while data:
            try:
                data = data[os.write(descriptor, data) :]
            except BlockingIOError:  # left non-blocking by what runs kopilka (Node.js)
                select.select([], [descriptor], [])  # a slow reader: wait, not fail


def answer(text: str) -> None:
    """A command's answer on standard output, written at once: should that fail (a full
    disk), the command says it ran (AnswerNotWritten), never that nothing was done."""
    # Help, a version, a schema's or a token's state: nothing to check before asking again.
    _written(lambda: Output._write(sys.stdout, text), then="")


def _written(write: Callable[[], None], then: str = CHECK_BEFORE_REPEATING) -> None:
    try:
        write()
    except BrokenPipeError:
        raise  # the reader left (`| head`): the command line stops quietly
    except OSError as error:
        raise AnswerNotWritten(
            "answer_not_written",
            f"the command ran, but its answer could not be written ({error.strerror}){then}",
        ) from error
