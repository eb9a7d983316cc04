"""`serve --workers 2`: whichever worker answers a scrape, /metrics gives the whole
server's numbers, and a counter never goes down, not even when a worker is killed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import httpx
from tests.kopilka_server import (
    RawConnection,
    ServerProcess,
    metrics_directory_of,
    running_server,
    workers_of,
)
from tests.metric_samples import Samples, samples

CONNECTIONS = 4  # opened at once: the two workers take them in turn
DEPOSITS_PER_CONNECTION = 30
WITHDRAWALS_PER_CONNECTION = 10
REFUSED_PER_CONNECTION = 2
SCRAPES = 40
LOAD_ROUNDS = 25  # a few seconds: several snapshots of each worker while it runs
SUMS_SECONDS_MAX = 10.0  # another worker's counts reach a scrape within about a second


def _scrape(server: ServerProcess) -> Samples:
    """One scrape on a connection of its own, as Prometheus makes them."""
    answer = httpx.get(f"{server.url}/metrics", headers={"Connection": "close"})
    assert answer.status_code == 200, answer.text
    return samples(answer.text)


async def _scrape_beside(server: ServerProcess) -> Samples:
    """As `_scrape`, on the event loop that runs the load (a thread of its own would take
    turns with it for the interpreter, and hold it up)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = await reader.read()  # to the end: the server closes it
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return samples(body.decode())


def _operations(seen: Samples, kind: str, result: str) -> float:
    return seen.get(("kopilka_operations_total", (("kind", kind), ("result", result))), 0)


async def _work(server: ServerProcess, client: str, rounds: int) -> None:
    async with RawConnection(server) as connection:
        for _ in range(rounds):
            for _ in range(DEPOSITS_PER_CONNECTION):
                body = {"client": client, "amount": "2", "description": "d", "open_account": True}
                status, _, _ = await connection.request("POST", "/v1/deposits", body)
                assert status == 201
            for _ in range(WITHDRAWALS_PER_CONNECTION):
                body = {"client": client, "amount": "1", "description": "w"}
                status, _, _ = await connection.request("POST", "/v1/withdrawals", body)
                assert status == 201
            for _ in range(REFUSED_PER_CONNECTION):
                body = {"client": client, "amount": "1000000", "description": "w"}
                status, _, _ = await connection.request("POST", "/v1/withdrawals", body)
                assert status == 422


async def _load_beside(server: ServerProcess, rounds: int = 1, prefix: str = "c") -> None:
    """Known numbers of operations, on connections opened together (so on both workers)."""
    await asyncio.gather(
        *(_work(server, f"{prefix}{index}", rounds) for index in range(CONNECTIONS))
    )


def _load(server: ServerProcess, rounds: int = 1, prefix: str = "c") -> None:
    asyncio.run(_load_beside(server, rounds, prefix))


def _expected(rounds: int) -> dict[tuple[str, str], float]:
    return {
        ("deposit", "ok"): CONNECTIONS * DEPOSITS_PER_CONNECTION * rounds,
        ("withdrawal", "ok"): CONNECTIONS * WITHDRAWALS_PER_CONNECTION * rounds,
        ("withdrawal", "insufficient_funds"): CONNECTIONS * REFUSED_PER_CONNECTION * rounds,
    }


def _totals(seen: Samples) -> dict[tuple[str, str], float]:
    return {
        (kind, result): _operations(seen, kind, result)
        for kind, result in (
            ("deposit", "ok"),
            ("withdrawal", "ok"),
            ("withdrawal", "insufficient_funds"),
        )
    }


def _scrape_until(server: ServerProcess, expected: dict[tuple[str, str], float]) -> Samples:
    deadline = time.monotonic() + SUMS_SECONDS_MAX
    while True:
        seen = _scrape(server)
        if _totals(seen) == expected:
            return seen
        assert time.monotonic() < deadline, f"scrapes show {_totals(seen)}, not {expected}"
        time.sleep(0.1)


def _counters(seen: Samples) -> Samples:
    """Every sample that only counts up (not a gauge)."""
    return {
        key: value
        for key, value in seen.items()
        if key[0].endswith(("_total", "_bucket", "_count", "_sum"))
    }


def _went_down(before: Samples, after: Samples) -> list[str]:
    return [
        f"{name}{dict(labels)}: {value} then {after.get((name, labels))}"
        for (name, labels), value in _counters(before).items()
        if after.get((name, labels), -1.0) < value
    ]


def test_every_scrape_answers_the_whole_servers_counts(tmp_path: Path) -> None:
    with running_server(tmp_path / "home", workers=2) as server:
        assert server.process is not None
        _load(server)
        expected = _expected(1)
        first = _scrape_until(server, expected)
        batches = first[("kopilka_engine_batches_total", ())]
        for _ in range(SCRAPES):
            seen = _scrape(server)
            assert _totals(seen) == expected
            deposits = expected["deposit", "ok"]
            assert seen[("kopilka_request_seconds_count", (("kind", "deposit"),))] == deposits
            assert seen[("kopilka_batch_size_sum", ())] == sum(expected.values())
            assert seen[("kopilka_batch_size_count", ())] == batches
            assert seen[("kopilka_engine_batches_total", ())] == batches
            # A gauge is no sum: the slowest worker's, one sample.
            assert 0 < seen[("kopilka_sqlite_commit_seconds", ())] < 5
            assert len([key for key in seen if key[0] == "kopilka_sqlite_commit_seconds"]) == 1
        # Private to the server's user, and gone with the server.
        directory = metrics_directory_of(workers_of(server.process.pid)[0])
        assert directory.stat().st_mode & 0o777 == 0o700
        assert len(list(directory.glob("*.snapshot"))) == 2
        assert server.stop() == 0
    assert not directory.exists()


def test_a_scrape_of_counts_that_cannot_be_read_is_a_500_said_once_in_the_log(
    tmp_path: Path,
) -> None:
    """The workers' directory removed under the server: every scrape logged a traceback."""
    with running_server(tmp_path / "home", workers=2) as server:
        assert server.process is not None
        directory = metrics_directory_of(workers_of(server.process.pid)[0])
        deadline = time.monotonic() + 10
        while os.path.lexists(directory):
            # A worker may write its snapshot into it as it is removed: "not empty".
            shutil.rmtree(directory, ignore_errors=True)
            assert time.monotonic() < deadline, "the directory could not be removed"
        for _ in range(4):
            answer = httpx.get(f"{server.url}/metrics", timeout=10)
            assert answer.status_code == 500
            assert answer.json()["error"]["code"] == "metrics_unavailable"
        assert server.stop() == 0
    assert "Traceback" not in server.errors, server.errors
    told = [line for line in server.errors.splitlines() if "metrics cannot be read" in line]
    assert 1 <= len(told) <= 2, server.errors  # once in each worker that took a scrape


def test_counters_never_go_down_between_scrapes_while_load_runs(tmp_path: Path) -> None:
    with running_server(tmp_path / "home", workers=2) as server:
        deposits_seen_while_loading = asyncio.run(_scrape_while_loading(server))
        assert len(deposits_seen_while_loading) >= 3  # scraped while the counts grew
        _scrape_until(server, _expected(LOAD_ROUNDS))
        assert server.stop() == 0


async def _scrape_while_loading(server: ServerProcess) -> set[float]:
    """Scrapes one after another while the load runs, each checked against the one before:
    the deposits each showed while it ran."""
    loading = asyncio.create_task(_load_beside(server, LOAD_ROUNDS))
    deposits: set[float] = set()
    try:
        previous = await _scrape_beside(server)
        scrapes = 0
        while not loading.done() or scrapes < SCRAPES:
            seen = await _scrape_beside(server)
            assert _went_down(previous, seen) == []
            if not loading.done():
                deposits.add(_operations(seen, "deposit", "ok"))
            previous, scrapes = seen, scrapes + 1
    finally:
        await loading
    return deposits


def test_a_killed_worker_leaves_what_it_counted_in_the_sums(tmp_path: Path) -> None:
    with running_server(tmp_path / "home", workers=2) as server:
        assert server.process is not None
        _load(server)
        before = _scrape_until(server, _expected(1))
        parent = server.process.pid
        killed = workers_of(parent)[0]
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while len(now := workers_of(parent)) != 2 or killed in now:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        for _ in range(SCRAPES):
            seen = _scrape(server)
            assert _totals(seen) == _expected(1)
            assert _went_down(before, seen) == []
            before = seen
        # The worker started in its place counts on top of what the killed one had.
        _load(server, prefix="again")
        _scrape_until(server, _expected(2))
        assert server.stop() == 0
