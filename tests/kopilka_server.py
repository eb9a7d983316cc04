"""A real `kopilka serve` process on a free port, with its own KOPILKA_HOME and SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

START_SECONDS_MAX = 15.0


def kopilka_command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m kopilka`."""
    beside = Path(sys.executable).with_name("kopilka")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("kopilka")
    return [found] if found else [sys.executable, "-m", "kopilka"]


def free_port() -> int:
    with socket.socket() as probe:
        # Free on every address, not only loopback: a client's connection may hold the
        # port on 127.0.0.1, which a server on 0.0.0.0 could then not take.
        probe.bind(("0.0.0.0", 0))
        port: int = probe.getsockname()[1]
        return port


def server_env(home: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("KOPILKA_")}
    env.update(KOPILKA_HOME=str(home), TZ="UTC", PYTHONUTF8="1", **extra)
    return env


class ServerProcess:
    def __init__(
        self,
        home: Path,
        db: str | None = None,
        *,
        workers: int = 1,
        open_files: tuple[int, int] | None = None,
        **env: str,
    ) -> None:
        """`open_files`: the (soft, hard) open-file limit the server starts under."""
        self.home = home
        self.open_files = open_files
        self.db = db or str(home / "kopilka.db")
        self.workers = workers
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None
        self.output = self.errors = ""

    def start(self) -> ServerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                *kopilka_command(),
                *("serve", "--port", str(self.port), "--db", self.db),
                *("--workers", str(self.workers)),
            ],
            env=server_env(self.home, **self.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=None if self.open_files is None else self._limit_open_files,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # printed once the socket is bound
        if "listening" not in line:
            self.process.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.process.stderr!r}")
        self.process.stdout.readline()  # the admin token line
        deadline = time.monotonic() + START_SECONDS_MAX
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("server did not answer /v1/health")

    def _limit_open_files(self) -> None:
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, self.open_files)

    @property
    def token(self) -> str:
        return (self.home / "admin.token").read_text().strip()

    def command(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """`kopilka ARGUMENTS --db <this server's database>`, as an operator beside it runs it."""
        return subprocess.run(
            [*kopilka_command(), *arguments, "--db", self.db],
            env=server_env(self.home),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token or self.token}", **headers},
            timeout=30,
        )

    def stop(self, signum: int | None = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the server (None: it was signalled already) and wait for its exit code."""
        assert self.process is not None
        if signum is not None and self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout)
        assert self.process.stdout is not None and self.process.stderr is not None
        self.output = self.process.stdout.read()
        self.errors = self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return code


def workers_of(parent: int) -> list[int]:
    """The workers of a `kopilka serve --workers N` supervisor, not multiprocessing's
    helper processes."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    workers = []
    for pid in children:
        with suppress(FileNotFoundError):  # gone while we looked
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(int(pid))
    return workers


def metrics_directory_of(worker: int) -> Path:
    """Where a worker of several writes its metrics snapshots (its environment says)."""
    environment = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    for entry in environment:
        name, _, value = entry.partition(b"=")
        if name == b"KOPILKA_METRICS_DIRECTORY":
            return Path(value.decode())
    raise AssertionError("the worker was given no metrics directory")


@contextmanager
def running_server(
    home: Path,
    db: str | None = None,
    *,
    workers: int = 1,
    open_files: tuple[int, int] | None = None,
    **env: str,
) -> Iterator[ServerProcess]:
    server = ServerProcess(home, db, workers=workers, open_files=open_files, **env).start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            # Worker processes outlive a killed parent: they are stopped by its SIGTERM.
            server.stop(signal.SIGKILL if workers == 1 else signal.SIGTERM)


@contextmanager
def running_server_with_accounts(home: Path, opening: dict[str, str]) -> Iterator[ServerProcess]:
    """A server whose ledger has these accounts, each opened by a deposit of its amount
    under the key "open-NAME"."""
    with running_server(home) as server:
        with server.client() as admin:
            for name, amount in opening.items():
                answer = admin.post(
                    "/v1/deposits",
                    json={"client": name, "amount": amount, "open_account": True},
                    headers={"Idempotency-Key": f"open-{name}"},
                )
                assert answer.status_code == 201, answer.text
        yield server


class RawConnection:
    """One keep-alive HTTP/1.1 connection with almost no client-side cost.

    Load tests need hundreds of concurrent callers; a full client library spends
    more CPU per request than the server does and would serialise them.
    """

    def __init__(self, server: ServerProcess, token: str | None = None) -> None:
        self.port = server.port
        self.token = token or server.token
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawConnection:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._writer is not None:
            self._writer.close()

    async def request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        assert self._reader is not None and self._writer is not None
        payload = b"" if body is None else json.dumps(body).encode()
        head = [
            f"{method} {path} HTTP/1.1",
            "Host: 127.0.0.1",
            f"Authorization: Bearer {self.token}",
            f"Content-Length: {len(payload)}",
            "Content-Type: application/json",
        ]
        head.extend(f"{name}: {value}" for name, value in (headers or {}).items())
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await self._writer.drain()
        raw_head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *lines = raw_head.decode("latin-1").split("\r\n")
        answer_headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            if name:
                answer_headers[name.strip().lower()] = value.strip()
        if answer_headers.get("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).strip(), 16)
                chunks.append(await self._reader.readexactly(size + 2))
                if size == 0:
                    break
            data = b"".join(chunk[:-2] for chunk in chunks)
        else:
            data = await self._reader.readexactly(int(answer_headers.get("content-length", 0)))
        status = int(status_line.split(" ", 2)[1])
        return status, answer_headers, json.loads(data) if data else None
