"""Reading a request: its headers in one pass, its body within bounds.

Both the money path (`app.py`) and the other routes (`handlers.py`) read requests
this way, so it lives apart from either.
"""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Scope

from kopilka.api.body_budget import BodyBudget
from kopilka.api.errors import ApiError
from kopilka.api.metrics import BOUNDS_REFUSALS
from kopilka.client_keys import CLIENT_KEY_NAMED, not_marked
from kopilka.domain.model import SANDBOX_PREFIX
from kopilka.domain.rules import IDEMPOTENCY_KEY_LENGTH_MAX
from kopilka.idempotency import uuid7

BODY_BYTES_MAX = 64 * 1024
BATCH_BODY_BYTES_MAX = 8 * 1024 * 1024
HEADERS_BYTES_MAX = 16 * 1024
BODY_SECONDS_MAX = 10.0
# A body's time run out, what has come and not yet been read is looked for this long.
_LAST_LOOK_SECONDS = 0.05
_SANDBOX_PREFIX_BYTES = SANDBOX_PREFIX.encode()


class RequestHeaders:
    """The few headers kopilka reads, found in one pass over the ASGI header list."""

    __slots__ = ("authorization", "content_length", "idempotency_key", "ledger")

    def __init__(self, scope: Scope) -> None:
        self.authorization: bytes | None = None
        self.idempotency_key: bytes | None = None
        self.ledger: bytes | None = None
        self.content_length: int | None = None
        size = 0
        twice: bytes | None = None
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            if name == b"authorization":
                if self.authorization is not None:
                    twice = name
                self.authorization = value
            elif name == b"idempotency-key":
                if self.idempotency_key is not None:
                    twice = name
                self.idempotency_key = value
            elif name == b"kopilka-ledger":
                if self.ledger is not None:
                    twice = name
                self.ledger = value
            elif name == b"content-length" and value.isdigit():
                self.content_length = int(value)
            elif name == b"content-encoding" and value.lower() != b"identity":
                # Read as it came, a gzip body declared so would be another body to
                # whoever decodes it as declared (a proxy, an auditor): refused.
                raise _refused_as_sent(
                    415,
                    "unsupported_encoding",
                    "a request body is sent as it is: no Content-Encoding but identity",
                )
        if size > HEADERS_BYTES_MAX:
            raise _refused_as_sent(
                431, "headers_too_large", f"headers over {HEADERS_BYTES_MAX} bytes"
            )
        if twice is not None:
            # Which one counts is up to whoever reads it: a proxy that checked the first
            # must not see the second obeyed (another token, ledger or key).
            raise _refused_as_sent(
                400, "duplicate_header", f"the {twice.decode()} header came twice"
            )

    def names_a_sandbox(self) -> bool:
        return self.ledger is not None and self.ledger.startswith(_SANDBOX_PREFIX_BYTES)

    def key_or_new(
        self, length_max: int = IDEMPOTENCY_KEY_LENGTH_MAX, *, client: bool = False
    ) -> str:
        """The Idempotency-Key, or a fresh one: the request applies, but a retry is new.
        `client`: a client token's, whose limit (`length_max`) its refusal names as its own."""
        key = self.idempotency_key
        if key is None:
            return uuid7().hex
        # An empty header is a key gone missing, not "no key": a retry would apply twice.
        if not 0 < len(key) <= length_max:
            named = CLIENT_KEY_NAMED if client else "the Idempotency-Key header"
            raise ApiError(
                422, "invalid_idempotency_key", f"{named} must be 1 to {length_max} characters"
            )
        # Read as Latin-1, UTF-8 would be stored garbled; a tab is refused by every write
        # alike (a money command's rules refuse it, and other writes kept it).
        text = key.decode("latin-1")
        if not (text.isascii() and text.isprintable()):
            raise ApiError(
                422, "invalid_idempotency_key", "the Idempotency-Key header is printable ASCII text"
            )
        return not_marked(text)


def _refused_as_sent(status: int, code: str, message: str) -> ApiError:
    """A request refused for how it was sent, before any token or operation is read:
    counted among the refused requests, as the server's bounds count theirs."""
    BOUNDS_REFUSALS[code] += 1
    return ApiError(status, code, message)


def key_to_settle(key: str, headers: RequestHeaders | None) -> bytes:
    """The write's key; for one refused before it had one, the caller's or a new one."""
    if key:
        return key.encode("latin-1")
    own = headers.idempotency_key if headers is not None else None
    return own or uuid7().hex.encode()


async def read_body(
    receive: Receive,
    content_length: int | None,
    bytes_max: int,
    seconds_max: float = BODY_SECONDS_MAX,
    budget: BodyBudget | None = None,
) -> bytes:
    """The whole body, refused past `bytes_max` (413) or when it trickles in too slowly (408).

    Under `kopilka serve` the protocol also bounds the time from the end of the headers
    to the end of the body, so a body that never starts is cut off too. With a `budget`,
    its bytes are held in it while they come (see body_budget).
    """
    if content_length is not None and content_length > bytes_max:
        raise ApiError(413, "body_too_large", f"the request body is over {bytes_max} bytes")
    held = 0
    try:
        message = await receive()
        body: bytes = message.get("body", b"")
        # A body without a length (chunked) may arrive whole in one message: count it too.
        if len(body) > bytes_max:
            raise ApiError(413, "body_too_large", f"the request body is over {bytes_max} bytes")
        if not message.get("more_body", False):
            if message["type"] == "http.disconnect":
                raise ApiError(400, "disconnected", "the client went away")
            return body
        # A body in several pieces: bound the wait, so a slow client cannot hold a slot.
        chunks = [body]
        size = len(body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds_max
        looked_again = False
        try:
            while message.get("more_body", False):
                if budget is not None and size > held:  # what has come, not what is said
                    budget.take(size - held)
                    held = size
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    # Its time runs out first where the process stood still (SIGSTOP):
                    # timers are run before what came meanwhile is read, and a body that
                    # came whole then was refused, the server's pause counted as the
                    # client's. One look more, once a body, for what is there now.
                    if looked_again:
                        raise
                    looked_again = True
                    deadline = loop.time() + _LAST_LOOK_SECONDS
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                if message["type"] == "http.disconnect":
                    raise ApiError(400, "disconnected", "the client went away")
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > bytes_max:
                    raise ApiError(
                        413, "body_too_large", f"the request body is over {bytes_max} bytes"
                    )
                chunks.append(chunk)
        except TimeoutError:
            raise ApiError(408, "request_timeout", "the request body arrived too slowly") from None
        return b"".join(chunks)
    finally:
        if budget is not None:
            budget.give_back(held)


__all__ = [
    "BATCH_BODY_BYTES_MAX",
    "BODY_BYTES_MAX",
    "BODY_SECONDS_MAX",
    "HEADERS_BYTES_MAX",
    "RequestHeaders",
    "key_to_settle",
    "read_body",
]
