"""Keys kopilka makes itself are UUID version 7: time first, so they sort as they were made."""

from __future__ import annotations

import time
import uuid

import pytest

from kopilka.errors import InvalidInput
from kopilka.idempotency import new_key, sendable_key, uuid7


def test_a_key_is_an_rfc_9562_version_7_uuid() -> None:
    key = uuid.UUID(new_key())
    assert key.version == 7
    assert key.variant == uuid.RFC_4122
    assert len(new_key()) == 36


def test_a_key_carries_the_millisecond_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    key = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= key.int >> 80 <= after


def test_keys_made_later_sort_later() -> None:
    earlier = new_key()
    time.sleep(0.002)
    later = new_key()
    assert earlier < later
    first_hex = uuid7().hex
    time.sleep(0.002)
    assert first_hex < uuid7().hex


def test_keys_made_in_one_millisecond_do_not_collide() -> None:
    keys = {new_key() for _ in range(20_000)}
    assert len(keys) == 20_000


def test_every_bit_a_key_does_not_fix_is_random() -> None:
    """Past the time, version and variant: rand_a (12 bits) and rand_b (62 bits)."""
    keys = [uuid7().int for _ in range(200)]
    fixed = (0xFFFF_FFFF_FFFF << 80) | (0xF << 76) | (0b11 << 62)
    for bit in range(128):
        if not fixed >> bit & 1:
            assert {key >> bit & 1 for key in keys} == {0, 1}, f"bit {bit} never changes"


@pytest.mark.parametrize("key", ["pay 1", "a", "~!@#$%^&*()_+{}|:<>?"])
def test_a_key_a_header_carries_unchanged_is_sendable(key: str) -> None:
    assert sendable_key(key) == key


@pytest.mark.parametrize("key", [" pay", "pay ", "pay\t", "ключ", "pay\x00", 7])
def test_a_key_a_header_would_change_or_cannot_carry_is_refused(key: object) -> None:
    """A header's value is trimmed and ASCII: the server would keep another key than
    the embedded shell does, or none."""
    with pytest.raises(InvalidInput) as caught:
        sendable_key(key)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_idempotency_key"
