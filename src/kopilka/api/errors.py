"""KopilkaError -> {"error": {"code", "message"}} with the error's own HTTP status.

Bad input of any kind is a KopilkaError before it reaches the engine, so a
request can only earn a 500 through a bug, never through what it sent.
"""

from __future__ import annotations

import contextlib
import decimal
import re

import msgspec

from kopilka.api.json_keys import repeated_field, repeats
from kopilka.api.schemas import ErrorDetail, ErrorOut
from kopilka.domain.rules import (
    client_name_empty,
    client_name_too_long,
    description_too_long,
    too_many_operations,
)
from kopilka.errors import InvalidInput, KopilkaError
from kopilka.tokens import unknown_role, without_secrets

_encoder = msgspec.json.Encoder()
# A \u escape of a surrogate that is not half of a pair: JSON's grammar allows it, but it
# stands for no character, and the decoder's own words for it mislead ("truncated").
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def without_lone_surrogates(body: bytes) -> bytes:
    """`body` with each lone surrogate's escape written as U+FFFD's, of the same length:
    a batch's items stand where they stood, for the one that held it to be refused
    alone."""
    return _LONE_SURROGATE.sub(rb"\\ufffd", body)


class ApiError(KopilkaError):
    """An HTTP-level refusal with an explicit status (400, 404, 405, 408, 413, 431)."""

    def __init__(self, status: int, code: str, message: str, allow: tuple[str, ...] = ()) -> None:
        super().__init__(code, message)
        self.http_status = status
        self.allow = allow  # for a 405: the methods the path does take


def error_detail(error: KopilkaError) -> ErrorDetail:
    message = error.message
    if not message.isprintable():
        message = one_line(message)
    # A token pasted where a name or an id belongs is not handed back (a log keeps it).
    return ErrorDetail(code=error.code, message=without_secrets(message))


def one_line(message: str) -> str:
    """A message with what it quotes of a request (a path, a field's name, a value)
    escaped where it is no printable text: a line break or a terminal's escape sequence
    sent in a request is not handed back raw, to a client's terminal or log."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


# A defect's answer (a bug, not a refusal): nothing of the request echoed.
INTERNAL_ERROR = b'{"error":{"code":"internal_error","message":"internal error"}}'


def error_body(error: KopilkaError) -> bytes:
    return _encoder.encode(ErrorOut(error=error_detail(error)))


def let_go(error: BaseException) -> None:
    """An error answered, no longer holding the frames it was raised through: one raised
    from a local of a frame on its way (an outcome, a request's body of up to 64 KB) made
    a cycle with it, freed only at the next collection, which a server makes every
    100,000 net allocations (a flood of refusals grew a worker by 200 MB)."""
    error.__traceback__ = None
    error.__context__ = None  # `raise ... from None` keeps it, its traceback and all


def error_headers(error: KopilkaError) -> list[tuple[str, str]]:
    """What HTTP says goes with the status: how to authenticate (401), which methods
    the path takes (405), and for a body too large or too slow, that the connection ends
    (413, 408: what is left of the body is never read), and for headers too large, as
    the protocol's own refusal of a longer head does (431)."""
    status = error.http_status
    if status == 401:
        return [("www-authenticate", 'Bearer realm="kopilka"')]
    if status == 405 and isinstance(error, ApiError):
        return [("allow", ", ".join(error.allow))]
    if status in (408, 413, 431):
        return [("connection", "close")]
    return []


# A field whose value broke the schema's own bounds (length) is refused with the code
# the rules would give it, so the API and the shell name the same mistake alike.
_FIELD_CODES = {
    "client": "invalid_client",
    "from": "invalid_client",
    "to": "invalid_client",
    "description": "invalid_description",
    "operations": "too_many_operations",
}
_AMOUNT_FIELDS = ("amount", "balance")  # amount, min_balance, max_balance, opening_balance
# What an amount sent as another JSON type is said to be (a number, by default).
_NO_AMOUNT = {
    "null": "never null",
    "bool": "never true or false",
    "object": "not an object",
    "array": "not an array",
}


# What decoding a request body may raise: JSON nested past the decoder's depth (which it
# meets where it must skip a value whole) is a RecursionError, not a DecodeError.
DECODE_ERRORS = (msgspec.DecodeError, RecursionError)


def decode_error(
    error: msgspec.DecodeError | RecursionError, body: bytes | None = None
) -> KopilkaError:
    """Malformed JSON is 400; well-formed JSON of the wrong shape is 422, and `body`
    whose object gives one of its own fields twice is told so: the repeat, not whichever
    of its values failed, is the fault (a repeat deeper in a value is that value's)."""
    if isinstance(error, RecursionError):
        return InvalidInput("invalid_request", "invalid request body: nested too deeply")
    if isinstance(error, msgspec.ValidationError):
        if body is not None:
            broken = _not_json(body)
            if broken is not None:
                return decode_error(broken, body)
            with contextlib.suppress(KopilkaError):  # unreadable twice: the first error
                top = repeats(body).top
                if top is not None:
                    return repeated_field(top)
        text = str(error)
        field = _field_of(text)
        # `str` or `str | null` (a limit): an amount sent as a JSON number, or true.
        # A number too big for a float is refused before its type is looked at.
        number = text.startswith(("Expected `str", "Number out of range"))
        if number and any(part in field for part in _AMOUNT_FIELDS):
            got = re.search(r"got `(\w+)`", text)
            what = _NO_AMOUNT.get(got[1] if got else "", "never numbers")
            return InvalidInput(
                "invalid_amount", f'amounts are JSON strings like "100.50", {what} ({text})'
            )
        if field == "role" and text.startswith("Invalid enum value"):
            return unknown_role()
        if " of length " in text and field in _FIELD_CODES:
            refusal = _length_refusal(field, text)
            return refusal or InvalidInput(_FIELD_CODES[field], f"invalid request body: {error}")
        return InvalidInput("invalid_request", f"invalid request body: {error}")
    if body is not None and not body.strip():  # a body forgotten: the decoder says "truncated"
        return ApiError(400, "malformed_json", "the request body is empty: send a JSON object")
    if body is not None and _LONE_SURROGATE.search(body):
        return ApiError(
            400,
            "malformed_json",
            "the request body is not valid JSON: it has a \\u escape of half a character"
            " (a lone surrogate), which is no text",
        )
    return ApiError(400, "malformed_json", f"the request body is not valid JSON: {error}")


# Any JSON, its numbers of any size (a float of any range read as a Decimal).
_ANY_JSON = msgspec.json.Decoder(float_hook=decimal.Decimal)


def _not_json(body: bytes) -> msgspec.DecodeError | None:
    """Why `body` is no JSON at all, if it is not. A decoder of a request's type refuses
    a value of the wrong type (`[` where an object belongs), or a number past its range,
    before it reads on to find the body broken off or not UTF-8, which is the fault to
    name: 400, not 422."""
    try:
        _ANY_JSON.decode(body)
    except msgspec.ValidationError:  # JSON: the first refusal stands
        return None
    except msgspec.DecodeError as error:
        return error
    except RecursionError:  # too deep to read to its end: the first refusal stands
        return None
    return None


def _length_refusal(field: str, text: str) -> InvalidInput | None:
    """The rules' own refusal of a name or description of the wrong length, which the
    decoder meets first: it reads the same from the shell and the API."""
    if field in ("client", "from", "to"):
        return client_name_empty() if "length >= " in text else client_name_too_long()
    if field == "description":
        return description_too_long()
    if field == "operations" and "length <= " in text:
        return too_many_operations()
    return None


def _field_of(text: str) -> str:
    """The field a validation error names: "... - at `$.operations[3].amount`" -> amount."""
    _, at, path = text.rpartition(" - at `")
    if not at:
        return ""
    return path.rstrip("`").rpartition(".")[2].partition("[")[0]


def not_found_route(path: str) -> ApiError:
    return ApiError(404, "not_found", f"no such endpoint: {without_secrets(path)[:200]}")


def method_not_allowed(method: str, path: str, allow: tuple[str, ...]) -> ApiError:
    if "GET" in allow:  # every GET is answered to HEAD too, without its body
        allow = (*allow, "HEAD")
    return ApiError(
        405,
        "method_not_allowed",
        f"{method} is not allowed on {without_secrets(path)[:200]}",
        allow,
    )
