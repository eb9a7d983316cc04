"""The real `kopilka` shell and one-shots on what people mistype, and on a missing server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.e2e.conftest import RunKopilka, kopilka_command, kopilka_env
from tests.kopilka_server import free_port, running_server

from kopilka.errors import Unauthorized


def test_a_command_in_capitals_suggests_the_command_and_runs_nothing(
    run_shell: Callable[[str], str],
) -> None:
    output = run_shell(
        "DEPOSIT --client=A --amount=5 --description=x\n"
        "WITHDRAW --client=A --amount=5 --description=x\n"
        "Show_Bank_Statement --client=A\n"
        "help TRANSFER\n"
        "accounts\n"
    )
    assert output.splitlines() == [
        "Error: unknown command 'DEPOSIT'; did you mean 'deposit'?",
        "Error: unknown command 'WITHDRAW'; did you mean 'withdraw'?",
        "Error: unknown command 'Show_Bank_Statement'; did you mean 'show_bank_statement'?",
        "Error: unknown command 'TRANSFER'; did you mean 'transfer'?",
        "No accounts yet.",
    ]


def test_an_unknown_option_suggests_the_commands_option_it_begins_or_means(
    run_shell: Callable[[str], str],
) -> None:
    output = run_shell(
        "set_limits --client=A --min=5\n"
        "add-user --client=A --max=5\n"
        "statement --client=A --from=2024-01-01\n"
        "accounts\n"
    )
    assert output.splitlines() == [
        "Error: set_limits has no option --min; did you mean --min-balance?",
        "Error: add-user has no option --client; did you mean --name?",
        "Error: show_bank_statement has no option --from; did you mean --since?",
        "No accounts yet.",
    ]


def test_a_hash_after_a_command_is_said_to_begin_no_comment_there(
    run_shell: Callable[[str], str],
) -> None:
    """A trailing `# rent` was "takes one bare AMOUNT, and got '#' and 'rent'"; a `#` in
    a value stays part of it."""
    output = run_shell(
        "deposit --client=A --amount=5 --description=Invoice#5\n"
        "transfer --from=A --to=B --amount=5 # rent\n"
        "help # list\n"
        "exit # bye\n"
        "balance --client=A #check\n"
        "get\n"
    )
    assert output.splitlines() == [
        "Deposit operation was successful!",
        "Error: transfer takes no bare '#': # begins a comment only at the start of a line",
        "Error: help takes no bare '#': # begins a comment only at the start of a line",
        "Error: exit takes no bare '#': # begins a comment only at the start of a line",
        "Error: balance takes no bare '#check': # begins a comment only at the start of a line",
        "| Client | Balance | Floor | Cap  |",
        "|--------|---------|-------|------|",
        "| A      |   $5.00 | $0.00 | none |",
    ]


def test_a_one_shot_in_capitals_suggests_the_command_and_exits_one(kopilka: RunKopilka) -> None:
    result = kopilka("DEPOSIT", "--client=A", "--amount=5", "--description=x")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "Error: unknown command 'DEPOSIT'; did you mean 'deposit'?\n"


@pytest.mark.parametrize("extra", [(), ("--sandbox",)])
def test_a_shell_on_a_server_that_is_not_there_says_so_once_and_exits_one(
    kopilka: RunKopilka, kopilka_home: Path, extra: tuple[str, ...]
) -> None:
    kopilka_home.mkdir(parents=True)
    (kopilka_home / "admin.token").write_text("some-token\n")  # a token, but no server
    port = free_port()
    typed = "balance --client=A\naccounts\n"
    result = kopilka("shell", str(port), *extra, stdin=typed)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"Error: cannot reach the server at http://127.0.0.1:{port}: ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://127.0.0.1:8888", "only http:// and https:// are served"),
        ("http://", "give it as http://HOST:PORT"),
        ("http://127.0.0.1:99999", "a port is a whole number from 1 to 65535"),
        ("127.0.0.1:port", "a port is a whole number from 1 to 65535"),
        ("http://me:S3cretPW@127.0.0.1:99999", "a port is a whole number from 1 to 65535"),
        ("http://127.0.0.1:0", "a port is a whole number from 1 to 65535"),
    ],
)
def test_a_url_that_names_no_server_is_refused_before_the_token_is_looked_for(
    kopilka: RunKopilka, url: str, reason: str
) -> None:
    # No admin.token in this home: the URL's fault is the one to name.
    result = kopilka("balance", "--client=A", f"--url={url}")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("Error: invalid server URL ")
    assert result.stderr.endswith(f": {reason}\n")
    assert "S3cretPW" not in result.stderr


def test_init_with_a_server_url_is_refused_and_makes_no_database(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    database = str(kopilka_home.parent / "given.db")
    for arguments, env in (
        (("--url", "http://127.0.0.1:8888"), None),
        ((), {"KOPILKA_URL": "8888"}),
        ((), {"KOPILKA_URL": "8888", "KOPILKA_DB": database}),  # the server wins the tie
    ):
        result = kopilka("init", *arguments, env=env)
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr.startswith("Error: init works on a database, not a server (")
        assert "give --db, and no --url" in result.stderr
        assert result.stderr.count("\n") == 1
    assert not kopilka_home.exists()
    given = kopilka("init", "--db", database, env={"KOPILKA_URL": "8888"})
    assert given.returncode == 0, given.stderr


def test_the_homes_admin_token_goes_to_no_server_elsewhere(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """A kopilka.toml in the working directory (made by someone else, say) may name any
    server: the home's admin token is not sent there."""
    kopilka_home.mkdir(parents=True)
    (kopilka_home / "admin.token").write_text("kop_0123456789abcdef_secret\n")
    (kopilka_home.parent / "kopilka.toml").write_text('url = "http://192.0.2.1:9"\n')
    result = kopilka("balance", "--client=A")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: no token for http://192.0.2.1:9: the admin token in {kopilka_home} goes only"
        " to a server on this machine; give --token or KOPILKA_TOKEN\n"
    )


def test_a_host_that_only_begins_with_a_loopback_address_gets_no_token(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """`127.0.0.1 .attacker.example` passed for this machine (inet_aton reads up to the
    space), and the name was then looked up: the admin token went wherever it named."""
    kopilka_home.mkdir(parents=True)
    (kopilka_home / "admin.token").write_text("kop_0123456789abcdef_secret\n")
    url = "http://127.0.0.1 .attacker.example:9"
    (kopilka_home.parent / "kopilka.toml").write_text(f'url = "{url}"\n')
    result = kopilka("balance", "--client=A")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"Error: invalid server URL {url!r}: give it as http://HOST:PORT\n"


@pytest.mark.parametrize(
    ("arguments", "env", "told"),
    [
        (
            ("deposit", "--client=A", "--amount=5", "--description=x", "--token=kop_x_y"),
            {},
            "--token is for a server: give its --url (or KOPILKA_URL)",
        ),
        (
            ("deposit", "--client=A", "--amount=5", "--description=x"),
            {"KOPILKA_TOKEN": "kop_x_y"},
            "KOPILKA_TOKEN is set but no server is named: give its --url (or KOPILKA_URL),"
            " or unset KOPILKA_TOKEN to use the ledger on this machine",
        ),
        (
            ("shell", "--sandbox", "--token=kop_x_y"),
            {},
            "--token is for a server: give its --url (or KOPILKA_URL)",
        ),
        (
            ("token", "create", "--role=teller", "--token=kop_x_y"),
            {},
            "--token is for a server: give its --url (or KOPILKA_URL)",
        ),
    ],
)
def test_a_token_with_no_server_named_is_refused_and_no_local_ledger_is_touched(
    kopilka: RunKopilka,
    kopilka_home: Path,
    arguments: tuple[str, ...],
    env: dict[str, str],
    told: str,
) -> None:
    """A token is for a server: run on this machine's own ledger instead, a deposit would
    be done where no server sees it, and answered as done."""
    result = kopilka(*arguments, stdin="deposit --client=A --amount=5 --description=x\n", env=env)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"Error: {told}\n")
    assert not (kopilka_home / "kopilka.db").exists()


@pytest.mark.parametrize(
    ("arguments", "env", "told"),
    [
        (
            ("balance", "--client=A", "--db=books.db"),
            {"KOPILKA_URL": "http://127.0.0.1:9", "KOPILKA_TOKEN": "kop_x_y"},
            "KOPILKA_TOKEN is set but --db overrides KOPILKA_URL, so no server gets it: give"
            " the server's --url, or unset KOPILKA_TOKEN to use the ledger on this machine",
        ),
        (
            ("shell", "--token=kop_x_y"),
            {"KOPILKA_DB": "books.db"},
            "--token is for a server, but KOPILKA_DB overrides the url in {file}: give the"
            " server's --url",
        ),
        (
            ("token", "list"),
            {"KOPILKA_DB": "books.db", "KOPILKA_TOKEN": "kop_x_y"},
            "KOPILKA_TOKEN is set but KOPILKA_DB overrides the url in {file}, so no server"
            " gets it: give the server's --url, or unset KOPILKA_TOKEN to use the ledger on"
            " this machine",
        ),
    ],
)
def test_a_token_whose_server_a_database_overrides_is_refused_saying_so(
    kopilka: RunKopilka,
    kopilka_home: Path,
    arguments: tuple[str, ...],
    env: dict[str, str],
    told: str,
) -> None:
    """A server's URL set, and a database given at a stronger place: the refusal said no
    server was named and to set the URL that was set."""
    file = kopilka_home.parent / "kopilka.toml"
    file.write_text('url = "http://127.0.0.1:9"\n')
    result = kopilka(*arguments, stdin="balance --client=A\n", env=env)
    told = told.format(file=file)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"Error: {told}\n")
    assert not (kopilka_home.parent / "books.db").exists()


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("shelll", "shell"), ("Shell", "shell"), ("serv", "serve"), ("tokn", "token")],
)
def test_a_mistyped_program_command_suggests_it(
    kopilka: RunKopilka, typed: str, meant: str
) -> None:
    """`kopilka shelll` was told `did you mean 'help'?`, and `kopilka serv` nothing: the
    commands of kopilka itself were left out of those it suggests."""
    result = kopilka(typed)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"Error: unknown command {typed!r}; did you mean {meant!r}?\n"


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("--sandbx", "--sandbox"), ("--urll=8888", "--url"), ("--Token", "--token")],
)
def test_a_mistyped_shell_option_is_named_with_the_one_meant(
    kopilka: RunKopilka, kopilka_home: Path, typed: str, meant: str
) -> None:
    """It printed the bare usage, leaving the typist to find the wrong word; nothing is
    begun (no home made for a shell that never ran)."""
    result = kopilka("shell", typed, stdin="deposit --client=A --amount=1 --description=x\n")
    spelling = typed.partition("=")[0]
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: kopilka shell has no option {spelling}; did you mean {meant}?\n"
    )
    assert not kopilka_home.exists()


@pytest.mark.parametrize(
    ("order", "refusal"),
    [
        (("--sandbox", "--ledger=books"), "--ledger: a sandbox is a ledger of its own"),
        (("--ledger=books", "--sandbox"), "--ledger: a sandbox is a ledger of its own"),
        (("--sandbox", "--db=books.db"), "--db: a sandbox is a ledger of its own"),
    ],
)
def test_a_sandbox_and_a_ledger_named_at_once_are_refused(
    kopilka: RunKopilka, kopilka_home: Path, order: tuple[str, str], refusal: str
) -> None:
    """The deposit was said done, in a sandbox dropped as the session ended: nothing
    landed in the ledger or database named, and nothing said that it would not."""
    deposit = "deposit --client=Q --amount=1 --description=x\n"
    result = kopilka("shell", *order, stdin=deposit)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"Error: give either --sandbox or {refusal}\n"
    assert not kopilka_home.exists()


def _listen_as_nobody(port: int) -> tuple[int, int]:
    """A listener on `port` owned by the user nobody (a child forked and made nobody, as
    no interpreter path need be open to that user): (its pid, a pipe that gives what the
    first connection to it sent)."""
    ready, ready_writer = os.pipe()
    heard, heard_writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nothing but sockets and the pipes, then out
        try:
            os.setgid(65534)
            os.setuid(65534)
            listening = socket.socket()
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind(("127.0.0.1", port))
            listening.listen()
            os.write(ready_writer, b"1")
            listening.settimeout(5)
            connection, _ = listening.accept()
            connection.settimeout(2)
            os.write(heard_writer, connection.recv(65536))
        finally:
            os._exit(0)
    os.close(ready_writer)
    os.close(heard_writer)
    assert os.read(ready, 1) == b"1"
    os.close(ready)
    return pid, heard


@pytest.mark.skipif(os.geteuid() != 0, reason="a listener of another user is started as root")
def test_the_admin_token_is_not_sent_to_another_users_listener_on_loopback(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """While this user's server is down, anyone on the machine may take its port: the home's
    admin token, sent to any server on loopback, was handed to them."""
    kopilka_home.mkdir(parents=True)
    (kopilka_home / "admin.token").write_text("kop_0123456789abcdef_secret\n")
    port = free_port()
    pid, heard = _listen_as_nobody(port)
    try:
        result = kopilka("balance", "--client=A", "--url", str(port))
    finally:
        os.kill(pid, signal.SIGKILL)  # it waits for a connection that should not come
        os.waitpid(pid, 0)
        sent = os.read(heard, 65536)
        os.close(heard)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: no token for http://127.0.0.1:{port}: the server listening on port {port}"
        f" runs as another user (uid 65534), and the admin token in {kopilka_home} goes only"
        " to this user's; give --token or KOPILKA_TOKEN\n"
    )
    assert b"secret" not in sent


@pytest.mark.skipif(os.geteuid() != 0, reason="a listener of another user is started as root")
def test_a_shell_whose_server_stops_does_not_hand_the_admin_token_to_the_next_listener(
    kopilka_home: Path,
) -> None:
    """Looked at only as the shell began, the port's owner changed while the server was
    down: the next command sent the admin token to whoever had taken the port."""
    with running_server(kopilka_home) as server:
        shell = subprocess.Popen(
            [*kopilka_command(), "shell", "--url", str(server.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=kopilka_env(kopilka_home),
            cwd=kopilka_home.parent,
        )
        assert shell.stdin is not None and shell.stdout is not None
        shell.stdin.write("accounts\n")
        shell.stdin.flush()
        assert shell.stdout.readline() == "No accounts yet.\n"
        assert server.stop() == 0
    pid, heard = _listen_as_nobody(server.port)
    try:
        said, _ = shell.communicate("accounts\n", timeout=30)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        sent = os.read(heard, 65536)
        os.close(heard)
    assert said == (
        f"Error: no token for http://127.0.0.1:{server.port}: the server listening on port"
        f" {server.port} runs as another user (uid 65534), and the admin token in"
        f" {kopilka_home} goes only to this user's; give --token or KOPILKA_TOKEN\n"
    )
    assert b"Bearer" not in sent


@pytest.mark.skipif(os.geteuid() != 0, reason="a listener of another user is started as root")
def test_a_listener_opened_between_the_look_and_the_connection_gets_no_admin_token(
    kopilka_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looked at only before connecting, a port another user's listener took in between
    (opened and closed in a loop, it won one try in five) was handed the admin token."""
    import kopilka.client_home_token
    from kopilka.client import connect_bank

    kopilka_home.mkdir(parents=True)
    (kopilka_home / "admin.token").write_text("kop_0123456789abcdef_secret\n")
    monkeypatch.setenv("KOPILKA_HOME", str(kopilka_home))
    # Every look before connecting finds the port free, as it was a moment before.
    monkeypatch.setattr(kopilka.client_home_token, "_another_users_listener", lambda _: None)
    port = free_port()
    pid, heard = _listen_as_nobody(port)
    try:
        with (
            connect_bank(f"http://127.0.0.1:{port}", ledger="main") as bank,
            pytest.raises(Unauthorized) as refused,
        ):
            bank.account("Ann")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        sent = os.read(heard, 65536)
        os.close(heard)
    assert refused.value.message == (
        f"no token for http://127.0.0.1:{port}: the connection to it was taken by another"
        f" user (uid 65534), and the admin token in {kopilka_home} goes only to this user's"
        " server; nothing was sent: give --token or KOPILKA_TOKEN"
    )
    assert sent == b""


def test_the_home_tokens_listener_is_looked_at_per_connection_not_per_request(
    kopilka_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading every TCP socket's row took milliseconds a request (a script of 500
    commands over the network: 4.4 s with the home's token, 0.65 s with --token). A
    connection kept open stays with the process that accepted it: looked at once."""
    import kopilka.client_home_token
    from kopilka.client import connect_bank

    looks: list[int] = []
    look = kopilka.client_home_token._another_users_listener

    def counted(port: int) -> int | None:
        looks.append(port)
        return look(port)

    with running_server(kopilka_home) as server:
        monkeypatch.setenv("KOPILKA_HOME", str(kopilka_home))
        monkeypatch.setattr(kopilka.client_home_token, "_another_users_listener", counted)
        with connect_bank(server.url, ledger="main") as bank:  # the home's admin token
            for _ in range(20):
                bank.deposit("Ann", 100, "pay")
            assert bank.account("Ann").balance_cents == 2_000
    # As the token was read, and as the one connection was opened.
    assert looks == [server.port, server.port]


def test_a_bare_port_suggests_the_shell_on_that_port(kopilka: RunKopilka) -> None:
    """`kopilka shell 8889` opens a shell on the server at that port; `kopilka 8889` was
    told only to type 'help'."""
    result = kopilka("8889")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: unknown command '8889'; for a shell on the server at port 8889 of this"
        " machine, run 'kopilka shell 8889'\n"
    )
