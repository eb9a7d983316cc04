"""Client names over HTTP are compared in Unicode NFC: a decomposed "José" (as macOS may
send it) and a precomposed one are one client, in bodies, paths and token bindings."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from tests.kopilka_server import ServerProcess, running_server_with_accounts

NFC = "Jos\u00e9"  # é precomposed
NFD = "Jose\u0301"  # e + COMBINING ACUTE ACCENT


def path(name: str) -> str:
    return "/v1/accounts/" + quote(name, safe="")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server_with_accounts(
        tmp_path_factory.mktemp("names") / "home", {"Ann": "100"}
    ) as server:
        yield server


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def accounts(admin: httpx.Client) -> dict[str, str]:
    page = admin.get("/v1/accounts").json()["accounts"]
    names = [account["client"] for account in page]
    assert len(names) == len(set(names)), names
    return {account["client"]: account["balance"] for account in page}


def test_both_spellings_are_one_account(admin: httpx.Client) -> None:
    first = admin.post(
        "/v1/deposits",
        json={"client": NFD, "amount": "10", "open_account": True},
        headers={"Idempotency-Key": "jose-1"},
    )
    assert first.status_code == 201, first.text
    assert first.json()["client"] == NFC
    second = admin.post("/v1/deposits", json={"client": NFC, "amount": "5", "open_account": True})
    assert second.status_code == 201, second.text
    # The same key with the other spelling is the same request: replayed, not reused.
    again = admin.post(
        "/v1/deposits",
        json={"client": NFC, "amount": "10", "open_account": True},
        headers={"Idempotency-Key": "jose-1"},
    )
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    opened = admin.post("/v1/accounts", json={"client": NFD})
    assert opened.status_code == 409, opened.text
    assert opened.json()["error"]["code"] == "account_exists"
    batch = admin.post(
        "/v1/batch",
        json={
            "operations": [
                {"type": "withdrawal", "client": NFD, "amount": "1"},
                {"type": "transfer", "from": NFC, "to": "Ann", "amount": "1"},
            ]
        },
    )
    assert [result["status"] for result in batch.json()["results"]] == [201, 201], batch.text
    assert accounts(admin) == {"Ann": "101.00", NFC: "13.00"}
    for name in (NFD, NFC):
        account = admin.get(path(name))
        assert account.status_code == 200, account.text
        assert account.json()["client"] == NFC
        statement = admin.get(path(name) + "/statement").json()
        assert statement["client"] == NFC
        assert [line["amount"] for line in statement["lines"]] == [
            "10.00",
            "5.00",
            "-1.00",
            "-1.00",
        ]
    limits = admin.patch(path(NFD), json={"max_balance": "500"})
    assert limits.status_code == 200, limits.text
    assert limits.json()["client"] == NFC


def test_a_long_name_is_measured_in_nfc(admin: httpx.Client) -> None:
    longest = NFD * 50  # 250 characters as sent, the limit of 200 once in NFC
    answer = admin.post("/v1/accounts", json={"client": longest})
    assert answer.status_code == 201, answer.text
    assert answer.json()["client"] == NFC * 50
    assert admin.get(path(longest)).json()["client"] == NFC * 50
    too_long = admin.post("/v1/accounts", json={"client": NFD * 50 + "e\u0301"})
    assert too_long.status_code == 422, too_long.text
    assert too_long.json()["error"]["code"] == "invalid_client"


def test_a_client_token_bound_to_either_spelling_is_the_one_client(
    server: ServerProcess, admin: httpx.Client
) -> None:
    admin.post("/v1/deposits", json={"client": NFC, "amount": "20", "open_account": True})
    made = admin.post("/v1/tokens", json={"role": "client", "client": NFD})
    assert made.status_code == 201, made.text
    assert made.json()["client"] == NFC
    cli = server.command("token", "create", "--role", "client", "--client", NFD)
    assert cli.returncode == 0, cli.stderr
    listed = server.command("token", "list")
    assert f"client={NFC} " in listed.stdout
    assert f"client={NFD}" not in listed.stdout
    for secret in (made.json()["secret"], cli.stdout.strip().splitlines()[-1]):
        with server.client(secret) as jose:
            for name in (NFD, NFC):
                assert jose.get(path(name)).status_code == 200
                assert jose.get(path(name) + "/statement").status_code == 200
            withdrawn = jose.post("/v1/withdrawals", json={"client": NFC, "amount": "1"})
            assert withdrawn.status_code == 201, withdrawn.text
            moved = jose.post("/v1/transfers", json={"from": NFD, "to": "Ann", "amount": "1"})
            assert moved.status_code == 201, moved.text
            assert jose.get(path("Ann")).status_code == 403
