"""Bad input of every kind gets a clear error with the fitting status, and changes nothing."""

from __future__ import annotations

import csv
import http.client
import io
import json
import shlex
import socket
import unicodedata
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from tests.kopilka_server import ServerProcess, running_server, running_server_with_accounts
from tests.silent_server import silent_server

from kopilka.cli import split_globals
from kopilka.client import connect_bank
from kopilka.domain.model import Deposit, Operation, Transfer, Withdraw
from kopilka.errors import InvalidInput, KopilkaError
from kopilka.shell.parser import parse_words


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("input") / "home"
    with running_server_with_accounts(home, {"Ann": "50", "Bob": "50"}) as server:
        yield server


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def state(admin: httpx.Client) -> object:
    accounts = admin.get("/v1/accounts").json()
    statement = admin.get("/v1/accounts/Ann/statement").json()["lines"]
    return accounts, statement


def refused(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return str(error["message"])


def test_malformed_json_is_400(admin: httpx.Client) -> None:
    before = state(admin)
    for body in (b"{", b"not json", b"", b'{"from": "Ann",}', b"\xff\xfe"):
        answer = admin.post("/v1/transfers", content=body)
        refused(answer, 400, "malformed_json")
    refused(admin.post("/v1/batch", content=b'{"operations": '), 400, "malformed_json")
    assert state(admin) == before


def test_a_body_broken_off_after_a_value_of_the_wrong_type_is_malformed(
    admin: httpx.Client,
) -> None:
    """`[` where an object belongs, then nothing: the body is no JSON, whatever its first
    value's type, and is told so as `{` is; well-formed JSON of the wrong type is 422."""
    before = state(admin)
    for path in ("/v1/batch", "/v1/deposits", "/v1/accounts", "/v1/tokens"):
        for body in (
            *(b"[", b"[1", b'{"operations": {', b'["\xff"]', b"[1e400", b"[1e400,"),
            b'{"client": "Ann", "amount": 1e400, "description": "\xff"}',
        ):
            message = refused(admin.post(path, content=body), 400, "malformed_json")
            assert message.startswith("the request body is not valid JSON: "), (path, body)
        for body in (b"[]", b"[1]", b"[1e999]"):
            message = refused(admin.post(path, content=body), 422, "invalid_request")
            assert "Expected `object`, got `array`" in message, (path, body)
    assert state(admin) == before


def test_a_write_sent_with_no_body_is_told_its_body_is_empty(admin: httpx.Client) -> None:
    """A client that forgot its body was told its JSON "was truncated": nothing was cut."""
    before = state(admin)
    for body in (b"", b"  \r\n"):
        for path in ("/v1/deposits", "/v1/batch", "/v1/accounts"):
            message = refused(admin.post(path, content=body), 400, "malformed_json")
            assert message == "the request body is empty: send a JSON object", (path, body)
    assert state(admin) == before


@pytest.mark.parametrize(
    "text",
    [b"\\ud83d", b"A\\ud800", b"\\udc00x", b"\\ude00\\ud83d", b"\\uD83D\\u0041"],
)
def test_a_lone_surrogate_escape_is_named_not_called_truncated(
    admin: httpx.Client, text: bytes
) -> None:
    """Half of a character escaped: the decoder's "truncated" or "unexpected end" would
    send the caller looking for a cut-off body."""
    before = state(admin)
    body = b'{"client": "Ann", "amount": "1", "description": "%s"}' % text
    message = refused(admin.post("/v1/deposits", content=body), 400, "malformed_json")
    assert message == (
        "the request body is not valid JSON: it has a \\u escape of half a character"
        " (a lone surrogate), which is no text"
    )
    assert state(admin) == before
    paired = b'{"client": "Ann", "amount": "1", "description": "\\ud83d\\ude00", "x": 1}'
    assert "lone" not in refused(admin.post("/v1/deposits", content=paired), 422, "invalid_request")


def test_a_batch_item_with_a_lone_surrogate_escape_fails_alone(admin: httpx.Client) -> None:
    """A description cut inside an emoji (as JavaScript cuts a string) refused the whole
    batch, naming no item: only that item is refused, and says why."""
    good = b'{"type": "deposit", "client": "Ann", "amount": "1.25", "description": "ok"}'
    cut = b'{"type": "deposit", "client": "Ann", "amount": "1", "description": "cut \\ud83d"}'
    paired = b'{"type": "deposit", "client": "Ann", "amount": "2", "description": "\\ud83d\\ude00"}'
    payee = b'{"type": "transfer", "from": "Ann", "to": "B\\udc00b", "amount": "1"}'
    body = b'{"operations": [%s, %s, %s, %s]}' % (good, cut, paired, payee)
    before = Decimal(admin.get("/v1/accounts/Ann").json()["balance"])
    for _ in range(2):  # and the same again under its key, applied once
        answer = admin.post("/v1/batch", content=body, headers={"Idempotency-Key": "cut-1"})
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [result["status"] for result in results] == [201, 422, 201, 422], results
        for index in (1, 3):
            assert results[index]["error"] == {
                "code": "malformed_json",
                "message": "the request body is not valid JSON: it has a \\u escape of half a"
                " character (a lone surrogate), which is no text - at"
                f" `$.operations[{index}]`",
            }
    assert Decimal(admin.get("/v1/accounts/Ann").json()["balance"]) == before + Decimal("3.25")
    # Outside the items it is the body's fault.
    whole = b'{"operations": [%s], "\\ud83d": 1}' % good
    message = refused(admin.post("/v1/batch", content=whole), 400, "malformed_json")
    assert "(a lone surrogate)" in message


def test_every_bad_batch_item_says_which_it_is(admin: httpx.Client) -> None:
    """Items the schema lets through but the rules refuse (a name past its length, a
    control character, an amount in another form, a key too long) name their item too;
    a number too big for a float is an amount sent as a number, like any other."""
    before = state(admin)
    items = [
        {"type": "deposit", "client": "x" * 201, "amount": "1"},
        {"type": "transfer", "from": "Ann", "to": "y" * 201, "amount": "1"},
        {"type": "deposit", "client": "Ann\u0007", "amount": "1"},
        {"type": "deposit", "client": "Ann", "amount": "1e3"},
        {"type": "deposit", "client": "Ann", "amount": "1", "idempotency_key": "k" * 201},
    ]
    answer = admin.post("/v1/batch", json={"operations": items})
    assert answer.status_code == 200, answer.text
    for index, result in enumerate(answer.json()["results"]):
        assert result["status"] == 422, result
        assert f"$.operations[{index}]" in result["error"]["message"], result
    huge = b'{"client": "Ann", "amount": 1e999, "description": "x"}'
    refused(admin.post("/v1/deposits", content=huge), 422, "invalid_amount")
    batch = b'{"operations": [{"type": "deposit", "client": "Ann", "amount": 1e999}]}'
    (result,) = admin.post("/v1/batch", content=batch).json()["results"]
    assert result["error"]["code"] == "invalid_amount"
    assert state(admin) == before


def test_wrong_types_unknown_fields_and_missing_fields_are_422(admin: httpx.Client) -> None:
    before = state(admin)
    bodies = [
        {"from": "Ann", "to": "Bob", "amount": "1", "typo": 1},
        {"from": "Ann", "to": 7, "amount": "1"},
        {"from": "Ann", "amount": "1"},
        {"from": "Ann", "to": "Bob", "amount": "1", "description": ["x"]},
        ["Ann", "Bob", "1"],
        {"from": "Ann", "to": "Bob", "amount": "1e3"},
        {"from": "Ann", "to": "Bob", "amount": "1.001"},
        {"from": "Ann", "to": "Bob", "amount": "-1"},
    ]
    for body in bodies:
        answer = admin.post("/v1/transfers", json=body)
        assert answer.status_code == 422, (body, answer.text)
    message = refused(
        admin.post("/v1/transfers", json={"from": "Ann", "to": "Bob", "amount": "1", "typo": 1}),
        422,
        "invalid_request",
    )
    assert "typo" in message
    assert state(admin) == before


def test_a_field_given_twice_is_refused_whoever_would_read_it(admin: httpx.Client) -> None:
    """One body must not say two amounts: msgspec would keep the last, a proxy may keep
    the first. Refused on every write, also spelt with an escape or where colons in a
    description make the quick count inconclusive; nothing changes."""
    before = state(admin)
    writes = [
        ("/v1/transfers", b'{"from":"Ann","to":"Bob","amount":"1","amount":"40"}', "amount"),
        ("/v1/transfers", b'{"from":"Ann","to":"Bob","amount":"1","\\u0061mount":"4"}', "amount"),
        (
            "/v1/deposits",
            b'{"client":"Ann","amount":"1","description":"a: b","client":"Bob"}',
            "client",
        ),
        (
            "/v1/withdrawals",
            b'{"client":"Ann","amount":"1","description":"","description":"x"}',
            "description",
        ),
        ("/v1/accounts", b'{"client":"Cy","client":"Dee"}', "client"),
        ("/v1/batch", b'{"operations":[],"operations":[]}', "operations"),
    ]
    for path, body, field in writes:
        message = refused(admin.post(path, content=body), 422, "invalid_request")
        assert f"`{field}` is given twice" in message, message
    patch = b'{"max_balance":"9","max_balance":null}'
    message = refused(admin.patch("/v1/accounts/Ann", content=patch), 422, "invalid_request")
    assert "`max_balance` is given twice" in message
    # A colon in a description alone is no repeat.
    body = b'{"client":"Ann","amount":"0.01","description":"rent: May"}'
    assert admin.post("/v1/deposits", content=body).status_code == 201
    admin.post("/v1/withdrawals", json={"client": "Ann", "amount": "0.01"})
    assert state(admin)[0] == before[0]


def test_a_batch_item_giving_a_field_twice_fails_alone(admin: httpx.Client) -> None:
    """Also where the second value would fail on its own (a type of another item, a
    number): the repeat is the fault named. An item whose amount is a number too long
    for any reader still fails alone."""
    before = admin.get("/v1/accounts/Ann").json()["balance"]
    body = (
        b'{"operations":[{"type":"deposit","client":"Ann","amount":"1"},'
        b'{"type":"withdrawal","client":"Ann","amount":"1","amount":"50"},'
        b'{"type":"deposit","type":"withdrawal","client":"Ann","amount":"1"},'
        b'{"type":"deposit","client":"Ann","amount":"1","amount":5},'
        b'{"type":"deposit","client":"Ann","amount":' + b"1" * 4301 + b"}]}"
    )
    answer = admin.post("/v1/batch", content=body)
    assert answer.status_code == 200, answer.text
    first, *refused_items = answer.json()["results"]
    assert first["status"] == 201
    for index, (result, field) in enumerate(
        zip(refused_items[:3], ("amount", "type", "amount"), strict=True), start=1
    ):
        assert result["status"] == 422, result
        assert result["error"]["code"] == "invalid_request"
        message = result["error"]["message"]
        assert f"`{field}` is given twice" in message, message
        assert f"$.operations[{index}]" in message, message
    assert refused_items[3]["error"]["code"] == "invalid_amount", refused_items[3]
    after = Decimal(admin.get("/v1/accounts/Ann").json()["balance"])
    assert after == Decimal(before) + 1
    single = b'{"client":"Ann","amount":"1","amount":5}'
    message = refused(admin.post("/v1/deposits", content=single), 422, "invalid_request")
    assert "`amount` is given twice" in message
    # A repeat deeper in a value is that value's fault, not the request's.
    for path, body in (
        ("/v1/deposits", b'{"client":"Ann","amount":"1","z":{"k":1,"k":2}}'),
        ("/v1/deposits", b'[{"a":1,"a":2}]'),
    ):
        message = refused(admin.post(path, content=body), 422, "invalid_request")
        assert "given twice" not in message, message


def test_a_malformed_batch_item_fails_alone(admin: httpx.Client) -> None:
    """Each item succeeds or fails on its own, a malformed one too (a number for an
    amount, an unknown field or type, a name or description the schema bounds)."""
    good = {"type": "deposit", "client": "Ann", "amount": "1.25", "description": "kept"}
    items = [
        good,
        {"type": "withdrawal", "client": "Ann", "amount": 1},
        {"type": "deposit", "client": "Ann", "amount": "1", "typo": True},
        {"type": "refund", "client": "Ann", "amount": "1"},
        {"type": "deposit", "client": "", "amount": "1"},
        {"type": "transfer", "from": "Ann", "to": "Bob", "amount": "1", "description": "x" * 501},
        {"type": "transfer", "from": "Ann", "to": "Bob", "amount": "2.50"},
    ]
    after = str(Decimal(admin.get("/v1/accounts/Ann").json()["balance"]) - Decimal("1.25"))
    body = {"operations": items}
    answer = admin.post("/v1/batch", json=body, headers={"Idempotency-Key": "malformed-1"})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [result["status"] for result in results] == [201, 422, 422, 422, 422, 422, 201]
    codes = [result["error"]["code"] for result in results[1:-1]]
    assert codes == [
        "invalid_amount",
        "invalid_request",
        "invalid_request",
        "invalid_client",
        "invalid_description",
    ]
    assert "$.operations[1].amount" in results[1]["error"]["message"]
    assert "typo" in results[2]["error"]["message"]
    # Each malformed item's error says which item, also where it names no field.
    for index in (2, 3, 4):
        assert f"$.operations[{index}]" in results[index]["error"]["message"], results[index]
    assert admin.get("/v1/accounts/Ann").json()["balance"] == after
    # The same body under its key applies nothing again; another body is refused whole.
    again = admin.post("/v1/batch", json=body, headers={"Idempotency-Key": "malformed-1"})
    assert [result["status"] for result in again.json()["results"]] == [
        result["status"] for result in results
    ]
    other = {"operations": [good, {**items[1], "amount": 2}]}
    answer = admin.post("/v1/batch", json=other, headers={"Idempotency-Key": "malformed-1"})
    refused(answer, 409, "idempotency_key_reused")
    assert admin.get("/v1/accounts/Ann").json()["balance"] == after


def test_fields_past_their_bounds_get_the_rules_codes(admin: httpx.Client) -> None:
    before = state(admin)
    deposit = {"client": "Ann", "amount": "1"}
    refused(admin.post("/v1/deposits", json={**deposit, "client": ""}), 422, "invalid_client")
    transfer = {"from": "Ann", "to": "", "amount": "1"}
    refused(admin.post("/v1/transfers", json=transfer), 422, "invalid_client")
    long = {**deposit, "description": "x" * 501}
    refused(admin.post("/v1/deposits", json=long), 422, "invalid_description")
    many = {"operations": [{"type": "deposit", **deposit}] * 10_001}
    message = refused(admin.post("/v1/batch", json=many), 422, "too_many_operations")
    assert message == "a batch request carries at most 10,000 operations: send them in parts"
    # The body's own fault is named, not that of an item met before it.
    bad_item = {"type": "deposit", "client": "Ann", "amount": 1}
    many_and_bad = {"operations": [*many["operations"][:-1], bad_item]}
    refused(admin.post("/v1/batch", json=many_and_bad), 422, "too_many_operations")
    unknown = {"operations": [{**bad_item, "note": "x"}], "dry_run": True}
    message = refused(admin.post("/v1/batch", json=unknown), 422, "invalid_request")
    assert "dry_run" in message, message
    low = {"min_balance": "-1000000000000000.01"}
    message = refused(admin.patch("/v1/accounts/Ann", json=low), 422, "invalid_limit")
    assert message == (  # and what the range is
        "floor '-1000000000000000.01' is out of range: a floor or cap is at most"
        " $1,000,000,000,000,000.00 from zero"
    )
    assert state(admin) == before


@pytest.mark.parametrize("word", ["none", "Null"])
def test_no_cap_written_as_text_is_told_it_is_json_s_null(admin: httpx.Client, word: str) -> None:
    """The shell's word for no cap, refused as no number with no word of what is meant."""
    before = state(admin)
    for answer in (
        admin.patch("/v1/accounts/Ann", json={"max_balance": word}),
        admin.post("/v1/accounts", json={"client": "Cy", "max_balance": word}),
    ):
        message = refused(answer, 422, "invalid_amount")
        assert message.endswith("; no cap is JSON's null"), message
    assert state(admin) == before


def test_json_numbers_for_amounts_are_refused(admin: httpx.Client) -> None:
    before = state(admin)
    for amount in (1, 1.5, 0.1):
        message = refused(
            admin.post("/v1/deposits", json={"client": "Ann", "amount": amount}),
            422,
            "invalid_amount",
        )
        assert "string" in message
    answer = admin.post("/v1/accounts", json={"client": "Cy", "min_balance": 0})
    refused(answer, 422, "invalid_amount")
    answer = admin.post("/v1/accounts", json={"client": "Cy", "max_balance": 100})
    refused(answer, 422, "invalid_amount")  # a cap may be null, but never a number
    refused(admin.patch("/v1/accounts/Ann", json={"max_balance": 5}), 422, "invalid_amount")
    # Neither is any other JSON value, and none is called a number.
    for amount, said in (({}, "not an object"), ([], "not an array"), (True, "never true")):
        answer = admin.post("/v1/deposits", json={"client": "Ann", "amount": amount})
        message = refused(answer, 422, "invalid_amount")
        assert message.startswith(f'amounts are JSON strings like "100.50", {said}'), message
    assert state(admin) == before


def test_a_null_floor_is_refused_not_read_as_unchanged(admin: httpx.Client) -> None:
    """Only a cap may be null (none); a floor there always is."""
    before = state(admin)
    message = refused(
        admin.patch("/v1/accounts/Ann", json={"min_balance": None}), 422, "invalid_amount"
    )
    assert message.startswith('amounts are JSON strings like "100.50", never null'), message
    answer = admin.post("/v1/accounts", json={"client": "Cy", "min_balance": None})
    assert "never null" in refused(answer, 422, "invalid_amount")
    assert state(admin) == before
    # A floor left out is unchanged, and its body's key replays as it did.
    opened = admin.post("/v1/accounts", json={"client": "Floor Kept", "min_balance": "-5.00"})
    assert opened.status_code == 201, opened.text
    cap, path = {"max_balance": "900.00"}, "/v1/accounts/Floor%20Kept"
    first = admin.patch(path, json=cap, headers={"Idempotency-Key": "cap-only"})
    again = admin.patch(path, json=cap, headers={"Idempotency-Key": "cap-only"})
    assert first.status_code == again.status_code == 200, first.text
    assert first.json() == again.json()
    assert (first.json()["min_balance"], first.json()["max_balance"]) == ("-5.00", "900.00")


def test_a_change_of_limits_that_changes_nothing_is_refused_and_takes_no_key(
    admin: httpx.Client,
) -> None:
    """As the shell refuses set_limits with neither bound: an empty PATCH is no change,
    and the key it came with stays free for the change meant."""
    before = state(admin)
    key = {"Idempotency-Key": "limits-empty"}
    message = refused(admin.patch("/v1/accounts/Ann", json={}, headers=key), 422, "invalid_limit")
    assert message == "a change of limits needs a floor, a cap or both"
    assert state(admin) == before
    changed = admin.patch("/v1/accounts/Ann", json={"max_balance": "900000"}, headers=key)
    assert changed.status_code == 200, changed.text
    undone = admin.patch("/v1/accounts/Ann", json={"max_balance": None})
    assert undone.status_code == 200, undone.text


def test_a_floor_and_a_cap_are_named_in_their_refusals(admin: httpx.Client) -> None:
    """In the words the shell uses for them, not as "limit"."""
    for body, said in (
        ({"client": "Cy", "min_balance": "1.005"}, "floor '1.005' has more than two decimals"),
        ({"client": "Cy", "max_balance": "x"}, "cap 'x' is not a number like 100 or 1,000.25"),
    ):
        assert refused(admin.post("/v1/accounts", json=body), 422, "invalid_amount") == said
    patched = admin.patch("/v1/accounts/Ann", json={"max_balance": "-1e3"})
    assert refused(patched, 422, "invalid_amount").startswith("cap '-1e3' ")


def test_huge_bodies_are_413(server: ServerProcess, admin: httpx.Client) -> None:
    before = state(admin)
    huge = b'{"from": "Ann", "to": "Bob", "amount": "1", "description": "' + b"x" * 200_000 + b'"}'
    refused(admin.post("/v1/transfers", content=huge), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield b'{"from": "Ann", "to": "Bob", "amount": "1", "description": "'
        for _ in range(100):
            yield b"y" * 10_000

    refused(admin.post("/v1/transfers", content=chunks()), 413, "body_too_large")

    def whole() -> Iterator[bytes]:  # no Content-Length, and all in one piece
        yield b'{"client": "Ann", "amount": "1", "description": "' + b"z" * 100_000 + b'"}'

    for _ in range(5):
        refused(admin.post("/v1/deposits", content=whole()), 413, "body_too_large")
    assert state(admin) == before


def test_unknown_routes_and_methods(admin: httpx.Client) -> None:
    refused(admin.get("/nope"), 404, "not_found")
    refused(admin.get("/v2/accounts"), 404, "not_found")
    refused(admin.get("/v1/accounts/Ann/nope"), 404, "not_found")
    for answer, allowed in (
        (admin.get("/v1/transfers"), "POST"),
        (admin.delete("/v1/accounts/Ann"), "GET, PATCH, HEAD"),
        (admin.put("/v1/accounts"), "GET, POST, HEAD"),
        (admin.post("/v1/health"), "GET, HEAD"),
        (admin.delete("/metrics"), "GET, HEAD"),
        (admin.head("/v1/batch"), "POST"),
    ):
        if answer.request.method == "HEAD":
            assert (answer.status_code, answer.content) == (405, b"")
        else:
            refused(answer, 405, "method_not_allowed")
        assert answer.headers["allow"] == allowed
    # HEAD is GET without the body: the same status and headers.
    got, head = admin.get("/v1/accounts/Ann"), admin.head("/v1/accounts/Ann")
    assert (head.status_code, head.content) == (got.status_code, b"")
    assert head.headers["content-length"] == got.headers["content-length"]
    assert admin.head("/v1/accounts/Nobody").status_code == 404
    refused(admin.get("/v1/accounts/Nobody"), 404, "account_not_found")


def test_refusals_read_as_the_shell_words_them(admin: httpx.Client) -> None:
    """The decoder meets a name's or description's length before the rules do; the
    answer is the rules' all the same."""
    before = state(admin)
    cases = (
        ("/v1/deposits", {"client": "", "amount": "1"}, "client name is empty"),
        ("/v1/transfers", {"from": "Ann", "to": "", "amount": "1"}, "client name is empty"),
        (
            "/v1/deposits",
            {"client": "Ann", "amount": "1", "description": "d" * 501},
            "description is longer than 500 characters",
        ),
        (
            "/v1/accounts",
            {"client": "Neg", "opening_balance": "-0.01"},
            "an opening balance must be $0.00 to $1,000,000,000,000.00",
        ),
    )
    for path, body, message in cases:
        answer = admin.post(path, json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["message"] == message
    for body, code, message in (
        ({"role": "boss"}, "invalid_role", "role must be one of admin, teller, client"),
        ({"role": "client"}, "invalid_client", "a client token is bound to a client: name one"),
        (
            {"role": "admin", "client": "Ann"},
            "invalid_client",
            "an admin token is not bound to a client",
        ),
    ):
        token = admin.post("/v1/tokens", json=body)
        assert token.status_code == 422, token.text
        assert token.json()["error"] == {"code": code, "message": message}
    batch = admin.post(
        "/v1/batch", json={"operations": [{"type": "deposit", "client": "", "amount": "1"}]}
    )
    assert batch.json()["results"][0]["error"]["message"] == (
        "client name is empty - at `$.operations[0]`"
    )
    assert state(admin) == before


def test_a_page_size_is_plain_digits(admin: httpx.Client) -> None:
    for limit in (" 5", "5 ", "1_0", "\u0665", "+5", "0", "-1", "1001", "9" * 400, ""):
        refused(admin.get("/v1/accounts", params={"limit": limit}), 422, "invalid_limit")
    page = admin.get("/v1/accounts", params={"limit": "1"})
    assert page.status_code == 200 and len(page.json()["accounts"]) == 1


def test_oversized_headers_are_refused(server: ServerProcess) -> None:
    with server.client() as admin:
        answer = admin.get("/v1/accounts/Ann", headers={"X-Junk": "j" * 40_000})
    assert answer.status_code in (400, 431), answer.text


def test_a_bad_period_and_format_are_422(admin: httpx.Client) -> None:
    refused(
        admin.get("/v1/accounts/Ann/statement", params={"since": "yesterday"}),
        422,
        "invalid_period",
    )
    refused(
        admin.get(
            "/v1/accounts/Ann/statement", params={"since": "2030-01-02", "till": "2030-01-01"}
        ),
        422,
        "invalid_period",
    )
    refused(
        admin.get("/v1/accounts/Ann/statement", params={"format": "xml"}), 422, "invalid_format"
    )
    # One moment past the microsecond as both ends: in order, and empty.
    moment = "2026-12-03T19:02:01.1894315Z"
    empty = admin.get("/v1/accounts/Ann/statement", params={"since": moment, "till": moment})
    assert empty.status_code == 200, empty.text
    assert empty.json()["lines"] == []


@pytest.mark.parametrize("offset", ["+01:00", "+0100", "+01"])
def test_an_offset_whose_plus_was_not_escaped_is_said_to_be_so(
    admin: httpx.Client, offset: str
) -> None:
    """A query reads "+" as a space: the refusal says so, not only that the text as read
    is no date."""
    as_sent = f"/v1/accounts/Ann/statement?since=2026-12-04T13:54:00{offset}"
    answer = admin.get(as_sent)
    refused(answer, 422, "invalid_period")
    message = answer.json()["error"]["message"]
    assert message.endswith("(a '+' in a URL's query reads as a space: send it as %2B)")
    escaped = admin.get(as_sent.replace("+", "%2B"))
    assert escaped.status_code == 200, escaped.text
    wrong = admin.get("/v1/accounts/Ann/statement?since=yesterday 01:00").json()
    assert "%2B" not in wrong["error"]["message"]  # no number before it: no such hint
    # Digits of another script are no offset either: escaping its "+" mends nothing.
    arabic = admin.get("/v1/accounts/Ann/statement?since=2026-12-04T13:54:00 \u0660\u0662:00")
    assert "%2B" not in arabic.json()["error"]["message"], arabic.text


def test_a_client_name_with_a_slash_round_trips(admin: httpx.Client) -> None:
    name = "Ann/Bob & Co %"
    answer = admin.post("/v1/deposits", json={"client": name, "amount": "3", "open_account": True})
    assert answer.status_code == 201, answer.text
    from urllib.parse import quote

    account = admin.get("/v1/accounts/" + quote(name, safe=""))
    assert account.json()["client"] == name


def test_garbage_on_the_socket_does_not_hurt_the_server(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"\x00\x01GARBAGE / HTTP/9.9\r\n\r\n")
        raw.recv(1024)
    assert httpx.get(f"{server.url}/v1/health").status_code == 200


def test_an_account_opens_with_its_balance_in_one_request(
    server: ServerProcess, admin: httpx.Client
) -> None:
    body = {"client": "Opal", "min_balance": "10", "max_balance": "500", "opening_balance": "60"}
    answer = admin.post("/v1/accounts", json=body, headers={"Idempotency-Key": "open-opal"})
    assert answer.status_code == 201, answer.text
    assert (answer.json()["balance"], answer.json()["min_balance"]) == ("60.00", "10.00")
    lines = admin.get("/v1/accounts/Opal/statement").json()["lines"]
    assert [(line["description"], line["amount"]) for line in lines] == [
        ("Opening balance", "60.00")
    ]
    # The same request again (a lost answer) gets the first answer; nothing is deposited
    # twice. Without the key it is a new request, for an account that exists.
    admin.post("/v1/deposits", json={"client": "Opal", "amount": "1"})
    again = admin.post("/v1/accounts", json=body, headers={"Idempotency-Key": "open-opal"})
    assert (again.status_code, again.json()) == (201, answer.json())
    assert len(admin.get("/v1/accounts/Opal/statement").json()["lines"]) == 2
    refused(admin.post("/v1/accounts", json=body), 409, "account_exists")
    # Through the Python client, as `kopilka add-user --url` does.
    with connect_bank(server.url, token=server.token) as bank:
        account = bank.open_account("Pearl", 500, None, 700, "open-pearl")
        assert (account.balance_cents, account.min_balance_cents) == (700, 500)
        refused_floor = admin.post(
            "/v1/accounts", json={"client": "Ruby", "min_balance": "5", "opening_balance": "4"}
        )
        refused(refused_floor, 422, "floor_above_balance")
    assert admin.get("/v1/accounts/Ruby").status_code == 404


def test_the_python_client_makes_keys_and_takes_only_whole_cents(
    server: ServerProcess, admin: httpx.Client
) -> None:
    before = state(admin)
    with connect_bank(server.url, token=server.token) as bank:
        for amount in (1.5, True, "100"):
            with pytest.raises(InvalidInput) as refused_amount:
                bank.deposit("Ann", amount, "x")  # type: ignore[arg-type]
            assert refused_amount.value.code == "invalid_amount"
        assert state(admin) == before
        first, second = bank.deposit("Ann", 150, "keyless"), bank.deposit("Ann", 150, "keyless")
    assert first.idempotency_key != second.idempotency_key  # two calls, two requests
    assert len(first.idempotency_key) == 36  # made by the client: a UUID
    lines = admin.get("/v1/accounts/Ann/statement").json()["lines"]
    assert [line["description"] for line in lines].count("keyless") == 2


def test_a_key_with_a_tab_is_refused_by_every_write_alike(admin: httpx.Client) -> None:
    """Refused by a money write, and kept by an account's opening or a change of its
    limits, a batch's items each refused rather than the batch."""
    before = state(admin)
    key = {"Idempotency-Key": "tab\tkey"}
    writes = [
        admin.post("/v1/accounts", json={"client": "Tabbed"}, headers=key),
        admin.patch("/v1/accounts/Ann", json={"max_balance": "900000"}, headers=key),
        admin.post("/v1/deposits", json={"client": "Ann", "amount": "1"}, headers=key),
        admin.post(
            "/v1/batch",
            json={"operations": [{"type": "deposit", "client": "Ann", "amount": "1"}]},
            headers=key,
        ),
    ]
    for answer in writes:
        assert "printable ASCII" in refused(answer, 422, "invalid_idempotency_key")
    assert state(admin) == before


def test_an_idempotency_key_is_1_to_200_characters(admin: httpx.Client) -> None:
    before = state(admin)
    body = {"client": "Ann", "amount": "1", "description": "keyed"}
    for key in ("", "k" * 201, "\u00e9".encode(), "ключ".encode()):
        answer = admin.post("/v1/deposits", json=body, headers={"Idempotency-Key": key})
        refused(answer, 422, "invalid_idempotency_key")
    # A batch's items get KEY:INDEX, which must fit as well: here KEY:0 ... KEY:10.
    batch = {"operations": [{"type": "deposit", **body}] * 11}
    answer = admin.post("/v1/batch", json=batch, headers={"Idempotency-Key": "b" * 198})
    assert "1 to 197 characters" in refused(answer, 422, "invalid_idempotency_key")
    assert state(admin) == before
    longest = admin.post("/v1/deposits", json=body, headers={"Idempotency-Key": "k" * 200})
    assert longest.status_code == 201, longest.text
    answer = admin.post("/v1/batch", json=batch, headers={"Idempotency-Key": "b" * 197})
    assert [result["status"] for result in answer.json()["results"]] == [201] * 11
    # Ten items end at KEY:9, two characters: a key of 198 fits them.
    ten = {"operations": batch["operations"][:10]}
    answer = admin.post("/v1/batch", json=ten, headers={"Idempotency-Key": "t" * 198})
    assert [result["status"] for result in answer.json()["results"]] == [201] * 10
    # An empty batch takes the key a batch of one does (KEY:0), not one shorter.
    for letter, operations in (("e", []), ("f", batch["operations"][:1])):
        answer = admin.post(
            "/v1/batch", json={"operations": operations}, headers={"Idempotency-Key": letter * 198}
        )
        assert answer.status_code == 200, answer.text


def test_a_ledger_header_is_ascii_and_never_trimmed_into_another_name(
    admin: httpx.Client,
) -> None:
    """Read as Latin-1, "café" in UTF-8 named the ledger "cafÃ©", and a no-break space at
    an end was trimmed off into another name: both are refused, nothing changes."""
    before = state(admin)
    body = {"client": "Zoe", "amount": "3", "open_account": True}
    for ledger in ("café".encode(), "main\u00a0".encode("latin-1"), b"\x85main"):
        answer = admin.post("/v1/deposits", json=body, headers={"Kopilka-Ledger": ledger})
        refused(answer, 422, "invalid_ledger")
    assert state(admin) == before


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_text_no_store_can_keep_is_refused_where_it_comes_in(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """A NUL (which PostgreSQL cannot store) or a bidirectional override is refused as
    bad input where it comes in: in a batch, by its own item, never failing the batch
    the engine groups it with; in a path, a query or a body, before any store sees it."""
    database = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    with running_server(tmp_path / "home", database) as server, server.client() as admin:
        admin.post("/v1/deposits", json={"client": "Ann", "amount": "50", "open_account": True})
        before = state(admin)
        items = [
            {"type": "deposit", "client": "Ann", "amount": "1", "idempotency_key": "k\u0000"},
            {"type": "deposit", "client": "Ann", "amount": "1", "description": "a\u202eb"},
            {"type": "deposit", "client": "Ann", "amount": "1", "description": "a\u2028b"},
            {"type": "transfer", "from": "Ann", "to": "B\u0000b", "amount": "1"},
            {"type": "withdrawal", "client": "\u0000", "amount": "1"},
        ]
        answer = admin.post("/v1/batch", json={"operations": items})
        assert answer.status_code == 200, answer.text
        codes = [result["error"]["code"] for result in answer.json()["results"]]
        assert codes == [
            "invalid_idempotency_key",
            "invalid_description",
            "invalid_description",
            "invalid_client",
            "invalid_client",
        ]
        alone = admin.post("/v1/transfers", json={"from": "Ann", "to": "B\u0000", "amount": "1"})
        refused(alone, 422, "invalid_client")
        # An opening's name too: PostgreSQL's refusal of the text had come first.
        for opening in ({"client": "a\u0000b"}, {"client": "Ok\u0000", "opening_balance": "5"}):
            refused(admin.post("/v1/accounts", json=opening), 422, "invalid_client")
        refused(admin.patch("/v1/accounts/a%00b", json={"max_balance": "5"}), 422, "invalid_client")
        refused(admin.get("/v1/accounts/%00"), 422, "invalid_client")
        refused(admin.get("/v1/accounts/%00/statement"), 422, "invalid_client")
        refused(admin.get("/v1/accounts?after=%00"), 422, "invalid_client")
        # Given empty, as `since=` is refused: not read as left out.
        for blank in ("", "%20"):
            message = refused(admin.get(f"/v1/accounts?after={blank}"), 422, "invalid_client")
            assert message == "client name is empty"
        refused(admin.delete("/v1/tokens/%00"), 404, "token_not_found")
        refused(admin.delete("/v1/sandboxes/sandbox-x%00"), 422, "invalid_ledger")
        made = admin.post("/v1/tokens", json={"role": "teller", "ledger": "\u0000"})
        refused(made, 422, "invalid_ledger")
        assert state(admin) == before
        assert admin.get("/v1/tokens").json()[-1]["ledger"] != "\u0000"
        formula = {"client": "Ann", "amount": "1", "description": "=cmd|' /C calc'!A0"}
        assert admin.post("/v1/deposits", json=formula).status_code == 201
        exported = admin.get("/v1/accounts/Ann/statement", params={"format": "csv"}).text
        rows = list(csv.reader(io.StringIO(exported)))
        assert rows[-1][3] == "'=cmd|' /C calc'!A0"  # text to a spreadsheet, not a formula


@pytest.mark.parametrize(
    "body",
    [
        b'{"operations": [' + b"[" * 1_000 + b"]" * 1_000 + b"]}",
        b'{"operations": [{"type": "deposit", "client": "Ann", "amount": "1", "x": '
        + b"[" * 1_000
        + b"]" * 1_000
        + b"}]}",
        b'{"operations": [{"type": "deposit", "client": "Ann", "amount": "1"}, '
        + b'{"a": ' * 1_000
        + b"1"
        + b"}" * 1_000
        + b"]}",
    ],
    ids=["an item", "a field of an item", "an object for an item"],
)
def test_json_nested_past_the_decoders_depth_is_refused_not_an_internal_error(
    admin: httpx.Client, body: bytes
) -> None:
    before = state(admin)
    answer = admin.post("/v1/batch", content=body)
    # Not split into items: the pass that finds where each item ends goes too deep too.
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == {
        "code": "invalid_request",
        "message": "invalid request body: nested too deeply",
    }
    assert state(admin) == before


def test_json_nested_just_under_the_decoders_depth_is_said_to_be_nested_too_deeply(
    admin: httpx.Client,
) -> None:
    """A little under msgspec's bound, the pass that looks for repeated fields went too
    deep first, and the body was said to be one that "cannot be read"."""
    for depth in range(950, 1_001, 2):
        body = b'{"operations": [{"type": "deposit", "client": "Ann", "amount": "1", "x": '
        answer = admin.post("/v1/batch", content=body + b"[" * depth + b"]" * depth + b"}]}")
        if answer.status_code == 200:  # read whole: the item alone refused, for its field
            assert answer.json()["results"][0]["status"] == 422, depth
            continue
        assert (answer.status_code, answer.json()["error"]["message"]) == (
            422,
            "invalid request body: nested too deeply",
        ), depth


@pytest.mark.parametrize("header", ["Authorization", "Idempotency-Key", "Kopilka-Ledger"])
def test_a_header_that_names_one_thing_sent_twice_is_refused(
    server: ServerProcess, admin: httpx.Client, header: str
) -> None:
    """A proxy that checked the first copy must not see the second one obeyed."""
    before = state(admin)
    values = {
        "Authorization": [f"Bearer {server.token}", "Bearer kop_0_other"],
        "Idempotency-Key": ["first", "second"],
        "Kopilka-Ledger": ["main", "other"],
    }[header]
    headers = [("Authorization", f"Bearer {server.token}")] if header != "Authorization" else []
    headers += [(header, value) for value in values]
    answer = httpx.post(
        f"{server.url}/v1/deposits",
        json={"client": "Ann", "amount": "1"},
        headers=headers,
    )
    refused(answer, 400, "duplicate_header")
    assert state(admin) == before


def test_the_python_clients_batch_answers_each_command_and_applies_once(
    server: ServerProcess, admin: httpx.Client
) -> None:
    commands = [
        Deposit("Ann", 700, "batch in", "pc-1"),
        Transfer("Ann", "Bob", 200, "batch move", "pc-2"),
        Withdraw("Bob", 10**9, "too much", "pc-3"),
        Deposit("Nobody here", 100, "no account", "pc-4", open_account=False),
    ]
    balances = {
        name: admin.get(f"/v1/accounts/{name}").json()["balance"] for name in ("Ann", "Bob")
    }
    with connect_bank(server.url, token=server.token) as bank:
        first = bank.execute_many(commands, "python-client-batch")
        again = bank.execute_many(commands, "python-client-batch")
    deposit, transfer, too_much, nobody = first
    assert isinstance(deposit, Operation) and deposit.credit_balance_after_cents is not None
    assert isinstance(transfer, Operation) and transfer.debit_client == "Ann"
    assert isinstance(too_much, KopilkaError) and too_much.code == "insufficient_funds"
    assert isinstance(nobody, KopilkaError) and nobody.code == "account_not_found"
    assert [getattr(o, "code", None) for o in again] == [getattr(o, "code", None) for o in first]
    assert [getattr(o, "id", None) for o in again] == [getattr(o, "id", None) for o in first]
    after = {name: admin.get(f"/v1/accounts/{name}").json()["balance"] for name in ("Ann", "Bob")}
    assert Decimal(after["Ann"]) - Decimal(balances["Ann"]) == Decimal("5.00")  # +7 -2, once
    assert Decimal(after["Bob"]) - Decimal(balances["Bob"]) == Decimal("2.00")


def _lose_the_first_answer(server: ServerProcess, listener: socket.socket) -> None:
    """Pass one request on to the server and drop its answer; then take no more."""
    with listener:
        client, _ = listener.accept()
        with client, socket.create_connection(("127.0.0.1", server.port)) as upstream:
            request = b""
            while b"\r\n\r\n" not in request:
                request += client.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += client.recv(65536)
            upstream.sendall(head + b"\r\n\r\n" + body)
            assert upstream.recv(65536).startswith(b"HTTP/1.1 201")  # applied, answer lost


def test_the_python_client_says_a_write_whose_answer_was_lost_may_have_applied(
    server: ServerProcess, admin: httpx.Client
) -> None:
    """The first attempt reached the server and its answer was lost; the retries found
    no server at all. Their failure speaks only of themselves: the call's answer is
    that the deposit may have been applied, which the same key then settles, once."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    relay = threading.Thread(target=_lose_the_first_answer, args=(server, listener))
    relay.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    before = Decimal(admin.get("/v1/accounts/Ann").json()["balance"])
    # The ledger named, so the write is the first request (none asks whose ledger it is).
    with (
        connect_bank(url, token=server.token, ledger="main") as bank,
        pytest.raises(KopilkaError) as lost,
    ):
        bank.deposit("Ann", 300, "answer lost", "lost-answer-1")
    relay.join(timeout=10)
    assert lost.value.code == "outcome_unknown", lost.value
    assert "whether this was applied is not known" in lost.value.message
    assert Decimal(admin.get("/v1/accounts/Ann").json()["balance"]) == before + 3
    with connect_bank(server.url, token=server.token) as bank:
        again = bank.deposit("Ann", 300, "answer lost", "lost-answer-1")
    assert again.replayed
    assert Decimal(admin.get("/v1/accounts/Ann").json()["balance"]) == before + 3


def test_a_key_the_server_made_for_a_batch_guards_its_body(admin: httpx.Client) -> None:
    """A keyless batch's key (its items' keys are KEY:INDEX; a 503 among them hands it
    back to resend under) holds the body as a key sent would: another body is refused."""
    body = {"operations": [{"type": "deposit", "client": "Ann", "amount": "1"}]}
    (result,) = admin.post("/v1/batch", json=body).json()["results"]
    made = result["operation"]["idempotency_key"].rpartition(":")[0]
    before = state(admin)
    other = {"operations": [{"type": "deposit", "client": "Ann", "amount": "9.99"}]}
    answer = admin.post("/v1/batch", json=other, headers={"Idempotency-Key": made})
    refused(answer, 409, "idempotency_key_reused")
    again = admin.post("/v1/batch", json=body, headers={"Idempotency-Key": made})
    assert again.json()["results"][0]["operation"]["id"] == result["operation"]["id"]
    assert state(admin) == before


def test_a_statement_format_is_read_as_the_shell_reads_it(admin: httpx.Client) -> None:
    for form in ("CSV", "Csv", "JSON"):
        answer = admin.get("/v1/accounts/Ann/statement", params={"format": form})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith(
            f"{'text/csv' if form.lower() == 'csv' else 'application/json'}"
        )


def test_an_unknown_or_repeated_query_parameter_is_refused(admin: httpx.Client) -> None:
    for path, query in (
        ("/v1/accounts", "limit=2&limit=3"),
        ("/v1/accounts", "limt=2"),
        ("/v1/accounts/Ann/statement", "sinse=2026-01-01"),
        ("/v1/accounts/Ann/statement", "format=xml&format=csv"),
    ):
        message = refused(admin.get(f"{path}?{query}"), 422, "invalid_request")
        assert "query parameter" in message, message
    assert admin.get("/v1/accounts?limit=2").status_code == 200


def test_a_write_given_a_query_parameter_is_refused_and_changes_nothing(
    admin: httpx.Client,
) -> None:
    """A write takes none: `?dry_run=true` must not move money as though it were read."""
    before = state(admin)
    transfer = {"from": "Ann", "to": "Bob", "amount": "1"}
    for method, path, body in (
        ("POST", "/v1/transfers", transfer),
        ("POST", "/v1/deposits", {"client": "Ann", "amount": "1"}),
        ("POST", "/v1/withdrawals", {"client": "Ann", "amount": "1"}),
        ("POST", "/v1/batch", {"operations": [{"type": "transfer", **transfer}]}),
        ("POST", "/v1/accounts", {"client": "Dry Run"}),
        ("PATCH", "/v1/accounts/Ann", {"max_balance": "1.00"}),
    ):
        answer = admin.request(method, f"{path}?dry_run=true", json=body)
        message = refused(answer, 422, "invalid_request")
        assert message == "unknown query parameter 'dry_run' (this request takes none)"
    assert state(admin) == before
    sandbox = admin.post("/v1/sandboxes").json()["ledger"]
    refused(admin.delete(f"/v1/sandboxes/{sandbox}?force=1"), 422, "invalid_request")
    assert admin.delete(f"/v1/sandboxes/{sandbox}").status_code == 204


def test_a_sandbox_never_made_or_a_ledger_that_is_none_is_not_found(
    admin: httpx.Client,
) -> None:
    """A name the store does not hold was said to have ended, though it may never have
    begun; `main` was refused as if the caller lacked a permission."""
    for ledger in ("sandbox-abc", admin.post("/v1/sandboxes").json()["ledger"]):
        assert admin.delete(f"/v1/sandboxes/{ledger}").status_code in (204, 404)
        for answer in (
            admin.delete(f"/v1/sandboxes/{ledger}"),
            admin.get("/v1/accounts", headers={"Kopilka-Ledger": ledger}),
        ):
            message = refused(answer, 404, "sandbox_not_found")
            assert message == (
                f"no sandbox {ledger!r}: it has ended (closed, or idle too long) or never was;"
                " start a new session"
            )
    message = refused(admin.delete("/v1/sandboxes/main"), 404, "sandbox_not_found")
    assert message == (
        "'main' is no sandbox: only a ledger made by POST /v1/sandboxes"
        " (its name begins 'sandbox-') is dropped this way"
    )
    assert admin.get("/v1/accounts").status_code == 200


def test_a_write_whose_sandbox_ended_while_its_body_came_is_told_as_any_other_is(
    server: ServerProcess, admin: httpx.Client
) -> None:
    """Found open at its headers and ended before its body was in, a write was told
    "this sandbox has ended (...)", naming none, where every other request to a sandbox
    gone names it."""
    ledger = admin.post("/v1/sandboxes").json()["ledger"]
    body = json.dumps({"client": "Ann", "amount": "1", "open_account": True}).encode()
    head = (
        "POST /v1/deposits HTTP/1.1\r\nHost: kopilka\r\n"
        f"Authorization: Bearer {server.token}\r\nKopilka-Ledger: {ledger}\r\n"
        "Content-Type: application/json\r\nExpect: 100-continue\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(head.encode())
        # Asked for once the request was let in (its sandbox open), as its body is read.
        assert raw.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert admin.delete(f"/v1/sandboxes/{ledger}").status_code == 204
        raw.sendall(body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            answer += raw.recv(4096)
    status, _, payload = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 404 "), answer
    error = json.loads(payload)["error"]
    assert error == {
        "code": "sandbox_not_found",
        "message": f"no sandbox {ledger!r}: it has ended (closed, or idle too long) or never"
        " was; start a new session",
    }


def test_a_read_that_takes_no_parameters_refuses_one(admin: httpx.Client) -> None:
    """It passed silently: `?role=client` listed every token, unfiltered."""
    for path in ("/v1/accounts/Ann?format=csv", "/v1/tokens?role=client", "/v1/whoami?x=1"):
        message = refused(admin.get(path), 422, "invalid_request")
        assert message.endswith("(this request takes none)"), message
    message = refused(admin.get("/v1/accounts?limit=1&limit=2"), 422, "invalid_request")
    assert message == "query parameter 'limit' given twice"


def test_a_method_a_path_does_not_take_is_refused_before_its_name_is_read(
    admin: httpx.Client,
) -> None:
    answer = admin.put("/v1/accounts/%20", json={})
    assert refused(answer, 405, "method_not_allowed") == "PUT is not allowed on /v1/accounts/ "
    assert answer.headers["allow"] == "GET, PATCH, HEAD"


def test_what_an_error_quotes_of_a_request_is_one_line(admin: httpx.Client) -> None:
    """A line break or a terminal's escape sequence sent in a path or a field's name was
    handed back raw in the message: several lines, colours, a title, in a client's log."""
    item = {"type": "deposit\nx", "client": "A", "amount": "1"}
    batch = admin.post("/v1/batch", json={"operations": [item]})
    errors = [
        admin.get("/v1/nothing%0Aline2%1B%5B31mred").json()["error"],
        admin.put("/v1/tokens/a%0Ab", json={}).json()["error"],
        admin.post("/v1/deposits", json={"client": "A", "amount": "1", "a\nb\x1b[31m": 1}).json()[
            "error"
        ],
        batch.json()["results"][0]["error"],
    ]
    for error in errors:
        assert error["message"].isprintable(), error
    # Quoted as sent: percent-encoded, it is one line already.
    assert errors[0]["message"] == "no such endpoint: /v1/nothing%0Aline2%1B%5B31mred"


def test_a_slash_sent_percent_encoded_routes_nowhere(admin: httpx.Client) -> None:
    """`/v1%2Fdeposits` moved money: the writes' lean path read the decoded path, where
    every other route reads the path as sent (404), so a proxy's rule on POST /v1/deposits
    was passed by. A 404 quoted the decoded path, naming an endpoint that exists."""
    before = state(admin)
    write = {"client": "Ann", "amount": "1", "description": "x"}
    for path in ("/v1%2Fdeposits", "/v1%2fwithdrawals", "/%76%31%2F%74ransfers", "/v1%2Fbatch"):
        answer = admin.post(path, json=write)
        assert refused(answer, 404, "not_found") == f"no such endpoint: {path}"
    assert state(admin) == before
    # Any other byte percent-encoded is the same route, as a proxy reads it too.
    deposited = admin.post("/v1/%64eposits", json=write)
    assert deposited.status_code == 201, deposited.text
    assert admin.get("/v1/accounts/Ann").json()["balance"] == deposited.json()["balance_after"]


def test_every_account_is_listed_once_page_by_page(server: ServerProcess) -> None:
    """GET /v1/accounts pages by name (`after`, `next_after`), and the client walks every
    page: more accounts than one page holds all come back, once each, in order."""
    with server.client() as admin:
        ledger = admin.post("/v1/sandboxes").json()["ledger"]
        names = [f"Client {number:04}" for number in range(1_003)]
        opening = [
            {"type": "deposit", "client": name, "amount": "1", "open_account": True}
            for name in names
        ]
        headers = {"Kopilka-Ledger": ledger}
        opened = admin.post("/v1/batch", json={"operations": opening}, headers=headers)
        assert {result["status"] for result in opened.json()["results"]} == {201}
        listed: list[str] = []
        query = "limit=400"
        while True:
            page = admin.get(f"/v1/accounts?{query}", headers=headers).json()
            listed.extend(account["client"] for account in page["accounts"])
            if page["next_after"] is None:
                break
            assert page["next_after"] == listed[-1]
            query = f"limit=400&after={quote(page['next_after'])}"
        assert listed == sorted(names)
        full_and_last = f"/v1/accounts?limit=3&after={quote(names[999])}"
        page = admin.get(full_and_last, headers=headers).json()
        assert [account["client"] for account in page["accounts"]] == names[1_000:]
        assert page["next_after"] is None  # the last page, full: no page after it
        with connect_bank(server.url, token=server.token, ledger=ledger) as bank:
            assert [account.client for account in bank.accounts()] == sorted(names)
        admin.delete(f"/v1/sandboxes/{ledger}")


def test_a_page_s_bounds_are_read_as_a_name_and_a_number_are_elsewhere(
    admin: httpx.Client,
) -> None:
    """`after` is measured in NFC, as every name is (200 characters; four times as many
    decomposed), and `limit` is a number whatever zeros lead it."""
    decomposed = unicodedata.normalize("NFD", "\u1f82" * 200)  # 800 characters
    assert len(decomposed) == 800
    answer = admin.get("/v1/accounts", params={"after": decomposed, "limit": "0000001"})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["accounts"]) <= 1
    too_long = admin.get("/v1/accounts", params={"after": "a" * 201})
    assert too_long.status_code == 422, too_long.text
    for limit in ("00000000", "0001001"):
        refused = admin.get("/v1/accounts", params={"limit": limit})
        assert refused.json()["error"]["message"] == "limit must be 1 to 1000", refused.text


def test_a_query_that_is_not_utf8_is_refused_as_a_path_is(admin: httpx.Client) -> None:
    for path in ("/v1/accounts?after=%FF&limit=1", "/v1/accounts/Ann/statement?since=%FF"):
        answer = admin.get(path)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == {
            "code": "invalid_request",
            "message": "the query is not valid UTF-8",
        }
    assert admin.get("/v1/accounts?after=%C3%A9&limit=1").status_code == 200


def test_an_empty_segment_of_a_path_is_no_endpoint_on_every_route(admin: httpx.Client) -> None:
    """Each route had its own answer: "client name is empty", "no token ''", "a ledger
    name is 1 to 100 ...", where the listing's path was mistyped."""
    for method, path in (
        ("GET", "/v1/accounts/"),
        ("HEAD", "/v1/accounts/"),
        ("PATCH", "/v1/accounts/"),
        ("GET", "/v1/accounts//statement"),
        ("DELETE", "/v1/tokens/"),
        ("DELETE", "/v1/sandboxes/"),
        ("GET", "/v1//accounts"),
    ):
        answer = admin.request(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
        if method != "HEAD":
            assert answer.json()["error"] == {
                "code": "not_found",
                "message": f"no such endpoint: {path}",
            }, (method, path)


def test_a_percent_that_begins_no_escape_is_refused_in_a_path_and_a_query(
    server: ServerProcess, admin: httpx.Client
) -> None:
    """Read as itself, "%zz" named the account "%25zz" names too: one account at two
    paths, which a proxy in front may read apart. Sent as is (http.client)."""
    assert admin.post("/v1/accounts", json={"client": "%zz 100%"}).status_code == 201
    assert admin.get("/v1/accounts/%25zz%20100%25").status_code == 200
    for target, code, where in (
        ("/v1/accounts/%zz%20100%25", "invalid_path", "path"),
        ("/v1/accounts/%25zz%20100%", "invalid_path", "path"),
        ("/v1/accounts?after=%zy", "invalid_request", "query"),
        ("/v1/accounts/%25zz%20100%25/statement?since=2026-01-01%", "invalid_request", "query"),
    ):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            connection.request("GET", target, headers={"Authorization": f"Bearer {server.token}"})
            answer = connection.getresponse()
            body = json.loads(answer.read())
        finally:
            connection.close()
        assert (answer.status, body["error"]) == (
            400,
            {
                "code": code,
                "message": f"a '%' in the {where} begins an escape of two hex digits:"
                " a '%' itself is %25",
            },
        ), target


def test_an_account_opened_whose_answer_was_lost_is_not_said_unreached(
    server: ServerProcess, admin: httpx.Client
) -> None:
    """Not retried (a second try would be refused as account_exists), so its one attempt
    decides: it reached the server, so whether it was applied is not known."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    relay = threading.Thread(target=_lose_the_first_answer, args=(server, listener))
    relay.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    # The ledger named, so the write is the first request (none asks whose ledger it is).
    with (
        connect_bank(url, token=server.token, ledger="main") as bank,
        pytest.raises(KopilkaError) as lost,
    ):
        bank.open_account("Opened Unseen", 0, None)
    relay.join(timeout=10)
    assert lost.value.code == "outcome_unknown", lost.value
    assert lost.value.message.endswith("check before repeating it")
    assert admin.get("/v1/accounts/Opened%20Unseen").status_code == 200


def test_add_user_whose_answer_was_lost_says_to_look_not_to_retry_under_a_key(
    server: ServerProcess, admin: httpx.Client, tmp_path: Path
) -> None:
    """add-user takes no key of the caller's, so "retry with the same idempotency key"
    cannot be followed: it says to look at the account before running it again."""
    import threading

    from tests.e2e.conftest import run_kopilka

    listener = socket.create_server(("127.0.0.1", 0))
    relay = threading.Thread(target=_lose_the_first_answer, args=(server, listener))
    relay.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    where = ("--url", url, "--token", server.token, "--ledger", "main")
    name = "-Cut \\ User"  # the command it names is written as the shell reads it
    added = run_kopilka(tmp_path / "home", "add-user", f"-n={name}", "--max", "100", *where)
    relay.join(timeout=10)
    assert added.returncode == 4  # not 1: it may have been applied
    assert added.stderr.count("\n") == 1, added.stderr
    assert "whether this was applied is not known" in added.stderr
    assert added.stderr.endswith("` before running it again\n"), added.stderr
    assert "idempotency" not in added.stderr
    look = added.stderr.split("look with `")[1].split("`")[0]
    # A command of the OS shell, as the one that was cut short: `kopilka` before it.
    program, *words = shlex.split(look)
    assert program == "kopilka", look
    # With the options that reached the server the write went to: looking elsewhere
    # (the home's database) would find no account and invite a second opening.
    options, rest = split_globals(words)
    assert parse_words(rest, oneshot=True).get("name") == name, look
    assert options.values == {"url": url, "ledger": "main", "token": "TOKEN"}, look
    assert admin.get("/v1/accounts/" + quote(name, safe="")).status_code == 200


@pytest.mark.parametrize("method", ["read", "write"])
def test_a_server_that_never_answers_keeps_the_client_one_timeout_not_four(method: str) -> None:
    """A server that takes the connection and the request and stays silent (frozen,
    stopped) would keep each retry waiting as long: the call ends after one timeout,
    a write saying it may have been applied."""
    import time

    from kopilka.client import Client

    started = time.monotonic()
    with (
        silent_server() as server,
        Client(server.url, "kop_x_y", ledger="main", timeout_seconds=0.5) as bank,
        pytest.raises(KopilkaError) as failed,
    ):
        if method == "read":
            bank.account("Ann")
        else:
            bank.deposit("Ann", 100, "x", "silent-1")
    assert time.monotonic() - started < 1.5
    assert len(server.taken) == 1, server.taken
    if method == "read":
        assert failed.value.code == "server_unreachable"
        assert "did not answer in time" in failed.value.message
    else:
        assert failed.value.code == "outcome_unknown"
        assert "did not answer in time; whether this was applied is not known" in (
            failed.value.message
        )


def test_a_ledger_not_told_in_time_is_not_said_as_the_write_unanswered() -> None:
    """A client that names no ledger asks its token's first: that question unanswered
    had read "took the request but did not answer in time", as if said of the write."""
    from kopilka.client import Client

    with (
        silent_server() as server,
        Client(server.url, "kop_x_y", timeout_seconds=0.3) as bank,
        pytest.raises(KopilkaError) as failed,
    ):
        bank.deposit("Ann", 100, "x", "silent-1")
    assert len(server.taken) == 1, server.taken  # the question; the deposit never went
    assert (failed.value.code, failed.value.message, failed.value.before_the_write) == (
        "server_unreachable",
        f"the server at {server.url} did not say in time which ledger the token is for;"
        " nothing was sent: try again",
        True,
    )


def test_a_ledger_question_hung_up_on_says_nothing_was_sent() -> None:
    """A proxy that hangs up: "closed the connection before its answer was complete"
    was said as if of the write, which was never sent."""
    from kopilka.client import Client

    with (
        silent_server(hangs_up=True) as server,
        Client(server.url, "kop_x_y", timeout_seconds=2) as bank,
        pytest.raises(KopilkaError) as failed,
    ):
        bank.deposit("Ann", 100, "x", "hung-up-1")
    assert (failed.value.code, failed.value.message, failed.value.before_the_write) == (
        "answer_broken_off",
        f"the server at {server.url} closed the connection before it said which ledger the"
        " token is for; nothing was sent: try again",
        True,
    )


@pytest.mark.parametrize(
    ("call", "advice"),
    [
        (lambda bank: bank.deposit("Ann", 1, "x", "mine-1"), "retry with the same idempotency key"),
        (lambda bank: bank.deposit("Ann", 100, "x"), "check before repeating it"),
        (lambda bank: bank.set_limits("Ann", None, 500), "check before repeating it"),
        # Each item under a key of the caller's: sent again, each answers as it did.
        (
            lambda bank: bank.execute_many([Deposit("Ann", 1, "x", "d")]),
            "retry with the same idempotency key",
        ),
        (
            lambda bank: bank.open_account("Ann", 0, None, 0, "open-1"),
            "retry with the same idempotency key",
        ),
    ],
    ids=["a key of the caller's", "no key", "limits", "a list without a key", "a keyed opening"],
)
def test_a_lost_answer_says_to_retry_under_a_key_only_when_the_caller_has_it(
    call: Callable[[Any], object], advice: str
) -> None:
    """A key the client made itself is unknown to the caller, who could not follow
    "retry with the same idempotency key"."""
    from kopilka.client import Client

    with (
        silent_server() as server,
        Client(server.url, "kop_x_y", ledger="main", timeout_seconds=0.3) as bank,
        pytest.raises(KopilkaError) as failed,
    ):
        call(bank)
    assert failed.value.code == "outcome_unknown"
    assert advice in failed.value.message, failed.value.message


def test_an_opening_kept_under_its_decomposed_name_replays_after_an_upgrade(
    tmp_path: Path,
) -> None:
    """Versions before digested an opening's name as sent; a retry of such a request,
    spelt the same, must still replay, not be refused as another request."""
    import hashlib
    import sqlite3

    import msgspec

    from kopilka.api.schemas import OpenAccountIn

    name = "C\u0327at"  # decomposed: the ledger keeps it as "\u00c7at"
    body = {"client": name, "min_balance": "0"}
    headers = {"Idempotency-Key": "open-nfd-1"}
    route = b"POST /v1/accounts\n"
    as_sent = msgspec.json.encode(OpenAccountIn(client=name, min_balance="0"))
    earlier = hashlib.sha256(route + as_sent).hexdigest()
    database = tmp_path / "books.db"
    with running_server(tmp_path / "home", str(database)) as server, server.client() as admin:
        assert admin.post("/v1/accounts", json=body, headers=headers).status_code == 201
        with sqlite3.connect(database) as kept:  # the key as an earlier version kept it
            kept.execute(
                "UPDATE batch_requests SET digest = ? WHERE idempotency_key = ?",
                (earlier, "open-nfd-1"),
            )
    with running_server(tmp_path / "home", str(database)) as server, server.client() as admin:
        again = admin.post("/v1/accounts", json=body, headers=headers)
        assert again.status_code == 201, again.text
        assert again.json()["client"] == "\u00c7at"
        other = admin.post("/v1/accounts", json={**body, "min_balance": "-1"}, headers=headers)
        assert other.status_code == 409, other.text


def _stopped_before_answering(connection: socket.socket) -> None:
    """Every request answered as a stopping server answers one it gave up waiting for."""
    from kopilka.api.errors import error_body
    from kopilka.errors import stopped_before_answer

    body = error_body(stopped_before_answer())
    while connection.recv(65536):
        connection.sendall(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )


@pytest.mark.parametrize(
    ("call", "advice"),
    [
        (lambda bank: bank.deposit("Ann", 1, "x", "mine-1"), "it is never applied twice"),
        (lambda bank: bank.deposit("Ann", 100, "x"), "look before repeating it"),
        (lambda bank: bank.set_limits("Ann", None, 500), "look before repeating it"),
    ],
    ids=["a key of the caller's", "no key", "limits"],
)
def test_a_servers_outcome_unknown_says_to_retry_under_a_key_only_when_the_caller_has_it(
    call: Callable[[Any], object], advice: str
) -> None:
    from tests.local_listener import serving

    from kopilka.client import Client

    with (
        serving(_stopped_before_answering) as url,
        Client(url, "kop_x_y", ledger="main") as bank,
        pytest.raises(KopilkaError) as failed,
    ):
        call(bank)
    assert failed.value.code == "outcome_unknown"
    assert failed.value.message.endswith(advice), failed.value.message


def test_a_sandbox_is_asked_for_with_no_body_or_an_empty_object(admin: httpx.Client) -> None:
    """Nothing else: a body that says something is refused, as every request's is."""
    for body, status in ((b"garbage", 400), (b'{"ledger": "mine"}', 422), (b"[]", 422)):
        refusal = admin.post("/v1/sandboxes", content=body)
        assert refusal.status_code == status, refusal.text
        assert refusal.json()["error"]["message"]
    for body in (b"", b"{}", b" { } "):
        made = admin.post("/v1/sandboxes", content=body)
        assert made.status_code == 201, made.text
        assert admin.delete(f"/v1/sandboxes/{made.json()['ledger']}").status_code == 204


@pytest.mark.parametrize("encoding", ["gzip", "x-unknown", "identity, gzip"])
def test_a_body_declared_encoded_is_refused_and_nothing_applied(
    server: ServerProcess, encoding: str
) -> None:
    """Read as it came, it would be another body to whoever decodes it as declared (a
    proxy, an auditor): the ledger and they must never read two different writes."""
    with server.client() as admin:
        before = admin.get("/v1/accounts/Ann").json()["balance"]
        answer = admin.post(
            "/v1/deposits",
            content=b'{"client": "Ann", "amount": "1"}',
            headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
        )
        assert (answer.status_code, answer.json()["error"]["code"]) == (
            415,
            "unsupported_encoding",
        )
        assert admin.get("/v1/accounts/Ann").json()["balance"] == before
        plain = admin.post(
            "/v1/deposits",
            content=b'{"client": "Ann", "amount": "1"}',
            headers={"Content-Encoding": "identity", "Content-Type": "application/json"},
        )
        assert plain.status_code == 201, plain.text


@pytest.mark.parametrize(
    "text",
    [
        b'"client": "Ann\xff"',
        b'"client": "Ann", "description": "\xc0\xaf"',
        # A surrogate encoded as UTF-8 (as Java's modified UTF-8 writes one): no UTF-8.
        b'"client": "Ann", "description": "x\xed\xa0\x80"',
    ],
)
def test_a_body_that_is_not_utf8_is_malformed_json_alone_or_in_a_batch(
    admin: httpx.Client, text: bytes
) -> None:
    """A batch's items are decoded one by one after a first look that let the bytes
    through: its body was called unreadable (422), where a single write's is not JSON.
    Refused whole, the batch applies none of its items, the good ones before it too."""
    before = admin.get("/v1/accounts/Ann").json()["balance"]
    good = b'{"type": "deposit", "client": "Ann", "amount": "5"}'
    item = b'{"type": "deposit", ' + text + b', "amount": "1"}'
    for path, body in (
        ("/v1/deposits", b"{" + text + b', "amount": "1"}'),
        ("/v1/batch", b'{"operations": [' + item + b"]}"),
        ("/v1/batch", b'{"operations": [' + good + b", " + item + b"]}"),
    ):
        answer = admin.post(path, content=body, headers={"Content-Type": "application/json"})
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "malformed_json"), (
            path,
            answer.text,
        )
    assert admin.get("/v1/accounts/Ann").json()["balance"] == before
