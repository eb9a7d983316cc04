"""since/till for statements, read like the shell reads them.

"YYYY-MM-DD" (a whole day: since is its first moment, till its last),
"YYYY-MM-DD HH:MM:SS" (UTC on the server), or ISO 8601 with an offset.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from kopilka.errors import InvalidInput

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_TEXT_LENGTH_MAX = 64


def parse_moment(text: str, *, end_of_day: bool) -> datetime:
    candidate = text.strip()
    if not candidate or len(candidate) > _TEXT_LENGTH_MAX:
        raise InvalidInput("invalid_period", f"{text[:_TEXT_LENGTH_MAX]!r} is not a date")
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError as error:
        raise InvalidInput(
            "invalid_period",
            f"{candidate!r} is not a date like 2024-01-31 or 2024-01-31 18:30:00",
        ) from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end_of_day and _DATE_ONLY.fullmatch(candidate):
        moment = moment.replace(hour=23, minute=59, second=59, microsecond=999_999)
    try:
        return moment.astimezone(UTC)
    except OverflowError as error:
        raise InvalidInput("invalid_period", f"{candidate!r} is out of range") from error


def parse_period(since: str | None, till: str | None) -> tuple[datetime | None, datetime]:
    start = None if since is None else parse_moment(since, end_of_day=False)
    end = datetime.now(UTC) if till is None else parse_moment(till, end_of_day=True)
    if start is not None and start > end:
        raise InvalidInput("invalid_period", "the start of the period is after its end")
    return start, end
