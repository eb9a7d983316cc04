"""The SQLite schema: upgrades in place, and its own guards refuse bad rows written
behind the ledger's back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

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
        "INSERT INTO accounts (id, ledger, client, balance, created_at)"
        " VALUES (1, 'main', 'A', 0, 0)"
    )
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
    assert connection.execute("SELECT client, balance FROM accounts").fetchall() == [("A", 500)]
    assert connection.execute("SELECT count(*) FROM sandboxes").fetchone()[0] == 0
    assert migrate(connection) == SCHEMA_VERSION  # again: nothing to do
