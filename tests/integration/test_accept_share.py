"""How many waiting connections a worker of `kopilka serve --workers N` accepts on one
wake, read from a real listening socket's accept queue."""

from __future__ import annotations

import socket
import sys

import pytest

from kopilka.workers import ACCEPT_BURST_MAX, share_of_waiting, waiting_connections

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the accept queue is read from Linux's tcp_info"
)


def _waiting(listening: socket.socket, count: int) -> list[socket.socket]:
    address = listening.getsockname()
    return [socket.create_connection(address, timeout=5) for _ in range(count)]


@pytest.mark.parametrize(
    ("waiting", "workers", "share"),
    [
        (0, 2, 1),  # woken for one another worker took: one try
        (1, 2, 1),
        (8, 2, 1),  # a client's connections opened at once: taken in turn, shared evenly
        (9, 2, 4),  # more than taking turns keeps up with: a share at once
        (40, 4, 10),
        (300, 2, ACCEPT_BURST_MAX),  # a flood: a burst, then the loop's other work
    ],
)
def test_a_worker_takes_its_share_of_the_connections_waiting(
    waiting: int, workers: int, share: int
) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(512)
        clients = _waiting(listening, waiting)
        try:
            assert waiting_connections(listening) == waiting
            assert share_of_waiting(listening, workers) == share
            listening.setblocking(False)
            for _ in range(min(waiting, 3)):
                listening.accept()[0].close()
            assert waiting_connections(listening) == max(waiting - 3, 0)
        finally:
            for client in clients:
                client.close()
