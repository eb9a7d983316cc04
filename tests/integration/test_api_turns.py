"""Tokens take turns at the ledger: one token's import does not hold back another's write.

The app runs in process over a real SQLite file, called through ASGI, with batches
bounded at 300 operations so that an import of 3,000 is ten batches, each applied on
the writer thread while the event loop serves others.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from kopilka.api.admin_token import ensure_admin_token
from kopilka.api.app import create_app
from kopilka.limits import Limits

BATCH_OPERATIONS = 300
IMPORTED = 3_000


async def test_a_tellers_deposit_goes_between_an_imports_batches(tmp_path: Path) -> None:
    app = create_app(
        str(tmp_path / "kopilka.db"), limits=Limits(batch_operations_max=BATCH_OPERATIONS)
    )
    await app.engine.start()
    try:
        await ensure_admin_token(app.store, tmp_path / "admin.token")
        admin = {"Authorization": f"Bearer {(tmp_path / 'admin.token').read_text().strip()}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kopilka") as http:
            created = await http.post("/v1/tokens", json={"role": "teller"}, headers=admin)
            teller = {"Authorization": f"Bearer {created.json()['secret']}"}
            opened = await http.post(
                "/v1/deposits",
                json={"client": "Ann", "amount": "1", "open_account": True},
                headers=admin,
            )
            assert opened.status_code == 201
            assert (await http.get("/v1/accounts/Ann", headers=teller)).status_code == 200

            deposit = {"type": "deposit", "client": "Ann", "amount": "0.01"}
            imported = asyncio.create_task(
                http.post("/v1/batch", json={"operations": [deposit] * IMPORTED}, headers=admin)
            )
            # Once the import's first batch has committed, the rest are queued behind it.
            applied_before = app.engine.stats.operations
            while app.engine.stats.operations < applied_before + BATCH_OPERATIONS:
                await asyncio.sleep(0.001)
            single = await http.post(
                "/v1/deposits", json={"client": "Ann", "amount": "7"}, headers=teller
            )
            results = (await imported).json()["results"]
    finally:
        await app.engine.close()

    assert single.status_code == 201
    ids = [result["operation"]["id"] for result in results]
    assert len(ids) == IMPORTED
    # First come, first served, the teller's deposit came after all of the import.
    after = sum(1 for operation_id in ids if operation_id > single.json()["id"])
    assert after >= IMPORTED // 2, after
