"""Large bodies being read hold their bytes in one budget for the whole server: bodies
left a byte short of their end cannot pile up in its memory."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kopilka.api.body_budget import BodyBudget
from kopilka.api.errors import ApiError
from kopilka.api.request import read_body


class Trickle:
    """An ASGI `receive` giving the chunks it is handed, waiting for the next one."""

    def __init__(self) -> None:
        self._chunks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def send(self, chunk: bytes, *, more: bool = True) -> None:
        self._chunks.put_nowait({"type": "http.request", "body": chunk, "more_body": more})

    async def __call__(self) -> dict[str, Any]:
        return await self._chunks.get()


async def test_a_body_holds_what_has_come_and_gives_it_back() -> None:
    """Counted as it arrives, never at the length it declares: a request that sent its
    headers alone holds nothing, and cannot keep the others' batches out."""
    budget = BodyBudget(100)
    declared = Trickle()  # says 90 bytes, sends none yet
    waiting = asyncio.create_task(read_body(declared, 90, 1_000, 10, budget))
    first = Trickle()
    first.send(b"x" * 60)
    reading = asyncio.create_task(read_body(first, 80, 1_000, 10, budget))
    await asyncio.sleep(0.01)
    assert budget.held == 60  # what has come
    second = Trickle()
    second.send(b"y" * 50)
    with pytest.raises(ApiError) as refused:
        await read_body(second, 70, 1_000, 10, budget)
    assert (refused.value.http_status, refused.value.code) == (503, "busy_bodies")
    first.send(b"z" * 20, more=False)
    assert await reading == b"x" * 60 + b"z" * 20
    assert budget.held == 0  # given back once read
    declared.send(b"w" * 90, more=False)
    assert await waiting == b"w" * 90


async def test_a_body_without_a_length_holds_what_has_come() -> None:
    budget = BodyBudget(100)
    chunked = Trickle()
    chunked.send(b"a" * 60)
    chunked.send(b"b" * 30)
    reading = asyncio.create_task(read_body(chunked, None, 1_000, 10, budget))
    await asyncio.sleep(0.01)
    assert budget.held == 90
    other = Trickle()
    other.send(b"c" * 20)
    with pytest.raises(ApiError) as refused:
        await read_body(other, None, 1_000, 10, budget)
    assert refused.value.code == "busy_bodies"
    chunked.send(b"d" * 30, more=False)
    assert await reading == b"a" * 60 + b"b" * 30 + b"d" * 30
    assert budget.held == 0
    # One that grows past the budget as it comes is refused then, and gives it back.
    growing = Trickle()
    growing.send(b"e" * 60)
    growing.send(b"f" * 60)
    growing.send(b"g" * 10)
    with pytest.raises(ApiError) as refused:
        await read_body(growing, None, 1_000, 10, budget)
    assert refused.value.code == "busy_bodies"
    assert budget.held == 0


async def test_a_body_cut_off_gives_its_bytes_back() -> None:
    budget = BodyBudget(100)
    slow = Trickle()
    slow.send(b"x" * 10)
    with pytest.raises(ApiError) as timed_out:
        await read_body(slow, 80, 1_000, 0.05, budget)
    assert timed_out.value.http_status == 408
    assert budget.held == 0


async def test_a_body_past_its_time_gets_one_last_look_not_more() -> None:
    """What came while the process stood still is taken (one look once the time is out),
    but a client sending a piece now and then past its time is cut off all the same."""
    trickling = Trickle()
    trickling.send(b"x")

    async def a_piece_every(seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            trickling.send(b"x")

    sending = asyncio.create_task(a_piece_every(0.02))
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(ApiError) as timed_out:
            await read_body(trickling, 1_000, 2_000, 0.2)
        took = asyncio.get_running_loop().time() - started
    finally:
        sending.cancel()
    assert timed_out.value.http_status == 408
    assert took < 1.0, took
