"""An account opened under a name today's rules would not take for a new one stays
reachable: one opened before a rule came (more than 30 combining marks in a row), or by
a Python whose Unicode assigns a character this one does not know. Its balance, its
statement, its money and the listing's pages past it, through every way in."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest
from tests.e2e.conftest import run_kopilka
from tests.kopilka_server import running_server

# U+FDD0 is a noncharacter: unassigned in every Unicode, as a character of a later
# Unicode is in an earlier Python's.
UNASSIGNED = "Bob \ufdd0"
LONG_RUN = "Zz" + "".join(chr(0x300 + n) for n in range(35))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A ledger whose accounts "Bob" and "Zz" were opened under those names."""
    home = tmp_path / "home"
    for client in ("Aa", "Bob", "Zz", "zzz"):
        opened = run_kopilka(
            home, "deposit", f"--client={client}", "--amount=10", "--description=opening"
        )
        assert opened.returncode == 0, opened.stderr
    with sqlite3.connect(home / "kopilka.db") as db:
        db.execute("UPDATE accounts SET client = ? WHERE client = 'Bob'", (UNASSIGNED,))
        db.execute("UPDATE accounts SET client = ? WHERE client = 'Zz'", (LONG_RUN,))
    return home


def test_such_accounts_answer_and_their_listing_pages_on(home: Path) -> None:
    with running_server(home) as server, server.client() as admin:
        names, after = [], None
        while True:  # one account a page: each cursor the server gave is taken back
            page = admin.get(
                "/v1/accounts", params={"limit": 1, "after": after} if after else {"limit": 1}
            )
            assert page.status_code == 200, page.text
            names += [account["client"] for account in page.json()["accounts"]]
            after = page.json()["next_after"]
            if after is None:
                break
        assert names == ["Aa", UNASSIGNED, LONG_RUN, "zzz"]
        for name in (UNASSIGNED, LONG_RUN):
            account = admin.get(f"/v1/accounts/{quote(name, safe='')}")
            assert account.status_code == 200, account.text
            assert account.json()["balance"] == "10.00"
            moved = admin.post(
                "/v1/transfers", json={"from": name, "to": "Aa", "amount": "4", "description": "x"}
            )
            assert moved.status_code == 201, moved.text
            statement = admin.get(f"/v1/accounts/{quote(name, safe='')}/statement")
            assert statement.status_code == 200, statement.text
            assert statement.json()["closing_balance"] == "6.00"
        # A new account is held to today's rules.
        for name, why in (
            ("Cy \ufdd0", "may not hold a character Unicode has not assigned (U+FDD0)"),
            ("Yy" + LONG_RUN[2:], "may not have more than 30 combining marks in a row"),
        ):
            refused = admin.post("/v1/accounts", json={"client": name})
            assert refused.status_code == 422, refused.text
            assert why in refused.json()["error"]["message"], refused.text
        unknown = admin.get("/v1/accounts/" + quote("Cy \ufdd0", safe=""))
        assert unknown.status_code == 404, unknown.text


def test_the_shell_reaches_them_too(home: Path) -> None:
    for name in (UNASSIGNED, LONG_RUN):
        withdrawn = run_kopilka(
            home, "withdraw", f"--client={name}", "--amount=3", "--description=cash"
        )
        assert withdrawn.returncode == 0, withdrawn.stdout + withdrawn.stderr
        balance = run_kopilka(home, "balance", f"--client={name}")
        assert balance.stdout.strip().endswith("$7.00"), balance.stdout + balance.stderr
