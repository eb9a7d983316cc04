"""Tab completion in the real shell on a pseudo-terminal, for lines written as the
parser reads them: a space escaped with a backslash, a command named to `help`."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.test_shell_embedded import Terminal, terminal_session
from tests.kopilka_server import running_server


def test_tab_completes_a_name_written_with_an_escaped_space(kopilka_home: Path) -> None:
    """`John\\ J` is what the parser reads as `John J`: Tab completed nothing there,
    and after `John\\ ` it started a new word of options."""
    terminal = Terminal(kopilka_home, "shell", "--sandbox")
    try:
        terminal.expect("'exit' or Ctrl-D to leave.")
        terminal.send('deposit --client="John Jones" --amount=5 --description=x\r')
        terminal.expect("Deposit operation was successful!")
        terminal.expect(">")
        terminal.send("balance --client=John\\ J\t\r")
        terminal.expect("Balance of John Jones: $5.00")
        terminal.expect(">")
        terminal.send("withdraw --client=John\\ \t --amount=1 --description=y\r")
        terminal.expect("Withdrawal operation was successful!")
        terminal.expect(">")
        terminal.send("help with\t\r")  # the command after `help` completes too
        terminal.expect("Usage: withdraw --client=NAME")
        terminal.expect(">")
        terminal.send("\x04")
        terminal.rest()
    finally:
        status = terminal.close()
    assert status == 0, terminal.seen


@pytest.mark.parametrize(
    ("typed", "answer"),
    [
        ("balance --client=Jo\t\t", "Balance of John Jones: $5.00"),
        ("balance --client Jo\t\t", "Balance of John Jones: $5.00"),
        ("transfer --from 'John Jones' --to=Ja\t\t --amount=1", "Transfer operation was"),
    ],
)
def test_a_second_tab_keeps_a_name_completed_in_quotes(
    kopilka_home: Path, typed: str, answer: str
) -> None:
    """A quoted name changes the text before the cursor: it was put in through a menu
    left open, and the next Tab went back to `Jo`, which Enter then ran."""
    with terminal_session(kopilka_home, "shell", "--sandbox") as terminal:
        terminal.send('deposit --client="John Jones" --amount=5 --description=x\r')
        terminal.expect("Deposit operation was successful!")
        terminal.send('open_account --client="Jane Doe"\r')
        terminal.expect("Account opened for Jane Doe")
        terminal.expect(">")
        terminal.send(typed + "\r")
        terminal.expect(answer)


@pytest.mark.parametrize(
    ("typed", "rest", "answer"),
    [
        ("balance --client -d", "", "Balance of -dash: $0.00"),
        ("transfer -f 'John Jones' -t -d", " -d rent --amount=1", "Transfer operation was"),
    ],
)
def test_tab_writes_a_name_starting_with_a_dash_as_the_parser_reads_it(
    kopilka_home: Path, typed: str, rest: str, answer: str
) -> None:
    """`--client -dash` is refused (the parser takes `-dash` for an option): the name
    is joined to its option, `--client=-dash`, as the parser reads such a value."""
    with terminal_session(kopilka_home, "shell", "--sandbox") as terminal:
        terminal.send('deposit --client="John Jones" --amount=5 --description=x\r')
        terminal.expect("Deposit operation was successful!")
        terminal.send("open_account --client=-dash\r")
        terminal.expect("Account opened for -dash")
        terminal.expect(">")
        terminal.send(typed)
        terminal.expect(typed)
        terminal.send("\t" + rest + "\r")
        terminal.expect(answer)


def test_tab_completes_a_client_tokens_own_name(tmp_path: Path) -> None:
    """A client token may list no accounts, so Tab completed no name at all, not even
    the one account the token is for."""
    with running_server(tmp_path / "server") as server:
        with server.client() as admin:
            deposit = {"client": "Alice Smith", "amount": "5", "open_account": True}
            assert admin.post("/v1/deposits", json=deposit).status_code == 201
            made = admin.post("/v1/tokens", json={"role": "client", "client": "Alice Smith"})
            assert made.status_code == 201, made.text
        client_token = made.json()["secret"]
        home = tmp_path / "home"
        home.mkdir()
        with terminal_session(home, "shell", "--url", server.url, "--token", client_token) as t:
            t.send("balance --client=Al\t\r")
            t.expect("Balance of Alice Smith: $5.00")
