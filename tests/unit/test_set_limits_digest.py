"""The digest a PATCH /v1/accounts body is kept under reads as it did when a floor left out
was decoded as null: a key kept then, retried now, still replays instead of being
refused as reused."""

from __future__ import annotations

import msgspec
import pytest

from kopilka.api.schemas import SetLimitsDigest, SetLimitsIn


@pytest.mark.parametrize(
    ("body", "kept"),
    [
        (b"{}", b'{"min_balance":null}'),
        (b'{"max_balance":"5.00"}', b'{"min_balance":null,"max_balance":"5.00"}'),
        (b'{"max_balance":null}', b'{"min_balance":null,"max_balance":null}'),
        (b'{"min_balance":"-2.00"}', b'{"min_balance":"-2.00"}'),
    ],
)
def test_a_patch_body_digests_as_it_always_did(body: bytes, kept: bytes) -> None:
    request = msgspec.json.decode(body, type=SetLimitsIn)
    floor = request.min_balance if isinstance(request.min_balance, str) else None
    assert msgspec.json.encode(SetLimitsDigest(floor, request.max_balance)) == kept


def test_a_null_floor_is_no_floor_left_out() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"min_balance":null}', type=SetLimitsIn)
