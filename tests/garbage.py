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
    with objects_left_in_cycles() as objects:
        left: list[str] = []
        yield left
    left.extend(
        found.f_code.co_name
        for found in objects
        if isinstance(found, types.FrameType) and "kopilka" in found.f_code.co_filename
    )


@contextmanager
def objects_left_in_cycles() -> Iterator[list[object]]:
    """Every object the work done inside left in reference cycles, filled in as it ends
    (the server keeps young collections rare: see collector.py). The collector is kept
    off meanwhile, so nothing is freed by it first."""
    left: list[object] = []
    gc.collect()
    gc.disable()
    try:
        yield left
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
