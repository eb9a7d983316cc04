"""A constraint of the database's that kopilka's rules do not know (another program's
CHECK or trigger) refuses the request that breaks it, not every request batched with it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from kopilka.domain.model import Deposit, Operation
from kopilka.engine import Engine
from kopilka.errors import Rejected
from kopilka.store.sqlite import SqliteStore


async def test_a_deposit_a_trigger_refuses_fails_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ledger.db"
    async with Engine(SqliteStore(str(path))) as engine:
        assert isinstance(await engine.execute(Deposit("Ann", 1, "open", "k0")), Operation)
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER at_most_1000 BEFORE UPDATE ON balances"
            " WHEN NEW.balance > 100000"
            " BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: at_most_1000'); END"
        )
    db.close()
    async with Engine(SqliteStore(str(path))) as engine:
        small = [Deposit("Ann", 1, "small", f"s{n}") for n in range(20)]
        big = Deposit("Ann", 500_000, "big", "b1")
        outcomes = await asyncio.gather(
            *(engine.execute(deposit) for deposit in [*small[:10], big, *small[10:]]),
            return_exceptions=True,
        )
        refused = outcomes.pop(10)
        assert all(isinstance(outcome, Operation) for outcome in outcomes), outcomes
        assert isinstance(refused, Rejected), refused
        assert (refused.code, refused.message) == (
            "database_refused",
            "the database refused this (CHECK constraint failed: at_most_1000);"
            " nothing was applied",
        )
        # The same again: refused alike, logged once, and as no outage or fault of kopilka's.
        with pytest.raises(Rejected) as again:
            await engine.execute(big)
        assert again.value == refused
        assert (await engine.get_account("main", "Ann")).balance_cents == 21
    logged = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert logged == [
        ("WARNING", f"the database {path} refused a write: CHECK constraint failed: at_most_1000")
    ]
