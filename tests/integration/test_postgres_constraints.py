"""A CHECK of the database's own that kopilka's rules do not know (another program's)
refuses the request that breaks it, not every request batched with it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from kopilka.domain.model import Deposit, Operation
from kopilka.engine import Engine
from kopilka.errors import Rejected
from kopilka.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


async def test_a_deposit_a_check_refuses_fails_alone(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Engine(PostgresStore(postgres_url)) as engine:
        assert isinstance(await engine.execute(Deposit("Ann", 1, "open", "k0")), Operation)
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(
                "ALTER TABLE accounts ADD CONSTRAINT at_most_1000"
                " CHECK (balance <= 100000) NOT VALID"
            )
        finally:
            await admin.close()
        small = [Deposit("Ann", 1, "small", f"s{n}") for n in range(20)]
        big = Deposit("Ann", 500_000, "big", "b1")
        outcomes = await asyncio.gather(
            *(engine.execute(deposit) for deposit in [*small[:10], big, *small[10:]]),
            return_exceptions=True,
        )
        refused = outcomes.pop(10)
        assert all(isinstance(outcome, Operation) for outcome in outcomes), outcomes
        assert isinstance(refused, Rejected), refused
        told = 'new row for relation "accounts" violates check constraint "at_most_1000"'
        assert (refused.code, refused.message) == (
            "database_refused",
            f"the database refused this ({told}); nothing was applied",
        )
        with pytest.raises(Rejected) as again:
            await engine.execute(big)
        assert again.value == refused
        assert (await engine.get_account("main", "Ann")).balance_cents == 21
    logged = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert [level for level, _ in logged] == ["WARNING"], logged
    assert logged[0][1].endswith(f"refused a write: {told}")
