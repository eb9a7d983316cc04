"""Work handed to one of the SQLite store's threads, and what becomes of it as the
program ends.

Once a program's main thread has finished, Python stops every thread pool (no new work
is taken) before it waits for the program's other threads. A thread of the program
still calling an embedded bank was then told "could not apply this" after its write had
committed, and its retry was refused before anything was read. Such work now runs on
the thread that asks: the bank's one caller waits for it there as it would have.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def program_ending() -> bool:
    """Whether the program is ending: its main thread is done once the interpreter has
    begun to shut down, before the exit handlers run."""
    return not threading.main_thread().is_alive()


def submit(pool: ThreadPoolExecutor, work: Callable[[], T]) -> Future[T]:
    """`work` on `pool`'s thread; on this one if the program is ending and the pool has
    stopped. A pool shut down otherwise (a closed store) refuses, as it did."""
    try:
        return pool.submit(work)
    except RuntimeError:
        if not program_ending():
            raise
    done: Future[T] = Future()
    try:
        done.set_result(work())
    except Exception as error:  # told to the caller, as the pool's thread would
        done.set_exception(error)
    return done


async def run(pool: ThreadPoolExecutor, work: Callable[[], T]) -> T:
    """`work`'s result, from `pool`'s thread (see `submit`)."""
    return await asyncio.wrap_future(submit(pool, work))
