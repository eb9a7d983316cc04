"""What the network client makes of a server's answers."""

from __future__ import annotations

from kopilka.client import error_from
from kopilka.client_wire import account_from, statement_line_from, text_from


def test_a_servers_message_reaches_the_terminal_without_its_escape_sequences() -> None:
    payload = {"error": {"code": "x", "message": "bad\x1b]8;;https://evil.example/\x07link\x1b[2J"}}
    error = error_from(422, payload)
    assert "\x1b" not in error.message and "\x07" not in error.message
    assert error.message.startswith("bad\ufffd]8;;https://evil.example/")


def test_a_servers_names_and_descriptions_reach_the_terminal_without_escape_sequences() -> None:
    """Another server (or one posing as kopilka) could retitle or clear the terminal
    through a statement line or an account's name; kopilka's own never holds them."""
    evil = "\x1b]0;pwned\x07Eve\x1b[2J\u202e"
    line = statement_line_from(
        {
            "id": 1,
            "created_at": "2026-12-03T19:00:00+00:00",
            "kind": "transfer",
            "description": evil,
            "amount": "1.00",
            "balance_after": "1.00",
            "counterparty": evil,
            "operation_id": 1,
        }
    )
    account = account_from(
        {
            "client": evil,
            "balance": "1.00",
            "min_balance": "0.00",
            "max_balance": None,
            "created_at": "2026-12-03T19:00:00+00:00",
        },
        "main",
    )
    for text in (line.description, line.counterparty, account.client):
        assert text == "\ufffd]0;pwned\ufffdEve\ufffd[2J\ufffd"
    assert text_from("Jürgen Øster 王 ☕") == "Jürgen Øster 王 ☕"  # a real name is kept
