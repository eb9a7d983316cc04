"""UTC timestamps at microsecond precision that never go backwards within a process."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from kopilka.errors import InvalidInput
from kopilka.redaction import quoted

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """Aware datetime -> integer microseconds since the epoch (exact, no float)."""
    assert moment.tzinfo is not None
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def iso_text(moment: datetime) -> str:
    """ISO 8601 with all six digits of the microseconds, also when they are all zero
    (isoformat() alone drops them then, and a reader expecting them would fail)."""
    return moment.isoformat(timespec="microseconds")


class MonotonicClock:
    """Statements order by time: a wall clock stepping back must not reorder them.

    Within a process `now` never goes back; across processes (another one's clock
    ahead of this one's, or this one started after the clock was stepped back) the
    store tells it, with `not_before`, the latest time already written.
    """

    def __init__(self) -> None:
        self._last = _EPOCH
        self._lock = threading.Lock()

    def wall(self) -> datetime:
        """The machine's clock, as it reads now (NTP may step it back)."""
        return datetime.now(UTC)

    def now(self) -> datetime:
        with self._lock:
            current = self.wall()
            if current <= self._last:
                current = self._last + _ONE_MICROSECOND
            self._last = current
            return current

    def not_before(self, moment: datetime) -> None:
        """Every later `now` is after `moment`."""
        with self._lock:
            self._last = max(self._last, moment)


# The longest wait a thread or a socket takes (some 292 years): past it, theirs is an
# OverflowError.
SECONDS_MAX = threading.TIMEOUT_MAX


def positive_seconds(value: object, name: str) -> float:
    """A time bound a program gave: a positive number of seconds, at most SECONDS_MAX, or
    refused in one line (a socket's own error, or a wait that never ends, otherwise)."""
    # Compared, never made a float first: an int too big for one (10**400) is refused too.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= SECONDS_MAX
    ):
        shown = quoted(value)
        raise InvalidInput(
            "invalid_timeout",
            f"{name} must be a positive number of seconds, at most {SECONDS_MAX:.0f}, not {shown}",
        )
    return float(value)
