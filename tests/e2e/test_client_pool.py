"""The Python client's connections, counted by a TCP relay between it and a real server."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.kopilka_server import running_server
from tests.local_listener import serving

from kopilka.client import CONNECTIONS_MAX, connect_bank


def _copy(source: socket.socket, target: socket.socket) -> None:
    while data := source.recv(65536):
        target.sendall(data)
    target.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("connections", [CONNECTIONS_MAX, 3], ids=["default", "given"])
def test_threads_up_to_the_pool_size_keep_their_connections(
    tmp_path: Path, connections: int
) -> None:
    """As many threads as the client has connections each keep one open between calls:
    the pool kept only half of them, and closed and opened the others for every call. A
    program may give the client fewer (or more) to share."""
    opened: list[int] = []
    given: dict[str, Any] = {} if connections == CONNECTIONS_MAX else {"connections": connections}
    with running_server(tmp_path / "home") as server:
        upstream = urlsplit(server.url)

        def relay(client: socket.socket) -> None:
            opened.append(1)
            with socket.create_connection((upstream.hostname, upstream.port)) as to_server:
                back = threading.Thread(target=_copy, args=(to_server, client), daemon=True)
                back.start()
                _copy(client, to_server)
                back.join()

        with (
            serving(relay) as url,
            connect_bank(url, token=server.token, ledger="main", **given) as bank,
            ThreadPoolExecutor(CONNECTIONS_MAX) as threads,
        ):
            bank.deposit("Ann", 100, "pay")
            reads = list(threads.map(lambda _: bank.account("Ann"), range(20 * CONNECTIONS_MAX)))
        assert {account.balance_cents for account in reads} == {100}
        assert len(opened) <= connections
