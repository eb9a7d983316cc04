"""uvicorn's httptools protocol with the bounds uvicorn itself lacks.

- Connections of the process: past 2,048 a new connection is answered 503
  `server_full` and closed.
- Connections per client address: past the bound a new connection is answered
  503 `too_many_connections` and closed, so one client cannot take every connection
  the process takes from the others.
- Time to send a request's headers, from the connection's start or the request's
  first byte: past it the connection is answered 408 `request_timeout` and
  closed, so a client that trickles headers (or says nothing) cannot hold a slot.
- Bytes of a request's head (request line and headers), counted as they arrive:
  past the bound the connection is answered 431 `headers_too_large` and closed,
  so endless headers are not buffered until they end. A head read whole (parsed before
  its bytes are seen) is measured once complete: past the bound, refused and closed alike.
- Time from the end of a request's headers to the end of its body: past it the
  connection is answered 408 `request_timeout` (unless the application has
  answered already) and closed, so a body that never starts cannot hold a slot;
  the application (`read_body`) bounds a body that trickles in as well.
- Bytes of a chunked body that are not its content (chunk sizes and extensions, and
  trailer fields): past every header's bound and a few bytes for each byte of content,
  the request is answered 431 `headers_too_large` and closed, so endless trailers are
  not held until they end. Counted in every read of the body, however its bytes are
  split: the one that ends its head too (less the head's measured size) and the one that
  ends the body. Only a read that also holds another request (pipelined: the end of one
  before it, or the start of one after it) is not counted for the body, as a head's
  first bytes are not: which of its bytes are whose is not known. The parser holds at
  most that one read more.
- Chunks of a chunked body: past 32,768 the request is answered 413 `too_many_chunks`
  and closed. Each chunk costs a call into Python, however small: a body sent a byte a
  chunk held the event loop (every other client) for seconds.
- A body refused (its framing, its chunks) while requests sent before it are still
  being answered: refused after their answers, as a head is, and never run.
- Requests sent ahead of their answers (pipelined): reading stops while 16 of a
  connection are parsed and unanswered, and resumes once they are fewer; uvicorn read
  on after each answer, parsing and queueing all a client sent. As the parser takes a
  read whole, one read can still bring many: past 128 unanswered the request is
  answered 429 `too_many_pipelined`, after the answers of those before it, and the
  connection closed.
- Time the server is kept waiting to write: once the transport has paused writing
  (its buffer over the high-water mark, the client not reading) for longer than the
  bound, the connection is aborted, dropping what is buffered, so a client that asks
  for a long answer (a big statement) and never reads it cannot keep its slot, the
  buffered answer and the response's task. A client that reads slowly but steadily
  resumes the writing within the bound and gets its answer whole.

A request the parser refuses (a garbled request line, a Content-Length too large to
read, both Transfer-Encoding and Content-Length) is answered 400 `invalid_http` in
the API's JSON error form, not uvicorn's plain text, and the connection is closed.
The idle time between requests is uvicorn's keep-alive timeout; a byte sent after it
(a blank line, which the parser skips) starts the next head's time.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import struct
import termios
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kopilka.api.coalesce import CoalescingTransport
from kopilka.api.errors import ApiError, error_body
from kopilka.api.http10 import answer_as_http10, broken_off
from kopilka.api.metrics import BOUNDS_REFUSALS
from kopilka.api.request import BODY_SECONDS_MAX, HEADERS_BYTES_MAX

CONNECTIONS_MAX = 2_048  # of a server process, all clients together
CONNECTIONS_PER_CLIENT_MAX = 256
HEADER_SECONDS_MAX = 10.0
WRITE_SECONDS_MAX = 30.0
# What a client must take in of an answer within the write time for it to start anew.
# Counted in the kernel's socket buffer too: Linux grows that to megabytes, and says the
# socket writable (the transport resuming) only once about half has gone, so a client
# reading a long statement at 40 KB/s kept the transport paused for over 30 s, and was
# cut off. 64 KiB in 30 s is some 2 KB/s: a client that takes less is let go of.
WRITE_PROGRESS_BYTES_MIN = 64 * 1024
# Only while the answer kept in this process is no bigger than this: a statement's, kept
# a piece at a time (500 lines, or 256 KiB if less: statement_stream.py). One written
# whole (a batch's, up to megabytes; replayed under its key at no cost) still has to
# drain in the write time, or a client taking in 64 KiB a write time held it an hour.
WRITE_PROGRESS_BUFFER_MAX = 1024 * 1024
# The application's bound counts header names and values only; the slack is room for
# the request line and each header's colon and line end.
HEAD_BYTES_MAX = HEADERS_BYTES_MAX + 4 * 1024
# The count while a body arrives: adding a body's bytes never brings it to the bound.
_IN_BODY = -(1 << 62)
# What a valid head says of its body's framing (an invalid head: 0).
_NOT_CHUNKED = 1
_CHUNKED = 2
# The longest request target: a client name (200 characters, percent-encoded) and a
# statement's query fit many times over. Checked as the parser hands the target over,
# however it arrived: a head read in one piece is parsed before its size is seen.
TARGET_BYTES_MAX = 8 * 1024
# How long a refused connection's input is read and dropped after the refusal is sent.
# A socket closed with input unread is reset, and the reset throws away whatever the
# client had not yet read: the refusal, and the answers sent before it.
LINGER_SECONDS = 2.0
# Requests of a connection parsed and not yet answered: reading pauses at the first
# bound; past the second (one read parsed whole brings many) the connection is refused.
PIPELINED_READ_MAX = 16
PIPELINED_MAX = 128
# Chunks of one chunked body: a batch of 10,000 operations sent an operation a chunk, its
# commas apart, is 20,001. Each chunk costs Python calls (16,384 of them, some 7 ms), so
# a body sent a byte a chunk is refused within its first read or two.
CHUNKS_MAX = 32_768
# Linux's ioctl for a socket's bytes sent and not yet acknowledged (SIOCOUTQ).
_UNSENT_REQUEST: int | None = getattr(termios, "TIOCOUTQ", None)
# The ioctl for a socket's bytes received and not yet read (FIONREAD).
_UNREAD_REQUEST: int | None = getattr(termios, "FIONREAD", None)


@dataclass
class ConnectionBounds:
    """The bounds, and this process's connections: open ones by client address, and
    every live one, swept for headers or a body that take too long, or writing paused
    for too long.

    One sweep a second (or a quarter of the header, body or write time, if shorter)
    instead of a timer per request: arming and cancelling a timer for each request cost
    about 3% of the event loop under load.
    """

    connections_per_client_max: int = CONNECTIONS_PER_CLIENT_MAX
    header_seconds_max: float = HEADER_SECONDS_MAX
    body_seconds_max: float = BODY_SECONDS_MAX
    write_seconds_max: float = WRITE_SECONDS_MAX
    connections_max: int = CONNECTIONS_MAX
    open_by_client: Counter[str] = field(default_factory=Counter)
    live: set[BoundedHttpToolsProtocol] = field(default_factory=set)
    _sweeper: asyncio.TimerHandle | None = None
    _sweep_due: float = 0.0
    _interval: float = 1.0

    def watch(self, protocol: BoundedHttpToolsProtocol) -> None:
        self.live.add(protocol)
        if self._sweeper is None:
            self._schedule_sweep(protocol.loop)

    def _schedule_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = min(
            1.0, self.header_seconds_max / 4, self.body_seconds_max / 4, self.write_seconds_max / 4
        )
        self._interval = interval
        self._sweep_due = loop.time() + interval
        self._sweeper = loop.call_later(interval, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        # A sweep later than a whole interval found the process itself stopped meanwhile
        # (SIGSTOP) or its loop held that long: what clients sent then is unread yet, and
        # they were answered 408 for the server's pause. That time is not theirs; a
        # sweep merely behind a busy loop's work gives none.
        late = now - self._sweep_due
        if late <= self._interval:
            late = 0.0
        headers_deadline = now - late - self.header_seconds_max
        body_deadline = now - late - self.body_seconds_max
        write_deadline = now - late - self.write_seconds_max
        for protocol in list(self.live):
            # A request sent behind one still being answered waits for it (uvicorn reads
            # no more of it meanwhile): its head's and body's time start once it is due.
            if protocol.unanswered <= 1:
                started = protocol.headers_started
                if started is not None and started < headers_deadline:
                    protocol.headers_too_slow()
                started = protocol.body_started
                if started is not None and started < body_deadline:
                    protocol.body_too_slow()
            started = protocol.write_paused_at
            if started is not None:
                if protocol.took_in_enough():
                    protocol.write_paused_at = now
                elif started < write_deadline:
                    protocol.write_too_slow()
        if self.live:
            self._schedule_sweep(loop)
        else:
            self._sweeper = None


def _refusal(status: int, code: str, message: str) -> bytes:
    """A whole response that refuses and closes, written before any app has a say."""
    body = error_body(ApiError(status, code, message))
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    refusal = head.encode() + body
    _CODE_OF[refusal] = code
    return refusal


# Each refusal's code, to count the refusal by (the bytes are made once, at import).
_CODE_OF: dict[bytes, str] = {}


def _count(refusal: bytes) -> bytes:
    BOUNDS_REFUSALS[_CODE_OF.get(refusal, "refused")] += 1
    return refusal


# Refused before a request on it is read: said so, as a caller wonders whether its write
# went in, and what to change (a client opening more than the server takes from one).
_TOO_MANY_CONNECTIONS = _refusal(
    503,
    "too_many_connections",
    "too many connections from this address: this one was closed before its request was"
    " read (nothing applied); open fewer at once",
)
_SERVER_FULL = _refusal(
    503, "server_full", "the server holds as many connections as it takes; try again shortly"
)
_HEADERS_TOO_SLOW = _refusal(408, "request_timeout", "the request headers arrived too slowly")
_BODY_TOO_SLOW = _refusal(408, "request_timeout", "the request body arrived too slowly")
_INVALID_HTTP = _refusal(400, "invalid_http", "the request is not valid HTTP/1.1")
_UPGRADE_REFUSED = _refusal(
    400, "invalid_http", "the request asks to upgrade the connection: kopilka speaks HTTP/1.1 only"
)


# uvicorn logs a line for each request it cannot parse, and two for one asking to
# upgrade to a websocket: a line each would let anyone fill the server's log at will.
# And one for a statement cut short by its store (handlers.dispatch), which logs why.
_NOT_LOGGED = (
    "Invalid HTTP request received.",
    "ASGI callable returned without completing response.",
    # An `Upgrade: websocket` request, answered as a plain one: kopilka serves none.
    "Unsupported upgrade request.",
    "No supported WebSocket library detected. Please use \"pip install 'uvicorn[standard]'\","
    " or install 'websockets' or 'wsproto' manually.",
)


def _not_logged_here(record: logging.LogRecord) -> bool:
    return record.getMessage() not in _NOT_LOGGED


# Here, as every worker process imports this module to serve its connections.
logging.getLogger("uvicorn.error").addFilter(_not_logged_here)
_HEADERS_TOO_LARGE = _refusal(431, "headers_too_large", f"headers over {HEADERS_BYTES_MAX} bytes")
_TARGET_TOO_LONG = _refusal(
    414, "uri_too_long", f"the request target is over {TARGET_BYTES_MAX} bytes"
)
_TOO_MANY_CHUNKS = _refusal(
    413, "too_many_chunks", f"the chunked body is in more than {CHUNKS_MAX} chunks"
)
_TOO_MANY_PIPELINED = _refusal(
    429,
    "too_many_pipelined",
    f"more than {PIPELINED_MAX} requests sent ahead of their answers; send the rest again",
)


def _framing_too_large(head_bytes: int, body_bytes: int) -> bool:
    """Whether a chunked body's bytes that are not its content (chunk sizes and their
    extensions, and the trailer fields after the last chunk, which the parser holds
    until each ends) are past what any sender needs: every header's bound, and a few
    bytes of size line for each byte of content (a body sent a byte a chunk)."""
    received = head_bytes - _IN_BODY
    return received - body_bytes > HEAD_BYTES_MAX + 8 * body_bytes


class _InvalidHead(Exception):
    """Raised in a parser callback to stop it: the request is answered `refusal`."""


class _PipelineFlow(FlowControl):
    """uvicorn's flow control, which does not resume reading while the connection holds
    `PIPELINED_READ_MAX` requests unanswered, or has a refusal due after their answers:
    uvicorn resumed it after each answer (and each read of a body), so a client that sent
    requests faster than it took answers had all of them parsed and queued; and input
    read while a refusal waited was taken for a body's endless framing, which closed
    the connection before the answers due."""

    def __init__(self, transport: asyncio.Transport, protocol: BoundedHttpToolsProtocol) -> None:
        super().__init__(transport)
        self.protocol = protocol

    def resume_reading(self) -> None:
        if not self.read_paused:  # the usual path: nothing more to compare
            return
        protocol = self.protocol
        if protocol.lingering or (
            protocol.unanswered < PIPELINED_READ_MAX and protocol.refusal_due is None
        ):
            self.read_paused = False
            self._transport.resume_reading()


class _TargetTooLong(Exception):
    """Raised from the parser's callback: the parser stops, and the request is refused."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, bounds: ConnectionBounds, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bounds = bounds
        self._counted_address: str | None = None
        # When the connection, or its request now arriving, began; None once the headers
        # are in (the idle time after a response is uvicorn's keep-alive timeout).
        self.headers_started: float | None = None
        # When the current request's headers were in, until its body is; else None.
        self.body_started: float | None = None
        # Bytes received since the current request's head began; _IN_BODY once it is in.
        self.head_bytes = 0
        # Bytes of the current request's body handed on, beside those received for it.
        self.body_bytes = 0
        # When the transport paused writing (the client not reading), until it resumes;
        # restarted whenever the client takes in WRITE_PROGRESS_BYTES_MIN meanwhile.
        self.write_paused_at: float | None = None
        # The bytes waiting for the client to take them in when that clock (re)started.
        self.waiting_at_pause = 0
        # What to answer when the parser stops on this request.
        self.refusal = _INVALID_HTTP
        # A refusal waiting for the answers of the requests sent before it.
        self.refusal_due: bytes | None = None
        # Requests begun and not yet answered: over one, some wait behind another.
        self.unanswered = 0
        # The newest of them is still in its head.
        self.in_head = False
        # Refused and answered: what still arrives is read and dropped until the close.
        self.lingering = False
        # The server is stopping: a connection closes at once, without lingering.
        self.stopping = False
        # Requests still being answered when one was sent behind them: uvicorn keeps only
        # the newest request's cycle, and tells only it that the connection is lost.
        self.answered_behind: list[Any] = []
        # A request refused for its body while queued behind others: it never runs, and
        # its refusal is due once they are answered.
        self.never_run: Any = None
        # The client has sent all it will (a half-close): closed once it is answered.
        self.half_closed = False
        # Chunks the current chunked body may still take (and its last, empty one).
        self.chunks_left = CHUNKS_MAX + 1

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvicorn and each request's cycle write through this view of the transport.
        self.writes = CoalescingTransport(transport)
        self.writes.close_instead = self._linger_if_sending
        super().connection_made(cast(asyncio.Transport, self.writes))
        self.flow = _PipelineFlow(cast(asyncio.Transport, self.writes), self)
        if len(self.bounds.live) >= self.bounds.connections_max:
            # Here rather than uvicorn's limit_concurrency: its answer is plain text, and
            # it logs a line for each, which anyone could fill the log with.
            transport.write(_count(_SERVER_FULL))
            transport.close()
            return
        address = self.client[0] if self.client else None  # None: a Unix socket
        if address is not None:
            open_now = self.bounds.open_by_client
            if open_now[address] >= self.bounds.connections_per_client_max:
                transport.write(_count(_TOO_MANY_CONNECTIONS))
                transport.close()
                return
            open_now[address] += 1
            self._counted_address = address
        self.headers_started = self.loop.time()
        self.bounds.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        for cycle in self.answered_behind:
            # An answer streaming to a client that left stops, as the newest one does
            # (its writes to the closed transport failed in a traceback each).
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        self.answered_behind.clear()
        self.bounds.live.discard(self)
        address = self._counted_address
        if address is not None:
            self._counted_address = None
            open_now = self.bounds.open_by_client
            open_now[address] -= 1
            if open_now[address] <= 0:
                del open_now[address]
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        # Counted before parsing: the parser may finish the head in this piece and set
        # the count aside. A piece that ends one request and starts the next leaves the
        # next one's first bytes uncounted, so the parser holds at most one more piece.
        self.head_bytes += len(data)
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self.headers_started is None and self.body_started is None:
            # Bytes after an answer begin the next request's head, and its clock: uvicorn's
            # keep-alive timer stops at any byte, and blank lines (which the parser skips
            # before a request) sent now and then would keep the connection for ever.
            # Not while a request is being answered: a blank line must not cut it off.
            self.headers_started = self.loop.time()
        super().data_received(data)
        if self.head_bytes > HEAD_BYTES_MAX:
            self.headers_too_large()
        elif self.head_bytes < 0:
            if self.body_started is None:  # ended in this read (a chunked body), or refused
                self._chunked_body_ended(len(data))
            elif _framing_too_large(self.head_bytes, self.body_bytes):
                self._refuse_its_body(_HEADERS_TOO_LARGE)  # trailers, or chunk sizes, endless

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        super().on_body(body)

    def on_chunk_header(self) -> None:
        self.chunks_left -= 1
        if self.chunks_left < 0:
            self.refusal = _TOO_MANY_CHUNKS
            raise _InvalidHead

    def on_message_begin(self) -> None:
        if self.unanswered >= PIPELINED_MAX:
            # Reading pauses far below this: one read parsed whole brought them. The
            # parser stops here, and the rest of the read is dropped, not queued.
            self.refusal = _TOO_MANY_PIPELINED
            raise _InvalidHead
        super().on_message_begin()
        self.unanswered += 1
        self.in_head = True
        self.headers_started = self.loop.time()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > TARGET_BYTES_MAX:
            self.refusal = _TARGET_TOO_LONG
            raise _TargetTooLong

    def on_headers_complete(self) -> None:
        head_reads = self.head_bytes
        # A head that ended in the read it began in was parsed before its bytes were
        # compared with the bound: measured now, if its reads held more than the bound
        # (or it began after another request in a read, its first bytes uncounted).
        if (head_reads > HEAD_BYTES_MAX or self.unanswered > 1) and (
            self._head_size() > HEAD_BYTES_MAX
        ):
            self.refusal = _HEADERS_TOO_LARGE
            raise _InvalidHead
        self.headers_started = None
        self.in_head = False
        self.body_started = self.loop.time()
        self.head_bytes = _IN_BODY
        self.body_bytes = 0
        self.chunks_left = CHUNKS_MAX + 1
        framing = self._framing_of_valid_head()
        if not framing:
            self.refusal = _INVALID_HTTP
            raise _InvalidHead
        if framing == _CHUNKED:
            # The rest of the head's last read is the body's, its framing too: counted.
            # Not below nothing: a head begun in a read after another request's end had
            # its first bytes uncounted.
            self.head_bytes += max(0, head_reads - self._head_size())
        if self.parser.should_upgrade():
            # The parser would stop at the end of its head and take its body, sent
            # later, for a request of its own: one a proxy in front never saw.
            self.refusal = _UPGRADE_REFUSED
            raise _InvalidHead
        earlier = self.cycle
        super().on_headers_complete()
        # The request's headers are its scope's list: the fields parsed after the head,
        # a chunked body's trailer, go to another, never read (a token, a key, a ledger
        # there no proxy in front checked). Once a request, not a check for each field.
        self.headers = []
        if earlier is not None and not earlier.response_complete:
            self.answered_behind.append(earlier)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        # Before its task is made of its run_asgi (a pipelined one's too, started later).
        if cycle.scope["http_version"] == "1.0":
            answer_as_http10(cycle)
        super()._start_asgi_task(cycle, app)

    def _head_size(self) -> int:
        """The head's bytes: its target and fields, and for the method, the version and
        each field's colon and line end, a few bytes (blanks around a value uncounted)."""
        fields = sum(len(name) + len(value) + 4 for name, value in self.headers)
        return len(self.url) + fields + 16

    def _framing_of_valid_head(self) -> int:
        """`_CHUNKED` or `_NOT_CHUNKED` for a valid head: HTTP/1.1 (or 1.0) with one
        Host (1.1 requires it) and no transfer coding but chunked (none in 1.0). 0 for
        the rest: an HTTP/0.9 request line, HTTP/2.0 in one, a Host missing or given
        twice, and `gzip, chunked` (a body a proxy in front would read otherwise)."""
        version = self.parser.get_http_version()
        if version != "1.1" and version != "1.0":
            return 0
        hosts = 0
        framing = _NOT_CHUNKED
        for name, value in self.headers:
            if name == b"host":
                hosts += 1
            elif name == b"transfer-encoding":
                if value.lower() != b"chunked" or version == "1.0":
                    # HTTP/1.0 has no transfer coding: its body's end is not to be agreed on.
                    return 0
                framing = _CHUNKED
        return framing if hosts == 1 or (hosts == 0 and version == "1.0") else 0

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio.Protocol's
        """A client that half-closes after its requests (`shutdown(SHUT_WR)`, `nc -N`)
        is still answered: the connection closed at once dropped the answer, its write
        applied all the same. One that half-closes in the middle of a body will never
        send the rest: closed at once, not when the body's time runs out (a stop of the
        server waited for it). Nor the rest of a head: a request cut there held its
        connection, and its place among its address's, until the head's time ran out."""
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            return None
        if self.in_head:  # never to be answered; those sent before it are
            self.in_head = False
            self.unanswered -= 1
        if self.unanswered > 0 and not self.lingering:
            self.half_closed = True
            return True  # the write side stays open until they are answered
        return None

    def on_message_complete(self) -> None:
        self.body_started = None
        if self.chunks_left > CHUNKS_MAX:  # no chunk: not a chunked body
            self.head_bytes = 0  # the next request's head starts here
        # A chunked body's count runs on to the end of the read, which holds its last
        # chunk size and trailer fields: compared with the bound once the read is parsed.
        super().on_message_complete()

    def _chunked_body_ended(self, read_bytes: int) -> None:
        """A chunked body ended in the read just parsed: its framing, counted to the end
        of the read, is compared with the bound. Past it, the request is refused, and not
        applied though its body is whole. Then the next request's head starts."""
        count = self.head_bytes
        self.head_bytes = 0
        if self.in_head:
            # The next request began in the read too: only the reads before it count.
            count -= read_bytes
        if _framing_too_large(count, self.body_bytes):
            self._refuse_its_body(_HEADERS_TOO_LARGE)

    def on_response_complete(self) -> None:
        if self.answered_behind:
            self.answered_behind = [c for c in self.answered_behind if not c.response_complete]
        self.writes.response_complete()
        self.unanswered -= 1
        if self.unanswered > 0:  # the one sent behind it is due now: its time starts
            now = self.loop.time()
            if self.headers_started is not None:
                self.headers_started = now
            if self.body_started is not None:
                self.body_started = now
        super().on_response_complete()
        if (
            self.refusal_due is not None
            and not self.pipeline
            and (self.cycle.response_complete or self.cycle is self.never_run)
            and not self.answered_behind
        ):
            self._close_with(self.refusal_due)
        elif self.half_closed and self.unanswered == 0 and not self.transport.is_closing():
            self.transport.close()

    # The transport calls these only under backpressure: the hot path does not pay.
    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_paused_at = self.loop.time()
        self.waiting_at_pause = self.transport.get_write_buffer_size() + self._unsent_in_kernel()

    def took_in_enough(self) -> bool:
        """Whether the client, writing paused, has taken in WRITE_PROGRESS_BYTES_MIN
        since the write time last started; if so it starts from here."""
        buffered: int = self.transport.get_write_buffer_size()
        if buffered > WRITE_PROGRESS_BUFFER_MAX:
            return False
        waiting = buffered + self._unsent_in_kernel()
        if self.waiting_at_pause - waiting < WRITE_PROGRESS_BYTES_MIN:
            return False
        self.waiting_at_pause = waiting
        return True

    def timeout_keep_alive_handler(self) -> None:
        """uvicorn's close of a connection idle for its keep-alive time, unless a request
        has come meanwhile, unread: the loop stood still (SIGSTOP, a long pause) while
        the client sent it. Closed with it unread, the connection was reset, the request
        never read and its sender left not knowing; it is read now, as the other bounds
        read what came while the server stood still."""
        if self._unread_in_kernel() > 0:
            return  # its bytes start a request at the loop's next look, its clock with it
        super().timeout_keep_alive_handler()

    def _unread_in_kernel(self) -> int:
        """The bytes the client sent that the transport has not read."""
        return self._bytes_in_kernel(_UNREAD_REQUEST)

    def _unsent_in_kernel(self) -> int:
        """The answer's bytes in the kernel's socket buffer the client has not yet
        acknowledged; the transport's own come beside."""
        return self._bytes_in_kernel(_UNSENT_REQUEST)

    def _bytes_in_kernel(self, request: int | None) -> int:
        """The socket's count of bytes that `request` asks for (0 where it cannot be
        asked)."""
        if request is None:
            return 0
        connection = self.transport.get_extra_info("socket")
        try:
            asked = fcntl.ioctl(connection.fileno(), request, b"\0\0\0\0")
        except (AttributeError, OSError, ValueError):  # closed meanwhile, or no socket
            return 0
        count: int = struct.unpack("i", asked)[0]
        return count

    def resume_writing(self) -> None:
        self.write_paused_at = None
        super().resume_writing()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own answer is text/plain (its log line is filtered out above). It calls
        # this too when a callback of ours stopped the parser, with its refusal set.
        cycle = self.cycle
        if self.head_bytes < 0 and cycle is not None and cycle.more_body:
            # In the body of the request being read (a chunk size that is no number):
            # no more of it will come, and its application would wait for it for ever,
            # the refusal waiting behind its answer.
            self._refuse_its_body(self.refusal)
            return
        self._refuse_between_answers(self.refusal)

    def headers_too_slow(self) -> None:
        self.headers_started = None
        self._refuse_between_answers(_HEADERS_TOO_SLOW)

    def body_too_slow(self) -> None:
        self._refuse_its_body(_BODY_TOO_SLOW)

    def _refuse_its_body(self, refusal: bytes) -> None:
        """Refuse the request whose body is being read, and close."""
        self.body_started = None
        if self.lingering or self.transport.is_closing():
            return
        # The cycle is this request's (None before an upgrade): once the application has
        # begun to answer (say, 401 before reading the body), there is nothing to add but
        # the close.
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # Its application is told the client left, as the close would tell it: a body
            # that ended in this read, whole, would be applied though refused.
            cycle.disconnected = True
            cycle.message_event.set()
            queued = next((entry for entry in self.pipeline if entry[0] is cycle), None)
            if queued is not None:
                # Sent behind requests still being answered (a write among them may be
                # applied): it never runs, and their answers go out before its refusal.
                self.pipeline.remove(queued)
                self.never_run = cycle
                self.refusal_due = refusal
                self.flow.pause_reading()
                return
        if (cycle is None or not cycle.response_started) and not self.pipeline:
            self._close_with(refusal)
        else:
            self.transport.close()

    def headers_too_large(self) -> None:
        self.head_bytes = _IN_BODY
        self._refuse_between_answers(_HEADERS_TOO_LARGE)

    def _refuse_between_answers(self, refusal: bytes) -> None:
        """Answer `refusal` and close; where requests sent before this one are still to
        be answered (a write among them may be applied), their answers go out first,
        then the refusal, so none is lost or cut into."""
        if self.lingering or self.transport.is_closing() or self.refusal_due is not None:
            # The first refusal stands: a garbled head is also counted as head bytes,
            # and a piece read while an answer was busy holds more than the bound.
            return
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            self.refusal_due = refusal
            self.headers_started = self.body_started = None  # no clock of its own now
            self.flow.pause_reading()
            return
        self._close_with(refusal)

    def _close_with(self, refusal: bytes) -> None:
        """Send `refusal` and linger (below)."""
        self.transport.write(_count(refusal))
        self._linger()

    def _linger_if_sending(self) -> bool:
        """Before uvicorn closes after an answer (`connection: close`: a body too large,
        say): lingers if the client may still be sending its request. An idle connection
        (a keep-alive timeout) and any while the server stops are closed at once."""
        if self.lingering:
            return True
        if self.stopping or (self.body_started is None and self.head_bytes == 0):
            return False
        if self.cycle is not None and broken_off(self.cycle):
            return False  # reset by its cycle: an end of stream sent first reads as whole
        self._linger()
        return True

    def shutdown(self) -> None:
        """The server stops: no connection lingers to hold its stop up (uvicorn waits for
        every connection to close), one lingering already is closed now."""
        self.stopping = True
        if self.lingering:
            self.writes.transport.close()
            return
        super().shutdown()

    def _linger(self) -> None:
        """Send the end of the stream, then read and drop what the client still sends,
        until it closes too or the linger time is up: closed at once with input unread,
        the connection would be reset, taking with it the answers the client has not
        read yet."""
        self.writes.write_eof()
        self.lingering = True
        self.headers_started = self.body_started = None
        self.flow.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.writes.transport.close)

    def write_too_slow(self) -> None:
        self.write_paused_at = None
        # Aborted, not closed, even if closing already: a close waits for the buffer to
        # drain, which this client does not let happen. connection_lost then marks the
        # cycle disconnected and wakes its send, so the response's task ends.
        self.transport.abort()
