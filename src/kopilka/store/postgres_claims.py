"""The batch requests' claims this PostgreSQL store process has seen standing.

A long `POST /v1/batch` is applied in pieces, each carrying the request's claim on its
key (engine.submit_many). The first piece to take effect writes the claim; every later
piece meets it standing. Planned on the process's own view (postgres.py), a piece that
took its claim for new would insert it again, fail its one statement on the key, and
be planned again from locked rows. Kept here, the claim is known to stand: the later
pieces are planned as the retries of their claim that they are.

Only what was read or committed is kept, and a claim never changes once it stands.
It goes only with its ledger: sandboxes, which this process's planned batches never
touch, and a ledger this process drops (`forget_ledger`).
"""

from __future__ import annotations

from collections.abc import Iterable

from kopilka.domain.model import ClaimKey
from kopilka.domain.rules import KnownClaims, OperationKey


class StandingClaims:
    """(ledger, key) -> the digest of the body that holds it. Bounded: past the limit
    the oldest half is forgotten, and a piece then meets its claim in the database."""

    def __init__(self, size_max: int = 10_000) -> None:
        assert size_max >= 1
        self._digests: dict[OperationKey, str] = {}
        self._size_max = size_max

    def remember(self, claims: Iterable[ClaimKey]) -> None:
        for claim in claims:
            self._digests[(claim.ledger, claim.idempotency_key)] = claim.digest
        if len(self._digests) > self._size_max:
            for key in list(self._digests)[: len(self._digests) // 2]:
                del self._digests[key]

    def remember_read(self, found: KnownClaims) -> None:
        self.remember(ClaimKey(ledger, key, digest) for (ledger, key), digest in found.items())

    def standing(self, claims: Iterable[ClaimKey]) -> KnownClaims:
        """Of these claims' keys, those known to stand, with their digests."""
        digests = self._digests
        found: KnownClaims = {}
        for claim in claims:
            key = (claim.ledger, claim.idempotency_key)
            digest = digests.get(key)
            if digest is not None:
                found[key] = digest
        return found

    def forget_ledger(self, ledger: str) -> None:
        for key in [key for key in self._digests if key[0] == ledger]:
            del self._digests[key]
