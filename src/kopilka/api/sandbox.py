"""Sandbox ledgers: a fresh ledger per shell session, dropped when it ends or goes idle.

A sandbox is an ordinary ledger in the one store, named
`sandbox-<token id>-<random>`: the owner is part of the name, so any worker
process can check ownership without shared state. The store records when each
sandbox was last used, so every process sharing it (with `--workers N`, a
session's requests land on any of them) sees the same idle time, and any
process drops what has been idle too long, also what a killed server left.

A sandbox's last use is a time of the wall clock. When the clock steps forward (an NTP
step, a virtual machine resumed), every sandbox's last use looks older by the step:
those in use were dropped as idle. A process that sees its clock step forward (its wall
time run ahead of its monotonic time) drops nothing until an idle time has passed since,
in which each session in use has recorded its use by the new time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kopilka.api.auth import Principal
from kopilka.domain.model import SANDBOX_PREFIX
from kopilka.errors import Busy, Unavailable, no_sandbox
from kopilka.settings import SANDBOX_IDLE_SECONDS_DEFAULT
from kopilka.store.protocol import Store

logger = logging.getLogger(__name__)

SANDBOX_IDLE_SECONDS = SANDBOX_IDLE_SECONDS_DEFAULT  # KOPILKA_SANDBOX_IDLE_SECONDS
SANDBOXES_MAX = 1_000  # open at once; each holds rows in the store until dropped
# Per token, so that one token (a client's, say) cannot take every sandbox there is.
SANDBOXES_PER_TOKEN_MAX = 20
# How far the wall clock may run ahead of the monotonic one between two looks before it
# is taken for a step: well past the slewing NTP does, or a busy machine's scheduling.
_STEP_SECONDS = 2.0


class Sandboxes:
    def __init__(
        self,
        store: Store,
        idle_seconds: float = SANDBOX_IDLE_SECONDS,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        assert idle_seconds > 0
        self._store = store
        self._now = wall_clock
        self.idle_seconds = idle_seconds
        # When this process last wrote a use of each sandbox: a session's requests
        # write it at most once per `_touch_interval`, not once each.
        self._touched: dict[str, float] = {}
        self._touch_interval = idle_seconds / 10
        self._reaper: asyncio.Task[None] | None = None
        # Removing the rows of ended sandboxes, and whether to look for more after.
        self._emptying: asyncio.Task[None] | None = None
        self._empty_again = False

    async def create(self, principal: Principal) -> str:
        owner = f"{SANDBOX_PREFIX}{principal.token_id}-"
        ledger = f"{owner}{secrets.token_hex(6)}"
        if not await self._store.open_sandbox(
            ledger, self._now(), SANDBOXES_MAX, owner, SANDBOXES_PER_TOKEN_MAX
        ):
            raise Busy(
                "too_many_sandboxes",
                f"too many sandboxes are open (at most {SANDBOXES_PER_TOKEN_MAX} per token,"
                f" {SANDBOXES_MAX} in all); end a session or try again later",
            )
        self._touched[ledger] = time.monotonic()
        return ledger

    async def touch(self, ledger: str) -> None:
        """Called for every request to a sandbox ledger; records its use now and then.

        Refuses a request to a sandbox that was dropped (ended, or idle too long), so a
        session never goes on in an empty ledger as if its state were still there.
        """
        now = time.monotonic()
        if now - self._touched.get(ledger, -float("inf")) < self._touch_interval:
            # Its use was recorded lately; whether another process has ended it since
            # is one read, not a write.
            if not await self._store.sandbox_is_open(ledger):
                self._touched.pop(ledger, None)
                raise no_sandbox(ledger)
            return
        if not await self._store.touch_sandbox(ledger, self._now()):
            self._touched.pop(ledger, None)
            raise no_sandbox(ledger)
        self._touched[ledger] = now

    async def drop(self, ledger: str) -> None:
        """End a sandbox; refused when it has ended already (or never was). Returns once
        it has ended; its rows are removed after, however many there are, by a task of
        this process's (or, should that be cut short, by whichever process reaps next)."""
        self._touched.pop(ledger, None)
        if not await self._store.end_sandbox(ledger):
            raise no_sandbox(ledger)
        self._empty_soon()

    def _empty_soon(self) -> None:
        """Remove the rows of ended sandboxes, on a task: once more after the one under
        way, if any (it may have looked for them before this one ended)."""
        if self._emptying is None or self._emptying.done():
            self._emptying = asyncio.create_task(self._empty(), name="kopilka-sandbox-emptying")
        else:
            self._empty_again = True

    async def _empty(self) -> None:
        self._empty_again = True
        while self._empty_again:
            self._empty_again = False
            try:
                await self._store.empty_ended_sandboxes()
            except Unavailable:
                return  # the store is down (it says so itself): the reaper tries again
            except Exception:
                logger.exception("could not remove the rows of ended sandboxes")
                return

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever(), name="kopilka-sandbox-reaper")

    async def close(self) -> None:
        """Stop reaping, and removing ended sandboxes' rows. Sandboxes stay in the store:
        another process may serve them, and whichever process runs after their idle time
        drops them; the rows of those ended, whichever process reaps next."""
        for task in (self._reaper, self._emptying):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def reap(self, idle_before: datetime | None = None) -> list[str]:
        """Drop every sandbox idle longer than the timeout (by `idle_before`, else by
        now); their names. They end at once, as a DELETE ends one, and their rows go
        after on the task that empties ended sandboxes: the next round comes on time,
        however big they were."""
        moment = self._now() if idle_before is None else idle_before
        dropped = await self._store.end_idle_sandboxes(
            moment - timedelta(seconds=self.idle_seconds)
        )
        if dropped:
            self._empty_soon()
        for ledger in dropped:
            self._touched.pop(ledger, None)
        stale = time.monotonic() - self.idle_seconds
        for ledger in [name for name, at in self._touched.items() if at < stale]:
            del self._touched[ledger]  # keeps this map small; the store has the truth
        return dropped

    async def _reap_forever(self) -> None:
        period = min(max(self.idle_seconds / 4, 0.05), 30.0)
        # As after an outage: while the server was stopped, no session could record its
        # use, and one open throughout its restart had it counted as idle time.
        reap_from = time.monotonic() + self.idle_seconds
        away_since: datetime | None = None  # when the store was last seen up, once down
        # When the store was last seen up: at the start, then at each round that reached
        # it. Rounds are not tried while reaping waits, so an outage that began then is
        # first met later: counted from then, sandboxes used just before it went too.
        seen_up = self._now()
        clocks_apart = self._clocks_apart()
        while True:
            await asyncio.sleep(period)
            clocks_were_apart, clocks_apart = clocks_apart, self._clocks_apart()
            # Sandboxes ended with rows left (a drop cut short by a crash or a stop, here
            # or in another process): nothing to do with any clock.
            self._empty_soon()
            if clocks_apart - clocks_were_apart > _STEP_SECONDS:  # stepped forward
                reap_from = max(reap_from, time.monotonic() + self.idle_seconds)
            if time.monotonic() < reap_from:
                continue
            try:
                # Right after an outage, only what was idle before it began.
                await self.reap(away_since)
            except Unavailable:
                # The store is down (it says so itself, once per outage).
                away_since = away_since or seen_up
                continue
            except Exception:
                logger.exception("could not drop idle sandbox ledgers")
            else:
                seen_up = self._now()
            if away_since is not None:
                # While it was down, no session could record its use: now that it is
                # seen back, each has an idle time to be seen again before any counts
                # as gone (counted from now: it may have taken a while to come back).
                away_since = None
                reap_from = time.monotonic() + self.idle_seconds

    def _clocks_apart(self) -> float:
        """The wall clock's lead on the monotonic one, in seconds."""
        return self._now().timestamp() - time.monotonic()
