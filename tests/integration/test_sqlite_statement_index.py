"""The statement index (schema 8): kept by kopilka, which indexes the entries of the last
few batches all at once. Statements read the index and the entries past its end."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from kopilka.domain.model import SANDBOX_PREFIX, Deposit, Transfer
from kopilka.engine import Engine
from kopilka.store.sqlite import SqliteStore, connect
from kopilka.store.sqlite_schema import MIGRATIONS

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def _unindexed(path: Path) -> list[int]:
    """Ids of the entries past the statement index's end, checking that the index holds
    every entry up to it and nothing else."""
    with closing(sqlite3.connect(path)) as connection:
        (upto,) = connection.execute("SELECT entry_id FROM statement_index_upto").fetchone()
        indexed = connection.execute(
            "SELECT account_id, created_at, entry_id FROM statement_index ORDER BY entry_id"
        ).fetchall()
        assert (
            indexed
            == connection.execute(
                "SELECT account_id, created_at, id FROM entries WHERE id <= ? ORDER BY id", (upto,)
            ).fetchall()
        )
        return [
            row[0] for row in connection.execute("SELECT id FROM entries WHERE id > ?", (upto,))
        ]


def _deposit(key: str, cents: int = 100) -> Deposit:
    return Deposit("Ann", cents, "in", key)


async def _balances_after(engine: Engine) -> list[int]:
    statement = await engine.statement("main", "Ann", None, FAR_FUTURE)
    return [line.balance_after_cents for line in statement.lines]


async def test_entries_are_indexed_once_enough_are_past_the_index(tmp_path: Path) -> None:
    path = tmp_path / "kopilka.db"
    engine = Engine(SqliteStore(path, unindexed_entries_max=10))
    await engine.start()
    try:
        seen = []
        for number in range(25):
            await engine.execute(_deposit(f"d{number}"))
            seen.append(len(_unindexed(path)))
        # The tenth entry's batch indexes all ten, the twentieth's the next ten.
        assert seen == [*range(1, 10), 0, *range(1, 10), 0, *range(1, 6)]
        assert await _balances_after(engine) == [100 * n for n in range(1, 26)]
    finally:
        await engine.close()


async def test_a_batch_of_as_many_entries_indexes_them_at_once(tmp_path: Path) -> None:
    path = tmp_path / "kopilka.db"
    engine = Engine(SqliteStore(path, unindexed_entries_max=10))
    await engine.start()
    try:
        await engine.submit_many([_deposit(f"a{n}") for n in range(3)])
        assert len(_unindexed(path)) == 3
        await engine.submit_many([_deposit(f"b{n}") for n in range(10)])
        assert _unindexed(path) == []
        assert await _balances_after(engine) == [100 * n for n in range(1, 14)]
    finally:
        await engine.close()


async def test_another_process_s_entries_count_towards_indexing(tmp_path: Path) -> None:
    """The index's end is read in each batch: two processes sharing the file do not each
    leave as many entries unindexed."""
    path = tmp_path / "kopilka.db"
    first = Engine(SqliteStore(path, unindexed_entries_max=10))
    second = Engine(SqliteStore(path, unindexed_entries_max=10))
    await first.start()
    await second.start()
    try:
        await first.submit_many([_deposit(f"a{n}") for n in range(6)])
        await second.submit_many([_deposit(f"b{n}") for n in range(6)])
        assert _unindexed(path) == []
        await first.submit_many([_deposit(f"c{n}") for n in range(6)])
        assert len(_unindexed(path)) == 6
        assert await _balances_after(second) == [100 * n for n in range(1, 19)]
    finally:
        await first.close()
        await second.close()


async def test_a_dropped_sandbox_s_entries_leave_no_new_one_unread(tmp_path: Path) -> None:
    """The newest entries deleted (a sandbox dropped): new ones take ids past theirs, and
    past the index's end, so statements still read them."""
    path = tmp_path / "kopilka.db"
    store = SqliteStore(path, unindexed_entries_max=4)
    engine = Engine(store)
    await engine.start()
    try:
        await engine.execute(_deposit("main-1"))
        sandbox = f"{SANDBOX_PREFIX}tester"
        assert await store.open_sandbox(sandbox, datetime.now(UTC), sandboxes_max=1)
        await engine.submit_many(
            [Deposit("Bob", 100, "in", f"s{n}", ledger=sandbox) for n in range(4)]
        )
        assert _unindexed(path) == []  # the sandbox's entries indexed with the first
        assert await store.drop_sandbox(sandbox)
        await engine.execute(_deposit("main-2"))
        assert _unindexed(path) == [6]  # past the sandbox's 2 to 5
        assert await _balances_after(engine) == [100, 200]
    finally:
        await engine.close()


async def test_a_schema_7_history_reads_the_same_after_the_upgrade(tmp_path: Path) -> None:
    """Its entries are indexed; statements, opening balances and replays read them and
    the new ones past the index's end together."""
    path = tmp_path / "seven.db"
    with closing(connect(str(path))) as old:
        old.create_function("nfc", 1, lambda name: name)  # migrations 6, 7: no rows yet
        for number, migration in enumerate(MIGRATIONS[:7], start=1):
            old.executescript(f"{migration}; PRAGMA user_version = {number}")
        old.executemany(
            "INSERT INTO accounts (id, ledger, client, created_at) VALUES (?, 'main', ?, 0)",
            [(1, "Ann"), (2, "Bob")],
        )
        old.executemany(
            "INSERT INTO balances (account_id, balance) VALUES (?, ?)", [(1, 300), (2, 200)]
        )
        old.executemany(
            "INSERT INTO operations (id, ledger, idempotency_key, kind, amount,"
            " debit_account_id, credit_account_id, description, created_at)"
            " VALUES (?, 'main', ?, ?, ?, ?, ?, 'old', ?)",
            [(1, "k1", "deposit", 500, None, 1, 10), (2, "k2", "transfer", 200, 1, 2, 20)],
        )
        old.executemany(
            "INSERT INTO entries (operation_id, account_id, amount, balance_after, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(1, 1, 500, 500, 10), (2, 1, -200, 300, 20), (2, 2, 200, 200, 20)],
        )
        old.commit()

    engine = Engine(SqliteStore(path))
    await engine.start()
    try:
        assert _unindexed(path) == []
        await engine.execute(Transfer("Ann", "Bob", 50, "new", "k3"))
        assert _unindexed(path) == [4, 5]
        statement = await engine.statement("main", "Ann", None, FAR_FUTURE)
        assert [(line.amount_cents, line.balance_after_cents) for line in statement.lines] == [
            (500, 500),
            (-200, 300),
            (-50, 250),
        ]
        since_the_transfer = datetime.fromtimestamp(20 / 1e6, UTC)
        later = await engine.statement("main", "Ann", since_the_transfer, FAR_FUTURE)
        assert later.opening_balance_cents == 500
        assert [line.amount_cents for line in later.lines] == [-200, -50]
        for transfer, balances in (
            (Transfer("Ann", "Bob", 200, "old", "k2"), (300, 200)),
            (Transfer("Ann", "Bob", 50, "new", "k3"), (250, 250)),
        ):
            replayed = await engine.execute(transfer)
            assert replayed.replayed
            assert (replayed.debit_balance_after_cents, replayed.credit_balance_after_cents) == (
                balances
            )
    finally:
        await engine.close()


async def test_entries_deleted_and_written_by_a_kopilka_that_knows_no_index(
    tmp_path: Path,
) -> None:
    """A schema-7 kopilka left running over the upgrade deletes a ledger's entries and
    writes new ones by plain SQL: the index loses the deleted entries with them, and the
    new ones, taking their ids, are read past its end (not as stale index rows: another
    client's lines, or none)."""
    path = tmp_path / "kopilka.db"
    engine = Engine(SqliteStore(path, unindexed_entries_max=4))
    await engine.start()
    try:
        await engine.execute(_deposit("ann-1"))
        await engine.submit_many([Deposit("Bob", 100, "in", f"b{n}") for n in range(4)])
        assert _unindexed(path) == []
        with closing(sqlite3.connect(path)) as older:  # as schema 7's _delete_ledger did
            (bob,) = older.execute("SELECT id FROM accounts WHERE client = 'Bob'").fetchone()
            older.execute("DELETE FROM entries WHERE account_id = ?", (bob,))
            older.execute("DELETE FROM operations WHERE credit_account_id = ?", (bob,))
            older.execute("DELETE FROM balances WHERE account_id = ?", (bob,))
            older.execute("DELETE FROM accounts WHERE id = ?", (bob,))
            (ann,) = older.execute("SELECT id FROM accounts WHERE client = 'Ann'").fetchone()
            (later,) = older.execute("SELECT max(created_at) + 1 FROM operations").fetchone()
            operation = older.execute(
                "INSERT INTO operations (ledger, idempotency_key, kind, amount,"
                " credit_account_id, description, created_at)"
                " VALUES ('main', 'older', 'deposit', 100, ?, 'in', ?)",
                (ann, later),
            ).lastrowid
            older.execute(
                "INSERT INTO entries (operation_id, account_id, amount, balance_after, created_at)"
                " VALUES (?, ?, 100, 200, ?)",
                (operation, ann, later),
            )
            older.execute("UPDATE balances SET balance = 200 WHERE account_id = ?", (ann,))
            older.commit()
        assert _unindexed(path) == [2]  # a deleted entry's id, past the index's end
        assert await _balances_after(engine) == [100, 200]
    finally:
        await engine.close()
