"""Reasons a store has told its operator's log already, so each is told once.

A database that refuses every write (a full disk, a missing grant) would otherwise
write a line per request; a server that says nothing hides it. Each reason once per
process, and only so many kept: past that the log has said enough.
"""

from __future__ import annotations

_REASONS_MAX = 100


class Told:
    def __init__(self) -> None:
        self._reasons: set[str] = set()

    def first_time(self, reason: str) -> bool:
        """True once for each reason (the first of at most a hundred)."""
        if reason in self._reasons or len(self._reasons) >= _REASONS_MAX:
            return False
        self._reasons.add(reason)
        return True
