"""The `since`/`till` of a statement.

Accepted: "YYYY-MM-DD" (a whole day: since is its first moment, till its
last), "YYYY-MM-DD HH:MM:SS", and ISO 8601 with an offset. Both ends are
inclusive at the precision written: a till of "18:30:05" covers that whole
second, as statements show times to the second, "18:30" the whole minute, and
"18:30:05.8" runs to 18:30:05.899999 (the last microsecond it names); a moment written
past the microsecond is cut down to it as a till, and begins at the next one as a
since, so neither end takes in a moment outside what was written. A time without an
offset is read in `zone`: None means the user's local time (the shell; the TZ
environment variable is honoured), and a server passes UTC, having no user's
zone. The result is always an aware UTC datetime, as the store keeps UTC.

Where the clocks change, a since is the first moment whose local time is not before
what was written (the first of a time that comes twice; the change itself for a time
that never comes), and a till ends where the since of the moment after it would
begin. So consecutive periods join without a gap or an overlap, across a change too.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta, tzinfo

from kopilka.errors import InvalidInput
from kopilka.tokens import without_secrets

# The time of day as written: hours, then minutes and seconds if given, then a fraction.
_TIME_OF_DAY = re.compile(
    r"[T ]\d{2}(?P<minutes>:?\d{2})?(?P<seconds>:?\d{2})?(?:[.,](?P<fraction>\d+))?",
    re.ASCII,
)
_WEEK = re.compile(r"\d{4}-?W\d{2}", re.ASCII)
# The shapes ISO 8601 and RFC 3339 give a moment, checked before fromisoformat reads
# it: that takes any one character between the date and the time ("2026-12-03/08:00",
# even "2026-12-03-05:00"), and a fraction of a minute ("08:58.5") as one of a second.
# A space before the offset stays allowed, as `git log --date=iso` writes one. Digits
# are ASCII's: "٢٠٢٦-١٢-٠٥" is not a date written wrong, but no date's shape at all.
# Each part is written whole in ISO's basic form (20261206, 0052) or its extended one
# (2026-12-06, 00:52), as fromisoformat reads them: "00:5223" is a time misspelt, not
# one out of the calendar's range.
_CLOCK = r"\d{2}(?::\d{2}(?::\d{2}(?:[.,]\d+)?)?|\d{2}(?:\d{2}(?:[.,]\d+)?)?)?"
_MOMENT = re.compile(
    r"\d{4}(?:-\d{2}-\d{2}|\d{4}|-W\d{2}(?:-\d)?|W\d{2}\d?)"  # calendar or week date
    rf"(?:(?P<separator>[Tt ]){_CLOCK}"  # time of day
    rf" ?(?P<zone>[Zz]|[+-]{_CLOCK})?)?",  # its offset
    re.ASCII,
)
_TEXT_LENGTH_MAX = 64
_MICROSECOND = timedelta(microseconds=1)
_ENDS_OF_TIME = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
_EXAMPLES = "2024-01-31, 2024-01-31 18:30:00 or 2024-01-31T18:30:00+02:00"
_PLAIN_REASONS = (
    "day is out of range for month",
    "month must be in 1..12",
    "hour must be in 0..23",
    "minute must be in 0..59",
    "second must be in 0..59",
)


def _written(text: str, zone: tzinfo | None) -> tuple[str, datetime]:
    """The text as read, and the moment it names as written (in `zone`, if it names
    none of its own), before it is placed on the UTC time line."""
    # Spaces around are forgiven, as around an amount; a tab, a line end or a control
    # character is no part of a date, and is refused as amounts and names refuse it.
    candidate = text.strip(" ")
    if not candidate or len(candidate) > _TEXT_LENGTH_MAX:
        shown = without_secrets(text)[:_TEXT_LENGTH_MAX]  # a token pasted here, not shown in part
        raise InvalidInput("invalid_period", f"{shown!r} is not a date")
    shape = _MOMENT.fullmatch(candidate)
    try:
        if shape is None:
            raise ValueError(candidate)
        if shape["separator"] == "t" or shape["zone"] == "z":  # RFC 3339 allows either case
            candidate = candidate.upper()
        moment = datetime.fromisoformat(candidate)
    except ValueError as error:
        if shape is not None:  # of a date's shape, out of the calendar's range
            reason = str(error)
            # Python's own words where they are plain ("second must be in 0..59": no leap
            # second); not its others ("Invalid isoformat string", a timedelta's repr).
            said = f": {reason}" if reason.startswith(_PLAIN_REASONS) else ""
            raise InvalidInput(
                "invalid_period", f"{candidate!r} is no moment of the calendar{said}"
            ) from error
        raise InvalidInput(
            "invalid_period", f"{candidate!r} is not a date like {_EXAMPLES}"
        ) from error
    if moment.tzinfo is None and zone is not None:
        moment = moment.replace(tzinfo=zone)
    return candidate, moment


def _since_instant(candidate: str, moment: datetime) -> datetime:
    return _first_instant_from(_first_microsecond_from(candidate, moment))


def _till_instant(candidate: str, moment: datetime) -> datetime:
    last = _last_moment_written(candidate, moment)
    try:
        after = last + _MICROSECOND
    except OverflowError:  # the calendar's last microsecond: no moment after it
        return _first_instant_from(last)
    end = _first_instant_from(after)
    if end in _ENDS_OF_TIME:  # a moment after the till that UTC cannot hold
        return end
    return end - _MICROSECOND


def _first_instant_from(wall: datetime) -> datetime:
    """The first instant (UTC) whose time in the moment's zone is not before `wall`: the
    first of a local time the clocks show twice, the change itself for one they skip."""
    try:
        first, second = sorted(wall.replace(fold=fold).astimezone(UTC) for fold in (0, 1))
        written = wall.replace(tzinfo=None)
        if _wall_at(first, wall.tzinfo) == written:
            return first
        if _wall_at(second, wall.tzinfo) == written:
            return second
        # Skipped by the clocks: the change lies between the two readings.
        while second - first > _MICROSECOND:
            middle = first + (second - first) // 2
            if _wall_at(middle, wall.tzinfo) >= written:
                second = middle
            else:
                first = middle
        return second
    except (OverflowError, ValueError, OSError):
        return _at_the_end_of_time(wall)


def _wall_at(instant: datetime, zone: tzinfo | None) -> datetime:
    # astimezone(None) is the local time, as a naive datetime's astimezone() reads one.
    return instant.astimezone(zone).replace(tzinfo=None)


def _at_the_end_of_time(moment: datetime) -> datetime:
    """A moment in the first or last days of the calendar that UTC cannot hold, or that
    the C library's local time does not reach: year 1 read east of UTC, 9999 west of
    it. The API takes such a moment in UTC; the period then simply runs to that end."""
    if moment.tzinfo is None:
        offset = datetime.now().astimezone().tzinfo  # no DST rules reach year 1 or 9999
        with contextlib.suppress(OverflowError, ValueError):
            return moment.replace(tzinfo=offset).astimezone(UTC)
    end = datetime.min if moment.year == datetime.min.year else datetime.max
    return end.replace(tzinfo=UTC)


def _first_microsecond_from(text: str, moment: datetime) -> datetime:
    """A start written past the microsecond ("05.0073131") begins at the next whole one:
    read as written down to the microsecond, it would take in what came just before it."""
    if _past_the_microsecond(text):
        with contextlib.suppress(OverflowError):  # the calendar's last microsecond: kept
            return moment + _MICROSECOND
    return moment


def _fraction(text: str) -> str:
    """The digits of the fraction of a second `text` writes, "" for none."""
    time_of_day = _TIME_OF_DAY.search(text)
    return (time_of_day["fraction"] or "") if time_of_day is not None else ""


def _past_the_microsecond(text: str) -> bool:
    return bool(_fraction(text)[6:].strip("0"))


def _last_moment_written(text: str, moment: datetime) -> datetime:
    """The last microsecond of the day, hour, minute or second that `text` names. A
    date in any of ISO 8601's forms ("2026-12-03", "20261203", the week date
    "2026-W49-4") names a whole day, and a week ("2026-W49") the whole week."""
    time_of_day = _TIME_OF_DAY.search(text)
    if time_of_day is None:
        if _WEEK.fullmatch(text):  # "2026-W49" is the whole week, Monday to Sunday
            try:
                moment += timedelta(days=6)
            except OverflowError:  # the calendar's last week ends with the calendar
                moment = datetime.max.replace(tzinfo=moment.tzinfo)
        return moment.replace(hour=23, minute=59, second=59, microsecond=999_999)
    if time_of_day["fraction"]:  # "35.8" runs to 35.899999: the last microsecond it names
        digits = len(time_of_day["fraction"])
        return moment + timedelta(microseconds=10 ** max(6 - digits, 0) - 1)
    if time_of_day["seconds"]:
        return moment.replace(microsecond=999_999)
    if time_of_day["minutes"]:
        return moment.replace(second=59, microsecond=999_999)
    return moment.replace(minute=59, second=59, microsecond=999_999)


def parse_period(
    since: str | None,
    till: str | None,
    *,
    now: datetime | None = None,
    zone: tzinfo | None = None,
) -> tuple[datetime | None, datetime]:
    """(since or None for "from the beginning", till or now), both inclusive.

    A period written in order that holds no moment (it lies in time the clocks skip,
    or within one microsecond) is empty: its since is then just after its till. Such a
    period sent on (the shell and the Python client send instants, to the microsecond)
    reads the same: a since one microsecond after a till written to the microsecond."""
    start = written_start = None
    if since is not None:
        since_text, written_start = _written(since, zone)
        start = _since_instant(since_text, written_start)
    if till is None:
        end = now or datetime.now(UTC)
        written_end = None
    else:
        till_text, till_moment = _written(till, zone)
        written_end = _last_moment_written(till_text, till_moment)
        end = _till_instant(till_text, till_moment)
    if start is not None and start > end:
        if till is None:
            # Up to now as the bank has it, which its engine works out (never before its
            # latest operation): a since past this machine's clock may not be past that,
            # and the engine says so if it is.
            return start, end
        empty_as_sent = start - end == _MICROSECOND and len(_fraction(till_text)) >= 6
        if not (empty_as_sent or _in_order(written_start, written_end)):
            raise _reversed()
    return start, end


def since_in_the_future() -> InvalidInput:
    return InvalidInput("invalid_period", "the start of the period (since) is in the future")


def check_order(since: datetime | None, till: datetime) -> None:
    """Refuse a since after the till; one just after it (a microsecond) is the empty
    period, what a period of skipped clock time or within a microsecond reads as.
    Compared as instants: two times of one zone are subtracted as the clock shows them
    otherwise, and the hour shown twice where the clocks go back would be out of order."""
    if since is not None and since.astimezone(UTC) - till.astimezone(UTC) > _MICROSECOND:
        raise _reversed()


def _reversed() -> InvalidInput:
    return InvalidInput("invalid_period", "the start of the period (since) is after its end (till)")


def _in_order(since: datetime | None, till: datetime | None) -> bool:
    """Whether since comes no later than till as written (a local time, as the clock
    shows it); one with an offset and one without are not compared so."""
    try:
        return since is not None and till is not None and since <= till
    except TypeError:
        return False


def period_end(value: object, name: str) -> datetime:
    """An end of a period given by a program (the Python APIs): a datetime, read as UTC
    without an offset, as the API reads such a time. Anything else is refused in one
    line, where it would fail deep inside as an attribute error."""
    if not isinstance(value, datetime):
        raise InvalidInput(
            "invalid_period", f"{name} must be a datetime, not {type(value).__name__}"
        )
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    try:
        moment.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, 9999 west of it: no database takes it
        return _at_the_end_of_time(moment)
    return moment
