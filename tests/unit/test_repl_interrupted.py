"""What the shell at a terminal says of a line Ctrl-C stopped."""

from __future__ import annotations

from io import StringIO

from kopilka.shell.commands import mark_answered
from kopilka.shell.output import Output
from kopilka.shell.repl import _say_interrupted

DEPOSIT = "deposit --client=A --amount=1 --description=x"


def test_a_write_whose_answer_was_written_whole_is_not_said_interrupted() -> None:
    """Its answer said it all: "Error: interrupted" after "Deposit operation was
    successful!" read as a failure, and a teller would deposit again."""
    errors = StringIO()
    output = Output(StringIO(), errors, terminal=False)
    answered = KeyboardInterrupt()
    mark_answered(answered)
    _say_interrupted(DEPOSIT, answered, output)
    assert errors.getvalue() == ""
    _say_interrupted(DEPOSIT, answered, output, pasted_after=2)
    assert errors.getvalue() == "Error: interrupted; the 2 lines pasted after it not run\n"


def test_a_read_stopped_is_said_interrupted_on_a_line_of_its_own() -> None:
    errors = StringIO()
    _say_interrupted(
        "balance --client=A", KeyboardInterrupt(), Output(StringIO(), errors, terminal=False)
    )
    assert errors.getvalue() == "Error: interrupted\n"
