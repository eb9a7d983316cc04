"""GET /metrics: operations by kind and result, batch sizes, latency, read as Prometheus does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.kopilka_server import running_server

from kopilka.domain.model import Deposit, Operation
from kopilka.engine import Engine
from kopilka.store.postgres import PostgresStore


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


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
    assert seen[("kopilka_batch_size_sum", ())] == 8  # and the claim of the batch's key
    assert seen[("kopilka_batch_size_bucket", (("le", "4"),))] == batches
    assert 4 <= batches <= 6
    assert seen[("kopilka_request_seconds_count", (("kind", "transfer"),))] == 1
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
