"""A body that repeats a field is refused exactly when it does, whatever its text holds:
the quick count of colons may only ever spare the second reading, never miss a repeat."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kopilka.api.json_keys import refuse_repeats, repeats
from kopilka.api.schemas import DepositIn, TransferIn
from kopilka.errors import InvalidInput

# Text a description or name may hold, colons, quotes and escapes included.
texts = st.text(alphabet=st.sampled_from('ab :"\\{}é\u0000,'), min_size=1, max_size=8)


def _body(members: list[tuple[str, object]], ascii_only: bool, space: str) -> bytes:
    parts = [
        json.dumps(name, ensure_ascii=ascii_only) + space + ":" + space + json.dumps(value)
        for name, value in members
    ]
    return ("{" + ",".join(parts) + "}").encode()


def _repeats_a_member(members: list[tuple[str, object]]) -> bool:
    names = [name for name, _ in members]
    return len(set(names)) != len(names)


@given(
    extra=st.lists(
        st.tuples(st.sampled_from(["from", "to", "amount", "description"]), texts), max_size=4
    ),
    order=st.randoms(use_true_random=False),
    ascii_only=st.booleans(),
    space=st.sampled_from(["", " ", "\n"]),
)
def test_a_transfer_is_refused_exactly_when_it_repeats_a_field(
    extra: list[tuple[str, str]], order: object, ascii_only: bool, space: str
) -> None:
    members: list[tuple[str, object]] = [("from", "Ann"), ("to", "Bob"), ("amount", "1"), *extra]
    order.shuffle(members)  # type: ignore[attr-defined]
    body = _body(members, ascii_only, space)
    request = msgspec.json.decode(body, type=TransferIn)
    if _repeats_a_member(members):
        with pytest.raises(InvalidInput, match="is given twice"):
            refuse_repeats(body, request)
    else:
        refuse_repeats(body, request)


@given(description=st.one_of(st.just(""), texts), open_account=st.sampled_from([None, True, False]))
def test_fields_given_with_their_defaults_never_pass_for_repeats(
    description: str, open_account: bool | None
) -> None:
    members: list[tuple[str, object]] = [("client", "Ann"), ("amount", "1")]
    members.append(("description", description))
    if open_account is not None:
        members.append(("open_account", open_account))
    body = _body(members, True, "")
    refuse_repeats(body, msgspec.json.decode(body, type=DepositIn))


def test_the_outermost_objects_repeat_is_told_apart_from_an_inner_ones() -> None:
    found = repeats(b'{"operations": [{"a": 1, "a": 2}], "operations": []}')
    assert (found.top, found.first) == ("operations", "a")
    found = repeats(b'{"operations": [{"a": 1}, {"b": 1, "b": 2}]}')
    assert (found.top, found.first) == (None, "b")
    assert repeats(b'{"operations": [{"a": 1}]}') == (None, None)
