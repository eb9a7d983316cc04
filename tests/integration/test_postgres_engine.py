"""The engine on PostgreSQL, where two batches are in flight at once: shutting down while
a long request's later piece waits behind the piece before it."""

from __future__ import annotations

import asyncio

import pytest

from kopilka.domain.model import Deposit, Operation
from kopilka.engine import Engine, EngineState
from kopilka.errors import Unavailable
from kopilka.store import open_store

pytestmark = pytest.mark.postgres


async def test_close_returns_while_a_long_requests_piece_waits(postgres_url: str) -> None:
    engine = Engine(open_store(postgres_url))
    await engine.start()
    head = engine.limits.shared_batch_operations_max
    deposits = [Deposit("Ann", 100, "long", f"long-{n}") for n in range(2 * head)]
    long_request = asyncio.create_task(engine.submit_many(deposits, caller="teller-a"))
    other = asyncio.create_task(
        engine.execute(Deposit("Bob", 100, "short", "short"), caller="teller-b")
    )
    await asyncio.sleep(0.01)  # the first piece is being written; the second waits for it
    # The writer had gone to sleep on that waiting piece; the drain that took it must
    # wake it, or close() waits for it for ever.
    await asyncio.wait_for(engine.close(), 30)
    assert engine.state is EngineState.CLOSED
    assert all(isinstance(outcome, Operation) for outcome in await long_request)
    assert isinstance(await other, Operation)


async def test_a_read_after_the_store_closed_is_unavailable_not_an_assertion(
    postgres_url: str,
) -> None:
    engine = Engine(open_store(postgres_url))
    await engine.start()
    await engine.execute(Deposit("Ann", 100, "d", "k1"))
    await engine.close()
    with pytest.raises(Unavailable) as closed:
        await engine.get_account("main", "Ann")
    assert closed.value.code == "shutting_down"
