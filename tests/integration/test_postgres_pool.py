"""Every connection of the store's pool in use, the database answering (requests waiting
for a row another session holds): a request that waits past its bound for a connection
is told the ledger is busy, no outage is logged, and the server stays ready. Busy and
ready are asked of the database itself, on a connection of its own, so a database that
stops answering is still told away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from tests.integration.test_postgres_connection import relayed
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


@contextlib.contextmanager
def _frozen(server: PostgresTestServer) -> Iterator[None]:
    """The whole server stopped, its sessions open: nothing is answered, nothing closed."""
    if not server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to freeze")
    postmaster = server.pid
    assert postmaster is not None
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text()
    frozen = [postmaster, *map(int, children.split())]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)


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
    store = _store(postgres_url, wait_seconds=5)
    async with Engine(store) as engine, _pool_all_in_use(engine, postgres_url):
        with _frozen(postgres_server):
            with pytest.raises(Unavailable) as silent:
                await asyncio.wait_for(Readiness(engine).check(), 5)
            assert (silent.value.code, silent.value.message) == (
                "store_unavailable",
                "the database did not answer within 2 s",
            )


async def test_a_pool_all_in_use_on_a_frozen_database_is_told_away(
    postgres_server: PostgresTestServer, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The usual freeze: the server stops while every pooled connection is open and
    waiting on it. A request that waited its bound for one is told the database is
    away, and the outage is logged, once the database gives no answer on a connection
    of its own either (2 s at most; here the wait's 1 s), not busy until the statements
    time out (60 s)."""
    async with Engine(_store(postgres_url)) as engine:
        async with _pool_all_in_use(engine, postgres_url):
            with caplog.at_level(logging.WARNING, logger="kopilka"), _frozen(postgres_server):
                started = asyncio.get_running_loop().time()
                with pytest.raises(Unavailable) as away:
                    await engine.get_account("main", "Bob")
                assert asyncio.get_running_loop().time() - started < 2 * WAIT_SECONDS + 1
                assert away.value.code == "store_unavailable", away.value
                assert "is unavailable (it did not answer in time)" in caplog.text, caplog.text
        # Thawed, the statements go through, and so does the next read.
        with caplog.at_level(logging.WARNING, logger="kopilka"):
            assert (await engine.get_account("main", "Bob")).balance_cents == 100
        assert caplog.text.count("is available again") == 1, caplog.text


async def test_a_pool_all_in_use_ready_again_after_a_freeze_says_the_database_is_back(
    postgres_server: PostgresTestServer, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The outage a readiness check logged on a connection of its own ends in the log
    once such a check is answered again, not only once a write goes through."""
    async with Engine(_store(postgres_url)) as engine, _pool_all_in_use(engine, postgres_url):
        with caplog.at_level(logging.WARNING, logger="kopilka"):
            with _frozen(postgres_server), pytest.raises(Unavailable):
                await asyncio.wait_for(Readiness(engine).check(), 5)
            assert "is unavailable" in caplog.text, caplog.text
            # The silence seen is kept a moment (1 s) for the checks that follow.
            again = Readiness(engine, interval_seconds=0)
            async with asyncio.timeout(5):
                while not await _ready(again):
                    await asyncio.sleep(0.1)
            assert caplog.text.count("is available again") == 1, caplog.text


async def _ready(readiness: Readiness) -> bool:
    try:
        await readiness.check()
    except Unavailable:
        return False
    return True


async def test_requests_that_give_up_together_ask_the_database_once(postgres_url: str) -> None:
    """Many requests whose wait for a pooled connection runs out at once share one
    question to the database, on one connection more: no storm of new connections
    against a database that is busy already."""
    async with (
        relayed(postgres_url) as (relay, url),
        Engine(_store(url)) as engine,
        _pool_all_in_use(engine, postgres_url),
    ):
        opened = relay.connections
        reads = [engine.get_account("main", "Bob") for _ in range(20)]
        told = await asyncio.gather(*reads, return_exceptions=True)
        assert relay.connections == opened + 1, (opened, relay.connections)
        for busy in told:
            assert isinstance(busy, Unavailable), busy
            assert busy.code == "store_busy", busy
