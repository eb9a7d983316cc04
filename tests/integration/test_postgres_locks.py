"""A table locked by hand (DDL, VACUUM FULL, LOCK TABLE) past the store's lock_timeout:
a read says the database is busy in one line, as a write does, and works again after."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from kopilka.domain.model import Deposit, Operation, Transfer
from kopilka.engine import Engine
from kopilka.errors import Unavailable
from kopilka.store.postgres import PostgresStore
from kopilka.store.postgres_accounts import AccountCache

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


async def test_a_row_held_by_another_session_fails_its_batch_once_not_every_write(
    postgres_url: str,
) -> None:
    """A transaction left open on one account (by hand, or by a frozen process): the
    batches that need it are refused as busy after one lock_timeout, not retried a
    lock_timeout at a time, so the process's batch slots come free for everyone else."""
    async with Engine(PostgresStore(postgres_url, lock_timeout_seconds=1.0)) as engine:
        for client in ("Ann", "Bob", "Cid", "Dan"):
            opened = await engine.execute(Deposit(client, 100, "d", f"open-{client}"))
            assert isinstance(opened, Operation)
        locker = await asyncpg.connect(postgres_url)
        try:
            held = locker.transaction()
            await held.start()
            await locker.execute("SELECT 1 FROM accounts WHERE client = 'Ann' FOR UPDATE")
            started = asyncio.get_running_loop().time()
            first = asyncio.create_task(engine.execute(Transfer("Ann", "Bob", 1, "x", "t1")))
            await asyncio.sleep(0.1)
            second = asyncio.create_task(engine.execute(Transfer("Bob", "Ann", 1, "x", "t2")))
            await asyncio.sleep(0.1)  # both batch slots now wait for Ann's row
            other = await asyncio.wait_for(engine.execute(Transfer("Cid", "Dan", 1, "x", "t3")), 30)
            assert isinstance(other, Operation)
            for stuck in (first, second):
                with pytest.raises(Unavailable) as busy:
                    await stuck
                assert busy.value.code == "store_busy"
                # Said of the batch: a request of other accounts, applied with one of the
                # held one, is refused with it, and its caller is not to look for a lock
                # on its own accounts alone.
                assert (
                    "an account of this request, or of another applied with it, has been"
                    " locked by another session for over 1 s" in busy.value.message
                )
            # One wait each (a retry per lock_timeout took eight, and the third waited
            # behind them); well under what a second round of waits would take.
            assert asyncio.get_running_loop().time() - started < 5
            await held.rollback()
        finally:
            await locker.close()
        applied = await engine.execute(Transfer("Ann", "Bob", 1, "x", "t4"))
        assert isinstance(applied, Operation)
        assert (await engine.get_account("main", "Cid")).balance_cents == 99


async def test_accounts_forgotten_while_their_locks_are_waited_for_are_still_locked(
    postgres_url: str,
) -> None:
    """A batch waits for its accounts' row locks while another batch of this process
    forgets them (a sandbox ended, the view trimmed): what it knew of each was looked up
    again after the wait, and a KeyError answered 503 internal_error."""
    async with Engine(PostgresStore(postgres_url)) as engine:
        assert isinstance(await engine.execute(Deposit("Ann", 100, "d", "k1")), Operation)
    cache = AccountCache(100)
    holder = await asyncpg.connect(postgres_url)
    waiter = await asyncpg.connect(postgres_url)
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT 1 FROM accounts WHERE client = 'Ann' FOR UPDATE")
        locking = waiter.transaction()
        await locking.start()
        lock = asyncio.create_task(cache.lock(waiter, {("main", "Ann")}))
        await asyncio.sleep(0.3)
        assert not lock.done()  # waits for Ann's row
        cache.forget_ledger("main")
        await holding.rollback()
        accounts, _, _ = await asyncio.wait_for(lock, 10)
        assert accounts[("main", "Ann")].balance_cents == 100
        await locking.rollback()
    finally:
        await holder.close()
        await waiter.close()
