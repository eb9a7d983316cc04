"""The server's cache of verified tokens: made-up ids never push out a token in use."""

from __future__ import annotations

import pytest

from kopilka.api.auth import TokenCache, new_token_record
from kopilka.errors import Unauthorized
from kopilka.store.memory import MemoryStore
from kopilka.tokens import TokenRecord


class CountedReads(MemoryStore):
    """The memory store, counting its token reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get_token(self, token_id: str) -> TokenRecord | None:
        self.reads += 1
        return await super().get_token(token_id)


async def test_a_flood_of_made_up_ids_does_not_push_out_a_token_in_use() -> None:
    store = CountedReads()
    record, secret = new_token_record("teller", None)
    await store.put_token(record)
    cache = TokenCache(store, ttl_seconds=60, entries_max=4)
    await cache.authenticate(f"Bearer {secret}".encode())
    assert store.reads == 1
    for number in range(10):
        made_up = f"kop_{number:016x}_{'A' * 43}"
        with pytest.raises(Unauthorized):
            await cache.authenticate(f"Bearer {made_up}".encode())
    assert store.reads == 11
    await cache.authenticate(f"Bearer {secret}".encode())
    assert store.reads == 11  # still known: no read again
    with pytest.raises(Unauthorized):  # a guess repeated within the TTL is read once
        await cache.authenticate(f"Bearer kop_{9:016x}_{'A' * 43}".encode())
    assert store.reads == 11
