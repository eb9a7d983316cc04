"""A batch request longer than one of the engine's batches, applied piece by piece, whose
middle piece the database fails (a trigger of its own, as a database that fails one
write and not the others) or refuses: the app in process over a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import httpx
from tests.integration.test_api_stopping import app_with_ann, assert_resent_once

from kopilka.limits import Limits

# Fails as the database does (503, nothing applied, try again): an error as it runs.
_FAIL_THE_THIRD = (
    "CREATE TRIGGER fail_the_third BEFORE INSERT ON operations"
    " WHEN NEW.description = 'third' BEGIN SELECT abs(-9223372036854775808); END"
)
# Refuses it as a constraint of the database's own does (422 database_refused).
_REFUSE_THE_THIRD = (
    "CREATE TRIGGER refuse_the_third BEFORE INSERT ON operations"
    " WHEN NEW.description = 'third' BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
)
_DESCRIPTIONS = ("first", "second", "third", "fourth", "fifth", "sixth")
_BATCH = {
    "operations": [
        {"type": "deposit", "client": "Ann", "amount": "1", "description": text}
        for text in _DESCRIPTIONS
    ]
}


@asynccontextmanager
async def _app_in_pieces_of_two(
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The app over a ledger with Ann, its batches two operations long: an HTTP client
    to it and the admin's headers."""
    app, token = await app_with_ann(tmp_path, Limits(batch_operations_max=2))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://k"
        ) as http:
            yield http, {"Authorization": f"Bearer {token}"}
    finally:
        await app.engine.close()


async def test_pieces_after_one_that_failed_are_not_applied_and_the_key_says_how_to_resend(
    tmp_path: Path,
) -> None:
    """docs/api.md: no piece after a failed one is applied, and the answer's
    Idempotency-Key header gives the key to resend the whole batch under, which then
    applies what was not, once."""
    async with _app_in_pieces_of_two(tmp_path) as (http, auth):
        batch = _BATCH
        with closing(sqlite3.connect(tmp_path / "kopilka.db", isolation_level=None)) as database:
            database.execute(_FAIL_THE_THIRD)
            answer = await http.post("/v1/batch", json=batch, headers=auth)
            assert answer.status_code == 200, answer.text
            statuses = [result["status"] for result in answer.json()["results"]]
            assert statuses == [201, 201, 503, 503, 503, 503], answer.text
            balance = (await http.get("/v1/accounts/Ann", headers=auth)).json()["balance"]
            assert balance == "3.00"  # the first piece alone
            database.execute("DROP TRIGGER fail_the_third")
        key = answer.headers["idempotency-key"]
        await assert_resent_once(http, batch, auth, key, "7.00")  # 1 + 6


async def test_a_piece_a_constraint_refuses_and_those_after_it_share_the_refusal(
    tmp_path: Path,
) -> None:
    """docs/api.md: a piece a constraint of the database's own refuses is refused whole,
    and no piece after it is applied; no key is given to resend the same body under,
    which would be refused the same way."""
    async with _app_in_pieces_of_two(tmp_path) as (http, auth):
        with closing(sqlite3.connect(tmp_path / "kopilka.db", isolation_level=None)) as database:
            database.execute(_REFUSE_THE_THIRD)
        answer = await http.post("/v1/batch", json=_BATCH, headers=auth)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [result["status"] for result in results] == [201, 201, 422, 422, 422, 422]
        assert {result["error"]["code"] for result in results[2:]} == {"database_refused"}
        assert "idempotency-key" not in answer.headers
        balance = (await http.get("/v1/accounts/Ann", headers=auth)).json()["balance"]
        assert balance == "3.00"  # the first piece alone
