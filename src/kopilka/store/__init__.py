"""Storage backends behind one protocol; see `protocol.Store`.

Opening a store creates or upgrades its schema; a schema newer than this
version knows is refused (Unavailable, code `unknown_schema`).
"""

from __future__ import annotations

from kopilka.errors import InvalidInput
from kopilka.store.protocol import Store


def open_store(url: str) -> Store:
    """A store for a URL: 'memory:', a SQLite path ('sqlite:///abs/path', 'sqlite:rel/path'
    or a bare path), or 'postgresql://...'."""
    if not url.strip():
        raise InvalidInput("invalid_option", "the database may not be empty: give a path or URL")
    scheme, separator, _ = url.partition("://")
    if separator and scheme not in ("postgresql", "postgres", "sqlite"):
        raise InvalidInput(
            "unsupported_database",
            f"kopilka cannot use a {scheme}:// database: give a SQLite path or a postgresql:// URL",
        )
    if url in ("memory:", ":memory:"):
        from kopilka.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        from kopilka.store.postgres import PostgresStore

        store: Store = PostgresStore(url)
        return store
    from kopilka.store.sqlite import SqliteStore

    if url.startswith("sqlite:///"):
        return SqliteStore("/" + url.removeprefix("sqlite:///"))
    return SqliteStore(url.removeprefix("sqlite:"))


async def initialize_schema(url: str) -> None:
    """`kopilka init`: create or upgrade the schema, idempotently."""
    store = open_store(url)
    await store.open()
    await store.close()


__all__ = ["Store", "initialize_schema", "open_store"]
