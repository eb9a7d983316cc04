"""Work the database has not answered in a few seconds is logged once a spell, and the
spell's end; each spell, however the one before it ended."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kopilka.store.postgres_waits import LongWaits

WHERE = "postgresql://app@db/bank"


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


async def _a_long_wait(waits: LongWaits, *, answered: bool) -> None:
    ended = waits.watch(0.01)
    await asyncio.sleep(0.03)
    ended(answered)


async def test_each_spell_is_told_though_the_long_wait_before_ended_unanswered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A long wait that timed out or was cancelled left the spell told for good: the
    next freeze went unsaid."""
    waits = LongWaits("read", "reads", "it is silent", WHERE, lambda: False)
    with caplog.at_level(logging.WARNING):
        await _a_long_wait(waits, answered=False)
        waits.watch(0.01)(True)  # answered at once: the spell is over
        await _a_long_wait(waits, answered=True)
    waiting = f"the database at {WHERE} has not answered a read in 0.01 s: it is silent"
    again = f"the database at {WHERE} answers kopilka's reads again"
    assert _said(caplog) == [waiting, again, waiting, again]


async def test_a_spell_an_outage_took_over_is_left_to_the_outage_s_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = [False]
    waits = LongWaits("batch", "batches", "it is silent", WHERE, lambda: outage[0])
    with caplog.at_level(logging.WARNING):
        ended = waits.watch(0.01)
        await asyncio.sleep(0.03)
        outage[0] = True  # the command timeout ran out: "is unavailable" was logged
        ended(False)
        outage[0] = False  # "is available again"
        waits.watch(0.01)(True)
        await _a_long_wait(waits, answered=True)
    waiting = f"the database at {WHERE} has not answered a batch in 0.01 s: it is silent"
    again = f"the database at {WHERE} answers kopilka's batches again"
    assert _said(caplog) == [waiting, waiting, again]
