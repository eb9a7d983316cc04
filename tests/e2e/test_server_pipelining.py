"""Requests a client sends ahead of their answers (HTTP/1.1 pipelining), on a real server."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path

from tests.kopilka_server import running_server

from kopilka.api.protocol import PIPELINED_MAX
from kopilka.store.sqlite_lock import LOCK_FILE_SUFFIX

HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"


def read_answers(connection: socket.socket, count: int | None = None) -> list[tuple[int, bytes]]:
    """Each answer's status and body, until `count` of them or the server closes."""
    answers = connection.makefile("rb")
    statuses = []
    while count is None or len(statuses) < count:
        status_line = answers.readline()
        if not status_line:
            break
        length = 0
        while (line := answers.readline()) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        statuses.append((int(status_line.split(b" ", 2)[1]), answers.read(length)))
    answers.close()
    return statuses


def _opening_deposit(auth: bytes) -> bytes:
    """A deposit of $1 to Ann, opening her account, with the `auth` header line."""
    body = json.dumps({"client": "Ann", "amount": "1", "open_account": True}).encode()
    head = b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\n" + auth
    return head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def test_pipelined_requests_are_served_and_a_flood_of_them_is_refused(tmp_path: Path) -> None:
    """Requests queued behind a slow one are all answered, in two writes; a megabyte of
    them in one write was parsed whole, and another read after each answer (gigabytes
    of queued requests from a client that reads nothing): now answered up to the bound,
    then refused, and the connection closed."""
    with running_server(tmp_path / "home") as server:
        auth = f"Authorization: Bearer {server.token}\r\n".encode()
        deposit = _opening_deposit(auth)
        # Reading stops while many wait, so the second write is read only as they are
        # answered: never over the bound, however many writes follow.
        served = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        lock = os.open(server.home / f"kopilka.db{LOCK_FILE_SUFFIX}", os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the deposit waits for the database
            served.sendall(deposit + HEALTH * 100)
            time.sleep(0.3)
            served.sendall(HEALTH * 100)
            time.sleep(0.3)
        finally:
            os.close(lock)
        statuses = [status for status, _ in read_answers(served, 201)]
        assert statuses == [201] + [200] * 200
        served.sendall(HEALTH)  # still open
        assert read_answers(served, 1)[0][0] == 200
        served.close()

        flood = socket.create_connection(("127.0.0.1", server.port), timeout=10)

        def send_flood() -> None:
            with contextlib.suppress(OSError):  # the server may close before all is sent
                flood.sendall(HEALTH * (1_000_000 // len(HEALTH)))

        sender = threading.Thread(target=send_flood)
        sender.start()
        answers = read_answers(flood)  # TimeoutError: never closed
        sender.join()
        flood.close()
        *answered, (status, refusal) = answers
        assert 0 < len(answered) <= PIPELINED_MAX
        assert {status for status, _ in answered} == {200}
        assert (status, json.loads(refusal)["error"]["code"]) == (429, "too_many_pipelined")


def test_connections_flooding_pipelined_requests_hold_little_memory(tmp_path: Path) -> None:
    """What each connection holds of requests parsed and unanswered is bounded: 12 MB of
    them from four connections, never read, grew the server by about a gigabyte."""
    with running_server(tmp_path, "memory:") as server:
        assert server.process is not None
        status = Path(f"/proc/{server.process.pid}/status")

        def rss_kib() -> int:
            line = next(line for line in status.read_text().splitlines() if "VmRSS" in line)
            return int(line.split()[1])

        before = rss_kib()
        flood = HEALTH * (3_000_000 // len(HEALTH))
        peak = before

        def send_flood() -> None:
            connection = socket.socket()
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            connection.settimeout(10)
            with contextlib.suppress(OSError):
                connection.connect(("127.0.0.1", server.port))
                connection.sendall(flood)
                time.sleep(3)  # held open, unread
            connection.close()

        senders = [threading.Thread(target=send_flood) for _ in range(4)]
        for sender in senders:
            sender.start()
        while any(sender.is_alive() for sender in senders):
            peak = max(peak, rss_kib())
            time.sleep(0.1)
        with server.client() as client:
            assert client.get("/v1/health").status_code == 200
        assert peak - before < 150 * 1024, f"grew by {peak - before} KiB"


def test_a_broken_body_sent_behind_a_write_is_refused_after_the_writes_answer(
    tmp_path: Path,
) -> None:
    """A chunked request whose framing is refused (a chunk size that is no number, chunk
    extensions past the bound), sent while a write before it waited for the database:
    the connection was closed at once, the write applied and its answer never sent."""
    with running_server(tmp_path / "home") as server:
        auth = f"Authorization: Bearer {server.token}\r\n".encode()
        deposit = _opening_deposit(auth)
        chunked = b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\n" + auth
        chunked += b"Transfer-Encoding: chunked\r\n\r\n"
        for broken, refused in (
            (b"zz\r\n", 400),
            (b"1;" + b"x" * 30_000 + b"\r\n", 431),
        ):
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            lock = os.open(server.home / f"kopilka.db{LOCK_FILE_SUFFIX}", os.O_RDWR)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)  # the deposit waits for the database
                connection.sendall(deposit)
                time.sleep(0.3)
                connection.sendall(chunked + broken)
                time.sleep(0.3)
            finally:
                os.close(lock)
            statuses = [status for status, _ in read_answers(connection)]
            connection.close()
            assert statuses == [201, refused], broken[:8]
