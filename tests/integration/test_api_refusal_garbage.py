"""A refused or replayed write leaves nothing for the cyclic garbage collector: its
request (a body of up to 64 KB) is freed once it is answered, as an applied one is. Kept
in a reference cycle, each waited for the next young collection, which a server makes only every
100,000 net allocations: a flood of refused 60 KB deposits grew a worker by 200 MB."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.garbage import frames_left_in_cycles
from tests.integration.test_api_stopping import app_with_ann

_LONG = "x" * 60_000
_TOO_MUCH = {"type": "withdrawal", "client": "Ann", "amount": "5"}


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        # refused by its decoding
        ("POST", "/v1/deposits", {"client": "Ann", "amount": "1", "description": _LONG}, 422),
        # refused by the ledger
        ("POST", "/v1/withdrawals", {"client": "Ann", "amount": "5", "description": "x"}, 422),
        ("POST", "/v1/transfers", {"from": "Ann", "to": "Nobody", "amount": "1"}, 404),
        # the other writes
        ("POST", "/v1/batch", {"operations": [], "note": _LONG}, 422),
        ("POST", "/v1/accounts", {"client": "Ann", "note": _LONG}, 422),
        ("POST", "/v1/accounts", {"client": "Ann"}, 409),
        ("PATCH", "/v1/accounts/Ann", {"max_balance": "0.50", "note": _LONG}, 422),
        ("PATCH", "/v1/accounts/Ann", {"max_balance": "0.50"}, 422),
        # refused items of a batch, answered and not raised
        ("POST", "/v1/batch", {"operations": [_TOO_MUCH] * 50}, 200),
        # sent again under its key: the store's first try is abandoned for the replay
        ("POST", "/v1/deposits", {"client": "Ann", "amount": "1", "key": "again"}, 201),
    ],
    ids=[
        "decoding",
        "ledger",
        "unknown-payee",
        "batch",
        "opening",
        "opened-already",
        "limits-decoding",
        "limits-refused",
        "batch-items",
        "replayed",
    ],
)
async def test_a_refused_write_is_freed_once_answered(
    tmp_path: Path, method: str, path: str, body: dict[str, object], code: int
) -> None:
    app, token = await app_with_ann(tmp_path)
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://k"
        ) as http:
            key = body.get("key")
            headers = auth if key is None else {**auth, "Idempotency-Key": str(key)}
            sent = {name: value for name, value in body.items() if name != "key"}
            with frames_left_in_cycles() as left:
                for _ in range(3):
                    answer = await http.request(method, path, json=sent, headers=headers)
                    assert answer.status_code == code, answer.text
        assert left == []
    finally:
        await app.engine.close()
