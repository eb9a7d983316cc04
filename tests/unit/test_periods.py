"""--since/--till: accepted forms, whole days, the user's time zone, and refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo

import pytest

from kopilka.errors import InvalidInput
from kopilka.periods import check_order, parse_period, period_end


def end_of(text: str, *, end_of_day: bool, zone: tzinfo | None = None) -> datetime:
    """What one end of a period reads: a bare date is its first moment, or its last."""
    start, end = parse_period(*((None, text) if end_of_day else (text, None)), zone=zone)
    assert start is not None or end_of_day
    return end if end_of_day or start is None else start


@pytest.fixture
def time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in a zone two hours ahead of UTC in January ("EET", POSIX rules, no tzdata needed)."""
    monkeypatch.setenv("TZ", "EET-2EEST,M3.5.0/3,M10.5.0/4")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_date_since_is_the_first_moment_of_the_day(utc: None) -> None:
    assert end_of("2024-01-31", end_of_day=False) == datetime(2024, 1, 31, tzinfo=UTC)


def test_a_date_till_is_the_last_moment_of_the_day(utc: None) -> None:
    expected = datetime(2024, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert end_of("2024-01-31", end_of_day=True) == expected


@pytest.mark.parametrize(
    ("text", "last"),
    [
        ("2024-01-31 18:30:05", datetime(2024, 1, 31, 18, 30, 5, 999_999, tzinfo=UTC)),
        ("2024-01-31T18:30", datetime(2024, 1, 31, 18, 30, 59, 999_999, tzinfo=UTC)),
        ("2024-01-31T18", datetime(2024, 1, 31, 18, 59, 59, 999_999, tzinfo=UTC)),
        ("2024-01-31T183005", datetime(2024, 1, 31, 18, 30, 5, 999_999, tzinfo=UTC)),
        ("20240131", datetime(2024, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
        ("2024-W05-3", datetime(2024, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)),  # a week date
        ("2024W053", datetime(2024, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
        ("2024-W05", datetime(2024, 2, 4, 23, 59, 59, 999_999, tzinfo=UTC)),  # its Sunday
        ("2024-01-31 18:30:05+02:00", datetime(2024, 1, 31, 16, 30, 5, 999_999, tzinfo=UTC)),
        ("2024-01-31 18:30:05.250", datetime(2024, 1, 31, 18, 30, 5, 250_999, tzinfo=UTC)),
        ("2024-01-31 18:30:05.8", datetime(2024, 1, 31, 18, 30, 5, 899_999, tzinfo=UTC)),
        ("2024-01-31 18:30:05,123456", datetime(2024, 1, 31, 18, 30, 5, 123_456, tzinfo=UTC)),
    ],
)
def test_a_till_covers_the_whole_of_what_it_names(utc: None, text: str, last: datetime) -> None:
    assert end_of(text, end_of_day=True) == last


def test_a_since_is_the_first_moment_of_what_it_names(utc: None) -> None:
    expected = datetime(2024, 1, 31, 18, 30, tzinfo=UTC)
    assert end_of("2024-01-31 18:30:00", end_of_day=False) == expected
    assert end_of("2024-01-31T18:30", end_of_day=False) == expected


def test_a_moment_written_past_the_microsecond_takes_in_nothing_outside_it(utc: None) -> None:
    """A since past the microsecond begins at the next whole one, a till ends at the one
    it runs into: an operation at .007313 is before a since of .0073131."""
    operation = datetime(2026, 12, 3, 14, 18, 54, 7_313, tzinfo=UTC)
    assert end_of("2026-12-03T14:18:54.0073131Z", end_of_day=False) > operation
    assert end_of("2026-12-03T14:18:54.0073130Z", end_of_day=False) == operation
    assert end_of("2026-12-03T14:18:54.0073139Z", end_of_day=True) == operation
    # Both ends within one microsecond: a period in order with no moment in it, empty.
    start, end = parse_period("2026-12-03T14:18:54.0073131Z", "2026-12-03T14:18:54.0073130Z")
    assert start == end + timedelta(microseconds=1)
    with pytest.raises(InvalidInput, match="after its end"):
        parse_period("2026-12-03T14:18:54.0073141Z", "2026-12-03T14:18:54.0073130Z")


def test_the_same_moment_past_the_microsecond_as_both_ends_is_an_empty_period(
    utc: None,
) -> None:
    """Not "since after till": the user wrote one moment for both."""
    moment = "2026-12-03T19:02:01.1894315Z"
    start, end = parse_period(moment, moment)
    assert start == end + timedelta(microseconds=1)


def test_the_calendars_last_week_runs_to_its_end(utc: None) -> None:
    last = datetime.max.replace(tzinfo=UTC)
    assert end_of("9999-W52", end_of_day=True) == last
    assert end_of("9999W52", end_of_day=True) == last


def test_naive_times_are_local(time_zone: None) -> None:
    assert end_of("2024-01-31 18:30:00", end_of_day=False) == datetime(
        2024, 1, 31, 16, 30, tzinfo=UTC
    )
    assert end_of("2024-01-31", end_of_day=False) == datetime(2024, 1, 30, 22, 0, tzinfo=UTC)


def test_daylight_saving_time_is_honoured(time_zone: None) -> None:
    # EEST in July is three hours ahead of UTC.
    assert end_of("2024-07-01 12:00:00", end_of_day=False) == datetime(2024, 7, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """US Eastern rules (POSIX, no tzdata needed): in 2026 the clocks skip 02:00-02:59 on
    March 8 (06:00-07:00 UTC is 01:00 EST then 03:00 EDT) and show 01:00-01:59 twice on
    November 1 (05:00-06:00 UTC in EDT, 06:00-07:00 UTC in EST)."""
    monkeypatch.setenv("TZ", "EST5EDT,M3.2.0,M11.1.0")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _utc(year: int, month: int, day: int, hour: int, minute: int = 0, *rest: int) -> datetime:
    return datetime(year, month, day, hour, minute, *rest, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("EST5EDT,M3.2.0,M11.1.0", "2026-03-08"),
        ("EST5EDT,M3.2.0,M11.1.0", "2026-11-01"),
        # Chile's rules: the clocks change at midnight, so a day starts in the change.
        ("<-04>4<-03>,M9.1.6/24,M4.1.6/24", "2026-04-05"),
        ("<-04>4<-03>,M9.1.6/24,M4.1.6/24", "2026-09-06"),
    ],
)
def test_periods_join_across_a_change_of_the_clocks(
    monkeypatch: pytest.MonkeyPatch, zone: str, day: str
) -> None:
    """Consecutive days, hours and minutes around a change: each till ends just before
    the next since, so no operation falls in two periods or in none."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        _periods_join(day)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_day_the_clocks_start_after_midnight_begins_at_the_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "<-04>4<-03>,M9.1.6/24,M4.1.6/24")
    time.tzset()
    try:
        # 2026-09-06 00:00 never comes in Chile: the day begins at 01:00 -03.
        assert end_of("2026-09-06", end_of_day=False) == _utc(2026, 9, 6, 4)
        # 2026-04-04 23:00-23:59 comes twice: the day ends after the second.
        assert end_of("2026-04-04", end_of_day=True) == _utc(2026, 4, 5, 3, 59, 59, 999_999)
    finally:
        monkeypatch.undo()
        time.tzset()


def _periods_join(day: str) -> None:
    start = datetime.fromisoformat(day) - timedelta(days=1)
    units = [(timedelta(days=1), "%Y-%m-%d"), (timedelta(hours=1), "%Y-%m-%dT%H")]
    units.append((timedelta(minutes=1), "%Y-%m-%d %H:%M"))
    for step, form in units:
        moment = start
        while moment < start + timedelta(days=3):
            till = end_of(moment.strftime(form), end_of_day=True)
            since = end_of((moment + step).strftime(form), end_of_day=False)
            assert till + timedelta(microseconds=1) == since, moment
            assert end_of(moment.strftime(form), end_of_day=False) <= since
            moment += step


def test_a_since_the_clocks_skip_begins_at_the_change(new_york: None) -> None:
    change = _utc(2026, 3, 8, 7)
    assert end_of("2026-03-08 02:00", end_of_day=False) == change
    assert end_of("2026-03-08 02:30:15", end_of_day=False) == change
    assert end_of("2026-03-08 03:00", end_of_day=False) == change
    assert end_of("2026-03-08 01:59:59", end_of_day=True) == change - timedelta(microseconds=1)
    # The skipped hour holds no moment: a period inside it is empty, not reversed.
    assert end_of("2026-03-08 02:59", end_of_day=True) == change - timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("since", "till"),
    [
        ("2026-03-08 02:00", "2026-03-08 02:59"),
        ("2026-03-08T02", "2026-03-08T02"),
        ("2026-03-08 02:15:00", "2026-03-08 02:29:59.5"),
        ("2026-03-08 01:59:59.9999995", "2026-03-08 02:00"),
    ],
)
def test_a_period_inside_time_the_clocks_skip_is_empty_not_reversed(
    new_york: None, since: str, till: str
) -> None:
    start, end = parse_period(since, till)
    assert start == _utc(2026, 3, 8, 7)
    assert end == start - timedelta(microseconds=1)


def test_a_period_written_backwards_is_still_refused_around_a_change(new_york: None) -> None:
    with pytest.raises(InvalidInput, match="after its end"):
        parse_period("2026-03-08 02:30", "2026-03-08 02:29")
    with pytest.raises(InvalidInput, match="after its end"):
        parse_period("2026-03-08 03:00", "2026-03-08 02:59")


def test_a_time_the_clocks_show_twice_is_read_as_its_first(new_york: None) -> None:
    assert end_of("2026-11-01 01:30", end_of_day=False) == _utc(2026, 11, 1, 5, 30)
    # A till in the hour shown twice ends before the since just after it: the first
    # 01:59:59 as a till would leave the second 01:00-01:59 in no period.
    assert end_of("2026-11-01 01:59:59", end_of_day=True) == _utc(2026, 11, 1, 6, 59, 59, 999_999)
    assert end_of("2026-11-01", end_of_day=True) == _utc(2026, 11, 2, 4, 59, 59, 999_999)


def test_an_offset_wins_over_the_local_zone(time_zone: None) -> None:
    moment = end_of("2024-01-31T18:30:00+05:00", end_of_day=False)
    assert moment == datetime(2024, 1, 31, 13, 30, tzinfo=UTC)
    assert moment.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        *("", "  ", "yesterday", "2024-13-01", "2024-01-32", "31.01.2024"),
        # fromisoformat takes any one character before the time, and a fraction of a
        # minute as one of a second: neither is a shape ISO 8601 gives a moment.
        *("2024-01-31/18:30", "2024-01-31x18:30", "2024-01-31-05:00", "2024-01-31T18:30.5"),
        # Only plain spaces around are forgiven, as around an amount.
        *("2024-01-31\x1f", "\t2024-01-31", "2024-01-31\n", "2024-01-31\u3000", "2024-01-31\x85"),
    ],
)
def test_not_dates(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        end_of(text, end_of_day=False)
    assert caught.value.code == "invalid_period"


def test_spaces_around_a_date_are_forgiven(utc: None) -> None:
    assert end_of("  2024-01-31 ", end_of_day=False) == datetime(2024, 1, 31, tzinfo=UTC)


def test_an_overlong_text_is_refused_without_being_echoed_whole() -> None:
    with pytest.raises(InvalidInput) as caught:
        end_of("2" * 1000, end_of_day=False)
    assert len(caught.value.message) < 100


def test_period_defaults_from_the_beginning_until_now(utc: None) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_period(None, None, now=now) == (None, now)


def test_one_day_is_a_valid_period(utc: None) -> None:
    since, till = parse_period("2024-01-31", "2024-01-31")
    assert since is not None
    assert since < till


def test_since_after_till_is_refused(utc: None) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_period("2024-02-01", "2024-01-31")
    assert "after" in caught.value.message


def test_a_since_a_microsecond_after_its_till_is_the_empty_period() -> None:
    """What the shell and the client send for a period that holds no moment (time the
    clocks skip); two microseconds after is a period written backwards."""
    till = datetime(2024, 1, 1, tzinfo=UTC)
    check_order(till + timedelta(microseconds=1), till)
    with pytest.raises(InvalidInput):
        check_order(till + timedelta(microseconds=2), till)


def test_a_programs_time_without_offset_is_utc_wherever_it_runs(time_zone: None) -> None:
    moment = period_end(datetime(2024, 1, 1, 12), "since")
    assert moment == datetime(2024, 1, 1, 12, tzinfo=UTC)


def test_a_since_past_this_clock_without_till_is_left_to_the_bank(utc: None) -> None:
    """Up to now as the bank has it, never before its latest operation: the engine, which
    knows that, says whether the since is in the future (a server's clock may be ahead)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    since, _ = parse_period("2027-01-01", None, now=now)
    assert since == datetime(2027, 1, 1, tzinfo=UTC)
    since, till = parse_period("2027-01-01", "2027-12-31", now=now)  # a future period is fine
    assert since is not None and since < till


def test_a_server_reads_a_time_without_offset_as_utc(time_zone: None) -> None:
    moment = end_of("2024-01-31 18:30:00", end_of_day=False, zone=UTC)
    assert moment == datetime(2024, 1, 31, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize("zone", [None, UTC])
def test_the_first_and_last_days_of_the_calendar_are_taken(utc: None, zone: tzinfo | None) -> None:
    since, till = parse_period("0001-01-01", "9999-12-31", zone=zone)
    assert since == datetime(1, 1, 1, tzinfo=UTC)
    assert till == datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def test_ends_that_utc_cannot_hold_run_to_the_end_of_time(time_zone: None) -> None:
    """Year 1 two hours east of UTC is still year 0 there; year 9999 west of it, 10000."""
    since, till = parse_period("0001-01-01", "9999-12-31T23:00:00-05:00")
    assert since == datetime.min.replace(tzinfo=UTC)
    assert till == datetime.max.replace(tzinfo=UTC)
    assert parse_period("9999-12-31", None, now=datetime.max.replace(tzinfo=UTC))[0] == datetime(
        9999, 12, 30, 22, tzinfo=UTC
    )


@pytest.mark.parametrize("end_of_day", [False, True])
def test_a_lowercase_t_and_z_read_as_the_uppercase_ones(utc: None, end_of_day: bool) -> None:
    """RFC 3339 allows either case; since and till read the same text as one moment."""
    upper = end_of("2024-01-31T18:30:00Z", end_of_day=end_of_day)
    assert end_of("2024-01-31t18:30:00z", end_of_day=end_of_day) == upper
    assert end_of("2024-01-31t18:30:00+00:00", end_of_day=end_of_day) == upper


def test_a_space_before_the_offset_is_taken(utc: None) -> None:
    """As `git log --date=iso` writes a moment."""
    for text in ("2024-01-31 18:30:00 +0200", "2024-01-31T18:30:00 +02:00"):
        assert end_of(text, end_of_day=False) == datetime(2024, 1, 31, 16, 30, tzinfo=UTC)
    assert end_of("2024-01-31 18:30:00 Z", end_of_day=False).hour == 18


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2027-02-29", "day is out of range for month"),
        ("2026-12-31 24:00", "hour must be in 0..23"),
        ("2016-12-31T23:59:60Z", "second must be in 0..59"),  # a leap second
        ("2026-13-01", "month must be in 1..12"),
    ],
)
def test_a_date_of_the_right_shape_but_no_such_moment_says_why(
    utc: None, text: str, reason: str
) -> None:
    """Told only "is not a date like 2024-01-31, ...", a date of just the example's shape
    (a 29 February of a common year) read as the wrong shape."""
    with pytest.raises(InvalidInput) as caught:
        parse_period(None, text)
    assert caught.value.message == f"{text!r} is no moment of the calendar: {reason}"


@pytest.mark.parametrize(
    "text", ["2026-12-03T10:00+24:00", "2025-W53", "2026-W01-8", "9999-W52-7T23:59:59-23:59"]
)
def test_a_moment_out_of_range_is_told_without_python_s_words(utc: None, text: str) -> None:
    """An offset of a day was told in a timedelta's repr, and a week a year lacks as an
    "Invalid isoformat string"."""
    with pytest.raises(InvalidInput) as caught:
        parse_period(None, text)
    assert caught.value.message == f"{text!r} is no moment of the calendar"


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-06T00:5223",
        "2026-12-06T0052:23",
        "2026-1206",
        "202612-06",
        "2026-W491",
        "2026W49-1",
        "2026-12-06T00:52:23+01:0030",
    ],
)
def test_basic_and_extended_forms_mixed_in_one_part_are_no_date_s_shape(
    utc: None, text: str
) -> None:
    """Told "no moment of the calendar", as a 30 February is: the time is misspelt, not out
    of range."""
    with pytest.raises(InvalidInput) as caught:
        parse_period(None, text)
    assert caught.value.message.startswith(f"{text!r} is not a date like 2024-01-31")


@pytest.mark.parametrize(
    "text",
    ["20261206T00:52:23", "2026-12-06T005223", "2026-12-06T00:52:23+0100", "2026W491T0052Z"],
)
def test_each_part_may_take_its_own_form(utc: None, text: str) -> None:
    """The date in one form, the time and the offset in another: as ISO 8601 and
    fromisoformat take them."""
    since, _ = parse_period(text, None)
    assert since is not None and since.year == 2026


def test_an_ordinal_date_is_not_taken_for_one(utc: None) -> None:
    """The shape check let a day of the year ("2026-339") through, which nothing reads."""
    with pytest.raises(InvalidInput) as caught:
        parse_period(None, "2026-339")
    assert caught.value.message.startswith("'2026-339' is not a date like 2024-01-31")


@pytest.mark.parametrize(
    "text",
    [
        "\u0662\u0660\u0662\u0666-\u0661\u0662-\u0660\u0665",
        "２０２６-１２-０５",
        "2026-12-05T1\u0660:00",
    ],
)
def test_digits_of_another_script_are_no_date_s_shape(utc: None, text: str) -> None:
    """Arabic-Indic or fullwidth digits passed the shape check and were told "no moment
    of the calendar", as a 30 February is."""
    with pytest.raises(InvalidInput) as caught:
        parse_period(None, text)
    assert caught.value.message.startswith(f"{text!r} is not a date like 2024-01-31")
