"""One question to the database asked for many callers at once, its answer kept a moment.

When a busy pool makes many requests give up their wait for a connection together,
each wants to know whether the database answers. Asked once each, they would open as
many connections to a database that is busy already. So one question is out at a
time, every caller waits for that one, and its answer serves the callers of the next
moment too. It runs as its own task: a caller given up on (a readiness check's bound,
a client gone) does not cancel it for the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# What a question gives: None when the database answered, else what it met instead.
Answer = BaseException | None


class SharedQuestion:
    def __init__(self, ask: Callable[[], Awaitable[Answer]], kept_seconds: float) -> None:
        """`ask` never raises: it gives what it met instead of an answer."""
        self._ask = ask
        self._kept_seconds = kept_seconds
        self._asking: asyncio.Task[Answer] | None = None
        self._answered_at = 0.0

    async def answer(self) -> Answer:
        asking = self._asking
        if asking is None or (
            asking.done() and time.monotonic() - self._answered_at >= self._kept_seconds
        ):
            asking = self._asking = asyncio.ensure_future(self._asked())
        return await asyncio.shield(asking)

    async def _asked(self) -> Answer:
        try:
            return await self._ask()
        finally:
            self._answered_at = time.monotonic()

    def forget(self) -> None:
        """The next caller asks anew (a store closed, and perhaps opened again). A
        question still out ends by itself, within its own bound."""
        self._asking = None
