"""A statement's stream holds no more lines than it must while its reader is slow."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from kopilka.api.statement_stream import Totals, adding_up, read_ahead
from kopilka.domain.model import Account
from kopilka.domain.statement import StatementLine
from kopilka.errors import NotFound

LINES = 400
DESCRIPTION_BYTES = 20_000


async def _lines(count: int) -> AsyncIterator[StatementLine]:
    for number in range(1, count + 1):
        yield StatementLine(
            entry_id=number,
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            kind="deposit",
            description=str(number).rjust(DESCRIPTION_BYTES, "x"),
            amount_cents=1,
            balance_after_cents=number,
            counterparty=None,
            operation_id=number,
        )


async def _held_after_all_but_the_last(count: int) -> int:
    lines = await read_ahead(_lines(LINES), count)
    for _ in range(LINES - 1):
        await anext(lines)
    held, _ = tracemalloc.get_traced_memory()
    assert (await anext(lines)).entry_id == LINES  # and nothing lost or repeated
    return held


def test_lines_read_ahead_are_let_go_as_they_are_sent() -> None:
    """A client that stopped reading held the whole read-ahead (1,000 lines, with the
    store's page) for as long as its connection lasted: some 1 MB a connection."""
    tracemalloc.start()
    try:
        held = asyncio.run(_held_after_all_but_the_last(count=LINES))
    finally:
        tracemalloc.stop()
    assert held < LINES * DESCRIPTION_BYTES // 10, held


async def _dropped() -> bool:
    return True


async def test_a_statement_cut_off_by_its_sandbox_dropped_names_the_sandbox() -> None:
    """It was told "this sandbox has ended", naming none, where every other request to a
    sandbox gone is told which."""
    ledger = "sandbox-0123456789abcdef-0a1b2c3d4e5f"
    account = Account(ledger, "Ann", LINES, 0, None, datetime(2026, 1, 1, tzinfo=UTC), id=1)
    # Of the account's lines, the first half: the rest went with the sandbox.
    lines = adding_up(_lines(LINES // 2), account, Totals(0), LINES, _dropped)
    with pytest.raises(NotFound) as ended:
        async for _ in lines:
            pass
    assert (ended.value.code, ended.value.message) == (
        "sandbox_not_found",
        f"no sandbox {ledger!r}: it has ended (closed, or idle too long) or never was;"
        " start a new session",
    )


async def test_a_statement_whose_sandbox_ended_as_it_streamed_ends_broken_off() -> None:
    """A sandbox's rows go after it ends, the newest first, a slice at a time: a
    statement read meanwhile may find all its lines still there. Its sandbox ended, it
    is refused all the same, as every request to a sandbox gone is."""
    ledger = "sandbox-0123456789abcdef-0a1b2c3d4e5f"
    account = Account(ledger, "Ann", LINES, 0, None, datetime(2026, 1, 1, tzinfo=UTC), id=1)
    lines = adding_up(_lines(LINES), account, Totals(0), LINES, _dropped)
    read = 0
    with pytest.raises(NotFound) as ended:
        async for _ in lines:
            read += 1
    assert (read, ended.value.code) == (LINES, "sandbox_not_found")
