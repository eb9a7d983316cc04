"""`kopilka serve --workers N` reads its settings once: the workers, and a worker started
again after a crash, serve with those the server started with. The config file and
KOPILKA_DB_PASSWORD_FILE may be pipes read once (`<(...)`), or change or go while the
server runs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.kopilka_server import (
    START_SECONDS_MAX,
    ServerProcess,
    kopilka_command,
    running_server,
    server_env,
    workers_of,
)

PASSWORD = "S3cret-pw"


@contextlib.contextmanager
def _running_in_bash(server: ServerProcess, script: str) -> Iterator[ServerProcess]:
    """`server` with two workers, started by bash running `script` (`... exec "$@" ...`,
    the server's command in "$@"): its process substitutions give the server pipes."""
    server.home.mkdir(parents=True, exist_ok=True)
    command = [*kopilka_command(), "serve", "--port", str(server.port), "--workers", "2"]
    server.process = subprocess.Popen(
        ["bash", "-c", script, "bash", *command],
        env=server_env(server.home, **server.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until_serving(server)
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def _wait_until_serving(server: ServerProcess) -> None:
    """Until /v1/health answers 200; the server's output, should it exit meanwhile."""
    assert server.process is not None
    deadline = time.monotonic() + START_SECONDS_MAX
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            code = server.stop(signum=None)
            raise AssertionError(f"the server exited {code}: {server.output}{server.errors}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.url}/v1/health", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError("the server did not answer /v1/health")


def _kill_every_worker(server: ServerProcess) -> list[int]:
    """SIGKILL to each worker: whatever answers next is a worker started in its place."""
    assert server.process is not None
    killed = workers_of(server.process.pid)
    assert len(killed) == 2, killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    return killed


def _serves_again_in_new_workers(server: ServerProcess, killed: list[int]) -> None:
    assert server.process is not None
    _wait_until_serving(server)
    deadline = time.monotonic() + START_SECONDS_MAX
    while len(set(workers_of(server.process.pid)) - set(killed)) < 2:
        assert time.monotonic() < deadline, "no two workers were started again"
        time.sleep(0.05)


def test_workers_serve_the_settings_of_a_config_given_as_a_pipe(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    script = f'exec "$@" --config <(printf \'db = "{ledger}"\\n\')'
    with _running_in_bash(ServerProcess(tmp_path / "home"), script) as server:
        with server.client() as admin:
            deposit = {"client": "Ann", "amount": "5", "open_account": True}
            assert admin.post("/v1/deposits", json=deposit).status_code == 201
        # Killed, each worker is started again: the pipe read once is not read again.
        _serves_again_in_new_workers(server, _kill_every_worker(server))
        with server.client() as admin:
            assert admin.get("/v1/accounts/Ann").json()["balance"] == "5.00"
        assert server.stop() == 0, server.errors
    assert str(ledger) in server.output  # the database the pipe named
    assert ledger.is_file()
    assert "a worker cannot start" not in server.errors, server.errors


@pytest.mark.parametrize("changed", ["deleted", "spoilt"])
def test_workers_started_again_serve_the_settings_the_server_started_with(
    tmp_path: Path, changed: str
) -> None:
    """A worker killed (out of memory, say) after its settings file went: the whole
    server stopped, the healthy worker included, as the new worker could not read it."""
    config = tmp_path / "kopilka.toml"
    config.write_text("sandbox_idle_seconds = 1234\n")
    with running_server(tmp_path / "home", workers=2, KOPILKA_CONFIG=str(config)) as server:
        if changed == "deleted":
            config.unlink()
        else:
            config.write_text("db = 5\n")  # no setting: a database is a path or URL
        _serves_again_in_new_workers(server, _kill_every_worker(server))
        with server.client() as admin:
            sandbox = admin.post("/v1/sandboxes")
            assert sandbox.status_code == 201, sandbox.text
            assert sandbox.json()["idle_timeout_seconds"] == 1234  # as the file said at start
        assert server.stop() == 0, server.errors
    assert "a worker cannot start" not in server.errors, server.errors
    assert "Traceback" not in server.errors, server.errors


def test_workers_serve_with_a_password_file_given_as_a_pipe(
    postgres_url: str, tmp_path: Path
) -> None:
    """The test server trusts every connection: the password is only read, here once, by
    the server's first process, and found in no process's environment or output."""
    script = f'KOPILKA_DB_PASSWORD_FILE=<(printf \'{PASSWORD}\\n\') exec "$@" --db "$DB"'
    server = ServerProcess(tmp_path / "home", postgres_url, DB=postgres_url)
    with _running_in_bash(server, script):
        assert server.process is not None
        _serves_again_in_new_workers(server, _kill_every_worker(server))
        with server.client() as admin:
            assert admin.post("/v1/accounts", json={"client": "Ann"}).status_code == 201
        for pid in [server.process.pid, *workers_of(server.process.pid)]:
            assert PASSWORD.encode() not in Path(f"/proc/{pid}/environ").read_bytes(), pid
        assert server.stop() == 0, server.errors
    assert "postgres:***@" in server.output
    assert PASSWORD not in server.output + server.errors
    assert "a worker cannot start" not in server.errors, server.errors


def test_workers_started_again_after_the_ledger_file_went_wait_for_it(tmp_path: Path) -> None:
    """A worker started again made a new, empty ledger at the path, called itself ready,
    and refused every token (the tokens were in the file removed): it waits for the
    ledger the server opened instead, not ready, and makes nothing."""
    home = tmp_path / "home"
    with running_server(home, workers=2) as server:
        with server.client() as admin:
            deposit = {"client": "Ann", "amount": "5", "open_account": True}
            assert admin.post("/v1/deposits", json=deposit).status_code == 201
        database = home / "kopilka.db"
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            path.unlink(missing_ok=True)
        _serves_again_in_new_workers(server, _kill_every_worker(server))
        for _ in range(4):  # whichever worker takes it
            assert httpx.get(f"{server.url}/v1/ready", timeout=5).status_code == 503
        assert not database.exists()
        assert server.stop() == 0, server.errors
    assert "Traceback" not in server.errors, server.errors


def test_a_connection_made_once_the_server_says_it_listens_is_answered(tmp_path: Path) -> None:
    """With several workers, the socket was only bound when the line was printed, and
    listened to by each worker as it started: a script that waited for the line and then
    connected was refused for most of a second."""
    server = ServerProcess(tmp_path / "home", workers=2)
    server.home.mkdir(parents=True)
    server.process = subprocess.Popen(
        [*kopilka_command(), "serve", "--port", str(server.port), "--workers", "2"],
        env=server_env(server.home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.process.stdout is not None
        assert "listening" in server.process.stdout.readline()
        # At once: waiting in the socket's queue until a worker is up, not refused.
        assert httpx.get(f"{server.url}/v1/health", timeout=30).status_code == 200
    finally:
        server.stop()
