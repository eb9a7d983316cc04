"""Work handed to one of the SQLite store's threads, and what becomes of it as the
program ends.

Once a program's main thread has finished, Python stops every thread pool (no new work
is taken), while the program's other threads run on: those its exit handlers wait for,
an application's own pool's jobs among them, then the rest. A thread still calling an
embedded bank then was told "could not apply this" after its write had committed, and
its retry was refused before anything was read. Such work now runs on the thread that
asks: the bank's one caller waits for it there as it would have.

A fork waits for every job to end (`sqlite_fork_gate`), unless told otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from kopilka.store.sqlite_fork_gate import gated

T = TypeVar("T")


def submit(pool: ThreadPoolExecutor, work: Callable[[], T], *, gate: bool = True) -> Future[T]:
    """`work` on `pool`'s thread; on this one if the pool takes no more work. That is
    the program ending: the store shuts its pools down only once closed, when no work
    is asked of it any more. (Whether the program is ending cannot be asked: its exit
    handlers, which stop the pools and wait for the threads using them, run while the
    main thread still counts as alive.)

    `gate=False`: a fork does not wait for `work`, which only waits for other jobs (they
    would wait for the fork), or whose transaction its caller holds at the gate."""
    if gate:
        work = gated(work)
    try:
        return pool.submit(work)
    except RuntimeError:
        pass
    done: Future[T] = Future()
    try:
        done.set_result(work())
    except Exception as error:  # told to the caller, as the pool's thread would
        done.set_exception(error)
    return done


async def run(pool: ThreadPoolExecutor, work: Callable[[], T], *, gate: bool = True) -> T:
    """`work`'s result, from `pool`'s thread (see `submit`)."""
    return await asyncio.wrap_future(submit(pool, work, gate=gate))
