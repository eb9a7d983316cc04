"""Calls under way on a bank that another thread may close: the close lets them end
first, and refuses the ones after it. Closed under them, a call waited for ever on a
loop stopped beneath it (the embedded bank), or lost its answer and left its socket
open (the client)."""

from __future__ import annotations

import threading


class CallsUnderWay:
    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()
        self._closed = False

    @property
    def count(self) -> int:
        return self._count

    def begin(self, *, shut: bool = False, closing: bool = False) -> bool:
        """Count a call in: False, counting nothing, once closed (or `shut` otherwise).
        `closing`: a call the close itself makes, after it has refused everyone else's."""
        with self._changed:
            if shut or (self._closed and not closing):
                return False
            self._count += 1
            return True

    def end(self) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def close(self, wait_seconds: float) -> None:
        """Refuse the calls from now on, and wait for those under way, at most
        `wait_seconds`: one held for ever must not hold the close too."""
        with self._changed:
            self._closed = True
            self._changed.wait_for(lambda: self._count == 0, wait_seconds)
