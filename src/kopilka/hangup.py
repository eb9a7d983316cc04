"""A server stops for SIGHUP as it stops for SIGTERM.

SIGHUP says the terminal the server ran in has closed (an SSH session dropped).
uvicorn's server leaves it to its default action, which ends the process at once,
with requests in flight cut off; its supervisor of workers starts new workers for it.
Here every process of `kopilka serve` stops gently for it: in flight, answered.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

import uvicorn

HANGUP: signal.Signals | None = getattr(signal, "SIGHUP", None)  # none on Windows


class StopsOnHangup(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            if HANGUP is None or threading.current_thread() is not threading.main_thread():
                yield
                return
            before = signal.signal(HANGUP, self.handle_exit)
            try:
                yield
            finally:
                signal.signal(HANGUP, before)
