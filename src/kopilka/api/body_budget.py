"""How many bytes of large request bodies the server holds at once, all connections together.

A batch body may be 8 MiB, and one address may hold 256 connections: bodies sent up to
their last byte and then left there would hold gigabytes of this process's memory. So a
body over a single write's bound takes its bytes from one budget as they arrive (what
has come, never the length it declares: headers alone hold nothing), and gives them
back when it has been read; one that no longer fits is refused (503 `busy_bodies`).
"""

from __future__ import annotations

from kopilka.api.errors import ApiError

LARGE_BODIES_BYTES_MAX = 128 * 1024 * 1024


class BodyBudget:
    def __init__(self, bytes_max: int = LARGE_BODIES_BYTES_MAX) -> None:
        self.bytes_max = bytes_max
        self.held = 0

    def take(self, size: int) -> None:
        """Hold `size` more bytes, or refuse the request that asks for them."""
        if self.held + size > self.bytes_max:
            raise ApiError(
                503,
                "busy_bodies",
                "the server is reading too many large requests at once; try again shortly",
            )
        self.held += size

    def give_back(self, size: int) -> None:
        self.held -= size
