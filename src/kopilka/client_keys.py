"""A client token's idempotency keys are its own.

Keys are unique per ledger, and a kept refusal holds its key: were a client's keys
the ledger's, a client could take a key it guessed another caller would use (a
refused withdrawal of its own under "payroll-2026-12"), so that caller's request
is then refused as a reuse, and could learn from the answer which keys are in use.
So a client caller's key is kept under a mark of its client, which no other
caller's key matches, and answered back without it.
"""

from __future__ import annotations

import hashlib
import re

from kopilka.domain.rules import IDEMPOTENCY_KEY_LENGTH_MAX
from kopilka.errors import InvalidInput
from kopilka.idempotency import sendable_key

_MARK = "client/"
_DIGEST_LENGTH = 16
PREFIX_LENGTH = len(_MARK) + _DIGEST_LENGTH + 1
# What a client's own key may hold, the mark taking the rest of the ledger's limit.
CLIENT_KEY_LENGTH_MAX = IDEMPOTENCY_KEY_LENGTH_MAX - PREFIX_LENGTH
# A client's key, as its length is refused: every way it comes in (a header, a batch
# item) says the client's own limit, not the ledger's it cannot use.
CLIENT_KEY_NAMED = "a client token's idempotency key"


def client_key(client: str, key: str) -> str:
    """`key` as kept for a request of `client`'s token."""
    # An empty one too: under the mark it would be a key ("client/<digest>/"), not one
    # gone missing, and a second empty key would replay the first request's answer.
    if not 0 < len(key) <= CLIENT_KEY_LENGTH_MAX:
        raise InvalidInput(
            "invalid_idempotency_key",
            f"{CLIENT_KEY_NAMED} must be 1 to {CLIENT_KEY_LENGTH_MAX} characters",
        )
    return _mark_of(client) + key


def _mark_of(client: str) -> str:
    digest = hashlib.sha256(client.encode()).hexdigest()[:_DIGEST_LENGTH]
    return f"{_MARK}{digest}/"


def own_key(kept: str) -> str:
    """A kept key as its client sent it."""
    if kept.startswith(_MARK) and kept[PREFIX_LENGTH - 1 : PREFIX_LENGTH] == "/":
        return kept[PREFIX_LENGTH:]
    return kept


def unmarked(text: str, client: str) -> str:
    """A message to `client`'s token that names its kept key, naming it as it was sent:
    the client's own mark taken out where the quoted key begins (the first quote: Python
    quotes a key holding ' with "), and nothing else. Text shaped like a mark further on
    is part of the key as sent, as it is in any other caller's key."""
    return re.sub("(?<=['\"])" + re.escape(_mark_of(client)), "", text, count=1)


def not_marked(key: str) -> str:
    """A key as another caller gives it: never one under a client's mark, which would take
    that client's key (the kept one) or be read as one in a refusal."""
    if key.startswith(_MARK):
        raise InvalidInput(
            "invalid_idempotency_key",
            f"an idempotency key may not begin with {_MARK!r}: those are client tokens' own",
        )
    return key


def given_key(key: str) -> str:
    """A key a caller gives in the shell or the embedded bank, held to the rule a server
    holds it to: as an HTTP header carries it, and never under a client's mark."""
    return not_marked(sendable_key(key))
