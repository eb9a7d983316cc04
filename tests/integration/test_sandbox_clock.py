"""Sandboxes over a real SQLite store, their reaper reading a wall clock the test steps."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kopilka.api.auth import Principal
from kopilka.api.sandbox import Sandboxes
from kopilka.store import open_store
from kopilka.store.protocol import Store

IDLE_SECONDS = 1.0


class _SteppedClock:
    """The machine's wall clock, moved by a step as NTP moves a clock far off."""

    def __init__(self) -> None:
        self.step = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.step


@pytest.mark.timeout(60)
async def test_a_sandbox_in_use_outlives_a_step_of_the_clock(tmp_path: Path) -> None:
    """A step forward made every sandbox's last use look older by the step: one in use
    was dropped as idle at the reaper's next look, its session's state lost. Reaping
    waits an idle time after a step, and then drops what is idle by the new time."""
    store = open_store(str(tmp_path / "kopilka.db"))
    await store.open()
    clock = _SteppedClock()
    sandboxes = Sandboxes(store, IDLE_SECONDS, wall_clock=clock)
    sandboxes.start()
    try:
        ledger = await sandboxes.create(Principal("0123456789abcdef", "admin", None, "main"))
        await sandboxes.touch(ledger)
        clock.step = timedelta(hours=1)
        await asyncio.sleep(IDLE_SECONDS / 2)  # the reaper looks twice meanwhile
        await sandboxes.touch(ledger)  # in use: still there, its use now by the new time
        assert await store.sandbox_is_open(ledger)
        await _dropped_an_idle_time_after(store, ledger, time.monotonic())
    finally:
        await sandboxes.close()
        await store.close()


@pytest.mark.timeout(60)
async def test_a_sandbox_open_through_a_restart_outlives_it(tmp_path: Path) -> None:
    """Its use is recorded now and then, and none while the server was stopped: the
    reaper's first look after a start took the stop for idle time, and dropped a session
    that stayed open through it. The first look waits an idle time, as after an outage."""
    store = open_store(str(tmp_path / "kopilka.db"))
    await store.open()
    ledger = "sandbox-0123456789abcdef-0a1b2c3d4e5f"
    assert await store.open_sandbox(ledger, datetime.now(UTC) - timedelta(seconds=5), 10)
    sandboxes = Sandboxes(store, IDLE_SECONDS, wall_clock=lambda: datetime.now(UTC))
    started = time.monotonic()
    sandboxes.start()
    try:
        await asyncio.sleep(IDLE_SECONDS / 2)  # the reaper looks twice meanwhile
        await sandboxes.touch(ledger)  # the session, back: still there
        await _dropped_an_idle_time_after(store, ledger, started)
    finally:
        await sandboxes.close()
        await store.close()


async def _dropped_an_idle_time_after(store: Store, ledger: str, started: float) -> None:
    """Left alone from `started`: dropped, and not before an idle time has passed."""
    while await store.sandbox_is_open(ledger):
        assert time.monotonic() - started < 10 * IDLE_SECONDS, "never dropped"
        await asyncio.sleep(0.05)
    assert time.monotonic() - started >= IDLE_SECONDS


@pytest.mark.timeout(60)
async def test_an_outage_begun_while_reaping_waits_counts_from_before_it(tmp_path: Path) -> None:
    """Rounds are not tried while reaping waits (after a start): an outage that began
    then was first met later, and counted from there, a sandbox in use just before it
    was dropped as idle once the database was back."""
    path = tmp_path / "kopilka.db"
    store = open_store(str(path))
    await store.open()
    ledger = "sandbox-0123456789abcdef-0a1b2c3d4e5f"
    assert await store.open_sandbox(ledger, datetime.now(UTC) - timedelta(seconds=0.3), 10)
    sandboxes = Sandboxes(store, IDLE_SECONDS, wall_clock=lambda: datetime.now(UTC))
    sandboxes.start()
    try:
        path.rename(tmp_path / "away.db")  # its writes refused: the database is away
        await asyncio.sleep(IDLE_SECONDS * 1.6)  # the first round met the outage
        (tmp_path / "away.db").rename(path)
        await asyncio.sleep(IDLE_SECONDS / 2)  # rounds after it: the store reached again
        assert await store.sandbox_is_open(ledger)
    finally:
        await sandboxes.close()
        await store.close()
