"""Every bound in one place: queues, batches, and request sizes all have an upper limit."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    # Operations applied in one database transaction.
    batch_operations_max: int = 8_000
    # Operations in one transaction while another caller writes too (waiting now, or in
    # a batch within the last `shared_batch_seconds`). Everyone in a batch waits for all
    # of it: beside an import, a teller's transfer waits for batches of 2,000, not of
    # 8,000. Requests are queued in pieces of this size; a lone caller's batch takes four.
    shared_batch_operations_max: int = 2_000
    shared_batch_seconds: float = 1.0
    # Requests waiting for the writer; past this, new ones are refused with `busy`.
    queue_depth_max: int = 100_000
    # Attempts for a batch that hit a transient store error (deadlock, busy).
    batch_attempts_max: int = 8
    # Operations one library or batch-API call may carry.
    request_operations_max: int = 100_000
    # Statement rows read from the store at a time.
    statement_page_rows: int = 1_000

    def __post_init__(self) -> None:
        assert 1 <= self.batch_operations_max <= 100_000
        assert self.batch_operations_max <= self.queue_depth_max
        assert self.shared_batch_operations_max >= 1
        assert self.shared_batch_seconds >= 0
        assert 1 <= self.batch_attempts_max <= 100
        assert self.request_operations_max >= 1
        assert 1 <= self.statement_page_rows <= 100_000
