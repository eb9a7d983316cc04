"""Idempotency-Key: a repeat returns the first answer, a changed body is refused, and
concurrent requests with one key apply once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from tests.kopilka_server import ServerProcess, running_server_with_accounts


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("idem") / "home"
    with running_server_with_accounts(home, {"Ann": "1000", "Bob": "1000"}) as server:
        yield server


def balance(admin: httpx.Client, client: str) -> str:
    return str(admin.get(f"/v1/accounts/{client}").json()["balance"])


def test_same_key_and_body_returns_the_first_answer(server: ServerProcess) -> None:
    body = {"from": "Ann", "to": "Bob", "amount": "10", "description": "rent"}
    with server.client() as admin:
        first = admin.post("/v1/transfers", json=body, headers={"Idempotency-Key": "rent-1"})
        assert first.status_code == 201
        before = balance(admin, "Ann")
        again = admin.post("/v1/transfers", json=body, headers={"Idempotency-Key": "rent-1"})
        assert again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert balance(admin, "Ann") == before


def test_an_opening_given_again_under_its_key_says_it_is_a_replay(server: ServerProcess) -> None:
    """As a deposit's does, so a caller can tell it opened nothing anew (the Python
    client's `replayed`, as the embedded bank's)."""
    body = {"client": "Opened Once", "opening_balance": "5.00"}
    key = {"Idempotency-Key": "open-once-1"}
    with server.client() as admin:
        first = admin.post("/v1/accounts", json=body, headers=key)
        assert first.status_code == 201 and "idempotent-replayed" not in first.headers
        assert admin.post("/v1/deposits", json={"client": "Opened Once", "amount": "1"}).is_success
        again = admin.post("/v1/accounts", json=body, headers=key)
        assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, "true")
        assert again.json()["balance"] == "5.00"  # as it was opened
        assert balance(admin, "Opened Once") == "6.00"


def test_same_key_with_another_body_is_409(server: ServerProcess) -> None:
    with server.client() as admin:
        body = {"from": "Ann", "to": "Bob", "amount": "10"}
        assert (
            admin.post("/v1/transfers", json=body, headers={"Idempotency-Key": "k-409"}).status_code
            == 201
        )
        before = balance(admin, "Ann")
        changed = admin.post(
            "/v1/transfers", json={**body, "amount": "11"}, headers={"Idempotency-Key": "k-409"}
        )
        assert changed.status_code == 409
        assert changed.json()["error"]["code"] == "idempotency_key_reused"
        assert balance(admin, "Ann") == before


def test_without_a_key_each_request_is_new(server: ServerProcess) -> None:
    with server.client() as admin:
        before = balance(admin, "Bob")
        body = {"client": "Bob", "amount": "1"}
        first = admin.post("/v1/withdrawals", json=body).json()
        time.sleep(0.002)
        second = admin.post("/v1/withdrawals", json=body).json()
        assert first["idempotency_key"] != second["idempotency_key"]
        # The keys the server makes are time-ordered (UUID version 7), so they sort in order.
        assert uuid.UUID(first["idempotency_key"]).version == 7
        assert first["idempotency_key"] < second["idempotency_key"]
        assert float(balance(admin, "Bob")) == float(before) - 2


async def _storm(server: ServerProcess, key: str, count: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {server.token}", "Idempotency-Key": key}
    body = {"from": "Ann", "to": "Bob", "amount": "7", "description": "storm"}
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, limits=httpx.Limits(max_connections=count)
    ) as http:
        return await asyncio.gather(*(http.post("/v1/transfers", json=body) for _ in range(count)))


def test_concurrent_requests_with_one_key_apply_once(server: ServerProcess) -> None:
    with server.client() as admin:
        before = float(balance(admin, "Ann"))
    answers = asyncio.run(_storm(server, "storm-1", 60))
    assert {answer.status_code for answer in answers} == {201}
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert sum(answer.headers.get("idempotent-replayed") != "true" for answer in answers) == 1
    with server.client() as admin:
        assert float(balance(admin, "Ann")) == before - 7
        lines = admin.get("/v1/accounts/Ann/statement").json()["lines"]
        bob_csv = admin.get("/v1/accounts/Bob/statement", params={"format": "csv"}).text
    storm = [line for line in lines if line["description"] == "storm"]
    # The line names the operation its callers were given, on both sides of the transfer.
    assert [line["operation_id"] for line in storm] == [answers[0].json()["id"]]
    assert f",Ann,{answers[0].json()['id']}\r\n" in bob_csv


def test_a_retried_batch_applies_each_item_once(server: ServerProcess) -> None:
    operations = [
        {"type": "transfer", "from": "Bob", "to": "Ann", "amount": "2"},
        {"type": "withdrawal", "client": "Bob", "amount": "9999999"},
        {"type": "deposit", "client": "Ann", "amount": "3"},
    ]
    with server.client() as admin:
        before = (balance(admin, "Ann"), balance(admin, "Bob"))
        first = admin.post(
            "/v1/batch", json={"operations": operations}, headers={"Idempotency-Key": "batch-1"}
        )
        middle = (balance(admin, "Ann"), balance(admin, "Bob"))
        again = admin.post(
            "/v1/batch", json={"operations": operations}, headers={"Idempotency-Key": "batch-1"}
        )
        after = (balance(admin, "Ann"), balance(admin, "Bob"))
    statuses = [result["status"] for result in first.json()["results"]]
    assert statuses == [201, 422, 201]
    assert first.json()["results"][1]["error"]["code"] == "insufficient_funds"
    assert [r["status"] for r in again.json()["results"]] == statuses
    assert middle != before
    assert after == middle


def test_an_empty_item_key_is_refused_like_an_empty_header(server: ServerProcess) -> None:
    operations = [
        {"type": "deposit", "client": "Ann", "amount": "1", "idempotency_key": ""},
        {"type": "deposit", "client": "Ann", "amount": "1", "idempotency_key": "item-key-1"},
    ]
    with server.client() as admin:
        before = balance(admin, "Ann")
        answer = admin.post("/v1/batch", json={"operations": operations})
        empty_header = admin.post(
            "/v1/deposits", json={"client": "Ann", "amount": "1"}, headers={"Idempotency-Key": ""}
        )
        after = balance(admin, "Ann")
    first, second = answer.json()["results"]
    assert first["status"] == 422 and first["error"]["code"] == "invalid_idempotency_key"
    assert second["status"] == 201
    assert empty_header.status_code == 422
    assert Decimal(after) == Decimal(before) + 1  # only the item with a key applied


@pytest.mark.parametrize("key", ["caf\u00e9", " padded ", "tab\tbed"])
def test_an_item_key_is_held_to_the_rule_of_a_header(server: ServerProcess, key: str) -> None:
    """A key no header could carry is refused in a batch item too, as on a single request
    and in the shell: one taken there could be replayed through a batch alone."""
    operations = [
        {"type": "deposit", "client": "Ann", "amount": "1", "idempotency_key": key},
        {
            "type": "deposit",
            "client": "Ann",
            "amount": "1",
            "idempotency_key": f"fine-{key.encode()!r}",
        },
    ]
    with server.client() as admin:
        before = balance(admin, "Ann")
        answer = admin.post("/v1/batch", json={"operations": operations})
        after = balance(admin, "Ann")
    first, second = answer.json()["results"]
    assert first["status"] == 422 and first["error"]["code"] == "invalid_idempotency_key"
    assert "operations[0]" in first["error"]["message"]
    assert second["status"] == 201
    assert Decimal(after) == Decimal(before) + 1  # only the item with a sendable key


def test_a_refused_request_repeats_its_refusal(server: ServerProcess) -> None:
    """The first answer stands for its key, a refusal too: a retry that comes once the
    money is there is refused again, never applied by surprise."""
    body = {"client": "Bob", "amount": "100000", "description": "too much"}
    headers = {"Idempotency-Key": "w-refused"}
    with server.client() as admin:
        first = admin.post("/v1/withdrawals", json=body, headers=headers)
        assert first.status_code == 422, first.text
        admin.post("/v1/deposits", json={"client": "Bob", "amount": "200000"})
        before = balance(admin, "Bob")
        again = admin.post("/v1/withdrawals", json=body, headers=headers)
        assert (again.status_code, again.json()) == (422, first.json())
        assert "idempotent-replayed" not in first.headers
        assert again.headers["idempotent-replayed"] == "true"
        changed = admin.post("/v1/withdrawals", json={**body, "amount": "1"}, headers=headers)
        assert changed.status_code == 409
        assert balance(admin, "Bob") == before


def test_a_batch_key_with_another_body_is_refused_whole(server: ServerProcess) -> None:
    items = [
        {"type": "deposit", "client": "Ann", "amount": "1", "description": "b"},
        {"type": "transfer", "from": "Ann", "to": "Bob", "amount": "1", "description": "b"},
    ]
    headers = {"Idempotency-Key": "whole-batch"}
    with server.client() as admin:
        first = admin.post("/v1/batch", json={"operations": items}, headers=headers)
        assert first.status_code == 200, first.text
        before = (balance(admin, "Ann"), balance(admin, "Bob"))
        again = admin.post("/v1/batch", json={"operations": items}, headers=headers)
        assert again.status_code == 200
        assert [r["operation"]["id"] for r in again.json()["results"]] == [
            r["operation"]["id"] for r in first.json()["results"]
        ]
        changed = [items[0], {**items[1], "amount": "2"}]
        extra = [*items, {"type": "deposit", "client": "Bob", "amount": "5"}]
        for body in (changed, extra, items[:1]):
            answer = admin.post("/v1/batch", json={"operations": body}, headers=headers)
            assert answer.status_code == 409, answer.text
            assert answer.json()["error"]["code"] == "idempotency_key_reused"
        assert (balance(admin, "Ann"), balance(admin, "Bob")) == before


def test_a_long_batch_that_took_effect_nowhere_lets_its_key_go(server: ServerProcess) -> None:
    """A claim under which nothing took effect is let go, also that of a request longer
    than one of the engine's batches: its key is free for the request meant."""
    refused_everywhere = [{"type": "transfer", "from": "Ann", "to": "Ann", "amount": "1"}] * 2_001
    deposit = [{"type": "deposit", "client": "Ann", "amount": "1", "description": "meant"}]
    headers = {"Idempotency-Key": "long-and-refused"}
    with server.client() as admin:
        refused = admin.post("/v1/batch", json={"operations": refused_everywhere}, headers=headers)
        assert refused.status_code == 200, refused.text[:300]
        assert {r["error"]["code"] for r in refused.json()["results"]} == {"same_account"}
        meant = admin.post("/v1/batch", json={"operations": deposit}, headers=headers)
        assert meant.status_code == 200, meant.text
        assert [r["status"] for r in meant.json()["results"]] == [201]


def test_a_client_token_s_batch_key_leaves_room_for_its_items(server: ServerProcess) -> None:
    """A client's keys are kept under a mark of its own: 176 characters are left, and a
    batch's items add their :INDEX to its key, so the whole request is refused at once,
    not each item for a key too long."""
    with server.client() as admin:
        made = admin.post("/v1/tokens", json={"role": "client", "client": "Ann"})
    deposit = [{"type": "transfer", "from": "Ann", "to": "Bob", "amount": "1"}]
    with server.client(made.json()["secret"]) as ann:
        answer = ann.post(
            "/v1/batch", json={"operations": deposit}, headers={"Idempotency-Key": "k" * 175}
        )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == {
        "code": "invalid_idempotency_key",
        "message": "a client token's idempotency key must be 1 to 174 characters",
    }


def test_an_item_under_its_batchs_own_key_is_told_so(server: ServerProcess) -> None:
    """It was told its key "was already used for another request", one never made."""
    item = {"type": "deposit", "client": "Ann", "amount": "1", "idempotency_key": "own-key"}
    with server.client() as admin:
        before = balance(admin, "Ann")
        for _ in range(2):  # and so again, the batch replayed
            answer = admin.post(
                "/v1/batch", json={"operations": [item]}, headers={"Idempotency-Key": "own-key"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["results"] == [
                {
                    "status": 409,
                    "error": {
                        "code": "idempotency_key_reused",
                        "message": "idempotency key 'own-key' is the batch's own"
                        " Idempotency-Key: give an item a key of its own",
                    },
                }
            ]
        assert balance(admin, "Ann") == before


@pytest.mark.parametrize("amount", ["5", "1"])
def test_an_item_without_a_key_refused_for_the_one_made_for_it_is_told_where_it_came_from(
    server: ServerProcess, amount: str
) -> None:
    """Item 1's key is KEY:1, which item 0 gave as its own: item 1 was told its key
    'made-key:1' "was already used for another request", a key its caller never wrote.
    With item 0's very body it was answered as item 0, 201 twice for one deposit."""
    made = f"made-key-{amount}"  # the server is the module's: a key of each test's own
    items = [
        {"type": "deposit", "client": "Ann", "amount": "1", "idempotency_key": f"{made}:1"},
        {"type": "deposit", "client": "Ann", "amount": amount},
    ]
    with server.client() as admin:
        before = Decimal(balance(admin, "Ann"))
        answer = admin.post(
            "/v1/batch", json={"operations": items}, headers={"Idempotency-Key": made}
        )
        assert answer.status_code == 200, answer.text
        first, second = answer.json()["results"]
        assert first["status"] == 201
        assert second == {
            "status": 409,
            "error": {
                "code": "idempotency_key_reused",
                "message": f"idempotency key '{made}:1', made for this item of the batch's"
                " key and its place, was already used for another request (another item's own"
                " key, say): give this item a key of its own",
            },
        }
        assert Decimal(balance(admin, "Ann")) == before + 1


def test_a_batch_with_a_malformed_item_resent_spaced_otherwise_replays(
    server: ServerProcess,
) -> None:
    """Its JSON values are the same: refused 409 as another body, it would leave its
    caller unable to learn how the first went."""
    items = [
        {"type": "deposit", "client": "Ann", "amount": "1", "description": "spaced"},
        {"type": "deposit", "client": "Ann", "amount": 1},  # malformed: a number
    ]
    headers = {"Idempotency-Key": "spaced-batch", "Content-Type": "application/json"}
    with server.client() as admin:
        answers = [
            admin.post(
                "/v1/batch",
                content=json.dumps({"operations": items}, separators=separators),
                headers=headers,
            )
            for separators in ((", ", ": "), (",", ":"))
        ]
        assert [answer.status_code for answer in answers] == [200, 200], answers[1].text
        assert answers[1].json() == answers[0].json()  # the same operation, given again
        changed = [items[0], {**items[1], "amount": 2}]
        other = admin.post("/v1/batch", json={"operations": changed}, headers=headers)
        assert other.status_code == 409, other.text


def test_account_writes_take_keys_too(server: ServerProcess) -> None:
    with server.client() as admin:
        body = {"client": "Cleo", "max_balance": "100", "opening_balance": "20"}
        opened = admin.post("/v1/accounts", json=body, headers={"Idempotency-Key": "cleo"})
        assert opened.status_code == 201, opened.text
        again = admin.post("/v1/accounts", json=body, headers={"Idempotency-Key": "cleo"})
        assert (again.status_code, again.json()) == (201, opened.json())
        other = admin.post(
            "/v1/accounts", json={**body, "max_balance": "200"}, headers={"Idempotency-Key": "cleo"}
        )
        assert (other.status_code, other.json()["error"]["code"]) == (
            409,
            "idempotency_key_reused",
        )

        limits = {"max_balance": "300"}
        key = {"Idempotency-Key": "cleo-limits"}
        first_change = admin.patch("/v1/accounts/Cleo", json=limits, headers=key)
        assert (first_change.status_code, "idempotent-replayed" in first_change.headers) == (
            200,
            False,
        )
        assert admin.patch("/v1/accounts/Cleo", json={"max_balance": "400"}).status_code == 200
        # A late retry answers the account as it is: it does not undo the later change,
        # and says it set nothing again, as a money write's replay does.
        retried = admin.patch("/v1/accounts/Cleo", json=limits, headers=key)
        assert (retried.status_code, retried.json()["max_balance"]) == (200, "400.00")
        assert retried.headers["idempotent-replayed"] == "true"
        changed = admin.patch("/v1/accounts/Cleo", json={"max_balance": "500"}, headers=key)
        assert changed.status_code == 409
        assert admin.get("/v1/accounts/Cleo").json()["max_balance"] == "400.00"
        # A floor is the body's too: another one under the key is refused, not answered
        # as the first change was, the floor left as it is.
        floor_key = {"Idempotency-Key": "cleo-floor"}
        first = admin.patch("/v1/accounts/Cleo", json={"min_balance": "-2"}, headers=floor_key)
        assert (first.status_code, first.json()["min_balance"]) == (200, "-2.00")
        for other_floor in ({"min_balance": "-5"}, {"min_balance": "-2", "max_balance": "400"}):
            other = admin.patch("/v1/accounts/Cleo", json=other_floor, headers=floor_key)
            assert (other.status_code, other.json()["error"]["code"]) == (
                409,
                "idempotency_key_reused",
            ), other_floor
        assert admin.get("/v1/accounts/Cleo").json()["min_balance"] == "-2.00"
        # The account is the request's too: the same change of another account under
        # the key was answered as done, with that account's limits left as they were.
        bob = admin.patch("/v1/accounts/Bob", json={"min_balance": "-2"}, headers=floor_key)
        assert (bob.status_code, bob.json()["error"]["code"]) == (409, "idempotency_key_reused")
        assert admin.get("/v1/accounts/Bob").json()["min_balance"] == "0.00"


@pytest.mark.parametrize(
    ("path", "body", "why"),
    [
        ("/v1/tokens", {"role": "teller"}, "secret is shown once"),
        ("/v1/sandboxes", None, "dropped after its idle time"),
    ],
)
def test_a_write_that_cannot_replay_its_answer_refuses_a_key(
    server: ServerProcess, path: str, body: dict[str, str] | None, why: str
) -> None:
    """A token's secret is kept nowhere, and a sandbox is new each time: a key would
    be ignored, and a retry under it make a second one."""
    with server.client() as admin:
        tokens_before = admin.get("/v1/tokens").json()
        refused = admin.post(path, json=body, headers={"Idempotency-Key": "make-1"})
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "invalid_idempotency_key"
        assert why in error["message"] and "\n" not in error["message"]
        assert admin.get("/v1/tokens").json() == tokens_before  # no token made
        assert admin.post(path, json=body).status_code == 201  # without one, made
