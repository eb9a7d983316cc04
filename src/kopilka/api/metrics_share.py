"""`/metrics` for the whole server when it runs several workers (`--workers N`).

Each worker counts on its own, as one process does (plain counting on its event
loop). The supervisor makes a private directory for the server's life; each worker
writes a snapshot of all its counts there, to a file of its own, about once a second
and once more just before it answers a scrape; a scrape answers the sum of every
file there. A file is only ever replaced whole (`os.replace`) by a later snapshot of
the same counts, so each number a scrape reads is a sum of numbers that only grow:
whichever worker answers, a counter never goes down. A worker that dies leaves its
file, so what it had counted stays in the sums (what it counted after its last
snapshot, up to a second of it, is lost: never shown, so never taken back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from kopilka.supervision import SUPERVISOR_PID_VARIABLE

logger = logging.getLogger(__name__)

DIRECTORY_VARIABLE = "KOPILKA_METRICS_DIRECTORY"
SNAPSHOT_INTERVAL_SECONDS = 1.0
# A gauge is a process's now, not a count to keep: one from a snapshot older than this
# is a dead worker's (a live one writes every second), and is left out.
SNAPSHOT_FRESH_SECONDS = 5.0
_SNAPSHOT_SUFFIX = ".snapshot"


class LatencyCounts(msgspec.Struct):
    """One kind's latency histogram: a count per bucket (not cumulative), and the sum."""

    counts: list[int]
    total_seconds: float


class ViewCounts(msgspec.Struct):
    """PostgreSQL's batches planned on the process's own view (see StaleViews)."""

    written: int = 0
    stale: int = 0
    key_taken: int = 0


class GcCounts(msgspec.Struct):
    """One generation of the garbage collector, as `gc.get_stats()` gives it."""

    collections: int = 0
    collected: int = 0
    uncollectable: int = 0


class Snapshot(msgspec.Struct):
    """Every count of one process at one moment (or the sum of several)."""

    written_at: float  # time.time(): gauges of an old snapshot are left out
    operations: list[tuple[str, str, int]]  # kind, result, count
    latency: dict[str, LatencyCounts]
    batches: int
    batch_operations: int
    batch_sizes: dict[int, int]  # power-of-two bucket -> batches (not cumulative)
    gc: list[GcCounts]  # by generation
    sandbox_operations: list[tuple[str, str, int]] = []  # as operations, in sandboxes
    refused: list[tuple[str, int]] = []  # code, count: before any operation was read
    postgres_views: ViewCounts | None = None  # on PostgreSQL only
    sqlite_commit_seconds: float | None = None  # a gauge, on SQLite only


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Snapshot)


def combine(snapshots: Sequence[Snapshot], now: float) -> Snapshot:
    """The server's numbers: counters summed over every snapshot, gauges the maximum over
    the fresh ones (the slowest worker's COMMIT is the one to watch)."""
    assert snapshots, "a scraped worker has written its own snapshot at least"
    latency: dict[str, LatencyCounts] = {}
    batch_sizes: Counter[int] = Counter()
    for snapshot in snapshots:
        for kind, counts in snapshot.latency.items():
            _add_latency(latency, kind, counts)
        batch_sizes.update(snapshot.batch_sizes)
    fresh = [s for s in snapshots if now - s.written_at <= SNAPSHOT_FRESH_SECONDS]
    commit_seconds = [s.sqlite_commit_seconds for s in fresh if s.sqlite_commit_seconds is not None]
    return Snapshot(
        written_at=now,
        operations=_summed(row for snapshot in snapshots for row in snapshot.operations),
        sandbox_operations=_summed(
            row for snapshot in snapshots for row in snapshot.sandbox_operations
        ),
        refused=_summed(row for snapshot in snapshots for row in snapshot.refused),
        latency=latency,
        batches=sum(snapshot.batches for snapshot in snapshots),
        batch_operations=sum(snapshot.batch_operations for snapshot in snapshots),
        batch_sizes=dict(batch_sizes),
        gc=_sum_gc(snapshots),
        postgres_views=_sum_views(snapshots),
        sqlite_commit_seconds=max(commit_seconds) if commit_seconds else None,
    )


def _summed(rows: Iterable[tuple[Any, ...]]) -> list[Any]:
    """Rows of labels then a count, one row for each labels, their counts summed."""
    total: Counter[tuple[Any, ...]] = Counter()
    for *labels, count in rows:
        total[tuple(labels)] += count
    return [(*labels, count) for labels, count in total.items()]


def _add_latency(into: dict[str, LatencyCounts], kind: str, counts: LatencyCounts) -> None:
    total = into.get(kind)
    if total is None:
        into[kind] = LatencyCounts(list(counts.counts), counts.total_seconds)
        return
    assert len(total.counts) == len(counts.counts), "every worker has the same buckets"
    total.counts = [a + b for a, b in zip(total.counts, counts.counts, strict=True)]
    total.total_seconds += counts.total_seconds


def _sum_gc(snapshots: Sequence[Snapshot]) -> list[GcCounts]:
    generations = max(len(snapshot.gc) for snapshot in snapshots)
    total = [GcCounts() for _ in range(generations)]
    for snapshot in snapshots:
        for into, counts in zip(total, snapshot.gc, strict=False):
            into.collections += counts.collections
            into.collected += counts.collected
            into.uncollectable += counts.uncollectable
    return total


def _sum_views(snapshots: Sequence[Snapshot]) -> ViewCounts | None:
    views = [snapshot.postgres_views for snapshot in snapshots if snapshot.postgres_views]
    if not views:
        return None
    return ViewCounts(
        written=sum(view.written for view in views),
        stale=sum(view.stale for view in views),
        key_taken=sum(view.key_taken for view in views),
    )


def make_directory() -> Path:
    """In the supervisor: the directory its workers share, readable by this user only."""
    directory = Path(tempfile.mkdtemp(prefix="kopilka-metrics-"))  # mode 0700
    assert directory.stat().st_mode & 0o077 == 0, "mkdtemp makes it private"
    return directory


def remove_directory(directory: Path) -> None:
    """Once every worker has stopped (or by the workers of a supervisor killed outright):
    the counts end with the server."""
    shutil.rmtree(directory, ignore_errors=True)


def _supervisor_gone() -> bool:
    """This worker ends because the supervisor was killed (see supervision)."""
    supervisor = os.environ.get(SUPERVISOR_PID_VARIABLE)
    return supervisor is not None and os.getppid() != int(supervisor)


class SnapshotFiles:
    """One worker's snapshot file, and the reading of every worker's.

    The name is the process id and a random part: a worker started again under a dead
    one's process id (ids are reused) must not write over what the dead one counted."""

    def __init__(self, directory: Path, take: Callable[[], Snapshot]) -> None:
        # Not checked here: a directory gone is a warning when written, a failed scrape
        # when read, not a worker that cannot start (and is started again and again).
        self.directory = directory
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(8)}{_SNAPSHOT_SUFFIX}"
        self._take = take
        self._task: asyncio.Task[None] | None = None
        self._failing = False  # said once, not once a second

    def write(self) -> None:
        """This worker's counts now, replacing its previous snapshot whole (no fsync:
        the files last as long as the server, not beyond a crash of the machine)."""
        temporary = self.path.with_suffix(".tmp")  # not read: not named *.snapshot
        try:
            temporary.write_bytes(_encoder.encode(self._take()))
            os.replace(temporary, self.path)
        except OSError as error:
            # The previous snapshot stays in the sums: the numbers lag, they do not drop.
            if not self._failing:
                logger.warning("metrics snapshot not written to %s: %s", self.path, error)
            self._failing = True
            return
        self._failing = False

    def read_all(self) -> list[Snapshot]:
        """Every worker's latest snapshot, the dead ones' included. A directory that cannot
        be read fails the scrape: no answer is better than sums that drop."""
        paths = sorted(self.directory.glob(f"*{_SNAPSHOT_SUFFIX}"))
        return [_decoder.decode(path.read_bytes()) for path in paths]

    def combined(self) -> Snapshot:
        """What a scrape answers: this worker's counts written first, then every sum."""
        self.write()
        snapshots = self.read_all()
        if not snapshots:  # not one written (the disk full): this worker's alone would drop
            raise FileNotFoundError(f"no metrics snapshot in {self.directory}")
        return combine(snapshots, time.time())

    def start(self) -> None:
        if self._task is None:
            self.write()  # at once: a worker that serves shows in the sums
            self._task = asyncio.get_running_loop().create_task(self._keep_writing())

    async def close(self) -> None:
        """Stop writing once a second, and write the last counts (a worker stopped while
        the others go on, by SIGTTOU, keeps them in the sums)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if _supervisor_gone():  # killed outright: no one else will remove the directory
            remove_directory(self.directory)
            return
        self.write()

    async def _keep_writing(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_SECONDS)
            self.write()
