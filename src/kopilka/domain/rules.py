"""The ledger's rules, applied to a whole batch of commands in memory.

A store loads the accounts and known idempotency keys a batch touches, calls
`plan_batch`, and writes what the plan says in one transaction. Every store
shares this one implementation of the rules, so they cannot drift apart.

Rejection codes, in order of precedence for a money command:
  invalid_amount, invalid_client, invalid_description, invalid_idempotency_key,
  same_account, idempotency_key_reused, account_not_found, insufficient_funds,
  cap_exceeded.
A rejected command changes nothing and does not affect the rest of its batch.
A money command refused by the ledger's state (account_not_found, insufficient_funds,
cap_exceeded) is kept as a Refusal under its key: repeating the key repeats the
refusal. A malformed one (invalid_*, same_account) never reached the ledger and is not.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from kopilka.domain.model import (
    COMBINING_RUN_MAX,
    MONEY_COMMAND_TYPES,
    OPENING_DESCRIPTION,
    SANDBOX_PREFIX,
    Account,
    ClaimKey,
    Command,
    Deposit,
    Entry,
    MoneyCommand,
    OpenAccount,
    Operation,
    OperationKind,
    Outcome,
    Refusal,
    SetLimits,
    Transfer,
    Withdraw,
    client_name,
    command_kind,
    has_a_long_combining_run,
)
from kopilka.domain.names import differ_in_case_alone, folded_name, new_name_refusal
from kopilka.errors import (
    Conflict,
    InvalidInput,
    KopilkaError,
    NotFound,
    Rejected,
    RetryableStoreError,
    no_sandbox,
)
from kopilka.money import (
    AMOUNT_CENTS_MAX,
    BALANCE_CENTS_MAX,
    format_money,
    format_plain,
    limit_out_of_range,
)

CLIENT_NAME_LENGTH_MAX = 200
DESCRIPTION_LENGTH_MAX = 500
IDEMPOTENCY_KEY_LENGTH_MAX = 200
LEDGER_NAME_LENGTH_MAX = 100
BATCH_REQUEST_OPERATIONS_MAX = 10_000  # the items of one POST /v1/batch
# Control characters, lone surrogates, and what reorders or breaks a line where it is
# shown (bidirectional overrides and isolates, line and paragraph separators).
UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]")
AccountKey = tuple[str, str]  # (ledger, client)
OperationKey = tuple[str, str]  # (ledger, idempotency key)
FoldedKey = tuple[str, str]  # (ledger, folded client name): see folded_name


@dataclass(slots=True)
class BatchPlan:
    """What one batch does: an outcome per command, and the rows to write."""

    outcomes: list[Outcome] = field(default_factory=list)
    new_accounts: list[Account] = field(default_factory=list)
    changed_accounts: list[Account] = field(default_factory=list)
    # True when a floor or cap of an existing account changed, not just balances:
    # most batches move money only, and a store may then write balances alone.
    limits_changed: bool = False
    operations: list[Operation] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)  # new ones, for the store to keep
    claims: list[ClaimKey] = field(default_factory=list)  # new ones, for the store to keep
    # Beside each operation: the accounts it debits and credits (None for no side).
    sides: list[tuple[Account | None, Account | None]] = field(default_factory=list)
    # Replays of operations first made in this same batch: (outcome index, original).
    # Their ids exist only once the store has written the batch; see resolve_replays.
    pending_replays: list[tuple[int, Operation]] = field(default_factory=list)
    # Snapshots of accounts opened in this batch, paired with the account the store writes.
    pending_account_ids: list[tuple[Account, Account]] = field(default_factory=list)

    def operation_sides(self) -> Iterator[tuple[Operation, int | None, int | None]]:
        """Each new operation with its debit and credit account ids (once the store has
        given new accounts their ids)."""
        for operation, (debit, credit) in zip(self.operations, self.sides, strict=True):
            yield (
                operation,
                None if debit is None else debit.id,
                None if credit is None else credit.id,
            )

    def entries(self) -> list[Entry]:
        """Each account's side of each new operation, debit before credit."""
        entries = []
        for operation, (debit, credit) in zip(self.operations, self.sides, strict=True):
            if debit is not None:
                assert operation.debit_balance_after_cents is not None
                entries.append(
                    Entry(
                        debit,
                        operation,
                        -operation.amount_cents,
                        operation.debit_balance_after_cents,
                    )
                )
            if credit is not None:
                assert operation.credit_balance_after_cents is not None
                entries.append(
                    Entry(
                        credit,
                        operation,
                        operation.amount_cents,
                        operation.credit_balance_after_cents,
                    )
                )
        return entries

    def resolve_ids(self) -> None:
        """Call after the store assigned ids: give them to the answers made before that."""
        for index, original in self.pending_replays:
            assert original.id != 0
            self.outcomes[index] = replace(original, replayed=True)
        for snapshot, account in self.pending_account_ids:
            assert account.id != 0
            snapshot.id = account.id


def accounts_touched(commands: Iterable[Command]) -> set[AccountKey]:
    """Every (ledger, client) a batch reads or writes: what a store must load and lock."""
    keys: set[AccountKey] = set()
    for command in commands:
        if isinstance(command, Transfer):
            keys.add((command.ledger, command.from_client))
            keys.add((command.ledger, command.to_client))
        elif not isinstance(command, ClaimKey):
            keys.add((command.ledger, command.client))
    return keys


def namesake_keys(keys: Collection[AccountKey], accounts: Collection[AccountKey]) -> set[FoldedKey]:
    """The folded names of the `keys` no account of `accounts` has: a batch may open an
    account under one, and the store reads which account, if any, has that folded name
    (`plan_batch`'s namesakes). A name no account may have (too long, a long combining
    run) is left out: folding it would cost, and the rules refuse it first anyway."""
    if len(accounts) == len(keys):  # `accounts` are of `keys`: every one found, as a rule
        return set()
    return {
        (ledger, folded_name(client))
        for ledger, client in keys
        if (ledger, client) not in accounts
        and isinstance(client, str)
        and len(client) <= CLIENT_NAME_LENGTH_MAX
        and not has_a_long_combining_run(client)
    }


def operation_keys(commands: Iterable[Command]) -> set[OperationKey]:
    keys: set[OperationKey] = set()
    for command in commands:
        if isinstance(command, MONEY_COMMAND_TYPES):
            keys.add((command.ledger, command.idempotency_key))
        elif isinstance(command, OpenAccount) and command.opening_balance_cents:
            keys.add((command.ledger, command.opening_key))
    return keys


def refused_money_keys(commands: Sequence[Command], plan: BatchPlan) -> list[OperationKey]:
    """The keys of the money commands this plan refuses. A refused command whose key was
    used before must answer as it did then: a store planned without reading the keys
    looks these few up, and finding one plans the batch again reading every key."""
    return [
        (command.ledger, command.idempotency_key)
        for command, outcome in zip(commands, plan.outcomes, strict=True)
        if isinstance(outcome, KopilkaError) and isinstance(command, MONEY_COMMAND_TYPES)
    ]


def claimed_keys(commands: Iterable[Command]) -> set[OperationKey]:
    """The keys a batch's ClaimKey commands hold: the store reads what stands under them."""
    return {
        (command.ledger, command.idempotency_key)
        for command in commands
        if isinstance(command, ClaimKey)
    }


KnownKeys = dict[OperationKey, Operation | Refusal]


@dataclass(slots=True)
class _OpenClaim:
    command: ClaimKey
    retry: bool  # the key was claimed (with this digest) by an earlier batch
    outcomes_from: int  # where the covered commands' outcomes start
    refusals_before: int


KnownClaims = dict[OperationKey, str]  # a request key -> the digest of its first body


def plan_batch(
    commands: Sequence[Command],
    accounts: dict[AccountKey, Account],
    known_operations: KnownKeys,
    now: datetime,
    known_claims: KnownClaims | None = None,
    closed_sandboxes: Collection[str] = (),
    namesakes: dict[FoldedKey, str] | None = None,
) -> BatchPlan:
    """Apply commands one by one, in order; a later command sees an earlier one's effect.

    `accounts`, `known_operations` (operations and refusals by key) and
    `known_claims` (the digests that stand under the batch's claimed keys) are the
    store's fresh copies: the plan mutates the accounts and adds new accounts,
    operations, refusals and claims to the dicts. A command to one of
    `closed_sandboxes` is refused and leaves nothing, not even a kept refusal: the
    ledger is gone.

    `namesakes` holds, by folded name (`namesake_keys`), the name of the account that has
    it, for the names of the batch that no account of `accounts` has: no new account may
    be named as another is but for case or lookalike letters. None when every name is in
    `accounts`.
    """
    planner = _Planner(accounts, known_operations, now, known_claims, namesakes)
    outcomes = planner.plan.outcomes
    apply = planner.apply
    for command in commands:
        if planner.covered:
            planner.covered -= 1
            if planner.refused_claim is not None:
                outcomes.append(planner.refused_claim)
                continue
        if closed_sandboxes and command.ledger in closed_sandboxes:
            outcomes.append(no_sandbox(command.ledger))
            continue
        try:
            outcomes.append(apply(command))
        # An outcome, not raised again: without its traceback, which holds this frame
        # and so the outcomes, the whole plan would wait for the collector.
        except (Rejected, NotFound) as error:
            outcomes.append(error.with_traceback(None))
            if isinstance(command, MONEY_COMMAND_TYPES):
                planner.keep_refusal(command, error)
        except KopilkaError as error:
            outcomes.append(error.with_traceback(None))
            if isinstance(command, ClaimKey):
                planner.refused_claim, planner.covered = error, command.covers
        if planner.open_claim is not None and not planner.covered:
            planner.close_claim()
    planner.plan.changed_accounts = [a for a in planner.touched.values() if a.id != 0]
    assert len(outcomes) == len(commands)
    return planner.plan


class _Planner:
    def __init__(
        self,
        accounts: dict[AccountKey, Account],
        known_operations: KnownKeys,
        now: datetime,
        known_claims: KnownClaims | None = None,
        namesakes: dict[FoldedKey, str] | None = None,
    ) -> None:
        self.accounts = accounts
        self.known_operations = known_operations
        self.known_claims = {} if known_claims is None else known_claims
        self.namesakes = {} if namesakes is None else namesakes
        self.now = now
        # The claim whose covered commands are being planned, and how many are left.
        self.covered = 0
        self.refused_claim: KopilkaError | None = None
        self.open_claim: _OpenClaim | None = None
        self.plan = BatchPlan()
        self.touched: dict[int, Account] = {}  # by id(account): existing accounts to rewrite
        # Names this batch has found valid: a batch names the same few clients many times.
        self.valid_clients: set[str] = set()

    def apply(self, command: Command) -> Outcome:
        if isinstance(command, MONEY_COMMAND_TYPES):
            return self._apply_money(command)
        if isinstance(command, OpenAccount):
            return self._open_account(command)
        if isinstance(command, ClaimKey):
            return self._claim(command)
        return self._set_limits(command)

    def _claim(self, command: ClaimKey) -> ClaimKey:
        key = command.idempotency_key
        validate_idempotency_key(key)
        if not command.digest:  # made by kopilka from the request's body, never empty
            raise InvalidInput("invalid_idempotency_key", "idempotency key holds no request")
        standing = self.known_claims.get((command.ledger, key))
        # A key names one request: another body under it, or a money operation's key
        # (the store reads those for every claimed key), is another request.
        same = standing == command.digest or standing in command.earlier_digests
        if (standing is not None and not same) or (
            standing is None
            and (command.ledger, key) in self.known_operations
            and not self._its_opening_deposit(command)
        ):
            raise _key_reused(key)
        if standing is None:
            self.known_claims[(command.ledger, key)] = command.digest
            self.plan.claims.append(command)
        self.refused_claim, self.covered = None, command.covers
        plan = self.plan
        self.open_claim = _OpenClaim(
            command, standing is not None, len(plan.outcomes) + 1, len(plan.refusals)
        )
        return command

    def _its_opening_deposit(self, command: ClaimKey) -> bool:
        """Whether the operation kept under the claim's key is the opening deposit of the
        account it opens, kept before openings kept claims: opened already (the opening
        is refused as such), not the key used for another request."""
        known = self.known_operations[(command.ledger, command.idempotency_key)]
        return (
            command.opening_of != ""
            and isinstance(known, Operation)  # applied: a refusal kept opened nothing
            and known.kind == "deposit"
            and known.description == OPENING_DESCRIPTION  # not a deposit that opened it
            and known.credit_client == command.opening_of
            and known.amount_cents == command.opening_cents
        )

    def close_claim(self) -> None:
        """After a claim's last covered command: a new claim under which nothing took
        effect (every command refused and none kept) is let go, so that the key stays
        free, and a retry is planned afresh, rather than read as the repeat of a request
        that changed something. A key is thus held exactly while it has a result."""
        claim = self.open_claim
        assert claim is not None
        self.open_claim = None
        plan = self.plan
        if claim.retry or len(plan.refusals) > claim.refusals_before:
            return
        if any(not isinstance(o, KopilkaError) for o in plan.outcomes[claim.outcomes_from :]):
            return
        plan.claims.remove(claim.command)
        del self.known_claims[(claim.command.ledger, claim.command.idempotency_key)]

    def _retried_claim(self) -> ClaimKey | None:
        """The claim, made before, that covers the command being planned: it is a retry."""
        claim = self.open_claim
        return claim.command if claim is not None and claim.retry else None

    def _apply_money(self, command: MoneyCommand) -> Operation:
        validate_money_command(command, self.valid_clients)
        key = (command.ledger, command.idempotency_key)
        if key in self.known_claims:  # the key of an account write or a whole batch
            claim = self.open_claim
            if claim is not None and claim.command.idempotency_key == command.idempotency_key:
                # Never used before: "already used for another request" sent the caller
                # looking for a request that was never made.
                raise Conflict(
                    "idempotency_key_reused",
                    f"idempotency key {command.idempotency_key!r} is the batch's own"
                    " Idempotency-Key: give an item a key of its own",
                )
            raise _key_reused(command.idempotency_key)
        known = self.known_operations.get(key)
        if isinstance(known, Refusal):
            _check_same_request(known, command)
            # A deposit that opens its account is never refused for want of one: a kept
            # account_not_found was a deposit that did not ask to open it, another request.
            if (
                known.code == "account_not_found"
                and isinstance(command, Deposit)
                and command.open_account
            ):
                raise _key_reused(command.idempotency_key)
            raise known.error()
        if known is not None:
            replayed = _replay(known, command)
            if known.id == 0:
                self.plan.pending_replays.append((len(self.plan.outcomes), known))
            return replayed
        if isinstance(command, Transfer):
            return self._transfer(command)
        if isinstance(command, Deposit):
            return self._deposit(command)
        return self._withdraw(command)

    def _deposit(self, command: Deposit) -> Operation:
        account = self.accounts.get((command.ledger, command.client))
        if account is None:
            if not command.open_account:
                raise account_not_found(command.client)
            account = self._new_account(command.ledger, command.client, 0, None)
        _check_credit(account, command.amount_cents, "deposit")
        return self._record(command, "deposit", None, account)

    def _withdraw(self, command: Withdraw) -> Operation:
        account = self._existing(command.ledger, command.client)
        _check_debit(account, command.amount_cents)
        return self._record(command, "withdrawal", account, None)

    def _transfer(self, command: Transfer) -> Operation:
        sender = self._existing(command.ledger, command.from_client)
        receiver = self._existing(command.ledger, command.to_client)
        _check_debit(sender, command.amount_cents)
        _check_credit(receiver, command.amount_cents, "transfer")
        return self._record(command, "transfer", sender, receiver)

    def _record(
        self,
        command: MoneyCommand,
        kind: OperationKind,
        debit: Account | None,
        credit: Account | None,
    ) -> Operation:
        # The hot path of every batch (once per operation), so written plainly:
        # positional construction, no helper calls per side.
        amount = command.amount_cents
        debit_after = credit_after = None
        touched = self.touched
        if debit is not None:
            debit_after = debit.balance_cents = debit.balance_cents - amount
            if debit.id != 0:  # a new account is written whole, not as a change
                touched[id(debit)] = debit
        if credit is not None:
            credit_after = credit.balance_cents = credit.balance_cents + amount
            if credit.id != 0:
                touched[id(credit)] = credit
        operation = Operation(
            command.ledger,
            command.idempotency_key,
            kind,
            amount,
            None if debit is None else debit.client,
            None if credit is None else credit.client,
            command.description,
            self.now,
            debit_after,
            credit_after,
        )
        self.plan.operations.append(operation)
        self.plan.sides.append((debit, credit))
        self.known_operations[(command.ledger, command.idempotency_key)] = operation
        return operation

    def keep_refusal(self, command: MoneyCommand, error: KopilkaError) -> None:
        """Keep a refused command's answer under its key (a replayed refusal is kept)."""
        key = (command.ledger, command.idempotency_key)
        if key in self.known_operations:
            return
        debit, credit = _sides(command)
        refusal = Refusal(
            command.ledger,
            command.idempotency_key,
            command_kind(command),
            command.amount_cents,
            debit,
            credit,
            command.description,
            error.code,
            error.message,
            self.now,
        )
        self.known_operations[key] = refusal
        self.plan.refusals.append(refusal)

    def _open_account(self, command: OpenAccount) -> Account:
        deposit = validate_opening(command)
        floor, cap = command.min_balance_cents, command.max_balance_cents
        opening = command.opening_balance_cents
        existing = self.accounts.get((command.ledger, command.client))
        retried = self._retried_claim()
        if existing is not None and retried is not None and retried.covers == 1:
            # The one command its claim covers, so the claim is kept only because this
            # very command opened the account (a claim under which nothing took effect
            # is let go): answer as it was opened.
            opened = Account(
                command.ledger, command.client, opening, floor, cap, existing.created_at
            )
            opened.id = existing.id
            opened.replayed = True
            if existing.id == 0:
                self.plan.pending_account_ids.append((opened, existing))
            return opened
        if existing is None and retried is not None and retried.covers == 1:
            # This very request opened it (its claim stands), yet the account is not in
            # the view: another batch committed it between this one's reads of accounts
            # and of keys (PostgreSQL reads each as it stands). Planned again, it is seen.
            raise RetryableStoreError("the account was opened by another batch meanwhile")
        # A repeated add-user finds its account made: that, not the key, is the answer.
        if existing is not None:
            raise Conflict(
                "account_exists", f"client {quoted_name(command.client)} already has an account"
            )
        if deposit is not None and (command.ledger, command.opening_key) in self.known_operations:
            raise _key_reused(command.opening_key)
        if floor > opening:
            raise Rejected(
                "floor_above_balance",
                f"the opening balance {format_money(opening)} is below the floor "
                f"{format_money(floor)}",
            )
        if cap is not None and cap < opening:
            raise Rejected(
                "cap_below_balance",
                f"the opening balance {format_money(opening)} is above the cap of "
                f"{format_money(cap)}",
            )
        # Opened with a floor of at most zero, credited, then given its floor: every
        # step keeps the balance within its bounds, all in this one batch.
        account = self._new_account(command.ledger, command.client, min(floor, 0), cap)
        if deposit is not None:
            self._record(deposit, "deposit", None, account)
        account.min_balance_cents = floor
        return self._snapshot(account)

    def _set_limits(self, command: SetLimits) -> Account:
        validate_client(command.client)
        validate_limits_change(command)
        account = self._existing(command.ledger, command.client)
        if self._retried_claim() is not None:
            # Applied when its key was claimed: setting the limits again could undo a
            # later change. The account as it is now is the answer.
            replayed = self._snapshot(account)
            replayed.replayed = True
            return replayed
        floor = (
            account.min_balance_cents
            if command.min_balance_cents is None
            else command.min_balance_cents
        )
        cap = (
            None
            if command.clear_max
            else (
                account.max_balance_cents
                if command.max_balance_cents is None
                else command.max_balance_cents
            )
        )
        validate_limits(floor, cap)
        if floor > account.balance_cents:
            raise Rejected(
                "floor_above_balance",
                f"the floor {format_money(floor)} would be above the balance "
                f"{format_money(account.balance_cents)} of {account.client}",
            )
        if cap is not None and cap < account.balance_cents:
            raise Rejected(
                "cap_below_balance",
                f"the cap {format_money(cap)} would be below the balance "
                f"{format_money(account.balance_cents)} of {account.client}",
            )
        account.min_balance_cents = floor
        account.max_balance_cents = cap
        self._touch(account)
        self.plan.limits_changed = True
        return self._snapshot(account)

    def _snapshot(self, account: Account) -> Account:
        """The account as this command left it; later commands in the batch may change it."""
        snapshot = replace(account)
        if account.id == 0:
            self.plan.pending_account_ids.append((snapshot, account))
        return snapshot

    def _new_account(self, ledger: str, client: str, floor: int, cap: int | None) -> Account:
        refusal = new_name_refusal(client)
        if refusal is not None:
            raise InvalidInput(
                "invalid_client", f"a new client's name {refusal}: {quoted_name(client)}"
            )
        folded = (ledger, folded_name(client))
        namesake = self.namesakes.get(folded)
        if namesake == client:
            # Its very name: another batch committed the account between the store's
            # reads of accounts and of folded names (PostgreSQL reads each as it stands).
            # Planned again, it is seen.
            raise RetryableStoreError("the account was opened by another batch meanwhile")
        if namesake is not None:
            # "john jones" for "John Jones" would list as the same client, and be another
            # account: the money meant for one would sit in the other.
            raise InvalidInput(
                "invalid_client",
                f"a new client's name {refusal_beside(namesake, client)}: {quoted_name(client)}",
            )
        self.namesakes[folded] = client
        account = Account(ledger, client, 0, floor, cap, self.now)
        self.accounts[(ledger, client)] = account
        self.plan.new_accounts.append(account)
        return account

    def _existing(self, ledger: str, client: str) -> Account:
        account = self.accounts.get((ledger, client))
        if account is None:
            raise account_not_found(client)
        return account

    def _touch(self, account: Account) -> None:
        if account.id != 0:
            self.touched[id(account)] = account


def validate_idempotency_key(key: str) -> None:
    if not key or len(key) > IDEMPOTENCY_KEY_LENGTH_MAX:
        raise InvalidInput(
            "invalid_idempotency_key",
            f"idempotency key must be 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} characters",
        )
    # A batch item's key comes from JSON, where any character may be written; one that
    # no store can keep (a NUL) must fail its item, not the batch it is grouped into.
    if not key.isprintable():
        raise InvalidInput("invalid_idempotency_key", "idempotency key has control characters")


def validate_ledger_name(ledger: str) -> None:
    """One rule wherever a ledger is named: a flag, a setting, or the Kopilka-Ledger header
    (ASCII, so in NFC already; any other name goes through ledger_name)."""
    # Spaces at its ends are refused, not trimmed: an HTTP header loses them, so such a
    # name would be one ledger embedded and another over the network.
    if (
        not ledger.strip()
        or ledger != ledger.strip()
        or len(ledger) > LEDGER_NAME_LENGTH_MAX
        or not ledger.isprintable()
    ):
        raise InvalidInput(
            "invalid_ledger",
            f"a ledger name is 1 to {LEDGER_NAME_LENGTH_MAX} printable characters,"
            " without spaces at its ends",
        )


def ledger_name(text: str) -> str:
    """A ledger's name as the ledger keeps and compares it, checked: Unicode NFC, as a
    client's (client_name), so "café" typed with a combining accent (NFD) and "café"
    precomposed are one ledger. Its bounds are the NFC name's, as a client's are."""
    ledger = client_name(text)
    validate_ledger_name(ledger)
    if has_a_long_combining_run(ledger):  # left as it was by client_name: not one ledger
        raise InvalidInput(
            "invalid_ledger",
            f"a ledger name has more than {COMBINING_RUN_MAX} combining marks in a row",
        )
    return ledger


def validate_chosen_ledger(text: str) -> str:
    """A ledger someone names to work in (--ledger, a setting, a token's ledger), as the
    ledger keeps it (ledger_name): any but a sandbox's name, which only the server gives
    out, each for one session."""
    ledger = ledger_name(text)
    if ledger.startswith(SANDBOX_PREFIX):
        raise InvalidInput(
            "invalid_ledger",
            f"a ledger named {SANDBOX_PREFIX}... is a sandbox the server makes for one"
            " session: use `kopilka shell --sandbox`, or another name",
        )
    return ledger


# Refusals the API's decoder also gives, meeting a length first: in the same words.
def client_name_empty() -> InvalidInput:
    return InvalidInput("invalid_client", "client name is empty")


def client_name_too_long() -> InvalidInput:
    return InvalidInput(
        "invalid_client", f"client name is longer than {CLIENT_NAME_LENGTH_MAX} characters"
    )


def description_too_long() -> InvalidInput:
    return InvalidInput(
        "invalid_description", f"description is longer than {DESCRIPTION_LENGTH_MAX} characters"
    )


def too_many_operations(given: int | None = None) -> InvalidInput:
    """A batch request (`POST /v1/batch`, the Python client's execute_many) over the
    API's bound; the embedded bank takes longer lists (Limits.request_operations_max)."""
    count = "" if given is None else f" ({given:,} given)"
    return InvalidInput(
        "too_many_operations",
        f"a batch request carries at most {BATCH_REQUEST_OPERATIONS_MAX:,} operations{count}:"
        " send them in parts",
    )


def not_batched() -> InvalidInput:
    """The refusal of a command a list of commands may not hold (an opening, limits)."""
    return InvalidInput("invalid_command", "only deposits, withdrawals and transfers batch")


def validate_command_list(commands: object) -> None:
    """What execute_many is given, embedded or over HTTP: a list or a tuple of commands,
    whose outcomes come in its order and whose refusals name places in it. A single
    command was a TypeError, a generator applied by one bank and a TypeError from the
    other: anything else is refused whole, nothing applied."""
    if not isinstance(commands, list | tuple):
        raise InvalidInput(
            "invalid_command",
            f"execute_many takes a list or a tuple of commands (given: {type(commands).__name__})",
        )


def validate_limits_change(command: SetLimits) -> None:
    """A change that says what to change, once: refused before any key is taken for it."""
    if type(command.clear_max) is not bool:  # "false" read from a file would clear the cap
        raise InvalidInput("invalid_limit", "clear_max is True or False")
    if command.clear_max and command.max_balance_cents is not None:
        raise InvalidInput(
            "invalid_limit", "a cap and no cap at once: give a cap or clear it, not both"
        )
    nothing = command.min_balance_cents is None and command.max_balance_cents is None
    if nothing and not command.clear_max:
        raise InvalidInput("invalid_limit", "a change of limits needs a floor, a cap or both")
    # Before the account is looked for, as a client checks them before it sends them.
    for limit, what in ((command.min_balance_cents, "floor"), (command.max_balance_cents, "cap")):
        if limit is not None:
            check_whole_cents(limit)
            check_limit(limit, what)


def validate_client(client: object) -> None:
    """Refuse a name no account can ever have had. What a later rule refuses, or what
    hangs on this Python's Unicode version (a character it has not assigned may be one
    the Python that opened the account had), is asked of new names alone (names.py): an
    account opened under such a name stays reachable, its listing's pages too."""
    if not isinstance(client, str):  # None from Python, say: refused, not an AttributeError
        raise InvalidInput("invalid_client", "a client name is text")
    if not client or not client.strip(" "):  # of other spaces: refused below, as such
        raise client_name_empty()
    if len(client) > CLIENT_NAME_LENGTH_MAX:
        raise client_name_too_long()
    if not client.isprintable() and not all(map(_printable_or_unassigned, client)):
        raise InvalidInput(
            "invalid_client",
            "client name has control or invisible formatting characters, spaces other"
            " than a plain space, characters Unicode keeps for private use, or bytes that"
            " are not UTF-8",
        )


def name_beginning(text: object) -> str | None:
    """The beginning of a client's name typed (to list the names that start so) as names
    are kept (NFC); None where no name can begin so: only spaces, a character no name
    holds, or too long. Its end may be a space: "Ann " begins "Ann Lee". Not text:
    refused, as a name is."""
    if not isinstance(text, str):
        raise InvalidInput("invalid_client", "a client name is text")
    beginning = client_name(text)
    if not beginning:
        return beginning
    try:
        validate_client(beginning.rstrip(" "))
    except InvalidInput:
        return None
    return beginning


def _printable_or_unassigned(character: str) -> bool:
    return character.isprintable() or unicodedata.category(character) == "Cn"


def refuse_what_no_store_reads(command: Command) -> None:
    """Refuse, before any store has it, a command whose name or key a store cannot look up
    (a NUL, a lone surrogate): a store reads the named accounts (and a retry's keys)
    before the rules run, and would fail the whole batch the command is grouped with.
    Printable text is safe there, and the rules check the rest; anything else gets the
    rules' own refusal here."""
    if isinstance(command, Transfer):  # each request's: _printable inline
        sender, receiver = command.from_client, command.to_client
        printable = (
            isinstance(sender, str)
            and sender.isprintable()
            and isinstance(receiver, str)
            and receiver.isprintable()
        )
    elif isinstance(command, Deposit | Withdraw):
        printable = _printable(command.client)
    else:  # an opening or limits: only a name to look up
        if isinstance(command, OpenAccount | SetLimits) and not _printable(command.client):
            validate_client(command.client)
        return
    key = command.idempotency_key
    if not (printable and isinstance(key, str) and key.isprintable()):
        validate_money_command(command)


def _printable(name: object) -> bool:
    """Printable text; anything else (no text at all) is the rules' to refuse."""
    return isinstance(name, str) and name.isprintable()


def validate_money_command(command: MoneyCommand, valid_clients: set[str] | None = None) -> None:
    """Refuse a malformed command; `valid_clients` (names found valid before) is added to."""
    amount = command.amount_cents
    if type(amount) is not int or amount <= 0 or amount > AMOUNT_CENTS_MAX:  # once per command
        check_amount_cents(amount)  # says which
    clients = (
        (command.from_client, command.to_client)
        if isinstance(command, Transfer)
        else (command.client,)
    )
    for client in clients:
        if valid_clients is None or client not in valid_clients:
            validate_client(client)
            if valid_clients is not None:
                valid_clients.add(client)
    description = command.description
    if type(description) is not str:  # None from Python, say: refused, not a TypeError
        raise InvalidInput("invalid_description", "a description is text")
    if len(description) > DESCRIPTION_LENGTH_MAX:
        raise description_too_long()
    # Statements print descriptions to terminals and CSV files: no escape sequences there,
    # and no lone surrogates (undecodable bytes from a command line) that no store can keep.
    if UNPRINTABLE.search(description) is not None:
        raise InvalidInput(
            "invalid_description",
            "description has control characters or bytes that are not UTF-8",
        )
    if type(command.idempotency_key) is not str:
        raise InvalidInput("invalid_idempotency_key", "an idempotency key is text")
    validate_idempotency_key(command.idempotency_key)
    if isinstance(command, Deposit) and type(command.open_account) is not bool:
        # "no" read from a file would open the account; a server refuses it as JSON
        raise InvalidInput("invalid_request", "open_account is True or False")
    if isinstance(command, Transfer) and command.from_client == command.to_client:
        raise InvalidInput("same_account", "cannot transfer from a client to the same client")


def validate_opening(command: OpenAccount) -> Deposit | None:
    """What an opening is checked for before any ledger is read; its opening deposit."""
    validate_client(command.client)
    validate_limits(command.min_balance_cents, command.max_balance_cents)
    opening = command.opening_balance_cents
    check_opening_balance(opening)
    if not opening:
        return None
    deposit = Deposit(
        command.client, opening, OPENING_DESCRIPTION, command.opening_key, command.ledger
    )
    validate_money_command(deposit)
    return deposit


def check_opening_balance(cents: int) -> None:
    check_whole_cents(cents)
    if cents < 0 or cents > AMOUNT_CENTS_MAX:
        raise InvalidInput(
            "invalid_amount",
            f"an opening balance must be $0.00 to {format_money(AMOUNT_CENTS_MAX)}",
        )


def check_amount_cents(amount: int) -> None:
    """A money command's amount: whole cents, more than none and at most the maximum."""
    check_whole_cents(amount)
    if amount <= 0 or amount > AMOUNT_CENTS_MAX:
        raise InvalidInput(
            "invalid_amount",
            f"amount must be more than $0.00 and at most {format_money(AMOUNT_CENTS_MAX)}",
        )


def check_whole_cents(cents: object) -> None:
    """Money in a command is whole cents, an int: never a float, nor True for 1."""
    if type(cents) is not int:
        # An int of another type (an IntEnum) shows as a number, or as more digits than
        # Python turns into text: its type is named instead.
        shown = f"a {type(cents).__name__}"
        if not isinstance(cents, int) or type(cents) is bool:
            with contextlib.suppress(ValueError):  # a Fraction of 5,000 digits
                shown = repr(cents)
        raise InvalidInput("invalid_amount", f"an amount is whole cents (an int), not {shown}")


def check_limit(limit: int, what: str) -> None:
    """A floor or cap (`what` it is) in range, refused in the words parse_limit uses for
    its text."""
    if abs(limit) > BALANCE_CENTS_MAX:
        # Named up to a length any text of one would have: a program's int may have more
        # digits than Python will turn into text.
        shown = f" {format_plain(limit)!r}" if abs(limit) < 10**60 else ""
        raise limit_out_of_range(f"{what}{shown}")


def validate_limits(floor: int, cap: int | None) -> None:
    """An account's floor and cap, each in range and the cap not below the floor."""
    check_whole_cents(floor)
    if cap is not None:
        check_whole_cents(cap)
    check_limit(floor, "floor")
    if cap is not None:
        check_limit(cap, "cap")
    if cap is not None and cap < floor:
        raise InvalidInput(
            "invalid_limit",
            f"the cap {format_money(cap)} is below the floor {format_money(floor)}",
        )


def _check_debit(account: Account, amount_cents: int) -> None:
    if account.balance_cents - amount_cents < account.min_balance_cents:
        raise Rejected(
            "insufficient_funds",
            f"insufficient funds: {account.client} has "
            f"{format_money(max(account.available_cents(), 0))} available",
        )


def _check_credit(account: Account, amount_cents: int, what: str) -> None:
    cap = account.max_balance_cents
    after = account.balance_cents + amount_cents
    if cap is not None and after > cap:
        raise Rejected(
            "cap_exceeded",
            f"the {what} would take {account.client} above the cap of {format_money(cap)} "
            f"(balance {format_money(account.balance_cents)})",
        )
    # An account without a cap still has the bank's: a balance must fit a BIGINT column.
    if after > BALANCE_CENTS_MAX:
        raise Rejected(
            "cap_exceeded",
            f"the {what} would take {account.client} above the largest balance the bank "
            f"holds, {format_money(BALANCE_CENTS_MAX)} (balance "
            f"{format_money(account.balance_cents)})",
        )


def _replay(known: Operation, command: MoneyCommand) -> Operation:
    """A repeated key returns the first result, but only for the very same request."""
    _check_same_request(known, command)
    return replace(known, replayed=True)


def _check_same_request(known: Operation | Refusal, command: MoneyCommand) -> None:
    debit, credit = _sides(command)
    same = (
        known.kind == command_kind(command)
        and known.amount_cents == command.amount_cents
        and known.debit_client == debit
        and known.credit_client == credit
        and known.description == command.description
    )
    if not same:
        raise _key_reused(command.idempotency_key)


def _key_reused(key: str) -> Conflict:
    return Conflict(
        "idempotency_key_reused", f"idempotency key {key!r} was already used for another request"
    )


def _sides(command: MoneyCommand) -> tuple[str | None, str | None]:
    """The clients money leaves and reaches."""
    if isinstance(command, Transfer):
        return command.from_client, command.to_client
    if isinstance(command, Deposit):
        return None, command.client
    return command.client, None


def account_not_found(client: str, namesake: str | None = None) -> NotFound:
    """`namesake`: the account of a name alike (folded_name), said to those who may see
    every account (a lookup), never to a money command's sender, who may not."""
    message = f"no account for client {quoted_name(client)}"
    if namesake is not None:
        alike = (
            "differs only in case"
            if differ_in_case_alone(namesake, client)
            else "looks the same (letters drawn alike)"
        )
        message += f"; {quoted_name(namesake)} has one, a name that {alike}"
    return NotFound("account_not_found", message)


def refusal_beside(namesake: str, client: str) -> str:
    """Why `client`, which folds as `namesake` does, may not be a new account's name."""
    if differ_in_case_alone(namesake, client):
        return f"may not differ from another client's, {quoted_name(namesake)}, only in case"
    return (
        f"may not look like another client's, {quoted_name(namesake)}: drawn with letters"
        " alike, it would list as that name"
    )


def quoted_name(name: str) -> str:
    """A name in quotes, as written: repr() would double a backslash in it, and escape a
    quote, so `x\\y` read as `'x\\\\y'`. One that is not printable (a lookup of a name no
    account may have) is shown escaped, so nothing of it acts on a terminal."""
    if not name.isprintable():
        return repr(name)
    if "'" not in name:
        return f"'{name}'"
    return f'"{name}"' if '"' not in name else repr(name)
