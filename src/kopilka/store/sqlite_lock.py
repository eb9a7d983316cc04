"""A lock file beside the database that kopilka processes take around each write.

SQLite itself serialises writers, but a writer that finds the database locked
backs off: its busy handler sleeps 1, 2, 5, 10 ... up to 100 ms between tries,
so with two busy processes (`--workers 2`, or a one-shot command beside a
server) a batch could wait a hundred milliseconds after the lock was free, while
the other process took it again and again. A process waiting for this lock
instead tries it every half millisecond for the first few milliseconds (another
server's batch is about that long), then blocks in the kernel, which wakes it as
the lock is let go, up to the same 10 s SQLite would wait. Tried every half
millisecond throughout, a hundred one-shot commands waiting at once took a core of
CPU between them, from the very process holding the lock. It orders kopilka's
writers only: SQLite's own lock still guards the data, so a program that does not
know this file stays correct, it merely backs off.

The lock is taken before BEGIN IMMEDIATE and released after COMMIT or ROLLBACK.
The kernel drops it when a process dies, so a killed server cannot hold it.

The kernel's wait has no time limit and nothing interrupts it, so it is a thread's
of its own, on a descriptor of its own (`_Waiter`): the writer waits for that thread
up to its time, and a wait given up (the time is over, or the caller stopped
waiting) leaves it to let go of the lock as soon as it gets it. A lock that waits
again takes that thread over, so there is at most one per lock.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

from kopilka.home import keep_private

if sys.platform != "win32":
    import fcntl

LOCK_FILE_SUFFIX = "-writer.lock"
_POLL_SECONDS = 0.0005
# Tried every _POLL_SECONDS this long, then waited for in the kernel.
_POLL_FIRST_SECONDS = 0.005
# How often a writer waiting in the kernel looks whether its caller stopped waiting:
# soon enough after Ctrl-C, and rare enough that a hundred waiting processes cost nothing.
_STOP_CHECK_SECONDS = 0.05


def _let_go(fd: int) -> None:
    """Unlocked, then closed: a close alone leaves the lock held while a child forked
    meanwhile keeps the same open file."""
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class _Waiter:
    """A thread blocked in the kernel for the lock, on a descriptor of its own: held
    through that descriptor once `taken` is set, let go by closing it."""

    def __init__(self, lock_path: str) -> None:
        self.fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self.taken = threading.Event()
        self._state = threading.Lock()
        self._given_up = False
        self._ended = False  # took the lock after it was given up, and let go of it
        # A daemon: one still blocked as the program ends (another program holds the
        # lock) must not keep it from ending.
        threading.Thread(target=self._wait, name="kopilka-writer-lock", daemon=True).start()

    def _wait(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:  # none expected (no lock records left): the writer's wait times out
            with self._state:
                os.close(self.fd)
                self._ended = True
            raise
        with self._state:
            if self._given_up:
                _let_go(self.fd)
                self._ended = True
            else:
                self.taken.set()

    def give_up(self) -> bool:
        """Stop waiting: False if the lock was taken meanwhile (the caller has it)."""
        with self._state:
            if self.taken.is_set():
                return False
            self._given_up = True
            return True

    @property
    def ended(self) -> bool:
        return self._ended

    def wait_again(self) -> bool:
        """Taken over by a new wait: False if it has ended (a new one is needed)."""
        with self._state:
            if self._ended:
                return False
            self._given_up = False
            return True


class WriterLock:
    def __init__(self, database_path: str) -> None:
        self._fd = -1
        # Beside the file a link leads to, as SQLite keeps the journal: one process
        # given the link and another the file take turns at one lock.
        self._lock_path = os.path.realpath(database_path) + LOCK_FILE_SUFFIX
        # The wait in the kernel: the lock is held through its descriptor once it is
        # taken; given up, it may still be waiting.
        self._waiter: _Waiter | None = None
        self._held_by_waiter = False
        if sys.platform != "win32" and database_path != ":memory:":
            self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            keep_private(self._fd)

    def try_acquire(self) -> bool:
        """Take the lock if no other process has it; never waits (the event loop calls it)."""
        return self._try(exclusive=True)

    def acquire(self, timeout_seconds: float, stop: threading.Event | None = None) -> bool:
        """Wait for the lock (on the writer thread only), False after `timeout_seconds`
        or once `stop` is set."""
        started = time.monotonic()
        deadline = started + timeout_seconds
        polled_till = min(deadline, started + _POLL_FIRST_SECONDS)
        while not self.try_acquire():
            if stop is not None and stop.is_set():
                return False
            now = time.monotonic()
            if now >= deadline:
                return False
            if now >= polled_till:
                return self._wait_in_the_kernel(deadline, stop)
            time.sleep(_POLL_SECONDS)
        return True

    def _wait_in_the_kernel(self, deadline: float, stop: threading.Event | None) -> bool:
        waiter = self._waiter
        if waiter is None or not waiter.wait_again():
            waiter = self._waiter = _Waiter(self._lock_path)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                if waiter.give_up():
                    return False  # kept in self._waiter, for the next wait to take over
                break  # it took the lock as the time ran out
            if waiter.taken.wait(min(remaining, _STOP_CHECK_SECONDS)):
                break
        self._held_by_waiter = True
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
        if self._held_by_waiter:
            # Let go of by this object first: a fork in between leaves the child no
            # descriptor to close whose number may be another's by then.
            waiter, self._waiter = self._waiter, None
            self._held_by_waiter = False
            assert waiter is not None
            _let_go(waiter.fd)  # the thread has ended
        elif self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def forget_in_child(self) -> None:
        """In a process forked from this one: its copies of the descriptors closed, never
        unlocked. The lock is the open file's, which the two share, so LOCK_UN would let
        go of the parent's; kept open, they held the lock on after the parent died, until
        this process ended. Nothing is taken through it here after."""
        waiter, self._waiter = self._waiter, None
        # One that ended has closed its descriptor, whose number may be another's now.
        fds = [self._fd] + ([waiter.fd] if waiter is not None and not waiter.ended else [])
        self._fd = -1
        self._held_by_waiter = False
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):  # closed as the process forked
                    os.close(fd)

    def close(self) -> None:
        if self._held_by_waiter:
            self.release()
        # A wait given up and still blocked lets go of the lock once it gets it.
        self._waiter = None
        fd, self._fd = self._fd, -1  # as in release: forgotten before it is closed
        if fd >= 0:
            _let_go(fd)
