"""New connections per second, a request each, while idle keep-alive connections are held.

Clients back from idle, health checks and shells reconnect: a server must take new
connections quickly however many it holds already. Each round starts a fresh
`kopilka serve` (one worker, then `--workers 2`), holds `--idle` connections open, and
runs `--connectors` loops that each connect, ask `GET /v1/health` with `Connection:
close`, and read the answer; then the same against `../shared/bench/http_ceiling.py`
(its answer to that GET is a 404, as cheap as any). One JSON line per server a round.

  python benchmarks/connect_bench.py --rounds 2 --seconds 5 --idle 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from http_bench import ceiling_server, funded_server

REQUEST = b"GET /v1/health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


async def _one(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(REQUEST)
        await writer.drain()
        await reader.read()  # to the server's close
    finally:
        writer.close()


async def _connect_loop(port: int, until: float, latencies: list[float], failed: list[str]) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            await asyncio.wait_for(_one(port), 10)
        except (OSError, TimeoutError) as error:
            failed.append(type(error).__name__)
            continue
        latencies.append(time.monotonic() - started)


async def _measure(port: int, arguments: argparse.Namespace) -> dict[str, Any]:
    idle = []
    for index in range(arguments.idle):
        # Spread over addresses, under the per-address bound of connections.
        local = (f"127.0.1.{1 + index // 200}", 0)
        idle.append(await asyncio.open_connection("127.0.0.1", port, local_addr=local))
    latencies: list[float] = []
    failed: list[str] = []
    until = time.monotonic() + arguments.seconds
    await asyncio.gather(
        *(_connect_loop(port, until, latencies, failed) for _ in range(arguments.connectors))
    )
    for _, writer in idle:
        writer.close()
    latencies.sort()
    count = len(latencies)
    return {
        "per_second": round(count / arguments.seconds),
        "p50_ms": round(latencies[count // 2] * 1000, 1) if count else None,
        "p99_ms": round(latencies[int(count * 0.99)] * 1000, 1) if count else None,
        "failed": len(failed),
    }


def _kopilka(workers: int, arguments: argparse.Namespace) -> dict[str, Any]:
    with funded_server(2, ["--workers", str(workers)]) as (_, port, _token):
        return asyncio.run(_measure(port, arguments))


def _ceiling(arguments: argparse.Namespace) -> dict[str, Any]:
    with ceiling_server() as (_, port):
        return asyncio.run(_measure(port, arguments))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--idle", type=int, default=50, help="keep-alive connections held")
    parser.add_argument("--connectors", type=int, default=32, help="connect loops at once")
    arguments = parser.parse_args()
    for round_number in range(1, arguments.rounds + 1):
        for name, measure in (
            ("kopilka, one worker", lambda: _kopilka(1, arguments)),
            ("kopilka, --workers 2", lambda: _kopilka(2, arguments)),
            ("http_ceiling", lambda: _ceiling(arguments)),
        ):
            print(json.dumps({"round": round_number, "server": name, **measure()}), flush=True)


if __name__ == "__main__":
    main()
