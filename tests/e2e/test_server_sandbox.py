"""Sandbox ledgers: private to their session, dropped on close and after an idle timeout."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.kopilka_server import running_server

from kopilka.client import connect_bank
from kopilka.errors import Forbidden, NotFound


def test_sandboxes_are_isolated_from_each_other_and_from_main(tmp_path: Path) -> None:
    with running_server(tmp_path / "home") as server:
        with server.client() as admin:
            admin.post("/v1/deposits", json={"client": "Main", "amount": "5", "open_account": True})
        first = connect_bank(server.url, token=server.token, sandbox=True)
        second = connect_bank(server.url, token=server.token, sandbox=True)
        try:
            first.deposit("Sandy", 1_000, "play", "k1")
            second.deposit("Sandy", 7_000, "play", "k1")  # same key, other ledger: no clash
            assert first.account("Sandy").balance_cents == 1_000
            assert second.account("Sandy").balance_cents == 7_000
            assert [a.client for a in first.accounts()] == ["Sandy"]
            with pytest.raises(NotFound):
                first.account("Main")
        finally:
            second.close()
        with server.client() as admin:
            assert admin.get("/v1/accounts/Sandy").status_code == 404
            sandbox_ledger = first.ledger
            assert (
                admin.get(
                    "/v1/accounts/Sandy", headers={"Kopilka-Ledger": second.ledger}
                ).status_code
                == 404
            )
            created = admin.post("/v1/tokens", json={"role": "teller"}).json()
        with pytest.raises(Forbidden):  # another token may not enter this sandbox
            stranger = connect_bank(server.url, token=created["secret"])
            stranger._http.headers["Kopilka-Ledger"] = sandbox_ledger
            stranger.account("Sandy")
        first.close()
        with server.client() as admin:
            gone = admin.get("/v1/accounts/Sandy", headers={"Kopilka-Ledger": sandbox_ledger})
            assert gone.status_code == 404


def test_an_idle_sandbox_is_dropped_by_the_server(tmp_path: Path) -> None:
    with (
        running_server(tmp_path / "home", KOPILKA_SANDBOX_IDLE_SECONDS="1") as server,
        server.client() as admin,
    ):
        ledger = admin.post("/v1/sandboxes").json()["ledger"]
        headers = {"Kopilka-Ledger": ledger}
        made = admin.post(
            "/v1/deposits",
            headers=headers,
            json={"client": "Ghost", "amount": "1", "open_account": True},
        )
        assert made.status_code == 201
        assert admin.get("/v1/accounts/Ghost", headers=headers).status_code == 200
        time.sleep(2.0)
        assert admin.get("/v1/accounts/Ghost", headers=headers).status_code == 404
