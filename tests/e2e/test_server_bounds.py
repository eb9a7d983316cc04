"""Per-client bounds of a real server: connections from one address, and header time."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
from tests.kopilka_server import running_server


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


def test_one_address_cannot_take_every_connection(tmp_path: Path) -> None:
    with running_server(tmp_path, "memory:", KOPILKA_CONNECTIONS_PER_CLIENT="3") as server:
        held = hold_connections(server.port, 3)
        refused = connect(server.port)
        assert error_of(read_until_closed(refused)) == (503, "too_many_connections")
        refused.close()
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the server counts the closed one down once it sees the close
            try:
                answer = httpx.get(f"{server.url}/v1/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert answer.status_code == 200
        for connection in held:
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
