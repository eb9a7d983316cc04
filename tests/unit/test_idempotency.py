"""Keys kopilka makes itself are UUID version 7: time first, so they sort as they were made."""

from __future__ import annotations

import time
import uuid

from kopilka.idempotency import new_key, uuid7


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
