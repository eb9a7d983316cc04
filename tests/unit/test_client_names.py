"""Client names are compared in Unicode NFC: one person, however the keyboard spelt them."""

from __future__ import annotations

import dataclasses
import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kopilka.api.auth import TokenCache, new_token_record
from kopilka.domain.model import (
    Account,
    Command,
    Deposit,
    OpenAccount,
    Operation,
    SetLimits,
    Transfer,
    Withdraw,
    client_name,
)
from kopilka.domain.rules import CLIENT_NAME_LENGTH_MAX, AccountKey, plan_batch
from kopilka.errors import KopilkaError, Unauthorized
from kopilka.store.memory import MemoryStore

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
JOSE_NFC = "Jos\u00e9"  # é precomposed, as most keyboards send it
JOSE_NFD = "Jose\u0301"  # e + COMBINING ACUTE ACCENT, as macOS terminals may send it


def test_the_two_spellings_differ_as_text_but_are_one_name() -> None:
    assert JOSE_NFC != JOSE_NFD
    assert client_name(JOSE_NFD) == client_name(JOSE_NFC) == JOSE_NFC


def test_a_name_already_in_nfc_comes_back_as_it_is() -> None:
    for name in ("John Jones", "Ёжик Иванов", "王", JOSE_NFC, ""):
        assert client_name(name) is name


# Names mixing letters and the combining marks that compose with them.
_names = st.text(
    alphabet=st.sampled_from("aAeEiIoOuUnNcCsSzZ Ёё\u0300\u0301\u0302\u0303\u0308\u030c\u0327"),
    max_size=20,
)


@given(st.one_of(_names, st.text(max_size=20)))
@example(JOSE_NFD)
def test_client_name_is_nfc_and_equal_for_every_spelling(text: str) -> None:
    name = client_name(text)
    assert unicodedata.is_normalized("NFC", name)
    assert name == unicodedata.normalize("NFC", text)
    for spelling in ("NFC", "NFD"):
        assert client_name(unicodedata.normalize(spelling, text)) == name
    assert client_name(name) == name


@pytest.mark.parametrize(
    ("command", "fields"),
    [
        (Deposit(JOSE_NFD, 100, "cash", "k"), ("client",)),
        (Withdraw(JOSE_NFD, 100, "cash", "k"), ("client",)),
        (Transfer(JOSE_NFD, "Ann" + JOSE_NFD, 100, "rent", "k"), ("from_client", "to_client")),
        (OpenAccount(JOSE_NFD), ("client",)),
        (SetLimits(JOSE_NFD, min_balance_cents=-100), ("client",)),
    ],
    ids=["deposit", "withdraw", "transfer", "open_account", "set_limits"],
)
def test_every_command_holds_its_names_in_nfc(command: Command, fields: tuple[str, ...]) -> None:
    for field in fields:
        assert unicodedata.is_normalized("NFC", getattr(command, field))
    assert command == type(command)(**_fields_in_nfc(command))


def _fields_in_nfc(command: Command) -> dict[str, object]:
    return {
        name: unicodedata.normalize("NFC", value) if isinstance(value, str) else value
        for name, value in ((name, getattr(command, name)) for name in command.__slots__)
    }


def _outcomes(accounts: dict[AccountKey, Account], *commands: Command) -> list[object]:
    return plan_batch(commands, accounts, {}, NOW).outcomes


def test_both_spellings_reach_one_account() -> None:
    accounts: dict[AccountKey, Account] = {}
    outcomes = _outcomes(
        accounts,
        Deposit(JOSE_NFD, 500, "cash", "a"),
        Deposit(JOSE_NFC, 200, "cash", "b"),
        Withdraw(JOSE_NFD, 100, "cash", "c"),
        Transfer(JOSE_NFC, "Ann", 50, "rent", "d"),
        OpenAccount(JOSE_NFD),
    )
    assert [type(outcome) for outcome in outcomes[:3]] == [Operation] * 3
    assert isinstance(outcomes[3], KopilkaError) and outcomes[3].code == "account_not_found"
    assert isinstance(outcomes[4], KopilkaError) and outcomes[4].code == "account_exists"
    assert list(accounts) == [("main", JOSE_NFC)]
    assert accounts[("main", JOSE_NFC)].balance_cents == 600


def test_a_transfer_between_two_spellings_is_to_the_same_account() -> None:
    accounts: dict[AccountKey, Account] = {}
    _outcomes(accounts, Deposit(JOSE_NFC, 500, "cash", "a"))
    (outcome,) = _outcomes(accounts, Transfer(JOSE_NFD, JOSE_NFC, 100, "rent", "t"))
    assert isinstance(outcome, KopilkaError) and outcome.code == "same_account"


def test_the_length_limit_counts_the_name_in_nfc() -> None:
    longest = JOSE_NFD * (CLIENT_NAME_LENGTH_MAX // len(JOSE_NFC))  # 250 characters in NFD
    assert len(longest) > CLIENT_NAME_LENGTH_MAX
    (outcome,) = _outcomes({}, Deposit(longest, 100, "cash", "k"))
    assert isinstance(outcome, Operation)
    assert outcome.credit_client == unicodedata.normalize("NFC", longest)


def test_a_client_token_is_bound_to_the_name_in_nfc() -> None:
    record, _ = new_token_record("client", JOSE_NFD)
    assert record.client == JOSE_NFC


async def test_a_token_bound_to_a_name_not_in_nfc_is_not_read_as_the_nfc_one() -> None:
    """Only an older kopilka writes such a binding; read in NFC it could be a twin
    account's, someone else's money, so the token is refused rather than rebound."""
    store = MemoryStore()
    made, secret = new_token_record("client", JOSE_NFC)
    await store.put_token(dataclasses.replace(made, client=JOSE_NFD))
    with pytest.raises(Unauthorized) as refused:
        await TokenCache(store).authenticate(f"Bearer {secret}".encode())
    assert refused.value.message == "invalid token"
    fresh, fresh_secret = new_token_record("client", JOSE_NFD)  # bound in NFC
    await store.put_token(fresh)
    principal = await TokenCache(store).authenticate(f"Bearer {fresh_secret}".encode())
    assert principal.client == JOSE_NFC


def test_a_run_of_combining_marks_past_the_stream_safe_bound_is_refused_not_ordered() -> None:
    """NFC orders a run of combining marks by insertion sort: 800 of them in a name cost
    half a millisecond each time, and a batch of such names held the event loop for
    seconds. Past Unicode's stream-safe 30 they are left unordered, and refused."""
    marks = "\u0301\u0316" * 20  # 40 in a row, out of canonical order
    name = "a" + marks
    assert client_name(name) is name
    (outcome,) = _outcomes({}, Deposit(name, 100, "cash", "k"))
    assert isinstance(outcome, KopilkaError) and outcome.code == "invalid_client"
    assert outcome.message.startswith(
        "a new client's name may not have more than 30 combining marks in a row"
    )
    # Of combining class 0, these decompose into two marks each: counted so.
    tibetan = "A" + "\u0f73" * 16
    assert client_name(tibetan) is tibetan
    (refused,) = _outcomes({}, Deposit(tibetan, 100, "cash", "k"))
    assert isinstance(refused, KopilkaError) and refused.code == "invalid_client"
    # Up to the bound, a run is ordered (NFC) and the name taken.
    (taken,) = _outcomes({}, Deposit("a" + marks[:30], 100, "cash", "k"))
    assert isinstance(taken, Operation)
    assert taken.credit_client == unicodedata.normalize("NFC", "a" + marks[:30])
