"""Storage backends behind one protocol; see `protocol.Store`."""

from __future__ import annotations

from kopilka.store.protocol import Store


def open_store(url: str) -> Store:
    """A store for a URL: 'memory:', a SQLite path ('sqlite:///path' or a bare path),
    or 'postgresql://...'."""
    if url in ("memory:", ":memory:"):
        from kopilka.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        from kopilka.store.postgres import PostgresStore

        return PostgresStore(url)
    from kopilka.store.sqlite import SqliteStore

    return SqliteStore(
        url.removeprefix("sqlite://").removeprefix("/")
        if url.startswith("sqlite:///")
        else url.removeprefix("sqlite:")
    )


__all__ = ["Store", "open_store"]
