"""What every store must show after upgrading a ledger that kept "José" decomposed:
shared by the SQLite and PostgreSQL schema tests, which each build the old database."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

from kopilka.domain.model import Deposit, Operation, Transfer, Withdraw
from kopilka.engine import Engine
from kopilka.errors import KopilkaError
from kopilka.tokens import TokenRecord, hash_secret, new_secret
from tests.kopilka_server import ServerProcess

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
    account 3 as JOSE_NFD alone in "side" (renamed), a kept refusal and a token "t-jose"
    made for account 1."""
    twin = await engine.get_account("main", JOSE_NFD)  # a lookup finds the NFC one
    assert (twin.id, twin.client, twin.balance_cents) == (2, JOSE_NFC, 200)
    side = await engine.get_account("side", JOSE_NFD)
    assert (side.id, side.client, side.balance_cents) == (3, JOSE_NFC, 50)
    refused = await engine.execute(Withdraw(JOSE_NFC, 10_000, "rent", "k-refused"))
    assert isinstance(refused, KopilkaError)
    assert (refused.code, refused.message) == ("insufficient_funds", REFUSED)
    # Read in NFC the token would speak for account 2: revoked, its spelling kept.
    token = await engine.store.get_token("t-jose")
    assert token is not None
    assert (token.client, token.revoked) == (JOSE_NFD, True)


def old_client_token(client: str, ledger: str) -> tuple[TokenRecord, str]:
    """A client token as a ledger of before NFC names made it (bound to the name as it
    was typed), and its secret, for a test to write into the old database."""
    token_id, secret = new_secret()
    made = datetime(2026, 1, 5, tzinfo=UTC)  # each test writes its own time in the row
    record = TokenRecord(token_id, hash_secret(secret), "client", client, ledger, made)
    return record, secret


def _path(name: str) -> str:
    return "/v1/accounts/" + quote(name, safe="")


def _balances(server: ServerProcess, ledger: str) -> dict[str, str]:
    with server.client(**{"Kopilka-Ledger": ledger}) as admin:
        page = admin.get("/v1/accounts").json()["accounts"]
    return {account["client"]: account["balance"] for account in page}


def _listed_page_by_page(server: ServerProcess, ledger: str) -> list[str]:
    """Every name, a page of one at a time, each page's next_after given as the next's
    after: as a client reads a bank too big for one page."""
    names: list[str] = []
    after: dict[str, str] = {}
    with server.client(**{"Kopilka-Ledger": ledger}) as admin:
        while True:
            page = admin.get("/v1/accounts", params={"limit": "1", **after}).json()
            names.extend(account["client"] for account in page["accounts"])
            if page["next_after"] is None:
                return names
            after = {"after": page["next_after"]}


def assert_no_token_reaches_another_account(
    server: ServerProcess, twin_secret: str, side_secret: str
) -> None:
    """A server over TWIN_ACCOUNTS after the upgrade. The token made for account 1
    (JOSE_NFD beside its NFC twin in "main") reaches neither José; the one made for
    account 3 (JOSE_NFD alone in "side") works on that account, renamed in NFC."""
    main = {JOSE_NFD: "3.00", JOSE_NFC: "2.00", "\u212b": "0.07", "A\u030a": "0.09"}
    assert _balances(server, "main") == main
    # A page that ends on a name spelt otherwise goes on from that spelling: read as
    # NFC ("A\u030a" as "\u00c5"), the page after it had left out both Josés.
    assert _listed_page_by_page(server, "main") == sorted(main)
    with server.client(twin_secret) as twin:
        for name in (JOSE_NFD, JOSE_NFC):
            for answer in (
                twin.get(_path(name)),
                twin.get(_path(name) + "/statement"),
                twin.post("/v1/withdrawals", json={"client": name, "amount": "1"}),
                twin.post("/v1/transfers", json={"from": name, "to": "\u212b", "amount": "1"}),
            ):
                assert answer.status_code == 401, answer.text
                assert answer.json()["error"]["message"] == "this token has been revoked"
    with server.client(side_secret) as side:
        for name in (JOSE_NFD, JOSE_NFC):
            account = side.get(_path(name))
            assert account.status_code == 200, account.text
            assert (account.json()["client"], account.json()["balance"]) == (JOSE_NFC, "0.50")
        withdrawn = side.post("/v1/withdrawals", json={"client": JOSE_NFD, "amount": "0.20"})
        assert withdrawn.status_code == 201, withdrawn.text
        # Its own account only: not the José of another ledger.
        other = side.get(_path(JOSE_NFC), headers={"Kopilka-Ledger": "main"})
        assert other.status_code == 403, other.text
    assert _balances(server, "side") == {JOSE_NFC: "0.30"}
    assert _balances(server, "main") == main
