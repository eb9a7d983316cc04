"""A request the server gives up waiting for while it stops is answered, not dropped.

uvicorn cancels the requests still running when its drain time runs out; kopilka
answers each with 503 and the key that settles it, since it may yet be applied. The
app runs in process over a real SQLite file whose write lock another connection
holds, as another process would, so the deposit waits.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from kopilka.api.admin_token import ensure_admin_token
from kopilka.api.app import create_app
from kopilka.errors import KopilkaError
from kopilka.limits import Limits
from kopilka.store import sqlite as sqlite_store


async def test_a_write_cancelled_while_it_waits_gets_503_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "kopilka.db"
    app = create_app(str(path))
    await app.start()
    try:
        await ensure_admin_token(app.store, tmp_path / "admin.token")
        token = (tmp_path / "admin.token").read_text().strip()
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://k")
        async with http:
            opened = await http.post(
                "/v1/deposits",
                json={"client": "Ann", "amount": "1", "open_account": True},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert opened.status_code == 201
        sent: list[dict[str, Any]] = []
        body = json.dumps({"client": "Ann", "amount": "5"}).encode()
        with closing(sqlite3.connect(path, isolation_level=None)) as other_process:
            other_process.execute("BEGIN IMMEDIATE")  # the deposit now waits for it
            request = asyncio.create_task(app(_scope(token), _receive(body), _collect(sent)))
            await asyncio.sleep(0.5)
            assert not request.done()
            request.cancel()  # as uvicorn does once its drain time has run out
            await request
            other_process.execute("ROLLBACK")
        start, answer = sent
        headers = dict(start["headers"])
        assert start["status"] == 503
        assert json.loads(answer["body"])["error"]["code"] == "outcome_unknown"
        key = headers[b"idempotency-key"].decode()
        # It went on and was applied: the key settles it, once.
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://k"
        ) as http:
            retried = await http.post(
                "/v1/deposits",
                json={"client": "Ann", "amount": "5"},
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            )
            assert retried.status_code == 201
            account = await http.get(
                "/v1/accounts/Ann", headers={"Authorization": f"Bearer {token}"}
            )
            assert account.json()["balance"] == "6.00"
    finally:
        await app.engine.close()


def _scope(token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/deposits",
        "raw_path": b"/v1/deposits",
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
        ],
    }


def _receive(body: bytes) -> Any:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _collect(sent: list[dict[str, Any]]) -> Any:
    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return send


def _statement_scope(token: str) -> dict[str, Any]:
    path = "/v1/accounts/Ann/statement"
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
    }


async def app_with_ann(tmp_path: Path, limits: Limits | None = None) -> tuple[Any, str]:
    """The app over a SQLite file in `tmp_path`, Ann's account opened with $1; its token."""
    app = create_app(str(tmp_path / "kopilka.db"), limits=limits)
    await app.start()
    await ensure_admin_token(app.store, tmp_path / "admin.token")
    token = (tmp_path / "admin.token").read_text().strip()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://k"
    ) as http:
        opened = await http.post(
            "/v1/deposits",
            json={"client": "Ann", "amount": "1", "open_account": True},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert opened.status_code == 201
    return app, token


def _hold_the_write_lock(tmp_path: Path) -> int:
    """The writer lock file held as another process's batch holds it."""
    descriptor = os.open(tmp_path / "kopilka.db-writer.lock", os.O_RDWR)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    return descriptor


async def _cancelled_while_it_waits(
    app: Any, tmp_path: Path, scope: dict[str, Any], body: bytes = b""
) -> object:
    """The error a request is answered with when uvicorn cancels it (its drain time run
    out) while it waits for the write lock another batch holds."""
    held = _hold_the_write_lock(tmp_path)
    sent: list[dict[str, Any]] = []
    request = asyncio.create_task(app(scope, _receive(body), _collect(sent)))
    await asyncio.sleep(0.3)
    assert not request.done()  # it waits for the batch holding the lock
    request.cancel()
    await request
    os.close(held)
    start, answer = sent
    assert start["status"] == 503
    return json.loads(answer["body"])["error"]


async def test_a_statement_cancelled_while_it_waits_is_told_to_try_again(tmp_path: Path) -> None:
    """A read applies nothing: no key to settle it, and no "may have been applied"."""
    app, token = await app_with_ann(tmp_path)
    try:
        assert await _cancelled_while_it_waits(app, tmp_path, _statement_scope(token)) == {
            "code": "shutting_down",
            "message": "the server stopped before this was answered; try again",
        }
    finally:
        await app.engine.close()


async def test_a_write_without_a_key_cancelled_is_told_to_look_not_to_retry(
    tmp_path: Path,
) -> None:
    """Limits (or a token, a sandbox) take no key: repeated, they would apply again."""
    app, token = await app_with_ann(tmp_path)
    try:
        path = "/v1/accounts/Ann"
        scope = {
            **_statement_scope(token),
            "method": "PATCH",
            "path": path,
            "raw_path": path.encode(),
        }
        body = json.dumps({"max_balance": "100"}).encode()
        assert await _cancelled_while_it_waits(app, tmp_path, scope, body) == {
            "code": "outcome_unknown",
            "message": "the server stopped before this was answered; whether this was applied"
            " is not known: look before repeating it",
        }
    finally:
        await app.engine.close()


async def test_statements_wait_for_the_write_lock_no_longer_than_a_writer_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many at once, each for at most the writer's busy timeout (shortened here), none
    queued behind another."""
    monkeypatch.setattr(sqlite_store, "_BUSY_TIMEOUT_MS", 300)
    app, token = await app_with_ann(tmp_path)
    try:
        held = _hold_the_write_lock(tmp_path)
        started = time.monotonic()
        answers: list[list[dict[str, Any]]] = [[] for _ in range(12)]
        ended: list[float] = []

        async def read(sent: list[dict[str, Any]]) -> None:
            await app(_statement_scope(token), _receive(b""), _collect(sent))
            ended.append(time.monotonic() - started)

        await asyncio.gather(*(read(sent) for sent in answers))
        assert max(ended) < 0.3 + 0.2, ended  # every one, not only the first few
        for start, answer in answers:
            assert start["status"] == 503
            assert json.loads(answer["body"])["error"]["code"] == "store_busy"
        os.close(held)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://k"
        ) as http:
            read = await http.get(
                "/v1/accounts/Ann/statement", headers={"Authorization": f"Bearer {token}"}
            )
            assert read.status_code == 200
    finally:
        await app.engine.close()


async def test_a_batch_refused_as_busy_gives_the_key_to_resend_under(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch sent without a key that met a busy store (503): the answer's
    Idempotency-Key header is the key the server made, under which a resend applies
    it, once (docs/api.md)."""
    monkeypatch.setattr(sqlite_store, "_BUSY_TIMEOUT_MS", 300)
    app, token = await app_with_ann(tmp_path)
    auth = {"Authorization": f"Bearer {token}"}
    batch = {"operations": [{"type": "deposit", "client": "Ann", "amount": "2"}] * 3}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://k"
        ) as http:
            held = _hold_the_write_lock(tmp_path)
            try:
                busy = await http.post("/v1/batch", json=batch, headers=auth)
            finally:
                os.close(held)
            assert busy.status_code == 503, busy.text
            assert busy.json()["error"]["code"] == "store_busy"
            key = busy.headers["idempotency-key"]
            await assert_resent_once(http, batch, auth, key, "7.00")  # 1 + 3 x 2
    finally:
        await app.engine.close()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/accounts", {"client": "Bea"}),
        ("PATCH", "/v1/accounts/Ann", {"max_balance": "100.00"}),
    ],
)
async def test_an_account_write_refused_as_busy_gives_back_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, path: str, body: dict[str, Any]
) -> None:
    """A keyed opening or limits change that met a busy store (503) is answered with
    its key, as a money write and a batch are, and as the API's document says."""
    monkeypatch.setattr(sqlite_store, "_BUSY_TIMEOUT_MS", 300)
    app, token = await app_with_ann(tmp_path)
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "account-1"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://k"
        ) as http:
            held = _hold_the_write_lock(tmp_path)
            try:
                busy = await http.request(method, path, json=body, headers=headers)
            finally:
                os.close(held)
            assert busy.status_code == 503, busy.text
            assert busy.json()["error"]["code"] == "store_busy"
            assert busy.headers["idempotency-key"] == "account-1"
            again = await http.request(method, path, json=body, headers=headers)
            assert again.status_code in (200, 201), again.text
    finally:
        await app.engine.close()


async def assert_resent_once(
    http: httpx.AsyncClient, batch: dict[str, Any], auth: dict[str, str], key: str, balance: str
) -> None:
    """`batch` resent twice under `key`: each item applied, and once, Ann's balance then
    `balance`."""
    items = len(batch["operations"])
    for _ in range(2):
        resent = await http.post("/v1/batch", json=batch, headers={**auth, "Idempotency-Key": key})
        assert [r["status"] for r in resent.json()["results"]] == [201] * items
    account = await http.get("/v1/accounts/Ann", headers=auth)
    assert account.json()["balance"] == balance


@pytest.mark.parametrize("holder", ["another program", "another kopilka process"])
def test_a_write_waits_once_for_a_lock_held_elsewhere_then_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, holder: str
) -> None:
    """Eight tries of the busy timeout each kept a caller over a minute, past its
    client's timeout, to be applied after that had given up."""
    import sqlite3

    from kopilka.bank import EmbeddedBank

    monkeypatch.setattr(sqlite_store, "_BUSY_TIMEOUT_MS", 300)
    path = tmp_path / "kopilka.db"
    with EmbeddedBank(str(path)) as bank:
        bank.deposit("Ann", 100, "open", "k0")
        if holder == "another program":
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            release = other.close
        else:
            held = _hold_the_write_lock(tmp_path)
            release = lambda: os.close(held)  # noqa: E731
        started = time.monotonic()
        with pytest.raises(KopilkaError) as refused:
            bank.deposit("Ann", 100, "pay", "k1")
        took = time.monotonic() - started
        release()
        assert took < 0.3 * 2, took
        assert refused.value.code == "store_busy"
        waited = (
            "another program has held its write lock for over 0.3 s"
            if holder == "another program"
            else "this write waited over 0.3 s for its turn behind other writers"
        )
        assert refused.value.message == f"the database is busy: {waited}; nothing was changed"
        assert bank.account("Ann").balance_cents == 100  # nothing applied, then or later
        bank.deposit("Ann", 100, "pay", "k1")  # and the retry goes through
        assert bank.account("Ann").balance_cents == 200
