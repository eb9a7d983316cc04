"""A sandbox session on a real server: what its greeting says, and what leaving it says
when the server cannot be told to drop it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.e2e.conftest import kopilka_command
from tests.e2e.test_network_shell import _banner
from tests.e2e.test_shell_embedded import Terminal
from tests.kopilka_server import running_server, server_env

IDLE_SECONDS = "600"


def _left_behind(line: str) -> None:
    """The one line leaving says of a sandbox the server was down to drop."""
    assert line.startswith("Warning: the sandbox 'sandbox-"), line
    assert " could not be dropped (cannot reach the server at http://127.0.0.1:" in line, line
    assert line.endswith(
        "); the server drops it, and what it holds, once it has been idle for 600 s"
    ), line


def test_a_piped_sandbox_session_left_with_the_server_down_says_its_sandbox_stays(
    tmp_path: Path,
) -> None:
    """It exited 0 in silence: the user took the sandbox and its data for gone, and they
    stayed on the server until its idle timeout. The session's work stands: still 0."""
    with (
        running_server(tmp_path / "home", KOPILKA_SANDBOX_IDLE_SECONDS=IDLE_SECONDS) as server,
        subprocess.Popen(
            [*kopilka_command(), "shell", "--sandbox", "--url", server.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=server_env(server.home),
        ) as shell,
    ):
        assert shell.stdin is not None and shell.stdout is not None
        shell.stdin.write("deposit --client=Left --amount=1 --description=x\n")
        shell.stdin.flush()
        assert shell.stdout.readline() == "Deposit operation was successful!\n"
        server.stop()
        out, errors = shell.communicate(timeout=30)  # the end of its input
    assert (shell.returncode, out) == (0, "")
    assert errors.count("\n") == 1, errors
    _left_behind(errors.rstrip("\n"))


@pytest.mark.parametrize("leave", ["exit\r", "\x04"], ids=["exit", "ctrl-d"])
def test_a_terminal_sandbox_session_left_with_the_server_down_says_so(
    tmp_path: Path, leave: str
) -> None:
    with running_server(tmp_path / "home", KOPILKA_SANDBOX_IDLE_SECONDS=IDLE_SECONDS) as server:
        terminal = Terminal(server.home, "shell", "--sandbox", "--url", server.url)
        try:
            terminal.expect("'exit' or Ctrl-D to leave.")
            terminal.send("deposit --client=Left --amount=1 --description=x\r")
            terminal.expect("Deposit operation was successful!")
            terminal.expect(">")
            server.stop()
            terminal.send(leave)
            shown = terminal.rest(timeout_seconds=30)
        finally:
            status = terminal.close()
    assert status == 0, shown
    [line] = [line for line in shown.splitlines() if line.startswith("Warning:")]
    _left_behind(line)


def test_a_remote_sandbox_greeting_says_it_is_dropped_when_the_shell_ends(
    tmp_path: Path,
) -> None:
    """The embedded sandbox says `gone when the shell ends`; the remote one said only its
    ledger's name, as any ledger's kept for good."""
    with running_server(tmp_path / "home") as server:
        greeting = _banner(server, "--url", server.url, "--sandbox")
    assert greeting.startswith(f"kopilka shell on {server.url}, ledger 'sandbox-"), greeting
    assert greeting.endswith("' (a sandbox on the server, dropped when the shell ends)."), greeting
