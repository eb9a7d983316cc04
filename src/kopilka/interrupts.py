"""Ctrl-C (SIGINT) while modules load, kept rather than lost.

Python's own handler raises KeyboardInterrupt wherever the main thread is. When that is
a callback run for Python's own housekeeping (the import system's module locks are freed
by a weakref's callback, the collector runs finalizers), Python prints the exception as
"ignored", traceback and all, and goes on: the interrupt is gone. `kopilka serve` stopped
0.1 s into its start went on to serve for good. Loading is where such callbacks run most,
and it takes a fraction of a second, so while loading an interrupt is only written down,
and raised once the loading is over; a second one, for a loading that hangs (a file
system that does not answer), is raised at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def kept_while_loading() -> Iterator[None]:
    """Raise KeyboardInterrupt at the end of the body for a SIGINT that came while it
    ran."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread takes signals, and only it may set their handlers
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        # Ignored (a job started in the background, `cmd &`, which Ctrl-C is not for),
        # or someone else's: theirs to keep.
        yield
        return
    came = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal came
        if came:
            raise KeyboardInterrupt  # pressed again: the loading is not ending by itself
        came = True  # raised here, it could land in a callback that prints it and drops it

    signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's, as found
    if came:
        raise KeyboardInterrupt
