"""What every store must show after upgrading a ledger that kept "José" decomposed:
shared by the SQLite and PostgreSQL schema tests, which each build the old database."""

from __future__ import annotations

from datetime import UTC, datetime

from kopilka.domain.model import Deposit, Operation, Transfer, Withdraw
from kopilka.engine import Engine
from kopilka.errors import KopilkaError

JOSE_NFC = "Jos\u00e9"  # precomposed, as every name is kept now
JOSE_NFD = "Jose\u0301"  # e + combining acute accent, as a macOS terminal sends it
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
REFUSED = "insufficient funds: available $4.00, requested $100.00"


async def assert_jose_is_one_client_again(engine: Engine) -> None:
    """Account 1, stored as JOSE_NFD with $4.00 after a $5.00 deposit and a $1.00 transfer
    ("k-rent", operation 10) to Ann, a kept refusal "k-refused" and a token "t-jose"."""
    account = await engine.get_account("main", JOSE_NFC)
    assert (account.id, account.client, account.balance_cents) == (1, JOSE_NFC, 400)
    assert (await engine.get_account("main", JOSE_NFD)).id == 1  # either spelling
    assert [a.client for a in await engine.list_accounts("main")] == ["Ann", JOSE_NFC]
    statement = await engine.statement("main", JOSE_NFC, None, FAR_FUTURE)
    assert [line.amount_cents for line in statement.lines] == [500, -100]
    # A retry of the transfer made before the upgrade is that transfer, not a new one.
    replay = await engine.execute(Transfer(JOSE_NFD, "Ann", 100, "rent", "k-rent"))
    assert isinstance(replay, Operation)
    assert (replay.replayed, replay.id, replay.debit_client) == (True, 10, JOSE_NFC)
    # A retry of the refused withdrawal is refused again, word for word.
    refused = await engine.execute(Withdraw(JOSE_NFD, 10_000, "rent", "k-refused"))
    assert isinstance(refused, KopilkaError)
    assert (refused.code, refused.message) == ("insufficient_funds", REFUSED)
    # New money reaches the same account.
    assert isinstance(await engine.execute(Deposit(JOSE_NFD, 100, "gift", "k-gift")), Operation)
    assert (await engine.get_account("main", JOSE_NFC)).balance_cents == 500
    token = await engine.store.get_token("t-jose")
    assert token is not None
    assert token.client == JOSE_NFC


# Accounts (id, ledger, client, balance) written by a ledger of before NFC names, for
# assert_twins_are_left_for_an_operator.
TWIN_ACCOUNTS = (
    (1, "main", JOSE_NFD, 300),
    (2, "main", JOSE_NFC, 200),  # the twin, made by someone typing it precomposed
    (3, "side", JOSE_NFD, 50),  # alone in its ledger: renamed
    (4, "main", "\u212b", 7),  # ANGSTROM SIGN: its NFC is U+00C5 ...
    (5, "main", "A\u030a", 9),  # ... and so is this one's, with no U+00C5 account
)


async def assert_twins_are_left_for_an_operator(engine: Engine) -> None:
    """Account 1 kept as JOSE_NFD beside account 2 spelt JOSE_NFC in "main" (both stay),
    account 3 as JOSE_NFD alone in "side" (renamed), a kept refusal and a token."""
    twin = await engine.get_account("main", JOSE_NFD)  # a lookup finds the NFC one
    assert (twin.id, twin.client, twin.balance_cents) == (2, JOSE_NFC, 200)
    side = await engine.get_account("side", JOSE_NFD)
    assert (side.id, side.client, side.balance_cents) == (3, JOSE_NFC, 50)
    refused = await engine.execute(Withdraw(JOSE_NFC, 10_000, "rent", "k-refused"))
    assert isinstance(refused, KopilkaError)
    assert (refused.code, refused.message) == ("insufficient_funds", REFUSED)
    token = await engine.store.get_token("t-jose")
    assert token is not None
    assert token.client == JOSE_NFC
