"""A lock file beside the database that kopilka processes take around each write.

SQLite itself serialises writers, but a writer that finds the database locked
backs off: its busy handler sleeps 1, 2, 5, 10 ... up to 100 ms between tries,
so with two busy processes (`--workers 2`, or a one-shot command beside a
server) a batch could wait a hundred milliseconds after the lock was free, while
the other process took it again and again. A process waiting for this lock
instead tries it every half millisecond (a system call each; the kernel offers
no wait with a time limit), up to the same 10 s SQLite would wait. It orders
kopilka's writers only: SQLite's own lock still guards the data, so a program
that does not know this file stays correct, it merely backs off.

The lock is taken before BEGIN IMMEDIATE and released after COMMIT or ROLLBACK.
The kernel drops it when a process dies, so a killed server cannot hold it.
"""

from __future__ import annotations

import os
import sys
import threading
import time

if sys.platform != "win32":
    import fcntl

LOCK_FILE_SUFFIX = "-writer.lock"
_POLL_SECONDS = 0.0005


class WriterLock:
    def __init__(self, database_path: str) -> None:
        self._fd = -1
        if sys.platform != "win32" and database_path != ":memory:":
            self._fd = os.open(database_path + LOCK_FILE_SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)

    def try_acquire(self) -> bool:
        """Take the lock if no other process has it; never waits (the event loop calls it)."""
        return self._try(exclusive=True)

    def acquire(self, timeout_seconds: float, stop: threading.Event | None = None) -> bool:
        """Wait for the lock (on the writer thread only), False after `timeout_seconds`
        or once `stop` is set."""
        deadline = time.monotonic() + timeout_seconds
        while not self.try_acquire():
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                return False
            time.sleep(_POLL_SECONDS)
        return True

    def free_now(self) -> bool:
        """Whether no writer holds the lock at this moment (taken shared and let go at
        once, never waiting: the event loop calls it). Through an instance of its own:
        locks taken through two descriptors of one process exclude each other too. A
        batch that held it has committed or rolled back by the time it is free, and one
        that takes it later takes its time later."""
        if not self._try(exclusive=False):
            return False
        self.release()
        return True

    def _try(self, *, exclusive: bool) -> bool:
        """The lock taken without waiting: False where another holds it. With no lock
        file (Windows, an in-memory database) there is nothing to take."""
        if self._fd < 0:
            return True
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the lock
            self._fd = -1
