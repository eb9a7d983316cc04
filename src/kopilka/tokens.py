"""API tokens: generated at random, stored only as a SHA-256 digest, compared in constant time.

Tokens carry 256 bits of randomness, so a fast hash is enough: there is nothing
to brute-force, unlike a password.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

from kopilka.errors import InvalidInput

Role: TypeAlias = Literal["admin", "teller", "client"]
ROLES: tuple[Role, ...] = ("admin", "teller", "client")


def unknown_role() -> InvalidInput:
    return InvalidInput("invalid_role", f"role must be one of {', '.join(ROLES)}")


TOKEN_PREFIX = "kop_"  # noqa: S105 - a public prefix, not a secret
# A whole token: its id, and a secret of 43 characters (a client's name of the same
# shape but shorter is left as it is).
_TOKEN_IN_TEXT = re.compile(r"(kop_[0-9a-f]{16}_)[A-Za-z0-9_-]{40,}")


def without_secrets(text: str) -> str:
    """`text` with the secret of every token in it masked, its id kept. Masked before a
    message shortens the text it quotes: a token cut short is no longer whole, and would
    be shown in part."""
    return _TOKEN_IN_TEXT.sub(r"\1***", text)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str  # public handle, safe to print and to revoke by
    token_hash: str  # hex SHA-256 of the secret
    role: Role
    client: str | None  # set only for the client role
    ledger: str
    created_at: datetime
    revoked: bool = False


def new_secret() -> tuple[str, str]:
    """A fresh (token id, secret). The secret is shown once and never stored."""
    token_id = secrets.token_hex(8)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_token_id(text: str) -> bool:
    """Whether `text` has the form of the ids `new_secret` makes (16 hex digits)."""
    # strip() in C, not a loop in Python: this runs for every request.
    return len(text) == 16 and not text.strip("0123456789abcdef")


def no_token_named(text: str) -> str:
    """Why no token is revoked by the id `text`, for a message: a whole token (its
    secret) pasted where its id belongs is not quoted back, and is told what to give."""
    if text.startswith(TOKEN_PREFIX):
        return "give the token's id (the 16 hex digits after kop_), not the token itself"
    # Masked first: a secret cut short is not matched.
    return f"no token {without_secrets(text)[:40]!r}"


def token_id_of(secret: str) -> str | None:
    """The id embedded in a secret, used to find its record without scanning."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token_id, _, rest = secret.removeprefix(TOKEN_PREFIX).partition("_")
    # Only ids of the form made: junk never costs a store read nor a cache entry.
    return token_id if is_token_id(token_id) and rest else None


def secret_matches(secret: str, record: TokenRecord) -> bool:
    return hmac.compare_digest(hash_secret(secret), record.token_hash)
