"""A call handed from the caller's thread to the engine's event loop, and what became of it.

A Ctrl-C (or a signal that ends the program) is raised in the main thread wherever it
stands: before its call was handed over, while the call ran, or once it had ended, on
the way back with its answer. Told only "it may have been applied" from all of them, a
user checked, or ran a write again that had never begun. Here the loop's thread writes
down whether it took the call and how it ended; no signal is raised in that thread, so
the caller reads what is so, whichever step the signal cut short. A call the caller
withdraws before the loop takes it never runs: nothing of it is applied, ever.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Handover(Generic[T]):
    def __init__(self, call: Callable[[], Coroutine[Any, Any, T]]) -> None:
        # The coroutine is made by the loop's thread, as it takes the call: made here, one
        # withdrawn would be a coroutine never awaited, a warning at exit.
        self._call = call
        self.future: Future[T] = Future()
        self._state = threading.Lock()
        self._taken = False
        self._withdrawn = False
        self._ended = threading.Event()
        self._outcome: T | BaseException | None = None
        # Its caller stopped waiting for its end (a second Ctrl-C): what became of it is
        # not known, and is not waited for again.
        self.abandoned = False

    def send(self, loop: asyncio.AbstractEventLoop) -> Future[T]:
        """Hand the call to `loop`; its future is answered as the call ends."""
        loop.call_soon_threadsafe(self._start, loop)
        return self.future

    def withdraw(self) -> bool:
        """From the caller's thread: True if the loop has not taken the call, which now it
        never will."""
        with self._state:
            if not self._taken:
                self._withdrawn = True
            return self._withdrawn

    def wait(self, seconds: float | None = None) -> bool:
        """Until the call has ended, or `seconds` have passed (a signal interrupts the
        wait); whether it has ended."""
        return self._ended.wait(seconds)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def outcome(self) -> T | BaseException | None:
        """What the call returned, or raised (CancelledError: the bank closed under it);
        None until it has ended."""
        return self._outcome

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop's thread: the call, unless withdrawn (or cancelled) first."""
        with self._state:
            if self._withdrawn or self.future.cancelled():
                self._withdrawn = True
                self.future.cancel()
                return
            self._taken = True
        try:
            task = loop.create_task(self._call())
        except BaseException as error:  # no coroutine was made: the call never began
            self._ended_in(error)
            return
        task.add_done_callback(self._task_done)
        # Cancelled by its caller (waited too long for it, or the bank closing): the call too.
        self.future.add_done_callback(
            lambda future: (
                future.cancelled()
                and not loop.is_closed()
                and loop.call_soon_threadsafe(task.cancel)
            )
        )

    def _task_done(self, task: asyncio.Task[T]) -> None:
        if task.cancelled():
            self._ended_in(asyncio.CancelledError())
            return
        error = task.exception()  # retrieved: no "exception was never retrieved" at exit
        if error is not None:
            self._ended_in(error)
            return
        outcome = task.result()
        self._outcome = outcome
        self._ended.set()
        if self.future.set_running_or_notify_cancel():
            self.future.set_result(outcome)

    def _ended_in(self, error: BaseException) -> None:
        self._outcome = error
        self._ended.set()
        if isinstance(error, asyncio.CancelledError):
            self.future.cancel()
        elif self.future.set_running_or_notify_cancel():
            self.future.set_exception(error)
