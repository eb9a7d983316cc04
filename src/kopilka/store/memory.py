"""The in-memory store: a real backend for sandboxes and tests, with no durability.

It keeps the same rows as the SQL stores (accounts, operations, entries) and
applies a batch all-or-nothing: the plan is made on copies and only then
published, so a failure half-way leaves the state untouched.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from kopilka.clock import MonotonicClock
from kopilka.domain.model import (
    SANDBOX_PREFIX,
    Account,
    Command,
    Operation,
    Outcome,
    Refusal,
    sandbox_ledgers,
)
from kopilka.domain.names import folded_name
from kopilka.domain.rules import (
    AccountKey,
    FoldedKey,
    KnownKeys,
    OperationKey,
    accounts_touched,
    claimed_keys,
    namesake_keys,
    operation_keys,
    plan_batch,
)
from kopilka.domain.statement import EntryMark, StatementLine
from kopilka.tokens import TokenRecord


class MemoryStore:
    concurrent_batches_max = 1
    schema_versions: tuple[int, int] | None = None  # no schema in memory

    def __init__(self, clock: MonotonicClock | None = None) -> None:
        self._clock = clock or MonotonicClock()
        self._accounts: dict[AccountKey, Account] = {}
        self._accounts_by_id: dict[int, Account] = {}
        self._names_by_folded: dict[FoldedKey, str] = {}
        # Applied operations and kept refusals, by idempotency key.
        self._operations: dict[OperationKey, Operation | Refusal] = {}
        # Per account: statement lines in order, and their (created_at, id) sort keys.
        self._lines: dict[int, list[StatementLine]] = {}
        self._line_keys: dict[int, list[tuple[datetime, int]]] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._sandboxes: dict[str, datetime] = {}  # ledger -> last used
        self._batch_keys: dict[OperationKey, str] = {}  # a request's claimed key -> digest
        self._account_ids = itertools.count(1)
        self._operation_ids = itertools.count(1)
        self._entry_ids = itertools.count(1)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def forget_in_child(self) -> None:
        return None  # no lock of its own

    def stop_waiting(self) -> None:
        return None  # a batch here never waits for another's

    def wait_again(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        keys = accounts_touched(commands)
        accounts = {key: replace(self._accounts[key]) for key in keys if key in self._accounts}
        # Every key the batch names, money or claimed: a key names one request only.
        named = operation_keys(commands) | claimed_keys(commands)
        known: KnownKeys = {key: self._operations[key] for key in named if key in self._operations}
        claims = {key: self._batch_keys[key] for key in named if key in self._batch_keys}
        closed = {ledger for ledger in sandbox_ledgers(commands) if ledger not in self._sandboxes}
        folded = self._names_by_folded
        namesakes = {key: folded[key] for key in namesake_keys(keys, accounts) if key in folded}
        now = self._clock.now()
        plan = plan_batch(commands, accounts, known, now, claims, closed, namesakes)
        for account in plan.new_accounts:
            account.id = next(self._account_ids)
        for operation in plan.operations:
            operation.id = next(self._operation_ids)
        plan.resolve_ids()
        # Publish: nothing above touched shared state.
        for account in (*plan.new_accounts, *plan.changed_accounts):
            self._accounts[(account.ledger, account.client)] = account
            self._accounts_by_id[account.id] = account
        for account in plan.new_accounts:
            folded[(account.ledger, folded_name(account.client))] = account.client
        for operation in plan.operations:
            # A copy: the caller is answered with the plan's, and may change it.
            self._operations[(operation.ledger, operation.idempotency_key)] = replace(operation)
        for refusal in plan.refusals:
            self._operations[(refusal.ledger, refusal.idempotency_key)] = refusal
        for claim in plan.claims:
            self._batch_keys[(claim.ledger, claim.idempotency_key)] = claim.digest
        for entry in plan.entries():
            operation = entry.operation
            counterparty = (
                operation.credit_client if entry.amount_cents < 0 else operation.debit_client
            )
            line = StatementLine(
                next(self._entry_ids),
                operation.created_at,
                operation.kind,
                operation.description,
                entry.amount_cents,
                entry.balance_after_cents,
                counterparty,
                operation.id,
            )
            self._lines.setdefault(entry.account.id, []).append(line)
            self._line_keys.setdefault(entry.account.id, []).append(
                (line.created_at, line.entry_id)
            )
        return plan.outcomes

    async def get_account(self, ledger: str, client: str) -> Account | None:
        account = self._accounts.get((ledger, client))
        return None if account is None else replace(account)

    async def namesake(self, ledger: str, client: str) -> str | None:
        return self._names_by_folded.get((ledger, folded_name(client)))

    async def list_accounts(
        self, ledger: str, *, after_client: str | None = None, limit: int = 1_000
    ) -> list[Account]:
        names = sorted(
            client
            for (account_ledger, client) in self._accounts
            if account_ledger == ledger and (after_client is None or client > after_client)
        )
        return [replace(self._accounts[(ledger, name)]) for name in names[:limit]]

    async def settle_history(self, account: Account, through: datetime) -> None:
        """Nothing to wait for: a batch takes its time and applies in one step of the loop."""
        self._clock.not_before(through)

    async def last_entry(self, account_id: int, before: datetime) -> EntryMark | None:
        keys = self._line_keys.get(account_id, [])
        index = bisect.bisect_left(keys, (before, 0))
        if not index:
            return None
        line = self._lines[account_id][index - 1]
        return EntryMark(line.entry_id, line.created_at, line.balance_after_cents)

    async def statement_page(
        self,
        account_id: int,
        since: datetime | None,
        till: datetime,
        after_entry_id: int,
        limit: int,
    ) -> list[StatementLine]:
        lines = self._lines.get(account_id, [])
        keys = self._line_keys.get(account_id, [])
        start = 0 if since is None else bisect.bisect_right(keys, (since, after_entry_id))
        # A slice from the page's start: islice would walk the account's lines before it,
        # every page, and a long statement took time growing with its square.
        page = lines[start : start + limit]
        for position, line in enumerate(page):
            if line.created_at > till:
                return page[:position]
        return page

    async def drop_sandbox(self, ledger: str) -> bool:
        if self._sandboxes.pop(ledger, None) is None:
            return False  # a sandbox goes only while it is open
        for key in [key for key in self._accounts if key[0] == ledger]:
            account = self._accounts.pop(key)
            self._accounts_by_id.pop(account.id, None)
            self._names_by_folded.pop((ledger, folded_name(account.client)), None)
            self._lines.pop(account.id, None)
            self._line_keys.pop(account.id, None)
        for key in [key for key in self._operations if key[0] == ledger]:
            del self._operations[key]
        for key in [key for key in self._batch_keys if key[0] == ledger]:
            del self._batch_keys[key]
        return True

    async def open_sandbox(
        self, ledger: str, now: datetime, sandboxes_max: int, owner: str = "", owner_max: int = 0
    ) -> bool:
        if len(self._sandboxes) >= sandboxes_max:
            return False
        if owner_max and sum(name.startswith(owner) for name in self._sandboxes) >= owner_max:
            return False
        self._sandboxes[ledger] = now
        return True

    async def sandbox_is_open(self, ledger: str) -> bool:
        return ledger in self._sandboxes

    async def touch_sandbox(self, ledger: str, now: datetime) -> bool:
        last_used = self._sandboxes.get(ledger)
        if last_used is None:
            return False
        self._sandboxes[ledger] = max(last_used, now)
        return True

    async def end_sandbox(self, ledger: str) -> bool:
        if not ledger.startswith(SANDBOX_PREFIX):
            return False  # no sandbox: there is none of that name to end
        return await self.drop_sandbox(ledger)  # its rows go at once: none are left

    async def end_idle_sandboxes(self, unused_since: datetime) -> list[str]:
        return await self.drop_idle_sandboxes(unused_since)  # their rows go at once

    async def drop_idle_sandboxes(self, unused_since: datetime) -> list[str]:
        idle = [ledger for ledger, used in self._sandboxes.items() if used < unused_since]
        for ledger in idle:
            await self.drop_sandbox(ledger)
        return idle

    async def empty_ended_sandboxes(self) -> list[str]:
        return []  # an ended sandbox's rows went as it ended

    async def put_token(self, record: TokenRecord) -> None:
        self._tokens[record.id] = record

    async def get_token(self, token_id: str) -> TokenRecord | None:
        return self._tokens.get(token_id)

    async def revoke_token(self, token_id: str) -> bool:
        record = self._tokens.get(token_id)
        if record is None or record.revoked:
            return False
        self._tokens[token_id] = replace(record, revoked=True)
        return True

    async def list_tokens(self) -> list[TokenRecord]:
        return sorted(self._tokens.values(), key=lambda record: record.created_at)
