"""The audit of a SQLite file's declared references, run after the tests that write one."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def assert_references_whole(path: Path) -> None:
    """SQLite declares the ledger's references without checking them row by row (as
    PostgreSQL has none): every row a test left must still refer to a row that exists."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("BEGIN")  # one snapshot, though a writer commits beside it
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        # The statement index, kept by kopilka: every entry up to its end, and no other.
        (upto,) = connection.execute("SELECT entry_id FROM statement_index_upto").fetchone()
        assert (
            connection.execute(
                "SELECT account_id, created_at, entry_id FROM statement_index ORDER BY entry_id"
            ).fetchall()
            == connection.execute(
                "SELECT account_id, created_at, id FROM entries WHERE id <= ? ORDER BY id", (upto,)
            ).fetchall()
        )
    finally:
        connection.close()
