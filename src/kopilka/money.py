"""Money as exact integer cents: parsing user text and formatting for people.

No float is ever involved: text is checked with a strict pattern and converted
with integer arithmetic, so "0.1" is exactly 10 cents.
"""

from __future__ import annotations

import re
import unicodedata

from kopilka.errors import InvalidInput

CENTS_PER_DOLLAR = 100
# The largest amount one operation may carry: 1,000,000,000,000.00.
AMOUNT_CENTS_MAX = 1_000_000_000_000 * CENTS_PER_DOLLAR
# Balances and limits share the bound so a sum of two never overflows BIGINT.
BALANCE_CENTS_MAX = AMOUNT_CENTS_MAX * 1_000

# Longer text is refused before any conversion: no amount needs more characters.
AMOUNT_TEXT_LENGTH_MAX = 40
# ASCII digits with optional "," or "_" thousands separators, optional 1-2 decimals,
# optionally signed and with a "$" (so "-$5.00", as we print it, reads back).
_AMOUNT_PATTERN = re.compile(
    r"(?P<sign>[-+]?)\$?"
    # Thousands grouped lead with 1-9: "0,500" is someone's decimal comma (half a dollar),
    # not five hundred.
    r"(?P<whole>[1-9]\d{0,2}(?:,\d{3})+|[1-9]\d{0,2}(?:_\d{3})+|\d+)"
    r"(?:\.(?P<fraction>\d{1,2}))?",
    re.ASCII,
)

# The same form for JSON Schema (ECMA-262 reads it as Python does): what the OpenAPI
# document tells a client an amount looks like. Its size is a rule of its own.
AMOUNT_TEXT_SCHEMA_PATTERN = (
    r"^ *(\$?[-+]?|[-+]?\$?)([1-9]\d{0,2}(,\d{3})+|[1-9]\d{0,2}(_\d{3})+|\d+)(\.\d{1,2})? *$"
)

# The cents of a fraction as written: "" -> 0, "5" -> 50, "05" -> 5.
_FRACTION_CENTS = {
    "": 0,
    **{f"{tenths}": tenths * 10 for tenths in range(10)},
    **{f"{cents:02d}": cents for cents in range(100)},
}
# The text after the point of every whole number of cents below a dollar.
_CENTS_TEXT = [f".{cents:02d}" for cents in range(CENTS_PER_DOLLAR)]


def parse_cents(
    text: str, *, allow_negative: bool = False, allow_zero: bool = False, what: str = "amount"
) -> int:
    """Parse '1,234.56' into 123456 cents, or raise InvalidInput with a clear reason that
    calls the text `what` it is (an amount, a limit)."""
    # Spaces around are forgiven (a shell argument quoted loosely); no other whitespace:
    # a tab, a line end or a no-break space in an amount is not money text.
    given = text.strip(" ") if text else ""
    if not given:
        raise InvalidInput("invalid_amount", f"{what} is empty")
    candidate = given.removeprefix("$")
    # "$$5": the pattern below would take the second as the first; "$" alone is no number.
    if text.count("$") > 1 or not candidate:
        raise _not_a_number(text, what)
    if len(candidate) > AMOUNT_TEXT_LENGTH_MAX:
        raise InvalidInput("invalid_amount", f"{what} is too long to be a sum of money")
    # Most amounts are plain digits with up to two decimals ("100", "12.50"): read
    # without the pattern, at a fraction of its cost (it is on every request's path).
    whole_text, dot, fraction_text = candidate.partition(".")
    if (
        whole_text.isascii()
        and whole_text.isdigit()
        and (not dot or (fraction_text.isascii() and fraction_text.isdigit()))
        and len(fraction_text) <= 2
    ):
        return _checked(
            int(whole_text) * CENTS_PER_DOLLAR + _FRACTION_CENTS[fraction_text],
            text,
            allow_negative=allow_negative,
            allow_zero=allow_zero,
            what=what,
        )
    match = _AMOUNT_PATTERN.fullmatch(candidate)
    if match is None:
        # A number but for its decimals: ".505" or "1,0.505" is told what ".5" is.
        if _AMOUNT_PATTERN.fullmatch(re.sub(r"(\.\d\d)\d+$", r"\1", candidate, flags=re.ASCII)):
            raise InvalidInput("invalid_amount", f"{what} {text!r} has more than two decimals")
        raise _not_a_number(text, what)
    sign, whole, fraction = match.groups()
    # int() reads "_" between digits itself; the pattern has placed every separator.
    cents = int(whole.replace(",", "")) * CENTS_PER_DOLLAR + _FRACTION_CENTS[fraction or ""]
    if sign == "-":
        cents = -cents
    return _checked(cents, text, allow_negative=allow_negative, allow_zero=allow_zero, what=what)


def _not_a_number(text: str, what: str) -> InvalidInput:
    """The refusal of money text that is no number, naming a character that is neither
    printable nor ASCII (a no-break space copied in with the amount shows as '\\xa0')."""
    odd = next((char for char in text if not (char.isascii() and char.isprintable())), None)
    held = ""
    if odd is not None:
        name = unicodedata.name(odd, "")
        held = f" (it holds U+{ord(odd):04X}{' ' + name if name else ''}, which no amount has)"
    return InvalidInput(
        "invalid_amount", f"{what} {text!r} is not a number like 100 or 1,000.25{held}"
    )


def _checked(cents: int, text: str, *, allow_negative: bool, allow_zero: bool, what: str) -> int:
    if cents < 0 and not allow_negative:
        raise InvalidInput("invalid_amount", f"{what} {text!r} must be positive")
    if cents == 0 and not allow_zero:
        raise InvalidInput("invalid_amount", f"{what} must be greater than zero")
    return cents


def parse_amount(text: str, what: str = "amount") -> int:
    """An operation's amount: positive, at most two decimals, at most 1 trillion dollars."""
    # What clients send ("100", "12.50") in a few steps, for this is on every request's
    # path; anything else, and any amount refused, is read by parse_cents.
    if type(text) is str and len(text) <= AMOUNT_TEXT_LENGTH_MAX:
        whole, dot, fraction = text.partition(".")
        part = _FRACTION_CENTS.get(fraction) if fraction or not dot else None
        if part is not None and whole.isdigit() and whole.isascii():
            cents = int(whole) * CENTS_PER_DOLLAR + part
            if 0 < cents <= AMOUNT_CENTS_MAX:
                return cents
    cents = parse_cents(text, what=what)
    if cents > AMOUNT_CENTS_MAX:
        raise InvalidInput(
            "invalid_amount",
            f"{what} {text!r} is above the maximum {format_money(AMOUNT_CENTS_MAX)}",
        )
    return cents


def parse_limit(text: str, what: str = "limit") -> int:
    """A floor or cap (`what` it is, to say): may be zero or negative (an overdraft floor)."""
    cents = parse_cents(text, allow_negative=True, allow_zero=True, what=what)
    if abs(cents) > BALANCE_CENTS_MAX:
        raise limit_out_of_range(f"{what} {text!r}")
    return cents


def limit_out_of_range(named: str) -> InvalidInput:
    """A floor or cap past what any balance may reach, and what that is."""
    return InvalidInput(
        "invalid_limit",
        f"{named} is out of range: a floor or cap is at most"
        f" {format_money(BALANCE_CENTS_MAX)} from zero",
    )


def format_money(cents: int) -> str:
    """123456 -> '$1,234.56'; -500 -> '-$5.00'."""
    sign = "-" if cents < 0 else ""
    dollars, remainder = divmod(abs(cents), CENTS_PER_DOLLAR)
    return f"{sign}${dollars:,}.{remainder:02d}"


def format_plain(cents: int) -> str:
    """123456 -> '1234.56': the exact decimal text used in JSON and CSV."""
    if cents < 0:
        return "-" + format_plain(-cents)
    # Three amounts in every answer: a table of the cents is cheaper than a format spec.
    return str(cents // CENTS_PER_DOLLAR) + _CENTS_TEXT[cents % CENTS_PER_DOLLAR]
