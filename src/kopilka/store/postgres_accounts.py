"""What a PostgreSQL store process knows of the accounts it has used.

An account's id and opening time never change: a batch locks by primary key and
reads back only what may have changed. Its balance, limits and revision as this
process last read or wrote them are a hint, never trusted: a batch that only
moves money between accounts known here is planned on the hint and written in
one statement that checks each account's revision and balance first, and fails
as a whole if any has moved (another process wrote it, or a batch planned on it
failed). Such a batch is then planned again from locked rows.

A batch may be planned on the outcome of one still being written; it is written
after that one (see `writer`), or its statement could reach an account before the
batch it was planned on has, find it not yet as planned, and fail.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias

from kopilka.domain.model import Account
from kopilka.domain.rules import AccountKey
from kopilka.errors import RetryableStoreError

if TYPE_CHECKING:
    from asyncpg import Connection

# Accounts are locked by id, in id order, in every batch of every process: batches
# that share accounts wait for each other but never deadlock. Only the columns that
# change are read; an account's id, names and opening time never do.
# Joined from the id list, not `id = ANY($1)`: after a lock wait PostgreSQL rechecks
# the condition on each updated row, and ANY over thousands of ids made that quadratic.
_LOCK_ACCOUNTS = """
SELECT a.id, a.balance, a.min_balance, a.max_balance, a.revision
FROM unnest($1::bigint[]) AS k(id) JOIN accounts AS a ON a.id = k.id
ORDER BY a.id FOR UPDATE OF a
"""

# The latest entry time of any of the locked accounts (one probe each of the index a
# statement reads): the batch is written at a later time, however far behind this
# process's clock is. A statement of its own, after the locks: a statement reads as of
# its start, and the lock statement may have waited for another process's batch on
# these accounts, whose entries it could not see; this one starts after that committed.
_LATEST_ENTRY = """
SELECT max((SELECT e.created_at FROM entries AS e WHERE e.account_id = k.id
            ORDER BY e.created_at DESC LIMIT 1))
FROM unnest($1::bigint[]) AS k(id)
"""

# Ids of accounts not yet known to this process: no lock needed, as they never change.
_FIND_ACCOUNTS = """
SELECT id, client, created_at FROM accounts WHERE ledger = $1 AND client = ANY($2::text[])
"""


# See AccountCache.hinted.
Hint: TypeAlias = tuple[
    dict[AccountKey, Account], dict[int, tuple[int, int]], set[asyncio.Future[bool]]
]


@dataclass(slots=True)
class _Known:
    id: int
    created_at: datetime
    # The last state seen or written; None until a batch has locked or written it.
    balance_cents: int = 0
    min_balance_cents: int = 0
    max_balance_cents: int | None = None
    revision: int | None = None
    # The batch being written that left it so, if any: done with True once written.
    writer: asyncio.Future[bool] | None = None


class AccountCache:
    """(ledger, client) -> what this process knows of the account. Bounded: past the
    limit the oldest half is forgotten and read again when needed.

    An id whose row has gone (another process dropped a sandbox ledger) is forgotten
    and the batch retried, which then looks the client up by name.
    """

    def __init__(self, size_max: int) -> None:
        assert size_max >= 1
        self._known: dict[AccountKey, _Known] = {}
        self._size_max = size_max

    async def lock(
        self, connection: Connection, keys: set[AccountKey]
    ) -> tuple[dict[AccountKey, Account], dict[int, int], datetime | None]:
        """Lock the existing accounts among `keys` in id order; absent ones are new.

        Returns the accounts, by id each one's revision as locked, and the time of the
        latest entry of any of them (None without entries).
        """
        known = self._known
        missing = [key for key in keys if key not in known]
        if missing:
            await self._find(connection, missing)
        # What it knows of each, taken before the wait for the locks: meanwhile another
        # batch may forget one (a sandbox ended in this process, the view trimmed).
        by_id = {known[key].id: (key, known[key].created_at) for key in keys if key in known}
        ids = sorted(by_id)
        rows = await connection.fetch(_LOCK_ACCOUNTS, ids)
        accounts: dict[AccountKey, Account] = {}
        revisions: dict[int, int] = {}
        for account_id, balance, floor, cap, revision in rows:
            key, created_at = by_id.pop(account_id)
            ledger, client = key
            accounts[key] = Account(ledger, client, balance, floor, cap, created_at, account_id)
            revisions[account_id] = revision
        if by_id:
            for key, _ in by_id.values():
                # Another batch of this process, waiting behind the same removal, may
                # have forgotten it first.
                known.pop(key, None)
            raise RetryableStoreError("an account was removed by another process")
        latest = await connection.fetchval(_LATEST_ENTRY, ids) if ids else None
        self._trim()  # only now: the ids this batch uses were needed until here
        return accounts, revisions, latest

    async def _find(self, connection: Connection, keys: list[AccountKey]) -> None:
        clients_by_ledger: dict[str, list[str]] = {}
        for ledger, client in keys:
            clients_by_ledger.setdefault(ledger, []).append(client)
        for ledger, clients in clients_by_ledger.items():
            for account_id, client, created_at in await connection.fetch(
                _FIND_ACCOUNTS, ledger, clients
            ):
                self._known[(ledger, client)] = _Known(account_id, created_at)

    def hinted(
        self, keys: set[AccountKey]
    ) -> (
        tuple[dict[AccountKey, Account], dict[int, tuple[int, int]], set[asyncio.Future[bool]]]
        | None
    ):
        """The accounts as last seen; by id, the balance and revision each was seen at;
        and the batches still being written that left them so. None if any account is
        not known."""
        accounts: dict[AccountKey, Account] = {}
        seen: dict[int, tuple[int, int]] = {}
        writers: set[asyncio.Future[bool]] = set()
        known = self._known
        for key in keys:
            entry = known.get(key)
            if entry is None or entry.revision is None:
                return None
            accounts[key] = Account(
                key[0],
                key[1],
                entry.balance_cents,
                entry.min_balance_cents,
                entry.max_balance_cents,
                entry.created_at,
                entry.id,
            )
            seen[entry.id] = (entry.balance_cents, entry.revision)
            if entry.writer is not None and not entry.writer.done():
                writers.add(entry.writer)
        return accounts, seen, writers

    def remember(
        self,
        accounts: list[Account],
        revisions: dict[int, int],
        writer: asyncio.Future[bool] | None = None,
    ) -> None:
        """Accounts as a batch left them (or will have, once `writer` is done):
        `revisions` by id (an account without one there is new: revision 0)."""
        known = self._known
        for account in accounts:
            assert account.id != 0
            known[(account.ledger, account.client)] = _Known(
                account.id,
                account.created_at,
                account.balance_cents,
                account.min_balance_cents,
                account.max_balance_cents,
                revisions.get(account.id, 0),
                writer,
            )
        self._trim()

    def forget_states(self, keys: set[AccountKey]) -> None:
        """The states of `keys` may be wrong: the next batch locks and reads them."""
        for key in keys:
            entry = self._known.get(key)
            if entry is not None:
                entry.revision = None

    def forget_ledger(self, ledger: str) -> None:
        for key in [key for key in self._known if key[0] == ledger]:
            del self._known[key]

    def _trim(self) -> None:
        if len(self._known) > self._size_max:
            oldest = list(self._known)[: len(self._known) // 2]
            for key in oldest:
                del self._known[key]


class StaleViews:
    """How often batches planned on this process's view fail because another process
    moved their accounts first.

    Each such failure costs a statement before the batch is planned again from
    locked rows. Where most would fail (several processes writing the same hot
    accounts), batches are planned from locked rows straight away, and one in
    `probe_every` still tries the view, so the store notices when the others go quiet.
    """

    failure_rate_max = 0.25
    probe_every = 16
    weight = 0.1  # of the latest attempt in the moving average

    def __init__(self) -> None:
        self._failure_rate = 0.0
        self._passed = 0
        # Since the start, for /metrics: batches written on the view, those whose view
        # had gone stale, and those that met a key already taken (a retried request, or
        # a batch's claim held): no sign of a stale view, so not in the average.
        self.written = 0
        self.stale = 0
        self.key_taken = 0

    def worth_trying(self) -> bool:
        if self._failure_rate <= self.failure_rate_max:
            return True
        self._passed += 1
        if self._passed < self.probe_every:
            return False
        self._passed = 0
        return True

    def record_key_taken(self) -> None:
        self.key_taken += 1

    def record(self, *, failed: bool) -> None:
        self._failure_rate += self.weight * (failed - self._failure_rate)
        if failed:
            self.stale += 1
        else:
            self.written += 1
