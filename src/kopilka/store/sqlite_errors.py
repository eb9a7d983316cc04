"""What a SQLite error says, by its code rather than its words."""

from __future__ import annotations

import sqlite3


def is_busy(error: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (any extended code of them): another writer."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:  # raised by the module itself, not by SQLite
        return isinstance(error, sqlite3.OperationalError)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
