"""Commands run with file modes enforced on them: root ignores them (CI runs as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from tests.e2e.conftest import RUN_TIMEOUT_SECONDS, kopilka_command, kopilka_env

# Root's powers over file modes, taken from the command and from what it runs.
_POWERS = "-dac_override,-dac_read_search,-fowner"
WITHOUT_ROOTS_FILE_POWERS = ("setpriv", f"--bounding-set={_POWERS}", f"--inh-caps={_POWERS}", "--")


def file_modes_enforced(tmp_path: Path) -> tuple[str, ...]:
    """The prefix that runs a command with file modes enforced on it: none for a user,
    setpriv for root (skipped where neither does)."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("root ignores file modes, and setpriv is not here to drop that")
    probe = tmp_path / "probe"
    probe.write_text("")
    probe.chmod(0o400)
    runs = subprocess.run([*WITHOUT_ROOTS_FILE_POWERS, "true"], check=False)
    writes = subprocess.run(
        [*WITHOUT_ROOTS_FILE_POWERS, "sh", "-c", f"cat /dev/null > '{probe}'"],
        stderr=subprocess.DEVNULL,
        check=False,
    )
    probe.unlink()
    if runs.returncode != 0 or writes.returncode == 0:
        pytest.skip("root's power over file modes cannot be dropped here")
    return WITHOUT_ROOTS_FILE_POWERS


def run_kopilka_as(prefix: tuple[str, ...], home: Path, *arguments: str) -> CompletedProcess[str]:
    """`kopilka ARGUMENTS` after `prefix`, with `home`, run in its parent."""
    return subprocess.run(
        [*prefix, *kopilka_command(), *arguments],
        capture_output=True,
        text=True,
        env=kopilka_env(home),
        cwd=home.parent,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
