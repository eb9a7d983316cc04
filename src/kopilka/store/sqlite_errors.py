"""What a SQLite error says, by its code rather than its words."""

from __future__ import annotations

import sqlite3

# SQLITE_CORRUPT and SQLITE_NOTADB: the file itself is at fault, not this moment.
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def not_cents(where: str) -> sqlite3.DatabaseError:
    """Damage kopilka finds in what it reads, raised as SQLite's own is, so that it is told
    the same way (database_damaged, in the log once, the server not ready): an amount
    that is no whole number of cents, which the tables' CHECKs let by, as the tables are
    not STRICT (a REAL or a text another program wrote). Never computed with."""
    error = sqlite3.DatabaseError(f"{where} holds an amount that is no whole number of cents")
    error.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
    return error


def is_busy(error: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (any extended code of them): another writer."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:  # raised by the module itself, not by SQLite
        return isinstance(error, sqlite3.OperationalError)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def is_read_only(error: sqlite3.Error) -> bool:
    """SQLITE_READONLY (any extended code of it): a file this process may not write."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_READONLY


def is_damaged(error: sqlite3.Error) -> bool:
    """SQLITE_CORRUPT or SQLITE_NOTADB (any extended code): no retry mends the file."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _DAMAGED


def is_a_constraints_refusal(error: sqlite3.Error) -> bool:
    """SQLITE_CONSTRAINT_CHECK or SQLITE_CONSTRAINT_TRIGGER: a CHECK, or a trigger's
    RAISE(ABORT), refused the data written (another program's, or the last guard of
    kopilka's own), not a fault of the database."""
    code = getattr(error, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_TRIGGER)


def is_not_a_database(error: sqlite3.Error) -> bool:
    """SQLITE_NOTADB: a file of something else (text, an image), no database at all.
    (It has no extended codes; its low byte is read as the others' are.)"""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_NOTADB
