"""Statements the database cancels (a statement_timeout that runs out while a row or a
table is held by another session, or an operator's pg_cancel_backend): the transaction
is rolled back, so the caller is told at once that nothing was changed, not that the
database was lost, nor that the outcome is not known, nor after eight tries."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import asyncpg
import pytest
from tests.pg_rows import operations_under
from tests.pgserver import PostgresTestServer

from kopilka.domain.model import Deposit, Operation
from kopilka.engine import Engine
from kopilka.errors import Unavailable
from kopilka.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

STATEMENT_TIMEOUT_SECONDS = 1.0


def _statement_timeout(server: PostgresTestServer, url: str, seconds: float) -> None:
    """The database's default for the sessions opened from now on."""
    database = urlsplit(url).path.lstrip("/")
    server.psql(f"ALTER DATABASE \"{database}\" SET statement_timeout = '{int(seconds * 1000)}ms'")


@contextlib.asynccontextmanager
async def _held(url: str, statement: str) -> AsyncIterator[None]:
    """A transaction of another session that holds what `statement` locks, until the end."""
    locker = await asyncpg.connect(url)
    try:
        held = locker.transaction()
        await held.start()
        await locker.execute(statement)
        yield
        await held.rollback()
    finally:
        await locker.close()


def _told_cancelled(error: Unavailable, reason: str) -> None:
    assert error.code == "store_busy", error
    assert error.before_the_write  # nothing applied: the shell offers no key to settle it
    assert "the database cancelled" in error.message, error.message
    assert reason in error.message, error.message
    assert "nothing was changed, try again" in error.message
    assert "\n" not in error.message


@pytest.mark.parametrize(
    "known",
    [
        # The store knows Ann's account: the batch is one statement, committed on its own.
        True,
        # A store that has not met her (a one-shot command): the batch locks her row.
        False,
    ],
)
async def test_a_write_whose_statement_timed_out_is_told_unapplied_at_once(
    postgres_server: PostgresTestServer, postgres_url: str, known: bool
) -> None:
    _statement_timeout(postgres_server, postgres_url, STATEMENT_TIMEOUT_SECONDS)
    async with Engine(PostgresStore(postgres_url)) as first:
        for key in ("k1", "k2"):
            assert isinstance(await first.execute(Deposit("Ann", 100, "d", key)), Operation)
        async with contextlib.AsyncExitStack() as stack:
            engine = (
                first
                if known
                else await stack.enter_async_context(Engine(PostgresStore(postgres_url)))
            )
            async with _held(
                postgres_url, "SELECT 1 FROM accounts WHERE client = 'Ann' FOR UPDATE"
            ):
                started = time.monotonic()
                with pytest.raises(Unavailable) as cancelled:
                    await engine.execute(Deposit("Ann", 100, "held", "k3"))
                waited = time.monotonic() - started
            # One timeout: not settled as a lost connection, nor tried again.
            assert waited < 2.5 * STATEMENT_TIMEOUT_SECONDS, waited
            _told_cancelled(cancelled.value, "canceling statement due to statement timeout")
            assert await operations_under(postgres_url, "k3") == 0
            applied = await engine.execute(Deposit("Ann", 100, "held", "k3"))
            assert isinstance(applied, Operation), applied
            assert not applied.replayed
            assert (await engine.get_account("main", "Ann")).balance_cents == 300
    assert await operations_under(postgres_url, "k3") == 1


async def test_a_read_whose_statement_timed_out_is_told_busy_not_away(
    postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    """A table locked by hand past the statement_timeout (shorter than the lock_timeout):
    the database answered, and says so; it is not away."""
    _statement_timeout(postgres_server, postgres_url, STATEMENT_TIMEOUT_SECONDS)
    async with Engine(PostgresStore(postgres_url)) as engine:
        assert isinstance(await engine.execute(Deposit("Ann", 100, "d", "k1")), Operation)
        async with _held(postgres_url, "LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE"):
            for read in (
                engine.get_account("main", "Ann"),
                engine.statement("main", "Ann", None, datetime.now(UTC)),
            ):
                with pytest.raises(Unavailable) as cancelled:
                    await asyncio.wait_for(read, 10)
                _told_cancelled(cancelled.value, "canceling statement due to statement timeout")
        assert (await engine.get_account("main", "Ann")).balance_cents == 100


async def test_a_batch_statement_an_operator_cancelled_is_told_unapplied(
    postgres_url: str,
) -> None:
    """pg_cancel_backend of the session writing a batch in one statement: rolled back,
    and the caller is told so, not that whether it was applied is not known."""
    async with Engine(PostgresStore(postgres_url)) as engine:
        for key in ("k1", "k2"):
            assert isinstance(await engine.execute(Deposit("Ann", 100, "d", key)), Operation)
        admin = await asyncpg.connect(postgres_url)
        try:
            async with _held(
                postgres_url, "SELECT 1 FROM accounts WHERE client = 'Ann' FOR UPDATE"
            ):
                deposit = asyncio.create_task(engine.execute(Deposit("Ann", 100, "held", "k3")))
                for _ in range(250):
                    await asyncio.sleep(0.02)
                    if await admin.fetchval(
                        "SELECT bool_or(pg_cancel_backend(pid)) FROM pg_stat_activity"
                        " WHERE application_name = 'kopilka' AND datname = current_database()"
                        " AND state = 'active' AND wait_event_type = 'Lock'"
                    ):
                        break
                else:
                    pytest.fail("the batch was never seen waiting for Ann's row")
                with pytest.raises(Unavailable) as cancelled:
                    await deposit
        finally:
            await admin.close()
        _told_cancelled(cancelled.value, "canceling statement due to user request")
        assert await operations_under(postgres_url, "k3") == 0
        assert (await engine.get_account("main", "Ann")).balance_cents == 200
