"""uvicorn's httptools protocol with the two bounds uvicorn itself lacks.

- Connections per client address: past the bound a new connection is answered
  503 `too_many_connections` and closed, so one client cannot take every slot
  of `limit_concurrency` from the others.
- Time to send a request's headers, from the connection's start or the request's
  first byte: past it the connection is answered 408 `request_timeout` and
  closed, so a client that trickles headers (or says nothing) cannot hold a slot.

The idle time between requests is uvicorn's keep-alive timeout, and a body that
trickles in is bounded by the application (`read_body`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kopilka.api.errors import ApiError, error_body

CONNECTIONS_PER_CLIENT_MAX = 256
HEADER_SECONDS_MAX = 10.0


@dataclass
class ConnectionBounds:
    """The bounds, and this process's open connections by client address."""

    connections_per_client_max: int = CONNECTIONS_PER_CLIENT_MAX
    header_seconds_max: float = HEADER_SECONDS_MAX
    open_by_client: Counter[str] = field(default_factory=Counter)


def _refusal(status: str, error: ApiError) -> bytes:
    body = error_body(error)
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


_TOO_MANY_CONNECTIONS = _refusal(
    "503 Service Unavailable",
    ApiError(503, "too_many_connections", "too many connections from this address"),
)
_HEADERS_TOO_SLOW = _refusal(
    "408 Request Timeout",
    ApiError(408, "request_timeout", "the request headers arrived too slowly"),
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, bounds: ConnectionBounds, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bounds = bounds
        self._counted_address: str | None = None
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else None  # None: a Unix socket
        if address is not None:
            open_now = self.bounds.open_by_client
            if open_now[address] >= self.bounds.connections_per_client_max:
                transport.write(_TOO_MANY_CONNECTIONS)
                transport.close()
                return
            open_now[address] += 1
            self._counted_address = address
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        address = self._counted_address
        if address is not None:
            self._counted_address = None
            open_now = self.bounds.open_by_client
            open_now[address] -= 1
            if open_now[address] <= 0:
                del open_now[address]
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.bounds.header_seconds_max, self._headers_too_slow
            )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_HEADERS_TOO_SLOW)
        self.transport.close()
