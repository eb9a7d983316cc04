"""Ledger names are kept and compared in Unicode NFC, as client names are: one ledger,
however the keyboard spelt its name."""

from __future__ import annotations

import dataclasses
import unicodedata
from pathlib import Path

import pytest

from kopilka.api.auth import TokenCache, new_token_record
from kopilka.domain.rules import LEDGER_NAME_LENGTH_MAX, ledger_name, validate_chosen_ledger
from kopilka.errors import InvalidInput, Unauthorized
from kopilka.settings import load_settings
from kopilka.store.memory import MemoryStore

CAFE_NFC = "caf\u00e9"  # é precomposed, as most keyboards send it
CAFE_NFD = "cafe\u0301"  # e + combining acute accent, as a macOS terminal may send it


def test_both_spellings_are_one_name_the_nfc_one() -> None:
    assert ledger_name(CAFE_NFD) == ledger_name(CAFE_NFC) == CAFE_NFC
    assert validate_chosen_ledger(CAFE_NFD) == CAFE_NFC
    assert ledger_name("main") == "main"


def test_the_length_limit_counts_the_name_in_nfc() -> None:
    longest = CAFE_NFD * (LEDGER_NAME_LENGTH_MAX // len(CAFE_NFC))  # 125 characters in NFD
    assert len(longest) > LEDGER_NAME_LENGTH_MAX
    assert ledger_name(longest) == unicodedata.normalize("NFC", longest)
    with pytest.raises(InvalidInput) as refused:
        ledger_name(CAFE_NFD + "x" * LEDGER_NAME_LENGTH_MAX)
    assert refused.value.code == "invalid_ledger"


def test_a_run_of_combining_marks_past_the_stream_safe_bound_is_refused() -> None:
    """Left unordered, as in a client's name (client_name): such a name would be a ledger
    of its own beside another spelling of it, so it is refused."""
    with pytest.raises(InvalidInput) as refused:
        ledger_name("a" + "\u0301\u0316" * 20)
    assert (refused.value.code, refused.value.message) == (
        "invalid_ledger",
        "a ledger name has more than 30 combining marks in a row",
    )


def test_the_ledger_setting_is_kept_in_nfc(tmp_path: Path) -> None:
    environ = {"KOPILKA_HOME": str(tmp_path), "KOPILKA_LEDGER": CAFE_NFD}
    assert load_settings(environ=environ).ledger == CAFE_NFC


def test_a_token_is_bound_to_the_ledger_in_nfc() -> None:
    for role, client in (("teller", None), ("client", "Ann"), ("admin", None)):
        record, _ = new_token_record(role, client, CAFE_NFD)
        assert record.ledger == CAFE_NFC


async def test_a_token_bound_to_a_ledger_not_in_nfc_is_not_read_as_the_nfc_one() -> None:
    """Only an older kopilka writes such a binding (or the upgrade leaves it, revoked,
    beside a twin): read in NFC it would reach another ledger, so it is refused."""
    store = MemoryStore()
    made, secret = new_token_record("teller", None, CAFE_NFC)
    await store.put_token(dataclasses.replace(made, ledger=CAFE_NFD))
    with pytest.raises(Unauthorized) as refused:
        await TokenCache(store).authenticate(f"Bearer {secret}".encode())
    assert refused.value.message == "invalid token"
    fresh, fresh_secret = new_token_record("teller", None, CAFE_NFD)  # bound in NFC
    await store.put_token(fresh)
    principal = await TokenCache(store).authenticate(f"Bearer {fresh_secret}".encode())
    assert principal.ledger == CAFE_NFC
