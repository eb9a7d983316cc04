"""The SQLite schema: upgrades in place, and its own guards refuse bad rows written
behind the ledger's back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kopilka.errors import Unavailable
from kopilka.store.sqlite import connect, migrate
from kopilka.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION

OPERATION = (
    "INSERT INTO operations (ledger, idempotency_key, kind, amount, debit_account_id,"
    " credit_account_id, description, created_at) VALUES ('main', ?, ?, ?, ?, ?, '', 0)"
)


@pytest.fixture
def database(tmp_path: Path) -> sqlite3.Connection:
    connection = connect(str(tmp_path / "schema.db"))
    migrate(connection)
    connection.execute(
        "INSERT INTO accounts (id, ledger, client, created_at) VALUES (1, 'main', 'A', 0)"
    )
    connection.execute("INSERT INTO balances (account_id, balance) VALUES (1, 0)")
    return connection


def test_a_well_formed_operation_is_accepted(database: sqlite3.Connection) -> None:
    for kind in ("deposit", "withdrawal", "transfer"):
        database.execute(OPERATION, (f"k-{kind}", kind, 100, None, 1))
    assert database.execute("SELECT count(*) FROM operations").fetchone()[0] == 3


@pytest.mark.parametrize(
    ("kind", "amount", "debit", "credit"),
    [
        ("gift", 100, None, 1),  # unknown kind
        ("Deposit", 100, None, 1),  # kinds are exact
        ("deposit", 0, None, 1),  # no zero amounts
        ("deposit", -5, None, 1),  # nor negative ones
        ("deposit", 100, None, None),  # an operation touches at least one account
        ("deposit", 100, None, 99),  # and only accounts that exist
    ],
)
def test_a_bad_operation_is_refused(
    database: sqlite3.Connection, kind: str, amount: int, debit: int | None, credit: int | None
) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        database.execute(OPERATION, ("k", kind, amount, debit, credit))


def test_an_entry_of_zero_is_refused(database: sqlite3.Connection) -> None:
    database.execute(OPERATION, ("k", "deposit", 100, None, 1))
    with pytest.raises(sqlite3.IntegrityError):
        database.execute(
            "INSERT INTO entries (operation_id, account_id, amount, balance_after, created_at)"
            " VALUES (1, 1, 0, 0, 0)"
        )


def test_a_database_of_the_first_version_is_upgraded_keeping_its_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    old = connect(path)
    old.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1")
    old.execute(
        "INSERT INTO accounts (id, ledger, client, balance, created_at)"
        " VALUES (1, 'main', 'A', 500, 0)"
    )
    old.close()

    connection = connect(path)
    assert migrate(connection) == 1  # the version it found
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute(
        "SELECT client, balance FROM accounts JOIN balances ON account_id = id"
    ).fetchall() == [("A", 500)]
    assert connection.execute("SELECT count(*) FROM sandboxes").fetchone()[0] == 0
    assert migrate(connection) == SCHEMA_VERSION  # again: nothing to do


def _schema_4_with_history(path: str) -> None:
    """A database of schema 4 (balances still in accounts) with operations referring to
    its accounts, as the last release left it."""
    old = connect(path)
    old.execute("PRAGMA foreign_keys = OFF")  # as migrate() ran the first four
    for number, migration in enumerate(MIGRATIONS[:4], start=1):
        old.executescript(f"{migration}; PRAGMA user_version = {number}")
    old.execute("PRAGMA foreign_keys = ON")
    old.executemany(
        "INSERT INTO accounts (id, ledger, client, balance, min_balance, max_balance,"
        " created_at) VALUES (?, 'main', ?, ?, ?, ?, 0)",
        [(1, "A", 400, -100, None), (2, "B", 100, 0, 1_000)],
    )
    old.execute(
        "INSERT INTO operations (id, ledger, idempotency_key, kind, amount, debit_account_id,"
        " credit_account_id, description, created_at)"
        " VALUES (1, 'main', 'k1', 'transfer', 100, 1, 2, 'rent', 0)"
    )
    old.executemany(
        "INSERT INTO entries (operation_id, account_id, amount, balance_after, created_at)"
        " VALUES (1, ?, ?, ?, 0)",
        [(1, -100, 400), (2, 100, 100)],
    )
    old.close()


def test_schema_4_moves_balances_to_their_own_table_keeping_every_reference(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "four.db")
    _schema_4_with_history(path)

    connection = connect(path)
    assert migrate(connection) == 4
    assert connection.execute(
        "SELECT id, client, balance, min_balance, max_balance"
        " FROM accounts JOIN balances ON account_id = id ORDER BY id"
    ).fetchall() == [(1, "A", 400, -100, None), (2, "B", 100, 0, 1_000)]
    assert "balance" not in {row[1] for row in connection.execute("PRAGMA table_info(accounts)")}
    assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    # The operations and entries still refer to the (rebuilt) accounts table.
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute(OPERATION, ("k2", "deposit", 100, None, 99))
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute("UPDATE balances SET balance = 1001 WHERE account_id = 2")
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute("INSERT INTO balances (account_id, balance) VALUES (99, 0)")


def test_an_upgrade_that_would_break_a_reference_changes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "dangling.db")
    _schema_4_with_history(path)
    old = connect(path)
    old.execute("PRAGMA foreign_keys = OFF")
    old.execute("UPDATE entries SET account_id = 99 WHERE account_id = 2")  # damaged by hand
    old.close()

    connection = connect(path)
    with pytest.raises(Unavailable, match="entries"):
        migrate(connection)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 4
    assert connection.execute("SELECT count(*) FROM accounts").fetchone()[0] == 2
    assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
