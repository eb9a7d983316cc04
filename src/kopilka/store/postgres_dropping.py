"""An ended sandbox's rows, taken out of a PostgreSQL ledger a slice at a time.

As on SQLite (sqlite_dropping.py): a sandbox has no bound on its size, and its rows
deleted in one transaction kept a connection and a snapshot (which holds back vacuum
everywhere) for as long as that took, the reaper's for every idle sandbox at once. So a
sandbox is ended first, its `sandboxes` row deleted in a short transaction of its own
(which waits for the batches that found it open, as they hold the row FOR KEY SHARE);
then its rows go in slices, each a transaction of its own. Entries first, each
account's newest first, then operations, refusals and batch claims, accounts last: what
is left is whole at every commit. Each table is walked by its index from where the last
slice stopped, never again over the rows deleted (dead until vacuumed). A drop cut short
leaves rows of a sandbox with no row in `sandboxes`, which `ended_with_rows` finds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kopilka.domain.model import SANDBOX_PREFIX, is_given_sandbox_name

Connection = Any  # asyncpg ships no type hints

# Rows per slice (see sqlite_dropping.SLICE_ROWS).
SLICE_ROWS = 2_000

# Where an ended sandbox may have rows left: accounts go last, and entries belong to
# accounts; a refusal or claim may have none. Operations too: two processes emptying
# one sandbox took its accounts before them (an older kopilka), and left them for
# nothing to find. (Entries left so, without their account, name no ledger: they stay.)
_TABLES_LEFT_LAST = ("accounts", "operations", "refusals", "batch_requests")
# After the entries, each table with a ledger column, walked by its (ledger, key) index;
# accounts last.
_WALKED_BY_KEY = (
    ("operations", "idempotency_key"),
    ("refusals", "idempotency_key"),
    ("batch_requests", "idempotency_key"),
    ("accounts", "client"),
)
_ENTRIES_LEFT = (
    "SELECT EXISTS (SELECT 1 FROM entries e JOIN accounts a ON a.id = e.account_id"
    " WHERE a.ledger = $1)"
)


def _left_in(table: str) -> str:
    """SQL: whether `table` (a name of ours) has rows of the ledger."""
    return f"SELECT EXISTS (SELECT 1 FROM {table} WHERE ledger = $1)"


# The newest possible place in an account's entries, (created_at, id).
_PAST_EVERY_ENTRY = (datetime.max.replace(tzinfo=UTC), 2**63 - 1)


def _ledgers(table: str) -> str:
    """SQL: the distinct ledgers with rows in `table` (a name of ours), one index
    lookup each, by its (ledger, ...) index (the collation's order, which sandboxes'
    names need not be together in)."""
    return (
        f"WITH RECURSIVE found (ledger) AS ((SELECT ledger FROM {table} ORDER BY ledger LIMIT 1)"
        f" UNION ALL SELECT (SELECT t.ledger FROM {table} t WHERE t.ledger > found.ledger"
        " ORDER BY t.ledger LIMIT 1) FROM found WHERE found.ledger IS NOT NULL)"
        " SELECT ledger FROM found WHERE ledger IS NOT NULL"
    )


async def ended_with_rows(connection: Connection) -> list[str]:
    """The sandboxes that have ended with rows still in the database."""
    rows = await connection.fetch(
        "SELECT ledger FROM ("
        + " UNION ".join(f"({_ledgers(table)})" for table in _TABLES_LEFT_LAST)
        + ") AS found WHERE starts_with(ledger, $1)"
        " AND NOT EXISTS (SELECT 1 FROM sandboxes s WHERE s.ledger = found.ledger)"
        " ORDER BY ledger",
        SANDBOX_PREFIX,
    )
    return [row[0] for row in rows if is_given_sandbox_name(row[0])]


class Emptying:
    """Where the removal of one ended sandbox's rows has got to: each `step` is one
    slice, in the caller's transaction."""

    def __init__(self, ledger: str, rows: int = SLICE_ROWS) -> None:
        assert ledger.startswith(SANDBOX_PREFIX) and rows > 0
        self.ledger = ledger
        self._rows = rows
        self._stage = 0
        # Where each walk has got to: accounts up to this name have no entries left;
        # the account being emptied, and its oldest entry deleted yet; the last key (or
        # name) deleted, by table.
        self._accounts_done = ""
        self._account: tuple[int, str] | None = None
        self._entries_before = _PAST_EVERY_ENTRY
        self._after: dict[str, str] = {}

    async def step(self, connection: Connection) -> bool:
        """Delete up to a slice of its rows; True once none are left."""
        # Planned for this sandbox each time: after five runs of a prepared statement the
        # server may plan it for any ledger, and with a big ledger's statistics an
        # `EXISTS (... WHERE ledger = $1)` that finds nothing read the whole table.
        await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        if await connection.fetchval("SELECT 1 FROM sandboxes WHERE ledger = $1", self.ledger):
            # Open under this name again (a name is never given twice, but a caller may
            # open one it chose): what is there now is that sandbox's.
            return True
        # Each stage's walk, and the question whether any of its rows are left.
        stages: tuple[tuple[Callable[[Connection, int], Awaitable[int]], str], ...] = (
            (self._entries, _ENTRIES_LEFT),
            *(
                (partial(self._by_key, table, key), _left_in(table))
                for table, key in _WALKED_BY_KEY
            ),
        )
        budget = self._rows
        while self._stage < len(stages):
            walk, left = stages[self._stage]
            budget -= await walk(connection, budget)
            if budget <= 0:
                return False  # the stage may have more; the next slice looks
            # Less than asked for: nothing is left past where this walk got to. Another
            # process emptying the sandbox too (each that looks for ended sandboxes)
            # may have walked past it and left rows behind, or stopped: its accounts go
            # only once nothing of theirs is left, else nothing would find what is.
            if await connection.fetchval(left, self.ledger):
                self._walk_again()
                return False
            self._stage += 1
        return True

    def _walk_again(self) -> None:
        """The stage's walk from its start (every row before where it got to is gone)."""
        self._accounts_done, self._account = "", None
        self._entries_before = _PAST_EVERY_ENTRY
        self._after.clear()

    async def _entries(self, connection: Connection, budget: int) -> int:
        """Account by account, each one's newest first: a statement being read sees its
        lines end, never a gap in them. An account looked at counts as a row."""
        taken = 0
        while taken < budget:
            if self._account is None:
                row = await connection.fetchrow(
                    "SELECT id, client FROM accounts WHERE ledger = $1 AND client > $2"
                    " ORDER BY client LIMIT 1",
                    self.ledger,
                    self._accounts_done,
                )
                if row is None:
                    break
                self._account = (row[0], row[1])
                self._entries_before = _PAST_EVERY_ENTRY
                taken += 1
            asked = max(budget - taken, 1)
            gone = await connection.fetchrow(
                # The ids found first, once (an array), then deleted by them: as `IN`, the
                # planner may run the LIMIT's search again for every row of the account.
                "WITH gone AS (DELETE FROM entries WHERE id = ANY(ARRAY(SELECT id FROM"
                " entries WHERE account_id = $1 AND (created_at, id) < ($2, $3)"
                " ORDER BY created_at DESC, id DESC LIMIT $4)) RETURNING created_at, id)"
                " SELECT count(*) OVER (), created_at, id FROM gone"
                " ORDER BY created_at, id LIMIT 1",
                self._account[0],
                *self._entries_before,
                asked,
            )
            count = 0 if gone is None else gone[0]
            taken += count
            if count < asked:  # none left: the next account
                self._accounts_done = self._account[1]
                self._account = None
            else:
                self._entries_before = (gone[1], gone[2])
        return taken

    async def _by_key(self, table: str, key: str, connection: Connection, budget: int) -> int:
        """Rows of `table` in the ledger, in the order of its (ledger, `key`) index (names
        of ours, no input), from the last one deleted."""
        # The keys found first, once (an array): as `IN`, a planner that takes a new
        # sandbox's ledger for one of a row (its statistics not yet of it) ran the LIMIT's
        # search again for every row of the ledger, a slice taking 40 s on 100,000.
        gone = await connection.fetchrow(
            f"WITH gone AS (DELETE FROM {table} WHERE ledger = $1 AND {key} = ANY(ARRAY("
            f"SELECT {key} FROM {table} WHERE ledger = $1 AND {key} > $2"
            f" ORDER BY {key} LIMIT $3)) RETURNING {key})"
            f" SELECT count(*), max({key}) FROM gone",
            self.ledger,
            self._after.get(table, ""),
            budget,
        )
        if gone[0]:
            self._after[table] = gone[1]
        return int(gone[0])
