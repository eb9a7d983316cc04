"""Sandbox ledgers: a fresh ledger per shell session, dropped when it ends or goes idle.

A sandbox is an ordinary ledger in the one store, named
`sandbox-<token id>-<random>`: the owner is part of the name, so any worker
process can check ownership without shared state. Each process remembers when
it last saw a sandbox used and drops those idle longer than the timeout, so a
client that vanishes leaves nothing behind for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from kopilka.api.auth import SANDBOX_PREFIX, Principal
from kopilka.errors import Busy
from kopilka.store.protocol import Store

logger = logging.getLogger(__name__)

SANDBOX_IDLE_SECONDS = 900
SANDBOXES_MAX = 1_000  # per process; each holds rows in the store until dropped


class Sandboxes:
    def __init__(self, store: Store, idle_seconds: float = SANDBOX_IDLE_SECONDS) -> None:
        assert idle_seconds > 0
        self._store = store
        self.idle_seconds = idle_seconds
        self._last_used: dict[str, float] = {}
        self._reaper: asyncio.Task[None] | None = None

    def create(self, principal: Principal) -> str:
        if len(self._last_used) >= SANDBOXES_MAX:
            raise Busy("too_many_sandboxes", "too many sandboxes are open; try again later")
        ledger = f"{SANDBOX_PREFIX}{principal.token_id}-{secrets.token_hex(6)}"
        self._last_used[ledger] = time.monotonic()
        return ledger

    def touch(self, ledger: str) -> None:
        """Called for every request in a sandbox ledger (also one made by another worker)."""
        if ledger.startswith(SANDBOX_PREFIX):
            self._last_used[ledger] = time.monotonic()

    async def drop(self, ledger: str) -> None:
        self._last_used.pop(ledger, None)
        await self._store.drop_ledger(ledger)

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever(), name="kopilka-sandbox-reaper")

    async def close(self) -> None:
        """The server is stopping, and with it every session: drop what we know."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for ledger in list(self._last_used):
            await self.drop(ledger)

    async def _reap_forever(self) -> None:
        period = min(max(self.idle_seconds / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(period)
            deadline = time.monotonic() - self.idle_seconds
            for ledger, last_used in list(self._last_used.items()):
                if last_used < deadline:
                    try:
                        await self.drop(ledger)
                    except Exception:  # the store may be down: try again next round
                        logger.exception("could not drop idle sandbox ledger")
                        self._last_used.setdefault(ledger, time.monotonic())
