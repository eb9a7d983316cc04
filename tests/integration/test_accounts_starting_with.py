"""The accounts whose client's name starts with a text: what Tab offers once every name
cannot be read in time, from a server a page of 1,000 at a time. The name itself, then
those after it in code point order, up to the first that does not start so."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.kopilka_server import running_server

from kopilka.bank import Bank, EmbeddedBank
from kopilka.client import connect_bank
from kopilka.errors import InvalidInput

# Past one page of 1,000 after "p", with names on either side that do not start so.
NAMES = ["o9", "p", *(f"p{number:04}" for number in range(1_100)), "p\u00e9", "q", "Zed"]


def test_a_server_s_names_starting_with_a_text_come_past_its_pages(tmp_path: Path) -> None:
    with running_server(tmp_path / "home") as server:
        with server.client() as admin:
            operations = [
                {"type": "deposit", "client": name, "amount": "1", "open_account": True}
                for name in NAMES
            ]
            answer = admin.post("/v1/batch", json={"operations": operations})
            assert answer.status_code == 200, answer.text
        with connect_bank(server.url, token=server.token) as bank:
            starting = [account.client for account in bank.accounts(5, starting_with="p")]
            assert starting == [name for name in NAMES if name.startswith("p")]
            assert [a.client for a in bank.accounts(5, starting_with="p109")] == [
                f"p{number}" for number in range(1090, 1100)
            ]
            assert bank.accounts(5, starting_with="x") == []
            assert [a.client for a in bank.accounts(5, starting_with="Ze")] == ["Zed"]


def test_the_embedded_bank_s_names_starting_with_a_text(tmp_path: Path) -> None:
    with EmbeddedBank(str(tmp_path / "kopilka.db")) as bank:
        for name in ("o9", "p", "p1", "p\u00e9", "q"):
            bank.open_account(name, opening_balance_cents=100)
        assert [a.client for a in bank.accounts(starting_with="p")] == ["p", "p1", "p\u00e9"]
        assert bank.accounts(starting_with="x") == []


SMALL = ["Ann", "Ann Lee", "Anna", "Jos\u00e9", "Jos\u00e9phine", "Josef", "Zo\u00eb"]


@pytest.fixture(params=["embedded", "client"])
def bank(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bank]:
    if request.param == "embedded":
        with EmbeddedBank(str(tmp_path / "kopilka.db")) as embedded:
            for name in SMALL:
                embedded.open_account(name, opening_balance_cents=100)
            yield embedded
        return
    with (
        running_server(tmp_path / "home") as server,
        connect_bank(server.url, token=server.token) as client,
    ):
        for name in SMALL:
            client.open_account(name, opening_balance_cents=100)
        yield client


def test_a_beginning_is_read_as_names_are_and_one_no_name_has_begins_none(bank: Bank) -> None:
    def starting(text: str) -> list[str]:
        return [account.client for account in bank.accounts(5, starting_with=text)]

    # Decomposed as macOS sends it: the names as kept (NFC) begin so.
    assert starting(unicodedata.normalize("NFD", "Jos\u00e9")) == ["Jos\u00e9", "Jos\u00e9phine"]
    assert starting("Ann ") == ["Ann Lee"]  # a space typed, the rest of the name to come
    assert starting("Ann") == ["Ann", "Ann Lee", "Anna"]
    for beginning in (" ", "\x00", "Ann\x00", "x" * 201):
        assert starting(beginning) == [], repr(beginning)
    with pytest.raises(InvalidInput) as refused:
        bank.accounts(5, starting_with=5)  # type: ignore[arg-type]
    assert refused.value.code == "invalid_client"
    assert refused.value.message == "a client name is text"


def test_an_empty_name_is_refused_as_a_name_in_both_banks(bank: Bank) -> None:
    """Sent, its path had an empty segment: "no such endpoint", a NotFound."""
    for call in (lambda: bank.account(""), lambda: bank.statement("", None, None)):
        with pytest.raises(InvalidInput) as refused:
            call()
        assert (refused.value.code, refused.value.message) == (
            "invalid_client",
            "client name is empty",
        )
