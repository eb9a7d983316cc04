"""Several workers' snapshots summed into one server's numbers (api/metrics_share.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tests.metric_samples import samples

from kopilka.api.metrics import Metrics
from kopilka.api.metrics_share import (
    SNAPSHOT_FRESH_SECONDS,
    GcCounts,
    LatencyCounts,
    Snapshot,
    SnapshotFiles,
    ViewCounts,
    combine,
    make_directory,
    remove_directory,
)
from kopilka.engine import Engine
from kopilka.store.memory import MemoryStore

NOW = 1_000_000.0


def snapshot(
    *,
    deposits: int = 0,
    written_at: float = NOW,
    commit_seconds: float | None = None,
    views: ViewCounts | None = None,
) -> Snapshot:
    return Snapshot(
        written_at=written_at,
        operations=[("deposit", "ok", deposits), ("withdrawal", "insufficient_funds", 1)],
        sandbox_operations=[("transfer", "ok", deposits)],
        latency={"deposit": LatencyCounts([deposits, 1, 0], 0.5)},
        batches=deposits,
        batch_operations=deposits + 1,
        batch_sizes={1: deposits, 2: 1},
        gc=[GcCounts(3, 10, 0), GcCounts(1, 2, 0)],
        postgres_views=views,
        sqlite_commit_seconds=commit_seconds,
    )


def test_counters_are_summed() -> None:
    total = combine([snapshot(deposits=2), snapshot(deposits=5)], NOW)
    assert sorted(total.operations) == [
        ("deposit", "ok", 7),
        ("withdrawal", "insufficient_funds", 2),
    ]
    assert total.sandbox_operations == [("transfer", "ok", 7)]
    assert total.latency == {"deposit": LatencyCounts([7, 2, 0], 1.0)}
    assert (total.batches, total.batch_operations) == (7, 9)
    assert total.batch_sizes == {1: 7, 2: 2}
    assert total.gc == [GcCounts(6, 20, 0), GcCounts(2, 4, 0)]


def test_a_label_one_worker_has_not_seen_is_the_others_alone() -> None:
    other = snapshot(deposits=1)
    other.operations = [("transfer", "ok", 4)]
    other.latency = {"other": LatencyCounts([0, 0, 3], 0.25)}
    total = combine([snapshot(deposits=2), other], NOW)
    assert ("transfer", "ok", 4) in total.operations
    assert ("deposit", "ok", 2) in total.operations
    assert total.latency["other"] == LatencyCounts([0, 0, 3], 0.25)


def test_the_commit_gauge_is_the_slowest_live_worker() -> None:
    stale = NOW - SNAPSHOT_FRESH_SECONDS - 1  # a dead worker's last snapshot
    total = combine(
        [
            snapshot(commit_seconds=0.002),
            snapshot(commit_seconds=0.004),
            snapshot(commit_seconds=0.9, written_at=stale),
        ],
        NOW,
    )
    assert total.sqlite_commit_seconds == 0.004
    assert combine([snapshot()], NOW).sqlite_commit_seconds is None


def test_postgres_view_counts_are_summed_where_there_are_some() -> None:
    total = combine([snapshot(views=ViewCounts(1, 2, 3)), snapshot(views=ViewCounts(4, 5, 6))], NOW)
    assert total.postgres_views == ViewCounts(5, 7, 9)
    assert combine([snapshot(), snapshot()], NOW).postgres_views is None


def test_the_directory_is_private_and_removed() -> None:
    directory = make_directory()
    try:
        assert directory.stat().st_mode & 0o777 == 0o700
    finally:
        remove_directory(directory)
    assert not directory.exists()


def test_a_snapshot_written_is_read_back_and_replaces_the_previous(tmp_path: Path) -> None:
    counts = {"deposits": 1}
    files = SnapshotFiles(tmp_path, lambda: snapshot(deposits=counts["deposits"]))
    files.write()
    counts["deposits"] = 9
    files.write()
    assert files.read_all() == [snapshot(deposits=9)]
    # Only finished snapshots are read: a temporary file, half written, is not.
    (tmp_path / "123-abc.tmp").write_bytes(b'{"written_at": 1')
    assert len(files.read_all()) == 1


def test_each_worker_writes_a_file_of_its_own(tmp_path: Path) -> None:
    first = SnapshotFiles(tmp_path, lambda: snapshot(deposits=1))
    second = SnapshotFiles(tmp_path, lambda: snapshot(deposits=2))
    assert first.path != second.path  # the same process id, as a reused one would be
    first.write()
    second.write()
    assert sorted(s.batches for s in first.read_all()) == [1, 2]


def test_an_unwritable_directory_keeps_the_last_snapshot(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path, lambda: snapshot(deposits=3))
    files.write()
    files.path = tmp_path / "gone" / files.path.name  # writes now fail
    files.write()  # said once in the log, not raised: the hot loop goes on
    assert [s.batches for s in files.read_all()] == [3]


def test_a_scrape_with_no_snapshot_at_all_fails(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path, lambda: snapshot())
    files.path = tmp_path / "gone" / files.path.name
    with pytest.raises(FileNotFoundError):
        files.combined()


def test_metrics_of_two_workers_render_their_sum(tmp_path: Path) -> None:
    first, second = Metrics(Engine(MemoryStore())), Metrics(Engine(MemoryStore()))
    for metrics in (first, second):
        metrics.share(tmp_path)
    first.operation("deposit", "ok", 3)
    first.latency("deposit", 0.001)
    second.operation("deposit", "ok", 4)
    second.operation("withdrawal", "insufficient_funds")
    second.latency("deposit", 0.2)
    assert second.shared is not None
    second.shared.write()  # as its background task does
    seen = samples(first.render().decode())
    assert seen[("kopilka_operations_total", (("kind", "deposit"), ("result", "ok")))] == 7
    assert (
        seen[
            ("kopilka_operations_total", (("kind", "withdrawal"), ("result", "insufficient_funds")))
        ]
        == 1
    )
    assert seen[("kopilka_request_seconds_count", (("kind", "deposit"),))] == 2
    assert seen[("kopilka_request_seconds_bucket", (("kind", "deposit"), ("le", "0.001")))] == 1
    assert seen[("python_gc_collections_total", (("generation", "0"),))] >= 0


def test_one_process_alone_writes_nothing(tmp_path: Path) -> None:
    metrics = Metrics(Engine(MemoryStore()))
    metrics.operation("deposit", "ok")
    seen = samples(metrics.render().decode())
    assert seen[("kopilka_operations_total", (("kind", "deposit"), ("result", "ok")))] == 1
    assert ("kopilka_sqlite_commit_seconds", ()) not in seen
    assert list(tmp_path.iterdir()) == []


async def test_a_sharing_worker_writes_every_second_and_once_more_at_its_end(
    tmp_path: Path,
) -> None:
    metrics = Metrics(Engine(MemoryStore()))
    metrics.share(tmp_path)
    assert metrics.shared is not None
    metrics.start_sharing()
    try:
        assert [s.operations for s in metrics.shared.read_all()] == [[]]  # at once
        metrics.operation("deposit", "ok")
        deadline = time.monotonic() + 5
        while metrics.shared.read_all()[0].operations != [("deposit", "ok", 1)]:
            assert time.monotonic() < deadline, "no snapshot written in the background"
            await asyncio.sleep(0.1)
        metrics.operation("deposit", "ok")
    finally:
        await metrics.stop_sharing()
    assert metrics.shared.read_all()[0].operations == [("deposit", "ok", 2)]
