"""`GET /v1/ready` says whether to send this server traffic; `/v1/health` that it lives.

The app runs in process over a real SQLite file, called through ASGI. A database that
does not answer is PostgreSQL's case: test_postgres_server_restart.py stops one under
load and probes both while it is away and once it is back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kopilka.api.app import KopilkaApp, create_app


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[KopilkaApp]:
    app = create_app(str(tmp_path / "kopilka.db"))
    await app.start()
    try:
        yield app
    finally:
        await app.engine.close()


async def _get(app: KopilkaApp, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kopilka") as http:
        return await http.get(path)


async def test_a_running_server_is_ready_without_a_token(app: KopilkaApp) -> None:
    ready = await _get(app, "/v1/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "engine": "running"}


async def test_a_server_shutting_down_is_not_ready(app: KopilkaApp) -> None:
    await app.engine.close()
    ready = await _get(app, "/v1/ready")
    assert (ready.status_code, ready.json()["error"]["code"]) == (503, "shutting_down")
