"""Large bodies being read hold their bytes in one budget for the whole server: bodies
left a byte short of their end cannot pile up in its memory."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kopilka.api.app import read_body
from kopilka.api.body_budget import BodyBudget
from kopilka.api.errors import ApiError


class Trickle:
    """An ASGI `receive` giving the chunks it is handed, waiting for the next one."""

    def __init__(self) -> None:
        self._chunks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def send(self, chunk: bytes, *, more: bool = True) -> None:
        self._chunks.put_nowait({"type": "http.request", "body": chunk, "more_body": more})

    async def __call__(self) -> dict[str, Any]:
        return await self._chunks.get()


async def test_a_body_that_does_not_fit_is_refused_before_it_is_read() -> None:
    budget = BodyBudget(100)
    first = Trickle()
    first.send(b"x" * 40)
    reading = asyncio.create_task(read_body(first, 80, 1_000, 10, budget))
    await asyncio.sleep(0)
    assert budget.held == 80  # its whole length, declared
    with pytest.raises(ApiError) as refused:
        await read_body(Trickle(), 30, 1_000, 10, budget)
    assert (refused.value.http_status, refused.value.code) == (503, "busy_bodies")
    first.send(b"y" * 40, more=False)
    assert await reading == b"x" * 40 + b"y" * 40
    assert budget.held == 0  # given back once read
    small = Trickle()
    small.send(b"z" * 30, more=False)
    assert await read_body(small, 30, 1_000, 10, budget) == b"z" * 30


async def test_a_body_without_a_length_holds_what_has_come() -> None:
    budget = BodyBudget(100)
    chunked = Trickle()
    chunked.send(b"a" * 60)
    chunked.send(b"b" * 30)
    reading = asyncio.create_task(read_body(chunked, None, 1_000, 10, budget))
    await asyncio.sleep(0.01)
    assert budget.held == 90
    with pytest.raises(ApiError):
        await read_body(Trickle(), 20, 1_000, 10, budget)
    chunked.send(b"c" * 30)  # past the budget as it comes: this request is refused
    with pytest.raises(ApiError) as refused:
        await reading
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
