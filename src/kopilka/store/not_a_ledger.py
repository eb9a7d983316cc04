"""A database that is no ledger this kopilka can use, refused by both stores in the
same words: one without kopilka's schema (to a command that only reads), one with a
schema newer than this kopilka knows, and one with some of kopilka's tables but none of
its schema, which something else made.

Both stores look for their tables' names before the first migration and refuse such a
database naming every table found, rather than let the first CREATE TABLE fail on one
with the driver's message.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence

from kopilka.errors import NotFound, Unavailable


def created_tables(migrations: Iterable[str]) -> tuple[str, ...]:
    """Every table the migrations create, in order."""
    return tuple(re.findall(r"CREATE TABLE (\w+)", "".join(migrations)))


def refuse_foreign_tables(location: str, tables: tuple[str, ...], found: Collection[str]) -> None:
    """Unavailable `foreign_tables` when any of `tables` was `found` at `location`."""
    if found:
        raise Unavailable(
            "foreign_tables",
            f"the database at {location} has tables that kopilka did not create "
            f"({', '.join(name for name in tables if name in found)}); use an empty database",
        )


def missing_tables(location: str, missing: Sequence[str]) -> Unavailable:
    """A ledger of a known version lacking tables of it (dropped by hand): it would pass
    for up to date and fail every write that needs them."""
    tables = "table" if len(missing) == 1 else "tables"
    verb = "is" if len(missing) == 1 else "are"
    return Unavailable(
        "broken_schema",
        f"the kopilka ledger in {location} is damaged: its {tables}"
        f" {listed(missing)} {verb} missing; restore it from a backup",
    )


def listed(names: Sequence[str]) -> str:
    """Names in a sentence: a; a and b; a, b and c."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def no_ledger(location: str) -> NotFound:
    """For a command that only reads, which would otherwise make the schema there."""
    return NotFound(
        "database_not_found",
        f"no kopilka ledger in {location} (check --db, KOPILKA_DB or the db in kopilka.toml)",
    )


def newer_schema(location: str, version: int, known: int) -> Unavailable:
    return Unavailable(
        "unknown_schema",
        f"the database at {location} has schema version {version}, newer than this kopilka"
        f" knows ({known}); upgrade kopilka",
    )
