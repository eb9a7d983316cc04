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


def test_a_big_batch_is_answered_before_a_young_collection_comes(tmp_path: Path) -> None:
    """A batch keeps every object of its items alive until it is answered: a young
    collection in its middle would scan them all, and a middle collection again."""
    deposits = [
        {"type": "deposit", "client": f"c{number % 50}", "amount": "1", "open_account": True}
        for number in range(4_000)
    ]
    with running_server(tmp_path) as server, server.client() as client:
        assert client.post("/v1/batch", json={"operations": deposits}).status_code == 200
        before = young_collections(client)
        for _ in range(5):
            answer = client.post("/v1/batch", json={"operations": deposits})
            assert answer.status_code == 200, answer.text
        assert young_collections(client) - before <= 1
