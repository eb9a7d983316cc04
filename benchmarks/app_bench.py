"""The HTTP API's own cost per request: the ASGI app driven in process, no sockets.

C asyncio tasks each send one `POST /v1/transfers` at a time straight into the
app, as uvicorn would after parsing a request, over a durable SQLite file. What
this measures is everything kopilka adds to an HTTP server (headers, token,
decoding, engine, rules, SQL, encoding, metrics), without the server itself;
`benchmarks/http_bench.py` measures the two together over real connections.

  python benchmarks/app_bench.py --accounts 100 --requests 20000 --tasks 64
Prints one JSON line: requests/s, and the CPU time of the thread that runs the
app (the event loop's) per request. `benchmarks/instructions.py --workload app`
counts its instructions.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from kopilka.api.app import ADMIN_TOKEN_FILE, KopilkaApp, create_app
from kopilka.domain.model import Deposit

_keys = itertools.count()


async def _lifespan(app: KopilkaApp, event: str) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if sent:  # startup is answered: the next message ends the lifespan task
            await asyncio.Event().wait()
        return {"type": f"lifespan.{event}"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    task = asyncio.create_task(app({"type": "lifespan"}, receive, send))  # type: ignore[arg-type]
    while not sent:
        await asyncio.sleep(0.001)
    task.cancel()
    assert sent[0]["type"] == f"lifespan.{event}.complete", sent


async def _transfer(app: KopilkaApp, authorization: bytes, body: bytes) -> int:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/transfers",
        "raw_path": b"/v1/transfers",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", authorization),
            (b"content-type", b"application/json"),
            (b"idempotency-key", f"k{next(_keys):020d}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)  # type: ignore[arg-type]
    return status


async def run(arguments: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="kopilka-app-bench-") as directory:
        home = Path(directory)
        app = create_app(str(home / "kopilka.db"), admin_token_path=home / ADMIN_TOKEN_FILE)
        await _lifespan(app, "startup")
        authorization = b"Bearer " + (home / ADMIN_TOKEN_FILE).read_bytes().strip()
        clients = [f"c{index}" for index in range(arguments.accounts)]
        await app.engine.submit_many(
            [Deposit(client, 10**12, "opening", f"open-{client}") for client in clients]
        )
        rnd = random.Random(1)
        bodies = []
        for _ in range(arguments.requests):
            sender, receiver = rnd.sample(clients, 2)
            bodies.append(
                b'{"from": "%s", "to": "%s", "amount": "0.01", "description": "bench"}'
                % (sender.encode(), receiver.encode())
            )
        per_task = arguments.requests // arguments.tasks
        statuses: list[int] = []

        async def worker(index: int) -> None:
            for body in bodies[index * per_task : (index + 1) * per_task]:
                statuses.append(await _transfer(app, authorization, body))

        cpu_started, started = time.thread_time(), time.perf_counter()
        await asyncio.gather(*(worker(index) for index in range(arguments.tasks)))
        elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
        await app.engine.close()
    created = statuses.count(201)
    assert created == len(statuses), {status: statuses.count(status) for status in set(statuses)}
    return {
        "requests_per_second": round(created / elapsed),
        "loop_cpu_us_per_request": round(cpu / created * 1e6, 1),
        "requests": created,
        "accounts": arguments.accounts,
        "tasks": arguments.tasks,
        "batch_sizes": dict(sorted(app.engine.stats.size_histogram.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--tasks", type=int, default=64)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
