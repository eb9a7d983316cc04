"""What the shell writes to a terminal: each answer and error one line as written."""

from __future__ import annotations

import io

from kopilka.shell.output import RICH_TABLE_ROWS_MAX, Message, Output
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
