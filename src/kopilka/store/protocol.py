"""The one protocol every store implements; tests/contract runs one suite against all."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from kopilka.domain.model import Account, Command, Outcome
from kopilka.domain.statement import EntryMark, StatementLine
from kopilka.tokens import TokenRecord


class Store(Protocol):
    # How many batches the engine may have in flight at once (1 for a single writer).
    concurrent_batches_max: int
    # The schema version found when opened (0: none, made then) and the one it has now;
    # None where there is no schema (memory).
    schema_versions: tuple[int, int] | None

    async def open(self) -> None:
        """Connect and check the schema (create it where the backend does so itself)."""

    async def close(self) -> None: ...

    def forget_in_child(self) -> None:
        """In a process forked from the one that opened it, where it is never used: let go
        of this process's copies of what would hold the parent's locks on after the parent
        died, leaving the parent's own as they are. A store holding none does nothing."""

    def stop_waiting(self) -> None:
        """From any thread: a batch waiting for another process's write lock stops waiting
        and fails as Interrupted, nothing applied (Ctrl-C in an embedded bank); one under
        way goes on. Until `wait_again`. A store that never waits so does nothing."""

    def wait_again(self) -> None:
        """Batches wait for the write lock again, as before `stop_waiting`."""

    async def ping(self) -> None:
        """One cheap read; raises Unavailable when the store cannot be reached."""

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        """Apply a batch in ONE transaction; one outcome per command, in order.

        A ClaimKey is checked against, or recorded beside, the digests kept under
        request keys (table batch_requests) in that same transaction.

        Durable when it returns. Raises RetryableStoreError for a transient
        failure (nothing applied) and Unavailable when the store is unreachable.
        """

    async def get_account(self, ledger: str, client: str) -> Account | None: ...

    async def namesake(self, ledger: str, client: str) -> str | None:
        """The name of the account of `ledger` whose name is `client`'s but for case or
        lookalike letters (`names.folded_name`: `client`'s own if it has one), or None."""

    async def list_accounts(
        self, ledger: str, *, after_client: str | None = None, limit: int = 1_000
    ) -> list[Account]:
        """Accounts ordered by client name, starting after `after_client` (keyset paging)."""

    async def settle_history(self, account: Account, through: datetime) -> None:
        """Make the account's history up to `through` (no later than now) final before a
        statement reads it: a write of the account in flight, which may have taken its
        time earlier, has committed or failed when this returns, and none that commits
        later in this process takes a time at or before `through`, though the wall clock
        be stepped back. So a period that has ended, once shown, never gains a line."""

    async def last_entry(self, account_id: int, before: datetime) -> EntryMark | None:
        """The account's last entry before `before` (its balance just then): one index
        lookup."""

    async def statement_page(
        self,
        account_id: int,
        since: datetime | None,
        till: datetime,
        after_entry_id: int,
        limit: int,
    ) -> list[StatementLine]:
        """Entries with created_at <= till, in (created_at, id) order, after the place
        (since, after_entry_id) in it: with no entry id (0), from `since` on."""

    async def drop_sandbox(self, ledger: str) -> bool:
        """Remove a sandbox ledger (SANDBOX_PREFIX) with its accounts and history, while
        it is open; False, and nothing removed, when it is not, or is no sandbox: no
        other ledger's history is ever deleted. A write to a sandbox ledger that is not
        open is refused, sandbox_not_found, in the write's own transaction: no batch that
        raced the drop, in this process or another, leaves rows behind it.
        It is ended first, as `end_sandbox` does, and then its rows removed as
        `empty_ended_sandboxes` does, before this returns."""

    # Sandbox ledgers are recorded in the store, so every server process sharing it
    # (and one started after a crash) sees when each was last used.

    async def open_sandbox(
        self, ledger: str, now: datetime, sandboxes_max: int, owner: str = "", owner_max: int = 0
    ) -> bool:
        """Record a new sandbox ledger used `now`; False when `sandboxes_max` are open, or
        (with `owner_max`) `owner_max` of those whose names start with `owner`."""

    async def touch_sandbox(self, ledger: str, now: datetime) -> bool:
        """Record a use of a sandbox; False when it no longer exists."""

    async def sandbox_is_open(self, ledger: str) -> bool:
        """Whether a sandbox is open now: a read, for the requests between its uses'
        records, so that one ended by another process is known at once."""

    async def end_sandbox(self, ledger: str) -> bool:
        """End an open sandbox in one short transaction: from then on no write applies in
        it and it is not open; False when it was not open. Its rows may stay, no one's,
        until `empty_ended_sandboxes` removes them."""

    async def end_idle_sandboxes(self, unused_since: datetime) -> list[str]:
        """End every sandbox not used since `unused_since`, in one short transaction, as
        `end_sandbox` does; their names."""

    async def drop_idle_sandboxes(self, unused_since: datetime) -> list[str]:
        """Drop every sandbox not used since `unused_since`, with its ledger; their names.
        They end as `end_idle_sandboxes` ends them, then their rows go as a drop's do."""

    async def empty_ended_sandboxes(self) -> list[str]:
        """Remove the rows of every sandbox that has ended and still has some (ended by
        `end_sandbox`, or a drop cut short by a crash, in any process); their names.
        However big a sandbox, no transaction holds more than a slice of its rows (a
        few thousand), so the writes of other ledgers take their turns between them."""

    async def put_token(self, record: TokenRecord) -> None: ...

    async def get_token(self, token_id: str) -> TokenRecord | None: ...

    async def revoke_token(self, token_id: str) -> bool:
        """True when a live token was revoked."""

    async def list_tokens(self) -> list[TokenRecord]: ...
