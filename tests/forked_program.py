"""A Python program that forks, run in a subprocess: the test's own process never forks.
On a timeout, the program's child is killed with it (a hung child outlived its parent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def run_forking(
    program: str, *arguments: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    with subprocess.Popen(
        [sys.executable, "-c", program, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, which a fork stays in
    ) as process:
        try:
            out, errors = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        return subprocess.CompletedProcess(process.args, process.returncode, out, errors)
