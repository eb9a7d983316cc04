"""A bank statement: opening balance, each operation with its running balance, totals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from kopilka.domain.model import Account, OperationKind
from kopilka.errors import Unavailable


@dataclass(frozen=True, slots=True)
class StatementLine:
    entry_id: int
    created_at: datetime
    kind: OperationKind
    description: str
    amount_cents: int  # signed: negative leaves the account
    balance_after_cents: int
    counterparty: str | None  # the other client of a transfer
    operation_id: int  # shared by both lines of a transfer; the id its caller was given

    @property
    def text(self) -> str:
        """What a person reads: transfers name the other side."""
        if self.kind != "transfer" or self.counterparty is None:
            return self.description
        direction = "to" if self.amount_cents < 0 else "from"
        label = f"Transfer {direction} {self.counterparty}"
        return f"{label}: {self.description}" if self.description else label


@dataclass(frozen=True, slots=True)
class EntryMark:
    """An entry's place in its account's history, and the balance it left."""

    entry_id: int
    created_at: datetime
    balance_after_cents: int

    def precedes(self, line: StatementLine) -> bool:
        return (self.created_at, self.entry_id) < (line.created_at, line.entry_id)


@dataclass(frozen=True, slots=True)
class StatementHeader:
    """A statement as it is asked for: the lines it reads end at `last`."""

    account: Account
    till: datetime  # as given, or the ledger's now for a period up to now
    opening_cents: int
    last: EntryMark | None  # the account's last entry up to the period's end, if any

    @property
    def closing_cents(self) -> int:
        return self.opening_cents if self.last is None else self.last.balance_after_cents


@dataclass(frozen=True, slots=True)
class Statement:
    client: str
    since: datetime | None
    till: datetime
    opening_balance_cents: int
    lines: Sequence[StatementLine]
    withdrawals_cents: int
    deposits_cents: int
    closing_balance_cents: int


def build_statement(
    client: str,
    since: datetime | None,
    till: datetime,
    opening_balance_cents: int,
    lines: Sequence[StatementLine],
) -> Statement:
    withdrawals = deposits = 0
    closing = opening_balance_cents
    for line in lines:
        # Each running balance must be the one before and the line's amount: a cheap
        # check on every statement we print. It fails where entries stand out of time
        # order (written before kopilka kept each account's times in order across
        # processes whose clocks disagreed): say so in one line rather than print a
        # statement that is wrong.
        closing += line.amount_cents
        if closing != line.balance_after_cents:
            raise statement_inconsistent(client)
        if line.amount_cents < 0:
            withdrawals -= line.amount_cents
        else:
            deposits += line.amount_cents
    return Statement(
        client, since, till, opening_balance_cents, lines, withdrawals, deposits, closing
    )


def statement_inconsistent(client: str) -> Unavailable:
    return Unavailable(
        "statement_inconsistent",
        f"the statement of {client} does not add up (a running balance does not follow"
        " from the line before it), so it is not shown",
    )
