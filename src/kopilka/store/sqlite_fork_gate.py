"""The SQLite store's work, held still while this process forks.

SQLite keeps mutexes of its own for the whole process (its memory allocator's, its list
of open files). A fork copies each as it is: one a thread of the parent's held at that
instant stays held in the child, where no thread will ever release it, and the child's
first SQLite call (opening a ledger of its own, say) hung for good. So a fork waits
until no job of the store's is inside SQLite, and no job begins until the fork is done.

A job costs two acquisitions of an uncontended lock. A fork waits at most
`_LONGEST_WAIT_SECONDS` (a job stuck in a busy wait, one waiting on another held at the
gate), then goes ahead as it always could.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

_LONGEST_WAIT_SECONDS = 10.0


class _Gate:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._inside = 0  # jobs running now
        self._forking = 0  # threads between their fork's before and after

    def enter(self) -> None:
        with self._lock:
            while self._forking:
                self._changed.wait()
            self._inside += 1

    def leave(self) -> None:
        with self._lock:
            self._inside -= 1
            if not self._inside and self._forking:
                self._changed.notify_all()

    def before_fork(self) -> None:
        with self._lock:
            self._forking += 1
            self._changed.wait_for(lambda: not self._inside, _LONGEST_WAIT_SECONDS)

    def after_fork_in_parent(self) -> None:
        with self._lock:
            self._forking -= 1
            if not self._forking:
                self._changed.notify_all()


_gate = _Gate()


def enter() -> None:
    """Held at the gate (waiting for a fork under way) till `leave()`, on any thread."""
    _gate.enter()


def leave() -> None:
    _gate.leave()


@contextlib.contextmanager
def stepped_out() -> Iterator[None]:
    """A job's wait that calls no SQLite (for another process's write lock, up to 10 s)
    and holds nothing of SQLite's, which a fork need not wait for."""
    leave()
    try:
        yield
    finally:
        enter()


def gated(work: Callable[[], T]) -> Callable[[], T]:
    """`work`, run as a job that a fork waits for."""

    def job() -> T:
        enter()
        try:
            return work()
        finally:
            leave()

    return job


def _before_fork() -> None:
    _gate.before_fork()


def _after_fork_in_parent() -> None:
    _gate.after_fork_in_parent()


def _after_fork_in_child() -> None:
    """A gate of its own: the child has none of the parent's jobs, nor its waiting threads
    (and the copied lock may have been held by one of them)."""
    global _gate
    _gate = _Gate()


if hasattr(os, "register_at_fork"):  # none on Windows, which has no fork
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
