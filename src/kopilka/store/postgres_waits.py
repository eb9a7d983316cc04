"""Work the database has not answered in a few seconds: logged once a spell, and the
spell's end once the database answers such work again.

A batch or a read takes milliseconds. A frozen database (or, for a batch, rows another
transaction holds) left nothing in the log until the command timeout (60 s) ran out,
while clients waited. One timer a batch or a read, not a request: a few microseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

logger = logging.getLogger("kopilka.store.postgres")


class LongWaits:
    """Of one kind of work (batches, reads): how many wait long now, and whether that was
    logged and its end not yet. Nothing is said while an outage is (`outage_logged`):
    its own lines say the database is away, and back."""

    def __init__(
        self, kind: str, kinds: str, why: str, where: str, outage_logged: Callable[[], bool]
    ) -> None:
        self._kind = kind
        self._kinds = kinds
        self._why = why
        self._where = where
        self._outage_logged = outage_logged
        self._waiting = 0
        self._logged = False

    def watch(self, seconds: float) -> Callable[[bool], None]:
        """One of this kind begins; the function returned is called as it ends, with
        whether it was answered (a failed one says nothing of the database's answers)."""
        long_wait: list[bool] = []  # the timer's mark that it ran

        def waits_long() -> None:
            long_wait.append(True)
            self._waiting += 1
            if not (self._outage_logged() or self._logged):
                self._logged = True
                logger.warning(
                    "the database at %s has not answered a %s in %g s: %s",
                    self._where,
                    self._kind,
                    seconds,
                    self._why,
                )

        timer = asyncio.get_running_loop().call_later(seconds, waits_long)

        def ended(answered: bool) -> None:
            timer.cancel()
            if long_wait:
                self._waiting -= 1
            if not self._logged or self._waiting:
                return
            if self._outage_logged():
                self._logged = False  # the outage's lines say it is away, and back
            elif answered:  # any, once none waits long: the one that did may have failed
                self._logged = False
                logger.warning(
                    "the database at %s answers kopilka's %s again", self._where, self._kinds
                )

        return ended
