"""One idempotency key sent to two processes at once: refused by one (its account not
found yet), it must not be applied by the other, which knew the account. Two stores on
one database stand for the two processes; a table lock held by hand holds the refusing
batch at the moment it has its accounts locked, the refusal not yet kept."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from kopilka.domain.model import Deposit, Operation, Transfer
from kopilka.engine import Engine
from kopilka.errors import KopilkaError
from kopilka.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


async def _waiting_sessions(connection: asyncpg.Connection) -> int:
    return int(
        await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
    )


async def _until_waiting(connection: asyncpg.Connection, sessions: int) -> None:
    async with asyncio.timeout(20):
        while await _waiting_sessions(connection) < sessions:
            await asyncio.sleep(0.01)


async def test_a_key_refused_by_one_process_is_not_applied_by_another(postgres_url: str) -> None:
    async with (
        Engine(PostgresStore(postgres_url)) as knowing,  # has seen both accounts
        Engine(PostgresStore(postgres_url)) as refusing,  # finds the payee missing
    ):
        assert isinstance(await knowing.execute(Deposit("Xena", 1_000, "funds", "x-0")), Operation)
        holder = await asyncpg.connect(postgres_url)
        try:
            held = holder.transaction()
            await held.start()
            await holder.execute("LOCK TABLE refusals IN EXCLUSIVE MODE")
            # Xena's row locked, Nick not found: the refusal waits to be kept.
            refused = asyncio.create_task(
                refusing.execute(Transfer("Xena", "Nick", 100, "rent", "rent-1"))
            )
            await _until_waiting(holder, 1)

            async def open_then_pay() -> object:
                opened = await knowing.execute(Deposit("Nick", 5, "opening", "n-0"))
                assert isinstance(opened, Operation), opened
                return await knowing.execute(Transfer("Xena", "Nick", 100, "rent", "rent-1"))

            applied = asyncio.create_task(open_then_pay())
            await _until_waiting(holder, 2)  # it waits for the refusing batch, one way or another
            await held.rollback()
            first, second = await asyncio.wait_for(asyncio.gather(refused, applied), 30)
        finally:
            await holder.close()
        assert isinstance(first, KopilkaError) and first.code == "account_not_found", first
        # The same answer, given again under the key: not the transfer applied.
        assert isinstance(second, KopilkaError), second
        assert (second.code, second.message, second.replayed) == (first.code, first.message, True)
        assert (await knowing.get_account("main", "Xena")).balance_cents == 1_000
        assert (await knowing.get_account("main", "Nick")).balance_cents == 5
    connection = await asyncpg.connect(postgres_url)
    try:
        taken = await connection.fetchval(
            "SELECT count(*) FROM operations WHERE idempotency_key = 'rent-1'"
        )
    finally:
        await connection.close()
    assert taken == 0
