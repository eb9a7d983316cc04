"""The SQLite store's work, held still while this process forks.

SQLite keeps mutexes of its own for the whole process (its memory allocator's, its list
of open files). A fork copies each as it is: one a thread of the parent's held at that
instant stays held in the child, where no thread will ever release it, and the child's
first SQLite call (opening a ledger of its own, say) hung for good. So a fork waits
until no job of the store's is inside SQLite, and no job begins until the fork is done.

A job costs two acquisitions of an uncontended lock. Its waits that hold nothing of
SQLite's (for another process's write lock) step out of the gate, so a fork waits only
for SQLite's own work: a batch, a read, a checkpoint, or at worst a migration or an
integrity check. It waits for it to end: going ahead gave a child that could hang. A
wait past `_SAID_AFTER_SECONDS` is logged; one past `_WAITED_AT_MOST_SECONDS` (a job
held at the gate for good) goes ahead, logged too. A signal that ends programs (Ctrl-C,
SIGTERM, SIGHUP) during the wait acts once the fork is done.
"""

from __future__ import annotations

import _thread
import concurrent.futures.thread  # noqa: F401 (its fork hooks first: see the end)
import contextlib
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, TypeVar

from kopilka.held_signals import noting, put_back

T = TypeVar("T")

logger = logging.getLogger(__name__)

_SAID_AFTER_SECONDS = 10.0
# A job never held that long (the store's longest SQLite work, a migration or an
# integrity check, ends well before): past it the fork goes ahead, as it always had.
_WAITED_AT_MOST_SECONDS = 60.0


class _Gate:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # Jobs running now, by the thread that began each: a fork on one of those (a
        # logging handler that forks, say) waits for the others, never for itself.
        self._inside: Counter[int] = Counter()
        self._forking = 0  # threads between their fork's before and after
        # While a fork on the main thread waits: the signals' own handlers, the wakeup
        # descriptor, and the signals that came meanwhile, to send again once it is done.
        self._holding: int | None = None  # the thread that holds them
        self._handlers: dict[int, Any] = {}
        self._wakeup_fd = -1
        self._came: list[int] = []

    @property
    def inside(self) -> int:
        return self._inside.total()

    def enter(self) -> int:
        holder = threading.get_ident()
        with self._lock:
            while self._forking:
                self._changed.wait()
            self._inside[holder] += 1
        return holder

    def leave(self, holder: int | None = None) -> None:
        with self._lock:
            self._inside[threading.get_ident() if holder is None else holder] -= 1
            if self._forking:
                self._changed.notify_all()

    def before_fork(self) -> None:
        me = threading.get_ident()

        def none_but_mine() -> bool:
            return self._inside.total() == self._inside[me]

        with self._lock:
            self._forking += 1
            if none_but_mine():
                return
        self._hold_signals()
        with self._lock:
            deadline = time.monotonic() + _WAITED_AT_MOST_SECONDS
            if self._changed.wait_for(none_but_mine, _SAID_AFTER_SECONDS):
                return
            logger.warning(
                "a fork has waited %g s for SQLite work under way to end", _SAID_AFTER_SECONDS
            )
            if not self._changed.wait_for(none_but_mine, deadline - time.monotonic()):
                logger.warning(
                    "a fork went ahead after %g s with SQLite work under way: a child that"
                    " uses SQLite may hang",
                    _WAITED_AT_MOST_SECONDS,
                )

    def after_fork_in_parent(self) -> None:
        with self._lock:
            self._forking -= 1
            if not self._forking:
                self._changed.notify_all()
        if self._holding == threading.get_ident():  # not another thread's fork
            self._let_signals_go(send_again=True)

    def after_fork_in_child(self) -> None:
        if self._handlers:  # the forking thread is the child's main thread
            self._let_signals_go(send_again=False)  # the parent's, which has them

    def _hold_signals(self) -> None:
        """Ctrl-C, SIGTERM, SIGHUP noted while the fork waits, on the main thread (which
        alone takes them): a handler's exception raised in a fork's hook is printed as
        ignored, and the fork went ahead at once. The wakeup descriptor (asyncio's) is
        told nothing meanwhile, or a loop's handler would run for the signal twice."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._holding = threading.get_ident()
        self._wakeup_fd = signal.set_wakeup_fd(-1)
        self._handlers = noting(self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self._came.append(signum)

    def _let_signals_go(self, *, send_again: bool) -> None:
        put_back(self._handlers)
        self._handlers = {}
        if self._wakeup_fd != -1:
            signal.set_wakeup_fd(self._wakeup_fd)
        self._holding, self._wakeup_fd = None, -1
        came, self._came = self._came, []
        if send_again and came:
            # Sent from here, one would be raised in this hook, printed and ignored as
            # well. From a bare thread, not waited for as it starts: it runs once this one
            # lets go of the GIL, past the fork. A signal, not interrupt_main(), which
            # leaves a sleep asleep.
            main = threading.main_thread().ident
            assert main is not None  # it has started: the signals came to it
            for signum in came:
                _thread.start_new_thread(signal.pthread_kill, (main, signum))


_gate = _Gate()


def enter() -> int:
    """Held at the gate (waiting for a fork under way) till `leave()`: the thread that
    holds it, for a `leave(holder)` on another thread."""
    return _gate.enter()


def leave(holder: int | None = None) -> None:
    """Let go of the gate held by `holder` (this thread, if not given)."""
    _gate.leave(holder)


def jobs_inside() -> int:
    """How many jobs are inside the gate now: none once the store is idle."""
    return _gate.inside


@contextlib.contextmanager
def stepped_out() -> Iterator[None]:
    """A job's wait that calls no SQLite and holds nothing of SQLite's (for another
    process's write lock, up to 10 s), which a fork need not wait for."""
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
    _gate.after_fork_in_child()
    _gate = _Gate()


# Registered after the thread pools' and logging's own (imported above), so that this
# wait runs before they take their locks for the fork: a job waited for submits work to a
# pool (a checkpoint after its commit) and logs.
if hasattr(os, "register_at_fork"):  # none on Windows, which has no fork
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
