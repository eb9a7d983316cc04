"""API tokens: random secrets, stored only as digests, found by their embedded id."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kopilka.api.auth import new_token_record
from kopilka.errors import InvalidInput
from kopilka.tokens import (
    TOKEN_PREFIX,
    TokenRecord,
    hash_secret,
    new_secret,
    secret_matches,
    token_id_of,
)


def _record(secret: str, token_id: str) -> TokenRecord:
    return TokenRecord(token_id, hash_secret(secret), "teller", None, "main", datetime.now(UTC))


def test_new_secret_embeds_its_id() -> None:
    token_id, secret = new_secret()
    assert secret.startswith(TOKEN_PREFIX)
    assert token_id_of(secret) == token_id
    assert len(secret) > 40


def test_secrets_are_unique() -> None:
    assert len({new_secret()[1] for _ in range(100)}) == 100


def test_hash_is_not_the_secret() -> None:
    _, secret = new_secret()
    digest = hash_secret(secret)
    assert secret not in digest
    assert len(digest) == 64
    assert digest == hash_secret(secret)


def test_secret_matches_only_its_record() -> None:
    token_id, secret = new_secret()
    _, other = new_secret()
    record = _record(secret, token_id)
    assert secret_matches(secret, record)
    assert not secret_matches(other, record)
    assert not secret_matches(secret + "x", record)


def test_token_id_of_rejects_foreign_text() -> None:
    assert token_id_of("Bearer abc") is None
    assert token_id_of(TOKEN_PREFIX) is None
    assert token_id_of(f"{TOKEN_PREFIX}abc") is None
    assert token_id_of(f"{TOKEN_PREFIX}_rest") is None
    assert token_id_of(f"{TOKEN_PREFIX}abc_rest") is None  # not an id that is ever made
    assert token_id_of(f"{TOKEN_PREFIX}0123456789abcdeG_rest") is None
    assert token_id_of(f"{TOKEN_PREFIX}0123456789abcdef_rest") == "0123456789abcdef"
    token_id, secret = new_secret()
    assert token_id_of(secret) == token_id


@pytest.mark.parametrize(("role", "article"), [("admin", "an"), ("teller", "a")])
def test_a_token_that_takes_no_client_says_so_in_plain_words(role: str, article: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        new_token_record(role, "Ann")
    assert refused.value.message == f"{article} {role} token is not bound to a client"
