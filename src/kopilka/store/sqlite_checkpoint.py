"""WAL checkpoints on their own connection and thread, off the commit path.

A commit is durable once its WAL frames are fsynced (synchronous=FULL); copying
them into the database file, the checkpoint, may happen any time later. SQLite's
automatic checkpoint runs inside the COMMIT that takes the WAL past 1,000 pages,
so that batch's callers wait for thousands of page writes and a second fsync.
Here the writer only calls `after_commit`, and a passive checkpoint (which never
blocks the writer) runs beside the next batch.

The writer keeps an automatic checkpoint at a higher mark (`WRITER_AUTOCHECKPOINT_PAGES`)
as the backstop: were this thread to fall behind or fail, the WAL stays bounded.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from kopilka.store.sqlite_fork_gate import gated
from kopilka.store.sqlite_jobs import submit

logger = logging.getLogger(__name__)

WRITER_AUTOCHECKPOINT_PAGES = 8_000
# At most this often: a rarer checkpoint writes a hot page once for many commits
# (and each one fsyncs the database file).
_INTERVAL_SECONDS = 0.25


class Checkpointer:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        interval_seconds: float = _INTERVAL_SECONDS,
        database: str = "the database",
    ) -> None:
        """`database`: its path, as the log names it (a server may serve several)."""
        self._connect = connect
        self._database = database
        self._interval_seconds = interval_seconds
        self._connection: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="kopilka-sqlite-checkpoint")
        self._lock = threading.Lock()
        self._running = False
        self._last_started = float("-inf")
        self._closed = False
        self._failing = False  # a failure is logged once, not every interval

    def after_commit(self) -> None:
        """Start a checkpoint unless one is running or one started just now."""
        now = time.monotonic()
        with self._lock:  # held while submitting, so that close() cannot come between
            if self._closed or self._running or now - self._last_started < self._interval_seconds:
                return
            try:
                self._thread.submit(gated(self._checkpoint))
            except RuntimeError:
                # The program is ending and its thread pools have stopped: the writer's
                # automatic checkpoint is left to do it. Never raised: this follows a
                # commit, which no failure here may turn into a refusal.
                return
            self._running = True
            self._last_started = now

    def _checkpoint(self) -> None:
        try:
            if self._connection is None:
                self._connection = self._connect()
            self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as error:
            # Harmless for the data: the writer's own automatic checkpoint takes over.
            if not self._failing:
                logger.warning(
                    "WAL checkpoints of %s fail, the writer checkpoints instead: %s",
                    self._database,
                    error,
                )
            self._failing = True
        else:
            if self._failing:
                logger.warning("WAL checkpoints of %s work again", self._database)
            self._failing = False
        finally:
            with self._lock:
                self._running = False

    def close(self, end: Callable[[sqlite3.Connection], None] = sqlite3.Connection.close) -> None:
        """`end`: what is done with the connection (closed, or left open: sqlite_files)."""
        with self._lock:  # no checkpoint is started after this
            self._closed = True
        # After any checkpoint still running; not under the lock, which that one takes as
        # it ends (run here, at the program's end, this job may wait for a fork, and
        # that fork for the checkpoint).
        submit(self._thread, partial(self._end_connection, end))
        self._thread.shutdown(wait=True)

    def _end_connection(self, end: Callable[[sqlite3.Connection], None]) -> None:
        if self._connection is not None:
            end(self._connection)
            self._connection = None
