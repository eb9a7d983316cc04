"""Commands run with file modes enforced on them: root ignores them (CI runs as root);
or run as another user, in a directory they may enter."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from tests.e2e.conftest import RUN_TIMEOUT_SECONDS, kopilka_command, kopilka_env

# Root's powers over file modes, taken from the command and from what it runs.
_POWERS = "-dac_override,-dac_read_search,-fowner"
WITHOUT_ROOTS_FILE_POWERS = ("setpriv", f"--bounding-set={_POWERS}", f"--inh-caps={_POWERS}", "--")


@contextlib.contextmanager
def in_mode(path: Path, mode: int, *, then: int) -> Iterator[None]:
    """`path` in `mode` while the body runs, in `then` after it, whatever happened (the
    test's directory is removed in the end, which a mode may forbid)."""
    path.chmod(mode)
    try:
        yield
    finally:
        path.chmod(then)


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


def a_user_with_a_group_of_their_own() -> pwd.struct_passwd:
    """A user other than root whose group is theirs alone (no other member, no one else's
    own group either), such as a service's `kopilka:kopilka`; skipped where there is none,
    or where this is not root, who alone can run a command as them."""
    if os.geteuid() != 0:
        pytest.skip("only root can run a command as another user")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not here to run a command as another user")
    groups = {group.gr_gid: group for group in grp.getgrall()}
    users = sorted(pwd.getpwall(), key=lambda user: user.pw_uid)
    for user in users:
        group = groups.get(user.pw_gid)
        if user.pw_uid == 0 or group is None or not set(group.gr_mem) <= {user.pw_name}:
            continue
        if not any(other.pw_gid == user.pw_gid and other is not user for other in users):
            return user
    pytest.skip("no user here has a group of their own")


def run_python_as(
    user: pwd.struct_passwd, code: str, *arguments: str, cwd: Path
) -> CompletedProcess[str]:
    """`python -c CODE ARGUMENTS` run as `user`, with their own group alone."""
    return subprocess.run(
        [
            *("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"),
            *(sys.executable, "-c", code, *arguments),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=cwd,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


@contextlib.contextmanager
def a_directory_anyone_may_enter() -> Iterator[Path]:
    """A new directory of root's that any user may enter but not write (a test's own
    tmp_path lies in one that only its owner may enter); removed afterwards."""
    made = Path(tempfile.mkdtemp(prefix="kopilka-test-"))
    try:
        made.chmod(0o755)
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)
