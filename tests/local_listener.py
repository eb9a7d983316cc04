"""A TCP server of the tests' own on a free loopback port: each connection it takes is
handed to a function on a thread of its own (a server that hangs up, a proxy)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

Handler = Callable[[socket.socket], None]


@contextlib.contextmanager
def serving(handle: Handler) -> Iterator[str]:
    """Yields the server's URL; each connection is closed once `handle` returns (a
    socket error ends it quietly: the client may have gone)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            connection.settimeout(10)
            threading.Thread(target=_handled, args=(handle, connection), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        thread.join()
        listener.close()


def _handled(handle: Handler, connection: socket.socket) -> None:
    with connection, contextlib.suppress(OSError):
        handle(connection)
