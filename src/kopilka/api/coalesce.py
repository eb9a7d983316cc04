"""A connection's transport that sends a response's head with its body, in one write.

uvicorn writes a response's status line and headers when the application starts the
response, and its body when that is sent: two system calls and two TCP segments for a
small JSON answer, and a client woken twice. Under one transfer per request that second
write cost the server about a tenth of its throughput (performance.md). This view of
the transport holds a response's head back until the first piece of its body, or the
end of the response (a HEAD answer has no body), and writes the two together. Every
other call goes to the transport itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

# An interim answer to `Expect: 100-continue`: the client waits for it before sending
# the body, so it is never held.
_INTERIM = b"HTTP/1.1 100 "


class CoalescingTransport:
    __slots__ = ("_awaiting_head", "_ended", "_head", "close_instead", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._head: bytes | None = None
        # The next write starts a response: its head, to be held.
        self._awaiting_head = True
        # The end of the stream is sent: what is written after it is dropped (an answer
        # the application still gives to a request refused meanwhile).
        self._ended = False
        # Asked before a close; True: it ends the connection its own way (lingering).
        self.close_instead: Callable[[], bool] | None = None

    def write(self, data: bytes) -> None:
        if self._ended:
            return
        head = self._head
        if head is not None:
            self._head = None
            self.transport.write(head + data)
        elif self._awaiting_head and not data.startswith(_INTERIM):
            self._awaiting_head = False
            self._head = data
        else:
            self.transport.write(data)

    def response_complete(self) -> None:
        """The response has been written; the next write is the next response's head."""
        self._flush()
        self._awaiting_head = True

    def close(self) -> None:
        self._flush()
        if self.close_instead is not None and self.close_instead():
            return
        self.transport.close()

    def write_eof(self) -> None:
        self._flush()
        if not self._ended:
            self._ended = True
            self.transport.write_eof()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def __getattr__(self, name: str) -> Any:
        # Only for what is not defined above (abort, get_extra_info, ...).
        return getattr(self.transport, name)

    def _flush(self) -> None:
        if self._head is not None:
            self.transport.write(self._head)
            self._head = None
