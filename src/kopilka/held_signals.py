"""Signals held while an answer is written, and delivered once it is.

A Ctrl-C, SIGTERM or SIGHUP raised in the middle of writing a write's answer left it
unknown whether the line had gone out: a piped shell said of a deposit it had answered
`Deposit operation was successful!` that it was "interrupted, but only once the
command was applied", two results for one line. Held, the signal comes once the answer
is written whole (or has failed), and acts then as it would have. A second one, as the
answer is written (to a reader that takes no more), acts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from kopilka.decided import ENDING


@contextlib.contextmanager
def held() -> Iterator[None]:
    """The body runs with ENDING's signals held, delivered to their handlers after it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread takes signals, and only it may set their handlers
        return
    before: dict[int, Any] = {}
    came: list[int] = []
    released = False

    def note(signum: int, frame: FrameType | None) -> None:
        # Released: left in place by a signal raised while the handlers were put back.
        if released or came:
            came.clear()
            _deliver(signum, before[signum], frame)
        else:
            came.append(signum)

    try:
        before.update(noting(note))
        yield
    finally:
        released = True
        put_back(before)
        for signum in came:
            _deliver(signum, signal.getsignal(signum), None)


def noting(note: Callable[[int, FrameType | None], None]) -> dict[int, Any]:
    """ENDING's handlers (on the main thread), each but an ignored one replaced by
    `note`: what they were, for `put_back`."""
    before: dict[int, Any] = {}
    for signum in ENDING:
        handler = signal.getsignal(signum)
        if handler is not signal.SIG_IGN:  # an ignored one stays so
            before[signum] = handler
            signal.signal(signum, note)
    return before


def put_back(before: dict[int, Any]) -> None:
    for signum, handler in before.items():
        signal.signal(signum, handler)


def _deliver(signum: int, handler: Any, frame: FrameType | None) -> None:
    """What `signum` would have done under `handler`."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
