"""One transfer per request against kopilka and the bare HTTP ceiling, side by side.

Each round starts a fresh `kopilka serve` on a free port (durable SQLite in a new
KOPILKA_HOME, or `--db memory:`), opens and funds the accounts, runs the shared
closed-loop generator (`../shared/bench/http_load.py`) against it, then does the
same against `../shared/bench/http_ceiling.py`, and prints one JSON line per round
with both figures and their ratio.

  python benchmarks/http_bench.py --rounds 3 --seconds 10
  python benchmarks/http_bench.py --db memory: --rounds 1
  python benchmarks/http_bench.py --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from load import batch_sizes  # benchmarks/load.py, beside this script

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "bench"
LOAD = Path(__file__).with_name("load.py")  # our own load generator


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def last_json_line(command: list[str]) -> dict[str, Any]:
    """Run a load generator to its end; what it reports is its last line, in JSON."""
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def _load(
    port: int, token: str, arguments: argparse.Namespace, accounts: list[str]
) -> dict[str, Any]:
    return last_json_line(
        [
            sys.executable,
            str(REFERENCE / "http_load.py"),
            "127.0.0.1",
            str(port),
            token,
            str(arguments.connections),
            str(arguments.seconds),
            json.dumps(accounts),
        ]
    )


def _cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """User plus system CPU time so far of a process and its workers (Linux /proc)."""
    return _process_tree_ticks(process.pid) / os.sysconf("SC_CLK_TCK")


def _process_tree_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        ticks += _process_tree_ticks(int(child))
    return ticks


def _measured(
    process: subprocess.Popen[bytes], run: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run the load; add the server's CPU time per answered request, in microseconds."""
    cpu_before = _cpu_seconds(process)
    result = run()
    cpu = _cpu_seconds(process) - cpu_before
    result["server_cpu_us_per_request"] = round(cpu / max(result["ok"], 1) * 1e6)
    return result


@contextlib.contextmanager
def funded_server(
    accounts: int, options: list[str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int, str]]:
    """A fresh `kopilka serve` on a free port (a new KOPILKA_HOME), its accounts opened
    and funded: (process, port, admin token). Stopped on leaving."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="kopilka-bench-") as directory:
        server = subprocess.Popen(
            [sys.executable, "-m", "kopilka", "serve", str(port), *(options or [])],
            env={**os.environ, "KOPILKA_HOME": directory},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_listening(port, server)
            token = (Path(directory) / "admin.token").read_text().strip()
            last_json_line(
                [
                    sys.executable,
                    str(LOAD),
                    *("--url", url, "--token", token, "--setup"),
                    *("--accounts", str(accounts), "--seconds", "0.2", "--connections", "1"),
                ]
            )
            yield server, port, token
        finally:
            _stop(server)


def _kopilka_round(arguments: argparse.Namespace, accounts: list[str]) -> dict[str, Any]:
    options = ["--db", arguments.db] if arguments.db else []
    if arguments.workers > 1:
        options += ["--workers", str(arguments.workers)]
    with funded_server(len(accounts), options) as (server, port, token):
        url = f"http://127.0.0.1:{port}"
        if arguments.workers > 1:  # metrics are per process: no one view of the batches
            result = _measured(server, lambda: _load(port, token, arguments, accounts))
            result["batch_sizes"] = None
        else:
            before = batch_sizes(url)
            result = _measured(server, lambda: _load(port, token, arguments, accounts))
            after = batch_sizes(url)
            result["batch_sizes"] = {bound: after[bound] - before.get(bound, 0) for bound in after}
    return result


@contextlib.contextmanager
def ceiling_server() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`../shared/bench/http_ceiling.py` on a free port: (process, port). Stopped on leaving."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(REFERENCE / "http_ceiling.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, server)
        yield server, port
    finally:
        _stop(server)


def _ceiling_round(arguments: argparse.Namespace, accounts: list[str]) -> dict[str, Any]:
    with ceiling_server() as (server, port):
        return _measured(server, lambda: _load(port, "x", arguments, accounts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="store URL for kopilka (default: SQLite in a new home)")
    parser.add_argument("--workers", type=int, default=1, help="kopilka server processes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--accounts", type=int, default=100)
    arguments = parser.parse_args()
    accounts = [f"c{index}" for index in range(arguments.accounts)]
    for round_number in range(1, arguments.rounds + 1):
        kopilka = _kopilka_round(arguments, accounts)
        ceiling = _ceiling_round(arguments, accounts)
        print(
            json.dumps(
                {
                    "round": round_number,
                    "kopilka_per_second": round(kopilka["rate"]),
                    "kopilka_p50_ms": round(kopilka["p50_ms"], 1),
                    "kopilka_p99_ms": round(kopilka["p99_ms"], 1),
                    "kopilka_cpu_us": kopilka["server_cpu_us_per_request"],
                    "ceiling_per_second": round(ceiling["rate"]),
                    "ceiling_cpu_us": ceiling["server_cpu_us_per_request"],
                    "ceiling_p99_ms": round(ceiling["p99_ms"], 1),
                    "ratio": round(kopilka["rate"] / ceiling["rate"], 2),
                    "kopilka_codes": kopilka["codes"],
                    "batch_sizes": kopilka["batch_sizes"],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
