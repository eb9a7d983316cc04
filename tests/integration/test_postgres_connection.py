"""PostgreSQL connections that break: a COMMIT whose answer is lost, and pooled
connections left stale by a server restart. A real server, reached either directly
or through a small TCP relay that can cut a connection at a chosen moment."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from tests.garbage import frames_left_in_cycles
from tests.pg_slow_commits import slow_commits
from tests.pgserver import PostgresTestServer

from kopilka.api.auth import new_token_record
from kopilka.domain.model import Deposit, Operation
from kopilka.engine import Engine
from kopilka.errors import NOT_KNOWN, RETRY_UNDER_THE_KEY, Unavailable, unknown_cause
from kopilka.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


class Relay:
    """Forwards TCP to PostgreSQL; when armed, swallows the server's next reply that
    carries the command tag `cut_at` and cuts that connection: the command completed
    (and committed), the client never hears it. With `cut_sent`, it swallows instead
    the client's next message that holds `cut_at` (a statement's text), and cuts: the
    server never hears it; with `cut_sent` and `pass_cut` too, the server hears it and
    the client never hears the answer."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.armed = False
        self.cut_at = b"COMMIT"
        self.cut_sent = False
        self.pass_cut = False
        self.cuts = 0
        self.connections = 0  # opened through it
        self.refuse_after_cut = False  # the database then away: new connections cut at once
        # Every other connection open at the cut ends with it, as pg_terminate_backend
        # of them all would end it; the client hears so only once it sends on one.
        self.cut_the_others = False
        self._open: set[asyncio.StreamWriter] = set()
        self._ended: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        if self.refuse_after_cut and self.cuts:
            client_out.close()
            return
        server_in, server_out = await asyncio.open_connection(*self.target)
        self._open.add(server_out)
        upstream = asyncio.create_task(self._pipe(client_in, server_out, sent=True))
        downstream = asyncio.create_task(self._pipe(server_in, client_out, sent=False))
        await asyncio.wait([upstream, downstream], return_when=asyncio.FIRST_COMPLETED)
        for task in (upstream, downstream):
            task.cancel()
        for writer in (client_out, server_out):
            writer.close()
        self._open.discard(server_out)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, sent: bool
    ) -> None:
        while data := await reader.read(65_536):
            if writer in self._ended:
                return
            # CommandComplete carries the tag ("COMMIT", "SELECT 1") and a zero byte.
            watched = self.cut_at if sent else self.cut_at + b"\x00"
            if self.armed and sent == self.cut_sent and watched in data:
                self.armed = False
                self.cuts += 1
                if self.pass_cut:
                    writer.write(data)
                    await writer.drain()
                if self.cut_the_others:
                    self._ended |= self._open
                return
            writer.write(data)
            await writer.drain()


@contextlib.asynccontextmanager
async def relayed(url: str) -> AsyncIterator[tuple[Relay, str]]:
    parts = urlsplit(url)
    relay = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await relay.start()
    netloc = f"{parts.username}@127.0.0.1:{port}"
    try:
        yield relay, urlunsplit(parts._replace(netloc=netloc))
    finally:
        await relay.close()


@pytest.mark.parametrize(
    ("client", "cut_at"),
    [
        # A new account: the batch locks, writes, then COMMITs, whose answer is lost.
        ("Bob", b"COMMIT"),
        # An account the store knows: the batch is one statement, committed on its own.
        ("Ann", b"SELECT 1"),
    ],
)
async def test_a_commit_whose_answer_is_lost_is_settled_without_applying_twice(
    postgres_url: str, client: str, cut_at: bytes
) -> None:
    async with relayed(postgres_url) as (relay, url), Engine(PostgresStore(url)) as engine:
        first = await engine.execute(Deposit("Ann", 1_000, "before", "k0"))
        assert isinstance(first, Operation)
        relay.armed, relay.cut_at = True, cut_at
        outcome = await engine.execute(Deposit(client, 250, "lost answer", "k1"))
        assert relay.cuts == 1
        # The store asked the server: committed. The caller gets the original answer.
        balance_after = await _answered_as_applied(engine, outcome, client)
        again = await engine.execute(Deposit(client, 250, "lost answer", "k1"))
        assert isinstance(again, Operation)
        assert again.replayed
        assert again.id == outcome.id
        assert (await engine.get_account("main", client)).balance_cents == balance_after
    connection = await asyncpg.connect(postgres_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM operations") == 2
        assert await connection.fetchval("SELECT count(*) FROM entries") == 2
    finally:
        await connection.close()


async def test_a_key_given_twice_in_a_batch_settled_after_its_answer_was_lost_is_one_replay(
    postgres_url: str,
) -> None:
    """Settled, every operation written at the batch's time was said to be no replay: a
    retry queued beside its first try was answered as applied anew (201 without
    Idempotent-Replayed, counted twice), though it applied once."""
    async with relayed(postgres_url) as (relay, url), Engine(PostgresStore(url)) as engine:
        assert isinstance(await engine.execute(Deposit("Ann", 1_000, "before", "k0")), Operation)
        relay.armed, relay.cut_at = True, b"SELECT 1"
        tries = [Deposit("Ann", 5, "lost answer", "k1")] * 2
        first, second = await engine.submit_many(tries)
        assert relay.cuts == 1
        assert isinstance(first, Operation) and isinstance(second, Operation)
        assert first.id == second.id
        assert (first.replayed, second.replayed) == (False, True)
        assert (await engine.get_account("main", "Ann")).balance_cents == 1_005


async def test_a_batch_settled_after_its_answer_was_lost_leaves_no_cycle_for_the_collector(
    postgres_url: str,
) -> None:
    """The lost connection's error, kept in a local of the frame its traceback holds,
    kept that frame and the batch's plan alive until the collector came."""
    async with relayed(postgres_url) as (relay, url), Engine(PostgresStore(url)) as engine:
        assert isinstance(await engine.execute(Deposit("Ann", 1_000, "before", "k0")), Operation)
        with frames_left_in_cycles() as left:
            relay.armed, relay.cut_at = True, b"SELECT 1"
            assert isinstance(await engine.execute(Deposit("Ann", 250, "lost", "k1")), Operation)
            assert relay.cuts == 1
    assert left == []


@pytest.mark.parametrize(("client", "cut_at"), [("Bob", b"COMMIT"), ("Ann", b"SELECT 1")])
async def test_a_commit_settled_after_its_pooled_connections_were_cut_too(
    postgres_url: str, client: str, cut_at: bytes
) -> None:
    """The cut that lost the COMMIT's answer ended every other pooled connection too
    (pg_terminate_backend of kopilka's sessions): asking on one of those is no answer.
    The store asks on another at once (a wait after each, growing, used up a short
    settle time on the dead ones), and the caller hears that the deposit was applied,
    not that its outcome is unknown."""
    async with (
        relayed(postgres_url) as (relay, url),
        Engine(PostgresStore(url, settle_timeout_seconds=0.5)) as engine,
    ):
        await engine.execute(Deposit("Ann", 1_000, "before", "k0"))
        # Several pooled connections, all idle at the cut.
        await asyncio.gather(*(engine.list_accounts("main") for _ in range(8)))
        relay.armed, relay.cut_at, relay.cut_the_others = True, cut_at, True
        outcome = await engine.execute(Deposit(client, 250, "lost answer", "k1"))
        assert relay.cuts == 1
        await _answered_as_applied(engine, outcome, client)


async def _answered_as_applied(engine: Engine, outcome: object, client: str) -> int:
    """The deposit of 2.50 to `client` answered as its own first answer, applied once:
    the balance after it (Ann had 10.00 before, Bob no account)."""
    assert isinstance(outcome, Operation), outcome
    assert not outcome.replayed
    balance_after = 250 if client == "Bob" else 1_250
    assert outcome.credit_balance_after_cents == balance_after
    assert (await engine.get_account("main", client)).balance_cents == balance_after
    return balance_after


@pytest.mark.parametrize(
    ("client", "statement"),
    [
        ("Bob", "COMMIT;"),  # a new account: locked, written, then COMMIT
        # A known account: the batch is one statement, and its COMMIT that statement's.
        ("Ann", "%WITH batch AS MATERIALIZED%"),
    ],
)
async def test_a_commit_rolled_back_with_its_connection_is_retried_once(
    postgres_url: str, client: str, statement: str
) -> None:
    """A COMMIT held up in the server (a deferred trigger) when its session is
    terminated: the transaction aborts, the store says so, the engine applies it anew."""
    async with Engine(PostgresStore(postgres_url)) as engine:
        await engine.execute(Deposit("Ann", 1_000, "before", "k0"))
        admin = await asyncpg.connect(postgres_url)
        try:
            await slow_commits(admin, 0.5)
            deposit = asyncio.create_task(engine.execute(Deposit(client, 5, "slow", "k1")))
            terminated = False
            for _ in range(100):
                await asyncio.sleep(0.02)
                terminated = await admin.fetchval(
                    "SELECT bool_or(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'kopilka' AND query LIKE $1"
                    " AND state = 'active'",
                    statement,
                )
                if terminated:
                    break
            assert terminated, "the COMMIT was never seen in progress"
            outcome = await deposit
            assert isinstance(outcome, Operation), outcome
            assert not outcome.replayed
            assert (
                await admin.fetchval("SELECT count(*) FROM operations WHERE idempotency_key = 'k1'")
                == 1
            )
        finally:
            await admin.close()
        balance = 5 if client == "Bob" else 1_005
        assert (await engine.get_account("main", client)).balance_cents == balance


async def test_a_commit_still_running_when_its_connection_is_lost_is_asked_after_until_done(
    postgres_url: str,
) -> None:
    """The COMMIT reached the server, and the connection was lost while the server still
    ran it (a deferred trigger): asked on another connection, it is in progress at first.
    The store asks again until it has committed, and the caller hears the deposit
    applied, once, not that its outcome is unknown."""
    async with relayed(postgres_url) as (relay, url), Engine(PostgresStore(url)) as engine:
        await engine.execute(Deposit("Ann", 1_000, "before", "k0"))
        admin = await asyncpg.connect(postgres_url)
        try:
            await slow_commits(admin, 0.5, described="slow")
            # A new account: locked, written, then COMMIT, passed on and the line cut.
            relay.armed, relay.cut_at, relay.cut_sent, relay.pass_cut = True, b"COMMIT", True, True
            outcome = await engine.execute(Deposit("Bob", 5, "slow", "k1"))
            assert relay.cuts == 1
            assert isinstance(outcome, Operation), outcome
            assert not outcome.replayed
            assert (
                await admin.fetchval("SELECT count(*) FROM operations WHERE idempotency_key = 'k1'")
                == 1
            )
        finally:
            await admin.close()
        assert (await engine.get_account("main", "Bob")).balance_cents == 5


async def test_a_retried_key_whose_rollback_is_cut_is_answered_with_the_replay(
    postgres_url: str,
) -> None:
    """A retried request meets its key taken, and its batch rolls back to run again
    reading the keys. The connection is lost with the ROLLBACK (the server rolls back
    anyway): the batch runs again on another, and the caller hears the replay, not an
    internal error of a connection already given back to the pool."""
    async with relayed(postgres_url) as (relay, url), Engine(PostgresStore(url)) as engine:
        first = await engine.execute(Deposit("Ann", 1_000, "pay", "k1"))
        assert isinstance(first, Operation)
        relay.armed, relay.cut_at, relay.cut_sent = True, b"ROLLBACK", True
        again = await engine.execute(Deposit("Ann", 1_000, "pay", "k1"))
        assert relay.cuts == 1
        assert isinstance(again, Operation), again
        assert again.replayed
        assert again.id == first.id
        assert (await engine.get_account("main", "Ann")).balance_cents == 1_000


async def test_pooled_connections_left_stale_by_a_restart_are_replaced(
    postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to restart")
    async with Engine(PostgresStore(postgres_url)) as engine:
        # Several pooled connections, all idle when the server goes away.
        await asyncio.gather(
            *(engine.execute(Deposit(f"c{n}", 100, "x", f"k{n}")) for n in range(8)),
            *(engine.list_accounts("main") for _ in range(8)),
        )
        await asyncio.to_thread(postgres_server.restart, "fast")
        # No reopening: the first calls after the restart simply work.
        assert (await engine.get_account("main", "c0")).balance_cents == 100
        outcome = await engine.execute(Deposit("c0", 1, "after restart", "k-after"))
        assert isinstance(outcome, Operation), outcome
        accounts = await asyncio.gather(*(engine.get_account("main", f"c{n}") for n in range(8)))
        assert [a.balance_cents for a in accounts] == [101] + [100] * 7


@pytest.mark.parametrize("default", ["off", "local", "remote_write"])
async def test_commits_are_durable_whatever_the_database_default(
    postgres_server: PostgresTestServer, postgres_url: str, default: str
) -> None:
    """A database (or role) whose default is `synchronous_commit = off` would have each
    commit answered before its flush (`local`, `remote_write`: before a synchronous
    standby has it): the store's connections ask for a durable one."""
    database = urlsplit(postgres_url).path.lstrip("/")
    postgres_server.psql(f'ALTER DATABASE "{database}" SET synchronous_commit = {default}')
    plain = await asyncpg.connect(postgres_url)
    try:
        assert await plain.fetchval("SHOW synchronous_commit") == default
    finally:
        await plain.close()
    store = PostgresStore(postgres_url)
    async with Engine(store) as engine:
        applied = await engine.execute(Deposit("Ann", 100, "pay", "k1"))
        assert isinstance(applied, Operation)
        assert store._pool is not None
        connections = [await store._pool.acquire() for _ in range(3)]
        try:
            levels = [await c.fetchval("SHOW synchronous_commit") for c in connections]
        finally:
            for connection in connections:
                await store._pool.release(connection)
    assert levels == ["on", "on", "on"]


@pytest.mark.parametrize("default", ["repeatable read", "serializable"])
async def test_processes_starting_together_take_turns_whatever_the_isolation_default(
    postgres_server: PostgresTestServer, postgres_url: str, default: str
) -> None:
    """A database (or role) whose default isolation is stricter than READ COMMITTED gave
    each transaction one snapshot, taken before its lock waits: a process that waited
    for another's migration read the schema as it was before it and migrated it again
    ("relation already exists"), and a batch that waited for a row did not see a key
    applied meanwhile. The store's connections ask for READ COMMITTED."""
    database = urlsplit(postgres_url).path.lstrip("/")
    postgres_server.psql(
        f"ALTER DATABASE \"{database}\" SET default_transaction_isolation = '{default}'"
    )
    for _ in range(3):
        stores = [PostgresStore(postgres_url) for _ in range(3)]
        opened = await asyncio.gather(*(store.open() for store in stores), return_exceptions=True)
        for store, outcome in zip(stores, opened, strict=True):
            if outcome is None:
                await store.close()
        assert opened == [None, None, None]
        await _dropped_schema(postgres_url)
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        assert store._pool is not None
        async with store._pool.acquire() as connection, connection.transaction():
            assert await connection.fetchval("SHOW transaction_isolation") == "read committed"
    finally:
        await store.close()


async def _dropped_schema(url: str) -> None:
    """The database as empty as a new one, for processes to start on together again."""
    admin = await asyncpg.connect(url)
    try:
        await admin.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await admin.close()


@pytest.mark.parametrize("named_by", ["PGDATABASE", "?dbname="])
async def test_a_url_whose_path_is_a_bare_slash_names_the_database_as_psql_reads_it(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, named_by: str
) -> None:
    """`postgresql://user@host:port/` names no database: libpq (psql) then takes the
    URL's `dbname` or PGDATABASE. The driver read the bare "/" as an empty name and
    took the user's database, so a ledger went into another database than psql's."""
    parts = urlsplit(postgres_url)
    database = parts.path.lstrip("/")
    if named_by == "PGDATABASE":
        monkeypatch.setenv("PGDATABASE", database)
        url = urlunsplit(parts._replace(path="/"))
    else:
        url = urlunsplit(parts._replace(path="/", query=f"dbname={database}"))
    store = PostgresStore(url)
    await store.open()
    try:
        assert store.database == database
    finally:
        await store.close()


async def test_a_token_made_whose_answer_is_lost_is_not_said_to_be_unapplied(
    postgres_url: str,
) -> None:
    """The INSERT committed and its answer was lost: "nothing was applied" had the admin
    make another, and a live token whose secret no one was shown stayed behind."""
    record, _ = new_token_record("teller", None)
    async with relayed(postgres_url) as (relay, url):
        store = PostgresStore(url)
        await store.open()
        try:
            relay.armed, relay.cut_at = True, b"INSERT 0 1"
            with pytest.raises(Unavailable) as lost:
                await store.put_token(record)
            assert relay.cuts == 1
        finally:
            await store.close()
    assert lost.value.code == "outcome_unknown"
    assert lost.value.message == (
        "lost the database while writing this; whether this was applied is not known:"
        " look before repeating it"
    )
    connection = await asyncpg.connect(postgres_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM tokens WHERE id = $1", record.id)
    finally:
        await connection.close()


async def test_a_commit_lost_with_the_database_says_once_that_its_outcome_is_not_known(
    postgres_url: str,
) -> None:
    """The database gone after the COMMIT went out: nothing settles it now. Its message
    said "not known yet", which the shell's own advice (look before repeating an opening)
    did not recognise, so the two were said one after the other."""
    async with relayed(postgres_url) as (relay, url), Engine(PostgresStore(url)) as engine:
        relay.armed, relay.refuse_after_cut = True, True
        with pytest.raises(Unavailable) as lost:
            await engine.execute(Deposit("Bob", 250, "lost answer", "k1"))
        assert relay.cuts == 1
        outcome = lost.value
        assert outcome.code == "outcome_unknown"
        assert unknown_cause(outcome) == "lost the database while committing"
        assert outcome.message == f"{unknown_cause(outcome)}{NOT_KNOWN}{RETRY_UNDER_THE_KEY}"
