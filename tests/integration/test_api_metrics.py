"""GET /metrics: operations by kind and result, batch sizes, latency, read as Prometheus does."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from tests.kopilka_server import running_server
from tests.metric_samples import samples
from tests.pgserver import PostgresTestServer

from kopilka.domain.model import Deposit, Operation
from kopilka.engine import Engine
from kopilka.store.postgres import PostgresStore


def test_metrics_count_what_was_done(tmp_path: Path) -> None:
    with running_server(tmp_path / "home") as server, server.client() as admin:
        for client in ("Ann", "Bob"):
            opened = admin.post(
                "/v1/deposits", json={"client": client, "amount": "10", "open_account": True}
            )
            assert opened.status_code == 201
        moved = admin.post("/v1/transfers", json={"from": "Ann", "to": "Bob", "amount": "3"})
        assert moved.status_code == 201
        refused = admin.post("/v1/withdrawals", json={"client": "Ann", "amount": "100"})
        assert refused.status_code == 422
        batch = {"operations": [{"type": "deposit", "client": "Bob", "amount": "1"}] * 3}
        assert admin.post("/v1/batch", json=batch).status_code == 200
        assert admin.get("/v1/accounts/Bob/statement").status_code == 200
        answer = httpx.get(f"{server.url}/metrics")  # no token needed
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    seen = samples(answer.text)

    def operations(kind: str, result: str) -> float:
        return seen[("kopilka_operations_total", (("kind", kind), ("result", result)))]

    assert operations("deposit", "ok") == 5  # two openings and the batch's three
    assert operations("transfer", "ok") == 1
    assert operations("withdrawal", "insufficient_funds") == 1
    # Every operation went through a committed batch; the batch of three as one.
    batches = seen[("kopilka_engine_batches_total", ())]
    assert seen[("kopilka_batch_size_count", ())] == batches
    assert seen[("kopilka_batch_size_sum", ())] == 7  # not the claim of the batch's key
    assert seen[("kopilka_batch_size_bucket", (("le", "4"),))] == batches
    assert 4 <= batches <= 6
    assert seen[("kopilka_request_seconds_count", (("kind", "transfer"),))] == 1
    # A batch and a statement apart from the rest, whose latency theirs would hide.
    assert seen[("kopilka_request_seconds_count", (("kind", "batch"),))] == 1
    assert seen[("kopilka_request_seconds_count", (("kind", "statement"),))] == 1
    # The server's SQLite file: how long its COMMITs take, which decides where they run.
    assert 0 < seen[("kopilka_sqlite_commit_seconds", ())] < 5
    assert seen[("kopilka_request_seconds_bucket", (("kind", "deposit"), ("le", "+Inf")))] == 2


@pytest.mark.postgres
def test_metrics_count_batches_written_on_the_view_of_their_accounts(
    tmp_path: Path, postgres_url: str
) -> None:
    """On PostgreSQL: transfers between accounts the server has seen are each written in
    one statement; another process's write makes its view stale once."""
    with running_server(tmp_path / "home", postgres_url) as server, server.client() as admin:
        for client in ("Ann", "Bob"):
            opened = admin.post(
                "/v1/deposits", json={"client": client, "amount": "10", "open_account": True}
            )
            assert opened.status_code == 201
        for _ in range(3):
            moved = admin.post("/v1/transfers", json={"from": "Ann", "to": "Bob", "amount": "1"})
            assert moved.status_code == 201
        asyncio.run(_deposit_elsewhere(postgres_url, "Ann"))
        moved = admin.post("/v1/transfers", json={"from": "Ann", "to": "Bob", "amount": "1"})
        assert moved.status_code == 201
        assert moved.json()["from_balance_after"] == "11.00"  # 10 - 3 + 5 - 1
        answer = httpx.get(f"{server.url}/metrics")
    seen = samples(answer.text)
    assert seen[("kopilka_postgres_view_batches_total", (("result", "written"),))] == 3
    assert seen[("kopilka_postgres_view_batches_total", (("result", "stale"),))] == 1


async def _deposit_elsewhere(url: str, client: str) -> None:
    """A deposit by another process: a store of its own on the same database."""
    async with Engine(PostgresStore(url)) as engine:
        assert isinstance(await engine.execute(Deposit(client, 500, "", "elsewhere")), Operation)


def test_metrics_count_every_batch_item_and_replays_apart(tmp_path: Path) -> None:
    """A batch's items refused before the engine (malformed, bad amounts) went
    uncounted, and an answer given again under its key counted as a new operation."""
    items = [
        {"type": "deposit", "client": "Ann", "amount": "1"},
        {"type": "deposit", "client": "Ann", "amount": "1.001"},
        {"type": "withdrawal", "client": "Ann", "amount": 1},
        {"type": "refund", "client": "Ann", "amount": "1"},
        # A lone surrogate's escape: no text, and the item's type still clear
        {"type": "transfer", "from": "Ann", "to": "Bob", "amount": "1", "description": "\ud83d"},
    ]
    body = json.dumps({"operations": items}).encode()  # escaped: ASCII
    with running_server(tmp_path / "home") as server, server.client() as admin:
        assert admin.post("/v1/accounts", json={"client": "Ann"}).status_code == 201
        answers = []
        for _ in range(2):
            batch = admin.post(
                "/v1/batch",
                content=body,
                headers={"Idempotency-Key": "b1", "Content-Type": "application/json"},
            )
            assert batch.status_code == 200, batch.text
            answers.append(batch.json()["results"])
        single = {"client": "Ann", "amount": "1"}
        for _ in range(2):
            deposit = admin.post("/v1/deposits", json=single, headers={"Idempotency-Key": "d1"})
            assert deposit.status_code == 201
        seen = samples(httpx.get(f"{server.url}/metrics").text)
    codes = [result.get("error", {}).get("code") for result in answers[0]]
    assert codes[0] is None and None not in codes[1:], answers[0]
    counted = {
        labels: value
        for (name, labels), value in seen.items()
        if name == "kopilka_operations_total"
    }
    assert counted == {
        (("kind", "deposit"), ("result", "ok")): 2,  # the batch's first, the single one
        (("kind", "deposit"), ("result", "replayed")): 2,
        (("kind", "deposit"), ("result", codes[1])): 2,  # refused again, not replayed
        (("kind", "withdrawal"), ("result", codes[2])): 2,  # its type clear, its amount not
        (("kind", "unknown"), ("result", codes[3])): 2,
        (("kind", "transfer"), ("result", codes[4])): 2,
    }


def test_an_opening_balance_is_counted_as_a_deposit_once(tmp_path: Path) -> None:
    """Posted as a deposit, it was counted as none; given again under its key, it is a
    replay; an account opened with nothing is no deposit at all."""
    with running_server(tmp_path / "home") as server, server.client() as admin:
        opening = {"client": "Opener1", "opening_balance": "5"}
        for _ in range(2):
            opened = admin.post("/v1/accounts", json=opening, headers={"Idempotency-Key": "o1"})
            assert opened.status_code == 201, opened.text
        for client, balance in (("Plain", None), ("Zero", "0")):
            empty = {"client": client, **({"opening_balance": balance} if balance else {})}
            assert admin.post("/v1/accounts", json=empty).status_code == 201
        sandbox = {"Kopilka-Ledger": admin.post("/v1/sandboxes").json()["ledger"]}
        assert admin.post("/v1/accounts", json=opening, headers=sandbox).status_code == 201
        seen = samples(httpx.get(f"{server.url}/metrics").text)
    counted = {
        (name, labels): value
        for (name, labels), value in seen.items()
        if name.endswith("operations_total")
    }
    assert counted == {
        ("kopilka_operations_total", (("kind", "deposit"), ("result", "ok"))): 1,
        ("kopilka_operations_total", (("kind", "deposit"), ("result", "replayed"))): 1,
        ("kopilka_sandbox_operations_total", (("kind", "deposit"), ("result", "ok"))): 1,
    }


@pytest.mark.postgres
def test_metrics_count_the_items_of_a_batch_refused_whole(
    tmp_path: Path, postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    """The database away, a batch is answered 503: its items went uncounted, so an alert
    on store_unavailable never fired for an import."""
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to stop")
    items = [{"type": "deposit", "client": "Ann", "amount": "1"}] * 3
    with running_server(tmp_path / "home", postgres_url) as server, server.client() as admin:
        assert admin.post("/v1/accounts", json={"client": "Ann"}).status_code == 201
        # At once: a stop that took past the token's second in the cache (a loaded
        # machine) had the batch refused while its token was read, before any item.
        postgres_server.stop("kill")
        try:
            batch = admin.post("/v1/batch", json={"operations": items})
        finally:
            postgres_server.start()
        assert batch.status_code == 503, batch.text
        seen = samples(httpx.get(f"{server.url}/metrics").text)
    key = ("kopilka_operations_total", (("kind", "deposit"), ("result", "store_unavailable")))
    assert seen[key] == 3


def test_a_sandbox_s_operations_are_counted_apart_from_the_bank_s(tmp_path: Path) -> None:
    """A sandbox is a test ledger, and any token may make one: its money counted as the
    bank's let a client token inflate the business figures by thousands a request."""
    with running_server(tmp_path / "home") as server, server.client() as admin:
        opened = admin.post(
            "/v1/deposits", json={"client": "Ann", "amount": "1", "open_account": True}
        )
        assert opened.status_code == 201
        sandbox = {"Kopilka-Ledger": admin.post("/v1/sandboxes").json()["ledger"]}
        deposit = {"client": "Sandy", "amount": "5", "open_account": True}
        assert admin.post("/v1/deposits", json=deposit, headers=sandbox).status_code == 201
        batch = {"operations": [{"type": "deposit", "client": "Sandy", "amount": "1"}] * 4}
        assert admin.post("/v1/batch", json=batch, headers=sandbox).status_code == 200
        seen = samples(httpx.get(f"{server.url}/metrics").text)
    deposits = (("kind", "deposit"), ("result", "ok"))
    assert seen[("kopilka_operations_total", deposits)] == 1
    assert seen[("kopilka_sandbox_operations_total", deposits)] == 5


def test_requests_refused_for_a_sandbox_are_counted_as_the_sandbox_s(tmp_path: Path) -> None:
    """Sent to a sandbox dropped, or to another token's: they went to the bank's counts, so
    that any token could raise its error rates by sending them."""
    with running_server(tmp_path / "home") as server, server.client() as admin:
        sandbox = admin.post("/v1/sandboxes").json()["ledger"]
        assert admin.delete(f"/v1/sandboxes/{sandbox}").status_code == 204
        deposit = {"client": "Sandy", "amount": "5", "open_account": True}
        for _ in range(3):
            sent = admin.post("/v1/deposits", json=deposit, headers={"Kopilka-Ledger": sandbox})
            assert sent.json()["error"]["code"] == "sandbox_not_found", sent.text
        seen = samples(httpx.get(f"{server.url}/metrics").text)
    refused = (("kind", "deposit"), ("result", "sandbox_not_found"))
    assert seen.get(("kopilka_operations_total", refused), 0) == 0
    assert seen[("kopilka_sandbox_operations_total", refused)] == 3


def test_a_batch_refused_whole_for_its_body_is_counted_as_refused_once(tmp_path: Path) -> None:
    """It was counted nowhere: an importer whose every batch failed left no trace. Once:
    one the protocol answered (a body too slow) is not counted again as the client gone
    that the app is told of then; and a sandbox's is no business of the bank's."""
    json_type = {"content-type": "application/json"}
    one = json.dumps({"operations": [{"type": "deposit", "client": "A", "amount": "1"}]})
    bodies = [
        (b"{not json", {}, "malformed_json"),
        (json.dumps({"operations": 5}).encode(), {}, "invalid_request"),
        (
            json.dumps({"operations": [{"type": "deposit"}] * 10_001}).encode(),
            {},
            "too_many_operations",
        ),
        (one.encode(), {"idempotency-key": "k" * 300}, "invalid_idempotency_key"),
    ]
    with (
        running_server(tmp_path / "home", KOPILKA_BODY_SECONDS="1") as server,
        server.client() as admin,
    ):
        for body, headers, code in bodies:
            answer = admin.post("/v1/batch", content=body, headers={**json_type, **headers})
            assert answer.json()["error"]["code"] == code, answer.text
        sandbox = admin.post("/v1/sandboxes").json()["ledger"]
        answer = admin.post(
            "/v1/batch", content=b"{not json", headers={**json_type, "kopilka-ledger": sandbox}
        )
        assert answer.status_code == 400, answer.text
        for path in (b"/v1/batch", b"/v1/deposits"):  # a body that never comes
            with socket.create_connection(("127.0.0.1", server.port)) as slow:
                slow.sendall(
                    b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                    b"Authorization: Bearer " + server.token.encode() + b"\r\n\r\n"
                )
                assert b" 408 " in slow.recv(4096).split(b"\r\n")[0]
        time.sleep(0.5)  # the app told of the client gone meanwhile
        seen = samples(httpx.get(f"{server.url}/metrics").text)
    refused = {
        labels[0][1]: n
        for (name, labels), n in seen.items()
        if name == "kopilka_refused_requests_total"
    }
    for _, _, code in bodies:
        assert refused[code] == 1, code
    assert refused["malformed_json"] == 1  # not the sandbox's: that is counted apart
    sandbox_batch = (("kind", "batch"), ("result", "malformed_json"))
    assert seen[("kopilka_sandbox_operations_total", sandbox_batch)] == 1
    assert refused["request_timeout"] == 2  # the batch's and the deposit's, once each
    assert refused.get("disconnected", 0) == 0
    gone = (("kind", "deposit"), ("result", "disconnected"))
    assert seen.get(("kopilka_operations_total", gone), 0) == 0


def test_a_batch_refused_before_its_body_is_read_is_counted_as_refused(tmp_path: Path) -> None:
    """For its ledger (another's, a sandbox gone) or a query it may not take: counted
    nowhere, so a probe of ledgers by batch, or an outage met by batch, left no trace."""
    batch = {"operations": [{"type": "deposit", "client": "Ann", "amount": "1"}]}
    with running_server(tmp_path / "home") as server, server.client() as admin:
        made = admin.post("/v1/tokens", json={"role": "teller"})
        assert made.status_code == 201, made.text
        teller = {"Authorization": f"Bearer {made.json()['secret']}"}
        other = {**teller, "Kopilka-Ledger": "other"}
        sent = httpx.post(f"{server.url}/v1/batch", json=batch, headers=other)
        assert sent.status_code == 403, sent.text
        assert admin.post("/v1/batch?x=1", json=batch).status_code == 422
        sandbox = admin.post("/v1/sandboxes").json()["ledger"]
        assert admin.delete(f"/v1/sandboxes/{sandbox}").status_code == 204
        sent = admin.post("/v1/batch", json=batch, headers={"Kopilka-Ledger": sandbox})
        assert sent.json()["error"]["code"] == "sandbox_not_found", sent.text
        seen = samples(admin.get("/metrics").text)
    refused = "kopilka_refused_requests_total"
    assert seen[(refused, (("code", "forbidden"),))] == 1
    assert seen[(refused, (("code", "invalid_request"),))] == 1
    gone = (("kind", "batch"), ("result", "sandbox_not_found"))
    assert seen[("kopilka_sandbox_operations_total", gone)] == 1
    assert seen.get((refused, (("code", "sandbox_not_found"),)), 0) == 0
    assert not [key for key in seen if key[0] == "kopilka_operations_total"], seen


def test_requests_refused_for_their_token_are_counted_on_every_route(tmp_path: Path) -> None:
    """Someone guessing tokens against the token API left no trace: only the three money
    routes counted a refusal, as an operation's result."""
    guessed = {"Authorization": "Bearer kop_0123456789abcdef_guess"}
    with running_server(tmp_path / "home") as server:
        for path in ("/v1/accounts/Ann", "/v1/tokens", "/v1/whoami"):
            assert httpx.get(f"{server.url}{path}", headers=guessed).status_code == 401
        body = {"client": "Ann", "amount": "1"}
        refused = httpx.post(f"{server.url}/v1/deposits", json=body, headers=guessed)
        assert refused.status_code == 401
        assert httpx.get(f"{server.url}/v1/accounts/Ann").status_code == 401  # no token
        seen = samples(httpx.get(f"{server.url}/metrics").text)
    assert seen[("kopilka_refused_requests_total", (("code", "unauthorized"),))] == 5
    # Not as an operation too: one refusal was two in the counts, one of them a deposit.
    operation = (("kind", "deposit"), ("result", "unauthorized"))
    assert seen.get(("kopilka_operations_total", operation), 0) == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/deposits", {"client": "Ann", "amount": "1", "open_account": True}),
        (
            "POST",
            "/v1/batch",
            {"operations": [{"type": "deposit", "client": "Ann", "amount": "1"}]},
        ),
        ("PATCH", "/v1/accounts/Ann", {"min_balance": "-10"}),
    ],
)
def test_a_token_revoked_while_its_body_came_is_counted_as_refused(
    tmp_path: Path, method: str, path: str, body: dict[str, object]
) -> None:
    """Refused 401 once the body was in, a deposit was counted as an operation whose
    result was `unauthorized`, and a batch or a change of limits nowhere."""
    with running_server(tmp_path / "home") as server, server.client() as admin:
        made = admin.post("/v1/tokens", json={"role": "admin"})
        assert made.status_code == 201, made.text
        token_id, secret = made.json()["id"], made.json()["secret"]
        payload = json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            connection.sendall(head.encode() + payload[:5])
            time.sleep(0.3)  # the headers are read and the token taken
            assert admin.delete(f"/v1/tokens/{token_id}").status_code == 204
            connection.sendall(payload[5:])
            answer = connection.recv(65536).decode()
        assert answer.startswith("HTTP/1.1 401 "), answer
        seen = samples(admin.get("/metrics").text)
        assert admin.get("/v1/accounts").json()["accounts"] == []  # nothing was done
    assert seen.get(("kopilka_refused_requests_total", (("code", "unauthorized"),))) == 1
    assert not [key for key in seen if key[0] == "kopilka_operations_total"], seen


def test_requests_refused_for_how_they_were_sent_are_counted_as_refused(tmp_path: Path) -> None:
    """Without any token, a header given twice or a body sent compressed were counted as
    the transfers and deposits they never were: anyone could raise those counts."""
    transfer = {"from": "Ann", "to": "Bob", "amount": "1"}
    twice = [("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    with running_server(tmp_path / "home") as server:
        sent = httpx.post(f"{server.url}/v1/transfers", json=transfer, headers=twice)
        assert sent.status_code == 400, sent.text
        gzip = {"Content-Encoding": "gzip"}
        sent = httpx.post(f"{server.url}/v1/deposits", json=transfer, headers=gzip)
        assert sent.status_code == 415, sent.text
        two_tokens = [("Authorization", "Bearer a"), ("Authorization", "Bearer b")]
        assert httpx.get(f"{server.url}/v1/whoami", headers=two_tokens).status_code == 400
        seen = samples(httpx.get(f"{server.url}/metrics").text)
    refused = "kopilka_refused_requests_total"
    assert seen[(refused, (("code", "duplicate_header"),))] == 2
    assert seen[(refused, (("code", "unsupported_encoding"),))] == 1
    assert not [key for key in seen if key[0] == "kopilka_operations_total"], seen
