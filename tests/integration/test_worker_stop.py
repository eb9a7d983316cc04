"""A worker of `kopilka serve --workers N` stops promptly with a connection it was just
accepting: told to stop too, not served on until the drain time runs out.

A worker accepts from the shared socket itself and makes a connection's protocol a step
of the loop later. The worker runs in process here (the app over a real SQLite file, a
real socket and client), so its stop can be asked at exactly that step, which a server
process under load meets now and then.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from pathlib import Path

import uvicorn

from kopilka.api.app import create_app
from kopilka.api.protocol import BoundedHttpToolsProtocol, ConnectionBounds
from kopilka.workers import _TakingTurnsServer

DRAIN_SECONDS = 5
HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: kopilka\r\n\r\n"


async def _ask_until_closed(port: int) -> int:
    """Asks for health on one keep-alive connection until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = 0
    try:
        while True:
            writer.write(HEALTH)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            answers += 1
    except (asyncio.IncompleteReadError, ConnectionError):
        return answers
    finally:
        writer.close()


async def test_a_connection_accepted_as_the_worker_stops_is_told_to_stop(
    tmp_path: Path,
) -> None:
    config = uvicorn.Config(
        create_app(str(tmp_path / "kopilka.db")),
        http=functools.partial(BoundedHttpToolsProtocol, bounds=ConnectionBounds()),  # type: ignore[arg-type]
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=DRAIN_SECONDS,
    )
    config.load()
    server = _TakingTurnsServer(config)
    server.lifespan = config.lifespan_class(config)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    with listening:
        await server.startup(sockets=[listening])
        assert server.started
        client = asyncio.create_task(_ask_until_closed(listening.getsockname()[1]))
        deadline = time.monotonic() + 5
        while not server._starting:  # accepted, its protocol not made yet
            assert time.monotonic() < deadline, "the connection was never accepted"
            await asyncio.sleep(0)
        began = time.monotonic()
        await server.shutdown()
        took = time.monotonic() - began
        assert took < DRAIN_SECONDS / 2, f"the stop waited {took:.1f} s for the connection"
        await asyncio.wait_for(client, timeout=1)  # closed by the server
