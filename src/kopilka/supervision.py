"""A worker process of `kopilka serve --workers N` ends with the process that started it.

uvicorn's supervisor stops its workers when it is asked to stop; killed outright
(SIGKILL, the OOM killer), it cannot, and the workers would go on holding the port
and the database with no one to stop them. On Linux the kernel sends each worker
SIGTERM when its supervisor dies, and the worker shuts down as it would when asked.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

SUPERVISOR_PID_VARIABLE = "KOPILKA_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def mark_supervisor() -> None:
    """In the supervisor, before it starts workers: they learn whose death to follow."""
    os.environ[SUPERVISOR_PID_VARIABLE] = str(os.getpid())


def end_with_supervisor() -> None:
    """In a worker: SIGTERM when the supervisor dies (and now, if it is gone already)."""
    supervisor = os.environ.get(SUPERVISOR_PID_VARIABLE)
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return  # not allowed here (a sandbox): the worker runs as before
    if os.getppid() != int(supervisor):  # it died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)
