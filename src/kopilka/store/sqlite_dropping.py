"""An ended sandbox's rows, taken out of a SQLite ledger a slice at a time.

A sandbox has no bound on its size, and the database has one write lock: its rows
deleted in one transaction held every other write (the main ledger's too) for seconds,
and any token may fill sandboxes. So a sandbox is ended first, its `sandboxes` row
deleted in a short transaction of its own: from then on no write applies in it
(`sandbox_not_found`), and its rows are no one's. Then they go in slices of at most a
few thousand rows, each a transaction of its own, and other writes take the lock
between them.

The order keeps what is left whole at every commit: entries first, the newest first (a
statement being read sees its lines end, never a gap in them), in id order with their
operations (an account's own entries are strewn among every other's, and a slice of one
account's rewrote a page for nearly each), then refusals and batch claims, and accounts
last, so that no row left names one gone. A drop cut short (a crash, a stop) leaves
rows of a ledger named as a sandbox that has no row in `sandboxes`; no write can add
such rows (a batch checks that its sandbox is open), so `ended_with_rows` finds them,
and whoever looks next finishes them.
"""

from __future__ import annotations

import heapq
import sqlite3
from functools import partial

from kopilka.domain.model import SANDBOX_PREFIX, is_given_sandbox_name

# Rows per slice: a few milliseconds of the write lock (about 5 ms here for 1,000
# entries and their operations, and a millisecond or two to commit), so the writes
# waiting behind one barely notice it.
SLICE_ROWS = 2_000

# Names past every sandbox's: the prefix with its last character's successor.
_PAST_SANDBOXES = SANDBOX_PREFIX[:-1] + chr(ord(SANDBOX_PREFIX[-1]) + 1)
# Where an ended sandbox may have rows left: accounts go last, and entries and
# operations only ever belong to accounts; a refusal or claim may have none.
_TABLES_LEFT_LAST = ("accounts", "refusals", "batch_requests")


def _sandbox_ledgers(table: str) -> str:
    """SQL: the distinct sandbox ledgers with rows in `table` (a name of ours), one
    index lookup each, by its (ledger, ...) index."""
    after = (
        f"SELECT ledger FROM {table} WHERE ledger > {{previous}} AND ledger < :past"
        " ORDER BY ledger LIMIT 1"
    )
    return (
        f"WITH RECURSIVE found (ledger) AS (SELECT ({after.format(previous=':prefix')})"
        f" UNION ALL SELECT ({after.format(previous='found.ledger')}) FROM found"
        " WHERE found.ledger IS NOT NULL)"
        " SELECT ledger FROM found WHERE ledger IS NOT NULL"
    )


def ended_with_rows(db: sqlite3.Connection) -> list[str]:
    """The sandboxes that have ended with rows still in the database."""
    found = db.execute(
        " UNION ".join(f"SELECT ledger FROM ({_sandbox_ledgers(t)})" for t in _TABLES_LEFT_LAST)
        + " EXCEPT SELECT ledger FROM sandboxes ORDER BY ledger",
        # Past the prefix itself: every sandbox's name goes on after it.
        {"prefix": SANDBOX_PREFIX, "past": _PAST_SANDBOXES},
    )
    return [row[0] for row in found if is_given_sandbox_name(row[0])]


def _entries_within(rows: int) -> int:
    """How many entries may go in `rows` rows: each may take its operation with it."""
    return max(rows // 2, 1)


class Emptying:
    """Where the removal of one ended sandbox's rows has got to: each `step` is one
    slice, in the caller's transaction."""

    def __init__(self, ledger: str, rows: int = SLICE_ROWS) -> None:
        assert ledger.startswith(SANDBOX_PREFIX) and rows > 0
        self.ledger = ledger
        self._rows = rows
        # Accounts up to this name (in name order) have had their newest entry found.
        self._found_upto = ""
        # Each account's newest entry left, as (-its id, the account's id): the top is
        # the sandbox's newest entry. An account leaves it once it has none left.
        self._newest: list[tuple[int, int]] = []
        self._stage = 0

    def step(self, db: sqlite3.Connection) -> bool:
        """Delete up to a slice of its rows; True once none are left."""
        if db.execute("SELECT 1 FROM sandboxes WHERE ledger = ?", (self.ledger,)).fetchone():
            # Open under this name again (a name is never given twice, but a caller may
            # open one it chose): what is there now is that sandbox's.
            return True
        stages = (
            self._unindexed_entries,
            self._newest_entries,
            self._entries,
            partial(self._rows_of, "operations", "id"),
            partial(self._rows_of, "refusals", "id"),
            partial(self._rows_of, "batch_requests", "idempotency_key"),
            self._accounts,
        )
        budget = self._rows
        while self._stage < len(stages):
            budget -= stages[self._stage](db, budget)
            if budget <= 0:
                return False  # the stage may have more; the next slice looks
            self._stage += 1  # less than asked for: nothing of it is left
        return True

    def _unindexed_entries(self, db: sqlite3.Connection, budget: int) -> int:
        """The entries past the statement index's end (the last few batches', the newest
        of their accounts), and their operations: then every entry left is in the index,
        and stays there."""
        asked = _entries_within(budget)
        found = db.execute(
            "SELECT e.id, e.operation_id FROM entries e JOIN accounts a ON a.id = e.account_id"
            " WHERE e.id > (SELECT entry_id FROM statement_index_upto) AND a.ledger = ?"
            " ORDER BY e.id DESC LIMIT ?",
            (self.ledger, asked),
        ).fetchall()
        gone = self._delete_entries(db, found)
        # As many as asked: there may be more, which the next slice looks for (a slice's
        # rows, a transfer's entries sharing an operation, came to less than its budget,
        # and the walk went on with entries left that no later stage finds).
        return budget if len(found) == asked else gone

    def _newest_entries(self, db: sqlite3.Connection, budget: int) -> int:
        """Each account's newest entry, by the statement index: the last of its rows
        there (an account's entries take later ids as they take later times)."""
        accounts = db.execute(
            "SELECT a.client, a.id, (SELECT entry_id FROM statement_index WHERE account_id = a.id"
            " ORDER BY created_at DESC, entry_id DESC LIMIT 1)"
            " FROM accounts a WHERE a.ledger = ? AND a.client > ? ORDER BY a.client LIMIT ?",
            (self.ledger, self._found_upto, budget),
        ).fetchall()
        for client, account, newest in accounts:
            self._found_upto = client
            if newest is not None:
                heapq.heappush(self._newest, (-newest, account))
        return len(accounts)

    def _entries(self, db: sqlite3.Connection, budget: int) -> int:
        """The entries, newest first, with their operations: so a statement being read
        sees its lines end, never a gap in them, and the pages of the entries deleted
        together are together (an account's own are strewn among every other's)."""
        taken = 0
        while self._newest and taken < budget:
            top = -self._newest[0][0]
            # Every entry of the sandbox above `top` is gone: those in this window now.
            low = max(top - _entries_within(budget - taken) + 1, 1)
            found = db.execute(
                "SELECT e.id, e.operation_id, e.account_id FROM entries e"
                " JOIN accounts a ON a.id = e.account_id"
                " WHERE e.id BETWEEN ? AND ? AND a.ledger = ? ORDER BY e.id DESC",
                (low, top, self.ledger),
            ).fetchall()
            gone = self._delete_entries(db, [(entry, operation) for entry, operation, _ in found])
            taken += max(gone, 1)  # a window with none (never, but) still counts
            # The accounts whose newest entry was in the window: their next one.
            touched = {account for _, _, account in found}
            while self._newest and -self._newest[0][0] >= low:
                touched.add(heapq.heappop(self._newest)[1])
            for account in touched:
                (newest,) = db.execute(
                    "SELECT (SELECT entry_id FROM statement_index WHERE account_id = ?"
                    " ORDER BY created_at DESC, entry_id DESC LIMIT 1)",
                    (account,),
                ).fetchone()
                if newest is not None:
                    heapq.heappush(self._newest, (-newest, account))
        return taken

    @staticmethod
    def _delete_entries(db: sqlite3.Connection, found: list[tuple[int, int]]) -> int:
        """These entries (id, operation id; newest first), and their operations but one
        whose other entry, just before, is still there (a transfer's two are written
        one after the other); how many rows."""
        if not found:
            return 0
        db.executemany("DELETE FROM entries WHERE id = ?", [(entry,) for entry, _ in found])
        operations = {operation for _, operation in found}
        before = db.execute("SELECT operation_id FROM entries WHERE id = ?", (found[-1][0] - 1,))
        for (operation,) in before:
            operations.discard(operation)
        db.executemany("DELETE FROM operations WHERE id = ?", [(o,) for o in sorted(operations)])
        return len(found) + len(operations)

    def _rows_of(self, table: str, key: str, db: sqlite3.Connection, budget: int) -> int:
        """Rows of `table` in the ledger, by its `key` (names of ours, no input)."""
        return db.execute(
            f"DELETE FROM {table} WHERE ledger = ? AND {key} IN"
            f" (SELECT {key} FROM {table} WHERE ledger = ? LIMIT ?)",
            (self.ledger, self.ledger, budget),
        ).rowcount

    def _accounts(self, db: sqlite3.Connection, budget: int) -> int:
        """Accounts with their balances, once nothing else refers to them."""
        of_ledger = "SELECT id FROM accounts WHERE ledger = ? ORDER BY client LIMIT ?"
        db.execute(f"DELETE FROM balances WHERE account_id IN ({of_ledger})", (self.ledger, budget))
        return db.execute(
            f"DELETE FROM accounts WHERE id IN ({of_ledger})", (self.ledger, budget)
        ).rowcount
