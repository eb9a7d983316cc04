"""What an embedded bank tells of a write that Ctrl-C (or a signal ending the program)
cut short, wherever the signal landed in the caller's thread: before the write was
handed to the engine, or once it had ended, on its way back. A signal's exception is
raised in the main thread where it stands; here it is made as its handler makes it, at
those points, and told to the bank as the shell and the one-shot commands tell it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from kopilka.bank import EmbeddedBank
from kopilka.errors import KopilkaError
from kopilka.handover import Handover
from kopilka.shell.commands import (
    APPLIED_THEN_INTERRUPTED,
    applied_reply,
    calls_handed,
    interrupted_write,
    prepare,
    settle_write,
)
from kopilka.shell.output import Message
from kopilka.shell.parser import ParsedCommand, parse_line


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[EmbeddedBank]:
    with EmbeddedBank(str(tmp_path / "kopilka.db")) as opened:
        opened.deposit("Ann", 500, "opening", "k-opening")
        yield opened


def test_a_write_stopped_before_it_was_handed_over_was_not_applied(bank: EmbeddedBank) -> None:
    """Said "may still have been applied: look before running it again" (and, under its
    key, to retry it): the user looked, or ran again, a write that never began."""
    action = prepare(_parsed("deposit --client=Ann --amount=1 --description=x"))
    since = calls_handed(bank)
    interruption = KeyboardInterrupt()  # as the line was parsed, or the bank was called
    settle_write(interruption, bank, since)
    assert interrupted_write(interruption) == "interrupted before it began; nothing was applied"
    assert applied_reply(action, interruption) is None
    assert bank.account("Ann").balance_cents == 500


@pytest.mark.parametrize(
    ("line", "answer"),
    [
        ("deposit --client=Ann --amount=1 --description=x", "Deposit operation was successful!"),
        (
            "add-user -n Bob --max 100 -c 5",
            "Added user Bob: balance $5.00, floor $0.00, cap $100.00.",
        ),
    ],
)
def test_a_write_stopped_on_its_way_back_was_applied_and_is_answered(
    bank: EmbeddedBank, line: str, answer: str
) -> None:
    """Ended, its answer on its way to the caller: "may still have been applied", and a
    key to retry it with, of a write done. Its outcome is known, and so is its answer."""
    action = prepare(_parsed(line))
    since = calls_handed(bank)
    assert action(bank) == Message(answer)
    interruption = SystemExit(143)  # SIGTERM's ending, as the answer came back
    settle_write(interruption, bank, since)
    assert interrupted_write(interruption) == APPLIED_THEN_INTERRUPTED
    assert applied_reply(action, interruption) == Message(answer)


def test_a_write_refused_before_its_stop_says_nothing_was_applied(bank: EmbeddedBank) -> None:
    action = prepare(_parsed("withdraw --client=Ann --amount=10 --description=x"))
    since = calls_handed(bank)
    with pytest.raises(KopilkaError, match="insufficient funds"):
        action(bank)
    interruption = KeyboardInterrupt()
    settle_write(interruption, bank, since)
    assert interrupted_write(interruption) == (
        "interrupted; nothing was applied: insufficient funds: Ann has $5.00 available"
    )
    assert applied_reply(action, interruption) is None


def test_a_call_withdrawn_before_the_loop_takes_it_never_runs() -> None:
    """Withdrawn, it is not made at all: no coroutine is left never awaited."""
    ran: list[str] = []

    async def call() -> str:
        ran.append("ran")
        return "done"

    loop = asyncio.new_event_loop()
    try:
        withdrawn = Handover(call)
        withdrawn_future = withdrawn.send(loop)
        assert withdrawn.withdraw()
        taken = Handover(call)
        taken_future = taken.send(loop)
        loop.run_until_complete(asyncio.sleep(0.01))
        assert not taken.withdraw()  # taken: it runs, and is told as it ended
        assert (taken.ended, taken.outcome, taken_future.result()) == (True, "done", "done")
        assert (ran, withdrawn.ended, withdrawn_future.cancelled()) == (["ran"], False, True)
    finally:
        loop.close()


def _parsed(line: str) -> ParsedCommand:
    parsed = parse_line(line)
    assert parsed is not None
    return parsed
