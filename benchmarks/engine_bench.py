"""In-process engine throughput on a durable SQLite file (synchronous=FULL).

Two scenarios from issue 2:
  batch       transfers through the library batch call (submit_many), N per call
  concurrent  C asyncio tasks, each submitting one transfer at a time

Usage:
  python benchmarks/engine_bench.py batch --accounts 10000 --transfers 200000 --batch 4000
  python benchmarks/engine_bench.py concurrent --accounts 10000 --transfers 50000 --tasks 64
Prints one JSON line; run ../shared/bench/sqlite_ceiling.py in the same run to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from pathlib import Path

from kopilka.collector import settle_for_serving
from kopilka.domain.model import Deposit, Operation, Transfer
from kopilka.engine import Engine
from kopilka.idempotency import new_key
from kopilka.limits import Limits
from kopilka.store import open_store


def _key(kind: str) -> str:
    """Time-ordered keys (UUID version 7, what kopilka's own clients make) or random ones."""
    return str(uuid.uuid4()) if kind == "uuid4" else new_key()


def _transfers(accounts: int, count: int, seed: int, keys: str) -> list[Transfer]:
    rnd = random.Random(seed)
    commands = []
    for _ in range(count):
        sender, receiver = rnd.sample(range(accounts), 2)
        commands.append(
            Transfer(f"c{sender}", f"c{receiver}", rnd.randrange(1, 10_000), "bench", _key(keys))
        )
    return commands


async def _fund(engine: Engine, accounts: int) -> None:
    deposits = [Deposit(f"c{i}", 10**12, "opening", f"open-{i}") for i in range(accounts)]
    await engine.submit_many(deposits)


async def run_batch(engine: Engine, args: argparse.Namespace) -> dict[str, object]:
    commands = _transfers(args.accounts, args.transfers, 1, args.keys)
    settle_for_serving()  # as `kopilka serve` does once started
    started = time.perf_counter()
    applied = 0
    for start in range(0, len(commands), args.batch):
        outcomes = await engine.submit_many(commands[start : start + args.batch])
        applied += sum(isinstance(outcome, Operation) for outcome in outcomes)
    elapsed = time.perf_counter() - started
    return {"transfers_per_second": round(applied / elapsed), "applied": applied}


async def run_concurrent(engine: Engine, args: argparse.Namespace) -> dict[str, object]:
    commands = _transfers(args.accounts, args.transfers, 2, args.keys)
    settle_for_serving()  # as `kopilka serve` does once started
    per_task = len(commands) // args.tasks
    # Task i sends commands i, i + tasks, ...: the keys in flight at any moment were made
    # at about the same time, as when each caller makes its key as it sends.
    latencies: list[float] = []

    async def worker(index: int) -> int:
        done = 0
        for command in commands[index : per_task * args.tasks : args.tasks]:
            sent = time.perf_counter()
            outcome = await engine.execute(command)
            latencies.append(time.perf_counter() - sent)
            done += isinstance(outcome, Operation)
        return done

    started = time.perf_counter()
    applied = sum(await asyncio.gather(*(worker(i) for i in range(args.tasks))))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "transfers_per_second": round(applied / elapsed),
        "applied": applied,
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


async def main(args: argparse.Namespace) -> None:
    directory = Path(args.dir or tempfile.mkdtemp(prefix="kopilka-bench-"))
    store = open_store(args.db or str(directory / "bench.db"))
    async with Engine(store, Limits(batch_operations_max=args.batch_max)) as engine:
        await _fund(engine, args.accounts)
        engine.stats.size_histogram.clear()
        scenario = run_batch if args.scenario == "batch" else run_concurrent
        result = await scenario(engine, args)
        result.update(
            scenario=args.scenario,
            accounts=args.accounts,
            transfers=args.transfers,
            batch=args.batch if args.scenario == "batch" else None,
            tasks=args.tasks if args.scenario == "concurrent" else None,
            keys=args.keys,
            batch_sizes=dict(sorted(engine.stats.size_histogram.items())),
        )
    print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("scenario", choices=["batch", "concurrent"])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--transfers", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=4_000)
    parser.add_argument("--batch-max", type=int, default=8_000)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--keys", choices=["uuid7", "uuid4"], default="uuid7")
    parser.add_argument("--db", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--dir", help="directory for the SQLite file")
    asyncio.run(main(parser.parse_args()))
