"""CPU instructions per transfer, counted by valgrind: a measure that noise cannot move.

On a shared machine wall-clock rates of the same code swing by 20% from one
minute to the next; instruction counts repeat to the last digit. Each workload
runs twice under callgrind, with N and 2N transfers, and the difference over N
is what one more transfer costs, without start-up and setup.

  kopilka   benchmarks/engine_bench.py batch: engine, rules and SQLite store, in process
  ceiling   ../shared/bench/sqlite_ceiling.py: the bare SQL of the same transfers
  app       (--workload app) benchmarks/app_bench.py: one transfer per request through
            the ASGI app in process, 64 tasks, no sockets; no ceiling to set beside it.
            How the tasks fall into batches depends on the writer thread's timing, so
            this count varies by about 2% from run to run; compare versions on more
            than one run each

Usage:
  python benchmarks/instructions.py [--accounts 10000] [--transfers 4000]
  python benchmarks/instructions.py --workload app [--accounts 100] [--transfers 2000]
Needs valgrind. Both counts include making up the transfers, and every thread (the
checkpoints too). Instructions are not time: the fsyncs and cache misses are not in
them, so the two counts are no speed ratio. Compare two versions of kopilka with
this, and report speed with the timed benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CEILING = ROOT.parent / "shared" / "bench" / "sqlite_ceiling.py"


def _instructions(command: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="kopilka-callgrind-") as directory:
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={directory}/callgrind.out",
                *command,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            check=True,
        )
    match = re.search(r"Collected : (\d+)", result.stderr)
    assert match is not None, result.stderr[-2_000:]
    return int(match.group(1))


def _per_transfer(command: Callable[[int], list[str]], transfers: int) -> int:
    """What one more transfer costs: the difference of a run with N and one with 2N."""
    once = _instructions(command(transfers))
    twice = _instructions(command(2 * transfers))
    return round((twice - once) / transfers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=["engine", "app"], default="engine")
    parser.add_argument("--accounts", type=int, help="default 10,000 (engine) or 100 (app)")
    parser.add_argument(
        "--transfers", type=int, help="default 4,000, also the batch size (engine), or 2,000 (app)"
    )
    arguments = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")
    if arguments.workload == "app":
        _count_app(arguments.accounts or 100, arguments.transfers or 2_000)
        return
    accounts = arguments.accounts or 10_000
    batch = arguments.transfers or 4_000

    def kopilka(transfers: int) -> list[str]:
        return [
            sys.executable,
            str(ROOT / "benchmarks" / "engine_bench.py"),
            "batch",
            f"--accounts={accounts}",
            f"--transfers={transfers}",
            f"--batch={batch}",
        ]

    def ceiling(transfers: int) -> list[str]:
        return [sys.executable, str(CEILING), str(accounts), str(transfers), str(batch)]

    kopilka_count = _per_transfer(kopilka, batch)
    ceiling_count = _per_transfer(ceiling, batch)
    print(
        json.dumps(
            {
                "accounts": accounts,
                "batch": batch,
                "kopilka_instructions_per_transfer": kopilka_count,
                "ceiling_instructions_per_transfer": ceiling_count,
            }
        )
    )


def _count_app(accounts: int, requests: int) -> None:
    def app(count: int) -> list[str]:
        return [
            sys.executable,
            str(ROOT / "benchmarks" / "app_bench.py"),
            f"--accounts={accounts}",
            f"--requests={count}",
            "--tasks=64",
        ]

    print(
        json.dumps(
            {
                "workload": "app",
                "accounts": accounts,
                "app_instructions_per_request": _per_transfer(app, requests),
            }
        )
    )


if __name__ == "__main__":
    main()
