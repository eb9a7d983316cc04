"""Request and response bodies as msgspec Structs: one decode, one encode, no dicts.

Amounts travel as JSON strings ("100.50"): a JSON number is refused, because a
binary float cannot carry cents exactly. Unknown fields are refused too, so a
typo ("ammount") is an error and not a silently ignored field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from kopilka.clock import iso_text
from kopilka.domain.model import Account, Operation
from kopilka.domain.rules import BATCH_REQUEST_OPERATIONS_MAX
from kopilka.domain.statement import StatementLine
from kopilka.money import AMOUNT_TEXT_SCHEMA_PATTERN, format_plain

Amount = Annotated[
    str,
    msgspec.Meta(
        description='Exact decimal text, e.g. "100.50"',
        extra_json_schema={"pattern": AMOUNT_TEXT_SCHEMA_PATTERN},
    ),
]
# The rules allow 200 characters once a name is in NFC; spelt decomposed (NFD) it may be
# up to four times as long, so the decoder lets that through for the rules to judge.
Client = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=800,
        description="A client's name, compared in Unicode NFC: at most 200 characters in NFC",
    ),
]
Description = Annotated[str, msgspec.Meta(max_length=500)]


class _In(msgspec.Struct, forbid_unknown_fields=True):
    pass


class OpenAccountIn(_In):
    client: Client
    min_balance: Amount = "0.00"
    max_balance: Amount | None = None
    # Deposited in the same transaction (keyed by the Idempotency-Key header).
    opening_balance: Amount = "0.00"


class SetLimitsIn(_In):
    """Change the floor and/or the cap; an explicit null cap removes it. A floor there
    always is: a null one is refused."""

    min_balance: Amount | msgspec.UnsetType = msgspec.UNSET
    max_balance: Amount | msgspec.UnsetType | None = msgspec.UNSET


class SetLimitsDigest(msgspec.Struct):
    """A SetLimitsIn as its key's digest reads it: an absent floor as null, as it was
    decoded when a null floor still meant "unchanged", so a key kept then still replays."""

    min_balance: str | None
    max_balance: str | msgspec.UnsetType | None


class DepositIn(_In):
    client: Client
    amount: Amount
    description: Description = ""
    # False: a deposit to an unknown client is refused (404). True: it opens the account.
    open_account: bool = False


class WithdrawalIn(_In):
    client: Client
    amount: Amount
    description: Description = ""


class TransferIn(_In):
    from_client: Client = msgspec.field(name="from")
    to_client: Client = msgspec.field(name="to")
    amount: Amount
    description: Description = ""


class BatchDeposit(DepositIn, tag="deposit", tag_field="type"):
    idempotency_key: str | None = None


class BatchWithdrawal(WithdrawalIn, tag="withdrawal", tag_field="type"):
    idempotency_key: str | None = None


class BatchTransfer(TransferIn, tag="transfer", tag_field="type"):
    idempotency_key: str | None = None


BatchItem = BatchDeposit | BatchWithdrawal | BatchTransfer


class BatchIn(_In):
    operations: Annotated[list[BatchItem], msgspec.Meta(max_length=BATCH_REQUEST_OPERATIONS_MAX)]


class BatchRawIn(_In):
    """A batch whose items are left as sent, to decode one by one when one is malformed."""

    operations: Annotated[list[msgspec.Raw], msgspec.Meta(max_length=BATCH_REQUEST_OPERATIONS_MAX)]


class SandboxOut(msgspec.Struct):
    ledger: str
    idle_timeout_seconds: int | float  # as configured: 900, or 2.5


class SandboxIn(_In):
    """A sandbox is asked for with no body, or an empty object: nothing else is read."""


class TokenIn(_In):
    role: Literal["admin", "teller", "client"]
    client: Client | None = None
    ledger: (
        Annotated[
            str,
            msgspec.Meta(
                description="The token's ledger; not given, the request's: its"
                " Kopilka-Ledger header, else the ledger of the token making it"
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class TokenOut(msgspec.Struct, omit_defaults=True):
    id: str
    role: str
    ledger: str
    created_at: str
    client: str | None = None
    revoked: bool = False
    secret: str | None = None  # only in the answer that creates the token


class AccountOut(msgspec.Struct):
    id: int
    client: str
    balance: str
    min_balance: str
    max_balance: str | None
    created_at: str


class AccountPage(msgspec.Struct):
    accounts: list[AccountOut]
    next_after: str | None  # pass as ?after= for the next page; null on the last page


class OperationOut(msgspec.Struct, omit_defaults=True):
    id: int
    kind: Literal["deposit", "withdrawal", "transfer"]
    amount: str
    description: str
    created_at: str
    idempotency_key: str
    client: str | None = None  # deposit and withdrawal
    balance_after: str | None = None  # deposit and withdrawal
    from_client: str | None = msgspec.field(default=None, name="from")  # transfer
    to_client: str | None = msgspec.field(default=None, name="to")  # transfer
    from_balance_after: str | None = None
    to_balance_after: str | None = None


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class ErrorOut(msgspec.Struct):
    error: ErrorDetail


class BatchResult(msgspec.Struct, omit_defaults=True):
    status: int  # the HTTP status this operation alone would have had
    operation: OperationOut | None = None
    error: ErrorDetail | None = None


class BatchOut(msgspec.Struct):
    results: list[BatchResult]


class StatementLineOut(msgspec.Struct, omit_defaults=True):
    id: int
    created_at: str
    kind: Literal["deposit", "withdrawal", "transfer"]
    description: str
    text: str  # what a person reads: transfers name the other side
    amount: str  # signed: negative leaves the account
    balance_after: str
    operation_id: int  # the id the operation's caller was given
    counterparty: str | None = None


class StatementOut(msgspec.Struct):
    """The shape of the JSON statement (the server streams it in this field order)."""

    client: str
    since: str | None
    till: str
    opening_balance: str
    lines: list[StatementLineOut]
    withdrawals: str
    deposits: str
    closing_balance: str


class WhoAmIOut(msgspec.Struct):
    """The caller as its token says: its role, ledger, and a client token's account."""

    token_id: str
    role: str
    ledger: str
    client: str | None = None


class HealthOut(msgspec.Struct):
    status: str
    engine: str


def account_out(account: Account) -> AccountOut:
    cap = account.max_balance_cents
    return AccountOut(
        id=account.id,
        client=account.client,
        balance=format_plain(account.balance_cents),
        min_balance=format_plain(account.min_balance_cents),
        max_balance=None if cap is None else format_plain(cap),
        created_at=iso_text(account.created_at),
    )


_last_time: list[tuple[datetime | None, str]] = [(None, "")]


def _iso(moment: datetime) -> str:
    """Every operation of a batch shares one time: format it once per batch."""
    last, text = _last_time[0]
    if last is not moment:
        text = iso_text(moment)
        _last_time[0] = (moment, text)
    return text


def operation_out(operation: Operation) -> OperationOut:
    # Made in one call, its fields in order: an answer to every write is made here.
    debit_after = operation.debit_balance_after_cents
    credit_after = operation.credit_balance_after_cents
    kind = operation.kind
    if kind == "transfer":
        client = balance_after = None
        from_client, to_client = operation.debit_client, operation.credit_client
        from_after = None if debit_after is None else format_plain(debit_after)
        to_after = None if credit_after is None else format_plain(credit_after)
    else:
        from_client = to_client = from_after = to_after = None
        if kind == "deposit":
            client, after = operation.credit_client, credit_after
        else:
            client, after = operation.debit_client, debit_after
        balance_after = None if after is None else format_plain(after)
    return OperationOut(
        operation.id,
        kind,
        format_plain(operation.amount_cents),
        operation.description,
        _iso(operation.created_at),
        operation.idempotency_key,
        client,
        balance_after,
        from_client,
        to_client,
        from_after,
        to_after,
    )


def statement_line_out(line: StatementLine) -> StatementLineOut:
    return StatementLineOut(
        id=line.entry_id,
        created_at=iso_text(line.created_at),
        kind=line.kind,
        description=line.description,
        text=line.text,
        amount=format_plain(line.amount_cents),
        balance_after=format_plain(line.balance_after_cents),
        operation_id=line.operation_id,
        counterparty=line.counterparty,
    )
