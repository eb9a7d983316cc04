"""A server that takes connections and requests and never answers: a frozen or stopped
kopilka, as its caller sees it; or one that hangs up on every request it reads, as a
proxy whose connection to kopilka broke does."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class SilentServer:
    url: str
    taken: list[socket.socket] = field(default_factory=list)  # the connections it holds


@contextlib.contextmanager
def silent_server(*, hangs_up: bool = False) -> Iterator[SilentServer]:
    listener = socket.create_server(("127.0.0.1", 0))
    server = SilentServer(f"http://127.0.0.1:{listener.getsockname()[1]}")

    def accept() -> None:
        with contextlib.suppress(OSError):  # until the listener is closed
            while True:
                connection = listener.accept()[0]
                server.taken.append(connection)
                if hangs_up:
                    connection.recv(65536)
                    connection.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server
    finally:
        listener.close()
        for connection in server.taken:
            connection.close()
