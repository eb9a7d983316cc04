"""Who may do what: every auth boundary against a real server, and nothing changes on a refusal."""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from tests.kopilka_server import (
    ServerProcess,
    kopilka_command,
    running_server,
    running_server_with_accounts,
    server_env,
)

from kopilka.client import connect_bank
from kopilka.domain.model import Withdraw
from kopilka.errors import KopilkaError
from kopilka.tokens import hash_secret, new_secret, token_id_of


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("auth") / "home"
    with running_server_with_accounts(home, {"Ann": "100", "Bob": "100"}) as server:
        yield server


def make_token(server: ServerProcess, role: str, client: str | None = None) -> tuple[str, str]:
    with server.client() as admin:
        answer = admin.post("/v1/tokens", json={"role": role, "client": client})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], answer.json()["secret"]


def balances(server: ServerProcess) -> dict[str, str]:
    with server.client() as admin:
        page = admin.get("/v1/accounts").json()
    return {account["client"]: account["balance"] for account in page["accounts"]}


def assert_refused(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


def test_missing_and_malformed_tokens_are_401(server: ServerProcess) -> None:
    before = balances(server)
    transfer = {"from": "Ann", "to": "Bob", "amount": "1"}
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer kop_0123456789abcdef_wrong"},
    ):
        answer = httpx.post(f"{server.url}/v1/transfers", json=transfer, headers=headers)
        assert_refused(answer, 401, "unauthorized")
        read = httpx.get(f"{server.url}/v1/accounts/Ann", headers=headers)
        assert_refused(read, 401, "unauthorized")
        for refusal in (answer, read):  # says how to authenticate, as HTTP asks
            assert refusal.headers["www-authenticate"].startswith("Bearer")
    assert balances(server) == before


def test_the_scheme_is_read_in_any_case(server: ServerProcess) -> None:
    """HTTP's schemes are case-insensitive: some proxies and clients send "bearer"."""
    for scheme in ("bearer", "BEARER"):
        answer = httpx.get(
            f"{server.url}/v1/accounts/Ann",
            headers={"Authorization": f"{scheme} {server.token}"},
        )
        assert answer.status_code == 200, answer.text


def test_a_revoked_token_s_state_is_told_only_to_its_holder(server: ServerProcess) -> None:
    """Token ids are no secret (printed, listed): with a wrong secret, a revoked token is
    an invalid token like any other, not one said to be revoked."""
    token_id, secret = make_token(server, "teller")
    with server.client() as admin:
        assert admin.delete(f"/v1/tokens/{token_id}").status_code == 204
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    with server.client(forged) as forger:
        refused = forger.get("/v1/accounts/Ann")
    assert_refused(refused, 401, "unauthorized")
    assert refused.json()["error"]["message"] == "invalid token"
    with server.client(secret) as holder:
        refused = holder.get("/v1/accounts/Ann")
    assert refused.json()["error"]["message"] == "this token has been revoked"


@pytest.mark.parametrize(
    ("client", "ledger"), [("Jose\u0301", "main"), (None, "cafe\u0301")], ids=["client", "ledger"]
)
def test_a_token_bound_to_a_name_not_in_nfc_is_honoured_nowhere(
    server: ServerProcess, client: str | None, ledger: str
) -> None:
    """A token row spelling its name otherwise than the ledger keeps names (left so by an
    upgrade beside a twin, or written by another tool) would, read in NFC, speak for
    another account or a ledger no one can name: it is no token at all."""
    token_id, secret = new_secret()
    with closing(sqlite3.connect(server.db)) as database, database:
        database.execute(
            "INSERT INTO tokens (id, token_hash, role, client, ledger, created_at)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            (token_id, hash_secret(secret), "client" if client else "admin", client, ledger),
        )
    with server.client(secret) as holder:
        refused = holder.get("/v1/whoami")
    assert_refused(refused, 401, "unauthorized")
    assert refused.json()["error"]["message"] == "invalid token"


def test_a_sandbox_is_its_maker_s_alone_and_wholly(server: ServerProcess) -> None:
    """Inside its own sandbox a client token may do everything (open accounts, set
    limits); no other token but an admin's may use it, or drop it."""
    _, client_secret = make_token(server, "client", "Ann")
    _, teller_secret = make_token(server, "teller")
    with server.client(client_secret) as ann:
        made = ann.post("/v1/sandboxes")
        assert made.status_code == 201, made.text
        sandbox = {"Kopilka-Ledger": made.json()["ledger"]}
        opened = ann.post("/v1/accounts", json={"client": "Zed"}, headers=sandbox)
        assert opened.status_code == 201, opened.text
        limits = ann.patch("/v1/accounts/Zed", json={"min_balance": "-5"}, headers=sandbox)
        assert limits.status_code == 200, limits.text
    with server.client(teller_secret) as teller:
        assert_refused(teller.get("/v1/accounts/Zed", headers=sandbox), 403, "forbidden")
        dropped = teller.delete(f"/v1/sandboxes/{sandbox['Kopilka-Ledger']}")
        assert_refused(dropped, 403, "forbidden")
    with server.client(client_secret) as ann:
        assert ann.get("/v1/accounts/Zed", headers=sandbox).json()["min_balance"] == "-5.00"
    with server.client() as admin:
        assert admin.delete(f"/v1/sandboxes/{sandbox['Kopilka-Ledger']}").status_code == 204


def test_a_right_id_with_a_wrong_secret_is_401(server: ServerProcess) -> None:
    _, secret = make_token(server, "teller")
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    with server.client(forged) as forger:
        assert_refused(forger.get("/v1/accounts/Ann"), 401, "unauthorized")
    with server.client(secret) as teller:
        assert teller.get("/v1/accounts/Ann").status_code == 200
    with server.client(forged) as forger:  # after the real one was cached
        assert_refused(forger.get("/v1/accounts/Ann"), 401, "unauthorized")


def test_client_token_sees_and_moves_only_its_own_account(server: ServerProcess) -> None:
    _, secret = make_token(server, "client", "Ann")
    before = balances(server)
    with server.client(secret) as ann:
        assert ann.get("/v1/accounts/Ann").json()["client"] == "Ann"
        assert ann.get("/v1/accounts/Ann/statement").status_code == 200
        assert_refused(ann.get("/v1/accounts/Bob"), 403, "forbidden")
        assert_refused(ann.get("/v1/accounts/Bob/statement"), 403, "forbidden")
        assert_refused(ann.get("/v1/accounts"), 403, "forbidden")
        stolen = ann.post("/v1/transfers", json={"from": "Bob", "to": "Ann", "amount": "5"})
        assert_refused(stolen, 403, "forbidden")
        withdrawn = ann.post("/v1/withdrawals", json={"client": "Bob", "amount": "5"})
        assert_refused(withdrawn, 403, "forbidden")
        deposit = ann.post("/v1/deposits", json={"client": "Ann", "amount": "5"})
        assert_refused(deposit, 403, "forbidden")
        batch = ann.post(
            "/v1/batch",
            json={"operations": [{"type": "transfer", "from": "Bob", "to": "Ann", "amount": "5"}]},
        )
        assert batch.json()["results"][0]["status"] == 403
        limits = ann.patch("/v1/accounts/Ann", json={"min_balance": "-1000"})
        assert_refused(limits, 403, "forbidden")
        # An account opened with money in it is money made from nothing.
        opened = ann.post("/v1/accounts", json={"client": "Mal", "opening_balance": "1000000"})
        assert_refused(opened, 403, "forbidden")
        assert_refused(ann.get("/v1/tokens"), 403, "forbidden")
        assert_refused(ann.post("/v1/tokens", json={"role": "admin"}), 403, "forbidden")
        assert_refused(ann.delete("/v1/tokens/0123456789abcdef"), 403, "forbidden")
        other_ledger = ann.get("/v1/accounts/Ann", headers={"Kopilka-Ledger": "other"})
        assert_refused(other_ledger, 403, "forbidden")
    assert balances(server) == before
    with server.client(secret) as ann:
        own = ann.post("/v1/transfers", json={"from": "Ann", "to": "Bob", "amount": "1.50"})
    assert own.status_code == 201, own.text
    assert own.json()["from_balance_after"] == str(f"{float(before['Ann']) - 1.5:.2f}"), own.text


def test_client_token_sees_nothing_of_the_payees_account(server: ServerProcess) -> None:
    """A client's transfer answers with its own balance only, and a refusal for the
    payee's cap names no figure of theirs; a teller sees both."""
    with server.client() as admin:
        opened = admin.post("/v1/accounts", json={"client": "Cap", "max_balance": "10.00"})
        assert opened.status_code == 201, opened.text
    _, secret = make_token(server, "client", "Ann")
    with server.client(secret) as ann:
        paid = ann.post("/v1/transfers", json={"from": "Ann", "to": "Cap", "amount": "2.50"})
        assert paid.status_code == 201, paid.text
        assert paid.json().get("to_balance_after") is None
        assert paid.json()["from_balance_after"] is not None
        replayed = ann.post(
            "/v1/transfers",
            json={"from": "Ann", "to": "Cap", "amount": "1"},
            headers={"Idempotency-Key": "ann-to-cap"},
        )
        again = ann.post(
            "/v1/transfers",
            json={"from": "Ann", "to": "Cap", "amount": "1"},
            headers={"Idempotency-Key": "ann-to-cap"},
        )
        assert replayed.json().get("to_balance_after") is None
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.json().get("to_balance_after") is None
        over = ann.post("/v1/transfers", json={"from": "Ann", "to": "Cap", "amount": "20"})
        assert_refused(over, 422, "cap_exceeded")
        message = over.json()["error"]["message"]
        assert "$" not in message and "10" not in message and "3.50" not in message, message
        batch = ann.post(
            "/v1/batch",
            json={
                "operations": [
                    {"type": "transfer", "from": "Ann", "to": "Cap", "amount": "1"},
                    {"type": "transfer", "from": "Ann", "to": "Cap", "amount": "20"},
                ]
            },
        )
        first, second = batch.json()["results"]
        assert first["status"] == 201 and first["operation"].get("to_balance_after") is None
        assert first["operation"]["from_balance_after"] is not None
        assert second["error"]["code"] == "cap_exceeded"
        assert "$" not in second["error"]["message"], second
    _, teller_secret = make_token(server, "teller")
    with server.client(teller_secret) as teller:
        paid = teller.post("/v1/transfers", json={"from": "Bob", "to": "Cap", "amount": "1"})
        assert paid.json()["to_balance_after"] == "5.50", paid.text
        over = teller.post("/v1/transfers", json={"from": "Bob", "to": "Cap", "amount": "20"})
        assert "$10.00" in over.json()["error"]["message"], over.text


def test_a_client_token_can_neither_take_nor_probe_another_callers_keys(
    server: ServerProcess,
) -> None:
    """Keys are the ledger's; a client's are kept apart. Before, a client's refused
    withdrawal under a key it guessed took that key from the teller who meant to use
    it (409), and the answer told whether a key was in use."""
    _, ann_secret = make_token(server, "client", "Ann")
    _, teller_secret = make_token(server, "teller")
    huge = {"client": "Ann", "amount": "1000000"}
    with server.client(ann_secret) as ann, server.client(teller_secret) as teller:
        taken = ann.post("/v1/withdrawals", json=huge, headers={"Idempotency-Key": "payroll-7"})
        assert_refused(taken, 422, "insufficient_funds")
        ann.post("/v1/withdrawals", json=huge, headers={"Idempotency-Key": "import-7:0"})
        paid = teller.post(
            "/v1/deposits",
            json={"client": "Bob", "amount": "1"},
            headers={"Idempotency-Key": "payroll-7"},
        )
        assert paid.status_code == 201, paid.text
        batch = teller.post(
            "/v1/batch",
            json={"operations": [{"type": "deposit", "client": "Bob", "amount": "1"}]},
            headers={"Idempotency-Key": "import-7"},
        )
        assert batch.json()["results"][0]["status"] == 201, batch.text
        # A teller's key used is no oracle: Ann's request under it is her own, refused
        # for her funds, as a fresh key's would be.
        probe = ann.post("/v1/withdrawals", json=huge, headers={"Idempotency-Key": "open-Bob"})
        assert_refused(probe, 422, "insufficient_funds")
        # Her own keys work as ever, and come back as she sent them.
        small = {"client": "Ann", "amount": "0.01"}
        first = ann.post("/v1/withdrawals", json=small, headers={"Idempotency-Key": "mine"})
        again = ann.post("/v1/withdrawals", json=small, headers={"Idempotency-Key": "mine"})
        assert first.json()["idempotency_key"] == "mine"
        assert (again.headers.get("idempotent-replayed"), again.json()) == ("true", first.json())
        reused = ann.post("/v1/withdrawals", json=huge, headers={"Idempotency-Key": "mine"})
        assert_refused(reused, 409, "idempotency_key_reused")
        assert "'mine'" in reused.json()["error"]["message"]  # as she sent it, unmarked
        assert "client/" not in reused.json()["error"]["message"]
        # A key with a quote in it is quoted the other way, and named as sent too.
        quoted = {"Idempotency-Key": "it's"}
        assert ann.post("/v1/withdrawals", json=small, headers=quoted).status_code == 201
        reused = ann.post("/v1/withdrawals", json=huge, headers=quoted)
        assert_refused(reused, 409, "idempotency_key_reused")
        assert '"it\'s"' in reused.json()["error"]["message"]
        assert "client/" not in reused.json()["error"]["message"]
        items = {"operations": [{"type": "withdrawal", "client": "Ann", "amount": "0.01"}]}
        assert ann.post("/v1/batch", json=items, headers={"Idempotency-Key": "b1"}).is_success
        other = {"operations": [{"type": "withdrawal", "client": "Ann", "amount": "0.02"}]}
        refused_batch = ann.post("/v1/batch", json=other, headers={"Idempotency-Key": "b1"})
        assert_refused(refused_batch, 409, "idempotency_key_reused")
        assert "client/" not in refused_batch.json()["error"]["message"]
        # Nor does a client's batch take a batch key from the teller who means to use it.
        taken = ann.post("/v1/batch", json=items, headers={"Idempotency-Key": "payroll-8"})
        assert taken.json()["results"][0]["status"] == 201, taken.text
        payroll = {"operations": [{"type": "deposit", "client": "Bob", "amount": "1"}]}
        paid = teller.post("/v1/batch", json=payroll, headers={"Idempotency-Key": "payroll-8"})
        assert paid.json()["results"][0]["status"] == 201, paid.text
        # No other caller may give a key under a client's mark: it would take hers.
        marked = ann.post("/v1/withdrawals", json=small, headers={"Idempotency-Key": "k9"})
        kept = f"client/{hashlib.sha256(b'Ann').hexdigest()[:16]}/k9"
        for body, path in (({"client": "Ann", "amount": "1"}, "/v1/deposits"),):
            taken = teller.post(path, json=body, headers={"Idempotency-Key": kept})
            assert_refused(taken, 422, "invalid_idempotency_key")
        item = {"type": "deposit", "client": "Ann", "amount": "1", "idempotency_key": kept}
        (result,) = teller.post("/v1/batch", json={"operations": [item]}).json()["results"]
        assert result["error"]["code"] == "invalid_idempotency_key"
        assert marked.status_code == 201
        item = {"type": "withdrawal", "client": "Ann", "amount": "0.01", "idempotency_key": kept}
        (own,) = ann.post("/v1/batch", json={"operations": [item]}).json()["results"]
        assert own["error"]["code"] == "invalid_idempotency_key"  # hers too, in an item
        # A key with the mark inside it is another caller's own, and named as sent.
        inside = "pay-client/0123456789abcdef/2026"
        for amount in ("1", "2"):
            teller.post(
                "/v1/deposits",
                json={"client": "Bob", "amount": amount},
                headers={"Idempotency-Key": inside},
            )
        again = teller.post(
            "/v1/deposits",
            json={"client": "Bob", "amount": "3"},
            headers={"Idempotency-Key": inside},
        )
        assert repr(inside) in again.json()["error"]["message"]


def test_a_client_tokens_empty_key_is_told_the_client_tokens_limit(
    server: ServerProcess,
) -> None:
    """An empty key was told "the Idempotency-Key header must be 1 to 200 characters",
    and a 177-character one a client token's limit of 176: the client's own limit is
    said either way, in every way a key comes in. An empty item key was taken as a key
    (its mark alone), and applied."""
    _, ann_secret = make_token(server, "client", "Ann")
    before = balances(server)
    own = "a client token's idempotency key must be 1 to 176 characters"
    withdrawal = {"client": "Ann", "amount": "0.01"}
    with server.client(ann_secret) as ann:
        for key in ("", "k" * 177, "k" * 201):
            for path, body in (
                ("/v1/withdrawals", withdrawal),
                ("/v1/transfers", {"from": "Ann", "to": "Bob", "amount": "0.01"}),
            ):
                answer = ann.post(path, json=body, headers={"Idempotency-Key": key})
                assert_refused(answer, 422, "invalid_idempotency_key")
                assert answer.json()["error"]["message"] == own, (path, len(key))
        items = {"operations": [{"type": "withdrawal", **withdrawal}]}
        for key in ("", "k" * 175):  # its item's ":0" leaves 174 of the 176
            whole = ann.post("/v1/batch", json=items, headers={"Idempotency-Key": key})
            assert_refused(whole, 422, "invalid_idempotency_key")
            assert whole.json()["error"]["message"] == (
                "a client token's idempotency key must be 1 to 174 characters"
            )
        for key in ("", "k" * 177):
            item = {"type": "withdrawal", **withdrawal, "idempotency_key": key}
            answer = ann.post("/v1/batch", json={"operations": [item]})
            assert answer.json()["results"] == [
                {
                    "status": 422,
                    "error": {
                        "code": "invalid_idempotency_key",
                        "message": f"{own} - at `$.operations[0]`",
                    },
                }
            ], len(key)
        # Refused for the role before any key is read.
        limits = ann.patch("/v1/accounts/Ann", json={}, headers={"Idempotency-Key": ""})
        assert_refused(limits, 403, "forbidden")
        opened = ann.post("/v1/accounts", json={"client": "Ann"}, headers={"Idempotency-Key": ""})
        assert_refused(opened, 403, "forbidden")
    with connect_bank(server.url, token=ann_secret) as bank:
        with pytest.raises(KopilkaError) as refused:
            bank.withdraw("Ann", 1, "atm", "")
        assert (refused.value.code, refused.value.message) == ("invalid_idempotency_key", own)
        (item,) = bank.execute_many([Withdraw("Ann", 1, "atm", "")])
        assert isinstance(item, KopilkaError), item
        assert (item.code, item.message) == (
            "invalid_idempotency_key",
            f"{own} - at `$.operations[0]`",
        )
    assert balances(server) == before
    # In its own sandbox a client token is its owner, its keys not marked: the ledger's.
    with connect_bank(server.url, token=ann_secret, sandbox=True) as bank:
        bank.deposit("Ann", 100, "seed")
        with pytest.raises(KopilkaError) as refused:
            bank.withdraw("Ann", 1, "atm", "")
        assert refused.value.message == "the Idempotency-Key header must be 1 to 200 characters"


def test_only_a_client_tokens_own_mark_is_taken_out_of_a_refusal(
    server: ServerProcess,
) -> None:
    """Anything shaped like a client's mark after a quote was taken out of every
    caller's refusal: an admin's key `x'client/0123456789abcdef/y` was named "x'y". An
    admin's or a teller's key is named as sent; a client's own, without its mark only."""
    _, teller_secret = make_token(server, "teller")
    _, ann_secret = make_token(server, "client", "Ann")
    ann_mark = f"client/{hashlib.sha256(b'Ann').hexdigest()[:16]}/"
    bob_mark = f"client/{hashlib.sha256(b'Bob').hexdigest()[:16]}/"
    with (
        server.client() as admin,
        server.client(teller_secret) as teller,
        server.client(ann_secret) as ann,
    ):
        for caller, key in (
            (admin, "x'client/0123456789abcdef/y"),
            (teller, f"t'{ann_mark}y"),
            (ann, f"a'{bob_mark}y"),  # another client's mark, in a client's own key
        ):
            answers = [
                caller.post(
                    "/v1/withdrawals",
                    json={"client": "Ann", "amount": amount},
                    headers={"Idempotency-Key": key},
                )
                for amount in ("0.01", "0.02")
            ]
            assert answers[0].status_code == 201, answers[0].text
            assert_refused(answers[1], 409, "idempotency_key_reused")
            assert answers[1].json()["error"]["message"] == (
                f"idempotency key {key!r} was already used for another request"
            )
            item = {"type": "withdrawal", "client": "Ann", "amount": "0.03", "idempotency_key": key}
            (result,) = caller.post("/v1/batch", json={"operations": [item]}).json()["results"]
            assert result["error"]["message"] == (
                f"idempotency key {key!r} was already used for another request"
            )
        # Her own mark in her own key: only the mark her key is kept under is taken out.
        own = f"o'{ann_mark}y"
        for amount in ("0.01", "0.02"):
            answer = ann.post(
                "/v1/withdrawals",
                json={"client": "Ann", "amount": amount},
                headers={"Idempotency-Key": own},
            )
        assert answer.json()["error"]["message"] == (
            f"idempotency key {own!r} was already used for another request"
        )
        # A batch's own key, its body changed: refused whole, as sent.
        for caller, key in ((admin, f"b'{ann_mark}y"), (ann, f"b'{bob_mark}y")):
            for amount in ("0.01", "0.02"):
                items = {"operations": [{"type": "withdrawal", "client": "Ann", "amount": amount}]}
                answer = caller.post("/v1/batch", json=items, headers={"Idempotency-Key": key})
            assert_refused(answer, 409, "idempotency_key_reused")
            assert answer.json()["error"]["message"] == (
                f"idempotency key {key!r} was already used for another request"
            )


def test_teller_moves_money_but_manages_no_tokens_or_limits(server: ServerProcess) -> None:
    _, secret = make_token(server, "teller")
    with server.client(secret) as teller:
        moved = teller.post("/v1/transfers", json={"from": "Bob", "to": "Ann", "amount": "1"})
        assert moved.status_code == 201, moved.text
        assert teller.get("/v1/accounts/Bob/statement").status_code == 200
        assert_refused(teller.post("/v1/tokens", json={"role": "admin"}), 403, "forbidden")
        limits = teller.patch("/v1/accounts/Bob", json={"min_balance": "-1000"})
        assert_refused(limits, 403, "forbidden")
        assert limits.json()["error"]["message"].endswith(": an admin changes limits")


def test_a_teller_opens_accounts_but_gives_no_overdraft(server: ServerProcess) -> None:
    """An overdraft is a limit, which only an admin sets: a teller who could open an
    account with one could pay it out at once. Refused, it opens nothing."""
    _, secret = make_token(server, "teller")
    with server.client(secret) as teller:
        overdrawn = teller.post("/v1/accounts", json={"client": "Mule", "min_balance": "-5"})
        assert_refused(overdrawn, 403, "forbidden")
        assert "floor below zero" in overdrawn.json()["error"]["message"]
        assert_refused(teller.get("/v1/accounts/Mule"), 404, "account_not_found")
        plain = {"client": "Mule", "min_balance": "0", "max_balance": "50"}
        assert teller.post("/v1/accounts", json=plain).status_code == 201
        own_sandbox = teller.post("/v1/sandboxes").json()["ledger"]  # its own: anything
        played = teller.post(
            "/v1/accounts",
            json={"client": "Mule", "min_balance": "-5"},
            headers={"Kopilka-Ledger": own_sandbox},
        )
        assert played.status_code == 201, played.text
    with server.client() as admin:
        given = admin.post("/v1/accounts", json={"client": "Owes", "min_balance": "-5"})
        assert given.status_code == 201, given.text


def test_revocation_through_the_api_is_immediate(server: ServerProcess) -> None:
    token_id, secret = make_token(server, "teller")
    with server.client(secret) as teller:
        assert teller.get("/v1/accounts/Ann").status_code == 200  # now cached
    with server.client() as admin:
        assert admin.delete(f"/v1/tokens/{token_id}").status_code == 204
    with server.client(secret) as teller:
        assert_refused(teller.get("/v1/accounts/Ann"), 401, "unauthorized")
        moved = teller.post("/v1/transfers", json={"from": "Bob", "to": "Ann", "amount": "1"})
        assert_refused(moved, 401, "unauthorized")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/withdrawals", {"client": "Ann", "amount": "1", "description": "after revoke"}),
        ("/v1/tokens", {"role": "admin"}),
    ],
)
def test_a_body_that_arrives_after_the_revocation_is_refused(
    server: ServerProcess, path: str, body: dict[str, str]
) -> None:
    """The token was good when the headers came; what the body asks is not done once it
    has been revoked, however long the body took (up to the server's bound)."""
    token_id, secret = make_token(server, "admin")
    before = balances(server)
    with server.client() as admin:
        tokens_before = len(admin.get("/v1/tokens").json())
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        )
        time.sleep(0.3)  # the headers are read and the token taken
        with server.client() as admin:
            assert admin.delete(f"/v1/tokens/{token_id}").status_code == 204
        connection.sendall(payload)
        answer = connection.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 401 "), answer
    assert '"this token has been revoked"' in answer
    assert balances(server) == before
    with server.client() as admin:
        tokens = admin.get("/v1/tokens").json()
    assert len(tokens) == tokens_before  # none made by the revoked token


def test_a_body_that_arrives_after_another_process_revoked_its_token_is_refused(
    server: ServerProcess,
) -> None:
    """Revoked by the CLI (another process), then seen revoked by the server through
    another request: a body still on its way under that token does nothing."""
    token_id, secret = make_token(server, "teller")
    before = balances(server)
    payload = json.dumps({"client": "Ann", "amount": "1", "description": "late"}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(
            f"POST /v1/withdrawals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        )
        time.sleep(0.3)  # the headers are read and the token taken
        assert server.command("token", "revoke", token_id).returncode == 0
        time.sleep(1.2)  # past the server's token cache: the next request reads it again
        with server.client(secret) as other_request:
            assert_refused(other_request.get("/v1/accounts/Ann"), 401, "unauthorized")
        connection.sendall(payload)
        answer = connection.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 401 "), answer
    assert '"this token has been revoked"' in answer
    assert balances(server) == before


def test_revocation_by_the_cli_reaches_the_server_within_the_ttl(server: ServerProcess) -> None:
    token_id, secret = make_token(server, "teller")
    with server.client(secret) as teller:
        assert teller.get("/v1/accounts/Ann").status_code == 200
    revoked = server.command("token", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    time.sleep(1.3)  # the server's token cache TTL is 1 s
    with server.client(secret) as teller:
        assert_refused(teller.get("/v1/accounts/Ann"), 401, "unauthorized")


def test_token_cli_creates_a_working_client_token(server: ServerProcess, tmp_path: Path) -> None:
    created = server.command("token", "create", "--role", "client", "--client", "Bob")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    with server.client(secret) as bob:
        assert bob.get("/v1/accounts/Bob").status_code == 200
        assert_refused(bob.get("/v1/accounts/Ann"), 403, "forbidden")
    listed = server.command("token", "list")
    assert "client=Bob" in listed.stdout
    assert secret not in listed.stdout  # secrets are shown once, never listed


@pytest.mark.parametrize("client", [" Ann", "Bob ", "Cy\u3164"])
def test_a_client_token_for_a_name_no_account_may_have_is_refused(
    server: ServerProcess, client: str
) -> None:
    """No account has it and none may be opened under it: such a token would be a
    live credential refused everything (" Ann" is not Ann)."""
    with server.client() as admin:
        before = admin.get("/v1/tokens").json()
        refused = admin.post("/v1/tokens", json={"role": "client", "client": client})
        assert_refused(refused, 422, "invalid_client")
        assert "none may be opened under it" in refused.json()["error"]["message"]
        local = server.command("token", "create", "--role", "client", "--client", client)
        assert local.returncode == 1
        assert local.stderr.startswith("Error: no account has the name")
        assert local.stderr.count("\n") == 1 and not local.stdout
        assert admin.get("/v1/tokens").json() == before
        # A name to be opened later is another matter: the token waits for its account.
        assert admin.post("/v1/tokens", json={"role": "client", "client": "Zed"}).status_code == 201


def test_a_client_token_for_a_name_alike_another_but_for_case_is_refused(tmp_path: Path) -> None:
    """No account may be opened under "john jones" while "John Jones" has one: a token for
    it would wait for an account that never comes. One opened before the rule is used."""
    home = tmp_path / "home"
    with running_server(home) as server, server.client() as admin:
        for client in ("John Jones", "Old Pair"):
            opened = admin.post(
                "/v1/deposits", json={"client": client, "amount": "5", "open_account": True}
            )
            assert opened.status_code == 201, opened.text
        refused = admin.post("/v1/tokens", json={"role": "client", "client": "john jones"})
        assert_refused(refused, 422, "invalid_client")
        assert refused.json()["error"]["message"] == (
            "no account has the name 'john jones', and none may be opened under it: a client's"
            " name may not differ from another client's, 'John Jones', only in case"
        )
        local = server.command("token", "create", "--role", "client", "--client", "JOHN JONES")
        assert (local.returncode, local.stdout) == (1, ""), local.stderr
        assert "'John Jones', only in case" in local.stderr
        made = admin.post("/v1/tokens", json={"role": "client", "client": "John Jones"})
        assert made.status_code == 201, made.text
    with sqlite3.connect(home / "kopilka.db") as database:  # as an older kopilka opened it
        database.execute(
            "INSERT INTO accounts (id, ledger, client, created_at)"
            " VALUES (100, 'main', 'old pair', 0)"
        )
        database.execute("INSERT INTO balances (account_id, balance) VALUES (100, 0)")
    database.close()
    with running_server(home) as server:
        created = server.command("token", "create", "--role", "client", "--client", "old pair")
        assert created.returncode == 0, created.stderr


def test_a_client_token_is_never_told_of_a_name_alike_its_own(server: ServerProcess) -> None:
    """A token made for "Ghost" before any account, then "ghost" opened: the token's
    own name has no account, and the account alike it is another client's."""
    with server.client() as admin:
        made = admin.post("/v1/tokens", json={"role": "client", "client": "Ghost"})
        assert made.status_code == 201, made.text
        opened = admin.post(
            "/v1/deposits", json={"client": "ghost", "amount": "10", "open_account": True}
        )
        assert opened.status_code == 201, opened.text
        told = admin.get("/v1/accounts/Ghost")
        assert told.json()["error"]["message"].endswith(
            "'ghost' has one, a name that differs only in case"
        ), told.text
    plain = "no account for client 'Ghost'"
    with server.client(made.json()["secret"]) as ghost:
        for path in (
            "/v1/accounts/Ghost",
            "/v1/accounts/Ghost/statement",
            "/v1/accounts/Ghost/statement?format=csv",
        ):
            answer = ghost.get(path)
            assert_refused(answer, 404, "account_not_found")
            assert answer.json()["error"]["message"] == plain, (path, answer.text)


def test_a_client_token_for_an_old_account_whose_name_is_no_longer_taken_is_made(
    tmp_path: Path,
) -> None:
    """An account opened before names were held to today's rules stays usable, by its
    own token too."""
    home = tmp_path / "home"
    with running_server(home) as server, server.client() as admin:
        opened = admin.post(
            "/v1/deposits", json={"client": "Old", "amount": "5", "open_account": True}
        )
        assert opened.status_code == 201
    with sqlite3.connect(home / "kopilka.db") as database:  # as an older version named it
        database.execute("UPDATE accounts SET client = ' Old' WHERE client = 'Old'")
    database.close()
    with running_server(home) as server:
        created = server.command("token", "create", "--role", "client", "--client", " Old")
        assert created.returncode == 0, created.stderr
        secret = created.stdout.strip().splitlines()[-1]
        with server.client(secret) as old:
            assert old.get("/v1/accounts/%20Old").json()["balance"] == "5.00"


def test_a_token_made_without_a_ledger_is_for_the_requests_ledger(server: ServerProcess) -> None:
    """Without "ledger" in its body, POST /v1/tokens made a token for main whatever the
    request's ledger: an admin working in books, by its token or by Kopilka-Ledger, got a
    teller or a client token for main, the ledger with the money, told only by the
    answer's "ledger". The request's ledger now, as every other endpoint reads it; a
    "ledger" in the body still wins."""
    with server.client() as admin:
        books_admin = admin.post("/v1/tokens", json={"role": "admin", "ledger": "books"})
        assert books_admin.status_code == 201, books_admin.text
        by_header = admin.post(
            "/v1/tokens",
            json={"role": "client", "client": "Ann"},
            headers={"Kopilka-Ledger": "books"},
        )
    with server.client(books_admin.json()["secret"]) as books:
        made = {
            "its token's": books.post("/v1/tokens", json={"role": "teller"}),
            "the main admin's header": by_header,
            "its header": books.post(
                "/v1/tokens", json={"role": "teller"}, headers={"Kopilka-Ledger": "branch"}
            ),
            "the body's": books.post(
                "/v1/tokens",
                json={"role": "teller", "ledger": "main"},
                headers={"Kopilka-Ledger": "branch"},
            ),
        }
    assert {where: answer.status_code for where, answer in made.items()} == dict.fromkeys(made, 201)
    expected = ["books", "books", "branch", "main"]
    assert [answer.json()["ledger"] for answer in made.values()] == expected
    for answer, ledger in zip(made.values(), expected, strict=True):
        with server.client(answer.json()["secret"]) as made_token:
            assert made_token.get("/v1/whoami").json()["ledger"] == ledger
    with server.client(made["its token's"].json()["secret"]) as books_teller:
        assert_refused(books_teller.get("/v1/accounts/Ann"), 404, "account_not_found")
    with server.client() as admin:
        for answer in [books_admin, *made.values()]:
            assert admin.delete(f"/v1/tokens/{answer.json()['id']}").status_code == 204


def test_a_token_asked_for_in_a_sandbox_must_name_its_ledger(server: ServerProcess) -> None:
    """A request working in a sandbox (its Kopilka-Ledger) made a token for main, and the
    sandbox's ledger is no token's: refused, saying so, and made as named in the body."""
    with server.client() as admin:
        sandbox = admin.post("/v1/sandboxes").json()["ledger"]
        in_sandbox = {"Kopilka-Ledger": sandbox}
        before = admin.get("/v1/tokens").json()
        refused = admin.post("/v1/tokens", json={"role": "teller"}, headers=in_sandbox)
        assert_refused(refused, 422, "invalid_ledger")
        assert refused.json()["error"]["message"] == (
            "a token is not bound to a sandbox, which lasts one session: this request works"
            f" in {sandbox!r} (its Kopilka-Ledger header); name the token's ledger in the"
            ' body ("ledger")'
        )
        assert admin.get("/v1/tokens").json() == before
        named = admin.post(
            "/v1/tokens", json={"role": "teller", "ledger": "main"}, headers=in_sandbox
        )
        assert (named.status_code, named.json()["ledger"]) == (201, "main")
        assert admin.delete(f"/v1/tokens/{named.json()['id']}").status_code == 204
        assert admin.delete(f"/v1/sandboxes/{sandbox}").status_code == 204


def test_the_python_client_makes_a_token_for_its_own_ledger(server: ServerProcess) -> None:
    """`create_token` sent "ledger": "main" unless given another: a client working in
    books, named or its token's, made tokens for main. None now sends none, and the
    server takes the client's ledger, as for its every other call."""
    with server.client() as admin:
        books_admin = admin.post("/v1/tokens", json={"role": "admin", "ledger": "books"})
    with connect_bank(server.url, token=books_admin.json()["secret"]) as books:
        own, _ = books.create_token("teller")
        named, _ = books.create_token("teller", ledger="main")
    with connect_bank(server.url, token=server.token, ledger="books") as in_books:
        ann, ann_secret = in_books.create_token("client", "Ann")
    with connect_bank(server.url, token=server.token) as in_main:
        main, _ = in_main.create_token("teller")
    assert [token.ledger for token in (own, named, ann, main)] == ["books", "main", "books", "main"]
    with connect_bank(server.url, token=ann_secret) as ann_bank:
        assert ann_bank.ledger == "books"
    with server.client() as admin:
        for token_id in (books_admin.json()["id"], own.id, named.id, ann.id, main.id):
            assert admin.delete(f"/v1/tokens/{token_id}").status_code == 204


def test_admin_token_file_is_private(server: ServerProcess) -> None:
    mode = (server.home / "admin.token").stat().st_mode & 0o777
    assert mode == 0o600


def test_the_database_is_private_and_a_loosened_token_file_is_closed_again(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    with running_server(home) as server:
        with server.client() as admin:
            admin.post("/v1/deposits", json={"client": "Ann", "amount": "1", "open_account": True})
        modes = {path.name: path.stat().st_mode & 0o777 for path in home.iterdir()}
        assert {modes[name] for name in ("kopilka.db", "kopilka.db-wal", "kopilka.db-shm")} == {
            0o600
        }
    # The lock files too: open to others, any user could take a lock and hold every
    # write, or the server's start, for as long as they liked.
    loosened = ("admin.token", ".admin.token.lock", "kopilka.db-writer.lock")
    for name in loosened:
        (home / name).chmod(0o644)
    kept = token_id_of((home / "admin.token").read_text().strip())
    with running_server(home) as again:
        assert [(home / name).stat().st_mode & 0o777 for name in loosened] == [0o600] * 3
        assert again.stop() == 0
    # Kept, as shells hold it; but it may have been read: the operator is told so.
    warned = [line for line in again.errors.splitlines() if "readable by others" in line]
    assert len(warned) == 1, again.errors
    assert f"kopilka token revoke {kept}" in warned[0]


def test_token_cli_reads_its_database_from_a_config_file(
    server: ServerProcess, tmp_path: Path
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(f"db = {json.dumps(server.db)}\n")
    made = make_token(server, "teller")[0]
    listed = subprocess.run(
        [*kopilka_command(), "token", "list", "--config", str(config)],
        env=server_env(tmp_path / "another-home"),  # its default database is elsewhere
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert made in listed.stdout
