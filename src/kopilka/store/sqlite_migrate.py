"""The SQLite schema's version (`PRAGMA user_version`): create or upgrade the schema,
refuse one this kopilka does not know (newer, or tables another program made)."""

from __future__ import annotations

import functools
import shlex
import sqlite3
from contextlib import closing

from kopilka.domain.model import client_name
from kopilka.domain.names import folded_name
from kopilka.errors import Unavailable
from kopilka.store.not_a_ledger import newer_schema, refuse_foreign_tables
from kopilka.store.sqlite_errors import is_busy
from kopilka.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, statements

# Every table and view of a database, its own bookkeeping (sqlite_sequence) aside.
OBJECTS_FOUND = (
    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
    " AND name NOT LIKE 'sqlite~_%' ESCAPE '~' ORDER BY name"
)


def look_inside(connection: sqlite3.Connection) -> tuple[int, list[str]]:
    """The database's user_version and the names of its tables and views, read in one
    transaction: read apart, a schema another process committed between the two read as
    version 0 with kopilka's tables, "tables kopilka did not create"."""
    connection.execute("BEGIN")  # the first read below fixes what both see
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        names = [row[0] for row in connection.execute(OBJECTS_FOUND)]
    finally:
        if connection.in_transaction:  # not when SQLite ended it itself, on an error
            connection.execute("ROLLBACK")
    return int(version), names


def _nfc(value: str | bytes | int | float | None) -> str | bytes | int | float | None:
    """A client name in NFC (client_name), for SQL; NULL and non-text pass unchanged."""
    return client_name(value) if isinstance(value, str) else value


def _fold(value: str | bytes | int | float | None) -> str | bytes | int | float | None:
    """A client name folded for case (folded_name), for SQL; as _nfc for the rest."""
    return folded_name(value) if isinstance(value, str) else value


def migrate(connection: sqlite3.Connection) -> int:
    """Create or upgrade the schema; refuse a newer one this version does not know, and
    tables kopilka did not create."""
    # A migration may rebuild a table others refer to (foreign keys are off, see
    # connect()); every reference is checked before the upgrade commits.
    # SQLite has no Unicode normalization: migration 6 rewrites client names in NFC
    # with the very function the ledger normalizes every name with, and 10 folds them
    # for case with the one the ledger compares new names by.
    connection.create_function("nfc", 1, _nfc, deterministic=True)
    connection.create_function("fold", 1, _fold, deterministic=True)
    # An up-to-date schema is only read: no write lock to wait for behind another
    # process's long transaction (WAL lets this read go on beside it).
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return int(version)
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        if not is_busy(error):
            raise
        # Another process upgrading a big ledger holds the lock for as long as it takes:
        # "database is locked" said nothing of why, nor that trying later would do.
        raise Unavailable(
            "store_busy",
            f"the schema of {_path_of(connection)} (version {version}) needs an upgrade,"
            " and another process holds its write lock (upgrading it, say); nothing was"
            " changed: try again once it is done",
        ) from error
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise newer_schema(_path_of(connection), version, SCHEMA_VERSION)
        if version < 0:  # else MIGRATIONS[version] would run: the last ones, on no schema
            raise unknown_version(_path_of(connection), version)
        if version == 0:
            _refuse_foreign_tables(connection)
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in statements(MIGRATIONS[number - 1]):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
        if version < SCHEMA_VERSION:
            broken = connection.execute("PRAGMA foreign_key_check").fetchone()
            if broken is not None:
                raise Unavailable(
                    "broken_schema",
                    f"cannot upgrade the schema: a row of {broken[0]} refers to a "
                    f"missing row of {broken[2]}; nothing was changed",
                )
        connection.execute("COMMIT")
        return int(version)
    except BaseException:
        # A write that failed for want of space (or any I/O error) has rolled the
        # transaction back already: a ROLLBACK then fails and hides why.
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def missing_folds(connection: sqlite3.Connection) -> list[tuple[int, str]]:
    """The accounts left without a folded name whose fold no account of their ledger
    holds, oldest first, with that fold: those an older kopilka opened after schema 10.
    Names alike an account holding the fold (kept apart by the upgrade) are not among
    them. Only read: a ledger with none is not written (`kopilka init`)."""
    unfolded = connection.execute(
        "SELECT id, ledger, client FROM accounts WHERE folded IS NULL ORDER BY id"
    ).fetchall()
    missing = []
    for account_id, ledger, client in unfolded:
        folded = folded_name(client)
        held = connection.execute(
            "SELECT 1 FROM accounts WHERE ledger = ? AND folded = ?", (ledger, folded)
        ).fetchone()
        if held is None:
            missing.append((account_id, folded))
    return missing


def give_folds(connection: sqlite3.Connection, missing: list[tuple[int, str]]) -> int:
    """Write `missing` (missing_folds, read before this transaction) in the caller's
    transaction; how many were given. The oldest of names alike each other gets the fold,
    and a fold its ledger holds by now (the unique index) leaves the account as it is."""
    return sum(
        connection.execute(
            "UPDATE OR IGNORE accounts SET folded = ? WHERE id = ? AND folded IS NULL",
            (folded, account_id),
        ).rowcount
        for account_id, folded in missing
    )


def unknown_version(location: str, version: int) -> Unavailable:
    """A negative user_version, which no kopilka sets, in a file with kopilka's tables."""
    return Unavailable(
        "unknown_schema",
        f"the database at {location} has schema version {version}, which no kopilka sets;"
        " restore it from a backup",
    )


# A schema's every table, index, view and trigger, as SQLite keeps their definitions.
_SCHEMA_ROWS = (
    "SELECT type, name, tbl_name, sql FROM sqlite_master"
    " WHERE name NOT LIKE 'sqlite~_%' ESCAPE '~' ORDER BY type, name"
)


@functools.cache
def _schema_made_now() -> list[tuple[str, str, str, str | None]]:
    with closing(sqlite3.connect(":memory:")) as fresh:
        migrate(fresh)
        return fresh.execute(_SCHEMA_ROWS).fetchall()


def version_lost(location: str, connection: sqlite3.Connection) -> Unavailable:
    """kopilka's tables, and no schema version (user_version 0): a copy made with sqlite3's
    `.dump`, which does not carry it. Said so, not as tables kopilka did not create, with
    the version to set where the schema is this kopilka's to the letter."""
    lost = (
        f"the database at {location} holds kopilka's tables but no schema version (a copy"
        " made with sqlite3's .dump loses it)"
    )
    if connection.execute(_SCHEMA_ROWS).fetchall() == _schema_made_now():
        return Unavailable(
            "unknown_schema",
            f"{lost}; they are those of schema version {SCHEMA_VERSION}, this kopilka's: if"
            " it is a copy of a ledger, set it with"
            f" sqlite3 {shlex.quote(location)} 'PRAGMA user_version = {SCHEMA_VERSION}'",
        )
    return Unavailable(
        "unknown_schema",
        f"{lost}, not exactly those of this kopilka's schema (version {SCHEMA_VERSION}):"
        " restore the ledger from a backup made with .backup or VACUUM INTO"
        " (docs/operations.md, Backups)",
    )


def _path_of(connection: sqlite3.Connection) -> str:
    return str(connection.execute("PRAGMA database_list").fetchone()[2])


def _refuse_foreign_tables(connection: sqlite3.Connection) -> None:
    """No schema yet (user_version 0): refuse a file that holds tables already. A SQLite
    file is one program's database: kopilka's tables are not put among another's (a
    shell opened on the wrong file would have), nor beside tables of kopilka's names."""
    found = [name for (name,) in connection.execute(OBJECTS_FOUND)]
    if found:
        refuse_foreign_tables(_path_of(connection), tuple(found), found)
