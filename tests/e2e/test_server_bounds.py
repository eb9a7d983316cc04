"""Per-client bounds of a real server: connections from one address, header time and size."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import resource
import select
import signal
import socket
import threading
import time
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest
from tests.kopilka_server import ServerProcess, running_server

from kopilka.api.protocol import HEAD_BYTES_MAX, LINGER_SECONDS, TARGET_BYTES_MAX
from kopilka.server import KEEP_ALIVE_SECONDS
from kopilka.store.sqlite_lock import LOCK_FILE_SUFFIX


def connect(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    return connection


def read_until_closed(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def error_of(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)["error"]["code"]


HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"


def hold_connections(port: int, count: int) -> list[socket.socket]:
    """`count` served keep-alive connections (retried until the server has seen the
    readiness probe's connection close, which it counts down asynchronously)."""
    deadline = time.monotonic() + 10
    while True:
        held = [connect(port) for _ in range(count)]
        answers = []
        for connection in held:
            connection.sendall(HEALTH)
            answers.append(connection.recv(4096))
        if all(answer.startswith(b"HTTP/1.1 200") for answer in answers):
            return held
        for connection in held:
            connection.close()
        assert time.monotonic() < deadline, answers
        time.sleep(0.05)


def served_once_a_slot_is_free(url: str) -> httpx.Response:
    """A health check, tried until the server has counted a closed connection down (it
    does once it sees the close)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            answer = httpx.get(f"{url}/v1/health", timeout=5)
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code == 200:
            return answer
        assert time.monotonic() < deadline, answer
        time.sleep(0.05)


def test_one_address_cannot_take_every_connection(tmp_path: Path) -> None:
    with running_server(tmp_path, "memory:", KOPILKA_CONNECTIONS_PER_CLIENT="3") as server:
        held = hold_connections(server.port, 3)
        refused = connect(server.port)
        answer = read_until_closed(refused)
        assert error_of(answer) == (503, "too_many_connections")
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["message"] == (
            "too many connections from this address: this one was closed before its request"
            " was read (nothing applied); open fewer at once"
        )
        refused.close()
        held.pop().close()
        assert served_once_a_slot_is_free(server.url).status_code == 200
        for connection in held:
            connection.close()


def test_a_full_server_refuses_a_connection_in_json_and_logs_nothing(tmp_path: Path) -> None:
    """Past the process's 2,048 connections: one line of JSON, not uvicorn's plain text,
    and no log line per refusal, which anyone could fill the log with."""
    server = ServerProcess(tmp_path, "memory:", KOPILKA_CONNECTIONS_PER_CLIENT="4096").start()
    held: list[socket.socket] = []
    try:
        held = hold_connections(server.port, 2_048)
        for _ in range(3):
            refused = connect(server.port)
            assert error_of(read_until_closed(refused)) == (503, "server_full")
            refused.close()
        held.pop().close()
        assert served_once_a_slot_is_free(server.url).status_code == 200
    finally:
        for connection in held:
            connection.close()
        server.stop()
    assert server.errors == "", server.errors


def test_an_open_file_limit_too_low_for_the_connections_is_raised(tmp_path: Path) -> None:
    """A soft limit of 256 (systemd's default is 1,024) under a hard one with room: the
    server raises its own, and takes its 2,048 connections, each answered."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4_096:
        pytest.skip(f"the hard open-file limit here ({hard}) has no room to raise a soft one")
    with running_server(tmp_path, "memory:", open_files=(256, hard)) as server:
        assert server.process is not None
        limits = Path(f"/proc/{server.process.pid}/limits").read_text()
        (line,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
        assert int(line.split()[3]) >= 2_048, line
        assert server.stop() == 0
    assert "open-file limit" not in server.errors, server.errors


def test_an_open_file_limit_that_cannot_be_raised_bounds_the_connections(
    tmp_path: Path,
) -> None:
    """Past the limit, a new connection was reset, answered nothing and logged nowhere:
    now the server takes as many as the limit has room for, says so once at start, and
    answers the next one as a full server does."""
    server = ServerProcess(
        tmp_path, "memory:", open_files=(256, 256), KOPILKA_CONNECTIONS_PER_CLIENT="4096"
    ).start()
    held: list[socket.socket] = []
    try:
        held = hold_connections(server.port, 256 - 64)
        refused = connect(server.port)
        assert error_of(read_until_closed(refused)) == (503, "server_full")
        refused.close()
    finally:
        for connection in held:
            connection.close()
        server.stop()
    assert server.errors.splitlines() == [
        "warning: the open-file limit (256) leaves room for 192 connections of the 2048 a"
        " server takes; past them a client is answered 503 server_full (raise it: ulimit -n"
        " 2112, or LimitNOFILE= in systemd)"
    ]


def test_an_idle_keep_alive_connection_is_closed(tmp_path: Path) -> None:
    """A connection that asks nothing more after its answer is let go (after 5 s), so
    idle clients cannot hold the server's connections for ever."""
    with running_server(tmp_path, "memory:") as server:
        (idle,) = hold_connections(server.port, 1)
        idle.settimeout(10)  # past it, the read raises: the connection was kept
        assert read_until_closed(idle) == b""
        idle.close()


def test_blank_lines_between_requests_cannot_keep_a_connection(tmp_path: Path) -> None:
    """A line end now and then, which the parser skips before a request, is the start of
    a head that never comes: cut off at the header time, as one that trickles is."""
    with running_server(tmp_path, "memory:", KOPILKA_HEADER_SECONDS="2") as server:
        (idle,) = hold_connections(server.port, 1)
        idle.settimeout(0.5)
        deadline = time.monotonic() + 10
        answer = b""
        while not answer.endswith(b"}") and time.monotonic() < deadline:
            idle.sendall(b"\r\n")
            with contextlib.suppress(TimeoutError):
                answer += idle.recv(4096)
        assert error_of(answer) == (408, "request_timeout"), answer
        idle.settimeout(5)
        assert read_until_closed(idle) == b""
        idle.close()


def test_a_blank_line_while_a_request_is_answered_does_not_cut_it_off(tmp_path: Path) -> None:
    """Sent while a write waits for the database: the answer still comes."""
    with running_server(tmp_path / "home", KOPILKA_HEADER_SECONDS="1") as server:
        (connection,) = hold_connections(server.port, 1)
        lock = os.open(server.home / f"kopilka.db{LOCK_FILE_SUFFIX}", os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # as another process's batch holds it
            body = json.dumps({"client": "Ann", "amount": "1", "open_account": True}).encode()
            connection.sendall(
                b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {server.token}\r\n".encode()
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.2)
            connection.sendall(b"\r\n")
            time.sleep(2.5)  # past the header time, and a sweep
        finally:
            os.close(lock)
        connection.settimeout(10)
        assert connection.recv(4096).startswith(b"HTTP/1.1 201"), "no answer"
        connection.close()


@pytest.mark.parametrize("sent_behind", ["a head, then its body", "part of a head"])
def test_a_request_sent_behind_a_slow_one_waits_its_turn(tmp_path: Path, sent_behind: str) -> None:
    """Pipelined behind a write that waits for the database: the server reads no more of
    it meanwhile, so its time starts once the write is answered, which it is."""
    with running_server(
        tmp_path / "home", KOPILKA_HEADER_SECONDS="1", KOPILKA_BODY_SECONDS="1"
    ) as server:
        (connection,) = hold_connections(server.port, 1)
        auth = f"Authorization: Bearer {server.token}\r\n".encode()
        body = json.dumps({"client": "Ann", "amount": "1", "open_account": True}).encode()
        deposit = (
            b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\n"
            + auth
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        lock = os.open(server.home / f"kopilka.db{LOCK_FILE_SUFFIX}", os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # as another process's batch holds it
            connection.sendall(deposit + body)
            time.sleep(0.2)
            if sent_behind == "a head, then its body":
                connection.sendall(deposit)
                time.sleep(0.2)
                connection.sendall(body)
            else:
                connection.sendall(b"GET /v1/health HTTP/1.1\r\n")
                time.sleep(0.2)
                connection.sendall(b"Host: x\r\n\r\n")
            time.sleep(2.5)  # past the header and body time, and a sweep
        finally:
            os.close(lock)
        connection.settimeout(10)
        received = b""
        while received.count(b"HTTP/1.1 ") < 2:
            chunk = connection.recv(65536)
            assert chunk, received
            received += chunk
        statuses = re.findall(rb"HTTP/1\.1 (\d{3})", received)
        assert statuses[0] == b"201", received
        assert statuses[1] in (b"201", b"200"), received
        connection.close()


def test_headers_that_trickle_in_are_cut_off_without_stalling_others(tmp_path: Path) -> None:
    with running_server(tmp_path, "memory:", KOPILKA_HEADER_SECONDS="1") as server:
        slow = connect(server.port)
        slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # never finished
        silent = connect(server.port)  # never says anything
        # Meanwhile everyone else is served as usual.
        with server.client() as client:
            for _ in range(3):
                assert client.get("/v1/health").status_code == 200
        assert error_of(read_until_closed(slow)) == (408, "request_timeout")
        assert error_of(read_until_closed(silent)) == (408, "request_timeout")
        slow.close()
        silent.close()


def answered(connection: socket.socket, seconds: float) -> bool:
    readable, _, _ = select.select([connection], [], [], seconds)
    return bool(readable)


def read_answer(answers: BinaryIO) -> tuple[int, bytes]:
    """One response from a keep-alive connection: its status and body."""
    status_line = answers.readline()
    assert status_line, "the server closed the connection"
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while (line := answers.readline()) != b"\r\n":
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, answers.read(length)


ENDLESS_HEADERS = {
    "one long header": (b"X-Filler: ", b"a" * 8192),
    "many short headers": (b"", (b"X-Filler: " + b"a" * 40 + b"\r\n") * 128),
}


@pytest.mark.parametrize("start, piece", ENDLESS_HEADERS.values(), ids=ENDLESS_HEADERS)
def test_headers_past_the_bound_are_refused_as_they_arrive(
    tmp_path: Path, start: bytes, piece: bytes
) -> None:
    # Headers that never end, sent a piece at a time: the server must answer once they
    # pass the bound, not buffer them until the header time runs out.
    with running_server(tmp_path, "memory:", KOPILKA_HEADER_SECONDS="60") as server:
        connection = connect(server.port)
        connection.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + start)
        sent = 0
        while sent < 128 * 1024 and not answered(connection, 0.2):
            connection.sendall(piece)
            sent += len(piece)
        assert answered(connection, 0), f"no answer after {sent} bytes of headers"
        assert sent < 64 * 1024
        assert error_of(read_until_closed(connection)) == (431, "headers_too_large")
        connection.close()


def test_headers_past_the_applications_bound_close_the_connection_too(tmp_path: Path) -> None:
    """Between the application's bound (16 KiB of fields) and the protocol's (its head),
    431 left the connection open, where a longer head's closed it, as documented."""
    with running_server(tmp_path, "memory:") as server:
        connection = connect(server.port)
        connection.sendall(
            b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Pad: "
            + b"p" * 17_000
            + b"\r\n\r\n"
            + b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answers = read_until_closed(connection)
        assert error_of(answers) == (431, "headers_too_large")
        assert answers.count(b"HTTP/1.1 ") == 1  # the request behind it not answered
        connection.close()


@pytest.mark.parametrize("pieces", [1, 30], ids=["in one write", "a kilobyte at a time"])
def test_a_request_target_past_its_bound_is_refused_however_it_arrives(
    tmp_path: Path, pieces: int
) -> None:
    """A head read in one piece is parsed before its size is counted: the target's own
    bound holds either way, and the server goes on serving."""
    with running_server(tmp_path, "memory:") as server:
        connection = connect(server.port)
        request = b"GET /v1/accounts/" + b"x" * 30_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        size = -(-len(request) // pieces)
        for start in range(0, len(request), size):
            connection.sendall(request[start : start + size])
            if answered(connection, 0.05):  # no more: what is unread is reset, answer too
                break
        assert start < 10 * 1024 or pieces == 1
        assert error_of(read_until_closed(connection)) == (414, "uri_too_long")
        connection.close()
        with server.client() as client:
            assert client.get("/v1/accounts/" + "x" * 200).status_code == 404


def test_a_request_target_of_exactly_its_bound_is_taken(tmp_path: Path) -> None:
    with running_server(tmp_path, "memory:") as server, server.client() as client:
        at_the_bound = "/v1/accounts/" + "x" * (TARGET_BYTES_MAX - len("/v1/accounts/"))
        taken = client.get(at_the_bound)
        assert taken.status_code != 414, taken.text  # read, and refused for its name
        assert client.get(at_the_bound + "x").status_code == 414


def test_each_request_head_is_counted_afresh(tmp_path: Path) -> None:
    # Heads under the bound whose sum is over it, one after another and pipelined in
    # one write (a piece then ends one request and starts the next), and a body sent
    # in one piece with its head: none of it is taken for headers too large.
    with running_server(tmp_path, "memory:") as server:
        head = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 12_000 + b"\r\n\r\n"
        connection = connect(server.port)
        answers = connection.makefile("rb")
        for _ in range(3):
            connection.sendall(head)
            assert read_answer(answers)[0] == 200
        connection.sendall(head * 3)
        assert [read_answer(answers)[0] for _ in range(3)] == [200, 200, 200]
        body = b"{" + b" " * 60_000 + b"}"
        connection.sendall(
            b"POST /v1/transfers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {server.token}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        status, answer = read_answer(answers)
        assert (status, json.loads(answer)["error"]["code"]) == (422, "invalid_request")
        answers.close()
        connection.close()


def transfer_head(token: str, content_length: int) -> bytes:
    return (
        b"POST /v1/transfers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: {content_length}\r\n\r\n".encode()
    )


@pytest.mark.parametrize("body_sent", [b"", b'{"from": "Ann",'], ids=["none", "a piece"])
def test_a_body_that_stops_coming_is_cut_off(tmp_path: Path, body_sent: bytes) -> None:
    # The headers are in and promise 40 bytes of body; the body never starts, or stops
    # after a piece. Either way the server answers within its body time and hangs up.
    with running_server(tmp_path, "memory:", KOPILKA_BODY_SECONDS="1") as server:
        connection = connect(server.port)
        started = time.monotonic()
        connection.sendall(transfer_head(server.token, 40) + body_sent)
        answer = read_until_closed(connection)
        assert error_of(answer) == (408, "request_timeout")
        assert b"connection: close" in answer.partition(b"\r\n\r\n")[0].lower(), answer
        assert time.monotonic() - started < 5
        connection.close()
        with server.client() as client:  # the server is as before
            assert client.get("/v1/health").status_code == 200


def test_a_body_sent_while_the_server_was_stopped_is_not_its_clients_delay(
    tmp_path: Path,
) -> None:
    """A server stopped for longer than its body time (SIGSTOP) answered 408 "arrived too
    slowly" to bodies that had come whole meanwhile, unread."""
    body = b'{"client": "Ann", "amount": "1.00", "description": "x"}'
    head = (
        b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nAuthorization: Bearer ".encode()
    )
    with running_server(tmp_path, "memory:", KOPILKA_BODY_SECONDS="1") as server:
        assert server.process is not None
        with server.client() as client:
            assert client.post("/v1/accounts", json={"client": "Ann"}).status_code == 201
        connection = connect(server.port)
        connection.sendall(head + server.token.encode() + b"\r\n\r\n" + body[:10])
        time.sleep(0.3)  # the head read, the body begun
        server.process.send_signal(signal.SIGSTOP)
        try:
            connection.sendall(body[10:])  # whole, as the server stands still
            time.sleep(2.5)
        finally:
            server.process.send_signal(signal.SIGCONT)
        answer = connection.recv(65536)
        connection.close()
    assert answer.startswith(b"HTTP/1.1 201 "), answer


INVALID_REQUESTS = [
    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST /v1/transfers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 4\r\n\r\n",
    b"\x00\x01 garbage\r\n\r\n",
    # An HTTP/0.9 request line (no version) with headers and a body: not HTTP/1.1.
    b"POST /v1/withdrawals\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /v1/health HTTP/2.0\r\nHost: x\r\n\r\n",
    b"GET /v1/health HTTP/1.1\r\n\r\n",  # HTTP/1.1 requires a Host
    b"GET /v1/health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    # A coding this server does not undo: a proxy in front would read another body.
    b"POST /v1/transfers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
]


def test_requests_the_parser_refuses_get_the_json_error_form(tmp_path: Path) -> None:
    """And no line in the server's log each: anyone could fill it with them."""
    with running_server(tmp_path, "memory:") as server:
        for request in INVALID_REQUESTS * 3:
            connection = connect(server.port)
            connection.sendall(request)
            answer = read_until_closed(connection)
            head = answer.partition(b"\r\n\r\n")[0].lower()
            assert b"content-type: application/json" in head, answer
            assert b"connection: close" in head
            assert error_of(answer) == (400, "invalid_http"), answer
            connection.close()
    assert "Invalid HTTP request" not in server.errors


def test_an_http_1_0_request_needs_no_host(tmp_path: Path) -> None:
    with running_server(tmp_path, "memory:") as server:
        connection = connect(server.port)
        connection.sendall(b"GET /v1/health HTTP/1.0\r\n\r\n")
        answer = read_until_closed(connection)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        connection.close()


UPGRADE_REFUSED = "the request asks to upgrade the connection: kopilka speaks HTTP/1.1 only"


def deposit_request(token: str, client: str, amount: str) -> bytes:
    """A whole `POST /v1/deposits` that opens the account, as sent on the wire."""
    body = json.dumps({"client": client, "amount": amount, "open_account": True}).encode()
    return (
        b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def test_a_websocket_upgrade_is_refused_and_the_connection_closed(tmp_path: Path) -> None:
    """No endpoint speaks WebSocket or any other protocol: an upgrade is refused."""
    upgrade = (
        b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    with running_server(tmp_path, "memory:") as server:
        connection = connect(server.port)
        connection.sendall(upgrade)
        answer = read_until_closed(connection)
        connection.close()
    assert error_of(answer) == (400, "invalid_http"), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["message"] == UPGRADE_REFUSED


@pytest.mark.parametrize("upgrade", [b"websocket", b"h2c"])
def test_a_request_hidden_in_an_upgrade_requests_body_is_never_run(
    tmp_path: Path, upgrade: bytes
) -> None:
    """The parser stopped at an upgrade request's head and read its body, come later, as
    a request of its own: a deposit that a proxy framing by Content-Length never saw."""
    with running_server(tmp_path, "memory:") as server:
        hidden = deposit_request(server.token, "Bob", "7")
        head = (
            b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: "
            + upgrade
            + f"\r\nContent-Length: {len(hidden)}\r\n\r\n".encode()
        )
        connection = connect(server.port)
        connection.sendall(head)
        time.sleep(0.2)  # the body in a segment of its own
        with contextlib.suppress(OSError):  # closed already, as it may be
            connection.sendall(hidden)
        answer = read_until_closed(connection)
        connection.close()
        assert error_of(answer) == (400, "invalid_http"), answer
        assert answer.count(b"content-length: ") == 1, answer  # one answer, its own
        with server.client() as admin:
            assert admin.get("/v1/accounts/Bob").status_code == 404


@pytest.mark.parametrize("split", [False, True])
def test_a_chunked_bodys_trailer_is_never_read_as_its_headers(tmp_path: Path, split: bool) -> None:
    """Trailer fields were added to the request's headers, read or not as the bytes
    happened to come: a key, a token or a ledger no proxy in front ever checked."""
    with running_server(tmp_path, "memory:") as server:
        body = b'{"client": "Ann", "amount": "3", "open_account": true}'
        chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n"
        for trailer, status in (
            (b"Idempotency-Key: only-in-the-trailer\r\n", 201),
            (b"Idempotency-Key: only-in-the-trailer\r\n", 201),  # again: no replay
            (f"Authorization: Bearer {server.token}\r\n".encode(), 401),
            (b"Kopilka-Ledger: nosuch\r\n", 201),
        ):
            token = server.token if status != 401 else "none"
            connection = connect(server.port)
            request = chunked_deposit_head(token) + chunked + trailer + b"\r\n"
            if split:
                head_end = len(chunked_deposit_head(token))
                connection.sendall(request[:head_end])
                time.sleep(0.2)
                connection.sendall(request[head_end:])
            else:
                connection.sendall(request)
            got, _ = read_answer(connection.makefile("rb"))
            connection.close()
            assert got == status, trailer
        with server.client() as admin:
            assert admin.get("/v1/accounts/Ann").json()["balance"] == "9.00"


# Each statement line repeats its description (as `description` and in `text`): some
# 1.2 KB a line, so the statement is several times what the socket buffers of a
# connection on loopback hold (about 3 MB here).
STATEMENT_LINES = 8_000
DESCRIPTION = "d" * 500


def statement_request(token: str) -> bytes:
    return (
        b"GET /v1/accounts/Ann/statement HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {token}\r\n\r\n".encode()
    )


def open_statement(port: int, token: str, receive_buffer: int | None = None) -> socket.socket:
    """A connection that has asked for Ann's statement."""
    connection = socket.socket()
    if receive_buffer is not None:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    connection.settimeout(10)
    connection.connect(("127.0.0.1", port))
    connection.sendall(statement_request(token))
    return connection


def fill_statement(client: httpx.Client) -> bytes:
    """Ann's account with STATEMENT_LINES lines; the statement, read at once."""
    deposit = {"type": "deposit", "client": "Ann", "amount": "1", "description": DESCRIPTION}
    operations = [{**deposit, "open_account": True}] + [deposit] * (STATEMENT_LINES - 1)
    answer = client.post("/v1/batch", json={"operations": operations})
    assert answer.status_code == 200, answer.text[:500]
    return client.get("/v1/accounts/Ann/statement").content


def read_all(connection: socket.socket, pause: float = 0.0) -> bytes:
    """What the connection gives until the server closes it (or stops sending for
    ten seconds), reading 64 KiB at a time with `pause` seconds between reads."""
    chunks = []
    try:
        while chunk := connection.recv(64 * 1024):
            chunks.append(chunk)
            time.sleep(pause)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def statement_body(answer: bytes) -> bytes:
    """The body of a chunked answer; AssertionError when it was cut short."""
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower()
    body = []
    while True:
        size_line, separator, rest = rest.partition(b"\r\n")
        assert separator, "the answer ends inside a chunk's size line"
        size = int(size_line, 16)
        assert len(rest) >= size + 2, "the answer ends inside a chunk"
        body.append(rest[:size])
        rest = rest[size + 2 :]
        if size == 0:
            return b"".join(body)


def test_a_client_that_does_not_read_its_answer_is_cut_off(tmp_path: Path) -> None:
    # A long statement asked for and never read: the server waits to write for at most
    # its write time, then drops the connection and what it had buffered for it.
    with running_server(tmp_path, "memory:", KOPILKA_WRITE_SECONDS="1") as server:
        with server.client() as client:
            whole = len(fill_statement(client))
            # A small receive buffer: less of the answer sits in the socket buffers.
            stalled = open_statement(server.port, server.token, 16 * 1024)
            time.sleep(0.5)
            # Meanwhile everyone else is served as usual, and promptly.
            for _ in range(3):
                started = time.monotonic()
                assert client.get("/v1/health").status_code == 200
                assert time.monotonic() - started < 0.5
            time.sleep(3)  # well past the write time, and nothing read yet
        # What the socket buffers held, then the end: no whole statement, no chunk of 0.
        answer = read_all(stalled)
        stalled.close()
        assert 0 < len(answer) < whole
        with pytest.raises(AssertionError, match="the answer ends inside"):
            statement_body(answer)


def test_a_client_that_reads_slowly_but_steadily_gets_its_whole_answer(tmp_path: Path) -> None:
    # The server's writing waits on each read of this client, but never for a whole
    # write time (a statement's piece, some 580 KB here, drains in about a quarter of a
    # second); the answer takes several write times in all.
    with running_server(tmp_path, "memory:", KOPILKA_WRITE_SECONDS="1") as server:
        with server.client() as client:
            expected = json.loads(fill_statement(client))
        connection = open_statement(server.port, server.token)
        started = time.monotonic()
        answer = read_all(connection, pause=0.02)
        took = time.monotonic() - started
        connection.close()
        statement = json.loads(statement_body(answer))
        assert len(statement["lines"]) == STATEMENT_LINES
        del statement["till"], expected["till"]  # the time of each request
        assert statement == expected
        assert took > 2, f"read in {took:.1f} s: too quickly to have kept the server waiting"


def read_steadily(connection: socket.socket, rate: float) -> bytes:
    """All the connection gives, taken in at `rate` bytes a second, 16 KiB at a time."""
    started = time.monotonic()
    chunks: list[bytes] = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := connection.recv(16 * 1024):
            chunks.append(chunk)
            time.sleep(max(0.0, sum(map(len, chunks)) / rate - (time.monotonic() - started)))
    connection.close()
    return b"".join(chunks)


def test_a_client_with_a_small_window_reading_steadily_gets_its_whole_answer(
    tmp_path: Path,
) -> None:
    """Linux grows the server's socket buffer to megabytes and says it writable only once
    about half has gone: a client reading steadily at a fraction of that a write time,
    its own buffer small, kept the server's writing paused past the write time, and was
    cut off (at 40 KB/s under the default 30 s). What it takes in counts."""
    rate = 1_500_000  # bytes a second: some 750 KB a write time
    with running_server(tmp_path, "memory:", KOPILKA_WRITE_SECONDS="0.5") as server:
        with server.client() as client:
            whole = fill_statement(client)
        answer = read_steadily(open_statement(server.port, server.token, 4 * 1024), rate)
    statement = json.loads(statement_body(answer))
    assert len(statement["lines"]) == STATEMENT_LINES
    assert len(whole) > 4 * rate * 0.5  # longer than a write time's worth, many times


def test_a_statement_of_long_lines_comes_in_pieces_a_steady_reader_takes_in_time(
    tmp_path: Path,
) -> None:
    """500 lines of 500 emoji each are a piece of some 2.8 MB, kept whole in the server:
    over the 1 MiB a client's progress is counted up to, so a client reading steadily had
    to take it all in one write time, and was cut off. Pieces are at most 256 KiB."""
    rate = 1_500_000  # bytes a second, as for usual lines above
    emoji = "\U0001f4b0" * 500
    deposit = {"type": "deposit", "client": "Ann", "amount": "1", "description": emoji}
    operations = [{**deposit, "open_account": True}] + [deposit] * 1_499
    with running_server(tmp_path, "memory:", KOPILKA_WRITE_SECONDS="0.5") as server:
        with server.client() as client:
            assert client.post("/v1/batch", json={"operations": operations}).status_code == 200
        answer = read_steadily(open_statement(server.port, server.token, 4 * 1024), rate)
    statement = json.loads(statement_body(answer))
    assert len(statement["lines"]) == 1_500
    assert {line["description"] for line in statement["lines"]} == {emoji}


def test_a_client_that_takes_in_too_little_a_write_time_is_cut_off(tmp_path: Path) -> None:
    """Some 10 KB a second, under the 64 KiB a write time (here 1 s) that starts it anew:
    a client taking a byte now and then holds no connection, nor its answer, for ever."""
    with running_server(tmp_path, "memory:", KOPILKA_WRITE_SECONDS="1") as server:
        with server.client() as client:
            whole = fill_statement(client)
        trickling = open_statement(server.port, server.token, 4 * 1024)
        chunks = []
        until = time.monotonic() + 4
        while time.monotonic() < until:
            chunks.append(trickling.recv(1024))
            time.sleep(0.1)
        answer = b"".join(chunks) + read_all(trickling)  # the rest at once: what is left
        trickling.close()
    assert 0 < len(answer) < len(whole)
    with pytest.raises(AssertionError, match="the answer ends inside"):
        statement_body(answer)


def test_an_answer_written_whole_still_has_to_drain_in_the_write_time(tmp_path: Path) -> None:
    """A batch's answer (7 MB here, replayed under its key at no cost to the ledger) is
    kept whole in the server: a client taking it in at 100 KB/s with a write time of
    1 s is dropped, as it was before what the client takes in counted, not left to hold
    it for as long as the whole answer takes."""
    item = {"type": "deposit", "client": "Ann", "amount": "1", "description": DESCRIPTION}
    body = json.dumps({"operations": [{**item, "open_account": True}] + [item] * 9_999})
    head = (
        "POST /v1/batch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "Content-Type: application/json\r\nIdempotency-Key: big\r\n"
        f"Content-Length: {len(body)}\r\nAuthorization: Bearer "
    )
    with running_server(tmp_path, "memory:", KOPILKA_WRITE_SECONDS="1") as server:
        first = connect(server.port)
        request = f"{head}{server.token}\r\n\r\n{body}".encode()
        first.sendall(request)
        whole = read_until_closed(first)
        first.close()
        replayed = socket.socket()
        replayed.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024)
        replayed.settimeout(10)
        replayed.connect(("127.0.0.1", server.port))
        replayed.sendall(request)
        started, chunks = time.monotonic(), []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while time.monotonic() - started < 5 and (chunk := replayed.recv(4 * 1024)):
                chunks.append(chunk)
                time.sleep(max(0.0, sum(map(len, chunks)) / 100_000 - (time.monotonic() - started)))
        answer = b"".join(chunks) + read_all(replayed)  # the rest at once: what is left
        replayed.close()
    assert len(whole) > 5_000_000 and whole.startswith(b"HTTP/1.1 200 ")
    assert 0 < len(answer) < len(whole)


@pytest.mark.parametrize("refused", INVALID_REQUESTS[2:], ids=lambda request: repr(request[:24]))
def test_a_write_pipelined_before_a_refused_request_gets_its_own_answer_first(
    tmp_path: Path, refused: bytes
) -> None:
    """The write is applied: its answer must reach the client before the refusal, or a
    client told only "invalid request" would send it again."""
    with running_server(tmp_path, "memory:") as server:
        body = json.dumps({"client": "Ann", "amount": "5", "open_account": True}).encode()
        deposit = (
            f"POST /v1/deposits HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        connection = connect(server.port)
        connection.sendall(deposit + refused)
        answers = read_until_closed(connection)
        connection.close()
        first, separator, _ = answers.partition(b"HTTP/1.1 400 ")
        assert first.startswith(b"HTTP/1.1 201 ") and separator, answers
        with server.client() as admin:
            assert admin.get("/v1/accounts/Ann").json()["balance"] == "5.00"


def _ten_thousand_deposits(token: str) -> bytes:
    """A batch request that takes a while to apply on durable SQLite: $10,000 to Ann."""
    deposits = [{"type": "deposit", "client": "Ann", "amount": "1"} for _ in range(10_000)]
    body = json.dumps({"operations": [{**deposits[0], "open_account": True}, *deposits[1:]]})
    return (
        f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def test_a_batch_answered_while_endless_headers_follow_it_is_answered_first(
    tmp_path: Path,
) -> None:
    """Headers past the bound, arriving while a batch sent before them is applied: the
    batch's answer goes out whole, then 431, then the connection closes."""
    with running_server(tmp_path) as server:  # durable SQLite: a batch that takes a while
        batch = _ten_thousand_deposits(server.token)
        connection = connect(server.port)
        connection.sendall(batch)
        time.sleep(0.02)  # the batch is being applied

        def endless_headers() -> None:
            connection.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: ")
            with contextlib.suppress(OSError):  # the server may close before the last piece
                # Past one read (256 KiB) and the bound: a read that also ends the batch's
                # body does not count the head begun in it (a loaded machine, reading
                # paused while the batch was taken, read 40 KB so), the next one does.
                for _ in range(300):
                    connection.sendall(b"a" * 1_000)

        # Sent while the answers are read: a client that does not read them would be
        # waited for, its reading paused, the rest of its headers not read.
        sender = threading.Thread(target=endless_headers)
        sender.start()
        answers = read_until_closed(connection)
        sender.join()
        connection.close()
        first, separator, _ = answers.partition(b"HTTP/1.1 431 ")
        assert first.startswith(b"HTTP/1.1 200 ") and separator, answers[:300]
        assert json.loads(first.partition(b"\r\n\r\n")[2])["results"][-1]["status"] == 201
        with server.client() as admin:
            assert admin.get("/v1/accounts/Ann").json()["balance"] == "10000.00"


@pytest.mark.parametrize(
    ("refused", "status"),
    [
        (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: ", b"431"),  # endless headers
        (b"GET /v1/health HTTP/9.9\r\nHost: x\r\n\r\n", b"400"),  # garbled, then more bytes
        # The application's own refusal, which uvicorn follows with a close.
        (
            b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer TOKEN\r\n"
            b"Content-Length: 50000000\r\n\r\n",
            b"413",
        ),
    ],
    ids=["headers too large", "invalid http", "body too large"],
)
def test_a_batch_answer_is_whole_while_the_refused_client_keeps_sending(
    tmp_path: Path, refused: bytes, status: bytes
) -> None:
    """The refused client goes on sending while the batch before it is answered: closed
    with that input unread, the connection was reset, and the reset cut the batch's
    answer short (applied, and no whole answer arrived). And the refusal is the first
    found: a garbled head read in one piece with more than a head's bound behind it was
    answered 431, not 400."""
    with running_server(tmp_path) as server:
        batch = _ten_thousand_deposits(server.token)
        connection = connect(server.port)
        connection.sendall(batch)

        def keep_sending() -> None:
            with contextlib.suppress(OSError):  # the server closes once it has lingered
                time.sleep(0.05)  # the batch being applied: what follows is read at once
                head = refused.replace(b"TOKEN", server.token.encode())
                connection.sendall(head + b"a" * 32_768)
                for _ in range(2_048):
                    connection.sendall(b"a" * 1_024)

        sender = threading.Thread(target=keep_sending)
        sender.start()
        answers = read_until_closed(connection)
        sender.join()
        connection.close()
        first, separator, _ = answers.partition(b"HTTP/1.1 " + status + b" ")
        assert first.startswith(b"HTTP/1.1 200 ") and separator, answers[:300]
        assert len(json.loads(first.partition(b"\r\n\r\n")[2])["results"]) == 10_000
        with server.client() as admin:
            assert admin.get("/v1/accounts/Ann").json()["balance"] == "10000.00"


def test_a_stop_closes_connections_half_sent_or_lingering_at_once(tmp_path: Path) -> None:
    """A connection part way through its request head, or lingering after a refusal,
    held the server's stop up for the whole linger time."""
    with running_server(tmp_path, "memory:") as server:
        half_sent = connect(server.port)
        half_sent.sendall(b"GET /v1/who")
        refused = connect(server.port)
        refused.sendall(
            b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + server.token.encode()
            + b"\r\nContent-Length: 100000000\r\n\r\n"
        )
        assert refused.recv(4096).startswith(b"HTTP/1.1 413 ")  # and lingering now
        time.sleep(0.2)
        started = time.monotonic()
        assert server.stop(signal.SIGTERM) == 0
        took = time.monotonic() - started
        half_sent.close()
        refused.close()
    assert took < LINGER_SECONDS, took


def chunked_deposit_head(token: str) -> bytes:
    return (
        b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )


@pytest.mark.parametrize("size_line", [b"zz\r\n", b"ffffffffffffffffff\r\n"])
def test_a_chunk_size_that_is_no_number_is_refused_at_once(
    tmp_path: Path, size_line: bytes
) -> None:
    """The parser stopped in the body of the request its application waited for: the
    refusal waited behind that answer, which never came, and the connection held its
    slot with no clock running, for ever."""
    with running_server(tmp_path, "memory:") as server:
        connection = connect(server.port)
        started = time.monotonic()
        connection.sendall(chunked_deposit_head(server.token) + size_line)
        answer = read_until_closed(connection)
        assert error_of(answer) == (400, "invalid_http"), answer
        assert time.monotonic() - started < LINGER_SECONDS + 3
        connection.close()


@pytest.mark.parametrize("token", ["valid", "none"])
def test_endless_trailers_are_refused_as_headers_are(tmp_path: Path, token: str) -> None:
    """Trailer fields after a chunked body were held whatever their size: hundreds of
    megabytes of them, no token needed, grew the server by as much. Refused as headers
    past their bound are; answered already (401, before the body), closed."""
    with running_server(tmp_path, "memory:") as server:
        connection = connect(server.port)
        given = server.token if token == "valid" else "none"
        connection.sendall(chunked_deposit_head(given) + b"2\r\n{}\r\n0\r\n")
        line = b"X-t: " + b"a" * 8_000 + b"\r\n"
        with contextlib.suppress(OSError):  # the server may close before all is sent
            for _ in range(500):  # 4 MB
                connection.sendall(line)
        answer = read_until_closed(connection)
        refused = {(431, "headers_too_large")}
        if token == "none":  # whichever comes first: the token's check, or the bound
            refused.add((401, "unauthorized"))
        assert error_of(answer) in refused, answer
        connection.close()


# A chunked deposit's content, and the framing its bound allows: past every header's
# bound, 8 bytes for each byte of content (docs/operations.md, Bounds).
CHUNKED_CONTENT = b'{"client": "Ann", "amount": "1", "open_account": true}'
FRAMING_MAX = HEAD_BYTES_MAX + 8 * len(CHUNKED_CONTENT)
# Each kind of framing, and the most of it served: a first chunk's extension comes
# before any content, so only the headers' part of the bound is there for it yet.
FRAMING_KINDS = {
    "trailer fields": FRAMING_MAX,
    "one trailer field": FRAMING_MAX,
    "first chunk extension": HEAD_BYTES_MAX,
    "last chunk extension": FRAMING_MAX,
}


def chunked_deposit(token: str, framing: str, size: int, *, close: bool = True) -> bytes:
    """A chunked deposit of 1 to Ann whose bytes beside its content are `size` exactly,
    most of them of the `framing` kind."""
    head = (
        b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n".encode()
        + (b"Connection: close\r\n" if close else b"")
        + b"\r\n"
    )
    size_line = f"{len(CHUNKED_CONTENT):x}".encode()
    extra = size - len(size_line) - len(b"\r\n\r\n0\r\n\r\n")
    first, last, trailer = b"", b"", b""
    if framing == "trailer fields":
        fields = [b"X-T%d: " % n + b"t" * 100 + b"\r\n" for n in range(extra // 120)]
        rest = extra - sum(map(len, fields))
        trailer = b"".join(fields) + b"X-Last: " + b"t" * (rest - 10) + b"\r\n"
    elif framing == "one trailer field":
        trailer = b"X-T: " + b"t" * (extra - 7) + b"\r\n"
    elif framing == "first chunk extension":
        first = b";e=" + b"x" * (extra - 3)
    else:
        last = b";e=" + b"x" * (extra - 3)
    body = size_line + first + b"\r\n" + CHUNKED_CONTENT + b"\r\n0" + last + b"\r\n"
    body += trailer + b"\r\n"
    assert len(body) - len(CHUNKED_CONTENT) == size
    return head + body


def send_in_pieces(port: int, request: bytes, cuts: list[int]) -> bytes:
    """Everything the server answers to `request`, sent cut at `cuts` (each piece a read
    of its own, as far as a short pause makes it so), until it closes."""
    connection = connect(port)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pause = 0.01 if len(cuts) < 100 else 0.0
    with contextlib.suppress(OSError):  # refused and closed before all is sent, as may be
        for start, end in zip([0, *cuts], [*cuts, len(request)], strict=True):
            connection.sendall(request[start:end])
            time.sleep(pause)
    answers = read_until_closed(connection)
    connection.close()
    return answers


# Where a request is cut into writes, given its length and its head's.
SPLITS = {
    "in one write": lambda length, head: [],
    "its head apart": lambda length, head: [head],
    "its head with the first bytes of its body": lambda length, head: [head + 3],
    "in halves": lambda length, head: [length // 2],
    "its last bytes apart": lambda length, head: [length - 2],
    "a kilobyte at a time": lambda length, head: list(range(1_000, length, 1_000)),
    "a byte at a time": lambda length, head: list(range(1, length)),
}


@pytest.mark.parametrize("split", SPLITS)
def test_a_chunked_bodys_framing_is_bounded_however_its_bytes_are_split(
    tmp_path: Path, split: str
) -> None:
    """The framing in the read that ended a head, or the body, was never counted: 33 KB of
    trailer fields or a 100 KB chunk extension sent in one write (or two) were applied,
    and only what spanned three reads or more was refused. Refused past the bound now,
    and nothing applied; served below it, however the bytes come."""
    with running_server(tmp_path) as server:
        answers = {}
        for framing, served in FRAMING_KINDS.items():
            for size in (served - 100, FRAMING_MAX + 100):
                request = chunked_deposit(server.token, framing, size)
                cuts = SPLITS[split](len(request), request.index(b"\r\n\r\n") + 4)
                answers[framing, size] = send_in_pieces(server.port, request, cuts)
        for (framing, size), answer in answers.items():
            if size > FRAMING_MAX:
                assert error_of(answer) == (431, "headers_too_large"), (framing, answer)
            else:
                assert answer.startswith(b"HTTP/1.1 201 "), (framing, answer)
        with server.client() as admin:
            assert admin.get("/v1/accounts/Ann").json()["balance"] == "4.00"


@pytest.mark.parametrize("split", ["in one write", "in halves", "a kilobyte at a time"])
def test_chunked_bodies_within_their_bound_are_served_pipelined(tmp_path: Path, split: str) -> None:
    """A read that holds two requests is counted for neither body, as which of its bytes
    are whose is not known: one near its bound, sent with others, is never refused for
    the bytes of another."""
    with running_server(tmp_path) as server:
        near = FRAMING_MAX - 100
        requests = b"".join(
            [
                chunked_deposit(server.token, "trailer fields", near, close=False),
                deposit_request(server.token, "Ann", "1"),
                chunked_deposit(server.token, "last chunk extension", near, close=False),
                chunked_deposit(server.token, "one trailer field", near),
            ]
        )
        cuts = SPLITS[split](len(requests), requests.index(b"\r\n\r\n") + 4)
        answers = send_in_pieces(server.port, requests, cuts)
        assert answers.count(b"HTTP/1.1 201 Created\r\n") == 4, answers
        with server.client() as admin:
            assert admin.get("/v1/accounts/Ann").json()["balance"] == "4.00"


def test_a_client_leaving_pipelined_statements_logs_nothing(tmp_path: Path) -> None:
    """The statement being streamed when a second request came behind it was not told
    that the client had gone: each write to the closed connection was a traceback."""
    with running_server(tmp_path, "memory:") as server:
        with server.client() as admin:
            assert admin.post("/v1/accounts", json={"client": "Ann"}).status_code == 201
            deposits = [{"type": "deposit", "client": "Ann", "amount": "1"}] * 10_000
            for _ in range(2):
                assert admin.post("/v1/batch", json={"operations": deposits}).status_code == 200
        statement = (
            b"GET /v1/accounts/Ann/statement HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {server.token}\r\n\r\n".encode()
        )
        for _ in range(5):
            connection = connect(server.port)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            connection.sendall(statement * 2)
            assert connection.recv(100).startswith(b"HTTP/1.1 200")
            connection.close()
        time.sleep(1)
        with server.client() as admin:
            assert admin.get("/v1/health").status_code == 200
        assert server.stop() == 0
    assert "Traceback" not in server.errors, server.errors


def test_a_client_that_half_closes_after_its_requests_is_answered(tmp_path: Path) -> None:
    """`shutdown(SHUT_WR)` after sending (as `nc -N` and some health checks do) is legal
    HTTP/1.1: the connection closed at once, and the writes applied went unanswered."""
    with running_server(tmp_path, "memory:") as server:
        deposit = deposit_request(server.token, "Ann", "1")
        connection = connect(server.port)
        connection.sendall(deposit * 3)  # three, pipelined
        connection.shutdown(socket.SHUT_WR)
        answers = read_until_closed(connection)  # closed once all three are answered
        connection.close()
        assert answers.count(b"HTTP/1.1 201 Created\r\n") == 3, answers
        with server.client() as admin:
            assert admin.get("/v1/accounts/Ann").json()["balance"] == "3.00"


def test_a_client_that_half_closes_in_the_middle_of_a_body_is_let_go_at_once(
    tmp_path: Path,
) -> None:
    """It will never send the rest: the connection was held until the body's time ran out,
    and a stop of the server waited as long for it."""
    with running_server(tmp_path, "memory:", KOPILKA_BODY_SECONDS="120") as server:
        connection = connect(server.port)
        connection.sendall(
            b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {server.token}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            + b'{"client":'
        )
        connection.shutdown(socket.SHUT_WR)
        connection.settimeout(60)  # well short of the body's 120 s
        assert read_until_closed(connection) == b""
        connection.close()
        assert server.stop() == 0


def test_a_client_that_half_closes_in_the_middle_of_a_head_is_let_go_at_once(
    tmp_path: Path,
) -> None:
    """Its head will never end: the connection, and its place among its address's, was
    held until the head's time ran out, so a client cancelling requests mid-send locked
    itself out. A request complete before it is still answered."""
    with running_server(tmp_path, "memory:", KOPILKA_HEADER_SECONDS="120") as server:
        cut = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n"  # no blank line: no end
        for sent_before in (b"", deposit_request(server.token, "Ann", "1")):
            connection = connect(server.port)
            connection.sendall(sent_before + cut)
            connection.shutdown(socket.SHUT_WR)
            connection.settimeout(20)  # well short of the head's 120 s
            answers = read_until_closed(connection)
            connection.close()
            assert answers.count(b"HTTP/1.1 ") == (1 if sent_before else 0), answers
        with server.client() as admin:
            assert admin.get("/v1/accounts/Ann").json()["balance"] == "1.00"
        assert server.stop() == 0


def test_connections_the_bounds_refuse_are_counted(tmp_path: Path) -> None:
    """Turned away before any app has a say, and logged nowhere (anyone could fill a log
    so): an operator saw nothing of clients behind one address refused."""
    with running_server(tmp_path, "memory:", KOPILKA_CONNECTIONS_PER_CLIENT="2") as server:
        held = hold_connections(server.port, 2)
        for _ in range(3):
            refused = connect(server.port)
            assert error_of(read_until_closed(refused)) == (503, "too_many_connections")
            refused.close()
        for connection in held:
            connection.close()
        answer = served_once_a_slot_is_free(server.url)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert answer.status_code == 200
    assert 'kopilka_refused_requests_total{code="too_many_connections"} 3.0' in metrics


BIG_HEAD = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 24_000 + b"\r\n\r\n"
WHOLE_HEADS = {
    "in one write": [BIG_HEAD],
    "ended by a piece that passes the bound": [BIG_HEAD[:15_000], BIG_HEAD[15_000:]],
    "behind another request in one write": [HEALTH + BIG_HEAD],
}


@pytest.mark.parametrize("pieces", WHOLE_HEADS.values(), ids=WHOLE_HEADS)
def test_a_head_past_the_bound_is_refused_and_closed_however_it_arrives(
    tmp_path: Path, pieces: list[bytes]
) -> None:
    """A head over the bound that ended in the read it was counted in was parsed whole
    before its count was compared: the application answered 431 and kept the connection."""
    with running_server(tmp_path, "memory:") as server:
        connection = connect(server.port)
        for piece in pieces:
            connection.sendall(piece)
            time.sleep(0.2)  # read apart
        answers = read_until_closed(connection)
        connection.close()
        if pieces[0].startswith(HEALTH):
            served, separator, answers = answers.partition(b"HTTP/1.1 431 ")
            assert served.startswith(b"HTTP/1.1 200 ") and separator, served
            answers = separator + answers
        assert error_of(answers) == (431, "headers_too_large")
        assert b"connection: close" in answers.partition(b"\r\n\r\n")[0].split(b"\r\n")


def test_a_chunked_body_in_too_many_chunks_is_refused(tmp_path: Path) -> None:
    """Each chunk costs the event loop a few calls, however small: bodies sent a byte a
    chunk, within the framing's bound, stalled every other client for seconds. A batch
    sent an operation a chunk, each comma a chunk of its own, is well within the bound."""
    with running_server(tmp_path, "memory:") as server:
        deposit = b'{"type": "deposit", "client": "Ann", "amount": "1"}'
        pieces = [b'{"operations": [', deposit[:-1] + b', "open_account": true}']
        for _ in range(9_999):
            pieces += [b",", deposit]
        pieces.append(b"]}")
        framed = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
        connection = connect(server.port)
        answers = connection.makefile("rb")
        connection.sendall(
            chunked_deposit_head(server.token).replace(b"/v1/deposits", b"/v1/batch")
            + framed
            + b"0\r\n\r\n"
        )
        status, body = read_answer(answers)
        assert status == 200, body[:300]
        assert len(json.loads(body)["results"]) == 10_000

        # The bound itself, 32,768 chunks, is taken, and one more is not.
        for spaces, status in ((32_766, 422), (32_767, 413)):
            at_the_bound = b"".join(b"1\r\n%c\r\n" % c for c in b"{" + b" " * spaces + b"}")
            connection = connect(server.port)
            answers = connection.makefile("rb")
            with contextlib.suppress(OSError):  # the server may close before all is sent
                connection.sendall(chunked_deposit_head(server.token) + at_the_bound + b"0\r\n\r\n")
            assert read_answer(answers)[0] == status
            answers.close()
            connection.close()

        connection = connect(server.port)
        answers = connection.makefile("rb")
        byte_a_chunk = b"".join(b"1\r\n%c\r\n" % byte for byte in b"{" + b" " * 40_000 + b"}")
        with contextlib.suppress(OSError):  # the server may close before all is sent
            connection.sendall(chunked_deposit_head(server.token) + byte_a_chunk + b"0\r\n\r\n")
        refusal = answers.read()
        answers.close()
        connection.close()
        assert error_of(refusal) == (413, "too_many_chunks")


def test_a_request_sent_while_the_server_was_stopped_is_not_reset_as_idle(
    tmp_path: Path,
) -> None:
    """A keep-alive connection idle for most of its time, a request sent on it while the
    server stood still (SIGSTOP) in the middle of a batch's work, until past that time:
    woken, the server ran its timers before it looked for input, closed the connection
    as idle with the request unread, and the client was reset."""
    health = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    items = [{"type": "deposit", "client": "Ann", "amount": "1", "description": "x"}] * 10_000
    body = json.dumps({"operations": items}).encode()
    with running_server(tmp_path) as server:
        assert server.process is not None
        with server.client() as client:
            assert client.post("/v1/accounts", json={"client": "Ann"}).status_code == 201
        idle, busy = connect(server.port), connect(server.port)
        idle.sendall(health)
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")
        time.sleep(KEEP_ALIVE_SECONDS - 2)
        writing = _cpu_seconds_beside_the_loop(server.process.pid)
        busy.sendall(
            b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nAuthorization: Bearer {server.token}".encode()
            + b"\r\n\r\n"
            + body
        )
        # Stopped while the batch's SQL runs on the writer thread, the loop waiting for it.
        deadline = time.monotonic() + 10
        while _cpu_seconds_beside_the_loop(server.process.pid) < writing + 0.02:
            assert time.monotonic() < deadline, "the batch was never written"
            time.sleep(0.001)
        server.process.send_signal(signal.SIGSTOP)
        try:
            idle.sendall(health)
            time.sleep(2.5)  # the connection idle past its time, as the server stands
        finally:
            server.process.send_signal(signal.SIGCONT)
        answer = idle.recv(65536)
        idle.close()
        busy.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def _cpu_seconds_beside_the_loop(pid: int) -> float:
    """The CPU time of the process's threads but its main one (the event loop's)."""
    nanoseconds = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        if task.name != str(pid):
            with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
                nanoseconds += int((task / "schedstat").read_text().split()[0])
    return nanoseconds / 1e9
