"""What the network client makes of a server's answers."""

from __future__ import annotations

from kopilka.client import error_from


def test_a_servers_message_reaches_the_terminal_without_its_escape_sequences() -> None:
    payload = {"error": {"code": "x", "message": "bad\x1b]8;;https://evil.example/\x07link\x1b[2J"}}
    error = error_from(422, payload)
    assert "\x1b" not in error.message and "\x07" not in error.message
    assert error.message.startswith("bad\ufffd]8;;https://evil.example/")
