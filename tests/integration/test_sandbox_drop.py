"""A big sandbox dropped (its session closed, or idle) over a real SQLite file or
PostgreSQL database: other ledgers' writes go on meanwhile, and what its readers see of
it stays whole until it is gone."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from tests.sqlite_references import assert_references_whole

from kopilka.api.sandbox import Sandboxes
from kopilka.domain.model import ClaimKey, Deposit, Operation, Transfer, Withdraw
from kopilka.errors import KopilkaError
from kopilka.store import open_store
from kopilka.store.postgres_dropping import Emptying
from kopilka.store.protocol import Store
from kopilka.store.sqlite import SqliteStore

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
SANDBOX = "sandbox-0123456789abcdef-0a1b2c3d4e5f"
LEGACY = "sandbox-books"  # named by hand, as an older kopilka let a ledger be
CLIENTS = [f"Client {number:02}" for number in range(20)]
# A slice this small makes a drop of the sandbox below take a few hundred of them.
SLICE_ROWS = 50
# Tables with a ledger column; entries and balances go with their accounts.
LEDGER_TABLES = ("accounts", "operations", "refusals", "batch_requests", "sandboxes")


@dataclass
class Backend:
    store: Store
    url: str
    path: Path | None  # the SQLite file

    async def execute(self, statement: str, *arguments: object) -> None:
        """A statement beside the store (`$1` for its first argument)."""
        if self.path is not None:
            with contextlib.closing(sqlite3.connect(self.path)) as db, db:
                db.execute(statement.replace("$1", "?"), arguments)
            return
        connection = await asyncpg.connect(self.url)
        try:
            await connection.execute(statement, *arguments)
        finally:
            await connection.close()

    async def rows_of(self, ledger: str) -> int:
        """The ledger's rows in every table, read beside the store (entries through the
        accounts they belong to)."""
        counts = [f"(SELECT count(*) FROM {table} WHERE ledger = $1)" for table in LEDGER_TABLES]
        counts.append(
            "(SELECT count(*) FROM entries e JOIN accounts a ON a.id = e.account_id"
            " WHERE a.ledger = $1)"
        )
        query = "SELECT " + " + ".join(counts)
        if self.path is not None:
            with contextlib.closing(sqlite3.connect(self.path)) as db:
                return int(
                    db.execute(query.replace("$1", ":ledger"), {"ledger": ledger}).fetchone()[0]
                )
        connection = await asyncpg.connect(self.url)
        try:
            return int(await connection.fetchval(query, ledger))
        finally:
            await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        path: Path | None = tmp_path / "kopilka.db"
        url = str(path)
    else:
        path, url = None, request.getfixturevalue("postgres_url")
    store = open_store(url)
    await store.open()
    try:
        yield Backend(store, url, path)
    finally:
        await store.close()
    if path is not None:
        assert_references_whole(path)


async def a_big_sandbox(store: Store, opened: datetime) -> None:
    """Thousands of transfers among its accounts, a refusal and a batch's claim: rows in
    every table a sandbox has."""
    assert await store.open_sandbox(SANDBOX, opened, sandboxes_max=10)
    await store.apply(
        [Deposit(client, 1_000_000, "seed", f"seed {client}", SANDBOX) for client in CLIENTS]
    )
    for batch in range(3):
        transfers = [
            Transfer(
                CLIENTS[n % 20], CLIENTS[(n + 7) % 20], 1 + n % 5, "play", f"t{batch}-{n}", SANDBOX
            )
            for n in range(1_000)
        ]
        await store.apply(transfers)
    refused = await store.apply(
        [
            ClaimKey(SANDBOX, "batch-1", "digest", covers=1),
            Withdraw(CLIENTS[0], 10**9, "too much", "batch-1:0", SANDBOX),
        ]
    )
    assert isinstance(refused[1], KopilkaError) and refused[1].code == "insufficient_funds"


async def assert_each_history_whole(store: Store) -> None:
    """Every account of the sandbox still there reads as it did: its lines, as many as
    are left, each follow from the one before, from its first (the newest go first)."""
    for client in CLIENTS:
        account = await store.get_account(SANDBOX, client)
        if account is None:
            continue
        lines = await store.statement_page(account.id, None, FAR_FUTURE, 0, 100_000)
        balance = 0
        for line in lines:
            balance += line.amount_cents
            assert line.balance_after_cents == balance, (client, line)
        assert not lines or lines[0].description == "seed"


@pytest.mark.parametrize("ended", ["closed", "idle"])
@pytest.mark.timeout(120)
async def test_a_write_to_the_main_ledger_goes_on_while_a_big_sandbox_is_dropped(
    backend: Backend, ended: str
) -> None:
    """The drop deleted every row of the sandbox in one transaction: on SQLite, with the
    database's one write lock held, a main-ledger deposit waited for all of it (9 s for
    the reaper's drop of five sandboxes of 240,000 transfers, and SQLite refuses a write
    that waits 10 s). The sandbox ends in a short transaction; its rows go in slices of
    their own, and the deposit goes through between two of them."""
    store = backend.store
    opened = datetime(2030, 1, 1, tzinfo=UTC)
    await a_big_sandbox(store, opened)
    main = await store.apply([Deposit("Main", 100, "pay", "m1")])
    assert isinstance(main[0], Operation)
    rows = await backend.rows_of(SANDBOX)
    store.sandbox_slice_rows = SLICE_ROWS  # type: ignore[attr-defined]

    if ended == "closed":
        dropping = asyncio.create_task(store.drop_sandbox(SANDBOX))
    else:
        dropping = asyncio.create_task(store.drop_idle_sandboxes(opened + timedelta(seconds=1)))
    while await store.sandbox_is_open(SANDBOX):
        await asyncio.sleep(0)
    # Ended: no write applies in it any more; its rows are still being taken out.
    late = await store.apply([Deposit(CLIENTS[0], 1, "late", "late-1", SANDBOX)])
    assert isinstance(late[0], KopilkaError) and late[0].code == "sandbox_not_found"
    during = await store.apply([Deposit("Main", 5, "pay", "m2")])
    assert isinstance(during[0], Operation)
    assert not dropping.done(), "the main ledger's write waited for the whole drop"
    left = await backend.rows_of(SANDBOX)
    assert 0 < left < rows
    await assert_each_history_whole(store)
    if backend.path is not None:
        assert_references_whole(backend.path)  # no row left names one gone

    assert await dropping in (True, [SANDBOX])
    assert await backend.rows_of(SANDBOX) == 0
    assert await store.get_account(SANDBOX, CLIENTS[0]) is None
    assert await store.empty_ended_sandboxes() == []
    account = await store.get_account("main", "Main")
    assert account is not None and account.balance_cents == 105
    lines = await store.statement_page(account.id, None, FAR_FUTURE, 0, 10)
    assert [line.balance_after_cents for line in lines] == [100, 105]


@pytest.mark.timeout(120)
async def test_a_drop_cut_short_is_finished_by_whoever_looks_next(backend: Backend) -> None:
    """A sandbox ended whose rows were not all taken out (its server killed, or stopped,
    in the middle) is no one's: looked for, its rows go, and nothing else's."""
    store = backend.store
    opened = datetime(2030, 1, 1, tzinfo=UTC)
    await a_big_sandbox(store, opened)
    await store.apply(
        [Deposit("Main", 100, "pay", "m1"), Deposit("Lookalike", 7, "x", "k", "sandbox")]
    )
    # A ledger an older kopilka let anyone name so: rows, and no sandbox open.
    assert await store.open_sandbox(LEGACY, opened, sandboxes_max=10)
    await store.apply([Deposit("Old", 9, "x", "k", LEGACY)])
    await backend.execute("DELETE FROM sandboxes WHERE ledger = $1", LEGACY)
    store.sandbox_slice_rows = SLICE_ROWS  # type: ignore[attr-defined]
    dropping = asyncio.create_task(store.drop_sandbox(SANDBOX))
    while await store.sandbox_is_open(SANDBOX):
        await asyncio.sleep(0)
    dropping.cancel()  # as a stop cuts it short: the slice under way ends as it would
    with contextlib.suppress(asyncio.CancelledError):
        await dropping
    assert await backend.rows_of(SANDBOX) > 0
    assert await store.empty_ended_sandboxes() == [SANDBOX]
    assert await backend.rows_of(SANDBOX) == 0
    assert await store.empty_ended_sandboxes() == []
    # A ledger whose name only looks like a sandbox's is no sandbox: left as it was.
    for ledger, client, cents in (
        ("main", "Main", 100),
        ("sandbox", "Lookalike", 7),
        (LEGACY, "Old", 9),
    ):
        account = await store.get_account(ledger, client)
        assert account is not None and account.balance_cents == cents


async def test_an_entry_out_of_time_order_goes_with_its_sandbox_too(tmp_path: Path) -> None:
    """The drop walks a sandbox's entries by id down from each account's newest by time:
    one whose time is out of order with its id (none that kopilka writes, but a file
    mended by hand, say) is not left behind to name an operation or account gone."""
    path = tmp_path / "kopilka.db"
    store = SqliteStore(path)
    await store.open()
    try:
        await a_big_sandbox(store, datetime(2030, 1, 1, tzinfo=UTC))
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            newest, oldest = db.execute(
                "SELECT max(e.id), min(e.created_at) FROM entries e"
                " JOIN accounts a ON a.id = e.account_id WHERE a.ledger = ?",
                (SANDBOX,),
            ).fetchone()
            for table, entry in (("entries", "id"), ("statement_index", "entry_id")):
                db.execute(
                    f"UPDATE {table} SET created_at = ? WHERE {entry} = ?", (oldest - 1, newest)
                )
        store.sandbox_slice_rows = SLICE_ROWS
        assert await store.drop_sandbox(SANDBOX)
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute(
                "SELECT count(*) FROM entries WHERE id = ?", (newest,)
            ).fetchone() == (0,)
    finally:
        await store.close()
    assert_references_whole(path)


@pytest.mark.timeout(120)
async def test_the_reaper_ends_idle_sandboxes_without_waiting_for_their_rows(
    backend: Backend,
) -> None:
    """The reaper dropped idle sandboxes and took their rows out before its next round:
    a big one's rows, going a slice at a time, kept the sandboxes that went idle
    meanwhile open past their time. It ends them at once; their rows go after, on the
    task that empties ended sandboxes."""
    store = backend.store
    opened = datetime(2030, 1, 1, tzinfo=UTC)
    await a_big_sandbox(store, opened)
    store.sandbox_slice_rows = SLICE_ROWS  # type: ignore[attr-defined]
    sandboxes = Sandboxes(store, 60, wall_clock=lambda: opened + timedelta(hours=1))
    try:
        assert await sandboxes.reap() == [SANDBOX]
        assert not await store.sandbox_is_open(SANDBOX)
        assert await backend.rows_of(SANDBOX) > 0, "the reaper waited for its rows"
        deadline = asyncio.get_running_loop().time() + 60
        while await backend.rows_of(SANDBOX) > 0:
            assert asyncio.get_running_loop().time() < deadline, "its rows never went"
            await asyncio.sleep(0.05)
    finally:
        await sandboxes.close()


async def test_entries_past_the_statement_index_go_with_their_sandbox(tmp_path: Path) -> None:
    """Transfers in small batches stay past the statement index's end: a slice of them
    came to fewer rows than its budget (a transfer's two entries share one operation),
    the walk went on, and the entries left named accounts and operations gone."""
    path = tmp_path / "kopilka.db"
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.open_sandbox(SANDBOX, FAR_FUTURE, sandboxes_max=10)
        await store.apply([Deposit(c, 10**6, "seed", f"seed {c}", SANDBOX) for c in "ABCD"])
        for start in range(0, 200, 10):
            await store.apply(
                [
                    Transfer("ABCD"[n % 4], "ABCD"[(n + 1) % 4], 1, "t", f"t{n}", SANDBOX)
                    for n in range(start, start + 10)
                ]
            )
        store.sandbox_slice_rows = SLICE_ROWS
        assert await store.drop_sandbox(SANDBOX)
        with contextlib.closing(sqlite3.connect(path)) as db:
            assert db.execute("SELECT count(*) FROM entries").fetchone() == (0,)
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        await store.close()
    assert_references_whole(path)


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_a_slice_another_process_emptied_first_leaves_nothing_behind(
    postgres_url: str,
) -> None:
    """Each process that looks for ended sandboxes empties them. One that waited for
    the rows another was deleting found fewer than it asked for, took that for none
    left past them, and went on: the rest of that account's entries were left, and its
    accounts went while rows of theirs were still there, for nothing to find again."""
    store = open_store(postgres_url)
    await store.open()
    try:
        await a_big_sandbox(store, datetime(2030, 1, 1, tzinfo=UTC))
        assert await store.end_sandbox(SANDBOX)
    finally:
        await store.close()
    first, second = await asyncpg.connect(postgres_url), await asyncpg.connect(postgres_url)
    try:
        ids = [
            row[0]
            for row in await first.fetch("SELECT id FROM accounts WHERE ledger = $1", SANDBOX)
        ]

        async def a_slice(connection: asyncpg.Connection, emptying: Emptying) -> bool:
            async with connection.transaction():
                return await emptying.step(connection)

        ahead = first.transaction()
        await ahead.start()
        assert not await Emptying(SANDBOX, SLICE_ROWS).step(first)
        behind = Emptying(SANDBOX, SLICE_ROWS)
        waiting = asyncio.create_task(a_slice(second, behind))
        await asyncio.sleep(0.3)  # it waits for the rows the first is deleting
        assert not waiting.done()
        await ahead.commit()  # and the first process stops there
        done = await waiting
        while not done:
            done = await a_slice(second, behind)
        left = await first.fetchval(
            "SELECT count(*) FROM entries WHERE account_id = ANY($1::bigint[])", ids
        )
        assert left == 0
        assert (
            await first.fetchval("SELECT count(*) FROM operations WHERE ledger = $1", SANDBOX) == 0
        )
        assert await first.fetchval("SELECT count(*) FROM accounts WHERE ledger = $1", SANDBOX) == 0
    finally:
        await first.close()
        await second.close()


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_sandboxes_emptied_one_after_another_read_no_whole_table(postgres_url: str) -> None:
    """After five runs of a prepared statement the server may plan it for any ledger:
    with the main ledger's statistics, the look for rows left read the whole of
    `entries` for each sandbox, inside a slice's transaction."""
    store = open_store(postgres_url)
    await store.open()
    sandboxes = [f"sandbox-0123456789abcdef-00000000000{number}" for number in range(8)]
    try:
        clients = [f"Main {number}" for number in range(300)]
        await store.apply([Deposit(client, 10_000, "seed", f"s{client}") for client in clients])
        await store.apply(
            [
                Transfer(clients[n % 300], clients[(n + 1) % 300], 1, "t", f"t{n}")
                for n in range(3_000)
            ]
        )
        for sandbox in sandboxes:
            assert await store.open_sandbox(sandbox, datetime(2030, 1, 1, tzinfo=UTC), 10)
            await store.apply([Deposit("Sandy", 5, "play", "k", sandbox)])
            assert await store.end_sandbox(sandbox)
    finally:
        await store.close()
    connection = await asyncpg.connect(postgres_url)
    scans = "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'entries'"
    try:
        await connection.execute("ANALYZE")
        await connection.execute("SELECT pg_stat_force_next_flush()")
        before = await connection.fetchval(scans)
        for sandbox in sandboxes:
            emptying = Emptying(sandbox, SLICE_ROWS)
            while True:
                async with connection.transaction():
                    if await emptying.step(connection):
                        break
        await connection.execute("SELECT pg_stat_force_next_flush()")
        assert await connection.fetchval(scans) == before
    finally:
        await connection.close()
