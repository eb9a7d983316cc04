"""Which pages a commit writes: the WAL frames of one batch of transfers, by B-tree.

A durable SQLite commit costs about one WAL frame (a page, two system calls, its
checksum) per page the batch dirtied, so the pages a transfer touches are what its
COMMIT costs. This fills a fresh database through the engine (batches of transfers
between random pairs of a few accounts, random or time-ordered keys), then holds a
read transaction open, which keeps the WAL from being restarted, applies more batches,
and names the B-tree (table or index) of every frame they appended.

Usage:
  python benchmarks/wal_pages.py --accounts 100 --batch 50 --keys uuid4
Prints one JSON line: frames per batch, and per batch for each B-tree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import struct
import tempfile
import uuid
from collections import Counter
from pathlib import Path

from kopilka.domain.model import Deposit, Transfer
from kopilka.engine import Engine
from kopilka.idempotency import new_key
from kopilka.store import open_store

_WAL_HEADER = 32
_FRAME_HEADER = 24


def wal_frames(path: Path) -> list[int]:
    """The page number of each frame of the WAL's current generation (its salt), in order."""
    data = path.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    salt = data[16:24]
    pages = []
    offset = _WAL_HEADER
    while offset + _FRAME_HEADER + page_size <= len(data):
        if data[offset + 8 : offset + 16] != salt:
            break
        pages.append(struct.unpack(">I", data[offset : offset + 4])[0])
        offset += _FRAME_HEADER + page_size
    return pages


def _batch(rnd: random.Random, accounts: int, size: int, keys: str) -> list[Transfer]:
    transfers = []
    for _ in range(size):
        sender, receiver = rnd.sample(range(accounts), 2)
        key = str(uuid.uuid4()) if keys == "uuid4" else new_key()
        transfers.append(Transfer(f"c{sender}", f"c{receiver}", 1, "bench", key))
    return transfers


async def main(args: argparse.Namespace) -> None:
    path = Path(tempfile.mkdtemp(prefix="kopilka-wal-")) / "bench.db"
    rnd = random.Random(1)
    async with Engine(open_store(str(path))) as engine:
        openings = [Deposit(f"c{i}", 10**12, "opening", f"open-{i}") for i in range(args.accounts)]
        await engine.submit_many(openings)
        for _ in range(args.warm_batches):
            await engine.submit_many(_batch(rnd, args.accounts, args.batch, args.keys))
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM operations").fetchone()  # holds the WAL
        before = len(wal_frames(path.with_name(path.name + "-wal")))
        for _ in range(args.batches):
            await engine.submit_many(_batch(rnd, args.accounts, args.batch, args.keys))
        pages = wal_frames(path.with_name(path.name + "-wal"))[before:]
        reader.execute("COMMIT")
        owners = dict(reader.execute("SELECT pageno, name FROM dbstat").fetchall())
        reader.close()
    by_tree = Counter(owners.get(page, "?") for page in pages)
    print(
        json.dumps(
            {
                "accounts": args.accounts,
                "batch": args.batch,
                "keys": args.keys,
                "frames_per_batch": round(len(pages) / args.batches, 1),
                "by_tree": {name: round(n / args.batches, 1) for name, n in by_tree.most_common()},
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50, help="transfers per batch")
    parser.add_argument("--warm-batches", type=int, default=1500)
    parser.add_argument("--batches", type=int, default=20, help="batches measured")
    parser.add_argument("--keys", choices=["uuid7", "uuid4"], default="uuid4")
    asyncio.run(main(parser.parse_args()))
