"""Every connection of the store's pool in use, the database answering (requests waiting
for a row another session holds): a request that waits past its bound for a connection
is told the ledger is busy, no outage is logged, and the server stays ready. Ready is
asked of the database itself, so a database that stops answering is still told."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from tests.pgserver import PostgresTestServer

from kopilka.api.readiness import Readiness
from kopilka.domain.model import Deposit, Operation
from kopilka.engine import Engine
from kopilka.errors import Unavailable
from kopilka.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

POOL_SIZE = 3
WAIT_SECONDS = 1.0  # for a pooled connection: the connect timeout


def _store(url: str, wait_seconds: float = WAIT_SECONDS) -> PostgresStore:
    return PostgresStore(
        url, pool_size_max=POOL_SIZE, connect_timeout_seconds=wait_seconds, lock_timeout_seconds=10
    )


@contextlib.asynccontextmanager
async def _pool_all_in_use(engine: Engine, url: str) -> AsyncIterator[None]:
    """Ann's and Bob's accounts, then every pooled connection in use until the end: one
    kept for the next batch, and the rest each settling Ann's history for a statement,
    an update of her row, which another session holds."""
    for client in ("Ann", "Bob"):
        opened = await engine.execute(Deposit(client, 100, "d", f"open-{client}"))
        assert isinstance(opened, Operation)
    locker = await asyncpg.connect(url)
    try:
        held = locker.transaction()
        await held.start()
        await locker.execute("SELECT 1 FROM accounts WHERE client = 'Ann' FOR UPDATE")
        statements = [
            asyncio.create_task(engine.statement("main", "Ann", None, datetime.now(UTC)))
            for _ in range(POOL_SIZE - 1)
        ]
        await asyncio.sleep(0.5)
        yield
        await held.rollback()
    finally:
        await locker.close()
    for statement in await asyncio.gather(*statements):
        assert statement.closing_balance_cents == 100


async def test_a_pool_all_in_use_is_busy_not_a_database_away(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Engine(_store(postgres_url)) as engine:
        async with _pool_all_in_use(engine, postgres_url):
            with caplog.at_level(logging.WARNING, logger="kopilka"):
                started = asyncio.get_running_loop().time()
                with pytest.raises(Unavailable) as busy:
                    await engine.get_account("main", "Bob")
                assert asyncio.get_running_loop().time() - started < 3 * WAIT_SECONDS
                assert busy.value.code == "store_busy", busy.value
                assert busy.value.message == (
                    "the ledger is busy: every connection to the database is in use;"
                    " nothing was changed, try again"
                )
                assert busy.value.before_the_write
                # The database answers: the server is ready, busy or not.
                await asyncio.wait_for(Readiness(engine).check(), 5)
            assert "unavailable" not in caplog.text, caplog.text
        assert (await engine.get_account("main", "Bob")).balance_cents == 100


async def test_a_pool_all_in_use_is_not_ready_once_the_database_is_silent(
    postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    """The whole server frozen: the check's own connection gets no answer either. (The
    default wait of 5 s for a connection: past the check's 2 s, as a server's is.)"""
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to freeze")
    store = _store(postgres_url, wait_seconds=5)
    async with Engine(store) as engine, _pool_all_in_use(engine, postgres_url):
        postmaster = postgres_server.pid
        assert postmaster is not None
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text()
        frozen = [postmaster, *map(int, children.split())]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(Unavailable) as silent:
                await asyncio.wait_for(Readiness(engine).check(), 5)
            assert (silent.value.code, silent.value.message) == (
                "store_unavailable",
                "the database did not answer within 2 s",
            )
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
