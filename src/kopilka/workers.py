"""`kopilka serve --workers N`: uvicorn's supervisor, its workers taking connections in turn.

Every worker waits on the one listening socket. uvloop accepts every connection
waiting when its worker wakes, so the first worker to wake after a client opens
four connections at once takes all four, and the others stay idle for as long as
those connections are kept alive (measured: all eight connections of a batch import
in one of two workers). Here each worker accepts connections itself, after a pause
that grows with the connections it holds already: of the workers woken together the
least loaded accepts first, and a busy one later still. While few wait it takes one;
past four a worker, its share of those waiting (their number over the workers'). One a
pause had capped a worker holding a few idle connections at about a hundred new ones a
second: clients reconnecting, or one address opening connections in a loop, waited
seconds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import struct
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from kopilka.hangup import StopsOnHangup

logger = logging.getLogger("uvicorn.error")

# A worker holding N connections waits N times this before it accepts another, up to
# the bound: a head start in the race for it to every worker that holds fewer. Longer
# than it takes the kernel to wake a sleeping worker (measured: about a millisecond).
ACCEPT_PAUSE_PER_CONNECTION_SECONDS = 0.002
ACCEPT_PAUSE_SECONDS_MAX = 0.010
# The most connections a worker accepts on one wake: the event loop's other work waits.
ACCEPT_BURST_MAX = 64
# Up to this many waiting for each worker, one a wake, in turn: a client's connections
# opened at once are shared out evenly. Past it, each worker takes its share at once.
ACCEPT_IN_TURN_PER_WORKER = 4
# Linux's struct tcp_info: for a listening socket, tcpi_unacked (a 32-bit field after
# eight bytes and four 32-bit ones) counts the connections waiting to be accepted.
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_TCP_INFO_WAITING = struct.Struct("=I")
_TCP_INFO_WAITING_OFFSET = 24
# How long a worker that stops waits for the connections it has just accepted to be made
# (a step of the loop, each) before it tells every connection to stop.
STARTING_CONNECTIONS_SECONDS_MAX = 1.0


class Workers(Multiprocess):
    """uvicorn's supervisor (health checks, a dead worker restarted, signals), its
    workers started as `_Worker`, and started again so when one dies.

    A worker that cannot start stops the server, and `failed_to_start` says so (uvicorn
    would exit with status 0). One started while the database is away serves, answering
    503 until it is back (KopilkaApp.waits_for_database)."""

    failed_to_start = False

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            process = _Worker(self.config, self.sockets)
            process.start()
            self.processes.append(process)

    def keep_subprocess_alive(self) -> None:
        # As uvicorn's, but for a failed start-up and the log line of a worker lost.
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            hung = process.exitcode is None
            process.kill()  # hung, or gone already
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                logger.error(f"worker [{process.pid}] failed to start: stopping the server")
                self.failed_to_start = True
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            replacement = _Worker(self.config, self.sockets)
            replacement.start()
            self.processes[index] = replacement
            # uvicorn says it at the info level, which the server does not log: a worker
            # killed again and again (out of memory) must show.
            logger.warning(
                "worker [%s] %s; worker [%s] started in its place",
                process.pid,
                "did not answer its health check, and was killed"
                if hung
                else _how_it_ended(process.exitcode),
                replacement.pid,
            )

    def terminate_all(self) -> None:
        # A stop refuses new connections at once, as one process's does: the listening
        # socket is open while any process holds it, and a connection taken into its
        # queue while the workers drained hung until the last of them was done.
        for listening in self.sockets:
            listening.close()
        super().terminate_all()

    def handle_hup(self) -> None:
        # As one process stops for it: the terminal the server ran in has closed.
        # (uvicorn would start its own workers in place of these.)
        self.handle_term()

    def handle_ttin(self) -> None:
        # As uvicorn's, with a worker of this module's.
        self.processes_num += 1
        process = _Worker(self.config, self.sockets)
        process.start()
        self.processes.append(process)


def waiting_connections(listening: socket.socket) -> int:
    """Connections waiting in the socket's accept queue; 0 where that is not known."""
    if _TCP_INFO is None:
        return 0
    try:
        info = listening.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except OSError:
        return 0
    if len(info) < _TCP_INFO_WAITING_OFFSET + _TCP_INFO_WAITING.size:
        return 0
    waiting: int = _TCP_INFO_WAITING.unpack_from(info, _TCP_INFO_WAITING_OFFSET)[0]
    return waiting


def share_of_waiting(listening: socket.socket, workers: int) -> int:
    """How many connections a worker accepts on this wake: one while few wait (taken in
    turn, they are shared out evenly), else its share of them, a burst at most."""
    workers = max(workers, 1)
    waiting = waiting_connections(listening)
    if waiting <= ACCEPT_IN_TURN_PER_WORKER * workers:
        return 1
    return min(waiting // workers, ACCEPT_BURST_MAX)


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:  # one the enum does not name, as the real-time signals
            name = f"signal {-exitcode}"
        return f"was ended by {name}"
    return f"exited with status {exitcode}"


class _Worker(Process):
    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = _TakingTurnsServer(config=self.config)
        return self._server


class _TakingTurnsServer(StopsOnHangup):
    """uvicorn's server, accepting from the shared socket itself (see the module)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._listening: socket.socket | None = None
        # Accepted, their protocol not made yet (it is, a step of the loop later).
        self._starting: set[asyncio.Task[Any]] = set()

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
        connections, starting = self.server_state.connections, self._starting

        def readable() -> None:
            loop.remove_reader(listening)
            held = len(connections) + len(starting)
            pause = min(held * ACCEPT_PAUSE_PER_CONNECTION_SECONDS, ACCEPT_PAUSE_SECONDS_MAX)
            loop.call_later(pause, accept)

        def accept() -> None:
            if self._listening is None:
                return  # shutting down
            for _ in range(share_of_waiting(listening, config.workers)):
                try:
                    connection, _ = listening.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    break  # another worker took it, or the client gave up
                except OSError:
                    # Out of descriptors, say: wait a moment rather than spin on it.
                    loop.call_later(0.1, listen)
                    return
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
            listening.close()  # this process's hold on it (see Workers.terminate_all)
        if self._starting:
            # Made first: uvicorn tells the connections it has to stop, and one made after
            # that was served on, keep-alive, holding the stop up for its whole drain time.
            await asyncio.wait(self._starting, timeout=STARTING_CONNECTIONS_SECONDS_MAX)
        await super().shutdown(sockets)
