"""The status a command ends with, once its answer is written, whatever signal comes after.

A deposit that had printed `Deposit operation was successful!` ended 130, 143 or 129
for a Ctrl-C, SIGTERM or SIGHUP that came while its bank closed, or was killed by it as
the interpreter shut down, the default handlers back by then: a script reading `$?`
made the deposit again. Or Python printed a traceback of the thread it was joining as
it shut down. Once the answer is written (`answered`), such a signal ends the process at
once, quietly, with the status decided: what the command did is committed, and closing
only lets go of what is left (a lock, a connection), which the process's end does too.
The handlers set here are the program's for the rest of its life: for `kopilka` itself,
not for a caller that goes on after it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

# The signals a user or a supervisor ends a program with.
ENDING = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class _Decided:
    status = 0
    came = False  # a signal, while the answer was written
    unwritten_status = 0
    unwritten_line = ""
    ignored_at_exit = False  # the interpreter's last steps made quiet


_decided = _Decided()


def answering(status: int, unwritten_status: int, unwritten_line: str) -> None:
    """The answer saying `status` is about to be written: a signal meanwhile waits until
    it is, and then ends the process (cut short, the answer of a write that was applied
    was lost, or a rerun wrote it twice). A second one, as it is written (to a terminal
    that takes no more), ends it at once with `unwritten_status`, and `unwritten_line`
    on stderr."""
    _decided.status = status
    _decided.came = False
    _decided.unwritten_status = unwritten_status
    _decided.unwritten_line = unwritten_line
    _handle(_note)


def answered(status: int) -> None:
    """The answer saying `status` is written: a signal from now on ends the process at
    once with it, as does one that came while it was written."""
    _decided.status = status
    if _decided.came:
        _end(status)
    _handle(_end_at_once)
    if not _decided.ignored_at_exit:
        _decided.ignored_at_exit = True
        atexit.register(_ignored_from_now)


def _ignored_from_now() -> None:
    """At exit (after the threads are joined): as the interpreter ends, past the exit
    handlers, it puts the default handlers back, and a signal then killed the process
    (-2, -15, -1) after its answer. Ignored, which it leaves as it is, the signal ends
    nothing, and the status stands."""
    _handle(signal.SIG_IGN)


def _handle(handler: Callable[[int, FrameType | None], Any] | signal.Handlers) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers, and only it takes signals
    for signum in ENDING:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # an ignored one ends nothing
            signal.signal(signum, handler)


def _note(signum: int, frame: FrameType | None) -> None:
    if _decided.came:
        # Only if it goes at once: stderr may be the very pipe the answer waits on
        # (`2>&1` to a reader that stopped), and a write there held the process for ever,
        # each later signal waiting in it too.
        with contextlib.suppress(OSError, ValueError):
            if select.select([], [2], [], 0)[1]:
                os.write(2, f"Error: {_decided.unwritten_line}\n".encode(errors="backslashreplace"))
        _end(_decided.unwritten_status)
    _decided.came = True


def _end_at_once(signum: int, frame: FrameType | None) -> None:
    _end(_decided.status)


def _end(status: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        # What print() left in them; one in the middle of a write is left as it is.
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
