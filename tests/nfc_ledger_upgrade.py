"""What every store must show after upgrading a ledger named "café" decomposed: shared
by the SQLite and PostgreSQL schema tests, which each write the old rows in their own
schema. Ledger names are kept in NFC as client names are (tests/nfc_upgrade.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from kopilka.domain.model import ClaimKey, Deposit, Operation, Transfer, Withdraw
from kopilka.engine import Engine
from kopilka.errors import Conflict, KopilkaError
from kopilka.tokens import Role, TokenRecord, hash_secret, new_secret
from tests.kopilka_server import ServerProcess
from tests.nfc_upgrade import FAR_FUTURE, REFUSED

CAFE_NFC = "caf\u00e9"  # precomposed, as every ledger is named now
CAFE_NFD = "cafe\u0301"  # e + combining acute accent, as a macOS terminal sends it
TEA_NFC = "th\u00e9"
TEA_NFD = "the\u0301"
NAIVE_NFC = "na\u00efve"  # its rows under this spelling alone ...
NAIVE_NFD = "nai\u0308ve"  # ... and a token bound to this one, which has none
# ASCII, as the server names every sandbox: no upgrade of names touches it.
SANDBOX = "sandbox-0123456789abcdef-00aa11bb22cc"
BATCH_DIGEST = "d" * 64  # of the body first sent under the key "k-batch"

# Accounts (id, ledger, client, balance) an older kopilka wrote. Ann of CAFE_NFD then
# paid Bob $1.00 ("k-rent", operation 10) and was refused a withdrawal ("k-refused").
OLD_ACCOUNTS = (
    (1, CAFE_NFD, "Ann", 500),  # alone of its name: renamed
    (2, CAFE_NFD, "Bob", 0),
    (3, TEA_NFD, "Ann", 300),  # twins: one name spelt twice, each with its rows
    (4, TEA_NFC, "Ann", 200),
    (5, NAIVE_NFC, "Cy", 100),
)
# The keys of POST /v1/batch requests (ledger, key) held before the upgrade.
OLD_BATCH_KEYS = ((CAFE_NFD, "k-batch"), (TEA_NFD, "k-batch"))


def old_token(role: Role, ledger: str, client: str | None = None) -> tuple[TokenRecord, str]:
    """A token bound to `ledger` as an older kopilka made it (spelt as it was typed), and
    its secret, for a test to write into the old database."""
    token_id, secret = new_secret()
    made = datetime(2026, 1, 5, tzinfo=UTC)  # each test writes its own time in the row
    return TokenRecord(token_id, hash_secret(secret), role, client, ledger, made), secret


def old_tokens() -> dict[str, tuple[TokenRecord, str]]:
    """The tokens of the old database, by what each is for."""
    return {
        "cafe": old_token("teller", CAFE_NFD),  # its ledger alone of its name: rewritten
        "ann": old_token("client", CAFE_NFD, "Ann"),
        "tea twin": old_token("teller", TEA_NFD),  # in NFC it would reach the other: revoked
        "tea": old_token("teller", TEA_NFC),  # already NFC: as it was
        "admin": old_token("admin", TEA_NFD),  # reaches every ledger anyway: rewritten
        # Its spelling has no rows, NFC's has: in NFC it would reach Cy's: revoked.
        "naive stray": old_token("client", NAIVE_NFD, "Cy"),
        # Made for the NFC spelling, with no rows: CAFE_NFD's renamed into it: revoked.
        "cafe nfc": old_token("client", CAFE_NFC, "Ann"),
    }


async def assert_cafe_is_one_ledger_again(engine: Engine) -> None:
    """OLD_ACCOUNTS and the rest of the old rows, upgraded: CAFE_NFD's rows are under
    CAFE_NFC, with their keys; the TEA twins are both left as they were."""
    ann = await engine.get_account(CAFE_NFC, "Ann")
    assert (ann.id, ann.ledger, ann.balance_cents) == (1, CAFE_NFC, 400)
    assert [a.client for a in await engine.list_accounts(CAFE_NFC)] == ["Ann", "Bob"]
    assert await engine.list_accounts(CAFE_NFD) == []  # no rows left under that spelling
    statement = await engine.statement(CAFE_NFC, "Ann", None, FAR_FUTURE)
    assert [line.amount_cents for line in statement.lines] == [500, -100]
    # A retry of the transfer made before the upgrade is that transfer, not a new one.
    replay = await engine.execute(Transfer("Ann", "Bob", 100, "rent", "k-rent", CAFE_NFC))
    assert isinstance(replay, Operation)
    assert (replay.replayed, replay.id) == (True, 10)
    # A retry of the refused withdrawal is refused again, word for word.
    refused = await engine.execute(Withdraw("Ann", 10_000, "rent", "k-refused", CAFE_NFC))
    assert isinstance(refused, KopilkaError)
    assert (refused.code, refused.message) == ("insufficient_funds", REFUSED)
    # The key of a batch request still stands for the body it came with.
    other_body = ClaimKey(CAFE_NFC, "k-batch", "e" * 64)
    try:
        await engine.submit_many([Deposit("Bob", 1, "x", "k-other", CAFE_NFC)], other_body)
    except Conflict as reused:
        assert reused.code == "idempotency_key_reused"
    else:
        raise AssertionError("the key k-batch was taken again under another body")
    assert (await engine.get_account(CAFE_NFC, "Bob")).balance_cents == 100
    # The twins: each left with its own rows, the NFC one reached by its name.
    tea = await engine.get_account(TEA_NFC, "Ann")
    assert (tea.id, tea.balance_cents) == (4, 200)
    left = await engine.list_accounts(TEA_NFD)
    assert [(a.id, a.ledger, a.balance_cents) for a in left] == [(3, TEA_NFD, 300)]


def assert_tokens_reach_the_ledgers_they_were_made_for(
    server: ServerProcess, tokens: dict[str, tuple[TokenRecord, str]]
) -> None:
    """A server over the upgraded rows of OLD_ACCOUNTS and old_tokens()."""
    secret = {purpose: pair[1] for purpose, pair in tokens.items()}
    with server.client(secret["cafe"]) as cafe:
        assert cafe.get("/v1/whoami").json()["ledger"] == CAFE_NFC
        ann = cafe.get("/v1/accounts/Ann")
        assert ann.status_code == 200, ann.text
        assert ann.json()["balance"] == "4.00"
    with server.client(secret["ann"]) as ann_token:
        own = ann_token.get("/v1/accounts/Ann")
        assert own.status_code == 200, own.text
        assert own.json()["balance"] == "4.00"
    with server.client(secret["tea twin"]) as twin:
        refused = twin.get("/v1/accounts/Ann")
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["message"] == "this token has been revoked"
    with server.client(secret["cafe nfc"]) as made_for_none:
        refused = made_for_none.get("/v1/accounts/Ann")
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["message"] == "this token has been revoked"
    with server.client(secret["naive stray"]) as stray:
        refused = stray.get("/v1/accounts/Cy")
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["message"] == "this token has been revoked"
    with server.client(secret["tea"]) as tea:
        assert tea.get("/v1/accounts/Ann").json()["balance"] == "2.00"
    with server.client(secret["admin"]) as admin:
        assert admin.get("/v1/whoami").json()["ledger"] == TEA_NFC
        assert admin.get("/v1/accounts/Ann").json()["balance"] == "2.00"
