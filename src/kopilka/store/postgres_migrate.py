"""The PostgreSQL schema's version: read it, create or upgrade it, refuse one this
kopilka does not know (newer, or tables of its names that another tool made)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from kopilka.domain.names import folded_name
from kopilka.errors import Unavailable
from kopilka.store.not_a_ledger import (
    missing_tables,
    newer_schema,
    no_ledger,
    refuse_foreign_tables,
)
from kopilka.store.postgres_schema import (
    FOLDED_NAMES_UNIQUE,
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    NAMED_SEQUENCES,
    SCHEMA_MIGRATIONS_TABLE,
    SCHEMA_VERSION,
    TABLES,
)

Connection = Any  # asyncpg ships no type hints

SERVER_VERSION_MIN = 13
# An upgrade of a big ledger (an index built, every name rewritten), and a wait behind
# another process's, may take far longer than a request's statement is given (the
# pool's command timeout, a minute): bounded at an hour instead.
MIGRATION_SECONDS_MAX = 3600.0

logger = logging.getLogger(__name__)


async def migrate(connection: Connection, redacted_url: str, *, create: bool = True) -> int:
    """Create or upgrade the schema; refuse a newer one, and tables kopilka did not
    create. Returns the version found. With `create` False an empty database is
    refused instead.

    An up-to-date schema is only read, so a server whose role may only read and
    write rows (no CREATE) opens it. Otherwise the transaction-scoped advisory lock
    makes processes that start together take turns; the migrations and their
    version rows commit together or not at all.
    """
    major = connection.get_server_version().major
    if major < SERVER_VERSION_MIN:
        raise Unavailable(
            "unsupported_database",
            f"kopilka needs PostgreSQL {SERVER_VERSION_MIN} or newer; the server is {major}",
        )
    version = await _schema_version(connection, redacted_url)
    _refuse_newer(redacted_url, version)
    if version == SCHEMA_VERSION:
        await _refuse_missing_tables(connection, redacted_url)
        return version
    if version == 0:
        await _refuse_schema_not_usable(connection, redacted_url)
    if version == 0 and not create:
        raise no_ledger(redacted_url)
    if version > 0:
        await _refuse_ledger_outside_current_schema(connection, redacted_url)
    try:
        async with connection.transaction():
            # A statement_timeout set on the role or database (postgres.md advises one)
            # is for requests: an upgrade is bounded by MIGRATION_SECONDS_MAX instead.
            await connection.execute("SET LOCAL statement_timeout = 0")
            await _wait_for_other_migrations(connection, redacted_url)
            await connection.execute(SCHEMA_MIGRATIONS_TABLE)
            # Another process may have been first.
            version = await _schema_version(connection, redacted_url)
            _refuse_newer(redacted_url, version)
            if version == 0:  # a refusal rolls back the schema_migrations just created
                await _refuse_foreign_tables(connection, redacted_url)
            for number in range(version + 1, SCHEMA_VERSION + 1):
                await connection.execute(MIGRATIONS[number - 1], timeout=MIGRATION_SECONDS_MAX)
                backfill = _BACKFILLS.get(number)
                if backfill is not None:
                    await backfill(connection)
                await connection.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", number
                )
    except asyncpg.exceptions.InsufficientPrivilegeError as error:
        found = f"schema version {version}" if version else "no kopilka schema yet"
        # An upgrade alters and indexes the tables, which their owner alone may do.
        who = (
            "the owner of kopilka's tables (the role that made them)"
            if version
            else "a user with CREATE on the schema"
        )
        raise Unavailable(
            "store_unavailable",
            f"the database at {redacted_url} has {found}, this kopilka needs {SCHEMA_VERSION},"
            f" and this user may not change it ({error}): run `kopilka init` as {who}",
        ) from error
    return version


# Rows a migration's backfill reads and writes at a time.
_BACKFILL_CHUNK = 10_000


async def fold_account_names(connection: Connection) -> None:
    """Migration 10's folded names (9's too), a chunk of accounts at a time: folded here, as the
    ledger folds every new name, for PostgreSQL's lower() folds only ASCII under the "C"
    collation, and no collation folds "ß" as "ss". Then the oldest of the names alike
    in a ledger keeps its fold, and the index guards them (FOLDED_NAMES_UNIQUE)."""
    # Read by id, a chunk after another: a cursor left open would bar the index.
    chunk = await connection.fetch(
        "SELECT id, client FROM accounts ORDER BY id LIMIT $1",
        _BACKFILL_CHUNK,
        timeout=MIGRATION_SECONDS_MAX,
    )
    while chunk:
        await connection.execute(
            "UPDATE accounts AS a SET folded = f.folded"
            " FROM unnest($1::bigint[], $2::bytea[]) AS f(id, folded) WHERE a.id = f.id",
            [account_id for account_id, _ in chunk],
            [folded_name(client).encode() for _, client in chunk],
            timeout=MIGRATION_SECONDS_MAX,
        )
        chunk = await connection.fetch(
            "SELECT id, client FROM accounts WHERE id > $1 ORDER BY id LIMIT $2",
            chunk[-1][0],
            _BACKFILL_CHUNK,
            timeout=MIGRATION_SECONDS_MAX,
        )
    await connection.execute(FOLDED_NAMES_UNIQUE, timeout=MIGRATION_SECONDS_MAX)


async def give_missing_folds(connection: Connection) -> int:
    """As sqlite_migrate.missing_folds and give_folds: fold the names of accounts an older
    kopilka opened after migration 10, where no account of their ledger holds that fold. One
    statement each: a running server opening an alike name meanwhile wins, and this
    one is left without (the index refuses the second)."""
    unfolded = await connection.fetch(
        "SELECT id, ledger, client FROM accounts WHERE folded IS NULL ORDER BY id",
        timeout=MIGRATION_SECONDS_MAX,
    )
    given = 0
    for account_id, ledger, client in unfolded:
        folded = folded_name(client).encode()  # as kept: see migration 9
        try:
            done = await connection.execute(
                "UPDATE accounts SET folded = $1 WHERE id = $2 AND folded IS NULL"
                " AND NOT EXISTS (SELECT FROM accounts WHERE ledger = $3 AND folded = $1)",
                folded,
                account_id,
                ledger,
                timeout=MIGRATION_SECONDS_MAX,
            )
        except asyncpg.UniqueViolationError:
            continue
        given += done == "UPDATE 1"
    return given


# Run after the migration of their number, in its transaction.
_BACKFILLS: dict[int, Callable[[Connection], Awaitable[None]]] = {10: fold_account_names}


async def _wait_for_other_migrations(connection: Connection, redacted_url: str) -> None:
    """Take the migration lock, in this transaction, waiting for another process that
    holds it (upgrading the schema) as long as it takes, not lock_timeout: a wait there
    refused the start of every process that began during a long upgrade, as though the
    database were away. The migrations' own statements keep lock_timeout."""
    if await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", MIGRATION_LOCK_KEY):
        return
    logger.warning(
        "another process is upgrading the schema of the database at %s: waiting for it",
        redacted_url,
    )
    bound = await connection.fetchval("SELECT current_setting('lock_timeout')")
    await connection.execute("SET LOCAL lock_timeout = 0")
    await connection.execute(
        "SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY, timeout=MIGRATION_SECONDS_MAX
    )
    await connection.execute("SELECT set_config('lock_timeout', $1, true)", bound)


async def _refuse_schema_not_usable(connection: Connection, redacted_url: str) -> None:
    """A role without USAGE on the schemas of its search_path (or whose search_path names
    none that exists) sees no table there: told so, rather than that there is no ledger
    (or, to init, that no schema was selected)."""
    if await connection.fetchval("SELECT current_schema()") is None:
        path = await connection.fetchval("SHOW search_path")
        raise Unavailable(
            "store_unavailable",
            f"no schema of this user's search_path ({path}) in the database at"
            f" {redacted_url} is there for it to use: the schemas named do not exist, or it"
            " lacks USAGE on them (grant it, or set search_path)",
        )


# schema_migrations as kopilka makes it. Other tools keep a table of that name too (with
# a `dirty` flag, a text version): read as kopilka's, its numbers would say a schema
# that is not there is up to date.
_MIGRATIONS_COLUMNS = {("version", "integer"), ("applied_at", "timestamp with time zone")}


async def _schema_version(connection: Connection, redacted_url: str) -> int:
    """The last migration applied, 0 in an empty database. Reads only."""
    columns = {
        (row[0], row[1])
        for row in await connection.fetch(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = to_regclass('schema_migrations') AND attnum > 0"
            " AND NOT attisdropped"
        )
    }
    if not columns:
        return 0
    if columns != _MIGRATIONS_COLUMNS:
        refuse_foreign_tables(redacted_url, ("schema_migrations",), {"schema_migrations"})
    return int(await connection.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))


async def _refuse_ledger_outside_current_schema(connection: Connection, redacted_url: str) -> None:
    """A ledger to upgrade, found through the search_path in another schema than the
    first one there ("$user", a role's own): the upgrade's new tables, and its record in
    schema_migrations, would go to that first one, beside the ledger rather than in it."""
    ledger_schema, current = await connection.fetchrow(
        "SELECT n.nspname, current_schema() FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass('schema_migrations')"
    )
    if ledger_schema != current:
        raise Unavailable(
            "store_unavailable",
            f"the kopilka ledger at {redacted_url} is in the schema {ledger_schema}, and this"
            f" user's first schema is {current}, where an upgrade would make its tables: run"
            f" `kopilka init` as a user whose search_path starts with {ledger_schema}",
        )


async def _refuse_foreign_tables(connection: Connection, redacted_url: str) -> None:
    """No schema yet: refuse tables of kopilka's names found in the current schema."""
    names = (*TABLES, *NAMED_SEQUENCES)
    refuse_foreign_tables(redacted_url, names, await _tables_found(connection, names))


async def _refuse_missing_tables(connection: Connection, redacted_url: str) -> None:
    """Up to date: every table there. One dropped by hand passed for up to date, and
    every write that needed it failed with PostgreSQL's own words. Each is looked up as
    every statement names it, through the search_path: a role's own empty schema ahead
    of public ("$user") is the current one, and holds none of them."""
    missing = await connection.fetch(
        "SELECT name FROM unnest($1::text[]) AS name"
        " WHERE to_regclass(quote_ident(name)) IS NULL ORDER BY name",
        list(TABLES),
    )
    if missing:
        raise missing_tables(redacted_url, [row[0] for row in missing])


async def _tables_found(connection: Connection, names: tuple[str, ...]) -> set[str]:
    """Which of `names` (kopilka's tables and sequences) the current schema holds:
    where a first migration would make them."""
    return {
        row[0]
        for row in await connection.fetch(
            "SELECT relname FROM pg_class WHERE relname = ANY($1::text[]) AND relnamespace ="
            " (SELECT oid FROM pg_namespace WHERE nspname = current_schema())",
            list(names),
        )
    }


def _refuse_newer(redacted_url: str, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise newer_schema(redacted_url, version, SCHEMA_VERSION)
