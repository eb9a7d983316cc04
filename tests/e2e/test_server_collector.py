"""A serving process keeps the garbage collector out of the way: its young collections
are rare under load, and /metrics shows how often each generation ran."""

from __future__ import annotations

from pathlib import Path

import httpx
from tests.kopilka_server import running_server

REQUESTS = 1_500


def young_collections(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('python_gc_collections_total{generation="0"}'):
            return float(line.split()[-1])
    raise AssertionError("/metrics has no python_gc_collections_total for generation 0")


def test_young_collections_are_rare_under_load(tmp_path: Path) -> None:
    with running_server(tmp_path, "memory:") as server, server.client() as client:
        opened = client.post(
            "/v1/batch",
            json={
                "operations": [
                    {"type": "deposit", "client": "Ann", "amount": "1", "open_account": True}
                ]
            },
        )
        assert opened.status_code == 200, opened.text
        before = young_collections(client)
        for _ in range(REQUESTS):
            answer = client.post(
                "/v1/deposits", json={"client": "Ann", "amount": "1.00", "description": "gc"}
            )
            assert answer.status_code == 201, answer.text
        # CPython's default threshold (700 net allocations) collects about every hundred
        # requests here; the server's own, about every few thousand.
        assert young_collections(client) - before <= 1
