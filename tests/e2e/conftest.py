"""Run the real `kopilka` executable in a subprocess, with its own home and stdin piped."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest
from tests.kopilka_server import kopilka_command

RUN_TIMEOUT_SECONDS = 60


def kopilka_env(home: Path) -> dict[str, str]:
    """The caller's environment without any KOPILKA_* setting, the given home, and UTC."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("KOPILKA_")}
    env.update(KOPILKA_HOME=str(home), TZ="UTC", PYTHONUTF8="1")
    return env


def run_kopilka(
    home: Path, *arguments: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kopilka ARGUMENTS` with stdin piped, run in `home`'s parent (which has no kopilka.toml)."""
    home.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [*kopilka_command(), *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**kopilka_env(home), **(env or {})},
        cwd=home.parent,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


def a_ledger_with_one_deposit(home: Path) -> Path:
    """The home's database, made by a deposit of Ann's."""
    opened = run_kopilka(home, "deposit", "--client=Ann", "--amount=1", "--description=x")
    assert opened.returncode == 0, opened.stderr
    return home / "kopilka.db"


def shell_runner(home: Path, *arguments: str) -> Callable[[str], str]:
    """Feed text to `kopilka shell ARGUMENTS`; its stdout, once it has exited 0 and said
    nothing on stderr."""

    def run(text: str) -> str:
        result = run_kopilka(home, "shell", *arguments, stdin=text)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        return result.stdout

    return run


class RunKopilka(Protocol):
    def __call__(
        self, *arguments: str, stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def kopilka_home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def kopilka(kopilka_home: Path) -> RunKopilka:
    def run(
        *arguments: str, stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_kopilka(kopilka_home, *arguments, stdin=stdin, env=env)

    return run


@pytest.fixture
def run_shell(kopilka_home: Path) -> Callable[[str], str]:
    """The embedded shell on the home's SQLite file."""
    return shell_runner(kopilka_home)
