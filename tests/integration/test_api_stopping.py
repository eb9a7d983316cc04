"""A request the server gives up waiting for while it stops is answered, not dropped.

uvicorn cancels the requests still running when its drain time runs out; kopilka
answers each with 503 and the key that settles it, since it may yet be applied. The
app runs in process over a real SQLite file whose write lock another connection
holds, as another process would, so the deposit waits.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

from kopilka.api.admin_token import ensure_admin_token
from kopilka.api.app import create_app


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
        assert json.loads(answer["body"])["error"]["code"] == "shutting_down"
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
