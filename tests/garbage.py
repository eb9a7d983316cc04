"""What a piece of work leaves for the cyclic garbage collector: kopilka's frames held in
reference cycles (and whatever they hold: a request's body, a batch's plan) instead of
freed as the work ends."""

from __future__ import annotations

import gc
import types
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frames_left_in_cycles() -> Iterator[list[str]]:
    """The names of kopilka's frames the work done inside left in cycles, filled in as it
    ends. The collector is kept off meanwhile, so nothing is freed by it first."""
    left: list[str] = []
    gc.collect()
    gc.disable()
    try:
        yield left
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left.extend(
            found.f_code.co_name
            for found in gc.garbage
            if isinstance(found, types.FrameType) and "kopilka" in found.f_code.co_filename
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
