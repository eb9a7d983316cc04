"""The HTTP API's own cost per request: the ASGI app driven in process, no sockets.

C asyncio tasks each send one `POST /v1/transfers` (or, with `--batch N`, one
`POST /v1/batch` of N transfers) at a time straight into the app, as uvicorn
would after parsing a request, over a durable SQLite file. What
this measures is everything kopilka adds to an HTTP server (headers, token,
decoding, engine, rules, SQL, encoding, metrics), without the server itself;
`benchmarks/http_bench.py` measures the two together over real connections.

  python benchmarks/app_bench.py --accounts 100 --requests 20000 --tasks 64
  python benchmarks/app_bench.py --batch 1000 --requests 40 --tasks 4
Prints one JSON line: transfers/s, and the CPU time of the thread that runs the
app (the event loop's) per transfer. `benchmarks/instructions.py --workload app`
counts its instructions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kopilka.api.app import KopilkaApp, create_app
from kopilka.domain.model import Deposit
from kopilka.home import ADMIN_TOKEN_FILE

_keys = itertools.count()


@contextlib.asynccontextmanager
async def _lifespan(app: KopilkaApp) -> AsyncIterator[None]:
    """Start and stop the app through its ASGI lifespan, as uvicorn does."""
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    received.put_nowait({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan"}, received.get, sent.put))  # type: ignore[arg-type]
    assert (await sent.get())["type"] == "lifespan.startup.complete"
    yield
    received.put_nowait({"type": "lifespan.shutdown"})
    assert (await sent.get())["type"] == "lifespan.shutdown.complete"
    await task


async def _post(app: KopilkaApp, authorization: bytes, path: str, body: bytes) -> int:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
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
        async with _lifespan(app):
            authorization = b"Bearer " + (home / ADMIN_TOKEN_FILE).read_bytes().strip()
            clients = [f"c{index}" for index in range(arguments.accounts)]
            await app.engine.submit_many(
                [Deposit(client, 10**12, "opening", f"open-{client}") for client in clients]
            )
            rnd = random.Random(1)

            def transfer() -> bytes:
                sender, receiver = rnd.sample(clients, 2)
                return b'{"from": "%s", "to": "%s", "amount": "0.01", "description": "bench"}' % (
                    sender.encode(),
                    receiver.encode(),
                )

            if arguments.batch:
                path = "/v1/batch"
                bodies = [
                    b'{"operations": [%s]}'
                    % b", ".join(
                        b'{"type": "transfer", ' + transfer()[1:] for _ in range(arguments.batch)
                    )
                    for _ in range(arguments.requests)
                ]
            else:
                path = "/v1/transfers"
                bodies = [transfer() for _ in range(arguments.requests)]
            per_task = arguments.requests // arguments.tasks
            statuses: list[int] = []

            async def worker(index: int) -> None:
                for body in bodies[index * per_task : (index + 1) * per_task]:
                    statuses.append(await _post(app, authorization, path, body))

            cpu_started, started = time.thread_time(), time.perf_counter()
            await asyncio.gather(*(worker(index) for index in range(arguments.tasks)))
            elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
    answered = statuses.count(200 if arguments.batch else 201)
    assert answered == len(statuses), {status: statuses.count(status) for status in set(statuses)}
    transfers = answered * (arguments.batch or 1)
    return {
        "transfers_per_second": round(transfers / elapsed),
        "loop_cpu_us_per_transfer": round(cpu / transfers * 1e6, 1),
        "requests": answered,
        "accounts": arguments.accounts,
        "tasks": arguments.tasks,
        "batch": arguments.batch or None,
        "batch_sizes": dict(sorted(app.engine.stats.size_histogram.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--batch", type=int, default=0, help="transfers per POST /v1/batch")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
