"""What a client that asks for a long statement and never reads it costs the server.

A fresh `kopilka serve` (durable SQLite) gives one client a history of --lines lines,
then --readers connections each ask for that client's whole statement and read
nothing, until the server's writes wait on them. Reports the server's resident memory
before, while they wait (each holds what its stream has read and not sent), and once
they have closed (what the allocator keeps).

Usage:
  python benchmarks/stalled_readers_bench.py --lines 50000 --readers 150
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import time

import httpx

from http_bench import funded_server  # benchmarks/http_bench.py, beside this script

BATCH = 10_000  # lines a POST /v1/batch adds


def resident_megabytes(server: subprocess.Popen[bytes]) -> float:
    with open(f"/proc/{server.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--readers", type=int, default=150)
    parser.add_argument("--wait", type=float, default=6.0, help="seconds they stay stalled")
    arguments = parser.parse_args()
    with funded_server(2) as (server, port, token):
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as admin:
            admin.post("/v1/accounts", json={"client": "Big"}).raise_for_status()
            deposit = {"type": "deposit", "client": "Big", "amount": "1", "description": "x" * 60}
            for start in range(0, arguments.lines, BATCH):
                items = [deposit] * min(BATCH, arguments.lines - start)
                admin.post("/v1/batch", json={"operations": items}, timeout=120).raise_for_status()
        before = resident_megabytes(server)
        ask = (
            f"GET /v1/accounts/Big/statement HTTP/1.1\r\nHost: bench\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
        readers = []
        for _ in range(arguments.readers):
            reader = socket.socket()
            # Before connecting: the window is agreed then. Small, as it reads nothing.
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.connect(("127.0.0.1", port))
            reader.sendall(ask)
            readers.append(reader)
        time.sleep(arguments.wait)
        stalled = resident_megabytes(server)
        for reader in readers:
            reader.close()
        time.sleep(3)
        after = resident_megabytes(server)
    print(
        json.dumps(
            {
                "lines": arguments.lines,
                "readers": arguments.readers,
                "rss_before_mb": round(before, 1),
                "rss_stalled_mb": round(stalled, 1),
                "rss_after_close_mb": round(after, 1),
                "mb_per_stalled_reader": round((stalled - before) / arguments.readers, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
