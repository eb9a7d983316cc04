"""Whether this server can serve now: its engine runs and its store answers.

`GET /v1/health` says only that the process is up (a liveness probe: restarting the
server would not bring a database back). `GET /v1/ready` is for a load balancer, which
should send no traffic to a server whose database is away. The endpoint needs no
token, so however often it is asked the store is read at most once per interval, and
callers in that interval share the one check.
"""

from __future__ import annotations

import asyncio
import time

from kopilka.engine import Engine, EngineState
from kopilka.errors import Unavailable

READY_CHECK_INTERVAL_SECONDS = 1.0
# A store that takes longer than this to answer a trivial read is not ready to serve.
READY_CHECK_SECONDS_MAX = 2.0


class Readiness:
    def __init__(self, engine: Engine, interval_seconds: float = READY_CHECK_INTERVAL_SECONDS):
        self._engine = engine
        self._interval_seconds = interval_seconds
        self._check: asyncio.Future[None] | None = None
        self._checked_at = 0.0

    async def check(self) -> None:
        """Return when ready; raise Unavailable (503) saying why not."""
        if self._engine.state is EngineState.CREATED:  # a worker waiting for the database
            raise Unavailable("store_unavailable", "the database is unavailable")
        if self._engine.state is not EngineState.RUNNING:
            raise Unavailable("shutting_down", "the ledger is not running")
        now = time.monotonic()
        if self._check is None or now - self._checked_at >= self._interval_seconds:
            self._checked_at = now
            self._check = asyncio.ensure_future(self._ping())
            self._check.add_done_callback(_seen)
        try:
            # Shielded: a caller that disconnects must not cancel the check others share.
            await asyncio.shield(self._check)
        except Unavailable as error:  # each caller its own, not one growing traceback
            raise Unavailable(error.code, error.message) from None

    async def _ping(self) -> None:
        try:
            async with asyncio.timeout(READY_CHECK_SECONDS_MAX):
                await self._engine.store.ping()
        except TimeoutError:
            raise Unavailable(
                "store_unavailable",
                f"the database did not answer within {READY_CHECK_SECONDS_MAX:g} s",
            ) from None


def _seen(check: asyncio.Future[None]) -> None:
    """Mark a failed check's error as retrieved, should every caller have gone."""
    if not check.cancelled():
        check.exception()
