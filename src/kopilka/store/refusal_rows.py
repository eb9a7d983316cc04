"""A kept refusal as a table row: the same columns, in the same order, in every SQL store.

The order is the order of Refusal's fields, so a row read back is Refusal(*row).
"""

from __future__ import annotations

from typing import Any

from kopilka.domain.model import Refusal

REFUSAL_COLUMNS = (
    "ledger, idempotency_key, kind, amount, debit_client, credit_client,"
    " description, code, message, created_at"
)


def refusal_values(refusal: Refusal, created_at: Any) -> tuple[Any, ...]:
    """The row of a refusal, with its time as the store keeps times."""
    return (
        refusal.ledger,
        refusal.idempotency_key,
        refusal.kind,
        refusal.amount_cents,
        refusal.debit_client,
        refusal.credit_client,
        refusal.description,
        refusal.code,
        refusal.message,
        created_at,
    )
