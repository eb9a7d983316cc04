"""`kopilka serve --workers N`: uvicorn's supervisor, its workers taking connections in turn.

Every worker waits on the one listening socket. uvloop accepts every connection
waiting when its worker wakes, so the first worker to wake after a client opens
four connections at once takes all four, and the others stay idle for as long as
those connections are kept alive (measured: all eight connections of a batch import
in one of two workers). Here each worker accepts one connection at a time itself,
after a pause that grows with the connections it holds already: of the workers
woken together the least loaded accepts first, and a busy one later still.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess, Process

# A worker holding N connections waits N times this before it accepts another, up to
# the bound: a head start in the race for it to every worker that holds fewer. Longer
# than it takes the kernel to wake a sleeping worker (measured: about a millisecond).
ACCEPT_PAUSE_PER_CONNECTION_SECONDS = 0.002
ACCEPT_PAUSE_SECONDS_MAX = 0.010


class Workers(Multiprocess):
    """uvicorn's supervisor (health checks, a dead worker restarted, signals), its
    workers started as `_Worker`. A worker it restarts after one died is uvicorn's own:
    it serves the same socket as well, accepting as uvloop does."""

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            process = _Worker(self.config, self.sockets)
            process.start()
            self.processes.append(process)


class _Worker(Process):
    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = _TakingTurnsServer(config=self.config)
        return self._server


class _TakingTurnsServer(uvicorn.Server):
    """uvicorn's server, accepting from the shared socket itself (see the module)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._listening: socket.socket | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        assert sockets is not None and len(sockets) == 1, "a worker serves the one socket"
        await super().startup(sockets=[])  # the application, with no socket of uvicorn's
        if not self.started:
            return
        config, loop = self.config, asyncio.get_running_loop()

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            # As uvicorn makes its protocols for the connections it accepts itself.
            protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )
            return protocol

        listening = self._listening = sockets[0]
        listening.listen(config.backlog)  # as uvicorn's server would (again, in each worker)
        listening.setblocking(False)
        connections = self.server_state.connections
        # Accepted, their protocol not made yet (it is, a step of the loop later).
        starting: set[asyncio.Task[Any]] = set()

        def readable() -> None:
            loop.remove_reader(listening)
            held = len(connections) + len(starting)
            pause = min(held * ACCEPT_PAUSE_PER_CONNECTION_SECONDS, ACCEPT_PAUSE_SECONDS_MAX)
            loop.call_later(pause, accept)

        def accept() -> None:
            if self._listening is None:
                return  # shutting down
            try:
                connection, _ = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                pass  # another worker took it, or the client gave up
            except OSError:
                # Out of descriptors, say: wait a moment rather than spin on it.
                loop.call_later(0.1, listen)
                return
            else:
                connection.setblocking(False)
                start = loop.create_task(loop.connect_accepted_socket(create_protocol, connection))
                starting.add(start)
                start.add_done_callback(started)
            listen()

        def started(start: asyncio.Task[Any]) -> None:
            starting.discard(start)
            if not start.cancelled():
                start.exception()  # a connection gone before it started: nothing to serve

        def listen() -> None:
            if self._listening is not None:
                loop.add_reader(listening, readable)

        listen()

    async def shutdown(self, sockets: Any = None) -> None:
        listening, self._listening = self._listening, None
        if listening is not None:
            asyncio.get_running_loop().remove_reader(listening)
        await super().shutdown(sockets)
