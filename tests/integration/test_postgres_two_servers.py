"""Two `kopilka serve` processes on one PostgreSQL database, answering one request sent to
both at once (a client retrying through a load balancer)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from tests.kopilka_server import running_server


def test_one_opening_sent_to_two_servers_at_once_is_answered_as_opened_by_each(
    tmp_path: Path, postgres_url: str
) -> None:
    """The same POST /v1/accounts, one key and one body with an opening balance, twice to
    each server at once: it opens the account once, and no copy is called another
    request. A batch that read the accounts before another committed the opening, and
    the keys after, found the key taken and no account (409 idempotency_key_reused)."""
    with (
        running_server(tmp_path / "a", postgres_url) as first,
        running_server(tmp_path / "b", postgres_url) as second,
    ):
        headers = {"Authorization": f"Bearer {first.token}"}

        async def race() -> None:
            async with httpx.AsyncClient(headers=headers, timeout=30) as http:
                for round_ in range(40):
                    body = {"client": f"N{round_}", "max_balance": "100", "opening_balance": "10"}
                    key = {"Idempotency-Key": f"open-{round_}"}
                    copies = await asyncio.gather(
                        *(
                            http.post(f"{server.url}/v1/accounts", json=body, headers=key)
                            for server in (first, second, first, second)
                        )
                    )
                    for answer in copies:
                        assert answer.status_code == 201, (round_, answer.text)
                        assert answer.json()["balance"] == "10.00"
                    opened = await http.get(f"{second.url}/v1/accounts/N{round_}")
                    assert opened.json()["balance"] == "10.00"

        asyncio.run(race())
