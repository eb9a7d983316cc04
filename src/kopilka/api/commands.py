"""A decoded money request as the engine command it stands for, if its caller may make it.

Shared by the single-operation endpoints and each item of a batch, so both apply
the very same checks.
"""

from __future__ import annotations

from kopilka.api.auth import Principal, effective_role
from kopilka.api.schemas import DepositIn, TransferIn, WithdrawalIn
from kopilka.client_keys import client_key, not_marked
from kopilka.domain.model import Deposit, MoneyCommand, Transfer, Withdraw, client_name
from kopilka.domain.rules import refuse_what_no_store_reads
from kopilka.errors import Forbidden
from kopilka.money import parse_amount
from kopilka.tokens import Role


def command_from(
    request: TransferIn | WithdrawalIn | DepositIn,
    key: str,
    ledger: str,
    principal: Principal,
    role: Role | None = None,
) -> MoneyCommand:
    """The command a decoded request stands for, if this caller may make it. `role` is
    the caller's effective role in `ledger`, for a batch that has worked it out once."""
    command = _command(request, key, ledger, principal, role)
    refuse_what_no_store_reads(command)  # this request alone, not the batch it joins
    return command


def _command(
    request: TransferIn | WithdrawalIn | DepositIn,
    key: str,
    ledger: str,
    principal: Principal,
    role: Role | None,
) -> MoneyCommand:
    if role is None:
        role = effective_role(principal, ledger)
    if role == "client":
        assert principal.client is not None
        key = client_key(principal.client, not_marked(key))
    else:
        key = not_marked(key)
    if isinstance(request, TransferIn):
        if role == "client" and client_name(request.from_client) != principal.client:
            raise Forbidden("forbidden", "a client token may only move its own money")
        amount = parse_amount(request.amount)
        return Transfer(
            request.from_client, request.to_client, amount, request.description, key, ledger
        )
    if isinstance(request, WithdrawalIn):
        if role == "client" and client_name(request.client) != principal.client:
            raise Forbidden("forbidden", "a client token may only move its own money")
        amount = parse_amount(request.amount)
        return Withdraw(request.client, amount, request.description, key, ledger)
    if role == "client":
        raise Forbidden("forbidden", "deposits are made by a teller or an admin")
    amount = parse_amount(request.amount)
    return Deposit(request.client, amount, request.description, key, ledger, request.open_account)
