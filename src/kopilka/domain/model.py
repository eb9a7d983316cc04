"""Accounts, the commands that change them and the operations they record.

Money is always integer cents (`*_cents`). Commands are imperatives and
immutable; an Operation is the recorded fact of one applied money command.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeAlias
from unicodedata import combining, is_normalized, normalize

from kopilka.errors import KopilkaError, NotFound, Rejected

DEFAULT_LEDGER = "main"
# A sandbox ledger's name begins so (the API adds its owner's token id). A store takes
# writes to one only while it is open: from Store.open_sandbox until it is dropped.
SANDBOX_PREFIX = "sandbox-"
# The names the API gives sandboxes: the owner's token id and a random part, in hex.
# Only such a ledger with rows and no open sandbox is taken for one ended and still
# being emptied: an older kopilka let a ledger of any name (--ledger, a token's) begin
# with the prefix, and its rows are no sandbox's to remove.
_GIVEN_SANDBOX_NAME = re.compile(r"sandbox-[0-9a-f]{16}-[0-9a-f]{12}")


def is_given_sandbox_name(ledger: str) -> bool:
    return _GIVEN_SANDBOX_NAME.fullmatch(ledger) is not None


OperationKind: TypeAlias = Literal["deposit", "withdrawal", "transfer"]


# Unicode's stream-safe text format (UAX #15) has at most 30 combining marks in a row.
# NFC orders a run of them by insertion sort, its cost growing with the run's square: a
# name of 800 marks in a row took half a millisecond, a batch of such names seconds of
# the event loop. A longer run is left as it is, and the rules refuse it.
COMBINING_RUN_MAX = 30


def client_name(text: str) -> str:
    """A client's name as the ledger keeps and compares it: Unicode NFC, so "José" typed
    with a combining accent (NFD) and "José" precomposed are one client. Every name that
    comes in passes through here (commands do it themselves) before it is checked or
    looked up; ASCII text, nearly all of it, costs one check."""
    if type(text) is not str:
        if not isinstance(text, str):
            return text  # no text at all (None, a number): the rules refuse it
        text = str.__str__(text)  # a str subclass is text: kept as the plain str it holds
    if text.isascii() or has_a_long_combining_run(text):  # left for the rules to refuse
        return text
    return text if is_normalized("NFC", text) else normalize("NFC", text)


# Of combining class 0, yet two combining marks each once decomposed (UAX #15 counts
# them so): a run of them is ordered as one of twice as many marks.
_TWO_MARKS = frozenset("\u0f73\u0f75\u0f81")


def plain_text(value: object) -> object:
    """A str subclass as the plain str it holds (text all the same, and kept as text);
    anything else as it is, for the rules to refuse."""
    return str.__str__(value) if isinstance(value, str) else value


def has_a_long_combining_run(text: str) -> bool:
    """More than COMBINING_RUN_MAX combining marks in a row, counted as NFC meets them
    (looked for until found)."""
    if text.isascii() or len(text) * 2 <= COMBINING_RUN_MAX:
        return False
    run = 0
    for character in text:
        if combining(character):
            run += 1
        elif character in _TWO_MARKS:
            run += 2
        else:
            run = 0
        if run > COMBINING_RUN_MAX:
            return True
    return False


@dataclass(slots=True)
class Account:
    ledger: str
    client: str
    balance_cents: int
    min_balance_cents: int
    max_balance_cents: int | None
    created_at: datetime
    id: int = 0  # assigned by the store when the account is first written
    # An opening answered again under its key: the same account, its deposit not made anew.
    replayed: bool = field(default=False, compare=False)

    def available_cents(self) -> int:
        """How much may leave the account before it hits its floor."""
        return self.balance_cents - self.min_balance_cents


@dataclass(frozen=True, slots=True)
class Deposit:
    client: str
    amount_cents: int
    description: str
    idempotency_key: str
    ledger: str = DEFAULT_LEDGER
    # The shell's first deposit opens the account; the API asks for it explicitly.
    open_account: bool = True

    def __post_init__(self) -> None:
        # client_name, plain ASCII inline: a hot path.
        if type(self.client) is not str or not self.client.isascii():
            object.__setattr__(self, "client", client_name(self.client))
        if type(self.description) is not str:
            object.__setattr__(self, "description", plain_text(self.description))


@dataclass(frozen=True, slots=True)
class Withdraw:
    client: str
    amount_cents: int
    description: str
    idempotency_key: str
    ledger: str = DEFAULT_LEDGER

    def __post_init__(self) -> None:
        if type(self.client) is not str or not self.client.isascii():
            object.__setattr__(self, "client", client_name(self.client))
        if type(self.description) is not str:
            object.__setattr__(self, "description", plain_text(self.description))


@dataclass(frozen=True, slots=True)
class Transfer:
    from_client: str
    to_client: str
    amount_cents: int
    description: str
    idempotency_key: str
    ledger: str = DEFAULT_LEDGER

    def __post_init__(self) -> None:
        if type(self.from_client) is not str or not self.from_client.isascii():
            object.__setattr__(self, "from_client", client_name(self.from_client))
        if type(self.to_client) is not str or not self.to_client.isascii():
            object.__setattr__(self, "to_client", client_name(self.to_client))
        if type(self.description) is not str:
            object.__setattr__(self, "description", plain_text(self.description))


OPENING_DESCRIPTION = "Opening balance"


@dataclass(frozen=True, slots=True)
class OpenAccount:
    client: str
    min_balance_cents: int = 0
    max_balance_cents: int | None = None
    ledger: str = DEFAULT_LEDGER
    # Money the account opens with: posted as a deposit (keyed `opening_key`) in the same
    # transaction, so the statement shows it and the floor may be above zero at once.
    opening_balance_cents: int = 0
    opening_key: str = ""

    def __post_init__(self) -> None:
        if type(self.client) is not str:  # a str subclass: kept as the plain str it holds
            object.__setattr__(self, "client", plain_text(self.client))
            if not isinstance(self.client, str):
                return  # no text at all (None, a number): the rules refuse it
        if not is_normalized("NFC", self.client):
            object.__setattr__(self, "client", normalize("NFC", self.client))


@dataclass(frozen=True, slots=True)
class SetLimits:
    """Change a floor and/or a cap. None leaves a bound as it is; clear_max removes the cap."""

    client: str
    min_balance_cents: int | None = None
    max_balance_cents: int | None = None
    clear_max: bool = False
    ledger: str = DEFAULT_LEDGER

    def __post_init__(self) -> None:
        if type(self.client) is not str:  # a str subclass: kept as the plain str it holds
            object.__setattr__(self, "client", plain_text(self.client))
            if not isinstance(self.client, str):
                return  # no text at all (None, a number): the rules refuse it
        if not is_normalized("NFC", self.client):
            object.__setattr__(self, "client", normalize("NFC", self.client))


@dataclass(frozen=True, slots=True)
class ClaimKey:
    """Hold a request's idempotency key for the body it came with (`digest`), in the same
    transaction as the `covers` commands that follow it in its batch. The first body
    under a key that took effect stands (a claim under which every command was refused,
    and none kept, is let go); should another one come under it later, the claim and
    its covered commands are refused (idempotency_key_reused) and none of them applies.
    The same body again is a retry: money commands replay by their own keys, an account
    opening answers as it was opened, limits are not set again. A claim that holds is
    its own outcome."""

    ledger: str
    idempotency_key: str
    digest: str
    covers: int = 0
    # The digests this very request had in earlier versions (a name spelt decomposed):
    # a key one of them holds is the same request again.
    earlier_digests: tuple[str, ...] = ()
    # The client (its name as kept) whose opening the claim covers, and its opening
    # balance: a deposit of it to that client applied under the key, and no claim (a
    # ledger older than openings' claims: SQLite schema 5, PostgreSQL 4), is this
    # opening's own, made before; not another request's.
    opening_of: str = ""
    opening_cents: int = 0


MoneyCommand: TypeAlias = Deposit | Withdraw | Transfer
# For isinstance on the hot paths: checking a tuple costs about a third of checking the
# union above, which `Deposit | Withdraw | Transfer` builds anew on every evaluation.
MONEY_COMMAND_TYPES = (Deposit, Withdraw, Transfer)
Command: TypeAlias = Deposit | Withdraw | Transfer | OpenAccount | SetLimits | ClaimKey


@dataclass(slots=True)
class Operation:
    """An applied deposit, withdrawal or transfer, with the balances it left behind."""

    ledger: str
    idempotency_key: str
    kind: OperationKind
    amount_cents: int
    debit_client: str | None  # the account money left (withdrawal, transfer)
    credit_client: str | None  # the account money reached (deposit, transfer)
    description: str
    created_at: datetime
    debit_balance_after_cents: int | None
    credit_balance_after_cents: int | None
    id: int = 0  # assigned by the store
    replayed: bool = False  # True when answered from an earlier request with the same key


@dataclass(frozen=True, slots=True)
class Refusal:
    """A money command the rules refused (funds, cap, unknown account), kept under its
    idempotency key like an applied one: a retry with that key gets the same answer,
    even once the funds are there, and never applies it later by surprise."""

    ledger: str
    idempotency_key: str
    kind: OperationKind
    amount_cents: int
    debit_client: str | None
    credit_client: str | None
    description: str
    code: str
    message: str
    created_at: datetime

    def error(self) -> KopilkaError:
        """The refusal as answered again under its key."""
        error: KopilkaError
        if self.code == "account_not_found":
            error = NotFound(self.code, self.message)
        else:
            error = Rejected(self.code, self.message)
        error.replayed = True
        return error


@dataclass(slots=True)
class Entry:
    """One account's side of an operation: signed amount and the balance after it."""

    account: Account
    operation: Operation
    amount_cents: int
    balance_after_cents: int


Outcome: TypeAlias = Operation | Account | ClaimKey | KopilkaError


def command_kind(command: MoneyCommand) -> OperationKind:
    if isinstance(command, Deposit):
        return "deposit"
    if isinstance(command, Withdraw):
        return "withdrawal"
    return "transfer"


def sandbox_ledgers(commands: Iterable[Command]) -> set[str]:
    """The sandbox ledgers a batch writes to: the store checks, in the batch's
    transaction, that each is still open."""
    return {ledger for ledger in {c.ledger for c in commands} if ledger.startswith(SANDBOX_PREFIX)}
