"""Closed-loop HTTP load on kopilka: keep-alive connections, one request in flight each.

Reports operations/s and p50/p99/p99.9 latency as one JSON line, plus the
server's batch-size histogram from /metrics (group commit at work).

Examples:
  python benchmarks/load.py --url http://127.0.0.1:8888 --setup --accounts 100
  python benchmarks/load.py --url http://127.0.0.1:8888 --connections 64 --seconds 10
  python benchmarks/load.py --url http://127.0.0.1:8888 --batch 1000 --connections 4

The token comes from --token, KOPILKA_TOKEN, or KOPILKA_HOME/admin.token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kopilka.home import home


@dataclass
class Results:
    latencies_seconds: list[float] = field(default_factory=list)
    operations: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        body += (await reader.readexactly(size + 2))[:-2]
        if size == 0:
            return status, body


def _request(host: str, token: str, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nIdempotency-Key: {uuid.uuid4().hex}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _body(accounts: list[str], batch: int) -> tuple[str, bytes, int]:
    """A request: one transfer, or a batch of `batch` transfers."""
    if batch <= 1:
        source, target = random.sample(accounts, 2)
        body = {"from": source, "to": target, "amount": "0.01", "description": "load"}
        return "/v1/transfers", json.dumps(body).encode(), 1
    operations = []
    for _ in range(batch):
        source, target = random.sample(accounts, 2)
        operations.append(
            {
                "type": "transfer",
                "from": source,
                "to": target,
                "amount": "0.01",
                "description": "load",
            }
        )
    return "/v1/batch", json.dumps({"operations": operations}).encode(), batch


async def _connection(
    arguments: argparse.Namespace, accounts: list[str], stop: float, results: Results
) -> None:
    parts = urlsplit(arguments.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    # Bodies are made up front and reused (each request still has its own key, so batch
    # items get their own keys too): the generator must spend its CPU on sending.
    bodies = [_body(accounts, arguments.batch) for _ in range(16)]
    try:
        while time.perf_counter() < stop:
            path, body, count = random.choice(bodies)
            started = time.perf_counter()
            writer.write(_request(host, arguments.token, path, body))
            await writer.drain()
            status, answer = await _read_answer(reader)
            results.latencies_seconds.append(time.perf_counter() - started)
            results.statuses[status] = results.statuses.get(status, 0) + 1
            if status in (200, 201):
                # A batch answers 200 with a result per operation; count the applied ones.
                results.operations += answer.count(b'"status":201') if count > 1 else 1
    except (ConnectionError, asyncio.IncompleteReadError) as error:
        results.errors.append(repr(error))
    finally:
        writer.close()


def _quantile(sorted_values: list[float], quantile: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(quantile * len(sorted_values)))
    return round(sorted_values[index] * 1000, 2)


def batch_sizes(url: str) -> dict[str, float]:
    """Cumulative batch-size buckets from the server's /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("kopilka_batch_size_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[bound] = float(line.rsplit(" ", 1)[1])
    return buckets


def _setup(arguments: argparse.Namespace, accounts: list[str]) -> None:
    """Open and fund every account with a big balance, in batch requests of 5,000."""
    for start in range(0, len(accounts), 5_000):
        operations = [
            {
                "type": "deposit",
                "client": name,
                "amount": "1000000000",
                "open_account": True,
                "idempotency_key": f"load-setup-{name}",
            }
            for name in accounts[start : start + 5_000]
        ]
        request = urllib.request.Request(
            f"{arguments.url}/v1/batch",
            data=json.dumps({"operations": operations}).encode(),
            headers={
                "Authorization": f"Bearer {arguments.token}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=120) as answer:
            assert answer.status == 200


async def run(arguments: argparse.Namespace) -> dict[str, object]:
    accounts = [f"c{index}" for index in range(arguments.accounts)]
    if arguments.setup:
        _setup(arguments, accounts)
    before = batch_sizes(arguments.url)
    results = Results()
    started = time.perf_counter()
    stop = started + arguments.seconds
    await asyncio.gather(
        *(_connection(arguments, accounts, stop, results) for _ in range(arguments.connections))
    )
    elapsed = time.perf_counter() - started
    after = batch_sizes(arguments.url)
    latencies = sorted(results.latencies_seconds)
    return {
        "url": arguments.url,
        "mode": "batch" if arguments.batch > 1 else "transfer",
        "batch": arguments.batch,
        "connections": arguments.connections,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "operations": results.operations,
        "operations_per_second": round(results.operations / elapsed),
        "p50_ms": _quantile(latencies, 0.5),
        "p99_ms": _quantile(latencies, 0.99),
        "p999_ms": _quantile(latencies, 0.999),
        "statuses": results.statuses,
        "errors": results.errors[:3],
        # Batches committed during this run, by size bucket (cumulative, as Prometheus has it).
        "server_batch_sizes": {bound: after[bound] - before.get(bound, 0) for bound in after},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8888")
    parser.add_argument("--token")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1, help="transfers per request")
    parser.add_argument("--setup", action="store_true", help="open and fund the accounts")
    arguments = parser.parse_args()
    arguments.url = arguments.url.rstrip("/")
    arguments.token = (
        arguments.token
        or os.environ.get("KOPILKA_TOKEN")
        or (home() / "admin.token").read_text().strip()
    )
    try:
        import uvloop  # the generator must cost less than the server it measures

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(arguments))))


if __name__ == "__main__":
    main()
