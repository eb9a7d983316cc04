"""The Python client and the embedded bank: the same calls give the same answers.

docs/api.md promises that `Client` raises the same `KopilkaError` (same code, same
message) as the embedded engine. Each call below goes to an `EmbeddedBank` on a real
SQLite file and to a real server's sandbox through `connect_bank`, in the same order.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from tests.kopilka_server import running_server

from kopilka.bank import Bank, EmbeddedBank
from kopilka.client import Client, connect_bank
from kopilka.domain.model import (
    SANDBOX_PREFIX,
    Account,
    ClaimKey,
    Deposit,
    OpenAccount,
    Operation,
    Outcome,
    SetLimits,
    Withdraw,
)
from kopilka.domain.statement import Statement
from kopilka.engine import Engine
from kopilka.errors import InvalidInput, KopilkaError, Unauthorized
from kopilka.store import open_store

NOW = datetime.now(UTC)


class _Key(str):
    """A key of a str subclass (an enum's value, a caller's own type)."""


# What a floor or cap out of range is told of the range.
_RANGE = ": a floor or cap is at most $1,000,000,000,000,000.00 from zero"
# 01:30 in New York on 2026-11-01 is shown twice: at 05:30 UTC (fold 0), at 06:30 (fold 1).
_NEW_YORK = ZoneInfo("America/New_York")
_FIRST_0130 = datetime(2026, 11, 1, 1, 30, tzinfo=_NEW_YORK)
_SECOND_0130 = _FIRST_0130.replace(fold=1)

CALLS: list[tuple[str, Callable[[Bank], Any]]] = [
    ("float limits", lambda bank: bank.open_account("X", -0.5, 10.5)),
    ("a first deposit", lambda bank: bank.deposit("Ann", 500, "pay", "k1").kind),
    ("True as a floor", lambda bank: bank.set_limits("Ann", min_balance_cents=True)),
    ("a float amount", lambda bank: bank.withdraw("Ann", 1.5, "x", "k2")),
    ("a negative amount", lambda bank: bank.deposit("Ann", -5, "x", "k3")),
    ("an amount too big", lambda bank: bank.deposit("Ann", 10**14 + 1, "x", "k4")),
    ("a period backwards", lambda bank: bank.statement("Ann", NOW, NOW - timedelta(days=1))),
    (
        "a naive till, read as UTC",
        lambda bank: _closing_and_zone(
            bank.statement("Ann", None, datetime.now(UTC).replace(tzinfo=None))
        ),
    ),
    (
        "an empty period: since just after till",
        lambda bank: len(bank.statement("Ann", NOW + timedelta(microseconds=1), NOW).lines),
    ),
    (
        "since two microseconds after till",
        lambda bank: bank.statement("Ann", NOW + timedelta(microseconds=2), NOW),
    ),
    (
        "the second 01:30 to the first, in one zone: backwards",
        lambda bank: bank.statement("Ann", _SECOND_0130, _FIRST_0130),
    ),
    (
        "01:50 (first) to 01:10 (second), in one zone: in order",
        lambda bank: (
            bank.statement(
                "Ann", _FIRST_0130.replace(minute=50), _SECOND_0130.replace(minute=10)
            ).opening_balance_cents
        ),
    ),
    (
        "a since in the future, no till",
        lambda bank: bank.statement("Ann", NOW + timedelta(days=1), None),
    ),
    (
        "a till of None: up to now",
        lambda bank: _closing_and_zone(bank.statement("Ann", None, None)),
    ),
    ("a since as text", lambda bank: bank.statement("Ann", "2026-12-03", NOW)),  # type: ignore[arg-type]
    ("a key in Cyrillic", lambda bank: bank.deposit("Ann", 1, "x", "ключ")),
    ("a key with spaces", lambda bank: bank.deposit("Ann", 1, "x", " a ")),
    ("a key under a client's mark", lambda bank: bank.deposit("Ann", 1, "x", "client/x")),
    # A str subclass is text, as a name is: applied by both (refused by the embedded one).
    ("a key of a str subclass", lambda bank: bank.deposit("Ann", 1, "x", _Key("sub-1")).kind),
    ("that key again", lambda bank: bank.deposit("Ann", 1, "x", "sub-1").replayed),
    ("an opening under a key", lambda bank: bank.open_account("R1", 0, None, 500, "ok1").client),
    ("the same opening again", lambda bank: bank.open_account("R1", 0, None, 500, "ok1").client),
    ("another opening, that key", lambda bank: bank.open_account("R2", 0, None, 0, "ok1")),
    ("a deposit under that key", lambda bank: bank.deposit("R1", 5, "d", "ok1")),
    ("the opened balance", lambda bank: bank.account("R1").balance_cents),
    ("the account of an empty name", lambda bank: bank.account("")),
    ("the account of a name too long", lambda bank: bank.account("x" * 300)),
    ("the account of a name with a control character", lambda bank: bank.account("a\x00b")),
    ("the statement of an empty name", lambda bank: bank.statement("", None, NOW)),
    ("the balance after all", lambda bank: bank.account("Ann").balance_cents),
    ("an opening with money, no key", lambda bank: bank.open_account("Cat", 0, None, 50).client),
    ("an opening's floor above its money", lambda bank: bank.open_account("Dog", 100, None, 50)),
    (
        "a list with an amount that is no whole cents",
        lambda bank: _kinds(
            bank.execute_many([Deposit("Cat", 100, "x", "l1"), Deposit("Cat", 1.5, "x", "l2")])  # type: ignore[arg-type]
        ),
    ),
    (
        "a list with an opening and limits",
        lambda bank: _kinds(
            bank.execute_many(
                [
                    Deposit("Cat", 100, "x", "l3"),
                    OpenAccount("Eve", 0, None, "main", 500, "l4"),
                    SetLimits("Cat", -100),
                ]
            )
        ),
    ),
    (
        "a list with bad items among good ones",
        lambda bank: _refusals(
            bank.execute_many(
                [
                    OpenAccount("Fay"),
                    SetLimits("Cat", -100),
                    Deposit("Cat", 0, "zero", "l5"),
                    Deposit("Cat", 1, None, "l6"),  # type: ignore[arg-type]
                    Withdraw("Cat", 1, "w", None),  # type: ignore[arg-type]
                    Deposit("Cat", 1, "fine", "l7"),
                ]
            )
        ),
    ),
    # Undecodable bytes of a command line, as os.fsdecode gives them: no store can look
    # such a name up, nor can a request carry it.
    ("a deposit to a name not UTF-8", lambda bank: bank.deposit("A\udcff", 1, "x", "u1")),
    ("a withdrawal from one", lambda bank: bank.withdraw("A\udcff", 1, "x", "u2")),
    ("a transfer to one", lambda bank: bank.transfer("Ann", "A\udcff", 1, "x", "u3")),
    ("an opening of one", lambda bank: bank.open_account("A\udcff")),
    ("limits of one", lambda bank: bank.set_limits("A\udcff", 0)),
    (
        "limits of a name with a long run of combining marks",
        lambda bank: bank.set_limits("e" + "\u0301" * 31, 0),
    ),
    ("the account of one", lambda bank: bank.account("A\udcff")),
    ("the statement of one", lambda bank: bank.statement("A\udcff", None, NOW)),
    ("a description not UTF-8", lambda bank: bank.deposit("Ann", 1, "x\udcff", "u4")),
    (
        "an opening in NFC under a key",
        lambda bank: bank.open_account("\u00c7at", 0, None, 0, "o1").client,
    ),
    (
        "the same opening in NFD, that key",
        lambda bank: bank.open_account("C\u0327at", 0, None, 0, "o1").client,
    ),
    (
        "a list naming a client as a place in it",
        lambda bank: _refusals(
            bank.execute_many(
                [
                    OpenAccount("Hal"),
                    Withdraw("$.operations[0]", 1, "x", "z1"),
                    Withdraw("`$.operations[0]", 1, "x", "z2"),
                ]  # type: ignore[list-item]
            )
        ),
    ),
    ("a cap of more digits than text holds", lambda bank: bank.set_limits("Ann", None, 10**5000)),
    (
        "a keyed opening of a name not UTF-8",
        lambda bank: bank.open_account("B\udcff", 0, None, 0, "ok9"),
    ),
    (
        "a keyed opening with a floor of more digits than text holds",
        lambda bank: bank.open_account("Gil", 10**5000, None, 0, "ok10"),
    ),
    (
        "a keyed opening with such a cap",
        lambda bank: bank.open_account("Gil", 0, 10**5000, 0, "ok11"),
    ),
    (
        "a keyed opening with such an opening balance",
        lambda bank: bank.open_account("Gil", 0, None, 10**5000, "ok12"),
    ),
    ("an opening balance of more digits", lambda bank: bank.open_account("Gil", 0, None, 10**5000)),
    ("an opening balance out of range", lambda bank: bank.open_account("Gil", 0, None, 10**20)),
    ("an opening balance below zero", lambda bank: bank.open_account("Gil", 0, None, -1)),
    (
        "an opening below zero and its cap below its floor",
        lambda bank: bank.open_account("Gil", 0, -100, -500),
    ),
    (
        "a floor out of range and a cap of no int",
        lambda bank: bank.open_account("Gil", 10**20, False),
    ),
    ("a cap out of range", lambda bank: bank.set_limits("Ann", None, 10**30)),
    ("a floor out of range", lambda bank: bank.open_account("Gus", -(2**63))),
    ("a name in NFD", lambda bank: bank.deposit("Jose\u0301", 100, "x", "nfd").credit_client),
    (
        "its statement's name",
        lambda bank: bank.statement("Jose\u0301", None, datetime.now(UTC)).client,
    ),
    ("a refusal given again under its key", lambda bank: _refused_twice(bank, "again-1")),
    ("a deposit with no key", lambda bank: bank.deposit("Ann", 1, "no key").kind),
    (
        "a cap and no cap at once",
        lambda bank: bank.set_limits("Nobody", None, 500, clear_max=True),
    ),
    ("the account of a name far too long", lambda bank: bank.account("\U0001f600" * 700)),
    ("a deposit to a name far too long", lambda bank: bank.deposit("A" * 10**6, 1, "x", "l8")),
    (
        "a transfer to a name far too long",
        lambda bank: bank.transfer("Ann", "B" * 1000, 1, "x", "l9"),
    ),
    ("a description far too long", lambda bank: bank.deposit("Ann", 1, "d" * 10**6, "l10")),
    ("an opening of a name far too long", lambda bank: bank.open_account("C" * 1000)),
    ("the statement of a name far too long", lambda bank: bank.statement("C" * 10**4, None, NOW)),
    ("limits with nothing to change", lambda bank: bank.set_limits("Ann")),
    ("a name in NFD as long as it may be", lambda bank: bank.deposit("e\u0301" * 200, 1, "x").kind),
]


def _refused_twice(bank: Bank, key: str) -> list[tuple[str, bool]]:
    """A refusal under a key, then the same call again: the second is given as kept."""
    refusals = []
    for _ in range(2):
        try:
            bank.withdraw("Ann", 10**12, "too much", key)
        except KopilkaError as error:
            refusals.append((error.code, error.replayed))
    return refusals


def _refusals(outcomes: list[Outcome]) -> list[object]:
    return [(o.code, o.message) if isinstance(o, KopilkaError) else o.kind for o in outcomes]


def _kinds(outcomes: list[Outcome]) -> list[str]:
    return [o.code if isinstance(o, KopilkaError) else type(o).__name__ for o in outcomes]


def _closing_and_zone(statement: Statement) -> tuple[int, object]:
    return statement.closing_balance_cents, statement.till.tzinfo


def _answers(bank: Bank, calls: list[tuple[str, Callable[[Bank], Any]]] = CALLS) -> list[object]:
    answers: list[object] = []
    for _, call in calls:
        try:
            answers.append(call(bank))
        except KopilkaError as error:
            answers.append((error.code, error.message))
    return answers


def test_the_client_answers_as_the_embedded_bank_does(tmp_path: Path) -> None:
    with EmbeddedBank(str(tmp_path / "embedded.db")) as embedded:
        expected = _answers(embedded)
    with running_server(tmp_path / "home") as server:
        remote = connect_bank(server.url, token=server.token, sandbox=True)
        try:
            answered = _answers(remote)
        finally:
            remote.close()
    for (name, _), mine, theirs in zip(CALLS, expected, answered, strict=True):
        assert theirs == mine, name
    answer = dict(zip((name for name, _ in CALLS), expected, strict=True))
    assert answer["a first deposit"] == "deposit"
    assert answer["a key of a str subclass"] == "deposit"
    assert answer["that key again"] is True
    assert answer["the balance after all"] == 501  # its one cent
    assert answer["its statement's name"] == "Jos\u00e9"  # as kept, in NFC
    assert answer["an empty period: since just after till"] == 0
    assert answer["since two microseconds after till"] == (
        "invalid_period",
        "the start of the period (since) is after its end (till)",
    )
    assert (
        answer["the second 01:30 to the first, in one zone: backwards"]
        == (answer["since two microseconds after till"])
    )
    assert answer["01:50 (first) to 01:10 (second), in one zone: in order"] == 0
    names_not_utf8 = [
        "a deposit to a name not UTF-8",
        "a withdrawal from one",
        "a transfer to one",
        "an opening of one",
        "limits of one",
        "the account of one",
        "the statement of one",
    ]
    assert {answer[name][0] for name in names_not_utf8} == {"invalid_client"}
    assert answer["a description not UTF-8"][0] == "invalid_description"
    # A rule new names are held to: such an account opened before it is still reached.
    assert answer["limits of a name with a long run of combining marks"][0] == ("account_not_found")
    assert answer["a cap out of range"] == (
        "invalid_limit",
        "cap '10000000000000000000000000000.00' is out of range" + _RANGE,
    )
    assert answer["the same opening in NFD, that key"] == "\u00c7at"
    assert answer["a list naming a client as a place in it"][1] == (
        "account_not_found",
        "no account for client '$.operations[0]'",
    )
    assert answer["a list naming a client as a place in it"][2][1] == (
        "no account for client '`$.operations[0]'"
    )
    opening_refused = (
        "invalid_amount",
        "an opening balance must be $0.00 to $1,000,000,000,000.00",
    )
    for name in (
        "a keyed opening with such an opening balance",
        "an opening balance of more digits",
        "an opening balance out of range",
        "an opening balance below zero",
    ):
        assert answer[name] == opening_refused, name
    # The rules' order, whichever way in: the limits, then the opening balance.
    assert answer["an opening below zero and its cap below its floor"] == (
        "invalid_limit",
        "the cap -$1.00 is below the floor $0.00",
    )
    assert answer["a keyed opening with a floor of more digits than text holds"] == (
        "invalid_limit",
        "floor is out of range" + _RANGE,
    )
    assert answer["a keyed opening with such a cap"] == (
        "invalid_limit",
        "cap is out of range" + _RANGE,
    )
    assert answer["a cap of more digits than text holds"] == (
        "invalid_limit",
        "cap is out of range" + _RANGE,
    )
    assert answer["a keyed opening of a name not UTF-8"][0] == "invalid_client"
    assert answer["a since in the future, no till"] == (
        "invalid_period",
        "the start of the period (since) is in the future",
    )
    # Up to now as the bank has it: the balance, and times in UTC, as for a till now.
    assert answer["a till of None: up to now"] == answer["a naive till, read as UTC"]
    assert answer["a since as text"] == ("invalid_period", "since must be a datetime, not str")
    assert answer["a refusal given again under its key"] == [
        ("insufficient_funds", False),
        ("insufficient_funds", True),
    ]
    assert answer["a deposit with no key"] == "deposit"
    assert answer["a cap and no cap at once"] == (
        "invalid_limit",
        "a cap and no cap at once: give a cap or clear it, not both",
    )
    for name in (
        "the account of a name far too long",
        "a deposit to a name far too long",
        "a transfer to a name far too long",
        "an opening of a name far too long",
        "the statement of a name far too long",
    ):
        assert answer[name] == ("invalid_client", "client name is longer than 200 characters"), name
    assert answer["a description far too long"][0] == "invalid_description"
    assert answer["limits with nothing to change"] == (
        "invalid_limit",
        "a change of limits needs a floor, a cap or both",
    )
    assert answer["a name in NFD as long as it may be"] == "deposit"


def test_a_keyed_opening_replays_between_the_embedded_bank_and_a_server(tmp_path: Path) -> None:
    """The same opening under the same key, made embedded and then over the network on the
    same database, or the other way round, answers the account it opened, as a deposit
    does: it was refused as a key used for another request. Another opening under the key
    still is."""
    database = str(tmp_path / "kopilka.db")
    with EmbeddedBank(database) as embedded:
        embedded.open_account("Ann", -500, 100_000, 2_500, "open-ann")
    with (
        running_server(tmp_path / "home", database) as server,
        connect_bank(server.url, token=server.token, ledger="main") as remote,
    ):
        again = remote.open_account("Ann", -500, 100_000, 2_500, "open-ann")
        assert (again.client, again.balance_cents, again.replayed) == ("Ann", 2_500, True)
        # Spelt decomposed (NFD): the same name, as a server digests it.
        assert not remote.open_account("Jose\u0301", 0, None, 700, "open-jose").replayed
        with pytest.raises(KopilkaError) as reused:
            remote.open_account("Ann", 0, None, 2_500, "open-ann")
        assert reused.value.code == "idempotency_key_reused"
    with EmbeddedBank(database) as embedded:
        again = embedded.open_account("Jos\u00e9", 0, None, 700, "open-jose")
        assert (again.client, again.balance_cents, again.replayed) == ("Jos\u00e9", 700, True)
        with pytest.raises(KopilkaError) as reused:
            embedded.open_account("Jos\u00e9", 0, 100, 700, "open-jose")
        assert reused.value.code == "idempotency_key_reused"
        assert [a.balance_cents for a in embedded.accounts()] == [2_500, 700]  # once each


def test_an_account_has_its_id_over_the_network_as_embedded(tmp_path: Path) -> None:
    database = str(tmp_path / "kopilka.db")
    with EmbeddedBank(database) as embedded:
        embedded.deposit("Ann", 100, "pay", "k1")
        ann = embedded.account("Ann").id
    with (
        running_server(tmp_path / "home", database) as server,
        connect_bank(server.url, token=server.token, ledger="main") as remote,
    ):
        bob = remote.open_account("Bob").id
        assert (remote.account("Ann").id, remote.account("Bob").id) == (ann, bob)
        assert [a.id for a in remote.accounts()] == [ann, bob]
        assert remote.open_account("Cy", idempotency_key="open-cy").id > bob
        replayed = remote.open_account("Cy", idempotency_key="open-cy")
        assert replayed.replayed and replayed.id == remote.account("Cy").id
    with EmbeddedBank(database) as embedded:
        assert [a.id for a in embedded.accounts()] == [ann, bob, replayed.id]


def test_an_opening_kept_under_the_embedded_banks_earlier_digest_still_replays(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "kopilka.db")
    call = ("open_account", "Ann", 0, None, 300)
    earlier = hashlib.sha256(repr(call).encode()).hexdigest()

    async def open_as_before() -> None:
        engine = Engine(open_store(database))
        await engine.start()
        try:
            opening = OpenAccount("Ann", 0, None, "main", 300, "open-ann")
            (outcome,) = await engine.submit_many([opening], ClaimKey("main", "open-ann", earlier))
            assert isinstance(outcome, Account), outcome
        finally:
            await engine.close()

    asyncio.run(open_as_before())
    with EmbeddedBank(database) as embedded:
        again = embedded.open_account("Ann", 0, None, 300, "open-ann")
        assert again.balance_cents == 300


def test_a_key_a_server_would_refuse_is_refused_in_an_embedded_list_alone(tmp_path: Path) -> None:
    """A key under a client token's mark would take that client's own key in a ledger a
    server also serves; refused as the batch API refuses it, the rest applied."""
    with EmbeddedBank(str(tmp_path / "embedded.db")) as bank:
        outcomes = bank.execute_many(
            [
                Deposit("Ann", 100, "pay", "client/17239b6e25011033/pay-2"),
                Deposit("Ann", 100, "pay", "ключ"),
                Deposit("Ann", 100, "pay", "fine"),
            ]
        )
        assert [getattr(o, "code", "ok") for o in outcomes] == ["invalid_idempotency_key"] * 2 + [
            "ok"
        ]
        assert bank.account("Ann").balance_cents == 100


def test_an_embedded_list_goes_to_the_banks_own_ledger(tmp_path: Path) -> None:
    """As over the network: the commands' own ledger (main, by default) is not where they go."""
    path = str(tmp_path / "ledgers.db")
    with EmbeddedBank(path, "em1") as bank:
        (outcome,) = bank.execute_many([Deposit("Ann", 100, "x", "em-1")])
        assert isinstance(outcome, Operation) and outcome.ledger == "em1"
        assert bank.account("Ann").balance_cents == 100
    with EmbeddedBank(path) as main:
        assert main.accounts() == []


def test_a_clients_list_names_each_refused_item_by_its_place_in_the_list(tmp_path: Path) -> None:
    """Items refused before sending are left out of the body: a refusal from the server
    still names the item's place in the caller's list."""
    with (
        running_server(tmp_path / "home") as server,
        connect_bank(server.url, token=server.token, sandbox=True) as bank,
    ):
        outcomes = bank.execute_many(
            [OpenAccount("Fay"), Deposit("Cat", 1, "d", "caf\u00e9"), Deposit("Cat", 1, "d", "k")]
        )
    refused, key_refused, applied = outcomes
    assert isinstance(refused, KopilkaError) and refused.code == "invalid_command"
    assert isinstance(key_refused, KopilkaError), key_refused
    assert key_refused.code == "invalid_idempotency_key"
    assert "$.operations[1]" in key_refused.message, key_refused.message
    assert isinstance(applied, Operation)


def test_a_clients_list_longer_than_a_request_carries_is_refused_before_sending(
    tmp_path: Path,
) -> None:
    with running_server(tmp_path / "home") as server:
        bank = connect_bank(server.url, token=server.token, sandbox=True)
        try:
            deposits = [Deposit("Ann", 1, "x", f"many-{n}") for n in range(10_001)]
            with pytest.raises(KopilkaError) as refused:
                bank.execute_many(deposits)
            assert (refused.value.code, refused.value.message) == (
                "too_many_operations",
                "a batch request carries at most 10,000 operations (10,001 given):"
                " send them in parts",
            )
            assert len(bank.execute_many(deposits[:10_000])) == 10_000  # the bound itself goes
        finally:
            bank.close()


def test_a_list_of_commands_that_is_no_list_is_refused_whole_by_either_bank(
    tmp_path: Path,
) -> None:
    """A single command was a TypeError from either bank; a generator was applied by the
    client and a TypeError from the embedded bank. docs/api.md has execute_many take a
    list, its refusals naming places in it: anything else is refused, nothing applied."""

    def deposits() -> Iterator[Deposit]:
        yield Deposit("Ann", 100, "pay", "g1")

    not_lists: list[tuple[Callable[[], object], str]] = [
        (lambda: Deposit("Ann", 100, "pay", "n1"), "Deposit"),
        (deposits, "generator"),
        (lambda: {Deposit("Ann", 100, "pay", "n2")}, "set"),
        (lambda: "Ann", "str"),
        (lambda: None, "NoneType"),
    ]
    with running_server(tmp_path / "home") as server:
        banks = [
            EmbeddedBank(str(tmp_path / "embedded.db")),
            connect_bank(server.url, token=server.token, sandbox=True),
        ]
        for bank in banks:
            with bank:
                for given, kind in not_lists:
                    with pytest.raises(InvalidInput) as refused:
                        bank.execute_many(given())  # type: ignore[arg-type]
                    assert (refused.value.code, refused.value.message) == (
                        "invalid_command",
                        f"execute_many takes a list or a tuple of commands (given: {kind})",
                    ), bank
                assert bank.accounts() == [], bank  # nothing applied
                (applied,) = bank.execute_many((Deposit("Ann", 100, "pay", "t1"),))
                assert isinstance(applied, Operation), applied


def test_a_closed_client_refuses_in_one_error(tmp_path: Path) -> None:
    """The client and the embedded bank alike; closing either twice does nothing more."""
    with running_server(tmp_path / "home") as server:
        for bank in (
            connect_bank(server.url, token=server.token, sandbox=True),
            EmbeddedBank(str(tmp_path / "kopilka.db")),
        ):
            bank.close()
            bank.close()
            calls: list[Callable[[Bank], Any]] = [
                lambda closed: closed.account("Ann"),
                lambda closed: closed.deposit("Ann", 1, "x", "k1"),
                lambda closed: closed.execute_many([Deposit("Ann", 1, "x", "k2")]),
            ]
            for call in calls:
                try:
                    call(bank)
                except KopilkaError as error:
                    assert error.code == "client_closed", error
                else:
                    raise AssertionError("a closed client answered")


def test_an_embedded_bank_left_open_is_closed_as_the_program_ends(tmp_path: Path) -> None:
    """Quietly, its work kept: it printed "Task was destroyed but it is pending!"."""
    database = tmp_path / "kopilka.db"
    script = (
        "import sys\n"
        "from kopilka.bank import EmbeddedBank\n"
        "bank = EmbeddedBank(sys.argv[1])\n"
        "bank.deposit('Ann', 100, 'x', 'k1')\n"
    )
    ended = subprocess.run(
        [sys.executable, "-c", script, str(database)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (ended.returncode, ended.stderr) == (0, "")
    with EmbeddedBank(str(database)) as again:
        assert again.account("Ann").balance_cents == 100


@pytest.mark.parametrize("ledger", ["", " books", "a\nb", "x" * 101, None, SANDBOX_PREFIX + "1"])
def test_an_embedded_bank_opens_only_a_ledger_the_shell_and_server_could(ledger: str) -> None:
    """Its data would be written where no other way in could ever reach it."""
    with pytest.raises(KopilkaError) as refused:
        EmbeddedBank("memory:", ledger)
    assert refused.value.code == "invalid_ledger"


@pytest.mark.parametrize("ledger", ["", " books", "books ", "a\nb", "x" * 101])
def test_a_client_names_a_ledger_it_refuses_as_the_embedded_bank_does(ledger: str) -> None:
    """A name with a space at an end was refused as "a header HTTP cannot carry"."""
    from kopilka.client import Client

    with pytest.raises(KopilkaError) as embedded:
        EmbeddedBank("memory:", ledger)
    with pytest.raises(KopilkaError) as client:
        Client("http://127.0.0.1:18500", "kop_x_y", ledger=ledger)
    assert (client.value.code, client.value.message) == (
        embedded.value.code,
        embedded.value.message,
    )


class _Text(str):
    """Text of a caller's own type (a str subclass): text all the same."""


# Arguments that are no text at all: refused for it, as the embedded rules refuse them.
NOT_TEXT: list[tuple[str, Callable[[Bank], Any]]] = [
    ("a deposit's description of None", lambda bank: bank.deposit("Ann", 100, None, "t1")),
    ("a withdrawal's description of 5", lambda bank: bank.withdraw("Ann", 1, 5, "t2")),
    ("a transfer's description of None", lambda bank: bank.transfer("Ann", "Bob", 1, None)),
    ("a deposit to None", lambda bank: bank.deposit(None, 100, "x", "t3")),
    ("a withdrawal from 5", lambda bank: bank.withdraw(5, 1, "x")),
    ("a transfer to None", lambda bank: bank.transfer("Ann", None, 1, "x", "t4")),
    ("a name and description of None", lambda bank: bank.deposit(None, 1, None)),
    (
        "a list with a name of None",
        lambda bank: _refusals(bank.execute_many([Deposit(None, 1, "x", "t5")])),  # type: ignore[arg-type]
    ),
    (
        "a list with an account opened by 'no'",
        lambda bank: _refusals(
            bank.execute_many([Deposit("Ann", 1, "x", "t6", open_account="no")])  # type: ignore[arg-type]
        ),
    ),
    ("an opening of None", lambda bank: bank.open_account(None)),  # type: ignore[arg-type]
    ("an opening of 5", lambda bank: bank.open_account(5)),  # type: ignore[arg-type]
    ("a keyed opening of None", lambda bank: bank.open_account(None, 0, None, 5, "t6")),  # type: ignore[arg-type]
    ("an opening of None with a float floor", lambda bank: bank.open_account(None, 1.5)),  # type: ignore[arg-type]
    ("limits of None", lambda bank: bank.set_limits(None, -5)),  # type: ignore[arg-type]
    ("limits of 5", lambda bank: bank.set_limits(5, None, 500)),  # type: ignore[arg-type]
    ("the account of None", lambda bank: bank.account(None)),  # type: ignore[arg-type]
    ("the account of 5", lambda bank: bank.account(5)),  # type: ignore[arg-type]
    ("the statement of None", lambda bank: bank.statement(None, None, None)),  # type: ignore[arg-type]
    (
        "a list with an opening and limits of None",
        lambda bank: _refusals(bank.execute_many([OpenAccount(None), SetLimits(None, -5)])),  # type: ignore[arg-type]
    ),
    ("a deposit's key of 12345", lambda bank: bank.deposit("Ann", 1, "x", 12345)),  # type: ignore[arg-type]
    ("an opening's key of 7", lambda bank: bank.open_account("Bob", 0, None, 0, 7)),  # type: ignore[arg-type]
    ("a cap cleared by 'false'", lambda bank: bank.set_limits("Ann", -100, None, "false")),  # type: ignore[arg-type]
    ("an opening's key of 0", lambda bank: bank.open_account("Bob", 0, None, 0, 0)),  # type: ignore[arg-type]
    ("limits of no one cleared by 'yes'", lambda bank: bank.set_limits("", None, None, "yes")),  # type: ignore[arg-type]
    ("a floor of 1.5 for no account", lambda bank: bank.set_limits("Ghost", 1.5)),  # type: ignore[arg-type]
    ("a cap of True for no account", lambda bank: bank.set_limits("Ghost", None, True)),
]


def test_arguments_that_are_no_text_are_refused_alike(tmp_path: Path) -> None:
    """A description of None was `invalid_request` ("Expected `str`, got `null`") over
    HTTP, where the embedded bank said `invalid_description`; a name of None was an
    AttributeError embedded."""
    with EmbeddedBank(str(tmp_path / "embedded.db")) as embedded:
        expected = _answers(embedded, NOT_TEXT)
    with (
        running_server(tmp_path / "home") as server,
        connect_bank(server.url, token=server.token, sandbox=True) as remote,
    ):
        answered = _answers(remote, NOT_TEXT)
        assert remote.accounts() == []  # nothing was sent to be applied
    for (name, _), mine, theirs in zip(NOT_TEXT, expected, answered, strict=True):
        assert theirs == mine, name
    answer = dict(zip((name for name, _ in NOT_TEXT), expected, strict=True))
    description = ("invalid_description", "a description is text")
    name = ("invalid_client", "a client name is text")
    assert answer["a deposit's description of None"] == description
    assert answer["a withdrawal's description of 5"] == description
    assert answer["a transfer's description of None"] == description
    assert answer["a deposit to None"] == name
    assert answer["a withdrawal from 5"] == name
    assert answer["a transfer to None"] == name
    assert answer["a name and description of None"] == name  # the name first, as the rules go
    assert answer["a list with a name of None"] == [name]
    # Opened embedded ("no" is true), refused as JSON over HTTP.
    opened_by = ("invalid_request", "open_account is True or False")
    assert answer["a list with an account opened by 'no'"] == [opened_by]
    # A TypeError embedded (NFC of no text), an AttributeError over HTTP (the path).
    for call in (
        "an opening of None",
        "an opening of 5",
        "a keyed opening of None",
        "an opening of None with a float floor",  # the name first, as the rules go
        "limits of None",
        "limits of 5",
        "the account of None",
        "the account of 5",
        "the statement of None",
    ):
        assert answer[call] == name, call
    not_batched = ("invalid_command", "only deposits, withdrawals and transfers batch")
    assert answer["a list with an opening and limits of None"] == [not_batched] * 2
    # An AttributeError both ways; and a cap cleared by text, "false" included.
    key = ("invalid_idempotency_key", "an idempotency key is text")
    assert answer["a deposit's key of 12345"] == key
    assert answer["an opening's key of 7"] == key
    assert answer["an opening's key of 0"] == key  # was a new key made in its stead
    assert answer["limits of no one cleared by 'yes'"] == ("invalid_client", "client name is empty")
    # Checked before the account is looked for, as the client checks them before sending.
    whole_cents = "an amount is whole cents (an int), not "
    assert answer["a floor of 1.5 for no account"] == ("invalid_amount", whole_cents + "1.5")
    assert answer["a cap of True for no account"] == ("invalid_amount", whole_cents + "True")
    assert answer["a cap cleared by 'false'"] == ("invalid_limit", "clear_max is True or False")


def test_a_bank_is_opened_on_a_path_and_refused_what_names_none(tmp_path: Path) -> None:
    """A pathlib.Path was taken for a Store (an AttributeError deep in the engine); a
    port as a number, a token or ledger of no text, an AttributeError too; and a sandbox
    asked for by a text such as "no" was opened."""
    with EmbeddedBank(tmp_path / "kopilka.db") as bank:
        bank.deposit("Ann", 100, "x")
    with EmbeddedBank(str(tmp_path / "kopilka.db")) as bank:
        assert bank.account("Ann").balance_cents == 100
    refusals: list[tuple[Callable[[], object], tuple[str, str]]] = [
        (
            lambda: EmbeddedBank(5),  # type: ignore[arg-type]
            ("invalid_option", "a database is a path, a URL or a Store (given: int)"),
        ),
        (  # its repr would show the password
            lambda: EmbeddedBank(urlsplit("postgresql://app:s3cret@db.example/ledger")),  # type: ignore[arg-type]
            ("invalid_option", "a database is a path, a URL or a Store (given: SplitResult)"),
        ),
        (
            lambda: connect_bank(18731),  # type: ignore[arg-type]
            ("invalid_url", "the server URL is text: give http://HOST:PORT"),
        ),
        (
            lambda: connect_bank("http://127.0.0.1:18731", token="t", sandbox="no"),  # type: ignore[arg-type]
            ("invalid_option", "sandbox is True or False"),
        ),
        (
            lambda: connect_bank("http://127.0.0.1:18731", token="t", ledger=5),  # type: ignore[arg-type]
            ("invalid_ledger", "a ledger's name is text"),
        ),
        (
            lambda: connect_bank("http://127.0.0.1:18731", token=5),  # type: ignore[arg-type]
            (
                "unauthorized",
                "invalid token: a token is printable ASCII text without spaces at its ends",
            ),
        ),
    ]
    for call, expected in refusals:
        with pytest.raises(KopilkaError) as refused:
            call()
        assert (refused.value.code, refused.value.message) == expected


def test_a_client_made_with_an_empty_token_is_refused_as_connect_bank_refuses_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Client(url, "") was taken, and each call then refused as "a header HTTP cannot
    carry", where connect_bank, --token "" and KOPILKA_TOKEN="" say the token is empty."""
    monkeypatch.setenv("KOPILKA_TOKEN", "")
    with running_server(tmp_path / "home") as server:
        makes: list[Callable[[], Client]] = [
            lambda: Client(server.url, ""),
            lambda: Client(server.url, "", ledger="main"),
            lambda: connect_bank(server.url, token=""),
            lambda: connect_bank(server.url),  # KOPILKA_TOKEN
        ]
        for make in makes:
            with pytest.raises(Unauthorized) as refused:
                make().close()
            assert (refused.value.code, refused.value.message) == (
                "unauthorized",
                "the token is empty: give a token, or none for the admin token",
            )
        with Client(server.url, server.token, ledger="main") as bank:
            assert bank.accounts() == []


def test_a_str_subclass_is_text_kept_as_a_plain_str(tmp_path: Path) -> None:
    """The embedded bank refused a description of a str subclass (`invalid_description`,
    "a description is text") that the client sent."""
    with running_server(tmp_path / "home") as server:
        banks: list[Bank] = [
            EmbeddedBank(str(tmp_path / "embedded.db")),
            connect_bank(server.url, token=server.token, sandbox=True),
        ]
        for bank in banks:
            with bank:
                deposited = bank.deposit(_Text("Ann"), 1_000, _Text("pay"), "s1")
                withdrawn = bank.withdraw(_Text("Ann"), 100, _Text("cash"))
                (listed,) = bank.execute_many([Deposit(_Text("Bob"), 5, _Text("tip"), "s2")])  # type: ignore[attr-defined]
                moved = bank.transfer(_Text("Ann"), _Text("Bob"), 100, _Text("rent"))
                assert isinstance(listed, Operation), listed
                assert bank.account(_Text("Ann")).balance_cents == 800
                statement = bank.statement(_Text("Ann"), None, None)
                opened = bank.open_account(_Text("Cy"), 0, None, 10)
                limited = bank.set_limits(_Text("Cy"), -5)
                texts = [
                    opened.client,
                    limited.client,
                    deposited.credit_client,
                    deposited.description,
                    withdrawn.debit_client,
                    withdrawn.description,
                    moved.debit_client,
                    moved.credit_client,
                    moved.description,
                    listed.credit_client,
                    listed.description,
                    statement.client,
                    *(line.description for line in statement.lines),
                ]
                assert texts == [
                    *("Cy", "Cy"),
                    *("Ann", "pay", "Ann", "cash", "Ann", "Bob", "rent", "Bob", "tip", "Ann"),
                    *("pay", "cash", "rent"),
                ], bank
                assert {type(text) for text in texts} == {str}, bank


def test_a_new_name_with_two_spaces_in_a_row_is_refused_an_old_one_still_serves(
    tmp_path: Path,
) -> None:
    """ "Ann  Lee" beside "Ann Lee" listed alike, and the network shell's deposit opens the
    account it names: a mistyped double space opened a second account. An account made
    with such a name before it was refused is reached as ever, embedded or over HTTP."""
    database = tmp_path / "kopilka.db"
    with EmbeddedBank(str(database)) as bank:
        bank.deposit("Ann Lee", 1_000, "pay")
        bank.deposit("Bob", 1_000, "pay")
    with sqlite3.connect(database) as connection:  # as a kopilka before the rule made it
        connection.execute("UPDATE accounts SET client = 'Ann  Lee' WHERE client = 'Ann Lee'")
    connection.close()
    refused = (
        "invalid_client",
        "a new client's name may not hold two spaces in a row: 'Bob  Lee'",
    )

    def every_call(bank: Bank) -> list[object]:
        answers: list[object] = []
        for call in (
            lambda: bank.deposit("Bob  Lee", 100, "x"),
            lambda: bank.open_account("Bob  Lee"),
            lambda: bank.deposit("Ann  Lee", 100, "x").credit_balance_after_cents,
            lambda: bank.withdraw("Ann  Lee", 100, "x").debit_balance_after_cents,
            lambda: bank.transfer("Ann  Lee", "Bob", 100, "x").debit_balance_after_cents,
            lambda: bank.transfer("Bob", "Ann  Lee", 100, "x").credit_balance_after_cents,
            lambda: bank.set_limits("Ann  Lee", -100).min_balance_cents,
            lambda: bank.account("Ann  Lee").balance_cents,
            lambda: len(bank.statement("Ann  Lee", None, None).lines),
            lambda: sorted(account.client for account in bank.accounts()),
        ):
            try:
                answers.append(call())
            except KopilkaError as error:
                answers.append((error.code, error.message))
        return answers

    with EmbeddedBank(str(database)) as embedded:
        assert every_call(embedded) == [
            *(refused, refused),
            *(1_100, 1_000, 900, 1_000, -100, 1_000, 5),
            ["Ann  Lee", "Bob"],
        ]
    with running_server(tmp_path / "home", str(database)) as server:
        with connect_bank(server.url, token=server.token) as remote:
            assert every_call(remote) == [
                *(refused, refused),
                *(1_100, 1_000, 900, 1_000, -100, 1_000, 9),
                ["Ann  Lee", "Bob"],
            ]
        with server.client() as admin:
            for client, status in (("Ann  Lee", 201), ("Bob  Lee", 422)):
                made = admin.post("/v1/tokens", json={"role": "client", "client": client})
                assert made.status_code == status, made.text
