"""Bearer tokens: who is calling, and what that role may do.

The hot path must not read the store per request, so verified token records
are kept in a small in-process cache for a short TTL (1 s by default). Every
request's secret is hashed and compared with the stored digest in constant time;
no secret is kept in memory. Revoking through this process
drops the entry at once; other processes (workers, the `kopilka token` CLI)
reach this one within the TTL.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from kopilka.domain.model import SANDBOX_PREFIX, client_name
from kopilka.domain.names import new_name_refusal
from kopilka.domain.rules import (
    quoted_name,
    refusal_beside,
    validate_chosen_ledger,
    validate_client,
)
from kopilka.errors import Forbidden, InvalidInput, Unauthorized
from kopilka.store.protocol import Store
from kopilka.tokens import (
    ROLES,
    Role,
    TokenRecord,
    hash_secret,
    new_secret,
    secret_matches,
    token_id_of,
    unknown_role,
)

TOKEN_CACHE_TTL_SECONDS = 1.0
TOKEN_CACHE_ENTRIES_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    role: Role
    client: str | None  # the one account of a client token
    ledger: str  # the ledger a request without Kopilka-Ledger uses


@dataclass(slots=True)
class _Entry:
    record: TokenRecord | None  # None: no such token (a repeated guess is one read per TTL)
    principal: Principal | None
    expires_at: float


class TokenCache:
    def __init__(
        self,
        store: Store,
        ttl_seconds: float = TOKEN_CACHE_TTL_SECONDS,
        entries_max: int = TOKEN_CACHE_ENTRIES_MAX,
    ) -> None:
        assert 0 <= ttl_seconds <= 60
        assert entries_max >= 1
        self._store = store
        self._ttl_seconds = ttl_seconds
        self._entries_max = entries_max
        self._entries: dict[str, _Entry] = {}
        # Ids no token has, apart: a flood of made-up ids fills and empties this alone,
        # never pushing out the tokens in use (each would cost a read again).
        self._unknown: dict[str, _Entry] = {}
        self._loading: dict[str, asyncio.Future[_Entry]] = {}

    async def authenticate(self, authorization: bytes | None) -> Principal:
        if authorization is None:
            raise Unauthorized("unauthorized", "missing Authorization: Bearer token")
        scheme, _, secret_bytes = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not secret_bytes:
            raise Unauthorized("unauthorized", "the Authorization header must be 'Bearer TOKEN'")
        secret = secret_bytes.strip().decode("latin-1")
        token_id = token_id_of(secret)
        if token_id is None:
            raise Unauthorized("unauthorized", "invalid token")
        entry = self._entries.get(token_id) or self._unknown.get(token_id)
        if entry is None or entry.expires_at < time.monotonic():
            entry = await self._load(token_id)
        return self._verify(entry, secret)

    def _verify(self, entry: _Entry, secret: str) -> Principal:
        record, principal = entry.record, entry.principal
        # Hash on every request (about a microsecond) rather than keep any secret in memory.
        if record is None or not secret_matches(secret, record):
            raise Unauthorized("unauthorized", "invalid token")
        if record.revoked:
            raise Unauthorized("unauthorized", "this token has been revoked")
        if principal is None:  # bound to a name (or ledger) not in NFC, see _principal
            raise Unauthorized("unauthorized", "invalid token")
        return principal

    async def _load(self, token_id: str) -> _Entry:
        """One store read per token per TTL, shared by the requests that wait for it."""
        pending = self._loading.get(token_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Entry] = asyncio.get_running_loop().create_future()
        self._loading[token_id] = future
        try:
            record = await self._store.get_token(token_id)
            entry = _Entry(record, _principal(record), time.monotonic() + self._ttl_seconds)
            kept = self._entries if record is not None else self._unknown
            if len(kept) >= self._entries_max:
                kept.clear()  # crude but bounded; a refill costs one read per token
            kept[token_id] = entry
            future.set_result(entry)
            return entry
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: the waiters, if any, see it themselves
            raise
        finally:
            del self._loading[token_id]

    async def confirm(self, principal: Principal) -> None:
        """The token still stands once a request's body is in: one revoked meanwhile is
        refused, at once if through this process (`forget`), within the TTL otherwise. A
        body may take seconds to arrive; what it asks is done only for a live token."""
        if self.standing(principal):
            return
        entry = await self._load(principal.token_id)
        if entry.record is None or entry.record.revoked:
            raise Unauthorized("unauthorized", "this token has been revoked")

    def standing(self, principal: Principal) -> bool:
        """Whether the cache, still fresh, holds the token as not revoked: the hot path's
        check, which needs no coroutine (else `confirm` reads the store)."""
        entry = self._entries.get(principal.token_id)
        return (
            entry is not None
            and entry.expires_at >= time.monotonic()
            and entry.record is not None
            and not entry.record.revoked
        )

    def forget(self, token_id: str) -> None:
        """Revoked here: take effect in this process at once."""
        self._entries.pop(token_id, None)


def _principal(record: TokenRecord | None) -> Principal | None:
    if record is None:
        return None
    # Tokens are bound to names in NFC, and the upgrade rewrote the older ones it could.
    # One still spelt otherwise (revoked there, or written since by an older kopilka)
    # is not read in NFC: that name may be another account's, a twin's left beside
    # the token's own by the upgrade, and the token would speak for someone else. A
    # ledger's name likewise: that spelling, a twin's, is one no one can name any more.
    if record.client is not None and client_name(record.client) != record.client:
        return None
    if client_name(record.ledger) != record.ledger:
        return None
    return Principal(record.id, record.role, record.client, record.ledger)


def effective_role(principal: Principal, ledger: str) -> Role:
    """A sandbox is a private play ledger: its owner may do anything in it."""
    if is_sandbox_of(principal, ledger):
        return "admin"
    return principal.role


def is_sandbox_of(principal: Principal, ledger: str) -> bool:
    # The prefix alone first: most ledgers are no sandbox, and this runs for every write.
    return ledger.startswith(SANDBOX_PREFIX) and ledger.startswith(
        f"{SANDBOX_PREFIX}{principal.token_id}-"
    )


def check_ledger(principal: Principal, ledger: str) -> None:
    """Admins reach every ledger; others their own and their own sandboxes."""
    if principal.role == "admin" or ledger == principal.ledger:
        return
    if is_sandbox_of(principal, ledger):
        return
    raise Forbidden("forbidden", f"this token may not use ledger {ledger!r}")


def require_role(principal: Principal, ledger: str, *roles: Role, who: str) -> None:
    """`who` says, for the refusal, who may: "limits are changed by an admin"."""
    if effective_role(principal, ledger) not in roles:
        raise Forbidden("forbidden", f"a {principal.role} token may not do this: {who}")


def check_client(principal: Principal, ledger: str, client: str) -> None:
    """A client token sees and moves only its own account (`client` is in NFC already)."""
    if effective_role(principal, ledger) == "client" and client != principal.client:
        raise Forbidden("forbidden", "a client token may only use its own account")


async def make_token(
    store: Store, role: str, client: str | None, ledger: str = "main"
) -> tuple[TokenRecord, str]:
    """A new token, stored, and its secret. A client token may name an account to be
    opened later, but not a name no account may be opened under unless one has it (an
    old account's): a token for " Ann" would be refused everything Ann's token may do."""
    record, secret = new_token_record(role, client, ledger)
    if record.client is not None:
        refusal = await _no_opening_under(store, record.ledger, record.client)
        if refusal is not None:
            raise InvalidInput(
                "invalid_client",
                f"no account has the name {quoted_name(record.client)}, and none may be opened"
                f" under it: a client's name {refusal}",
            )
    await store.put_token(record)
    return record, secret


async def _no_opening_under(store: Store, ledger: str, client: str) -> str | None:
    """Why no account may be opened under `client` where none has it, or None: none if
    one has it or one may be opened."""
    refusal = new_name_refusal(client)
    if refusal is None:
        namesake = await store.namesake(ledger, client)
        if namesake is None or namesake == client:
            return None
        refusal = refusal_beside(namesake, client)
    return None if await store.get_account(ledger, client) is not None else refusal


def new_token_record(
    role: str, client: str | None, ledger: str = "main"
) -> tuple[TokenRecord, str]:
    """A fresh record and its secret (shown once, stored only as a hash)."""
    if role not in ROLES:
        raise unknown_role()
    # From the API and the local `kopilka token create` alike, bound in NFC: "café"
    # decomposed is the ledger of that name, not another that lists the same.
    ledger = validate_chosen_ledger(ledger)
    if role == "client":
        if client is None:
            raise InvalidInput("invalid_client", "a client token is bound to a client: name one")
        client = client_name(client)
        validate_client(client)
    elif client is not None:
        article = "an" if role.startswith(("a", "e", "i", "o", "u")) else "a"
        raise InvalidInput("invalid_client", f"{article} {role} token is not bound to a client")
    token_id, secret = new_secret()
    record = TokenRecord(
        id=token_id,
        token_hash=hash_secret(secret),
        role=role,  # checked against ROLES above
        client=client,
        ledger=ledger,
        created_at=datetime.now(UTC),
    )
    return record, secret
