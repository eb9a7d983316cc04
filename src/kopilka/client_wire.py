"""The HTTP API's JSON, as the client reads it into domain values and writes them.

Amounts travel as decimal text ("100.50") and are whole cents on both sides; the
shapes are the server's (api/schemas.py), read here without the server's code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from kopilka.domain.model import (
    MONEY_COMMAND_TYPES,
    Account,
    Command,
    Deposit,
    Operation,
    Transfer,
    Withdraw,
)
from kopilka.domain.rules import (
    UNPRINTABLE,
    check_amount_cents,
    check_limit,
    check_opening_balance,
    check_whole_cents,
    not_batched,
    validate_limits,
    validate_money_command,
)
from kopilka.domain.statement import StatementLine
from kopilka.money import format_plain, parse_cents


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as the server lists it: never its secret, nor the secret's hash."""

    id: str
    role: str
    ledger: str
    client: str | None
    created_at: datetime
    revoked: bool


def limit_text(cents: int, what: str) -> str:
    """A floor or cap (`what` it is) as the API's text, refused here as the embedded rules
    refuse it when out of range (one of more digits than Python turns into text, too)."""
    check_whole_cents(cents)
    check_limit(cents, what)
    return format_plain(cents)


def opening_text(cents: int) -> str:
    """An opening balance as the API's text, refused here as the embedded rules refuse it."""
    check_opening_balance(cents)
    return format_plain(cents)


def opening_body(
    client: str, min_balance_cents: int, max_balance_cents: int | None, opening_balance_cents: int
) -> dict[str, Any]:
    """An account opening as POST /v1/accounts carries it: its fields in the order the
    server encodes them for its key's digest, which the embedded bank makes alike.
    Refused here as the rules refuse it, in their order: the limits, then the opening."""
    validate_limits(min_balance_cents, max_balance_cents)
    return {
        "client": client,
        "min_balance": format_plain(min_balance_cents),
        "max_balance": None if max_balance_cents is None else format_plain(max_balance_cents),
        "opening_balance": opening_text(opening_balance_cents),
    }


def amount_text(cents: int) -> str:
    """A money command's amount as the API's text, checked as the embedded bank's rules
    check it, with their message: refused here alike, never sent to be refused otherwise."""
    check_amount_cents(cents)
    return format_plain(cents)


def cents_from(text: str) -> int:
    """An amount as the API writes it ("-12.50"), in cents."""
    return parse_cents(text, allow_negative=True, allow_zero=True)


def text_from(value: Any) -> str:
    """A text of an answer, as it may be printed: what another server (or one posing as
    kopilka) sends to retitle or clear the terminal shows as U+FFFD instead."""
    if not isinstance(value, str):
        raise TypeError("a text of the answer is not text")
    # What no text of a ledger holds (the rules refuse it) and a terminal obeys: control
    # characters (escape sequences), line separators, direction overrides.
    return UNPRINTABLE.sub("\ufffd", value)


def _text_or_none(value: Any) -> str | None:
    return None if value is None else text_from(value)


def account_from(data: dict[str, Any], ledger: str) -> Account:
    cap = data["max_balance"]
    return Account(
        ledger=ledger,
        client=text_from(data["client"]),
        balance_cents=cents_from(data["balance"]),
        min_balance_cents=cents_from(data["min_balance"]),
        max_balance_cents=None if cap is None else cents_from(cap),
        created_at=datetime.fromisoformat(data["created_at"]),
        id=data.get("id", 0),  # a server before ids were told: none known
    )


def token_from(data: dict[str, Any]) -> TokenInfo:
    return TokenInfo(
        id=text_from(data["id"]),
        role=text_from(data["role"]),
        ledger=text_from(data["ledger"]),
        client=_text_or_none(data.get("client")),
        created_at=datetime.fromisoformat(data["created_at"]),
        revoked=data.get("revoked", False),
    )


def operation_from(data: dict[str, Any], ledger: str, replayed: bool) -> Operation:
    kind = data["kind"]
    if kind == "transfer":
        debit, credit = text_from(data["from"]), text_from(data["to"])
        # A client token is not told the payee's balance: its answer leaves it out.
        debit_after, credit_after = data["from_balance_after"], data.get("to_balance_after")
    elif kind == "deposit":
        credit = text_from(data["client"])
        debit, debit_after, credit_after = None, None, data["balance_after"]
    else:
        debit = text_from(data["client"])
        credit, debit_after, credit_after = None, data["balance_after"], None
    return Operation(
        ledger=ledger,
        idempotency_key=text_from(data["idempotency_key"]),
        kind=kind,
        amount_cents=cents_from(data["amount"]),
        debit_client=debit,
        credit_client=credit,
        description=text_from(data["description"]),
        created_at=datetime.fromisoformat(data["created_at"]),
        debit_balance_after_cents=None if debit_after is None else cents_from(debit_after),
        credit_balance_after_cents=None if credit_after is None else cents_from(credit_after),
        id=data["id"],
        replayed=replayed,
    )


def statement_line_from(data: dict[str, Any]) -> StatementLine:
    return StatementLine(
        entry_id=data["id"],
        created_at=datetime.fromisoformat(data["created_at"]),
        kind=data["kind"],
        description=text_from(data["description"]),
        amount_cents=cents_from(data["amount"]),
        balance_after_cents=cents_from(data["balance_after"]),
        counterparty=_text_or_none(data.get("counterparty")),
        operation_id=data["operation_id"],
    )


def batch_item(command: Command) -> dict[str, Any]:
    """A money command as one item of `POST /v1/batch`, checked first by the rules the
    embedded bank checks it by, so that a list is refused alike item by item. Its key's
    length is the server's to judge, as a single write's is: a client token's keys are
    shorter (kept under a mark), and only the server knows whose token this is."""
    if isinstance(command, MONEY_COMMAND_TYPES):
        key = command.idempotency_key
        # Printable text checked with a stand-in: an empty key refused here was told the
        # ledger's limit (200), and a client token's caller has one of its own.
        keyed = isinstance(key, str) and key.isprintable()
        validate_money_command(replace(command, idempotency_key="key") if keyed else command)
    if isinstance(command, Transfer):
        item: dict[str, Any] = {
            "type": "transfer",
            "from": command.from_client,
            "to": command.to_client,
        }
    elif isinstance(command, Deposit):
        item = {"type": "deposit", "client": command.client, "open_account": command.open_account}
    elif isinstance(command, Withdraw):
        item = {"type": "withdrawal", "client": command.client}
    else:
        raise not_batched()
    item["amount"] = amount_text(command.amount_cents)
    item["description"] = command.description
    item["idempotency_key"] = command.idempotency_key
    return item
