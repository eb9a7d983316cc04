"""The shell over the network: every scenario of the embedded shell, against a real server."""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import kopilka_env, run_kopilka, shell_runner
from tests.e2e.scenarios import SCENARIOS, Scenario, check, run_scenarios
from tests.e2e.test_shell_embedded import Terminal
from tests.kopilka_server import (
    ServerProcess,
    free_port,
    kopilka_command,
    running_server,
    server_env,
)
from tests.local_listener import serving
from tests.silent_server import silent_server

from kopilka.api.sandbox import SANDBOXES_PER_TOKEN_MAX
from kopilka.bank import EmbeddedBank


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("network") / "home") as server:
        yield server


@pytest.fixture(scope="module")
def scenario_outputs(server: ServerProcess) -> dict[str, list[str]]:
    """All scenarios in one network shell session; the shell reads the server's admin.token."""
    return run_scenarios(shell_runner(server.home, "--url", server.url), SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
def test_scenario_over_the_network(
    scenario: Scenario, scenario_outputs: dict[str, list[str]]
) -> None:
    check(scenario, scenario_outputs[scenario.name])


def test_a_sandbox_session_leaves_nothing_behind(server: ServerProcess) -> None:
    typed = 'deposit --client="Sandra" --amount=5 --description=x\nbalance --client="Sandra"\n'
    result = run_kopilka(server.home, "shell", "--url", server.url, "--sandbox", stdin=typed)
    assert result.returncode == 0, result.stderr
    assert "$5.00" in result.stdout
    with server.client() as admin:
        assert admin.get("/v1/accounts/Sandra").status_code == 404


def test_clients_named_with_dots_are_reached_by_name(tmp_path: Path) -> None:
    """'.' and '..' are dot segments in a path: sent as they are, they named /v1/accounts
    or another endpoint instead of the client. No new account takes such a name, but one
    opened under it before is reached as ever."""
    database = tmp_path / "kopilka.db"
    with EmbeddedBank(str(database)) as bank:
        for name in ("one dot", "two dots", "..."):
            bank.deposit(name, 100, "x")
    with sqlite3.connect(database) as connection:  # as a kopilka before the rule made them
        connection.execute("UPDATE accounts SET client = '.' WHERE client = 'one dot'")
        connection.execute("UPDATE accounts SET client = '..' WHERE client = 'two dots'")
    connection.close()
    typed = "".join(
        f"deposit --client={name} --amount=1 --description=x\nbalance --client={name}\n"
        f"statement --client={name}\n"
        for name in (".", "..", "...")
    )
    with running_server(tmp_path / "home", str(database)) as server:
        result = run_kopilka(server.home, "shell", "--url", server.url, stdin=typed)
        assert (result.returncode, result.stderr) == (0, "")
        for name in (".", "..", "..."):
            assert f"Balance of {name}: $2.00\n" in result.stdout
        assert "Error" not in result.stdout
        new = run_kopilka(
            server.home, "shell", "--url", server.url, "--sandbox", stdin=typed.split("\n")[0]
        )
    assert (new.returncode, new.stdout) == (
        0,
        "Error: a new client's name may not be '.' or '..', which a URL's path reads as"
        " folders: '.'\n",
    )


def test_a_key_no_header_can_carry_is_refused_before_anything_is_sent(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Over the network and embedded alike: one command, one answer, wherever it runs."""
    deposit = ("deposit", "--client=Kay", "--amount=1", "--description=x")
    for where in (("--url", server.url), ("--db", str(tmp_path / "embedded.db"))):
        for key in ("ключ", "K2 ", " K2"):
            result = run_kopilka(server.home, *deposit, *where, f"--idempotency-key={key}")
            assert (result.returncode, result.stdout) == (1, "")
            assert result.stderr == (
                "Error: an idempotency key is printable ASCII text without spaces at its ends\n"
            )
        marked = run_kopilka(server.home, *deposit, *where, "--idempotency-key=client/k")
        assert (marked.returncode, marked.stdout) == (1, "")
        assert "may not begin with 'client/'" in marked.stderr
    with server.client() as admin:
        assert admin.get("/v1/accounts/Kay").status_code == 404


def test_a_bare_port_reaches_the_server(server: ServerProcess, tmp_path: Path) -> None:
    result = run_kopilka(server.home, "shell", str(server.port), stdin='balance --client="Nope"\n')
    assert result.returncode == 0, result.stderr
    assert "Error: no account for client 'Nope'" in result.stdout


def test_two_ports_given_to_serve_are_refused(tmp_path: Path) -> None:
    result = run_kopilka(tmp_path / "home", "serve", "47605", "--port", "47604")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: two ports given, 47605 and --port 47604: give one (see kopilka serve --help)\n"
    )


def test_a_port_in_other_digits_is_a_usage_error(tmp_path: Path) -> None:
    for command in (
        ("shell", "\u00b2"),
        ("shell", "\uff12\uff10"),
        ("serve", "\u00b2"),
        ("serve", "--port", "\uff12\uff10\uff15\uff10\uff11"),
        ("serve", "--workers", "\uff12"),
    ):
        result = run_kopilka(tmp_path / "home", *command)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert result.stderr.count("\n") <= 2, result.stderr  # argparse: usage, then error


def test_a_ledger_flag_reaches_the_server(server: ServerProcess) -> None:
    deposit = ("deposit", "--client=Lena", "--amount=7", "--description=x")
    result = run_kopilka(server.home, "--url", server.url, "--ledger", "branch-2", *deposit)
    assert result.returncode == 0, result.stderr
    with server.client(**{"Kopilka-Ledger": "branch-2"}) as branch:
        assert branch.get("/v1/accounts/Lena").json()["balance"] == "7.00"
    with server.client() as main:
        assert main.get("/v1/accounts/Lena").status_code == 404


def test_a_home_s_admin_token_another_server_refuses_is_named(
    server: ServerProcess, tmp_path: Path
) -> None:
    """'invalid token' alone, for the token read from a home whose server is another:
    nothing said which token was sent, or where it was read."""
    other_home = tmp_path / "other-home"
    other_home.mkdir(mode=0o700)
    token_file = other_home / "admin.token"
    token_file.write_text("kop_0123456789abcdef_another\n")
    token_file.chmod(0o600)
    result = run_kopilka(other_home, "balance", "--client=Ann", "--url", server.url)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: invalid token (the admin token in {token_file}: is the server at"
        f" {server.url} another home's?)\n"
    )


def test_a_shell_with_a_token_the_server_refuses_ends_at_once(server: ServerProcess) -> None:
    typed = 'deposit --client="Eve" --amount=5 --description=x\n'
    token = "kop_0123456789abcdef_forged"
    result = run_kopilka(server.home, "shell", "--url", server.url, "--token", token, stdin=typed)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "Error: invalid token\n")
    with server.client() as admin:
        assert admin.get("/v1/accounts/Eve").status_code == 404


def test_a_shell_on_a_ledger_its_token_may_not_use_ends_at_once(server: ServerProcess) -> None:
    with server.client() as admin:
        made = admin.post("/v1/tokens", json={"role": "teller"}).json()  # bound to main
    typed = 'deposit --client="Eve" --amount=5 --description=x\n'
    arguments = ("--url", server.url, "--token", made["secret"], "--ledger", "elsewhere")
    result = run_kopilka(server.home, "shell", *arguments, stdin=typed)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "Error: this token may not use ledger 'elsewhere'\n"


def test_a_shell_given_a_url_with_a_path_the_server_lacks_ends_at_once(
    server: ServerProcess,
) -> None:
    result = run_kopilka(
        server.home, "shell", "--url", server.url + "/bank", stdin="balance --client=Ann\n"
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"Error: the server at {server.url}/bank has no kopilka API")
    assert result.stderr.count("\n") == 1


def test_whoami_tells_a_token_its_binding(server: ServerProcess) -> None:
    with server.client() as admin:
        admin.post("/v1/deposits", json={"client": "Wes", "amount": "1", "open_account": True})
        made = admin.post("/v1/tokens", json={"role": "client", "client": "Wes"}).json()
        assert admin.get("/v1/whoami").json()["role"] == "admin"
    with server.client(made["secret"]) as wes:
        assert wes.get("/v1/whoami").json() == {
            "token_id": made["id"],
            "role": "client",
            "ledger": "main",
            "client": "Wes",
        }
    with server.client("kop_0123456789abcdef_forged") as forger:
        assert forger.get("/v1/whoami").status_code == 401


def test_a_client_token_moves_its_own_money_through_the_shell(server: ServerProcess) -> None:
    """A client token's answers leave out the payee's balance; the shell needs none."""
    with server.client() as admin:
        for client in ("Payer", "Payee"):
            opened = admin.post(
                "/v1/deposits", json={"client": client, "amount": "10", "open_account": True}
            )
            assert opened.status_code == 201, opened.text
        made = admin.post("/v1/tokens", json={"role": "client", "client": "Payer"}).json()
    typed = (
        'transfer --from="Payer" --to="Payee" --amount=4 --description=rent\n'
        'withdraw --client="Payer" --amount=1 --description=cash\n'
        'balance --client="Payer"\n'
    )
    token = ("--url", server.url, "--token", made["secret"])
    result = run_kopilka(server.home, "shell", *token, stdin=typed)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.splitlines() == [
        "Transfer operation was successful!",
        "Withdrawal operation was successful!",
        "Balance of Payer: $5.00",
    ]
    once = ("transfer", "--from=Payer", "--to=Payee", "--amount=1", "--description=x")
    result = run_kopilka(server.home, *once, *token)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    with server.client() as admin:
        assert admin.get("/v1/accounts/Payee").json()["balance"] == "15.00"


def test_a_shell_pointed_at_another_kind_of_server_ends_at_once(tmp_path: Path) -> None:
    port = free_port()
    other = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "http.server did not start"
            time.sleep(0.05)
        typed = 'balance --client="Ann"\naccounts\n'
        url = f"http://127.0.0.1:{port}"
        token = ("--token", "kop_0123456789abcdef_unused")
        result = run_kopilka(tmp_path / "home", "shell", "--url", url, *token, stdin=typed)
        no_page = run_kopilka(tmp_path / "home", "balance", "--client=Ann", "--url", url, *token)
        # A page where an account would be: 200, and not kopilka's answer.
        (tmp_path / "v1" / "accounts").mkdir(parents=True)
        (tmp_path / "v1" / "accounts" / "Ann").write_text("<html>hi</html>\n")
        (tmp_path / "v1" / "whoami").write_text('{"role": "admin", "ledger": "main"}\n')
        account = '{"client": "%s", "balance": %s, "min_balance": "0.00", "max_balance": null,'
        account += ' "created_at": "2024-01-31T18:30:00+00:00"}\n'
        (tmp_path / "v1" / "accounts" / "Bob").write_text(account % ("Bob", "5"))
        (tmp_path / "v1" / "accounts" / "Cy").write_text(account % ("Cy", '"lots"'))
        odd = [
            run_kopilka(tmp_path / "home", "balance", f"--client={name}", "--url", url, *token)
            for name in ("Bob", "Cy")
        ]
        with_password = url.replace("//", "//me:S3cretPW@")
        refused_url = run_kopilka(
            tmp_path / "home", "balance", "--client=Ann", "--url", with_password, *token
        )
        one_shot = run_kopilka(tmp_path / "home", "balance", "--client=Ann", "--url", url, *token)
        piped = run_kopilka(tmp_path / "home", "shell", "--url", url, *token, stdin=typed)
    finally:
        other.terminate()
        other.wait(timeout=10)
    # What answered is named, and said not to be kopilka: the status alone left someone
    # who typed the wrong port to guess.
    not_there = (
        f"Error: the server at {url} answered 404 without an error body:"
        " the answer is not kopilka's\n"
    )
    for refused in (result, no_page):
        assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", not_there)
    not_kopilka = (
        f"Error: the server at {url} answered 200 with something other than kopilka's"
        " answer (TypeError)\n"
    )
    assert (one_shot.returncode, one_shot.stdout, one_shot.stderr) == (1, "", not_kopilka)
    # An answer of the right shape with a balance that is no amount is the server's fault.
    for result, fault in zip(odd, ("AttributeError", "InvalidInput"), strict=True):
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == not_kopilka.replace("TypeError", fault)
    # A password in the server's URL is refused, and never shown back.
    assert refused_url.stderr == (
        f"Error: invalid server URL {url.replace('//', '//me:***@')!r}: it may carry no user or"
        " password; give the token with --token or KOPILKA_TOKEN\n"
    )
    assert (piped.returncode, piped.stderr) == (0, "")
    # The accounts page is a directory now: a redirect, which no kopilka server sends.
    assert piped.stdout == not_kopilka + (
        f"Error: the server at {url} answered 301, a redirect (to '/v1/accounts/?limit=1000')"
        " that kopilka never sends: check the URL; nothing was applied\n"
    )


def _banner(server: ServerProcess, *arguments: str) -> str:
    """The first line a terminal shows for `kopilka shell ARGUMENTS` (then `exit`)."""
    import os
    import pty

    from tests.e2e.conftest import kopilka_command, kopilka_env

    leader, follower = pty.openpty()
    with subprocess.Popen(
        [*kopilka_command(), "shell", *arguments],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=kopilka_env(server.home),
        cwd=server.home.parent,
    ) as process:
        os.close(follower)
        seen = b""
        deadline = time.monotonic() + 30
        while b"\n" not in seen and time.monotonic() < deadline:
            seen += os.read(leader, 4096)
        os.write(leader, b"exit\n")
        process.wait(timeout=30)
        os.close(leader)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode())  # the terminal's styles
    return shown.splitlines()[0]


def test_a_terminal_shell_names_the_ledger_its_commands_go_to(server: ServerProcess) -> None:
    """A sandbox's ledger, a token's own ledger, or the one named: never 'main' by default."""
    assert _banner(server, "--url", server.url) == f"kopilka shell on {server.url}, ledger 'main'."
    by_port = _banner(server, "--url", str(server.port))  # named as it is reached
    assert by_port == f"kopilka shell on http://127.0.0.1:{server.port}, ledger 'main'."
    sandbox = _banner(server, "--url", server.url, "--sandbox")
    assert sandbox.startswith(f"kopilka shell on {server.url}, ledger 'sandbox-")
    with server.client() as admin:
        made = admin.post("/v1/tokens", json={"role": "teller", "ledger": "branch"}).json()
    teller = ("--url", server.url, "--token", made["secret"])
    assert _banner(server, *teller) == f"kopilka shell on {server.url}, ledger 'branch'."
    named = _banner(server, "--url", server.url, "--ledger", "other")
    assert named == f"kopilka shell on {server.url}, ledger 'other'."


def test_a_server_on_this_machine_is_reached_without_the_environments_proxy(
    server: ServerProcess,
) -> None:
    """The home's admin token goes only to a server on this machine: a proxy named in
    HTTP_PROXY never sees it."""
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        proxy.settimeout(0.5)
        address = f"http://127.0.0.1:{proxy.getsockname()[1]}"
        environment = {"HTTP_PROXY": address, "http_proxy": address, "ALL_PROXY": address}
        result = run_kopilka(server.home, "accounts", "--url", server.url, env=environment)
        assert (result.returncode, result.stderr) == (0, "")
        with pytest.raises(TimeoutError):
            proxy.accept()  # nothing ever came


def test_a_server_url_with_a_user_or_password_is_refused(server: ServerProcess) -> None:
    """The HTTP library would send them in place of the token."""
    url = server.url.replace("http://", "http://user:pw@")
    result = run_kopilka(server.home, "accounts", "--url", url)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: invalid server URL {url.replace(':pw@', ':***@')!r}: it may carry no user or"
        " password; give the token with --token or KOPILKA_TOKEN\n"
    )


ENDING_SIGNALS = [signal.SIGHUP, signal.SIGTERM]


def _own_token(server: ServerProcess) -> str:
    """A new admin token: the sandboxes it holds are this test's alone."""
    with server.client() as admin:
        secret: str = admin.post("/v1/tokens", json={"role": "admin"}).json()["secret"]
    return secret


def _assert_holds_no_sandbox(server: ServerProcess, token: str) -> None:
    """Every sandbox a token may hold is still to be had: none is left from its session."""
    with server.client(token) as caller:
        made = [caller.post("/v1/sandboxes") for _ in range(SANDBOXES_PER_TOKEN_MAX)]
        assert [answer.status_code for answer in made] == [201] * SANDBOXES_PER_TOKEN_MAX
        for answer in made:
            assert caller.delete(f"/v1/sandboxes/{answer.json()['ledger']}").status_code == 204


@pytest.mark.parametrize("signum", ENDING_SIGNALS, ids=lambda signum: signum.name)
def test_a_piped_sandbox_shell_ended_by_a_signal_drops_its_sandbox(
    server: ServerProcess, signum: signal.Signals
) -> None:
    """SIGHUP (an SSH link dropped) or SIGTERM ends the session as the end of its input
    does, quietly: a sandbox left to the idle timeout counts against the token, which
    after a few such sessions was refused new ones."""
    token = _own_token(server)
    with subprocess.Popen(
        [*kopilka_command(), "shell", "--sandbox", "--url", server.url, "--token", token],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server_env(server.home),
    ) as shell:
        assert shell.stdin is not None and shell.stdout is not None
        shell.stdin.write("deposit --client=Sig --amount=1 --description=x\n")
        shell.stdin.write("balance --client=Sig\n")  # a read: ended, it has nothing to say
        shell.stdin.flush()
        assert shell.stdout.readline() == "Deposit operation was successful!\n"
        assert shell.stdout.readline() == "Balance of Sig: $1.00\n"
        shell.send_signal(signum)  # it waits for its next line
        out, errors = shell.communicate(timeout=60)
    assert (shell.returncode, out, errors) == (128 + signum, "", "")
    _assert_holds_no_sandbox(server, token)


@pytest.mark.parametrize("signum", ENDING_SIGNALS, ids=lambda signum: signum.name)
def test_a_terminal_sandbox_shell_ended_by_a_signal_drops_its_sandbox(
    server: ServerProcess, signum: signal.Signals
) -> None:
    """At the prompt as in a pipe; and the terminal is left as the prompt found it."""
    token = _own_token(server)
    terminal = Terminal(server.home, "shell", "--sandbox", "--url", server.url, "--token", token)
    modes = terminal.local_modes()
    try:
        terminal.expect("'exit' or Ctrl-D to leave.")
        terminal.send("deposit --client=Sig --amount=1 --description=x\r")
        terminal.expect("Deposit operation was successful!")
        terminal.expect(">")
        # What a closing terminal sends (this one is no controlling terminal), or a kill.
        terminal.process.send_signal(signum)
        terminal.process.wait(timeout=60)
        assert terminal.local_modes() == modes  # not left without echo, in raw mode
    finally:
        assert terminal.close() == 128 + signum
    _assert_holds_no_sandbox(server, token)


def _server_that_hangs_up() -> contextlib.AbstractContextManager[str]:
    """Takes each request whole, then closes the connection without an answer: a server
    that died while it committed, as far as its caller can tell."""

    def take_the_request(connection: socket.socket) -> None:
        received = b""
        while b"\r\n\r\n" not in received:
            received += connection.recv(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        while length and len(body) < int(length[1]):
            body += connection.recv(65536)

    return serving(take_the_request)


def test_a_write_whose_answer_was_lost_exits_4_not_1(tmp_path: Path) -> None:
    """1 says refused, nothing changed: a script may then repeat it. A write that may have
    been applied says so, and exits 4."""
    with _server_that_hangs_up() as url:
        target = ("--url", url, "--token", "kop_x_y", "--ledger", "main")
        for command in (
            ("deposit", "--client=Ann", "--amount=1", "--description=x"),
            ("transfer", "-f", "Ann", "-t", "Bob", "1"),
            ("add-user", "-n", "Cy", "--max", "10"),
        ):
            result = run_kopilka(tmp_path / "home", *command, *target)
            assert (result.returncode, result.stdout) == (4, ""), result.stderr
            assert "whether this was applied is not known" in result.stderr
        read = run_kopilka(tmp_path / "home", "balance", "--client=Ann", *target)
        assert read.returncode == 1, read.stderr
        # The key to retry with is written as it can be typed back.
        deposit = ("deposit", "--client=Ann", "--amount=1", "--description=x")
        keyed = run_kopilka(
            tmp_path / "home", *deposit, '--idempotency-key=pay "rent" dec', *target
        )
        assert keyed.returncode == 4, keyed.stderr
        assert keyed.stderr.endswith("(to retry it safely: --idempotency-key='pay \"rent\" dec')\n")


def test_a_write_never_sent_names_no_key_to_retry_it_with(tmp_path: Path) -> None:
    """Nothing listens there: the deposit was never sent, and a retry needs no key; 'to
    retry it safely: --idempotency-key=...' said that it might have been applied."""
    url = f"http://127.0.0.1:{free_port()}"
    deposit = ("deposit", "--client=Ann", "--amount=1", "--description=x")
    result = run_kopilka(tmp_path / "home", *deposit, "--url", url, "--token", "kop_x_y")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"Error: cannot reach the server at {url}: ")
    assert "idempotency-key" not in result.stderr, result.stderr


@pytest.mark.parametrize("signum", ENDING_SIGNALS, ids=lambda signum: signum.name)
def test_a_one_shot_write_ended_by_a_signal_says_it_may_have_been_applied(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """A `timeout`, a closed terminal: as Ctrl-C, the write may be on its way."""
    home = tmp_path / "home"
    home.mkdir()
    written = "Error: interrupted; the command may still have been applied"
    with silent_server() as server:
        token_made = (
            "Error: interrupted; it may still have been done: look with"
            f" `kopilka token list --url={server.url} --token=TOKEN`"
        )
        target = ("--url", server.url, "--token", "kop_x_y")
        for command, told in (
            (
                ("deposit", "--client=Ann", "--amount=1", "--description=x", "--ledger=main"),
                written,
            ),
            (("balance", "--client=Ann", "--ledger=main"), ""),  # a read applies nothing
            (("token", "create", "--role", "teller"), token_made),
            (("token", "list"), ""),
            # Still looking whether the token is there: no revocation was asked for.
            (("token", "revoke", "abcdef"), "Error: interrupted; nothing was done\n"),
        ):
            before = len(server.taken)
            process = subprocess.Popen(
                [*kopilka_command(), *command, *target],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=server_env(home),
                cwd=tmp_path,
            )
            deadline = time.monotonic() + 20
            while len(server.taken) == before:  # the request is on its way
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.3)
            process.send_signal(signum)
            out, err = process.communicate(timeout=30)
            assert (process.returncode, out) == (128 + signum, ""), err
            assert err.startswith(told) if told else err == "", err
            if told.endswith("\n"):
                assert err == told


def test_a_short_loopback_address_takes_the_homes_admin_token(tmp_path: Path) -> None:
    """`127.1` is 127.0.0.1 to the resolver: a server on this machine, as the long form."""
    with running_server(tmp_path / "home") as server:
        for host in ("127.1", "127.0.0.1"):
            url = f"http://{host}:{server.port}"
            result = run_kopilka(server.home, "get", "--url", url)
            assert (result.returncode, result.stdout, result.stderr) == (
                0,
                "No accounts yet.\n",
                "",
            ), host


def test_a_statement_of_an_hour_the_clocks_skip_is_empty_over_the_network_too(
    server: ServerProcess, tmp_path: Path
) -> None:
    """The shell sends the empty period as instants (since a microsecond after till):
    the server reads it as the embedded bank does."""
    new_york = {"TZ": "EST5EDT,M3.2.0,M11.1.0"}
    opened = run_kopilka(
        server.home,
        "deposit",
        "--client=Skip",
        "--amount=1",
        "--description=x",
        "--url",
        server.url,
    )
    assert opened.returncode == 0, opened.stderr
    period = ("--since", "2026-03-08 02:00", "--till", "2026-03-08 02:59")
    result = run_kopilka(
        server.home,
        "statement",
        "--client=Skip",
        *period,
        "--format=csv",
        "--url",
        server.url,
        env=new_york,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.splitlines()[-1].startswith(",Totals,0.00,0.00,")


def test_tab_does_not_hold_the_prompt_while_the_server_does_not_answer(tmp_path: Path) -> None:
    """A server frozen (stopped, or stuck): completing a name held the prompt, the keys
    typed and Ctrl-C with them, for the client's whole timeout, twice over."""
    with running_server(tmp_path / "home") as server:
        terminal = Terminal(server.home, "shell", "--url", server.url)
        try:
            terminal.expect("'exit' or Ctrl-D to leave.")
            terminal.send("deposit --client=Frozen --amount=1 --description=x\r")
            terminal.expect("Deposit operation was successful!")
            terminal.expect(">")
            assert server.process is not None
            server.process.send_signal(signal.SIGSTOP)
            try:
                terminal.send("balance --client=Fro\t")
                terminal.send("!")  # typed after the Tab: shown once the Tab is done
                terminal.expect("--client=Fro!", timeout_seconds=10)
            finally:
                server.process.send_signal(signal.SIGCONT)
            terminal.send("\x7fzen\r")  # the line as typed, mended, runs
            terminal.expect("Balance of Frozen: $1.00")
            terminal.expect(">")
            terminal.send("\x04")
            terminal.rest()
        finally:
            status = terminal.close()
    assert status == 0


def test_a_ctrl_c_while_the_sandbox_is_dropped_says_it_may_be_left(tmp_path: Path) -> None:
    """The server frozen as the session ends: a Ctrl-C while the shell waited for it to
    drop the sandbox ended with a bare ^C, the sandbox and its data left without a word."""
    with running_server(tmp_path / "home") as server:
        terminal = Terminal(server.home, "shell", "--sandbox", "--url", server.url)
        assert server.process is not None
        try:
            terminal.expect("'exit' or Ctrl-D to leave.")
            terminal.send("open_account --client=Left\r")
            terminal.expect("Account opened for Left")
            terminal.expect(">")
            server.process.send_signal(signal.SIGSTOP)
            try:
                terminal.send("\x04")  # the end of the session: the sandbox's drop is sent
                time.sleep(0.5)  # well within the 2 s it waits for the drop's answer
                terminal.process.send_signal(signal.SIGINT)
                shown = terminal.rest()
            finally:
                server.process.send_signal(signal.SIGCONT)
        finally:
            status = terminal.close()
    assert status == 130
    assert "Warning: the sandbox 'sandbox-" in shown, shown
    assert "' may not have been dropped (interrupted); the server drops it" in shown, shown


def test_a_sandbox_that_could_not_begin_says_to_try_again(tmp_path: Path) -> None:
    """Its request taken and no answer come (the connection broken): it was said
    "whether this was applied is not known: check before repeating it", exit 4, to
    a person who had run no command yet. A sandbox nobody uses is dropped when idle."""

    def hang_up(connection: socket.socket) -> None:
        connection.recv(65536)  # the request, taken; then the connection closes

    with serving(hang_up) as url:
        result = run_kopilka(
            tmp_path / "home", "shell", "--sandbox", "--url", url, "--token", "kop_x_y"
        )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"Error: the connection to the server at {url} broke")
    assert result.stderr.endswith("; no sandbox session began: try again\n"), result.stderr


def test_a_statement_in_json_is_the_apis_own(server: ServerProcess) -> None:
    """The shell's `--format=json` had a shape of its own (no operation_id, a null
    counterparty), drifted from the API's though it claimed to be the same."""
    for line in (
        "deposit --client=Jay --amount=10 --description=pay",
        "deposit --client=Kay --amount=1 --description=open",
        "transfer --from=Jay --to=Kay --amount=2.50 --description=rent",
    ):
        done = run_kopilka(server.home, *shlex.split(line), "--url", server.url)
        assert done.returncode == 0, done.stderr
    period = {"since": "2020-01-01", "till": "2100-01-01"}
    shown = run_kopilka(
        server.home,
        *("statement", "--client=Jay", "--format=json", "--url", server.url),
        *(f"--{name}={value}" for name, value in period.items()),
        env={"TZ": "UTC"},
    )
    assert shown.returncode == 0, shown.stderr
    with server.client() as api:
        answer = api.get("/v1/accounts/Jay/statement", params=period)
    assert answer.status_code == 200, answer.text
    assert json.loads(shown.stdout) == answer.json()
    deposit, transfer = json.loads(shown.stdout)["lines"]
    assert "counterparty" not in deposit and transfer["counterparty"] == "Kay"
    assert deposit["operation_id"] < transfer["operation_id"]


def test_a_shell_whose_memory_server_started_again_is_told_to_start_again(
    tmp_path: Path,
) -> None:
    """A server keeping its ledger in memory writes a new admin token as it starts again:
    the shell sent the one it read at its start, and was asked whether the server was
    "another home's", which sent the user looking for another home."""
    home = tmp_path / "home"
    server = ServerProcess(home, "memory:").start()
    try:
        with subprocess.Popen(
            [*kopilka_command(), "shell", str(server.port)],
            env=kopilka_env(home),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as shell:
            assert shell.stdin is not None and shell.stdout is not None
            shell.stdin.write('deposit --client="Ann" --amount=5 --description=x\n')
            shell.stdin.flush()
            assert shell.stdout.readline() == "Deposit operation was successful!\n"
            server.stop()
            server.start()  # on the same port, with a new token in the same file
            out, errors = shell.communicate('balance --client="Ann"\n', timeout=30)
    finally:
        server.stop()
    assert (out, errors) == (
        f"Error: invalid token (the admin token in {home / 'admin.token'} was read before the"
        " server started again and wrote a new one there: start again to read it)\n",
        "",
    )
