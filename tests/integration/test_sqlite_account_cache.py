"""The SQLite writer's bounded cache of accounts lets go of the one used longest ago, so
the accounts every batch touches are not the ones read again from the file."""

from __future__ import annotations

from pathlib import Path

from kopilka.domain.model import Deposit
from kopilka.engine import Engine
from kopilka.store.sqlite import SqliteStore


async def test_the_cache_lets_go_of_the_least_recently_used(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "kopilka.db", account_cache_max=3)
    async with Engine(store) as engine:
        for number, client in enumerate(["Hot", "A", "B", "Hot", "Hot", "C"]):
            await engine.execute(Deposit(client, 100, "deposit", f"key-{number}"))
        # "Hot" was used after "A" and "B": "A" goes when "C" comes.
        assert [client for _, client in store._account_cache] == ["B", "Hot", "C"]
        hot = await engine.get_account("main", "Hot")
        assert hot is not None and hot.balance_cents == 300
