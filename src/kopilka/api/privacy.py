"""What a client token may see of other clients' accounts: their names, nothing more.

A client's transfer credits someone else's account, so its answer would carry the
payee's balance after it, and a refusal for the payee's cap would name their cap
and balance. Both are left out for a client token; tellers and admins see them. Its
own keys, kept under its mark, come back as it sent them.
"""

from __future__ import annotations

import copy

from kopilka.api.schemas import OperationOut
from kopilka.client_keys import own_key, unmarked
from kopilka.errors import KopilkaError, Rejected


def hide_payee(out: OperationOut) -> OperationOut:
    """An operation's answer for a client token: its own balance after, not the payee's,
    and its key as the client sent it (client_keys.py)."""
    out.to_balance_after = None
    out.idempotency_key = own_key(out.idempotency_key)
    return out


def refusal_for_client(error: KopilkaError, client: str) -> KopilkaError:
    """A refusal for `client`'s token: a payee's cap is told without its figures, and
    its key as the client sent it (client_keys.py)."""
    if error.code == "cap_exceeded":
        return Rejected("cap_exceeded", "the transfer would take the payee above their cap")
    if error.code == "idempotency_key_reused":
        told = copy.copy(error)  # its flags kept (replayed); the engine's left as it was
        told.message = unmarked(error.message, client)
        told.args = (told.message,)
        return told
    return error
