"""What the shell writes to a terminal: each answer and error one line as written."""

from __future__ import annotations

import errno
import io

import pytest

from kopilka.shell.output import RICH_TABLE_ROWS_MAX, AnswerNotWritten, Message, Output
from kopilka.shell.render import Table


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_an_error_to_a_file_beside_a_terminal_is_one_plain_line() -> None:
    errors = io.StringIO()  # 2>errors.txt, while the answers go to the terminal
    output = Output(_Terminal(), errors, terminal=True)
    name = "Maximilian Alexander Johnson-Smith the Third of the House of Windsor-Mountbatten"
    output.error(f"no account for client {name!r}")
    assert errors.getvalue() == f"Error: no account for client {name!r}\n"


def test_a_terminal_shows_names_as_written_not_as_emoji_nor_wrapped() -> None:
    terminal = _Terminal()
    output = Output(terminal, terminal, terminal=True)
    text = "Balance of :moneybag: " + "x" * 120 + ": $10.00"
    output.show(Message(text))
    output.error("no account for client ':smile:'")
    shown = terminal.getvalue()
    assert ":moneybag:" in shown and ":smile:" in shown
    assert "\U0001f4b0" not in shown
    assert text in shown  # one line, however wide


def test_a_table_too_long_to_draw_soon_takes_the_plain_form() -> None:
    def shown(rows: int) -> str:
        terminal = _Terminal()
        table = Table(
            ("Client", "Balance"), [(f"c{i}", "$1.00") for i in range(rows)], frozenset({1})
        )
        Output(terminal, terminal, terminal=True).show(table)
        return terminal.getvalue()

    assert "\u256d" in shown(RICH_TABLE_ROWS_MAX)  # rich's rounded corner
    long = shown(RICH_TABLE_ROWS_MAX + 1)
    assert "\u256d" not in long and long.count("\n") > RICH_TABLE_ROWS_MAX


class _TerminalInterrupted(_Terminal):
    """Ctrl-C after `written` characters of an answer reached the terminal."""

    def __init__(self, written: int) -> None:
        super().__init__()
        self.written = written

    def write(self, text: str) -> int:
        if self.written is not None and len(self.getvalue()) + len(text) > self.written:
            super().write(text[: self.written - len(self.getvalue())])
            self.written = None  # once
            raise KeyboardInterrupt
        return super().write(text)


@pytest.mark.parametrize("rows", [50, RICH_TABLE_ROWS_MAX + 1], ids=["rich", "plain"])
def test_an_answer_cut_short_ends_its_line_and_says_so(rows: int) -> None:
    """The prompt came up in the middle of a statement's row, and the rows above read
    as all there were. Then rich wrote the rest of the table ahead of the next answer."""
    terminal = _TerminalInterrupted(written=200)
    errors = io.StringIO()
    output = Output(terminal, errors, terminal=True)
    table = Table(("Client", "Balance"), [(f"c{i}", "$1.00") for i in range(rows)], frozenset({1}))
    try:
        output.show(table)
    except KeyboardInterrupt:
        assert output.cut_short
        output.said_cut_short()
    else:
        raise AssertionError("the answer was not interrupted")
    assert len(terminal.getvalue()) == 201 and terminal.getvalue().endswith("\n")
    assert errors.getvalue() == "Error: interrupted; the answer was cut short\n"
    output.show(Message("Balance of c1: $1.00"))
    assert not output.cut_short  # a whole answer
    after = terminal.getvalue()[201:]  # the answer alone, in its colour: no rows before it
    assert "Balance of c1: $1.00" in after and "$1.00" not in after.split("Balance")[0]


def test_an_answer_that_failed_whole_is_not_said_cut_short() -> None:
    """It said so itself (the reader left, the disk is full); a later Ctrl-C of a read
    would have said an answer was cut short."""

    class _Full(_Terminal):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    output = Output(_Full(), io.StringIO(), terminal=True)
    with pytest.raises(AnswerNotWritten):
        output.show(Message("Balance of c1: $1.00"))
    assert not output.cut_short
