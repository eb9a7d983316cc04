"""Prometheus metrics: operations by kind and result, latency, and batch sizes.

Everything is plain counting on the hot path (the event loop is one thread, so
no locks), copied into a `Snapshot` and turned into Prometheus families only when
/metrics is scraped. Batch sizes come from the engine's own counters. With several
workers, the scrape answers every worker's snapshot summed (see metrics_share).
"""

from __future__ import annotations

import bisect
import gc
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kopilka.api.metrics_share import (
    GcCounts,
    LatencyCounts,
    Snapshot,
    SnapshotFiles,
    ViewCounts,
)
from kopilka.domain.model import Operation
from kopilka.engine import Engine
from kopilka.errors import KopilkaError
from kopilka.store.postgres_accounts import StaleViews
from kopilka.store.sqlite import LOOP_COMMIT_SECONDS_MAX, SqliteStore

logger = logging.getLogger(__name__)


class MetricsUnreadable(KopilkaError):
    """The workers' counts cannot be read: no answer, rather than sums that drop."""

    http_status = 500


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS_SECONDS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
_BATCH_BUCKETS_MAX = 1 << 17
# The kind of a batch item too malformed to tell which operation it is.
MALFORMED_KIND = "unknown"
# Connections and requests refused, by code, for how they came: by the server's own
# bounds (api/protocol.py), before any app had a say, and for their headers as the app
# reads them (api/request.py, a header twice, a compressed body): one count for the
# process, as its protocol's bounds are.
BOUNDS_REFUSALS: Counter[str] = Counter()


def result_of(outcome: Operation | KopilkaError) -> str:
    """An operation's result as counted: an answer given again under its key is no new
    operation (nor a new refusal), so it is counted apart."""
    if outcome.replayed:
        return "replayed"
    return outcome.code if isinstance(outcome, KopilkaError) else "ok"


def _batch_families(snapshot: Snapshot) -> Iterator[Metric]:
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    bound = 1
    while bound <= _BATCH_BUCKETS_MAX:
        cumulative += snapshot.batch_sizes.get(bound, 0)
        buckets.append((str(bound), cumulative))
        bound <<= 1
    buckets.append(("+Inf", snapshot.batches))
    yield HistogramMetricFamily(
        "kopilka_batch_size",
        "Operations per database transaction (group commit at work)",
        buckets=buckets,
        sum_value=snapshot.batch_operations,
    )
    # Only ever counts up: a counter (exposed as kopilka_engine_batches_total).
    yield CounterMetricFamily(
        "kopilka_engine_batches", "Batches committed since start", value=snapshot.batches
    )
    views = snapshot.postgres_views
    if views is not None:
        planned = CounterMetricFamily(
            "kopilka_postgres_view_batches",
            "Batches planned on this process's own view of their accounts: written in"
            " one statement, stale (an account had moved; planned again from locked"
            " rows), or key_taken (a retried key or a held claim; planned again reading"
            " keys)",
            labels=["result"],
        )
        planned.add_metric(["written"], views.written)
        planned.add_metric(["stale"], views.stale)
        planned.add_metric(["key_taken"], views.key_taken)
        yield planned
    if snapshot.sqlite_commit_seconds is not None:
        yield GaugeMetricFamily(
            "kopilka_sqlite_commit_seconds",
            "A small batch's COMMIT (mostly its fsync), moving average; while it is over"
            f" {LOOP_COMMIT_SECONDS_MAX} the COMMITs leave the event loop for a thread"
            " (with several workers, the slowest worker's)",
            value=snapshot.sqlite_commit_seconds,
        )


def _gc_families(snapshot: Snapshot) -> Iterator[Metric]:
    """As prometheus_client's GCCollector names them, from counts that may be summed."""
    collected = CounterMetricFamily(
        "python_gc_objects_collected", "Objects collected during gc", labels=["generation"]
    )
    uncollectable = CounterMetricFamily(
        "python_gc_objects_uncollectable",
        "Uncollectable objects found during GC",
        labels=["generation"],
    )
    collections = CounterMetricFamily(
        "python_gc_collections",
        "Number of times this generation was collected",
        labels=["generation"],
    )
    for generation, counts in enumerate(snapshot.gc):
        collected.add_metric([str(generation)], counts.collected)
        uncollectable.add_metric([str(generation)], counts.uncollectable)
        collections.add_metric([str(generation)], counts.collections)
    yield from (collected, uncollectable, collections)


def _view_counts(store: object) -> ViewCounts | None:
    views = getattr(store, "stale_views", None)  # PostgreSQL's, not imported for SQLite
    if not isinstance(views, StaleViews):
        return None
    return ViewCounts(views.written, views.stale, views.key_taken)


class _Latency:
    """A histogram as plain counts: one bisect and two additions per request, no lock
    (the event loop is one thread), summed into Prometheus form only when scraped."""

    __slots__ = ("counts", "total_seconds")

    def __init__(self) -> None:
        self.counts = [0] * (len(_LATENCY_BUCKETS_SECONDS) + 1)
        self.total_seconds = 0.0


class Metrics(Collector):
    """This process's counts; with `share`, /metrics answers every worker's summed."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._operations: dict[tuple[str, str], int] = {}
        self._sandbox_operations: dict[tuple[str, str], int] = {}
        self._request_refusals: dict[str, int] = {}
        self._latency: dict[str, _Latency] = {}
        self.shared: SnapshotFiles | None = None
        self._told_unreadable = False
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def share(self, directory: Path) -> None:
        """A worker of several: its snapshots go to `directory`, scrapes sum them all."""
        assert self.shared is None, "shared once"
        self.shared = SnapshotFiles(directory, self.snapshot)

    def start_sharing(self) -> None:
        if self.shared is not None:
            self.shared.start()

    async def stop_sharing(self) -> None:
        if self.shared is not None:
            await self.shared.close()

    def refused_request(self, code: str) -> None:
        """A request refused before any operation of it was read: for its token (none,
        unknown, revoked), on any route, or a batch refused whole (its body)."""
        self._request_refusals[code] = self._request_refusals.get(code, 0) + 1

    def operation(self, kind: str, result: str, count: int = 1, *, sandbox: bool = False) -> None:
        counted = self._sandbox_operations if sandbox else self._operations
        key = (kind, result)
        counted[key] = counted.get(key, 0) + count

    def latency(self, kind: str, seconds: float) -> None:
        latency = self._latency.get(kind)
        if latency is None:
            latency = self._latency[kind] = _Latency()
        latency.counts[bisect.bisect_left(_LATENCY_BUCKETS_SECONDS, seconds)] += 1
        latency.total_seconds += seconds

    def snapshot(self) -> Snapshot:
        """Every count of this process now, copied (the live ones go on counting)."""
        stats, store = self._engine.stats, self._engine.store
        return Snapshot(
            written_at=time.time(),
            operations=[
                (kind, result, count) for (kind, result), count in self._operations.items()
            ],
            sandbox_operations=[
                (kind, result, count) for (kind, result), count in self._sandbox_operations.items()
            ],
            refused=list((Counter(self._request_refusals) + BOUNDS_REFUSALS).items()),
            latency={
                kind: LatencyCounts(list(latency.counts), latency.total_seconds)
                for kind, latency in self._latency.items()
            },
            gc=[
                GcCounts(stat["collections"], stat["collected"], stat["uncollectable"])
                for stat in gc.get_stats()
            ],
            batches=stats.batches,
            batch_operations=stats.operations,
            batch_sizes=dict(stats.size_histogram),
            postgres_views=_view_counts(store),
            sqlite_commit_seconds=store.commit_seconds if isinstance(store, SqliteStore) else None,
        )

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot() if self.shared is None else self.shared.combined()
        yield from _operation_families(snapshot)
        yield from _batch_families(snapshot)
        yield from _gc_families(snapshot)

    def render(self) -> bytes:
        try:
            return generate_latest(self.registry)
        except OSError as error:  # the workers' directory removed under the server, say
            if not self._told_unreadable:  # once: a traceback a scrape filled the log
                self._told_unreadable = True
                logger.error(
                    "the workers' metrics cannot be read (%s): /metrics answers 500 until the"
                    " server is started again",
                    error,
                )
            raise MetricsUnreadable(
                "metrics_unavailable", "the workers' metrics cannot be read (see the log)"
            ) from error


def _counter(
    name: str, documentation: str, labels: list[str], rows: Iterable[tuple[Any, ...]]
) -> CounterMetricFamily:
    """A counter of `rows`, each its labels' values and then its count."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for *values, count in sorted(rows):
        family.add_metric([str(value) for value in values], count)
    return family


def _operation_families(snapshot: Snapshot) -> Iterator[Metric]:
    yield _counter(
        "kopilka_operations",
        "Money operations by kind and result (ok or an error code)",
        ["kind", "result"],
        snapshot.operations,
    )
    yield _counter(
        "kopilka_sandbox_operations",
        "Money operations in sandboxes (test ledgers, dropped with their session), by kind"
        " and result: kept apart from the bank's own",
        ["kind", "result"],
        snapshot.sandbox_operations,
    )
    yield _counter(
        "kopilka_refused_requests",
        "Requests and connections refused before any operation was read: for their token"
        " (unauthorized), by the server's bounds on connections, time and size, for how"
        " they were sent, and batches refused whole for their body or key",
        ["code"],
        snapshot.refused,
    )
    latency = HistogramMetricFamily(
        "kopilka_request_seconds",
        "Time from request to answer, by endpoint kind",
        labels=["kind"],
    )
    for kind, histogram in sorted(snapshot.latency.items()):
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(_LATENCY_BUCKETS_SECONDS, histogram.counts, strict=False):
            cumulative += count
            buckets.append((str(bound), cumulative))
        buckets.append(("+Inf", sum(histogram.counts)))
        latency.add_metric([kind], buckets, histogram.total_seconds)
    yield latency
