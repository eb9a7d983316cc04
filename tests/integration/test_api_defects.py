"""A defect of the app's (a bug, not a refusal) is answered in the API's JSON form, 500,
on the money writes' own path as on every other route: never the server's bare text."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.integration.test_api_stopping import app_with_ann

from kopilka.domain.model import Operation


def _a_defect(outcome: Operation) -> object:
    raise RuntimeError("a defect in making the answer")


async def test_a_defect_answering_a_money_write_is_a_500_in_the_apis_form_with_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """It may come after the commit: the key that settles the write is given with it."""
    app, token = await app_with_ann(tmp_path)
    monkeypatch.setattr("kopilka.api.app.operation_out", _a_defect)
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "write-1"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://k"
        ) as http:
            deposit = {"client": "Ann", "amount": "1"}
            answer = await http.post("/v1/deposits", json=deposit, headers=headers)
    finally:
        await app.stop()
    assert answer.status_code == 500, answer.text
    assert answer.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    assert answer.headers["idempotency-key"] == "write-1"
    assert "unexpected error on /v1/deposits" in caplog.text
