"""The batch API (`POST /v1/batch`) against the bare SQL of the same transfers, side by side.

Each round starts a fresh `kopilka serve` on a free port (durable SQLite in a new
KOPILKA_HOME), opens and funds the accounts, runs our load generator in batch mode
against it (`load.py --batch N`: keep-alive connections, each sending one batch of N
transfers at a time), then runs `../shared/bench/sqlite_ceiling.py` over as many accounts
with batches of N, and prints one JSON line per round with both figures and their ratio.

  python benchmarks/batch_api_bench.py --rounds 3
  python benchmarks/batch_api_bench.py --batch 1000 --connections 4 --accounts 100
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from http_bench import (
    REFERENCE,
    _cpu_seconds,
    _free_port,
    _stop,
    _wait_listening,
    last_json_line,
)

LOAD = Path(__file__).with_name("load.py")


def _load(url: str, token: str, arguments: argparse.Namespace, *extra: str) -> dict[str, Any]:
    return last_json_line(
        [
            sys.executable,
            str(LOAD),
            "--url",
            url,
            "--token",
            token,
            "--accounts",
            str(arguments.accounts),
            *extra,
        ]
    )


def _kopilka_round(arguments: argparse.Namespace) -> dict[str, Any]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="kopilka-batch-bench-") as directory:
        server = subprocess.Popen(
            [sys.executable, "-m", "kopilka", "serve", str(port)],
            env={**os.environ, "KOPILKA_HOME": directory},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_listening(port, server)
            token = (Path(directory) / "admin.token").read_text().strip()
            _load(url, token, arguments, "--setup", "--seconds", "0.2", "--connections", "1")
            run = [
                "--batch",
                str(arguments.batch),
                "--connections",
                str(arguments.connections),
                "--seconds",
                str(arguments.seconds),
            ]
            cpu_before = _cpu_seconds(server)
            result = _load(url, token, arguments, *run)
            cpu = _cpu_seconds(server) - cpu_before
            result["server_cpu_us_per_transfer"] = round(
                cpu / max(result["operations"], 1) * 1e6, 1
            )
            return result
        finally:
            _stop(server)


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
                    "kopilka_per_second": rate,
                    "kopilka_p50_ms": kopilka["p50_ms"],
                    "kopilka_p99_ms": kopilka["p99_ms"],
                    "kopilka_cpu_us_per_transfer": kopilka["server_cpu_us_per_transfer"],
                    "ceiling_per_second": round(ceiling),
                    "ratio": round(rate / ceiling, 2),
                    "statuses": kopilka["statuses"],
                    "server_batch_sizes": kopilka["server_batch_sizes"],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
