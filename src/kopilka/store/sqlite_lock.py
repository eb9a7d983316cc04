"""A lock file beside the database that kopilka processes take around each write.

SQLite itself serialises writers, but a writer that finds the database locked
polls: its busy handler sleeps 1, 2, 5, 10 ... up to 100 ms between tries, so
with two busy processes (`--workers 2`, or a one-shot command beside a server)
a batch could wait a hundred milliseconds after the lock was free. A process
blocked on this lock instead is woken by the kernel the moment the holder lets
go. It orders kopilka's writers only: SQLite's own lock still guards the data,
so a program that does not know this file stays correct, it merely polls.

The lock is taken before BEGIN IMMEDIATE and released after COMMIT or ROLLBACK.
The kernel drops it when a process dies, so a killed server cannot hold it.
"""

from __future__ import annotations

import os
import sys

if sys.platform != "win32":
    import fcntl

LOCK_FILE_SUFFIX = "-writer.lock"


class WriterLock:
    def __init__(self, database_path: str) -> None:
        self._fd = -1
        if sys.platform != "win32" and database_path != ":memory:":
            self._fd = os.open(database_path + LOCK_FILE_SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)

    def try_acquire(self) -> bool:
        """Take the lock if no other process has it; never waits (the event loop calls it)."""
        if self._fd < 0:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire(self) -> None:
        """Wait for the lock (on the writer thread only)."""
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the lock
            self._fd = -1
