"""The batch API (`POST /v1/batch`) against the bare SQL of the same transfers, side by side.

Each round starts a fresh `kopilka serve` on a free port (durable SQLite in a new
KOPILKA_HOME), opens and funds the accounts, runs our load generator in batch mode
against it (`load.py --batch N`: keep-alive connections, each sending one batch of N
transfers at a time), then runs `../shared/bench/sqlite_ceiling.py` over as many accounts
with batches of N, and prints one JSON line per round with both figures and their ratio.

  python benchmarks/batch_api_bench.py --rounds 3
  python benchmarks/batch_api_bench.py --batch 1000 --connections 4 --accounts 100
  python benchmarks/batch_api_bench.py --workers 2 --connections 8
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from typing import Any

from http_bench import LOAD, REFERENCE, _cpu_seconds, funded_server, last_json_line


def _kopilka_round(arguments: argparse.Namespace) -> dict[str, Any]:
    options = ["--workers", str(arguments.workers)] if arguments.workers > 1 else []
    with funded_server(arguments.accounts, options) as (server, port, token):
        url = f"http://127.0.0.1:{port}"
        cpu_before = _cpu_seconds(server)
        result = last_json_line(
            [
                sys.executable,
                str(LOAD),
                *("--url", url, "--token", token, "--accounts", str(arguments.accounts)),
                *("--batch", str(arguments.batch), "--connections", str(arguments.connections)),
                *("--seconds", str(arguments.seconds)),
            ]
        )
        cpu = _cpu_seconds(server) - cpu_before
    result["server_cpu_us_per_transfer"] = round(cpu / max(result["operations"], 1) * 1e6, 1)
    return result


def _ceiling_round(arguments: argparse.Namespace) -> float:
    output = subprocess.run(
        [
            sys.executable,
            str(REFERENCE / "sqlite_ceiling.py"),
            str(arguments.accounts),
            str(arguments.ceiling_transfers),
            str(arguments.batch),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(r"([\d,]+) transfers/s", output)
    if found is None:
        raise RuntimeError(f"no rate in the ceiling's output: {output!r}")
    return float(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch", type=int, default=1_000, help="transfers per request")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="kopilka server processes")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--ceiling-transfers", type=int, default=100_000)
    arguments = parser.parse_args()
    for round_number in range(1, arguments.rounds + 1):
        kopilka = _kopilka_round(arguments)
        ceiling = _ceiling_round(arguments)
        rate = kopilka["operations_per_second"]
        print(
            json.dumps(
                {
                    "round": round_number,
                    "workers": arguments.workers,
                    "connections": arguments.connections,
                    "kopilka_per_second": rate,
                    "kopilka_p50_ms": kopilka["p50_ms"],
                    "kopilka_p99_ms": kopilka["p99_ms"],
                    "kopilka_cpu_us_per_transfer": kopilka["server_cpu_us_per_transfer"],
                    "ceiling_per_second": round(ceiling),
                    "ratio": round(rate / ceiling, 2),
                    "statuses": kopilka["statuses"],
                    # Metrics are per process: with workers, load.py's two reads of
                    # /metrics may come from different ones, so there is no one view.
                    "server_batch_sizes": (
                        kopilka["server_batch_sizes"] if arguments.workers == 1 else None
                    ),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
