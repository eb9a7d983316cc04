"""PostgreSQL sessions that go silent: the backends serving kopilka are frozen (SIGSTOP)
while the server still takes new connections, as when a network drops the packets of
the connections made before. A request on one is answered once the command timeout has
passed, not a timeout per pooled connection, and a write is never applied twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from tests.pg_rows import operations_under
from tests.pg_slow_commits import slow_commits
from tests.pgserver import PostgresTestServer

from kopilka.domain.model import Account, Deposit, Operation
from kopilka.engine import Engine
from kopilka.errors import Unavailable
from kopilka.store import postgres
from kopilka.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

COMMAND_TIMEOUT_SECONDS = 2.0


async def _ann_and_idle_connections(engine: Engine) -> None:
    """Ann's $10.00, and several pooled connections, all idle as the sessions freeze (and
    one kept for the next batch)."""
    await engine.execute(Deposit("Ann", 1_000, "before", "k0"))
    await asyncio.gather(*(engine.list_accounts("main") for _ in range(8)))


@contextlib.asynccontextmanager
async def _kopilka_sessions_frozen(url: str) -> AsyncIterator[list[int]]:
    """Every backend serving kopilka in this database stopped, until the end; the
    postmaster is not, so new connections are served. Yields their pids."""
    admin = await asyncpg.connect(url)
    try:
        pids = [
            row[0]
            for row in await admin.fetch(
                "SELECT pid FROM pg_stat_activity"
                " WHERE application_name = 'kopilka' AND datname = current_database()"
            )
        ]
    finally:
        await admin.close()
    assert len(pids) >= 3, pids  # several pooled connections, as under load
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield pids
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def _ended(url: str, pids: list[int]) -> None:
    """Once their clients have closed them, the sessions go on with what they were
    sent before, and end."""
    admin = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + 10
        while await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
        ):
            assert time.monotonic() < deadline, "the sessions frozen never ended"
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


@pytest.mark.parametrize(
    ("client", "code"),
    [
        # A new account: the batch locks its rows first, and the silence comes before
        # COMMIT, so nothing of it can apply.
        ("Bob", "store_unavailable"),
        # An account the store knows: the batch is one statement, committed on its own,
        # which the server may yet run.
        ("Ann", "outcome_unknown"),
    ],
)
async def test_a_write_on_a_silent_connection_is_answered_after_one_timeout(
    postgres_server: PostgresTestServer, postgres_url: str, client: str, code: str
) -> None:
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to freeze")
    store = PostgresStore(postgres_url, command_timeout_seconds=COMMAND_TIMEOUT_SECONDS)
    async with Engine(store) as engine:
        await _ann_and_idle_connections(engine)
        async with _kopilka_sessions_frozen(postgres_url) as frozen:
            started = time.monotonic()
            with pytest.raises(Unavailable) as silent:
                await engine.execute(Deposit(client, 250, "frozen", "k1"))
            waited = time.monotonic() - started
            # One timeout: not tried again, on a connection opened before the silence
            # (as silent) nor on a new one (which could wait as long).
            assert COMMAND_TIMEOUT_SECONDS <= waited < 1.75 * COMMAND_TIMEOUT_SECONDS
            assert silent.value.code == code, silent.value
    # Their connections closed, the sessions have run what they held.
    await _ended(postgres_url, frozen)
    if code == "store_unavailable":  # "nothing was applied" stays true
        assert await operations_under(postgres_url, "k1") == 0
    async with Engine(PostgresStore(postgres_url)) as engine:
        # Settled by its key, once.
        settled = await engine.execute(Deposit(client, 250, "frozen", "k1"))
        assert isinstance(settled, Operation), settled
        balance = 250 if client == "Bob" else 1_250
        assert (await engine.get_account("main", client)).balance_cents == balance
    assert await operations_under(postgres_url, "k1") == 1


async def test_connections_opened_before_a_timeout_are_not_handed_out_again(
    postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    """Each of them is most likely as silent: a read tried again, and the requests
    after it, go on new connections, not one timeout after another."""
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to freeze")
    store = PostgresStore(postgres_url, command_timeout_seconds=COMMAND_TIMEOUT_SECONDS)
    async with Engine(store) as engine:
        await _ann_and_idle_connections(engine)
        async with _kopilka_sessions_frozen(postgres_url):
            started = time.monotonic()
            assert (await engine.get_account("main", "Ann")).balance_cents == 1_000
            waited = time.monotonic() - started
            assert COMMAND_TIMEOUT_SECONDS <= waited < 1.75 * COMMAND_TIMEOUT_SECONDS
            started = time.monotonic()
            applied = await engine.execute(Deposit("Bob", 100, "after", "k1"))
            assert isinstance(applied, Operation), applied
            assert (await engine.get_account("main", "Bob")).balance_cents == 100
            assert (await engine.list_accounts("main"))[0].client == "Ann"
            assert time.monotonic() - started < COMMAND_TIMEOUT_SECONDS


async def test_a_commit_on_a_silent_connection_is_answered_after_one_timeout(
    postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    """The session freezes while it commits: whether it committed is asked on a new
    connection (the others are as silent), within the settle timeout; the COMMIT is
    still in progress there, so the outcome is not known, and the key settles it."""
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to freeze")
    store = PostgresStore(
        postgres_url,
        command_timeout_seconds=COMMAND_TIMEOUT_SECONDS,
        settle_timeout_seconds=0.3,
    )
    async with Engine(store) as engine:
        await _ann_and_idle_connections(engine)
        admin = await asyncpg.connect(postgres_url)
        try:
            await slow_commits(admin, 1, described="slow")  # long enough to be caught at
            deposit = asyncio.create_task(engine.execute(Deposit("Bob", 250, "slow", "k1")))
            for _ in range(100):
                await asyncio.sleep(0.02)
                if await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kopilka'"
                    " AND datname = current_database() AND query = 'COMMIT;'"
                    " AND state = 'active'"
                ):
                    break
            else:
                pytest.fail("the COMMIT was never seen in progress")
        finally:
            await admin.close()
        async with _kopilka_sessions_frozen(postgres_url):
            started = time.monotonic()
            with pytest.raises(Unavailable) as silent:
                await deposit
            # The COMMIT's timeout (less the moment it ran before the freeze), then the
            # settle's, not a timeout on each connection opened before the silence.
            assert time.monotonic() - started < 1.75 * COMMAND_TIMEOUT_SECONDS
            assert silent.value.code == "outcome_unknown", silent.value
        settled = await engine.execute(Deposit("Bob", 250, "slow", "k1"))
        assert isinstance(settled, Operation), settled
        assert (await engine.get_account("main", "Bob")).balance_cents == 250
    assert await operations_under(postgres_url, "k1") == 1


async def _logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What was logged, once anything is (within 10 s)."""
    deadline = time.monotonic() + 10
    while not caplog.records:
        assert time.monotonic() < deadline, "nothing was logged"
        await asyncio.sleep(0.05)
    return [record.getMessage() for record in caplog.records]


@pytest.mark.parametrize(
    ("kind", "kinds", "why"),
    [
        ("batch", "batches", "it is silent, or another transaction holds the batch's rows"),
        ("read", "reads", "it is silent, or another session holds a table it reads"),
    ],
)
async def test_work_the_database_does_not_answer_is_logged_while_it_waits(
    postgres_server: PostgresTestServer,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    kinds: str,
    why: str,
) -> None:
    """A frozen database left nothing in the log until the command timeout ran out (60 s
    by default), while every client waited, for a batch or a read (a token's look-up, a
    balance): the wait is said as it passes a few seconds, and its end once the database
    answers."""
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to freeze")
    monkeypatch.setattr(postgres, "WAIT_LOGGED_SECONDS", 0.5)
    store = PostgresStore(postgres_url, command_timeout_seconds=30)
    async with Engine(store) as engine:
        await _ann_and_idle_connections(engine)
        caplog.clear()
        async with _kopilka_sessions_frozen(postgres_url):
            work = asyncio.ensure_future(
                engine.execute(Deposit("Ann", 250, "frozen", "k1"))
                if kind == "batch"
                else engine.get_account("main", "Ann")
            )
            waiting = await _logged(caplog)
            assert not work.done()
        done = await asyncio.wait_for(work, 10)
        assert isinstance(done, Operation if kind == "batch" else Account), done
    where = store.redacted_url
    assert waiting == [f"the database at {where} has not answered a {kind} in 0.5 s: {why}"]
    assert [record.getMessage() for record in caplog.records] == [
        *waiting,
        f"the database at {where} answers kopilka's {kinds} again",
    ]


async def test_a_batch_waiting_for_rows_another_transaction_holds_is_logged_till_it_ends(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A read answered meanwhile does not end the wait: the end was logged while the
    batch still waited."""
    monkeypatch.setattr(postgres, "WAIT_LOGGED_SECONDS", 0.5)
    store = PostgresStore(postgres_url)
    async with Engine(store) as engine:
        await engine.execute(Deposit("Ann", 1_000, "before", "k0"))
        holder = await asyncpg.connect(postgres_url)
        try:
            holding = holder.transaction()
            await holding.start()
            await holder.execute("SELECT * FROM accounts WHERE client = 'Ann' FOR UPDATE")
            caplog.clear()
            deposit = asyncio.ensure_future(engine.execute(Deposit("Ann", 250, "held", "k1")))
            waiting = await _logged(caplog)
            assert (await engine.get_account("main", "Ann")).balance_cents == 1_000
            assert not deposit.done()
            assert [record.getMessage() for record in caplog.records] == waiting  # no end yet
            await holding.rollback()
        finally:
            await holder.close()
        assert isinstance(await asyncio.wait_for(deposit, 10), Operation)
    where = store.redacted_url
    assert [record.getMessage() for record in caplog.records] == [
        f"the database at {where} has not answered a batch in 0.5 s: it is silent, or another"
        " transaction holds the batch's rows",
        f"the database at {where} answers kopilka's batches again",
    ]
