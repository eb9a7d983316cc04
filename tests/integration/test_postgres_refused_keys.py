"""One idempotency key sent to two processes at once: refused by one, it must not be
applied by the other, which decided on other accounts (one not found by the first) or
on the same account with another command before it. Two stores on one database stand
for the two processes; a table lock held by hand holds the refusing batch at the moment
it has its accounts locked, the refusal not yet kept."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from kopilka.domain.model import Deposit, Operation, SetLimits, Transfer, Withdraw
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


@pytest.mark.parametrize(
    "beside",
    [[], [SetLimits("Alice", min_balance_cents=0)]],
    ids=["alone", "beside limits set as they were"],
)
async def test_a_key_refused_on_an_account_found_is_not_applied_by_another(
    postgres_url: str, beside: list[SetLimits]
) -> None:
    """The refusing batch decides on the account as locked; the other process plans the
    same request after a deposit of its own batch, on the same revision, and would have
    written it in one statement that read the kept refusals before they were kept. Beside
    limits set as they were, Alice's account is among those the batch changes, but
    nothing of it is written: her row must still get a new revision."""
    knowing_store = PostgresStore(postgres_url)
    refusing_store = PostgresStore(postgres_url)
    async with Engine(knowing_store), Engine(refusing_store):
        opening = await knowing_store.apply([Deposit("Alice", 103, "funds", "a-0")])
        assert isinstance(opening[0], Operation)
        holder = await asyncpg.connect(postgres_url)
        try:
            held = holder.transaction()
            await held.start()
            await holder.execute("LOCK TABLE refusals IN EXCLUSIVE MODE")
            withdrawal = Withdraw("Alice", 150, "cash", "cash-1")
            refused = asyncio.create_task(refusing_store.apply([*beside, withdrawal]))
            await _until_waiting(holder, 1)  # Alice's row locked, the refusal not yet kept
            both = asyncio.create_task(
                knowing_store.apply([Deposit("Alice", 100, "pay", "a-1"), withdrawal])
            )
            await _until_waiting(holder, 2)  # for Alice's row
            await held.rollback()
            (*limits, first), (deposit, second) = await asyncio.wait_for(
                asyncio.gather(refused, both), 30
            )
        finally:
            await holder.close()
        assert not [o for o in limits if isinstance(o, KopilkaError)], limits
        assert isinstance(first, KopilkaError) and first.code == "insufficient_funds", first
        assert isinstance(deposit, Operation), deposit
        assert isinstance(second, KopilkaError), second
        assert (second.code, second.message, second.replayed) == (first.code, first.message, True)
        assert (await refusing_store.get_account("main", "Alice")).balance_cents == 203


async def test_a_batch_opening_thousands_of_accounts_takes_one_lock_not_one_each(
    postgres_url: str,
) -> None:
    """A lock for each name opened filled PostgreSQL's shared lock table (64 slots a
    connection): a batch opening 60,000 accounts here (20,000 with max_connections at
    100) failed whole, out of shared memory."""
    store = PostgresStore(postgres_url)
    async with Engine(store):
        openings = [Deposit(f"c{index}", 1, "opening", f"o-{index}") for index in range(60_000)]
        outcomes = await store.apply(openings)
    assert all(isinstance(outcome, Operation) for outcome in outcomes)
