"""The SQLite store's jobs and transactions, held at the gate a fork waits at
(`store/sqlite_fork_gate.py`), are let go on every path: one left held would make every
later fork wait for ever."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from kopilka.domain.model import Deposit, OpenAccount, Operation, Withdraw
from kopilka.store import open_store
from kopilka.store import sqlite as sqlite_store
from kopilka.store.sqlite_fork_gate import jobs_inside


async def _none_inside() -> int:
    """The jobs inside, once any checkpoint that followed a commit has ended."""
    deadline = time.monotonic() + 10
    while jobs_inside() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return jobs_inside()


@pytest.mark.parametrize("commits_on", ["the writer thread", "the event loop"])
async def test_every_path_of_a_batch_lets_go_of_the_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, commits_on: str
) -> None:
    seconds = -1.0 if commits_on == "the writer thread" else 60.0
    monkeypatch.setattr(sqlite_store, "LOOP_COMMIT_SECONDS_MAX", seconds)
    store = open_store(str(tmp_path / "kopilka.db"))
    await store.open()
    try:
        await store.apply([OpenAccount("Ann")])
        (applied,) = await store.apply([Deposit("Ann", 100, "d", "key-1")])
        assert isinstance(applied, Operation)
        (replayed,) = await store.apply([Deposit("Ann", 100, "d", "key-1")])  # a retry
        (reused,) = await store.apply([Deposit("Ann", 5, "d", "key-1")])  # another body
        (refused,) = await store.apply([Withdraw("Ann", 10_000, "w", "key-2")])
        assert (replayed.id, type(reused).__name__, type(refused).__name__) == (
            applied.id,
            "Conflict",
            "Rejected",
        )
        cancelled = asyncio.ensure_future(store.apply([Deposit("Ann", 7, "d", "key-3")]))
        await asyncio.sleep(0)  # written; its COMMIT on the writer thread, or done
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # done already on the loop
            await cancelled
        await store.get_account("main", "Ann")
        assert await _none_inside() == 0
    finally:
        await store.close()
    assert jobs_inside() == 0
