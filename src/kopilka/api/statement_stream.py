"""A statement as the API streams it, JSON or CSV, in chunks of lines: a long period
is never held whole in memory, and its totals are summed on the way."""

from __future__ import annotations

import csv
import io
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from kopilka.api.schemas import statement_line_out
from kopilka.clock import iso_text
from kopilka.domain.model import Account
from kopilka.domain.statement import StatementLine, statement_inconsistent
from kopilka.errors import no_sandbox
from kopilka.money import format_plain
from kopilka.spreadsheet import text_cell
from kopilka.store.told import Told

STATEMENT_CHUNK_LINES = 500
# Or fewer lines, when they are long (500 lines of 500 emoji each are some 2.8 MB): a
# piece is what the server keeps for a client that reads slowly, and what it waits for
# that client to take in (api/protocol.py, WRITE_PROGRESS_BUFFER_MAX).
STATEMENT_CHUNK_BYTES = 256 * 1024
_encoder = msgspec.json.Encoder()
logger = logging.getLogger(__name__)


async def read_ahead(
    lines: AsyncIterator[StatementLine], count: int
) -> AsyncIterator[StatementLine]:
    """The same lines, `count` of them read already: once the 200 has gone out, a
    failure can only cut the answer short, so the likeliest ones (the database away,
    lines that do not add up) are met while a clear error can still be sent; for a
    statement of up to `count` lines, every one."""
    ahead: deque[StatementLine] = deque()
    async for line in lines:
        ahead.append(line)
        if len(ahead) >= count:
            break
    more = len(ahead) >= count

    async def from_the_first() -> AsyncIterator[StatementLine]:
        # Each let go as it is yielded: the stream of a client that stops reading holds
        # the page its store read last, not the whole read-ahead too.
        while ahead:
            yield ahead.popleft()
        if more:
            async for line in lines:
                yield line

    return from_the_first()


@dataclass(slots=True)
class Totals:
    """A statement's sums, kept as its lines stream past."""

    opening: int
    withdrawals: int = 0
    deposits: int = 0
    closing: int = field(init=False)

    def __post_init__(self) -> None:
        self.closing = self.opening

    def add(self, line: StatementLine) -> None:
        if line.amount_cents < 0:
            self.withdrawals -= line.amount_cents
        else:
            self.deposits += line.amount_cents
        self.closing = line.balance_after_cents


async def adding_up(
    lines: AsyncIterator[StatementLine],
    account: Account,
    totals: Totals,
    closing: int,
    dropped: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[StatementLine]:
    """The lines as they come, summed into `totals`, each checked as the shell checks
    every statement it prints (build_statement): its running balance is the one before
    and its amount. Past the last, that they came to the balance of the last entry read
    as the statement began (lines cut off by a sandbox dropped while they streamed add
    up too). Streamed, a statement that fails either can only end broken off, before
    its last chunk: never shown as though whole. The operator is told which entry, as
    the ledger's data no longer adds up: the caller only sees the answer refused.
    `dropped`: whether the ledger (a sandbox) has been dropped, its lines with it. A
    sandbox's statement is looked at once more past its last line: one that ended while
    the lines streamed ends broken off too, whether or not the removal of its rows
    (the newest first, after the end) had reached those lines yet."""
    async for line in lines:
        if totals.closing + line.amount_cents != line.balance_after_cents:
            if dropped is not None and await dropped():
                raise no_sandbox(account.ledger)
            came_to = totals.closing + line.amount_cents
            _log_inconsistent(account, f"entry {line.entry_id}", line.balance_after_cents, came_to)
            raise statement_inconsistent(account.client)
        totals.add(line)
        yield line
    if dropped is not None and await dropped():
        # Its lines went with it as it was dropped (by its session, or idle): no alarm
        # of a ledger that does not add up for the end of a test ledger.
        raise no_sandbox(account.ledger)
    if totals.closing != closing:
        _log_inconsistent(account, "the last entry", closing, totals.closing)
        raise statement_inconsistent(account.client)


# Each place once a process: any token that may read the account could otherwise write
# a line to the log with each statement it asks for.
_told_inconsistent = Told()


def _log_inconsistent(account: Account, where: str, says: int, came_to: int) -> None:
    """`came_to`: the balance the lines up to `where`, its own amount too, come to."""
    found = (
        f"in the statement of account {account.id} (ledger {account.ledger!r}), {where} says"
        f" a balance of {says} cents where the lines up to it come to {came_to}"
    )
    if _told_inconsistent.first_time(found):
        logger.error(
            "the ledger does not add up: %s; look for entries changed, removed or out of"
            " time order",
            found,
        )


async def json_statement(
    lines: AsyncIterator[StatementLine],
    account: Account,
    totals: Totals,
    since: datetime | None,
    till: datetime,
) -> AsyncIterator[bytes]:
    """`lines` summed into `totals` as they pass (adding_up)."""
    head = _encoder.encode(
        {
            "client": account.client,
            "since": None if since is None else iso_text(since),
            "till": iso_text(till),
            "opening_balance": format_plain(totals.opening),
        }
    )
    yield head[:-1] + b',"lines":['
    chunk: list[bytes] = []
    size = 0
    first = True
    async for line in lines:
        encoded = _encoder.encode(statement_line_out(line))
        chunk.append(encoded if first else b"," + encoded)
        size += len(encoded)
        first = False
        if len(chunk) >= STATEMENT_CHUNK_LINES or size >= STATEMENT_CHUNK_BYTES:
            yield b"".join(chunk)
            chunk.clear()
            size = 0
    tail = {
        "withdrawals": format_plain(totals.withdrawals),
        "deposits": format_plain(totals.deposits),
        "closing_balance": format_plain(totals.closing),
    }
    yield b"".join(chunk) + b"]," + _encoder.encode(tail)[1:]


async def csv_statement(lines: AsyncIterator[StatementLine]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(
        [
            "id",
            "created_at",
            "kind",
            "description",
            "amount",
            "balance_after",
            "counterparty",
            "operation_id",
        ]
    )
    count = 0
    async for line in lines:
        writer.writerow(
            [
                line.entry_id,
                iso_text(line.created_at),
                line.kind,
                text_cell(line.description),
                format_plain(line.amount_cents),
                format_plain(line.balance_after_cents),
                text_cell(line.counterparty or ""),
                line.operation_id,
            ]
        )
        count += 1
        # Characters, each of at most four bytes in UTF-8.
        if count % STATEMENT_CHUNK_LINES == 0 or buffer.tell() * 4 >= STATEMENT_CHUNK_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
