"""`kopilka serve`: the HTTP API under uvicorn (uvloop + httptools), one engine per process.

No access log: a line per request would cost more than the request and would
sit next to bearer tokens. SIGINT/SIGTERM stop accepting, let requests in
flight (and so their batches) finish and be answered, close the engine, and
exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import resource
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from kopilka.api.admin_token import prepare_admin_token
from kopilka.api.app import KopilkaApp, create_app, create_worker_app
from kopilka.api.protocol import CONNECTIONS_MAX, BoundedHttpToolsProtocol, ConnectionBounds
from kopilka.arguments import ArgumentParser
from kopilka.collector import settle_for_serving
from kopilka.errors import KopilkaError
from kopilka.hangup import HANGUP, StopsOnHangup
from kopilka.home import ADMIN_TOKEN_FILE, check_home
from kopilka.redaction import hide_secrets, redact_url
from kopilka.settings import CONFIG_HELP, Settings, load_settings
from kopilka.store import keeps_nothing, upgraded
from kopilka.supervision import mark_supervisor
from kopilka.urls import on_this_machine
from kopilka.workers import Workers

KEEP_ALIVE_SECONDS = 5
# Descriptors a server process holds beside its connections: the database and its
# journal, lock files, the listening socket, the event loop's, a worker's pipes.
_DESCRIPTORS_BESIDE_CONNECTIONS = 64
GRACEFUL_SHUTDOWN_SECONDS = 15
# How often a start that waits (for the store to open) looks whether a stop was asked.
_STOP_LOOK_SECONDS = 0.1


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="kopilka serve",
        description="Serve the HTTP API. Example: kopilka serve --port 8888 --db memory:",
    )
    # Read as text and checked after parsing, so an option this parser does not know is
    # named as such, rather than its value being taken for the port.
    parser.add_argument("port_positional", nargs="?", metavar="PORT", help="port")
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    # Numbers are read as text, as a variable's or the file's value, and checked by the
    # settings: a refusal then says why, as for the same value given there, not
    # argparse's "invalid float value: '-1'".
    parser.add_argument("--port", help="port to listen on (default 8888)")
    parser.add_argument("--db", help="'memory:', a SQLite path or a postgresql:// URL")
    parser.add_argument("--workers", help="worker processes (default 1)")
    parser.add_argument(
        "--connections-per-client",
        help="open connections one client address may hold, per process (default 256)",
    )
    parser.add_argument(
        "--header-seconds",
        help="seconds a client may take to send a request's headers (default 10)",
    )
    parser.add_argument(
        "--body-seconds",
        help="seconds a client may take to send a request's body, once its headers are in"
        " (default 10)",
    )
    parser.add_argument(
        "--write-seconds",
        help="seconds a client may leave the server waiting to write, not reading its answer"
        " (default 30)",
    )
    return parser


class _Server(StopsOnHangup):
    """Starts the app itself first, so that a store that cannot be served is one line
    (`startup_error`), and says where it listens once it does."""

    def __init__(self, config: uvicorn.Config, settings: Settings) -> None:
        super().__init__(config)
        self.settings = settings
        self.startup_error: KopilkaError | None = None

    async def startup(self, sockets: Any = None) -> None:
        if _STOPS_ASKED:  # asked to stop while it was getting ready: it never starts
            self.should_exit = True
            return
        app = self.config.loaded_app
        if isinstance(app, KopilkaApp):
            try:
                # Opening the store may wait long (another process upgrading a PostgreSQL
                # schema), and SIGTERM only sets should_exit, which nothing reads until
                # the start is over: the start is given up when it is set.
                await _unless_stopped(app.start(), lambda: self.should_exit)
            except KopilkaError as error:
                self.startup_error = error
                self.should_exit = True
                return
            if self.should_exit:  # asked to stop while the store opened: it never serves
                await app.stop()
                return
        await super().startup(sockets)
        if self.started:
            settle_for_serving()
            app = self.config.loaded_app
            _announce(self.settings, isinstance(app, KopilkaApp) and app.admin_token_created)
            if isinstance(app, KopilkaApp):
                _say_if_upgraded(app.store.schema_versions, self.settings)


async def _unless_stopped(work: Awaitable[None], stop_asked: Callable[[], bool]) -> bool:
    """`work`, given up (cancelled) once `stop_asked()`; whether it was done."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done() and not stop_asked():
            await asyncio.wait({task}, timeout=_STOP_LOOK_SECONDS)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, KopilkaError):
                await task
    if task.cancelled():
        return False
    task.result()
    return True


def _say_if_upgraded(versions: tuple[int, int] | None, settings: Settings) -> None:
    """As `kopilka init` says it, after where it listens."""
    said = upgraded(versions, redact_url(settings.db))
    if said is not None:
        with contextlib.suppress(OSError):  # stdout gone: the server serves all the same
            print(said, flush=True)


def _announce(settings: Settings, admin_token_created: bool) -> None:
    token_path = settings.home / ADMIN_TOKEN_FILE
    announcement = (
        f"kopilka listening on http://{_host_and_port(settings)} (db: {redact_url(settings.db)})\n"
        f"admin token {'written to' if admin_token_created else 'in'} {token_path}"
    )
    if not on_this_machine(settings.host):
        # Tokens are bearer secrets: over plain HTTP anyone on the path may take them.
        with contextlib.suppress(OSError):
            print(
                f"warning: serving {settings.host} over plain HTTP: tokens and accounts"
                " cross the network unencrypted; put a TLS proxy in front of other"
                " machines (docs/operations.md)",
                file=sys.stderr,
                flush=True,
            )
    try:
        print(announcement, flush=True)
    except OSError as error:  # stdout full or gone: the server serves all the same
        with contextlib.suppress(OSError):
            print(
                f"kopilka listening on http://{_host_and_port(settings)}; standard output could"
                f" not be written ({error.strerror})",
                file=sys.stderr,
                flush=True,
            )


@functools.cache
def _connections_allowed() -> int:
    """The connections a server process takes: CONNECTIONS_MAX, if the open-file limit
    has room for them (raised toward it, up to the hard limit, as it may be without
    privilege). Past the limit each new connection was reset, answered nothing: a
    soft limit of 1,024 is common (systemd's), below the 2,048 connections taken."""
    needed = CONNECTIONS_MAX + _DESCRIPTORS_BESIDE_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return CONNECTIONS_MAX
    allowed = max(1, soft - _DESCRIPTORS_BESIDE_CONNECTIONS)
    with contextlib.suppress(OSError):
        print(
            f"warning: the open-file limit ({soft}) leaves room for {allowed} connections"
            f" of the {CONNECTIONS_MAX} a server takes; past them a client is answered"
            f" 503 server_full (raise it: ulimit -n {needed}, or LimitNOFILE= in systemd)",
            file=sys.stderr,
            flush=True,
        )
    return allowed


def _options(settings: Settings) -> dict[str, Any]:
    """Every bound passed explicitly, so the server's limits are read here, not guessed."""
    bounds = ConnectionBounds(
        settings.connections_per_client,
        settings.header_seconds,
        settings.body_seconds,
        settings.write_seconds,
        connections_max=_connections_allowed(),
    )
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # uvicorn calls this to make each connection's protocol; a worker process gets
        # its own copy, so connections are counted per process.
        "http": functools.partial(BoundedHttpToolsProtocol, bounds=bounds),
        "lifespan": "on",
        # No WebSocket endpoint: an upgrade request is an ordinary request (a JSON 404).
        "ws": "none",
        "access_log": False,
        "log_level": "warning",
        "server_header": False,
        "proxy_headers": False,  # X-Forwarded-* is not trusted: the client is the peer
        # The connections are bounded by the protocol (CONNECTIONS_MAX, a JSON 503).
        "backlog": CONNECTIONS_MAX,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }


# SIGINT or SIGTERM received while uvicorn was not listening for them: before it started
# (the server then stops as soon as it can), or raised again once it had shut down for it.
_STOPS_ASKED: list[int] = []


def _remember_stop(signum: int, frame: object) -> None:
    _STOPS_ASKED.append(signum)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = _parser()
    arguments = parser.parse_args(argv)
    bare, flag = arguments.port_positional, arguments.port
    # Two numbers that differ; a malformed one is refused as such, by itself.
    both = bare is not None and flag is not None and _digits(bare) and _digits(flag)
    if both and int(bare) != int(flag):
        parser.error(f"two ports given, {bare} and --port {flag}: give one")
    return arguments


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def serve_main(argv: list[str]) -> int:
    arguments = _parse(argv)
    bare, flag = arguments.port_positional, arguments.port
    # Both given, they are one number (_parse), or one is malformed: that one is checked,
    # each as the settings check a port and named as it was given.
    from_bare = bare is not None and (flag is None or not _digits(bare))
    try:
        settings = load_settings(
            {
                "host": arguments.host,
                "port": bare if from_bare else flag,
                "db": arguments.db,
                "workers": arguments.workers,
                "connections_per_client": arguments.connections_per_client,
                "header_seconds": arguments.header_seconds,
                "body_seconds": arguments.body_seconds,
                "write_seconds": arguments.write_seconds,
            },
            config_path=arguments.config,
            serving=True,
            spelled={"port": "PORT"} if from_bare else None,
        )
        check_home(settings.home)  # one that is there, before the port is taken
    except KopilkaError as error:
        print(f"Error: {hide_secrets(error.message)}", file=sys.stderr)
        return 1
    if settings.workers > 1 and keeps_nothing(settings.db):  # before anything is made
        print(
            "Error: more than one worker (--workers, KOPILKA_WORKERS or workers in the"
            " settings file) needs a shared database, not memory:",
            file=sys.stderr,
        )
        return 1
    token_path = settings.home / ADMIN_TOKEN_FILE
    for stop in (signal.SIGTERM, signal.SIGINT, HANGUP):
        if stop is not None:
            signal.signal(stop, _remember_stop)
    # Bound first: a port in use is then an error with nothing done (no admin token
    # written over the one of the server that holds the port).
    try:
        listening = _listen(settings)
    except OSError as error:
        print(
            hide_secrets(f"Error: cannot listen on {_host_and_port(settings)}: {error.strerror}"),
            file=sys.stderr,
        )
        return 1
    with listening:
        try:
            # Made once the port is ours: a port in use leaves no home made behind. It is
            # checked before anything is made in it (the admin token's file), and the
            # token known to be kept there before the database is opened: a start that
            # fails there leaves no database made.
            if not prepare_admin_token(
                token_path,
                stop_asked=lambda: bool(_STOPS_ASKED),
                db=settings.db,
            ):
                return 0  # asked to stop while another server was starting in the home
        except KopilkaError as error:
            print(f"Error: {hide_secrets(error.message)}", file=sys.stderr)
            return 1
        if settings.workers > 1:
            return _serve_workers(settings, listening)
        app = create_app(settings, admin_token_path=token_path)
        server = _Server(uvicorn.Config(app, **_options(settings)), settings)
        server.run(sockets=[listening])
    if server.startup_error is not None:
        print(f"Error: {hide_secrets(server.startup_error.message)}", file=sys.stderr)
        return 1
    return 0 if server.started or _STOPS_ASKED else 1


def _host_and_port(settings: Settings) -> str:
    """As a URL writes them: an IPv6 address in brackets (::1:8888 is no address)."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{host}:{settings.port}"


def _listen(settings: Settings) -> socket.socket:
    """The listening socket, bound as uvicorn would bind it, and inherited by workers."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listening = socket.socket(family)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((settings.host, settings.port))
    except OSError:
        listening.close()
        raise
    listening.set_inheritable(True)
    return listening


def _serve_workers(settings: Settings, listening: socket.socket) -> int:
    """Several processes on one socket, each with its own engine (SQLite or PostgreSQL)."""
    import asyncio

    from kopilka.api import metrics_share
    from kopilka.api.admin_token import ensure_admin_token
    from kopilka.store import open_store

    upgraded: list[tuple[int, int] | None] = []  # the schema's versions, as found and made

    async def prepare() -> bool:
        store = open_store(settings.db)
        # A stop asked while it waits (for another process's schema upgrade) ends it.
        if not await _unless_stopped(store.open(), lambda: bool(_STOPS_ASKED)):
            return False
        upgraded.append(store.schema_versions)
        try:
            return await ensure_admin_token(store, settings.home / ADMIN_TOKEN_FILE)
        finally:
            await store.close()

    try:
        admin_token_created = asyncio.run(prepare())
    except KopilkaError as error:
        print(f"Error: {hide_secrets(error.message)}", file=sys.stderr)
        return 1
    if _STOPS_ASKED:  # asked to stop while it was getting ready
        return 0
    config = uvicorn.Config(
        # The settings merged here, password and all, go to each worker inside this config
        # (multiprocessing pickles it down a pipe): a worker, and one started again after a
        # crash, reads no config file, password file or setting variable of its own.
        functools.partial(create_worker_app, settings, waits_for_database=True),
        factory=True,
        workers=settings.workers,
        **_options(settings),
    )
    # Listening before it is said: a connection made once the line is out waits in the
    # socket's queue until a worker takes it. Bound alone, it was refused until the
    # first worker had started, most of a second later.
    listening.listen(config.backlog)
    _announce(settings, admin_token_created)
    _say_if_upgraded(upgraded[0] if upgraded else None, settings)
    mark_supervisor()
    # Each worker writes its counts there, and a scrape of any sums them all
    # (metrics_share); they last as long as the server.
    metrics_directory = metrics_share.make_directory()
    os.environ[metrics_share.DIRECTORY_VARIABLE] = str(metrics_directory)
    try:
        supervisor = Workers(config, sockets=[listening])  # listens for signals from here
        supervisor.signal_queue.extend(_STOPS_ASKED)  # and is told of those that came before
        supervisor.run()  # returns once every worker has stopped
    finally:
        metrics_share.remove_directory(metrics_directory)
    return 1 if supervisor.failed_to_start else 0


def main() -> None:
    raise SystemExit(serve_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
