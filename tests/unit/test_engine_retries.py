"""A batch the store refuses whole for a passing reason is tried again by the engine;
one refused every time is told "busy", nothing applied."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from tests.garbage import objects_left_in_cycles

from kopilka.domain.model import Command, Deposit, Operation, Outcome
from kopilka.engine import Engine
from kopilka.errors import RetryableStoreError, Unavailable
from kopilka.limits import Limits
from kopilka.store.memory import MemoryStore


class RefusingAtFirst(MemoryStore):
    """The memory store, refusing its first `refusals` batches as a deadlock would."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.calls = 0

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        self.calls += 1
        if self.calls <= self.refusals:
            raise RetryableStoreError("deadlock detected")
        return await super().apply(commands)


def _deposit(key: str) -> Deposit:
    return Deposit("John Jones", 100, "ATM Deposit", key)


async def test_a_batch_refused_for_a_passing_reason_is_applied_once_on_a_later_try() -> None:
    store = RefusingAtFirst(refusals=3)
    async with Engine(store, Limits(batch_attempts_max=4)) as engine:
        (outcome,) = await engine.submit_many([_deposit("k1")])
        assert isinstance(outcome, Operation)
        assert store.calls == 4
        assert (await engine.get_account("main", "John Jones")).balance_cents == 100


async def test_a_batch_refused_on_every_try_is_told_busy_and_changes_nothing() -> None:
    store = RefusingAtFirst(refusals=4)
    async with Engine(store, Limits(batch_attempts_max=4)) as engine:
        with pytest.raises(Unavailable) as busy:
            await engine.submit_many([_deposit("k1")])
        assert busy.value.code == "store_busy"
        assert "nothing was applied" in busy.value.message
        assert store.calls == 4
        assert await engine.list_accounts("main") == []
        # The same key again, the store well: applied, once.
        (again,) = await engine.submit_many([_deposit("k1")])
        assert isinstance(again, Operation) and not again.replayed


async def test_batches_leave_nothing_for_the_cyclic_collector() -> None:
    """The server keeps young collections rare (collector.py): a batch is freed as it
    ends, not left in reference cycles for the collector."""
    store = RefusingAtFirst(refusals=1)
    async with Engine(store, Limits(batch_attempts_max=4)) as engine:
        await engine.submit_many([_deposit("k0")])  # refused once, then applied
        store.refusals, store.calls = 0, 0
        with objects_left_in_cycles() as left:
            for number in range(1, 101):
                await engine.submit_many([_deposit(f"k{number}")])
    assert store.calls == 100
    assert left == []
