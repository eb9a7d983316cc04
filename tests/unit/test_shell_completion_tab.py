"""Tab in the shell's own prompt (its completer and key bindings), fed keys through a
pipe: the line Enter returns is the line the completion made."""

from __future__ import annotations

import pytest
from prompt_toolkit import PromptSession
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from kopilka.shell.completion import KnownClients, ShellCompleter, completion_keys
from kopilka.shell.parser import parse_line

NAMES = ["John Jones", "Jane Doe", "Plain", "-dash"]


def _line_after(keys: str) -> str:
    """The line the shell's prompt returns once `keys` are typed."""
    completer = ShellCompleter(KnownClients(lambda: list(NAMES)))
    with create_pipe_input() as typed:
        session: PromptSession[str] = PromptSession(
            input=typed,
            output=DummyOutput(),
            completer=completer,
            complete_while_typing=False,
            key_bindings=completion_keys(completer),
        )
        typed.send_text(keys)
        return session.prompt("> ")


@pytest.mark.parametrize("tabs", [2, 4])  # an odd count came back to it
@pytest.mark.parametrize(
    ("typed", "completed"),
    [
        ("balance --client=Jo", 'balance --client="John Jones"'),
        ("balance --client Jo", 'balance --client "John Jones"'),
        ("transfer --to=Ja", 'transfer --to="Jane Doe"'),
    ],
)
def test_more_tabs_leave_a_completed_name_as_it_is(typed: str, completed: str, tabs: int) -> None:
    assert _line_after(typed + "\t" * tabs + "\r") == completed
    # As a name with nothing to quote always did.
    assert _line_after("balance --client=Pl" + "\t" * tabs + "\r") == "balance --client=Plain"


@pytest.mark.parametrize(
    ("typed", "completed"),
    [
        ("balance --client -d", "balance --client=-dash"),
        ("transfer -f Plain -t -d", "transfer -f Plain -t=-dash --amount=1"),
        ("transfer -f Plain -t '-d", "transfer -f Plain -t=-dash --amount=1"),
    ],
)
def test_a_name_starting_with_a_dash_is_joined_to_its_option(typed: str, completed: str) -> None:
    rest = " --amount=1" if typed.startswith("transfer") else ""
    line = _line_after(typed + "\t" + rest + "\r")
    assert line == completed
    parsed = parse_line(line)  # and read back as the name, not refused as an option
    assert parsed is not None and "-dash" in parsed.values.values()
    # Any other name stays apart from its option, as typed.
    assert _line_after("balance --client Pl\t\r") == "balance --client Plain"
