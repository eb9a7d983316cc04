"""A request body that gives one field twice in an object is refused.

msgspec, like most JSON decoders, keeps the last of a repeated field; another reader of
the same bytes (a proxy that checks amounts, an auditor's script) may keep the first.
One request must not say two amounts to two readers, so a repeat is refused, as an
unknown field is.

Each member of an object has a colon of its own, so a body with no more colons than
the members its decoded request is known to have cannot repeat one, and a byte count
settles it. Only a body with colons to spare (a description "Rent: May", a field sent
with its default value, a batch) is read once more, by the standard library, whose
decoder shows every member as sent.
"""

from __future__ import annotations

import functools
import json
from typing import Any, NamedTuple

import msgspec

from kopilka.errors import InvalidInput
from kopilka.tokens import without_secrets


class _Object:
    """An object as the second reading sees it: only the field it repeats, if any."""

    __slots__ = ("repeated",)

    def __init__(self, repeated: str | None) -> None:
        self.repeated = repeated


_NO_REPEAT = _Object(None)


class Repeats(NamedTuple):
    """What one body repeats: a field of its outermost object, and the first field
    repeated in any object within it."""

    top: str | None
    first: str | None


def repeats(body: bytes) -> Repeats:
    """Read `body`, JSON that msgspec has decoded already, for repeated fields."""
    found: list[str] = []

    def one_object(pairs: list[tuple[str, Any]]) -> _Object:
        if len(pairs) < 2 or len(dict(pairs)) == len(pairs):  # in C: most objects end here
            return _NO_REPEAT
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                found.append(name)
                return _Object(name)
            seen.add(name)
        raise AssertionError("a repeat was counted")

    try:
        # Numbers kept as their text: only the fields count here, and an integer of
        # thousands of digits (refused as an amount by msgspec) is no reason to fail.
        # Decoded strictly first: json.loads would let surrogates written as UTF-8 through.
        text = body.decode("utf-8")
        outer = json.loads(text, object_pairs_hook=one_object, parse_int=str, parse_float=str)
    except UnicodeDecodeError:  # inside an item a batch left undecoded: not JSON at all
        from kopilka.api.errors import ApiError  # which imports this module

        raise ApiError(
            400, "malformed_json", "the request body is not valid JSON: it is not UTF-8"
        ) from None
    except RecursionError:  # a little less deep than msgspec's bound: refused alike
        raise InvalidInput("invalid_request", "invalid request body: nested too deeply") from None
    except ValueError:  # read otherwise than msgspec read it: refused
        raise InvalidInput("invalid_request", "invalid request body: it cannot be read") from None
    top = outer.repeated if isinstance(outer, _Object) else None
    return Repeats(top, found[0] if found else None)


def repeated_field(name: str) -> InvalidInput:
    return InvalidInput(
        "invalid_request",
        f"invalid request body: the field `{without_secrets(name)[:50]}` is given twice - at `$`",
    )


def refuse_repeats(body: bytes, request: msgspec.Struct) -> None:
    """Refuse `body`, decoded as the flat `request`, if it repeats a field."""
    if body.count(b":") <= _members_at_least(request):
        return
    top = repeats(body).top  # a flat request's: its fields hold no objects
    if top is not None:
        raise repeated_field(top)


def _members_at_least(request: msgspec.Struct) -> int:
    """The members the body of `request` must have had: its required fields (and its
    tag), and every optional one whose value is not its default."""
    members, optional = _shape(type(request))
    for name, default in optional:  # a loop, not sum(): on every request's path
        if getattr(request, name) != default:
            members += 1
    return members


@functools.cache
def _shape(kind: type[msgspec.Struct]) -> tuple[int, tuple[tuple[str, Any], ...]]:
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    required = sum(field.required for field in info.fields) + (info.tag_field is not None)
    # A field made by a factory has no one default to compare with: never counted.
    optional = tuple(
        (field.name, field.default)
        for field in info.fields
        if not field.required and field.default is not msgspec.NODEFAULT
    )
    return required, optional
