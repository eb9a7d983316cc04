"""How a real server's answers go out: head and body in one write, whatever the request."""

from __future__ import annotations

import json
import socket
import struct
import sys
from pathlib import Path

import pytest
from tests.kopilka_server import running_server

HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
# Where struct tcp_info (linux/tcp.h) keeps tcpi_segs_in, after the fields before it.
_SEGS_IN_OFFSET = 140


def read_response(connection: socket.socket, pending: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """One response (head, body) by its Content-Length, and what came after it."""
    data = pending
    while b"\r\n\r\n" not in data:
        data += _receive(connection)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += _receive(connection)
    return head, rest[:length], rest[length:]


def _receive(connection: socket.socket) -> bytes:
    chunk = connection.recv(65536)
    assert chunk, "the server closed the connection"
    return chunk


def segments_received(connection: socket.socket) -> int:
    """TCP segments this socket has received (Linux's tcp_info, tcpi_segs_in)."""
    info = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, _SEGS_IN_OFFSET)[0])


@pytest.mark.skipif(sys.platform != "linux", reason="counts segments with Linux's tcp_info")
def test_each_answer_is_one_segment(tmp_path: Path) -> None:
    """Head and body go out in one write: one TCP segment per small answer, not two."""
    answers = 40
    with (
        running_server(tmp_path, "memory:") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection,
    ):
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        before = segments_received(connection)
        for _ in range(answers):
            connection.sendall(HEALTH)
            head, body, rest = read_response(connection)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert json.loads(body)["status"] == "ok"
            assert rest == b""
        received = segments_received(connection) - before
    # A segment more now and then (a bare ACK) is fine; a head apart from its body
    # would make it twice the answers.
    assert answers <= received < answers * 1.25


def test_a_head_request_is_answered_and_the_connection_serves_on(tmp_path: Path) -> None:
    """A HEAD answer is the GET's head without its body: the next answer follows it."""
    with (
        running_server(tmp_path, "memory:") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection,
    ):
        connection.sendall(b"HEAD /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += _receive(connection)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"\r\ncontent-type: application/json" in head
        assert rest == b""
        connection.sendall(HEALTH)
        head, body, _ = read_response(connection)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert json.loads(body)["status"] == "ok"


@pytest.mark.parametrize(
    "request_line",
    [
        b"HEAD /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"HEAD /v1/health HTTP/1.0\r\n\r\n",
        b"HEAD /v1/accounts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",  # a 401
    ],
    ids=["close", "http/1.0", "refused"],
)
def test_a_head_answer_on_a_connection_that_then_closes_is_sent(
    tmp_path: Path, request_line: bytes
) -> None:
    """The answer is held to be written with the next one: the connection's close must
    send it, there being no next one."""
    with (
        running_server(tmp_path, "memory:") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection,
    ):
        connection.sendall(request_line)
        data = b""
        while chunk := connection.recv(65536):  # to the close
            data += chunk
        assert data.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 401 ")), data
        assert data.endswith(b"\r\n\r\n")  # the head alone


def test_expect_continue_is_answered_before_the_body_is_sent(tmp_path: Path) -> None:
    """The interim 100 Continue is not held back: the client waits for it."""
    with running_server(tmp_path, "memory:") as server:
        body = json.dumps({"client": "Ann"}).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            connection.sendall(
                b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + server.token.encode() + b"\r\n"
                b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
            )
            interim = b""
            while b"\r\n\r\n" not in interim:
                interim += _receive(connection)  # times out if the 100 were held
            continue_head, _, rest = interim.partition(b"\r\n\r\n")
            assert continue_head == b"HTTP/1.1 100 Continue"
            connection.sendall(body)
            head, answer, _ = read_response(connection, rest)
            assert head.startswith(b"HTTP/1.1 201 ")
            assert json.loads(answer)["client"] == "Ann"


def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    with (
        running_server(tmp_path, "memory:") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection,
    ):
        connection.sendall(
            HEALTH
            + b"GET /v1/nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"HEAD /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
            + HEALTH
        )
        first, body, rest = read_response(connection)
        assert first.startswith(b"HTTP/1.1 200 ") and json.loads(body)["status"] == "ok"
        second, body, rest = read_response(connection, rest)
        assert second.startswith(b"HTTP/1.1 404 ")
        assert json.loads(body)["error"]["code"] == "not_found"
        while rest.count(b"\r\n\r\n") < 1:
            rest += _receive(connection)
        third, _, rest = rest.partition(b"\r\n\r\n")
        assert third.startswith(b"HTTP/1.1 200 ")
        fourth, body, _ = read_response(connection, rest)
        assert fourth.startswith(b"HTTP/1.1 200 ") and json.loads(body)["status"] == "ok"


def test_a_statement_that_does_not_add_up_is_broken_off_never_shown_whole(
    tmp_path: Path,
) -> None:
    """The shell refuses to print a statement whose running balances do not add up; the
    API, having sent its 200 before the line that does not (past the lines it reads
    ahead), ends the answer without its last chunk instead, so no client takes it for a
    whole statement."""
    import sqlite3

    with running_server(tmp_path / "home") as server:
        with server.client() as http:
            assert http.post("/v1/accounts", json={"client": "Ann"}).status_code == 201
            deposits = [{"type": "deposit", "client": "Ann", "amount": "1"}] * 1_100
            assert http.post("/v1/batch", json={"operations": deposits}).status_code == 200
        with sqlite3.connect(server.home / "kopilka.db") as database:  # damaged by hand
            database.execute(
                "UPDATE entries SET balance_after = balance_after + 1"
                " WHERE id = (SELECT max(id) FROM entries)"
            )
        for form in ("json", "csv"):
            request = (
                f"GET /v1/accounts/Ann/statement?format={form} HTTP/1.1\r\nHost: k\r\n"
                f"Authorization: Bearer {server.token}\r\nConnection: close\r\n\r\n"
            )
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as reader:
                reader.sendall(request.encode())
                received = b""
                while chunk := reader.recv(65536):
                    received += chunk
            assert received.startswith(b"HTTP/1.1 200"), received
            assert not received.endswith(b"\r\n0\r\n\r\n"), received  # no last chunk
            # HTTP/1.0's answer ends at the close: broken off, the connection is reset,
            # even while the client sends on (a server lingering would send its end first).
            received = b""
            with (
                socket.create_connection(("127.0.0.1", server.port), timeout=10) as reader,
                pytest.raises(ConnectionResetError),
            ):
                reader.sendall(request.replace("HTTP/1.1", "HTTP/1.0").encode())
                reader.sendall(b"GET /v1/health HTTP/1.0\r\n")
                while chunk := reader.recv(65536):
                    received += chunk
            assert received.startswith(b"HTTP/1.1 200"), received[:200]
        shown = server.command("statement", "--client=Ann", "--url", server.url)
        assert shown.returncode == 1 and shown.stdout == ""
        assert shown.stderr.startswith(f"Error: the server at {server.url} closed the connection")
        assert shown.stderr.count("\n") == 1, shown.stderr
        server.stop()
    assert "Traceback" not in server.errors, server.errors


def test_a_replay_of_a_write_whose_entry_another_program_spoilt_is_said_damaged(
    tmp_path: Path,
) -> None:
    """A balance after it that is no whole number of cents (SQLite's CHECKs let a REAL
    by) was computed with as the answer was made again, and failed there: the client got
    the server's bare text 500. Refused as read, it is the damage it is, logged once."""
    import sqlite3

    with running_server(tmp_path / "home") as server:
        with server.client() as http:
            deposit = {"client": "Ann", "amount": "5", "open_account": True}
            key = {"Idempotency-Key": "write-1"}
            assert http.post("/v1/deposits", json=deposit, headers=key).status_code == 201
            with sqlite3.connect(server.home / "kopilka.db") as database:  # spoilt by hand
                database.execute("UPDATE entries SET balance_after = 500.5")
            answers = [http.post("/v1/deposits", json=deposit, headers=key) for _ in range(2)]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == {
                "code": "database_damaged",
                "message": "the database is damaged (an entry of operation id 1 holds an amount"
                " that is no whole number of cents); nothing was applied: it must be restored"
                " from a backup",
            }
        server.stop()
    assert server.errors.count("is damaged (an entry of operation id 1") == 1, server.errors


def test_requests_to_upgrade_to_a_websocket_leave_the_log_as_it_was(tmp_path: Path) -> None:
    """Anyone may send them, without a token: a log line each would let them fill it."""
    upgrade = (
        b"GET /v1/health HTTP/1.1\r\nHost: k\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    with running_server(tmp_path, "memory:") as server:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
                connection.sendall(upgrade)
                assert connection.recv(65536).startswith(b"HTTP/1.1 ")
        server.stop()
    assert "upgrade" not in server.errors.lower(), server.errors
    assert "websocket" not in server.errors.lower(), server.errors


def _answer_to_the_close(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    return data


def test_an_http10_request_is_answered_as_http10_reads(tmp_path: Path) -> None:
    """HTTP/1.0 has no chunked coding and no interim answers: a streamed statement came
    in chunks, whose sizes a 1.0 client read as the body's text, no JSON."""
    with running_server(tmp_path, "memory:") as server:
        bearer = b"Authorization: Bearer " + server.token.encode() + b"\r\n"
        body = json.dumps(
            {"client": "Ann", "amount": "5.00", "description": "x", "open_account": True}
        ).encode()
        deposit = _answer_to_the_close(
            server.port,
            b"POST /v1/deposits HTTP/1.0\r\n" + bearer + b"Expect: 100-continue\r\n"
            b"Idempotency-Key: one\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        )
        assert deposit.startswith(b"HTTP/1.1 201 "), deposit  # no 100 Continue before it
        statement = _answer_to_the_close(
            server.port, b"GET /v1/accounts/Ann/statement HTTP/1.0\r\n" + bearer + b"\r\n"
        )
        head, _, text = statement.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"transfer-encoding" not in head.lower()
        assert b"connection: close" in head.lower()
        assert json.loads(text)["closing_balance"] == "5.00"
        # A 1.0 body's end is the connection's: a transfer coding could say another.
        chunked = _answer_to_the_close(
            server.port,
            b"POST /v1/deposits HTTP/1.0\r\n" + bearer + b"Idempotency-Key: two\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
        )
        assert chunked.startswith(b"HTTP/1.1 400 "), chunked
        with server.client() as admin:
            assert admin.get("/v1/accounts/Ann").json()["balance"] == "5.00"
