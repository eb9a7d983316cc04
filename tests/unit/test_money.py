"""Money text in and out: exact integer cents, strict parsing, people-friendly formatting."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kopilka.errors import InvalidInput
from kopilka.money import (
    AMOUNT_CENTS_MAX,
    AMOUNT_TEXT_SCHEMA_PATTERN,
    BALANCE_CENTS_MAX,
    format_money,
    format_plain,
    parse_amount,
    parse_cents,
    parse_limit,
)

DIGITS = "0123456789"


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("100", 10_000),
        ("100.5", 10_050),
        ("100.50", 10_050),
        ("1,000.25", 100_025),
        ("1_000", 100_000),
        ("0.01", 1),
        ("0.1", 10),
        ("$1,234.56", 123_456),
        (" 7 ", 700),
        ("1,000,000,000,000.00", AMOUNT_CENTS_MAX),
    ],
)
def test_amount_accepted(text: str, cents: int) -> None:
    assert parse_amount(text) == cents


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "0.00",
        "-5",
        "1.005",
        "1e3",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "Infinity",
        "abc",
        "",
        "   ",
        "1,000,000,000,000.01",
        "1000000000001",
        "10,00",
        "1,000_000",
        ".5",
        "5.",
        "1 000",
        "0x10",
        "1.2.3",
        "$$5",
        "-$$5",
        "\t5",
        "5\n",
        "\u00a05",
        "\u30005",
        "5\r",
    ],
)
def test_amount_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_amount(text)
    assert info.value.code == "invalid_amount"
    assert info.value.message


def test_refusal_messages_say_why() -> None:
    with pytest.raises(InvalidInput, match="more than two decimals"):
        parse_amount("1.005")
    with pytest.raises(InvalidInput, match="positive"):
        parse_amount("-5")
    with pytest.raises(InvalidInput, match="greater than zero"):
        parse_amount("0")
    with pytest.raises(InvalidInput, match="empty"):
        parse_amount("")
    with pytest.raises(InvalidInput, match=r"^amount '\$' is not a number like 100"):
        parse_amount("$")  # something was typed: not "empty"
    with pytest.raises(InvalidInput, match=r"^amount ' \$ ' is not a number like 100"):
        parse_amount(" $ ")
    # Told as ".5" is: "more than two decimals" sent ".50" to the same refusal.
    with pytest.raises(InvalidInput, match=r"^amount '\.505' is not a number like 100"):
        parse_amount(".505")
    with pytest.raises(InvalidInput, match="more than two decimals"):
        parse_amount("$0.505")
    # A number but for its decimals, or no number at all: "1,0.5" is no number either.
    with pytest.raises(InvalidInput, match=r"^amount '1,0\.505' is not a number like 100"):
        parse_amount("1,0.505")
    with pytest.raises(InvalidInput, match="more than two decimals"):
        parse_amount("-$1,000.505")
    # A character repr() shows as an escape is named: '\xa05' reads as a hex number.
    for text, named in (
        ("\u00a05", "U+00A0 NO-BREAK SPACE"),
        ("1\u202f000", "U+202F NARROW NO-BREAK SPACE"),
        ("5\u0661", "U+0661 ARABIC-INDIC DIGIT ONE"),
        ("5\t", "U+0009"),
    ):
        with pytest.raises(InvalidInput) as refused:
            parse_amount(text)
        assert refused.value.message.endswith(f"1,000.25 (it holds {named}, which no amount has)")
    with pytest.raises(InvalidInput) as plain:
        parse_amount("5x")
    assert plain.value.message == "amount '5x' is not a number like 100 or 1,000.25"
    with pytest.raises(InvalidInput, match=r"maximum \$1,000,000,000,000\.00"):
        parse_amount("1000000000000.01")


def test_absurdly_long_amount_is_refused_cleanly() -> None:
    with pytest.raises(InvalidInput):
        parse_amount("9" * 5_000)


def test_an_amount_is_at_most_forty_characters_whatever_it_is_worth() -> None:
    assert parse_amount("0" * 39 + "1") == 100
    with pytest.raises(InvalidInput, match="too long to be a sum of money"):
        parse_amount("0" * 40 + "1")


@pytest.mark.parametrize(
    ("text", "cents"),
    [("0", 0), ("-50", -5_000), ("-1,000.5", -100_050), ("250.75", 25_075), ("+3", 300)],
)
def test_limit_accepted(text: str, cents: int) -> None:
    assert parse_limit(text) == cents


@pytest.mark.parametrize("text", ["-1.005", "abc", "", "NaN", "1e3", "1" + "0" * 20])
def test_limit_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_limit(text)


@pytest.mark.parametrize("sign", ["", "-"])
def test_a_limit_past_the_largest_balance_either_way_is_out_of_range(sign: str) -> None:
    """Said as the limit typed, of the floor or cap it was given for."""
    text = sign + format_plain(BALANCE_CENTS_MAX + 1)
    assert parse_limit(format_plain(-BALANCE_CENTS_MAX), "floor") == -BALANCE_CENTS_MAX
    with pytest.raises(InvalidInput) as refused:
        parse_limit(text, "floor")
    assert (refused.value.code, refused.value.message) == (
        "invalid_limit",
        f"floor {text!r} is out of range: a floor or cap is at most"
        " $1,000,000,000,000,000.00 from zero",
    )


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (0, "$0.00"),
        (5, "$0.05"),
        (50, "$0.50"),
        (123_456, "$1,234.56"),
        (-500, "-$5.00"),
        (AMOUNT_CENTS_MAX, "$1,000,000,000,000.00"),
    ],
)
def test_format_money(cents: int, text: str) -> None:
    assert format_money(cents) == text


def test_format_plain() -> None:
    assert format_plain(123_456) == "1234.56"
    assert format_plain(-5) == "-0.05"
    assert format_plain(0) == "0.00"


@given(st.integers(min_value=1, max_value=AMOUNT_CENTS_MAX))
@example(1)
@example(AMOUNT_CENTS_MAX)
def test_amount_round_trip(cents: int) -> None:
    assert parse_amount(format_money(cents)) == cents
    assert parse_amount(format_plain(cents)) == cents


@given(st.integers(min_value=-BALANCE_CENTS_MAX, max_value=BALANCE_CENTS_MAX))
def test_limit_round_trip_plain(cents: int) -> None:
    assert parse_limit(format_plain(cents)) == cents


def test_limit_reads_its_own_negative_format() -> None:
    assert parse_limit(format_money(-500)) == -500


def test_only_ascii_digits_are_money() -> None:
    with pytest.raises(InvalidInput):
        parse_amount("\u0661\u0660\u0660")  # Arabic-Indic "100"


@given(st.text(max_size=40))
@example("1e3")
@example("NaN")
@example("1.5")
def test_parsing_gives_int_or_invalid_input(text: str) -> None:
    for parse in (parse_amount, parse_limit):
        try:
            result = parse(text)
        except InvalidInput:
            continue
        assert type(result) is int


@given(
    whole=st.text(alphabet=DIGITS, min_size=1, max_size=15),
    fraction=st.text(alphabet=DIGITS, min_size=3, max_size=10),
)
def test_three_or_more_decimals_refused(whole: str, fraction: str) -> None:
    text = f"{whole}.{fraction}"
    with pytest.raises(InvalidInput):
        parse_amount(text)
    with pytest.raises(InvalidInput):
        parse_limit(text)


@given(st.integers(min_value=AMOUNT_CENTS_MAX + 1, max_value=AMOUNT_CENTS_MAX * 1_000))
def test_amount_above_maximum_refused(cents: int) -> None:
    with pytest.raises(InvalidInput, match="maximum"):
        parse_amount(format_plain(cents))


@given(
    whole=st.integers(min_value=0, max_value=10**12 - 1),
    fraction=st.text(alphabet=DIGITS, min_size=0, max_size=2),
)
def test_digits_parse_exactly(whole: int, fraction: str) -> None:
    text = f"{whole}.{fraction}" if fraction else str(whole)
    expected = whole * 100 + int(fraction.ljust(2, "0") or "0")
    if expected == 0:
        with pytest.raises(InvalidInput):
            parse_amount(text)
    else:
        result = parse_amount(text)
        assert type(result) is int
        assert result == expected


# Texts made of what amounts are made of, and of what they must not hold.
AMOUNT_LIKE = st.text(alphabet="0123456789.,_-+$ \u0663\uff11", max_size=14) | st.from_regex(
    r"[-+]?\$?[0-9,_]{0,9}(\.[0-9]{0,4})?", fullmatch=True
)


def _as_written(text: str) -> int | None:
    """What a text says in cents by the documented form alone (None: not an amount):
    an optional sign and "$", ASCII digits grouped by "," or "_" in threes or not at
    all, and at most two decimals. Decimal does the arithmetic, not the code under test."""
    candidate = text.strip().removeprefix("$")
    sign = ""
    if candidate[:1] in ("-", "+"):
        sign, candidate = candidate[0], candidate[1:].removeprefix("$")
    whole, dot, fraction = candidate.partition(".")
    if dot and not (1 <= len(fraction) <= 2 and fraction.isascii() and fraction.isdigit()):
        return None
    for separator in (",", "_"):
        groups = whole.split(separator)
        if len(groups) > 1:
            if not (1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])):
                return None
            if groups[0].startswith("0"):  # "0,500": a decimal comma, not thousands
                return None
            whole = "".join(groups)
            break
    if not (whole.isascii() and whole.isdigit()):
        return None
    cents = int(Decimal(f"{whole}.{fraction or '0'}") * 100)
    return -cents if sign == "-" else cents


@given(AMOUNT_LIKE)
@example("12.")
@example("1.005")
@example("1.\u0663")
@example("\uff11.50")
@example(".5")
@example("1,00")
@example("0,500")
@example("00,100")
@example("0_500")
@example("-0,050.25")
@example("1_000.5")
@example("-$5.00")
@example("+$0.05")
@example("$$5")
@example("$-5")
def test_every_text_reads_as_the_documented_form_says(text: str) -> None:
    try:
        cents: int | None = parse_cents(text, allow_negative=True, allow_zero=True)
    except InvalidInput:
        cents = None
    assert cents == _as_written(text)


@given(AMOUNT_LIKE)
@example("$-5")
@example("-$5")
@example("$$5")
@example("1,000_000")
@example("0,500")
@example(" 5 ")
def test_the_schema_pattern_says_the_documented_form(text: str) -> None:
    # The pattern a client reads in /openapi.json: the form alone, not the size.
    matched = re.fullmatch(AMOUNT_TEXT_SCHEMA_PATTERN, text, re.ASCII) is not None
    assert matched == (_as_written(text) is not None)


def test_a_limit_is_called_a_limit_in_its_errors() -> None:
    for text, message in (
        ("", "limit is empty"),
        ("none", "limit 'none' is not a number like 100 or 1,000.25"),
        ("1.005", "limit '1.005' has more than two decimals"),
    ):
        with pytest.raises(InvalidInput) as caught:
            parse_limit(text)
        assert caught.value.message == message


@given(st.text(alphabet=DIGITS + ".", max_size=41))
@example("0.01")
@example("5.")
@example(".5")
@example("0" * 39 + "1")
@example("0" * 40 + "1")
def test_plain_amounts_read_as_the_full_reading_reads_them(text: str) -> None:
    """parse_amount's shortcut for plain digits: the same cents, or the same refusal,
    as parse_cents and the bounds give."""
    try:
        expected: int | str = parse_cents(text)
        if expected > AMOUNT_CENTS_MAX:
            expected = "refused"
    except InvalidInput as refused:
        expected = refused.message
    try:
        got: int | str = parse_amount(text)
    except InvalidInput as refused:
        got = "refused" if "maximum" in refused.message else refused.message
    assert got == expected
