"""A batch request longer than one of the engine's batches, applied piece by piece, whose
middle piece the database refuses (a trigger of its own, as a database that fails one
write and not the others): the app in process over a real SQLite file."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
from tests.integration.test_api_stopping import app_with_ann, assert_resent_once

from kopilka.limits import Limits

_REFUSE_THE_THIRD = (
    "CREATE TRIGGER refuse_the_third BEFORE INSERT ON operations"
    " WHEN NEW.description = 'third' BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
)


async def test_pieces_after_one_that_failed_are_not_applied_and_the_key_says_how_to_resend(
    tmp_path: Path,
) -> None:
    """docs/api.md: no piece after a failed one is applied, and the answer's
    Idempotency-Key header gives the key to resend the whole batch under, which then
    applies what was not, once."""
    app, token = await app_with_ann(tmp_path, Limits(batch_operations_max=2))
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://k"
        ) as http:
            descriptions = ("first", "second", "third", "fourth", "fifth", "sixth")
            batch = {
                "operations": [
                    {"type": "deposit", "client": "Ann", "amount": "1", "description": text}
                    for text in descriptions
                ]
            }
            with closing(
                sqlite3.connect(tmp_path / "kopilka.db", isolation_level=None)
            ) as database:
                database.execute(_REFUSE_THE_THIRD)
                answer = await http.post("/v1/batch", json=batch, headers=auth)
                assert answer.status_code == 200, answer.text
                statuses = [result["status"] for result in answer.json()["results"]]
                assert statuses == [201, 201, 503, 503, 503, 503], answer.text
                balance = (await http.get("/v1/accounts/Ann", headers=auth)).json()["balance"]
                assert balance == "3.00"  # the first piece alone
                database.execute("DROP TRIGGER refuse_the_third")
            key = answer.headers["idempotency-key"]
            await assert_resent_once(http, batch, auth, key, "7.00")  # 1 + 6
    finally:
        await app.engine.close()
