"""The PostgreSQL store's memory of batch claims that stand: kept, bounded, and let go
with their ledger."""

from __future__ import annotations

from kopilka.domain.model import ClaimKey
from kopilka.store.postgres_claims import StandingClaims


def claim(ledger: str, key: str, digest: str = "d") -> ClaimKey:
    return ClaimKey(ledger, key, digest)


def test_a_remembered_claim_stands_with_its_digest() -> None:
    claims = StandingClaims()
    claims.remember([claim("main", "k1", "first")])
    asked = [claim("main", "k1", "other"), claim("main", "k2")]
    assert claims.standing(asked) == {("main", "k1"): "first"}


def test_a_claim_read_from_the_database_stands_too() -> None:
    claims = StandingClaims()
    claims.remember_read({("main", "k1"): "read"})
    assert claims.standing([claim("main", "k1")]) == {("main", "k1"): "read"}


def test_a_ledger_let_go_takes_only_its_own_claims() -> None:
    claims = StandingClaims()
    claims.remember([claim("sandbox-a", "k1"), claim("main", "k1"), claim("sandbox-ab", "k2")])
    claims.forget_ledger("sandbox-a")
    asked = [claim("sandbox-a", "k1"), claim("main", "k1"), claim("sandbox-ab", "k2")]
    assert claims.standing(asked) == {("main", "k1"): "d", ("sandbox-ab", "k2"): "d"}


def test_past_its_bound_the_oldest_half_is_forgotten() -> None:
    claims = StandingClaims(size_max=4)
    claims.remember(claim("main", f"k{number}") for number in range(5))
    kept = claims.standing(claim("main", f"k{number}") for number in range(5))
    assert sorted(key for _, key in kept) == ["k2", "k3", "k4"]
