"""A statement on a big ledger: 100,000 accounts, 1,000,000 operations, durable SQLite.

Fills the database through the engine (batches of transfers; one transfer in a
thousand involves the client "hot", so it has a long history), then times
statements of about 100 rows over random periods of that client's history, and
reports the process's resident memory as the ledger grows: it must stay flat,
since accounts are not all held in memory.

With --long N, it instead gives one client a history of N lines and times reading
its whole statement, page by page as the server streams it, in halves: the second
half must take no longer than the first (each page seeks to where the last ended).

With --long N --beside K, K copies of that statement stream at once while one
account's balance is read again and again: its latency, which the statements' pages
must not hold up.

Usage:
  python benchmarks/statement_bench.py --accounts 100000 --operations 1000000
  python benchmarks/statement_bench.py --long 400000
  python benchmarks/statement_bench.py --long 200000 --beside 8
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from kopilka.domain.model import Deposit, Transfer
from kopilka.engine import Engine
from kopilka.store import open_store

HOT = "hot"


def resident_megabytes() -> float:
    """Current resident set size (not the peak), from /proc."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return round(pages * 4096 / 2**20, 1)


async def fill(engine: Engine, accounts: int, operations: int, batch: int) -> list[float]:
    openings = [Deposit(f"c{i}", 10**12, "opening", f"open-{i}") for i in range(accounts)]
    openings.append(Deposit(HOT, 10**12, "opening", "open-hot"))
    for start in range(0, len(openings), batch):
        await engine.submit_many(openings[start : start + batch])
    rnd = random.Random(7)
    memory = []
    for start in range(0, operations, batch):
        commands = []
        for number in range(start, min(start + batch, operations)):
            sender, receiver = (f"c{i}" for i in rnd.sample(range(accounts), 2))
            if number % 1_000 == 0:
                sender = HOT
            commands.append(
                Transfer(sender, receiver, rnd.randrange(1, 10_000), "t", f"{number:020d}")
            )
        await engine.submit_many(commands)
        if (start + batch) % (operations // 4) < batch:
            memory.append(resident_megabytes())
    return memory


async def time_statements(engine: Engine, samples: int) -> dict[str, object]:
    lines = (await engine.statement("main", HOT, None, datetime.now(UTC))).lines
    rnd = random.Random(3)
    timings = []
    rows: list[int] = []
    for _ in range(samples):
        # A batch shares one time, so a period holds whole batches: about 100 rows.
        start = rnd.randrange(1, len(lines) - 100)
        since, till = lines[start].created_at, lines[start + 99].created_at
        began = time.perf_counter()
        statement = await engine.statement("main", HOT, since, till)
        timings.append(time.perf_counter() - began)
        rows.append(len(statement.lines))
    timings.sort()
    return {
        "statement_rows_min": min(rows),
        "statement_rows_max": max(rows),
        "history_rows": len(lines),
        "p50_ms": round(timings[len(timings) // 2] * 1000, 2),
        "p99_ms": round(timings[int(len(timings) * 0.99)] * 1000, 2),
    }


async def fill_a_long_history(engine: Engine, lines: int, batch: int) -> None:
    for start in range(0, lines, batch):
        deposits = [
            Deposit("long", 1, "d", f"long-{number}")
            for number in range(start, min(start + batch, lines))
        ]
        await engine.submit_many(deposits)


async def time_reads_beside_statements(engine: Engine, statements: int) -> dict[str, object]:
    """A balance read again and again while `statements` long statements stream."""

    async def stream() -> None:
        header = await engine.statement_header("main", "long", None, None)
        async for _ in engine.statement_lines(header, None):
            pass

    await engine.submit_many([Deposit("short", 1, "d", "short-1")])
    streams = [asyncio.create_task(stream()) for _ in range(statements)]
    timings: list[float] = []
    while not all(task.done() for task in streams):
        began = time.perf_counter()
        await engine.get_account("main", "short")
        timings.append(time.perf_counter() - began)
        await asyncio.sleep(0.001)
    await asyncio.gather(*streams)
    timings.sort()
    return {
        "statements_beside": statements,
        "reads": len(timings),
        "read_p50_ms": round(timings[len(timings) // 2] * 1000, 2),
        "read_p99_ms": round(timings[int(len(timings) * 0.99)] * 1000, 2),
    }


async def time_a_long_statement(engine: Engine, lines: int) -> dict[str, object]:
    header = await engine.statement_header("main", "long", None, None)
    halves: list[float] = []
    read = 0
    began = time.perf_counter()
    async for _ in engine.statement_lines(header, None):
        read += 1
        if read == lines // 2:
            halves.append(time.perf_counter() - began)
            began = time.perf_counter()
    halves.append(time.perf_counter() - began)
    return {
        "long_statement_rows": read,
        "first_half_seconds": round(halves[0], 2),
        "second_half_seconds": round(halves[1], 2),
    }


async def main(args: argparse.Namespace) -> None:
    directory = Path(args.dir or tempfile.mkdtemp(prefix="kopilka-statement-"))
    if args.long:
        async with Engine(open_store(str(directory / "long.db"))) as engine:
            await fill_a_long_history(engine, args.long, args.batch)
            if args.beside:
                print(json.dumps(await time_reads_beside_statements(engine, args.beside)))
            else:
                print(json.dumps(await time_a_long_statement(engine, args.long)))
        return
    async with Engine(open_store(str(directory / "big.db"))) as engine:
        started = time.perf_counter()
        memory = await fill(engine, args.accounts, args.operations, args.batch)
        fill_seconds = round(time.perf_counter() - started, 1)
        result = await time_statements(engine, args.samples)
    result.update(
        accounts=args.accounts,
        operations=args.operations,
        fill_seconds=fill_seconds,
        resident_mb_at_quarters=memory,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--operations", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=8_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--long", type=int, default=0, help="lines of one long statement")
    parser.add_argument("--beside", type=int, default=0, help="long statements read at once")
    parser.add_argument("--dir", help="directory for the database (default: a new temp dir)")
    asyncio.run(main(parser.parse_args()))
