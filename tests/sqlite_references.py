"""The audit of a SQLite file's declared references, run after the tests that write one."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def assert_references_whole(path: Path) -> None:
    """SQLite declares the ledger's references without checking them row by row (as
    PostgreSQL has none): every row a test left must still refer to a row that exists."""
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        connection.close()
