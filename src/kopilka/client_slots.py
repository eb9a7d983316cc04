"""A client's connections, taken by the threads that call it in the order they asked.

The pool of httpx's transport (httpcore) serves calls that wait for a connection in
turn, but given more calls than connections it may close a connection it has just
handed to a waiting call (encode/httpcore#1110): the call, its answer come already, then
waits until its timeout, and a write among them ends "may have been applied". So a call
takes a slot here first, and the pool never has a call waiting. A slot freed goes
straight to the call that has waited longest: with threading's Semaphore the thread
that freed it, calling again at once, took it back first, and a thread among many could
wait out its whole timeout while the others were served.
"""

from __future__ import annotations

import threading
from collections import deque


class ConnectionSlots:
    def __init__(self, slots: int) -> None:
        self._free = slots
        self._lock = threading.Lock()
        self._waiting: deque[threading.Event] = deque()

    def take_free(self) -> bool:
        """A slot if one is free now, no call waiting for one; else False, at once."""
        with self._lock:
            if self._free:
                self._free -= 1
                return True
            return False

    def take(self, timeout_seconds: float | None) -> bool:
        """A slot, within the timeout (None: however long), after every call that asked
        before; False if none came."""
        with self._lock:
            if self._free:  # none waits: a slot freed goes to a waiting call
                self._free -= 1
                return True
            handed = threading.Event()
            self._waiting.append(handed)
        try:
            handed.wait(timeout_seconds)
            return self._taken(handed)
        except BaseException:  # Ctrl-C: it takes no slot away, one handed over goes on
            if self._taken(handed):
                self.give_back()
            raise

    def _taken(self, handed: threading.Event) -> bool:
        """Whether a slot was handed over; if not, the call waits no more."""
        with self._lock:
            if handed.is_set():
                return True
            if handed in self._waiting:
                self._waiting.remove(handed)
            return False

    def give_back(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._free += 1

    @property
    def waiting(self) -> int:
        """How many calls wait for a slot now."""
        with self._lock:
            return len(self._waiting)
