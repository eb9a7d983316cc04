"""Storage backends behind one protocol; see `protocol.Store`.

Opening a store creates or upgrades its schema; a schema newer than this
version knows is refused (Unavailable, code `unknown_schema`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from kopilka.clock import MonotonicClock
from kopilka.errors import InvalidInput, Unavailable
from kopilka.store.protocol import Store
from kopilka.tokens import without_secrets


def open_store(
    url: str, clock: MonotonicClock | None = None, *, create: bool = True, embedded: bool = False
) -> Store:
    """A store for a URL: 'memory:', a SQLite path ('sqlite:///abs/path', 'sqlite:rel/path'
    or a bare path), or 'postgresql://...'. `clock`: the store's own, if none is given.
    `create` False: a database without kopilka's schema is refused when opened, not
    given one (a SQLite file that is not there at all is the caller's to check).
    `embedded`: for a caller in this process, told why a PostgreSQL database is away
    (a server's callers are not; SQLite's reasons name no host or role, and are told)."""
    if not url.strip():
        raise InvalidInput("invalid_option", "the database may not be empty: give a path or URL")
    path = sqlite_path(url)  # refuses what is no database kopilka can use
    if keeps_nothing(url):
        from kopilka.store.memory import MemoryStore

        return MemoryStore(clock)
    if url.startswith(("postgresql://", "postgres://")):
        from kopilka.store.postgres import PostgresStore
        from kopilka.store.postgres_service import refuse_a_service_not_found

        _refuse_an_at_in_the_userinfo(url)
        refuse_a_service_not_found(url)

        store: Store = PostgresStore(url, clock, create_schema=create, tells_why=embedded)
        return store
    from kopilka.store.sqlite import SqliteStore

    assert path is not None
    return SqliteStore(path, clock, create_schema=create)


def _refuse_an_at_in_the_userinfo(url: str) -> None:
    """The driver ends the user and password at the first "@": what follows an "@" in the
    password it takes for the host, and looks that piece of the password up by name."""
    before_query = url.partition("://")[2].partition("?")[0].partition("#")[0]
    if "@" in before_query.rpartition("@")[0]:  # the user part, as kopilka reads it
        raise InvalidInput(
            "unsupported_database",
            "the database URL has more than one @ before its query: an @ in a user name,"
            " a password or a database name is written %40",
        )


def keeps_nothing(url: str) -> bool:
    """A store that lives only as long as the process that opened it: kopilka's own, or
    SQLite's in-memory database (`sqlite::memory:`)."""
    return url in ("memory:", ":memory:", "sqlite::memory:")


# Two or more keyword=value pairs apart by spaces: never taken for a file's name, which
# would hold a password, shown back as a path. A value may be quoted, spaces and all
# (libpq's 'single quotes'; double ones, or a quote left open, are no file's name either).
# The branches exclude each other (an unquoted value begins with no quote): a value that
# could be read two ways was tried both ways, twice over at each pair, when the match failed.
_VALUE = r"""(?:'(?:[^'\\]|\\.)*'?|"[^"]*"?|(?!['"])\S*)"""
_KEYWORD_VALUES = re.compile(rf"\s*\w+\s*=\s*{_VALUE}(?:\s+\w+\s*=\s*{_VALUE})+\s*")


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite database URL or path; None for memory or PostgreSQL.

    A URL of another database is refused, and so is a PostgreSQL URL mistyped
    ('postgresql:/...', 'postgres:host/db', 'postgresql//...', capitals): neither is
    taken for a file name: the data would go to a file of that name, and the text,
    password and all, would be shown back as a path.
    """
    if keeps_nothing(url) or url.startswith(("postgresql://", "postgres://")):
        return None
    if re.match(r"postgres(?:ql)?(?::|//)", url, re.IGNORECASE):
        raise InvalidInput(
            "unsupported_database",
            "a PostgreSQL database is named by a URL that begins with postgresql://"
            " (two slashes, in lower case)",
        )
    lowered = url.lower()
    if keeps_nothing(lowered) or (lowered.startswith("sqlite:") and not url.startswith("sqlite:")):
        # Meant as kopilka's word, not a file's name: `MEMORY:` made a lasting file so.
        raise InvalidInput(
            "unsupported_database",
            f"{without_secrets(url)[:60]!r}: kopilka's names of a database are in lower case"
            " (memory:, sqlite:PATH); for a file of that name, write ./ before it",
        )
    if _KEYWORD_VALUES.fullmatch(url):  # libpq's "host=... dbname=... password=..."
        raise InvalidInput(
            "unsupported_database",
            "a PostgreSQL database is named by a URL (postgresql://user@host/db), not by"
            " keyword=value settings",
        )
    if re.match(r"[^/@]*:[^/@]*@", url):  # user:password@host/db, its scheme forgotten
        raise InvalidInput(
            "unsupported_database",
            "a PostgreSQL database is named by a URL that begins with postgresql:// (for a"
            " file of such a name, write ./ before it)",
        )
    scheme, separator, _ = url.partition("://")
    if separator and scheme not in ("postgresql", "postgres", "sqlite"):
        raise InvalidInput(
            "unsupported_database",
            f"kopilka cannot use a {scheme}:// database: give a SQLite path or a postgresql:// URL",
        )
    if url.startswith("sqlite:///"):
        url = "/" + url.removeprefix("sqlite:///")
    elif url.startswith("sqlite://"):
        # A host part, which a file has not: the path would be read from the root.
        raise InvalidInput(
            "unsupported_database",
            f"{without_secrets(url)[:60]!r} names a host, not a file: write sqlite:PATH, or"
            " sqlite:///PATH for the absolute path /PATH",
        )
    path = url.removeprefix("sqlite:")
    if not path.strip():  # SQLite would make a temporary database, gone when it closes
        raise InvalidInput("invalid_option", "the database may not be empty: give a path or URL")
    if path[:5].lower() == "file:":
        # SQLite reads it as a URI (file:x.db?mode=memory...), so the file written would
        # not be the one every other command looks for, or no file at all.
        raise InvalidInput(
            "unsupported_database",
            f"a SQLite database is given by its path, not as a file: URI"
            f" ({without_secrets(path)[:60]!r})",
        )
    return path


class SchemaReady(NamedTuple):
    versions: tuple[int, int] | None  # found and made, as Store.schema_versions
    database: str | None  # a PostgreSQL server's name for the database, None for a file
    folds_given: int  # to accounts an older kopilka opened after the names were folded


def upgraded(versions: tuple[int, int] | None, where: str) -> str | None:
    """What `kopilka init` and a starting server say of a schema they upgraded (an
    operator upgrading wants to see that it was done), or None."""
    found, now = versions or (0, 0)
    if 0 < found < now:
        return f"Schema upgraded from version {found} to {now} in {where}."
    return None


async def initialize_schema(url: str) -> SchemaReady:
    """`kopilka init`: create or upgrade the schema, idempotently. A SQLite file found
    damaged is said so (its schema may well be "up to date")."""
    from kopilka.store.sqlite import SqliteStore

    store = open_store(url)
    await store.open()
    try:
        if isinstance(store, SqliteStore):
            damage = await store.damage()
            if damage is not None:
                raise Unavailable(
                    "database_damaged",
                    f"the database {store.path} is damaged ({damage}): restore it from a"
                    " backup (docs/operations.md, Backups)",
                )
            return SchemaReady(store.schema_versions, None, await store.give_missing_folds())
        from kopilka.store.postgres import PostgresStore  # asyncpg only for a server's

        assert isinstance(store, PostgresStore)
        folds_given = await store.give_missing_folds()
        return SchemaReady(store.schema_versions, store.database, folds_given)
    finally:
        await store.close()


__all__ = ["SchemaReady", "Store", "initialize_schema", "open_store", "sqlite_path"]
