"""Another process's insert racing a batch's, on PostgreSQL: another connection holds the
row it inserted, uncommitted, while the engine's batch inserts the same one and waits;
then it commits. docs/postgres.md: such failures are retried inside, never shown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from kopilka.domain.model import ClaimKey, Deposit, Operation
from kopilka.engine import Engine
from kopilka.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

# Long enough for the engine's batch to reach the row the other connection holds.
_BATCH_WAITS_SECONDS = 1.0


@asynccontextmanager
async def _another_process_inserting(url: str, insert: str) -> AsyncIterator[None]:
    """`insert` made in a transaction of another connection, committed on leaving."""
    other = await asyncpg.connect(url)
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute(insert)
        yield
        await transaction.commit()
    finally:
        await other.close()


async def test_a_client_another_process_opens_at_the_same_moment_is_planned_again(
    postgres_url: str,
) -> None:
    """The batch's insert of the account met the other's: it failed the batch with a
    KeyError and a traceback (`the ledger could not apply this`)."""
    async with Engine(PostgresStore(postgres_url)) as engine:
        await engine.execute(Deposit("Ann", 100, "first", "a-0"))  # the schema made
        async with _another_process_inserting(
            postgres_url,
            "INSERT INTO accounts (ledger, client, balance, min_balance, max_balance,"
            " created_at) VALUES ('main', 'Zed', 0, 0, NULL, now())",
        ):
            deposit = asyncio.create_task(engine.execute(Deposit("Zed", 5, "pay", "z-1")))
            await asyncio.sleep(_BATCH_WAITS_SECONDS)
        outcome = await asyncio.wait_for(deposit, 30)
        assert isinstance(outcome, Operation), outcome
        account = await engine.get_account("main", "Zed")
        assert account.balance_cents == 5


async def test_a_batch_key_another_process_claims_at_the_same_moment_is_read_again(
    postgres_url: str,
) -> None:
    """The claim's insert met the other's under the same key and body: the unique
    violation reached the caller as `store_unavailable`."""
    async with Engine(PostgresStore(postgres_url)) as engine:
        await engine.execute(Deposit("Ann", 100, "first", "a-0"))
    async with Engine(PostgresStore(postgres_url)) as engine:  # a process just started
        async with _another_process_inserting(
            postgres_url,
            "INSERT INTO batch_requests (ledger, idempotency_key, digest, created_at)"
            " VALUES ('main', 'K', 'D', now())",
        ):
            batch = asyncio.create_task(
                engine.submit_many([Deposit("Ann", 5, "pay", "K:0")], ClaimKey("main", "K", "D"))
            )
            await asyncio.sleep(_BATCH_WAITS_SECONDS)
        outcomes = await asyncio.wait_for(batch, 30)
        assert [type(outcome).__name__ for outcome in outcomes] == ["Operation"], outcomes
