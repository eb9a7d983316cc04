"""Idempotency keys that kopilka makes itself: UUID version 7 (RFC 9562).

A key's first 48 bits are the time in milliseconds, so keys made later sort later.
Every key goes into the unique index on (ledger, idempotency_key); random keys
(version 4) each land on their own page of that index, and a commit of a batch of
N operations then writes N scattered index pages. Time-ordered keys made at about
the same moment share a few pages at the index's end. The remaining 74 bits are
random, so two processes, or two keys in one millisecond, never collide.
"""

from __future__ import annotations

import secrets
import time
import uuid

from kopilka.errors import InvalidInput

_VERSION = 7
_VARIANT = 0b10  # RFC 9562


def uuid7() -> uuid.UUID:
    millis = time.time_ns() // 1_000_000
    random_bits = secrets.randbits(74)
    value = (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | _VERSION << 76
        | (random_bits >> 62) << 64  # 12 random bits
        | _VARIANT << 62
        | (random_bits & ((1 << 62) - 1))  # 62 random bits
    )
    return uuid.UUID(int=value)


def new_key() -> str:
    """A fresh key in the usual 36-character form."""
    return str(uuid7())


def sendable_key(key: str) -> str:
    """A key someone gives, as an HTTP header carries it unchanged: printable ASCII, no
    space at either end (a header's value is trimmed). The shell asks this of a key
    embedded too, so a command is taken or refused alike wherever it runs."""
    if not isinstance(key, str):  # a number from Python, say: refused, not an AttributeError
        raise InvalidInput("invalid_idempotency_key", "an idempotency key is text")
    if not (key.isascii() and key.isprintable() and key == key.strip()):
        raise InvalidInput(
            "invalid_idempotency_key",
            "an idempotency key is printable ASCII text without spaces at its ends",
        )
    # A str subclass is text: kept as the plain str it holds, as a name is (client_name).
    return key if type(key) is str else str.__str__(key)
