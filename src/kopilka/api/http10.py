"""An HTTP/1.0 request's answer, framed as HTTP/1.0 reads one.

uvicorn frames every answer as HTTP/1.1 does: a body of no stated length (a streamed
statement) in chunks, and a `100 Continue` before a body a request `Expect`s. An
HTTP/1.0 client knows neither (RFC 9112 6.1, RFC 9110 15.2): it read the chunks' sizes
as the body's own text, no JSON. Here such a body ends where the connection closes, as
1.0 delimits it, and no interim answer is sent. An answer broken off (a statement that
does not add up, a database gone) is then reset, not closed: closed, it would read as
the whole answer, as a chunked one without its last chunk does not.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

# SO_LINGER on, for no time: closing the socket sends a reset, not the end of the data.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class _Http10Cycle(RequestResponseCycle):
    close_delimited = False

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            headers = message.get("headers", [])
            stated = any(name.lower() == b"content-length" for name, _ in headers)
            bodiless = self.scope["method"] == "HEAD" or message["status"] in (204, 304)
            if not stated and not bodiless:
                self.close_delimited = True
                self.keep_alive = False
                self.chunked_encoding = False  # uvicorn's None: "not chosen yet", chunked
        elif self.close_delimited and message["type"] == "http.response.body":
            # uvicorn counts a body down from its stated length: each part states its own.
            self.expected_content_length = len(message.get("body", b""))
        await super().send(message)

    async def run_asgi(self, app: Any) -> None:
        await super().run_asgi(app)
        if self.close_delimited and not self.response_complete and not self.disconnected:
            connection = self.transport.get_extra_info("socket")
            if connection is not None:
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
            self.transport.abort()


def broken_off(cycle: RequestResponseCycle) -> bool:
    """Whether the cycle's answer ends at the close and has not ended: closing gently (a
    FIN sent first, as a linger does) would make what was sent read as all of it."""
    return isinstance(cycle, _Http10Cycle) and cycle.close_delimited and not cycle.response_complete


def answer_as_http10(cycle: RequestResponseCycle) -> None:
    """The request's cycle, made to answer it as HTTP/1.0."""
    cycle.__class__ = _Http10Cycle
    cycle.waiting_for_100_continue = False
