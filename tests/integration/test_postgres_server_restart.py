"""A real `kopilka serve` on PostgreSQL, under a few concurrent clients, while the
database is stopped and started (cleanly, immediately and by SIGKILL).

Connections the server killed must count as lost: never a 500, never internal_error,
only 503 store_unavailable while the database is away, with nothing in the answer
about where the database is. Every write answered 503 is then retried with its key:
nothing is applied twice, and no acknowledged transfer is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from tests.kopilka_server import (
    RawConnection,
    ServerProcess,
    kopilka_command,
    running_server,
    server_env,
)
from tests.pgserver import PostgresTestServer, StopMode

from kopilka.errors import KopilkaError

pytestmark = pytest.mark.postgres

CLIENTS = [f"C{n}" for n in range(6)]
OPENING = Decimal(1_000)
CALLERS = 8
REQUEST_SECONDS_MAX = 30.0


class Load:
    """Callers sending transfers, deposits and reads until told to stop."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.stop = asyncio.Event()
        self.answers: list[tuple[str, int, Any]] = []  # (path, status, body)
        self.writes: dict[str, tuple[str, dict[str, str]]] = {}  # key -> (path, body)
        self.acknowledged: set[str] = set()
        self.unknown: set[str] = set()  # answered 503: applied or not, retried later
        self.keys_told = False

    def created_since(self, count: int) -> int:
        return sum(1 for _, status, _ in self.answers[count:] if status == 201)

    async def caller(self, index: int) -> None:
        rnd = random.Random(index)
        number = 0
        async with RawConnection(self.server) as http:
            while not self.stop.is_set():
                number += 1
                await self._one(http, rnd, f"r{index}-{number}")

    async def _one(self, http: RawConnection, rnd: random.Random, key: str) -> None:
        roll = rnd.random()
        if roll < 0.3:
            await self._read(http, f"/v1/accounts/{rnd.choice(CLIENTS)}")
            return
        if roll < 0.4:
            await self._read(http, "/v1/accounts")
            return
        if roll < 0.5:
            # Streamed, its first page read before the answer begins. The last seconds
            # only: one page, as a later page that fails can only cut the answer short.
            since = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
            await self._read(http, f"/v1/accounts/{rnd.choice(CLIENTS)}/statement?since={since}")
            return
        amount = f"{rnd.randint(1, 5_000) / 100:.2f}"
        if roll < 0.85:
            source, target = rnd.sample(CLIENTS, 2)
            path, body = "/v1/transfers", {"from": source, "to": target, "amount": amount}
        else:
            path, body = "/v1/deposits", {"client": rnd.choice(CLIENTS), "amount": amount}
        body["description"] = key
        self.writes[key] = (path, body)
        status = await self._send(http, "POST", path, body, {"Idempotency-Key": key})
        if status == 201:
            self.acknowledged.add(key)
        elif status == 503:
            self.unknown.add(key)
            await asyncio.sleep(0.02)

    async def _read(self, http: RawConnection, path: str) -> None:
        status = await self._send(http, "GET", path)
        if status == 503:
            await asyncio.sleep(0.02)

    async def _send(
        self,
        http: RawConnection,
        method: str,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
    ) -> int:
        status, _, answer = await asyncio.wait_for(
            http.request(method, path, body, headers), REQUEST_SECONDS_MAX
        )
        self.answers.append((path, status, answer))
        return status


def _setup(server: ServerProcess) -> None:
    with server.client() as admin:
        for client in CLIENTS:
            opened = admin.post("/v1/accounts", json={"client": client})
            assert opened.status_code == 201, opened.text
            answer = admin.post(
                "/v1/deposits",
                json={"client": client, "amount": str(OPENING), "description": "open"},
                headers={"Idempotency-Key": f"open-{client}"},
            )
            assert answer.status_code == 201, answer.text


async def _outage(
    postgres_server: PostgresTestServer, load: Load, mode: StopMode, stranger_token: str
) -> None:
    """Stop the database under load, ask while it is away, start it, see service resume."""

    async def ask(
        path: str, method: str = "GET", body: object = None
    ) -> tuple[int, dict[str, str], Any]:
        # On a connection of its own: one kept through a slow stop or start of the
        # database (a loaded machine) outlived the server's keep-alive time.
        async with RawConnection(load.server, stranger_token) as stranger:
            return await stranger.request(method, path, body)

    await asyncio.sleep(0.5)
    # A write whose head came while the database was there, its body after: its token
    # is looked at again once the body is in, past the cache's second, and cannot be.
    body = json.dumps({"client": "Late", "amount": "1.00", "description": "away"}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", load.server.port)
    writer.write(
        b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {load.server.token}\r\n".encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    await writer.drain()
    await asyncio.to_thread(postgres_server.stop, mode)
    await asyncio.sleep(1.1)  # past the token cache's second
    writer.write(body)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    length = int(head.lower().partition("content-length:")[2].split("\r\n")[0])
    answer = json.loads(await reader.readexactly(length))
    writer.close()
    assert head.startswith("HTTP/1.1 503 "), (head, answer)
    assert answer["error"] == {
        "code": "store_unavailable",
        "message": "the database is unavailable; nothing was applied, try again",
    }
    # A caller whose token is unknown learns only that the database is away.
    status, _, answer = await ask("/v1/accounts")
    load.answers.append(("stranger", status, answer))
    assert status == 503, answer
    # Its token looked up is a read: not told that "nothing was applied", as a write is.
    assert answer["error"]["message"] == "the database is unavailable; try again", answer
    # A write refused as its token is looked up is told that nothing of it was applied.
    deposit = {"client": "Stranger", "amount": "1.00", "description": "away"}
    status, _, answer = await ask("/v1/deposits", "POST", deposit)
    load.answers.append(("stranger", status, answer))
    assert (status, answer["error"]["message"]) == (
        503,
        "the database is unavailable; nothing was applied, try again",
    ), answer
    # A load balancer's probes: the process lives, and is not ready to serve.
    status, _, answer = await ask("/v1/health")
    assert status == 200, answer
    status, _, answer = await ask("/v1/ready")
    assert (status, answer["error"]["code"]) == (503, "store_unavailable"), answer
    if mode == "immediate" and not load.keys_told:
        await _writes_told_their_keys(load)
    await asyncio.to_thread(postgres_server.start)
    served = len(load.answers)
    deadline = time.monotonic() + 15
    while load.created_since(served) < 20:
        assert time.monotonic() < deadline, f"no service after a {mode} restart"
        await asyncio.sleep(0.05)
    while (await ask("/v1/ready"))[0] != 200:  # checked once a second
        assert time.monotonic() < deadline + 5, f"not ready after a {mode} restart"
        await asyncio.sleep(0.1)


async def _writes_told_their_keys(load: Load) -> None:
    """While the database is away, a write sent without a key learns the server's one
    (a 503 header), and a command line its own (the error), to settle it with later."""
    body = {"client": CLIENTS[0], "amount": "1.00", "description": "r-keyless"}
    async with RawConnection(load.server) as http:
        status, headers, answer = await http.request("POST", "/v1/deposits", body)
    load.answers.append(("/v1/deposits", status, answer))
    assert status == 503, answer
    load.writes[headers["idempotency-key"]] = ("/v1/deposits", body)
    load.unknown.add(headers["idempotency-key"])
    # A batch, too, learns the key its items' keys are made of. (Its one item is not
    # settled here: nothing can apply while the database is away.)
    item = {"type": "deposit", "client": CLIENTS[0], "amount": "1.00"}
    async with RawConnection(load.server) as http:
        status, headers, answer = await http.request("POST", "/v1/batch", {"operations": [item]})
    assert status == 503, answer
    assert headers.get("idempotency-key"), (headers, answer)
    async with RawConnection(load.server) as http:
        status, headers, answer = await http.request(
            "POST", "/v1/batch", {"operations": [item]}, {"Idempotency-Key": "batch-told"}
        )
    assert (status, headers.get("idempotency-key")) == (503, "batch-told"), answer
    line = [
        *("deposit", f"--client={CLIENTS[1]}", "--amount=1.00", "--description=r-cli"),
        *("--url", load.server.url, "--token", load.server.token),
        # The ledger named, or the token's would be asked for first: that refused, the
        # deposit is never sent, and no key is told.
        *("--ledger", "main"),
    ]
    done = await asyncio.to_thread(
        subprocess.run,
        [*kopilka_command(), *line],
        env=server_env(load.server.home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done
    told = re.search(r"--idempotency-key=(\S+)\)", done.stderr)
    assert told is not None, done.stderr
    body = {"client": CLIENTS[1], "amount": "1.00", "description": "r-cli"}
    load.writes[told.group(1)] = ("/v1/deposits", body)
    load.unknown.add(told.group(1))
    load.keys_told = True


async def _storm(postgres_server: PostgresTestServer, server: ServerProcess) -> Load:
    load = Load(server)
    callers = [asyncio.create_task(load.caller(index)) for index in range(CALLERS)]
    stranger_token = f"kop_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
    try:
        for mode in ("immediate", "fast", "kill", "immediate"):
            await _outage(postgres_server, load, mode, stranger_token)
    finally:
        load.stop.set()
        await asyncio.gather(*callers, return_exceptions=True)
    for caller in callers:
        caller.result()  # a caller that failed (a timeout, a closed connection) fails here
    return load


def _check_answers(load: Load, url: str) -> None:
    parts = urlsplit(url)
    database = parts.path.lstrip("/")
    where = [str(parts.hostname), f":{parts.port}", database, "postgres", "://"]
    statuses = {status for _, status, _ in load.answers}
    assert statuses <= {200, 201, 422, 503}, sorted(statuses)
    unavailable = [(path, body) for path, status, body in load.answers if status == 503]
    assert unavailable, "the outages went unnoticed"
    for path, body in unavailable:
        assert body["error"]["code"] in ("store_unavailable", "outcome_unknown"), (path, body)
        message = body["error"]["message"]
        assert not [part for part in where if part in message], (path, message)
    refused = {body["error"]["code"] for _, status, body in load.answers if status == 422}
    assert refused <= {"insufficient_funds"}, refused


def _retry_unknown(load: Load, server: ServerProcess) -> None:
    """A 503 may hide an applied write: the same key settles it, once."""
    with server.client() as admin:
        for key in sorted(load.unknown):
            path, body = load.writes[key]
            answer = admin.post(path, json=body, headers={"Idempotency-Key": key})
            assert answer.status_code in (201, 422), answer.text
            if answer.status_code == 201:
                load.acknowledged.add(body["description"])  # the key, but for two


async def _check_ledger(url: str, load: Load) -> None:
    connection = await asyncpg.connect(url)
    try:
        stored = {
            row[0]: row[1]
            for row in await connection.fetch(
                "SELECT description, count(*) FROM operations WHERE description LIKE 'r%'"
                " GROUP BY description"
            )
        }
        deposited = await connection.fetchval(
            "SELECT coalesce(sum(amount), 0) FROM operations WHERE kind = 'deposit'"
        )
        total = await connection.fetchval("SELECT sum(balance) FROM accounts")
        drift = await connection.fetchval(
            "SELECT count(*) FROM accounts a WHERE balance <> "
            "(SELECT coalesce(sum(amount), 0) FROM entries e WHERE e.account_id = a.id)"
        )
    finally:
        await connection.close()
    assert load.acknowledged <= set(stored), "an acknowledged write was lost"
    assert set(stored.values()) == {1}, "a write was applied twice"
    assert total == deposited
    assert drift == 0


def test_database_restarts_under_load_answer_only_503_store_unavailable(
    tmp_path: Path, postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to stop")
    # Sandboxes reaped every 0.25 s, so the reaper meets each outage too.
    with running_server(
        tmp_path / "home", postgres_url, KOPILKA_SANDBOX_IDLE_SECONDS="1"
    ) as server:
        _setup(server)
        load = asyncio.run(_storm(postgres_server, server))
        _check_answers(load, postgres_url)
        _retry_unknown(load, server)
        asyncio.run(_check_ledger(postgres_url, load))
        server.stop()
    # The operator's log says where the database is, once per outage, not per request.
    outages = server.errors.count("is unavailable")
    assert 1 <= outages <= 8, server.errors
    assert urlsplit(postgres_url).path.lstrip("/") in server.errors
    assert "Traceback" not in server.errors, server.errors


def _server_processes(postgres_server: PostgresTestServer) -> list[int]:
    """The postmaster and every process it runs (backends, writers)."""
    postmaster = postgres_server.pid
    assert postmaster is not None
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    return [postmaster, *map(int, children)]


def test_a_database_that_goes_silent_is_not_ready_within_seconds(
    tmp_path: Path, postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    """Frozen, it keeps its connections open and answers nothing: a load balancer's probe
    must still hear 503 at once, and 200 once it answers again."""
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to freeze")
    with running_server(tmp_path / "home", postgres_url) as server, server.client() as http:
        assert http.get("/v1/ready").status_code == 200
        frozen = _server_processes(postgres_server)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(1.1)  # past the last check's second
            started = time.monotonic()
            ready = http.get("/v1/ready", timeout=10)
            assert time.monotonic() - started < 3
            # One figure, as api.md gives it: the store's own wait for its read said 1.5 s.
            assert (ready.status_code, ready.json()["error"]) == (
                503,
                {"code": "store_unavailable", "message": "the database did not answer within 2 s"},
            )
            assert http.get("/v1/health").status_code == 200
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 15
        while http.get("/v1/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "not ready once the database answers again"
            time.sleep(0.2)


def test_a_statement_cut_short_by_the_database_is_cut_short_for_the_client_too(
    tmp_path: Path, postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    """The database goes away while a long statement streams: its 200 has gone out, so
    the answer can only end early. It ends without its last chunk (the client sees a
    broken answer, not a shorter one that looks whole), and the server's log has no
    traceback, only the outage."""
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to stop")
    with running_server(tmp_path / "home", postgres_url) as server:
        with server.client() as http:
            for _ in range(2):
                deposits = [
                    {"type": "deposit", "client": "Big", "amount": "1", "open_account": True}
                ] * 10_000
                answer = http.post(
                    "/v1/batch", json={"operations": deposits}, timeout=REQUEST_SECONDS_MAX
                )
                assert answer.status_code == 200, answer.text
        request = (
            "GET /v1/accounts/Big/statement?format=csv HTTP/1.1\r\nHost: kopilka\r\n"
            f"Authorization: Bearer {server.token}\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as reader:
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.sendall(request.encode())
            received = reader.recv(4096)
            assert received.startswith(b"HTTP/1.1 200"), received
            postgres_server.stop("immediate")
            time.sleep(0.5)
            while chunk := reader.recv(65536):
                received += chunk
        postgres_server.start()
        server.stop()
    assert b"Transfer-Encoding: chunked" in received or b"transfer-encoding: chunked" in received
    assert not received.endswith(b"\r\n0\r\n\r\n"), received[-200:]  # never ended as whole
    assert received.count(b"\r\n") < 20_000  # cut short: not every line was sent
    assert "Traceback" not in server.errors, server.errors
    assert "is unavailable" in server.errors


def test_the_python_clients_batch_never_says_nothing_was_applied_of_what_was(
    tmp_path: Path, postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    """A long batch through the Python client while the database stops mid-way: each
    item it answers with an operation is in the ledger, each it answers "nothing was
    applied" is not, whatever its resends met (an "outcome unknown" may be either)."""
    import threading

    from kopilka.client import connect_bank
    from kopilka.domain.model import Deposit, Operation
    from kopilka.errors import KopilkaError

    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to stop")
    commands = [Deposit("Big", 1, f"d{n}", f"pc-{n}") for n in range(10_000)]
    with running_server(tmp_path / "home", postgres_url) as server:
        found: dict[str, Any] = {}

        def call() -> None:
            with connect_bank(server.url, token=server.token) as bank:
                try:
                    found["outcomes"] = bank.execute_many(commands, "python-client-outage")
                except KopilkaError as error:  # the whole call refused: nothing known applied?
                    found["error"] = error

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.15)
        postgres_server.stop("immediate")
        caller.join(timeout=120)
        postgres_server.start()
        server.stop()
    applied = asyncio.run(_applied_keys(postgres_url))
    assert "error" in found or "outcomes" in found, "the call neither answered nor failed"
    if "error" in found:
        error = found["error"]
        assert error.code == "outcome_unknown" or not applied, error
        return
    for command, outcome in zip(commands, found["outcomes"], strict=True):
        if isinstance(outcome, Operation):
            assert command.idempotency_key in applied
        elif getattr(outcome, "code", "") != "outcome_unknown":
            assert command.idempotency_key not in applied, outcome


async def _applied_keys(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        if not await connection.fetchval("SELECT to_regclass('operations') IS NOT NULL"):
            return set()
        rows = await connection.fetch("SELECT idempotency_key FROM operations")
        return {row[0] for row in rows}
    finally:
        await connection.close()


def test_a_database_outage_longer_than_the_idle_time_ends_no_live_sandbox(
    tmp_path: Path, postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    """No session could record its use while the database was away: that is no idleness.
    Each has its idle time again from when the database is seen back, however long that
    took: counted from the reaper's last failed round instead, it could be almost none."""
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to stop")
    with (
        running_server(tmp_path / "home", postgres_url, KOPILKA_SANDBOX_IDLE_SECONDS="3") as server,
        server.client() as admin,
    ):
        ledger = admin.post("/v1/sandboxes").json()["ledger"]
        sandbox = {"Kopilka-Ledger": ledger}
        deposit = {"client": "Sandy", "amount": "1", "open_account": True}
        assert admin.post("/v1/deposits", json=deposit, headers=sandbox).status_code == 201
        postgres_server.stop()
        time.sleep(4.5)  # longer than the idle time; the reaper meets the outage
        postgres_server.start()
        deadline = time.monotonic() + 15
        while admin.get("/v1/ready").status_code != 200:
            assert time.monotonic() < deadline, "the server did not become ready again"
            time.sleep(0.1)
        # The reaper's rounds (every 0.75 s) after the outage, within the idle time it
        # gives again: its first round had passed before a use refreshed the sandbox.
        time.sleep(2.0)
        answer = admin.get("/v1/accounts/Sandy", headers=sandbox)
        assert answer.status_code == 200, answer.text
        assert answer.json()["balance"] == "1.00"


def _workers_of(server: ServerProcess) -> list[int]:
    """The worker processes of a `--workers` server (not the supervisor's helpers)."""
    assert server.process is not None
    parent = server.process.pid
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def _has_database_connection(pid: int, port: int) -> bool:
    """Whether process `pid` holds an established TCP connection to `port` (loopback)."""
    fds = Path(f"/proc/{pid}/fd")
    inodes = set()
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if fields[9] in inodes and remote_port == port and fields[3] == "01":  # ESTABLISHED
            return True
    return False


def test_workers_started_again_while_the_database_is_away_answer_503_until_it_is_back(
    tmp_path: Path, postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    """Every worker dies in an outage and is started again, finding the database away:
    the server must not stop (uvicorn stops every worker for a start-up failure, with
    status 0), requests must be answered 503 at once (not hang in the listening socket's
    queue while no worker accepts), and the same workers serve once the database is back."""
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to stop")
    with running_server(tmp_path / "home", postgres_url, workers=2) as server:
        with server.client() as http:
            opened = {"client": "Ann", "amount": "1", "open_account": True}
            assert http.post("/v1/deposits", json=opened).status_code == 201
        first = _workers_of(server)
        assert len(first) == 2
        # Both workers started (each holds its pool's connection to the database): those
        # killed are started again, not the first start's.
        deadline = time.monotonic() + 30
        while not all(_has_database_connection(pid, postgres_server.port) for pid in first):
            assert time.monotonic() < deadline, "a worker never started"
            time.sleep(0.1)
            first = _workers_of(server)
        time.sleep(0.5)  # past the rest of its start-up
        postgres_server.stop("fast")
        try:
            for pid in first:
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while len(again := [pid for pid in _workers_of(server) if pid not in first]) < 2:
                assert time.monotonic() < deadline, (again, server.errors)
                time.sleep(0.1)
            time.sleep(2)  # into their start-up, which finds the database away
            assert server.process is not None and server.process.poll() is None, server.errors
            for _ in range(4):  # new connections, taken by either worker
                with httpx.Client(
                    base_url=server.url,
                    headers={"Authorization": f"Bearer {server.token}"},
                    timeout=15,  # a loaded machine's start-up; none came before
                ) as http:
                    away = http.post("/v1/deposits", json={**opened, "open_account": False})
                    assert away.status_code == 503, away.text
                    assert away.json()["error"] == {
                        "code": "store_unavailable",
                        "message": "the database is unavailable; nothing was applied, try again",
                    }
                    assert http.get("/v1/ready").status_code == 503
                    assert http.get("/v1/health").status_code == 200
        finally:
            postgres_server.start()
        deadline = time.monotonic() + 30
        while True:  # until each worker has found it back: 8 new connections served
            statuses = []
            for _ in range(8):
                with server.client() as http:
                    statuses.append(http.get("/v1/accounts/Ann").status_code)
            if statuses == [200] * 8:
                break
            assert set(statuses) <= {200, 503}, statuses
            assert time.monotonic() < deadline, server.errors
            time.sleep(0.2)
        assert sorted(_workers_of(server)) == sorted(again)  # served, not started again
        assert server.stop() == 0
    assert "answers 503 until it is back" in server.errors, server.errors
    assert "the database is available again: the worker serves" in server.errors
    assert "Traceback" not in server.errors, server.errors


async def _hold_commits(url: str, hold: bool) -> None:
    """A synchronous standby that never comes holds every COMMIT (committed locally)."""
    connection = await asyncpg.connect(url)
    try:
        if hold:
            await connection.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
        else:
            await connection.execute("ALTER SYSTEM RESET synchronous_standby_names")
        await connection.execute("SELECT pg_reload_conf()")
    finally:
        await connection.close()


def _commits_waiting(url: str, count: int) -> None:
    """Until `count` COMMITs wait for the standby."""

    async def waiting() -> int:
        connection = await asyncpg.connect(url)
        try:
            found: int = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
            )
            return found
        finally:
            await connection.close()

    deadline = time.monotonic() + 10
    while asyncio.run(waiting()) < count:
        assert time.monotonic() < deadline, "no COMMIT waited for the standby"
        time.sleep(0.05)


def test_a_write_without_a_key_whose_commit_is_lost_says_to_look_first(
    tmp_path: Path, postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    """The database stopped while a batch's COMMIT waited: whether it was applied is not
    known. A request sent without a key holds no key to retry by, so its answer says to
    look first; one sent with a key is told to retry under it."""
    from concurrent.futures import ThreadPoolExecutor

    from kopilka.errors import LOOK_FIRST, RETRY_UNDER_THE_KEY

    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to stop")

    with running_server(tmp_path / "home", postgres_url) as server, server.client() as http:
        for client in ("Ann", "Bob"):
            assert http.post("/v1/accounts", json={"client": client}).status_code == 201
        asyncio.run(_hold_commits(postgres_url, True))
        try:
            with ThreadPoolExecutor(2) as pool:
                keyed = pool.submit(
                    http.patch,
                    "/v1/accounts/Bob",
                    json={"max_balance": "5.00"},
                    headers={"Idempotency-Key": "limits-bob"},
                    timeout=60,
                )
                _commits_waiting(postgres_url, 1)
                keyless = pool.submit(
                    http.patch, "/v1/accounts/Ann", json={"max_balance": "5.00"}, timeout=60
                )
                _commits_waiting(postgres_url, 2)
                postgres_server.stop("immediate")
                answers = {"keyless": keyless.result(), "keyed": keyed.result()}
        finally:
            if not postgres_server.is_running:
                postgres_server.start()
            asyncio.run(_hold_commits(postgres_url, False))
    for name, answer in answers.items():
        assert answer.status_code == 503, (name, answer.text)
        assert answer.json()["error"]["code"] == "outcome_unknown", (name, answer.text)
    assert answers["keyless"].json()["error"]["message"].endswith(LOOK_FIRST)
    assert answers["keyed"].json()["error"]["message"].endswith(RETRY_UNDER_THE_KEY)


def test_an_embedded_opening_or_limits_whose_commit_is_lost_says_to_look_first(
    postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    """The embedded bank's calls without a key of the caller's, as the server's: a
    deposit given no key too (its key was made inside, and the caller never had it)."""
    from concurrent.futures import ThreadPoolExecutor

    from kopilka.bank import EmbeddedBank
    from kopilka.errors import LOOK_FIRST

    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to stop")
    bank = EmbeddedBank(postgres_url)
    other = EmbeddedBank(postgres_url)  # an engine of its own: two batches commit at once
    try:
        bank.open_account("Ann")
        bank.open_account("Cat")  # its own row: no lock of Ann's to wait on
        asyncio.run(_hold_commits(postgres_url, True))
        try:
            with ThreadPoolExecutor(3) as pool:
                limits = pool.submit(bank.set_limits, "Ann", None, 500)
                _commits_waiting(postgres_url, 1)
                opening = pool.submit(bank.open_account, "Bob", 0, None, 100)
                _commits_waiting(postgres_url, 2)
                keyless = pool.submit(other.deposit, "Cat", 100, "pay")
                _commits_waiting(postgres_url, 3)
                postgres_server.stop("immediate")
                failures = [call.exception() for call in (limits, opening, keyless)]
        finally:
            if not postgres_server.is_running:
                postgres_server.start()
            asyncio.run(_hold_commits(postgres_url, False))
    finally:
        bank.close()
        other.close()
    for failure in failures:
        assert isinstance(failure, KopilkaError), failure
        assert failure.code == "outcome_unknown", failure
        assert failure.message.endswith(LOOK_FIRST), failure.message


def test_the_embedded_shell_says_why_its_database_is_away(
    postgres_server: PostgresTestServer, postgres_url: str, tmp_path: Path
) -> None:
    """A shell on this machine has no server log to read: its own line says why (a
    server's caller is told only that the database is away, as above)."""
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to stop")
    shell = subprocess.Popen(
        [*kopilka_command(), "shell", "--db", postgres_url],
        env=server_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert shell.stdin is not None and shell.stdout is not None

    def said_to(line: str) -> str:
        assert shell.stdin is not None and shell.stdout is not None
        shell.stdin.write(line + "\n")
        shell.stdin.flush()
        return shell.stdout.readline().strip()

    try:
        assert said_to("deposit --client=Ann --amount=1 --description=x").endswith("successful!")
        postgres_server.stop("fast")
        try:
            refused = said_to("deposit --client=Ann --amount=2 --description=y")
            read = said_to("balance --client=Ann")
        finally:
            postgres_server.start()
        assert said_to("deposit --client=Ann --amount=3 --description=z").endswith("successful!")
        assert said_to("balance --client=Ann") == "Balance of Ann: $4.00"
    finally:
        _, errors = shell.communicate(timeout=30)
    why = r"the database is unavailable \(\w+Error: .+\)"
    assert re.fullmatch(f"Error: {why}; nothing was applied, try again .*", refused), refused
    assert re.fullmatch(f"Error: {why}; try again", read), read
    assert errors == ""
