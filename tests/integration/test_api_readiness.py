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
from tests.small_disk import fill, small_disk

from kopilka.api.app import KopilkaApp, create_app
from kopilka.api.readiness import Readiness


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


async def test_a_server_whose_disk_is_full_is_not_ready_until_there_is_room(
    tmp_path: Path,
) -> None:
    """Every write fails on a full disk ("database or disk is full"), while the reads a
    readiness check makes answer: it said ready, and a load balancer kept sending it
    writes."""
    with small_disk(tmp_path / "small", size="4m") as disk:
        app = create_app(str(disk / "kopilka.db"))
        app.readiness = Readiness(app.engine, interval_seconds=0)
        await app.start()
        try:
            assert (await _get(app, "/v1/ready")).status_code == 200
            filler = fill(disk)
            full = await _get(app, "/v1/ready")
            assert (full.status_code, full.json()["error"]["code"]) == (503, "store_unavailable")
            assert full.json()["error"]["message"] == (
                "the disk the database is on has less than 1 MiB free: writes fail or soon will"
            )
            filler.unlink()
            assert (await _get(app, "/v1/ready")).status_code == 200
        finally:
            await app.engine.close()
