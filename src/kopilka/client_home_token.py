"""Whether the home's admin token may go to a server: only to one on this machine, and
only while the port's listener is this user's.

The token opens every ledger. Loopback alone is not enough: while this user's server is
down, anyone on the machine may take its port. So the listener's owner is read from
Linux's tables of TCP sockets as the token is read, and for each new connection, once it
is made, the owner of the socket at its other end: looked at before connecting, a
listener opened in between (another user's, opening and closing it in a loop) was
handed the token.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpcore
import httpx

from kopilka.errors import Unauthorized
from kopilka.home import ADMIN_TOKEN_FILE, check_home, home
from kopilka.redaction import redact_url
from kopilka.urls import on_this_machine

# "Bearer <the home's admin token>", as read by this process: sent only to this user's.
HOME_TOKEN_HEADERS: set[str] = set()


class HomeTokenGuard(httpx.HTTPTransport):
    """A request carrying the home's admin token goes to a listener of this user's only,
    looked at again for each connection: the server restarted mid-session, another user
    may have taken its port meanwhile. A connection kept open stays with the process that
    accepted it, so its requests need no look of their own (reading the tables of every
    TCP socket took milliseconds a request)."""

    def __init__(self, home_token_url: str | None, **options: Any) -> None:
        """`home_token_url`: the server's, when every request carries the home's token."""
        super().__init__(**options)
        pool = self._pool  # httpcore's: the one place a connection is opened
        # Where that is not as this httpcore has it, every request is looked at instead.
        backend = getattr(pool, "_network_backend", None)
        self._checks_each_connection = home_token_url is not None and isinstance(
            backend, httpcore.NetworkBackend
        )
        if self._checks_each_connection:
            assert home_token_url is not None and backend is not None
            pool._network_backend = _ListenerOwnerCheck(backend, home_token_url)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        home_token = request.headers.get("authorization") in HOME_TOKEN_HEADERS
        if home_token and not self._checks_each_connection:
            _refuse_another_users_listener(str(request.url))
        return super().handle_request(request)


class _ListenerOwnerCheck(httpcore.NetworkBackend):
    """Connects as `inner` does, once the port's listener is seen to be this user's."""

    def __init__(self, inner: httpcore.NetworkBackend, url: str) -> None:
        self._inner = inner
        self._url = url  # the server's, whose port every connection goes to

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        _refuse_another_users_listener(self._url)  # said before connecting, if it can be
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            _refuse_another_users_end(stream.get_extra_info("socket"), self._url)
        except BaseException:
            stream.close()  # nothing sent on it
            raise
        return stream

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return self._inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _refuse_another_users_listener(url: str) -> None:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    owner = _another_users_listener(port)
    if owner is not None:
        # Loopback is not "this user's server": while it is down, anyone on the machine
        # may take its port, and would be handed the admin token of every ledger.
        server = redact_url(f"{parts.scheme}://{parts.netloc}")
        raise Unauthorized(
            "no_token",
            f"no token for {server}: the server listening on port {port} runs as another"
            f" user (uid {owner}), and the admin token in {home()} goes only to this"
            " user's; give --token or KOPILKA_TOKEN",
        )


def home_admin_token(url: str) -> str | None:
    """The home's admin token, for a server on this machine only: a URL from elsewhere (a
    kopilka.toml in a directory someone else made, say) must not be handed it. None: the
    home holds none (the caller says why, once it has looked whether a server is there)."""
    path = home() / ADMIN_TOKEN_FILE
    if not on_this_machine(urlsplit(url).hostname or ""):
        raise Unauthorized(
            "no_token",
            f"no token for {redact_url(url)}: the admin token in {path.parent} goes only to"
            " a server on this machine; give --token or KOPILKA_TOKEN",
        )
    check_home(path.parent)  # one that others may write could hold a token of theirs
    _refuse_another_users_listener(url)  # said at once, and again for each request
    try:
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):  # a token is ASCII: bytes that are not are none
        token = ""
    if not token:
        return None
    HOME_TOKEN_HEADERS.add(f"Bearer {token}")
    return token


def replaced_since(path: Path, authorization: str) -> bool:
    """Whether the home's admin token file at `path` holds another token now than the one
    `authorization` sends: a server that started again wrote a new one there."""
    try:
        now = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(now) and not hmac.compare_digest(f"Bearer {now}".encode(), authorization.encode())


def _refuse_another_users_end(connection: socket.socket | None, url: str) -> None:
    """Refuse a connection whose other end is not this user's: accepted (or waiting to
    be) by another user's listener. One whose other end is closing, or gone, is closed:
    nothing can be sent on it (a server that answered and hung up at once; the tables
    show a closing socket's owner as root). Where the tables of sockets cannot be read
    (not Linux), the look before connecting stands alone."""
    if connection is None:
        return
    try:
        here, there = endpoint(connection.getsockname()), endpoint(connection.getpeername())
    except OSError as error:  # not connected any more
        raise httpcore.ConnectError(f"the server closed the connection: {error}") from error
    tables = _tcp_tables()
    if not tables:
        return
    found = other_end_in(tables, here, there)
    if found is None:  # looked for again: a table read as sockets come and go may miss it
        found = other_end_in(_tcp_tables(), here, there)
    if found is None or found.state in _CLOSING:
        raise httpcore.ConnectError("the server closed the connection as it was made")
    owner = found.owner
    if owner == os.geteuid():
        return
    parts = urlsplit(url)
    server = redact_url(f"{parts.scheme}://{parts.netloc}")
    raise Unauthorized(
        "no_token",
        f"no token for {server}: the connection to it was taken by another user (uid"
        f" {owner}), and the admin token in {home()} goes only to this user's server;"
        " nothing was sent: give --token or KOPILKA_TOKEN",
    )


# Linux's TCP states of a socket that is closing: FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSE,
# LAST_ACK, CLOSING.
_CLOSING = frozenset({"04", "05", "06", "07", "09", "0B"})


class Socket(NamedTuple):
    state: str  # as the tables write it: "01" established, "0A" listening
    owner: int  # uid


def _tcp_tables() -> list[str]:
    """Linux's tables of TCP sockets, as text; none where they cannot be read (not
    Linux)."""
    tables = []
    for table in _TCP_TABLES:
        with contextlib.suppress(OSError):
            tables.append(Path(table).read_text())
    return tables


def other_end_in(
    tables: list[str], here: tuple[bytes, int], there: tuple[bytes, int]
) -> Socket | None:
    """In Linux's tables of TCP sockets (/proc/net/tcp, tcp6), the socket whose own
    address is `there` and whose peer's is `here`: the other end of a connection."""
    for table in tables:
        for row in table.splitlines()[1:]:
            fields = row.split()
            if len(fields) > 7 and (_row_endpoint(fields[1]), _row_endpoint(fields[2])) == (
                there,
                here,
            ):
                return Socket(fields[3], int(fields[7]))
    return None


def endpoint(address: tuple[Any, ...]) -> tuple[bytes, int]:
    """A socket's address as packed bytes (IPv4 for an IPv4-mapped IPv6 one) and port."""
    host, port = address[0], address[1]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return _unmapped(socket.inet_pton(family, host.partition("%")[0])), port


def _row_endpoint(text: str) -> tuple[bytes, int]:
    """An address of the tables: hex of each 32-bit word as this machine stores it."""
    host, _, port = text.partition(":")
    raw = bytes.fromhex(host)
    words = [raw[i : i + 4] for i in range(0, len(raw), 4)]
    if sys.byteorder == "little":
        words = [word[::-1] for word in words]
    return _unmapped(b"".join(words)), int(port, 16)


def _unmapped(packed: bytes) -> bytes:
    mapped = b"\0" * 10 + b"\xff\xff"
    return packed[12:] if len(packed) == 16 and packed.startswith(mapped) else packed


# Linux's tables of TCP sockets: a listening one is in state 0A, its owner's uid beside.
_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTENING = "0A"


def _another_users_listener(port: int) -> int | None:
    """The uid of another user listening on `port` on this machine; None if none is, or
    where that cannot be told (not Linux)."""
    owners: set[int] = set()
    for table in _TCP_TABLES:
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            listening = len(fields) > 7 and fields[3] == _LISTENING
            if listening and int(fields[1].rpartition(":")[2], 16) == port:
                owners.add(int(fields[7]))
    others = owners - {os.geteuid()}
    return min(others) if others else None
