"""A table locked by hand (DDL, VACUUM FULL, LOCK TABLE) past the store's lock_timeout:
a read says the database is busy in one line, as a write does, and works again after."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from kopilka.domain.model import Deposit, Operation
from kopilka.engine import Engine
from kopilka.errors import Unavailable
from kopilka.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


async def test_a_read_held_past_the_lock_timeout_is_busy_not_a_crash(postgres_url: str) -> None:
    async with Engine(PostgresStore(postgres_url, lock_timeout_seconds=0.3)) as engine:
        assert isinstance(await engine.execute(Deposit("Ann", 100, "d", "k1")), Operation)
        locker = await asyncpg.connect(postgres_url)
        try:
            locked = locker.transaction()
            await locked.start()
            await locker.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
            for read in (
                engine.get_account("main", "Ann"),
                engine.list_accounts("main"),
                engine.statement("main", "Ann", None, datetime.now(UTC)),
            ):
                with pytest.raises(Unavailable) as busy:
                    await asyncio.wait_for(read, 10)
                assert busy.value.code == "store_busy"
                assert "\n" not in busy.value.message
            await locked.rollback()
        finally:
            await locker.close()
        assert (await engine.get_account("main", "Ann")).balance_cents == 100
