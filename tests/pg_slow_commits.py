"""A COMMIT held up in the PostgreSQL server, long enough to be caught at it."""

from __future__ import annotations

import asyncpg


async def slow_commits(
    connection: asyncpg.Connection, seconds: float, *, described: str | None = None
) -> None:
    """Every later COMMIT of an operation (only of one with the description `described`,
    if given) takes `seconds` in the server: a deferred trigger sleeps in it."""
    when = "" if described is None else f" WHEN (NEW.description = '{described}')"
    await connection.execute(
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN PERFORM pg_sleep({float(seconds)}); RETURN NULL; END $$;"
        " CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON operations"
        f" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW{when} EXECUTE FUNCTION slow_commit()"
    )
