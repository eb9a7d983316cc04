"""What the network client makes of a server's answers."""

from __future__ import annotations

import json
import socket

import pytest
from tests.local_listener import serving

from kopilka.client import Client
from kopilka.client_errors import error_from, pool_busy
from kopilka.client_wire import account_from, statement_line_from, text_from
from kopilka.errors import InvalidInput, Unavailable

URL = "http://127.0.0.1:8888"


def test_a_servers_message_reaches_the_terminal_without_its_escape_sequences() -> None:
    payload = {"error": {"code": "x", "message": "bad\x1b]8;;https://evil.example/\x07link\x1b[2J"}}
    error = error_from(422, payload, URL)
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


def test_an_error_code_that_is_no_identifier_is_no_kopilka_answer() -> None:
    """A program branches on the code: one from another server, escape sequence and all,
    was handed on as it came."""
    payload = {"error": {"code": "invalid_amount\x1b[31m", "message": "bad"}}
    error = error_from(422, payload, URL)
    assert (error.code, error.message) == (
        "bad_response",
        f"the server at {URL} answered 422 with an error code not kopilka's",
    )
    assert error_from(422, {"error": {"code": "invalid_amount", "message": "x"}}, URL).code == (
        "invalid_amount"
    )
    # A gateway's, a number (as JSON or as text): no code of kopilka's begins so.
    for code in (503, "503", 429.0, True, None):
        number = {"error": {"code": code, "message": "The service is currently unavailable."}}
        assert error_from(503, number, URL).code == "bad_response", code


PAGES_MAX = 50


@pytest.mark.parametrize(
    "next_after",
    [["Ann"] * PAGES_MAX, ["Bob", "Ann"] * (PAGES_MAX // 2)],
    ids=["the same page", "back to an earlier one"],
)
def test_a_page_of_accounts_that_does_not_go_on_is_a_bad_response(next_after: list[str]) -> None:
    """Asked for page after page, for ever: a server sending back for names already had.
    This one gives up after PAGES_MAX, so that the loop it made ends."""
    pages = iter(next_after)

    def answer(connection: socket.socket) -> None:
        while connection.recv(65536):  # a GET, whole in one read
            body = json.dumps({"accounts": [], "next_after": next(pages, None)}).encode()
            head = (
                f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
            )
            connection.sendall(head.encode() + b"\r\n\r\n" + body)

    with (
        serving(answer) as url,
        Client(url, "kop_x_y", ledger="main") as client,
        pytest.raises(Unavailable) as refused,
    ):
        client.accounts()
    assert refused.value.code == "bad_response"
    assert refused.value.message == (
        f"the server at {url} answered a page of accounts that does not go past the one before it"
    )


@pytest.mark.parametrize(
    ("waited_seconds", "said"),
    [(0.0075, " for 8 ms"), (0.0001, ""), (0.099, " for 99 ms"), (2.34, " for 2.3 s")],
)
def test_a_busy_pool_says_how_long_the_call_waited_in_units_that_show_it(
    waited_seconds: float, said: str
) -> None:
    """A call with a timeout of a few milliseconds was told it waited "for 0.0 s"."""
    message = pool_busy(8, waited_seconds).message
    assert message == (
        f"all 8 connections of this client were busy{said} with other calls; nothing was"
        " sent: try again"
    )


@pytest.mark.parametrize(
    ("variable", "value", "url", "said"),
    [
        (  # SOCKS needs a package the client is not installed with
            "ALL_PROXY",
            "socks5://127.0.0.1:1080",
            "http://10.1.2.3:8888",
            "ALL_PROXY in the environment cannot be used: Using SOCKS proxy, but the 'socksio'",
        ),
        (
            "HTTPS_PROXY",
            "ftp://user:S3cret@proxy.example:2121",
            "https://bank.example:8888",
            "HTTPS_PROXY in the environment cannot be used: Unknown scheme for proxy URL"
            " URL('ftp://user:***@proxy.example:2121')",
        ),
        (  # read for a plain http:// server on this machine too
            "SSL_CERT_FILE",
            "/nonexistent/ca.pem",
            URL,
            "SSL_CERT_FILE in the environment cannot be used: No such file or directory:"
            " /nonexistent/ca.pem",
        ),
    ],
)
def test_a_proxy_or_certificate_the_environment_names_and_no_connection_can_use_is_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, url: str, said: str
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidInput) as refused:
        Client(url, "kop_0123456789abcdef_secret")
    assert refused.value.code == "invalid_setting"
    assert refused.value.message.startswith(said), refused.value.message
    assert "\n" not in refused.value.message and "S3cret" not in refused.value.message
