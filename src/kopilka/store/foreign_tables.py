"""A database with some of kopilka's tables but none of its schema: something else made them.

Both stores look for their tables' names before the first migration and refuse such a
database in the same words, naming every table found, rather than let the first
CREATE TABLE fail on one with the driver's message.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from kopilka.errors import Unavailable


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
