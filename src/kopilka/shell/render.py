"""How results look: statement and account tables, csv and json, help text.

A `Table` is plain data; `plain_table` draws it in the `|` form used when
output is not a terminal (stable, easy to diff and to script against), and
`rich_table` draws it for a terminal. Times are shown in the user's local zone.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from kopilka.clock import iso_text
from kopilka.domain.model import Account
from kopilka.domain.statement import Statement
from kopilka.money import format_money, format_plain
from kopilka.shell.specs import COMMANDS, CommandSpec
from kopilka.spreadsheet import text_cell

if TYPE_CHECKING:
    from rich.table import Table as RichTable

LOCAL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
STATEMENT_HEADERS = ("Date", "Description", "Withdrawals", "Deposits", "Balance")
ACCOUNT_HEADERS = ("Client", "Balance", "Floor", "Cap")


@dataclass(frozen=True, slots=True)
class Table:
    headers: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    right_aligned: frozenset[int] = frozenset()  # column indexes holding money
    # Rows at the start and end that summarise rather than list (drawn apart on a terminal).
    header_rows: int = 0
    footer_rows: int = 0
    title: str | None = field(default=None)


def local_time(moment: datetime) -> str:
    """A stored UTC time as the user's wall-clock time (honours TZ); in an hour the
    clocks show twice, with its zone's name (EDT, then EST), or the two runs of it read
    as one, time going backwards between them."""
    local = moment.astimezone()
    shown = local.strftime(LOCAL_TIME_FORMAT)
    twin = _twin(local)
    if twin is None:
        return shown
    # A zone that moved its standard time back has one name for both runs (MSK in 2014).
    named = "%Z" if twin.strftime("%Z") != local.strftime("%Z") else "%z"
    return f"{shown} {local.strftime(named)}"


# Longer than a clock change of daylight saving time or of a zone's standard time in
# use now (Lord Howe's is 30 minutes; the date line's moves of a day are not shown).
_CHANGE_SPAN = timedelta(hours=3)


def _twin(local: datetime) -> datetime | None:
    """Another moment within a clock change of this one with the same wall time, if any."""
    offset = local.utcoffset()
    for near in (local - _CHANGE_SPAN, local + _CHANGE_SPAN):
        other_offset = near.astimezone().utcoffset()
        if other_offset is None or offset is None or other_offset == offset:
            continue
        twin = (local + (offset - other_offset)).astimezone()
        if twin.utcoffset() == other_offset and twin.replace(tzinfo=None) == local.replace(
            tzinfo=None
        ):
            return twin
    return None


def _money_or_blank(cents: int) -> str:
    return format_money(cents) if cents else ""


def statement_table(statement: Statement) -> Table:
    rows: list[tuple[str, ...]] = [
        ("", "Previous balance", "", "", format_money(statement.opening_balance_cents))
    ]
    for line in statement.lines:
        amount = line.amount_cents
        rows.append(
            (
                local_time(line.created_at),
                line.text,
                _money_or_blank(-amount if amount < 0 else 0),
                _money_or_blank(amount if amount > 0 else 0),
                format_money(line.balance_after_cents),
            )
        )
    rows.append(
        (
            "",
            "Totals",
            format_money(statement.withdrawals_cents),
            format_money(statement.deposits_cents),
            format_money(statement.closing_balance_cents),
        )
    )
    return Table(
        STATEMENT_HEADERS,
        rows,
        frozenset({2, 3, 4}),
        header_rows=1,
        footer_rows=1,
        title=f"Statement of {statement.client}",
    )


def accounts_table(accounts: Sequence[Account]) -> Table:
    rows = [
        (
            account.client,
            format_money(account.balance_cents),
            format_money(account.min_balance_cents),
            _cap_text(account.max_balance_cents),
        )
        for account in accounts
    ]
    return Table(ACCOUNT_HEADERS, rows, frozenset({1, 2, 3}), title="Accounts")


def _cap_text(cap_cents: int | None) -> str:
    return "none" if cap_cents is None else format_money(cap_cents)


def account_details(account: Account) -> str:
    return "\n".join(
        (
            f"Name:    {account.client}",
            f"Balance: {format_money(account.balance_cents)}",
            f"Floor:   {format_money(account.min_balance_cents)}",
            f"Cap:     {_cap_text(account.max_balance_cents)}",
        )
    )


def limits_text(account: Account) -> str:
    return (
        f"floor {format_money(account.min_balance_cents)}, "
        f"cap {_cap_text(account.max_balance_cents)}"
    )


def plain_table(table: Table) -> str:
    """The `|` table: columns as wide as their content, money right-aligned.

    Widths are terminal columns, not characters: a CJK character or an emoji takes
    two, a combining accent none, so names in any script stay in their column.
    """
    from rich.cells import cell_len  # the terminal width of text, as rich draws it

    rows = [tuple(_plain_cell(cell) for cell in row) for row in table.rows]
    widths = [cell_len(header) for header in table.headers]
    for row in rows:
        assert len(row) == len(widths)
        widths = [max(width, cell_len(cell)) for width, cell in zip(widths, row, strict=True)]

    def draw(cells: tuple[str, ...], align_right: frozenset[int]) -> str:
        padded = []
        for index, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            gap = " " * (width - cell_len(cell))
            padded.append(gap + cell if index in align_right else cell + gap)
        return "| " + " | ".join(padded) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    lines = [draw(table.headers, frozenset()), separator]
    lines.extend(draw(row, table.right_aligned) for row in rows)
    return "\n".join(lines)


def _plain_cell(text: str) -> str:
    """A `|` in a name or description escaped (and so a backslash), as in a Markdown
    table: a script that splits rows on the other `|` finds every column in its place."""
    if "|" not in text and "\\" not in text:
        return text
    return text.replace("\\", "\\\\").replace("|", "\\|")


_TEXT_WIDTH_MIN = 10


def _column_widths_min(table: Table) -> list[int]:
    """Each column's narrowest: an amount whole (it is never broken), text a few
    characters a line (it wraps), so that a wide amount cannot squeeze it out."""
    widths = []
    for index, header in enumerate(table.headers):
        longest = max((len(row[index]) for row in table.rows), default=0)
        if index in table.right_aligned:
            widths.append(max(longest, len(header)))
        else:
            widths.append(min(max(longest, len(header)), _TEXT_WIDTH_MIN))
    return widths


def rich_table_fits(table: Table, width: int) -> bool:
    """Whether the terminal table fits `width` columns; if not, the plain one is shown,
    which the terminal wraps, so that nothing is cut off."""
    widths = _column_widths_min(table)
    return sum(widths) + 3 * len(widths) + 1 <= width  # padding, then the rules


def rich_table(table: Table) -> RichTable:
    """Every cell and the title as Text, never as rich markup: a description or a name
    is anyone's text, and "[/]" in it would end the shell, "[link=...]" plant a link."""
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    title = None if table.title is None else Text(table.title)
    drawn = RichTable(title=title, box=box.ROUNDED, header_style="bold")
    # On a narrow terminal nothing is cut off with "...": text wraps within its cell,
    # and an amount is never broken at all (the text beside it wraps first).
    widths = _column_widths_min(table)
    for index, (header, width) in enumerate(zip(table.headers, widths, strict=True)):
        amount = index in table.right_aligned
        drawn.add_column(
            header,
            justify="right" if amount else "left",
            overflow="fold",
            no_wrap=amount,
            min_width=width,
        )
    last = len(table.rows) - 1
    for index, row in enumerate(table.rows):
        summary = index < table.header_rows or index > last - table.footer_rows
        drawn.add_row(
            *(Text(cell) for cell in row),
            style="bold" if summary else None,
            end_section=index == table.header_rows - 1 or index == last - table.footer_rows,
        )
    return drawn


def statement_csv(statement: Statement) -> str:
    """The table's rows with plain decimal amounts and ISO 8601 local times."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([header.lower() for header in STATEMENT_HEADERS])
    writer.writerow(["", "Previous balance", "", "", format_plain(statement.opening_balance_cents)])
    for line in statement.lines:
        amount = line.amount_cents
        writer.writerow(
            [
                iso_text(line.created_at.astimezone()),
                text_cell(line.text),
                format_plain(-amount) if amount < 0 else "",
                format_plain(amount) if amount > 0 else "",
                format_plain(line.balance_after_cents),
            ]
        )
    writer.writerow(
        [
            "",
            "Totals",
            format_plain(statement.withdrawals_cents),
            format_plain(statement.deposits_cents),
            format_plain(statement.closing_balance_cents),
        ]
    )
    return buffer.getvalue().rstrip("\n")


def statement_json(statement: Statement) -> str:
    """The HTTP API's statement, made by the API's own schema (a copy of it here had
    drifted: no operation_id), so that scripts can use either."""
    import msgspec  # loaded only for this

    from kopilka.api.schemas import StatementOut, statement_line_out

    document = StatementOut(
        client=statement.client,
        since=None if statement.since is None else iso_text(statement.since),
        till=iso_text(statement.till),
        opening_balance=format_plain(statement.opening_balance_cents),
        lines=[statement_line_out(line) for line in statement.lines],
        withdrawals=format_plain(statement.withdrawals_cents),
        deposits=format_plain(statement.deposits_cents),
        closing_balance=format_plain(statement.closing_balance_cents),
    )
    return json.dumps(msgspec.to_builtins(document), ensure_ascii=False, indent=2)


def help_overview(*, oneshot: bool = False) -> str:
    offered = [spec for spec in COMMANDS if (spec.oneshot if oneshot else spec.shell)]
    width = max(len(spec.name) for spec in offered)
    lines = ["Commands:"]
    for spec in offered:
        lines.append(f"  {spec.name.ljust(width)}  {spec.summary}")
        lines.extend(
            f"  {' ' * width}    e.g. {_as_typed(example, oneshot)}"
            for example in spec.examples[:1]
        )
    if oneshot:  # the commands with parsers of their own, run only from the OS prompt
        lines.append(f"  {'shell, serve, token'.ljust(width)}  the shell, the HTTP API, its tokens")
        lines.append(f"  {' ' * width}    e.g. kopilka serve 8888; kopilka help serve")
    # At an OS prompt, `help deposit` is that shell's own help.
    lines.append(
        f"Type '{_as_typed('help COMMAND', oneshot)}' for a command's options and examples."
    )
    return "\n".join(lines)


def _as_typed(command: str, oneshot: bool) -> str:
    """A command line as it is typed in the shell, or with kopilka before it at an OS prompt."""
    if oneshot and not command.startswith("kopilka "):
        return f"kopilka {command}"
    return command


def help_command(spec: CommandSpec, *, oneshot: bool = False) -> str:
    """A command's help; `oneshot`: its usage and examples as typed at an OS prompt."""
    lines = [f"{spec.name}: {spec.summary}", f"Usage: {_as_typed(spec.usage, oneshot)}"]
    if spec.aliases:
        lines.append(f"Also called: {', '.join(spec.aliases)}")
    if spec.options:
        lines.append("Options:")
        spellings = [", ".join(sorted(o.spellings, key=len)) for o in spec.options]
        labels = [f"{text} {o.metavar}" for text, o in zip(spellings, spec.options, strict=True)]
        width = max(len(label) for label in labels)
        for label, option in zip(labels, spec.options, strict=True):
            notes = ["required"] if option.required else []
            if option.name == spec.positional:  # an example showed it, the options did not
                notes.append(f"or given bare, without --{option.name}")
            said = f" ({', '.join(notes)})" if notes else ""
            lines.append(f"  {label.ljust(width)}  {option.help}{said}")
    if spec.examples:
        lines.append("Examples:")
        lines.extend(f"  {_as_typed(example, oneshot)}" for example in spec.examples)
    return "\n".join(lines)
