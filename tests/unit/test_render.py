"""How statements and accounts look: the exact `|` table, csv, json and help."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from kopilka.domain.model import Account, OperationKind
from kopilka.domain.statement import Statement, StatementLine, build_statement
from kopilka.errors import Unavailable
from kopilka.shell.render import (
    accounts_table,
    help_command,
    help_overview,
    local_time,
    plain_table,
    statement_csv,
    statement_json,
    statement_table,
)
from kopilka.shell.specs import COMMANDS

SAMPLE_TABLE = """\
| Date                | Description      | Withdrawals | Deposits | Balance |
|---------------------|------------------|-------------|----------|---------|
|                     | Previous balance |             |          |   $0.00 |
| 2026-11-22 10:00:01 | ATM Deposit      |             |  $100.00 | $100.00 |
| 2026-11-22 10:00:09 | ATM Withdrawal   |     $100.00 |          |   $0.00 |
|                     | Totals           |     $100.00 |  $100.00 |   $0.00 |"""


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def line(
    entry_id: int, seconds: int, description: str, amount_cents: int, balance: int
) -> StatementLine:
    moment = datetime(2026, 11, 22, 10, 0, seconds, 123_456, tzinfo=UTC)
    kind: OperationKind = "deposit" if amount_cents > 0 else "withdrawal"
    return StatementLine(entry_id, moment, kind, description, amount_cents, balance, None, entry_id)


def sample() -> Statement:
    return build_statement(
        "John Jones",
        datetime(2021, 1, 1, tzinfo=UTC),
        datetime(2031, 1, 1, tzinfo=UTC),
        0,
        [line(1, 1, "ATM Deposit", 10_000, 10_000), line(2, 9, "ATM Withdrawal", -10_000, 0)],
    )


def test_the_sample_statement_table_exactly() -> None:
    assert plain_table(statement_table(sample())) == SAMPLE_TABLE


def test_dates_are_shown_in_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "EET-2")
    time.tzset()
    assert "| 2026-11-22 12:00:01 | ATM Deposit" in plain_table(statement_table(sample()))


@pytest.mark.parametrize(
    ("zone", "day", "moments", "shown"),
    [
        (
            "America/New_York",
            "2026-11-01",
            ["04:59:59", "05:00:00", "05:30:00", "06:00:00", "06:30:00", "07:00:00"],
            [
                "2026-11-01 00:59:59",
                "2026-11-01 01:00:00 EDT",
                "2026-11-01 01:30:00 EDT",
                "2026-11-01 01:00:00 EST",
                "2026-11-01 01:30:00 EST",
                "2026-11-01 02:00:00",
            ],
        ),
        # Half an hour shown twice, at Lord Howe Island (UTC+11 to +10:30).
        (
            "Australia/Lord_Howe",
            "2026-04-04",
            ["14:29:59", "14:30:00", "15:00:00", "15:30:00"],
            [
                "2026-04-05 01:29:59",
                "2026-04-05 01:30:00 +11",
                "2026-04-05 01:30:00 +1030",
                "2026-04-05 02:00:00",
            ],
        ),
        # Moscow's standard time moved back an hour: MSK before and after.
        (
            "Europe/Moscow",
            "2014-10-25",
            ["21:30:00", "22:30:00"],
            ["2014-10-26 01:30:00 +0400", "2014-10-26 01:30:00 +0300"],
        ),
    ],
)
def test_times_in_an_hour_shown_twice_say_which_showing(
    monkeypatch: pytest.MonkeyPatch, zone: str, day: str, moments: list[str], shown: list[str]
) -> None:
    """Both runs of the hour read alike, time seeming to go back between them."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    assert [
        local_time(datetime.fromisoformat(f"{day}T{moment}+00:00")) for moment in moments
    ] == shown


def test_an_empty_period_still_has_previous_balance_and_totals() -> None:
    statement = build_statement("A", None, datetime(2031, 1, 1, tzinfo=UTC), 123_456, [])
    assert plain_table(statement_table(statement)).splitlines()[2:] == [
        "|      | Previous balance |             |          | $1,234.56 |",
        "|      | Totals           |       $0.00 |    $0.00 | $1,234.56 |",
    ]


def test_transfers_name_the_other_side_and_columns_grow() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    transfer = StatementLine(
        7, moment, "transfer", "rent", -123_456_789, -23_456_789, "Jane Doe", 3
    )
    statement = build_statement("John", None, moment, 100_000_000, [transfer])
    rows = plain_table(statement_table(statement)).splitlines()
    assert rows[3] == (
        "| 2026-01-01 00:00:00 | Transfer to Jane Doe: rent | $1,234,567.89 |          "
        "|  -$234,567.89 |"
    )
    assert len({len(row) for row in rows}) == 1


def test_names_in_wide_and_combining_characters_keep_their_columns() -> None:
    """Columns line up on a terminal: a CJK character is two columns wide, an emoji
    too, a combining accent none."""
    from rich.cells import cell_len

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    accounts = [
        Account("main", "Jane Doe", 50_000, 0, None, moment),
        Account("main", "王小明", 0, 0, 100_000, moment),
        Account("main", "Zoe\u0301 🐷", 1, 0, None, moment),
    ]
    rows = plain_table(accounts_table(accounts)).splitlines()
    assert rows[3] == "| 王小明   |   $0.00 | $0.00 | $1,000.00 |"
    assert rows[4] == "| Zoe\u0301 🐷   |   $0.01 | $0.00 |      none |"
    assert len({cell_len(row) for row in rows}) == 1
    # Each `|` stands at the same terminal column on every row.
    columns = {
        tuple(cell_len(row[:at]) for at, char in enumerate(row) if char == "|") for row in rows
    }
    assert len(columns) == 1


def test_a_bar_in_a_name_is_escaped_so_every_row_keeps_its_columns() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    accounts = [
        Account("main", "A|B", 100, 0, None, moment),
        Account("main", "C:\\temp\\", 0, 0, None, moment),
        Account("main", "D\\|E", 0, 0, None, moment),
    ]
    rows = plain_table(accounts_table(accounts)).splitlines()
    assert rows[2] == "| A\\|B       |   $1.00 | $0.00 | none |"
    assert rows[3] == "| C:\\\\temp\\\\ |   $0.00 | $0.00 | none |"
    assert rows[4] == "| D\\\\\\|E     |   $0.00 | $0.00 | none |"
    # Split on the bars no backslash escapes, each row has the header's five.
    unescaped_bar = re.compile(r"(?<!\\)(?:\\\\)*\|")
    assert {len(unescaped_bar.findall(row)) for row in rows} == {5}


def test_csv_has_plain_decimal_amounts() -> None:
    rows = list(csv.reader(io.StringIO(statement_csv(sample()))))
    assert rows[0] == ["date", "description", "withdrawals", "deposits", "balance"]
    assert rows[1] == ["", "Previous balance", "", "", "0.00"]
    assert rows[2] == ["2026-11-22T10:00:01.123456+00:00", "ATM Deposit", "", "100.00", "100.00"]
    assert rows[3][2:] == ["100.00", "", "0.00"]
    assert rows[4] == ["", "Totals", "100.00", "100.00", "0.00"]


def test_json_has_the_api_shape_with_string_amounts() -> None:
    document = json.loads(statement_json(sample()))
    assert document["client"] == "John Jones"
    assert document["opening_balance"] == "0.00"
    assert [entry["amount"] for entry in document["lines"]] == ["100.00", "-100.00"]
    assert document["lines"][0]["created_at"] == "2026-11-22T10:00:01.123456+00:00"
    assert (document["withdrawals"], document["deposits"], document["closing_balance"]) == (
        "100.00",
        "100.00",
        "0.00",
    )


def test_accounts_table_shows_floors_and_caps() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    accounts = [
        Account("main", "Jane Doe", 50_000, -10_000, None, moment),
        Account("main", "Ёжик", 0, 0, 100_000, moment),
    ]
    assert plain_table(accounts_table(accounts)) == (
        "| Client   | Balance | Floor    | Cap       |\n"
        "|----------|---------|----------|-----------|\n"
        "| Jane Doe | $500.00 | -$100.00 |      none |\n"
        "| Ёжик     |   $0.00 |    $0.00 | $1,000.00 |"
    )


def test_help_lists_every_shell_command_with_an_example() -> None:
    overview = help_overview()
    for spec in COMMANDS:
        assert (f"  {spec.name} " in overview) is spec.shell
    assert 'deposit --client="John Jones" --amount=100' in overview


def test_help_from_the_os_shell_writes_its_commands_as_typed_there() -> None:
    """`help deposit` typed at a bash prompt runs bash's own help."""
    overview = help_overview(oneshot=True)
    assert overview.endswith("Type 'kopilka help COMMAND' for a command's options and examples.")
    examples = [line.split("e.g. ", 1)[1] for line in overview.splitlines() if "e.g. " in line]
    assert examples and all(example.startswith("kopilka ") for example in examples)
    assert "e.g. kopilka kopilka" not in overview
    # Those run only from the OS prompt are named there too, README's "every command".
    assert "  shell, serve, token  " in overview and "shell, serve" not in help_overview()
    assert help_overview().endswith("Type 'help COMMAND' for a command's options and examples.")
    assert "e.g. kopilka" not in help_overview()
    init = next(spec for spec in COMMANDS if spec.name == "init")
    assert help_command(init, oneshot=True).endswith(
        "Usage: kopilka init\nExamples:\n  kopilka init"
    )
    assert "kopilka" not in help_command(next(s for s in COMMANDS if s.name == "deposit"))


def test_help_for_a_command_lists_its_options() -> None:
    text = help_command(next(spec for spec in COMMANDS if spec.name == "transfer"))
    assert "-f, --from NAME" in text
    assert "transfer -f" in text
    # The amount a bare word gives, as the second example does: the options did not say.
    assert "1,000.25 (required, or given bare, without --amount)" in text


def test_a_statement_whose_lines_do_not_add_up_is_refused_in_one_line() -> None:
    """Entries out of time order give running balances that do not follow each other."""
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    later = StatementLine(2, moment, "withdrawal", "b", -3_000, 7_000, None, 2)
    earlier = StatementLine(1, moment, "deposit", "a", 10_000, 10_000, None, 1)
    with pytest.raises(Unavailable) as refused:
        build_statement("T", None, moment, 0, [later, earlier])
    assert refused.value.code == "statement_inconsistent"


def test_a_statement_whose_running_balances_skip_is_refused_though_its_ends_agree() -> None:
    """Two lines swapped in the middle: opening, totals and closing agree, the Balance
    column between them does not (3 + 4 shown as 10, then 10 + 3 as 6)."""
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    # Deposits of 3, 3, 4 and 5 as (amount, balance after), the second and third swapped.
    amounts_and_balances = [(3, 3), (4, 10), (3, 6), (5, 15)]
    lines = [
        StatementLine(number, moment, "deposit", "d", amount, balance, None, number)
        for number, (amount, balance) in enumerate(amounts_and_balances, start=1)
    ]
    with pytest.raises(Unavailable) as refused:
        build_statement("T", None, moment, 0, lines)
    assert refused.value.code == "statement_inconsistent"


def test_the_terminal_table_shows_text_as_written_never_as_markup() -> None:
    """A description is anyone's text: "[/]" had ended the shell with a MarkupError, and
    "[link=...]" had written a hyperlink escape to the viewer's terminal."""
    from rich.console import Console

    from kopilka.shell.render import rich_table

    texts = ["[/]", "[link=https://evil.example/]verify here[/link]", "[on red]$9,999.00[/]"]
    statement = build_statement(
        "[bold]Bob[/bold]",
        None,
        datetime(2031, 1, 1, tzinfo=UTC),
        0,
        [line(index, index, text, 100, 100 * index) for index, text in enumerate(texts, 1)],
    )
    terminal = io.StringIO()
    Console(file=terminal, force_terminal=True, width=200).print(
        rich_table(statement_table(statement))
    )
    shown = terminal.getvalue()
    for text in [*texts, "Statement of [bold]Bob[/bold]"]:
        assert text in shown
    assert "\x1b]8;" not in shown  # no hyperlink


def test_a_narrow_terminal_wraps_text_and_never_cuts_an_amount() -> None:
    from rich.console import Console

    from kopilka.shell.render import rich_table, rich_table_fits

    description = "Salary for November, employer ACME Corporation Ltd, reference PAYROLL-000123"
    statement = build_statement(
        "Jane",
        None,
        datetime(2031, 1, 1, tzinfo=UTC),
        0,
        [
            line(1, 1, description, 1_234_567_890, 1_234_567_890),
            line(2, 2, "Rent", -234_567, 1_234_333_323),
        ],
    )
    table = statement_table(statement)
    assert rich_table_fits(table, 80)
    terminal = io.StringIO()
    Console(file=terminal, width=80, color_system=None).print(rich_table(table))
    shown = terminal.getvalue()
    assert "…" not in shown
    assert max(len(row) for row in shown.splitlines()) <= 80
    for amount in ("$12,345,678.90", "$2,345.67", "$12,343,333.23"):
        assert amount in shown, shown
    cells = "".join(row.split("│")[2] for row in shown.splitlines() if row.count("│") > 2)
    assert description.replace(" ", "") in cells.replace(" ", ""), shown
    # Narrower than the amounts themselves need: the terminal gets the plain table.
    assert not rich_table_fits(table, 40)
