"""`kopilka token ... --url`: tokens managed through a real server's API, whose store
(memory) this machine cannot open."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import RUN_TIMEOUT_SECONDS, kopilka_command, kopilka_env, run_kopilka
from tests.kopilka_server import ServerProcess, free_port, running_server

from kopilka.client import connect_bank
from kopilka.domain.model import Deposit, Operation
from kopilka.errors import Forbidden, InvalidInput, NotFound

# One line of `kopilka token list`, from a server or from the local store alike.
LIST_LINE = re.compile(
    r"[0-9a-f]{16}  (admin |teller|client) ledger=\S+( client=.+)?  (active|revoked)"
    r"  created \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("tokens") / "home", db="memory:") as server:
        # The home's own ledger, for the token commands run without --url
        assert run_kopilka(server.home, "init").returncode == 0
        yield server


def token_command(
    server: ServerProcess, *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kopilka token ARGUMENTS` beside the server: its home holds the admin.token file."""
    return run_kopilka(server.home, "token", *arguments, env=env)


def created_token(result: subprocess.CompletedProcess[str], warned: str = "") -> tuple[str, str]:
    """(id, secret) from the output of `kopilka token create`; `warned`, its stderr."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == warned
    announcement, secret = result.stdout.splitlines()
    assert announcement.endswith("created; its secret, shown only once:")
    return announcement.split()[1], secret


_NO_ACCOUNT_YET = (
    "Warning: no account for client '{}' in ledger '{}' yet: the token speaks for the one"
    " opened under that name; revoke it if the name is not the one meant\n"
)


def test_a_client_token_made_over_url_works_until_revoked_over_url(
    server: ServerProcess,
) -> None:
    made = token_command(
        server, "create", "--role", "client", "--client", "John Jones", "--url", server.url
    )
    # Made before the account is opened, as may be meant: a mistyped name is warned of.
    token_id, secret = created_token(made, warned=_NO_ACCOUNT_YET.format("John Jones", "main"))
    assert made.stdout.startswith(f"token {token_id} (client) created")

    with server.client() as admin:
        assert admin.post("/v1/accounts", json={"client": "John Jones"}).status_code == 201
    # Once it is opened, another token for it is made without a word.
    created_token(
        token_command(
            server, "create", "--role", "client", "--client", "John Jones", "--url", server.url
        )
    )
    with server.client(secret) as john:
        answer = john.get("/v1/accounts/John%20Jones")
        assert answer.status_code == 200, answer.text
        assert answer.json()["client"] == "John Jones"

    listed = token_command(server, "list", "--url", server.url)
    assert listed.returncode == 0, listed.stderr
    assert all(LIST_LINE.fullmatch(line) for line in listed.stdout.splitlines()), listed.stdout
    line = next(line for line in listed.stdout.splitlines() if line.startswith(token_id))
    assert "client ledger=main client=John Jones  active  created " in line
    assert secret not in listed.stdout  # shown once, at creation, never listed

    revoked = token_command(server, "--url", server.url, "revoke", token_id)
    assert (revoked.returncode, revoked.stdout, revoked.stderr) == (
        0,
        f"token {token_id} revoked\n",
        "",
    )
    with server.client(secret) as john:
        answer = john.get("/v1/accounts/John%20Jones")
        assert answer.status_code == 401
        assert answer.json()["error"]["message"] == "this token has been revoked"

    listed = token_command(server, "list", "--url", server.url)
    assert "client=John Jones  revoked" in next(
        line for line in listed.stdout.splitlines() if line.startswith(token_id)
    )
    again = token_command(server, "revoke", token_id, "--url", server.url)
    assert (again.returncode, again.stderr) == (
        1,
        f"Error: token '{token_id}' was already revoked\n",
    )
    unknown = token_command(server, "revoke", "0000000000000000", "--url", server.url)
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "Error: token '0000000000000000' does not exist\n",
    )


def test_a_token_that_is_not_an_admins_gets_one_error_line(server: ServerProcess) -> None:
    _, teller = created_token(
        token_command(server, "create", "--role", "teller", "--url", server.url)
    )
    for arguments in (
        ("list",),
        ("create", "--role", "admin"),
        ("revoke", "0000000000000000"),
    ):
        refused = token_command(server, *arguments, "--url", server.url, "--token", teller)
        assert (refused.returncode, refused.stdout, refused.stderr) == (
            1,
            "",
            "Error: only an admin token may manage tokens\n",
        ), arguments

    unknown = token_command(server, "list", "--url", server.url, "--token", "kop_0_nothing")
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (
        1,
        "",
        "Error: invalid token\n",
    )


def test_the_url_and_token_may_come_from_the_environment(
    server: ServerProcess, tmp_path: Path
) -> None:
    # Another home: no admin.token file and no database of this server's to fall back on.
    elsewhere = tmp_path / "elsewhere"
    env = {"KOPILKA_URL": str(server.port), "KOPILKA_TOKEN": server.token}
    token_id, secret = created_token(
        run_kopilka(elsewhere, "token", "create", "--role", "teller", env=env)
    )
    with server.client(secret) as teller:
        assert teller.get("/v1/accounts").status_code == 200
    listed = run_kopilka(elsewhere, "token", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert token_id in listed.stdout
    assert not (elsewhere / "kopilka.db").exists()  # nothing was written locally


def test_a_server_that_cannot_be_reached_is_one_error_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = run_kopilka(tmp_path / "home", "token", "list", "--url", str(port), "--token", "x")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: cannot reach the server at http://127.0.0.1:{port}: ")
    assert result.stderr.count("\n") == 1


def test_db_beats_kopilka_url_as_elsewhere(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"KOPILKA_URL": str(free_port())}  # a server that is not there
    db = str(tmp_path / "local.db")
    assert run_kopilka(home, "init", "--db", db).returncode == 0
    token_id, _ = created_token(
        run_kopilka(home, "token", "create", "--role", "teller", "--db", db, env=env)
    )
    listed = run_kopilka(home, "token", "list", "--db", db, env=env)
    assert listed.returncode == 0, listed.stderr
    assert LIST_LINE.fullmatch(listed.stdout.strip()), listed.stdout
    assert listed.stdout.startswith(f"{token_id}  teller ledger=main  active  created ")


def test_a_token_is_not_made_in_a_database_that_is_not_there(tmp_path: Path) -> None:
    """A mistyped --db made a ledger there, and printed an admin token no server would
    honour, where `token list` on the same path said there was no database."""
    mistyped = tmp_path / "dbs" / "kopilka.bd"
    mistyped.parent.mkdir()
    made = run_kopilka(
        tmp_path / "home", "token", "create", "--role", "admin", "--db", str(mistyped)
    )
    assert (made.returncode, made.stdout) == (1, "")
    assert made.stderr == (
        f"Error: no database at {mistyped}: nothing has been written there (check --db,"
        " KOPILKA_DB or the db in kopilka.toml)\n"
    )
    assert list(mistyped.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ("token", "create", "--role", "bogus"),
            "Error: argument --role: invalid choice: 'bogus' (choose from 'admin', 'teller',"
            " 'client') (see kopilka token create --help)\n",
        ),
        (
            ("serve", "--bogus"),
            "Error: unrecognized arguments: --bogus (see kopilka serve --help)\n",
        ),
        # An option cut short was taken for the one it begins: `serve --por 1` served on
        # port 1 in the default home, where the other commands refuse one they do not know.
        (
            ("serve", "--por", "1"),
            "Error: unrecognized arguments: --por (see kopilka serve --help)\n",
        ),
        (
            ("token", "create", "--role", "client", "--cl", "Ann"),
            "Error: unrecognized arguments: --cl Ann (see kopilka token --help)\n",
        ),
    ],
)
def test_a_usage_mistake_is_one_error_line(
    tmp_path: Path, arguments: tuple[str, ...], message: str
) -> None:
    result = run_kopilka(tmp_path / "home", *arguments)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", message)
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    ("ledger", "why"),
    [
        ("", "a ledger name is 1 to 100 printable characters, without spaces at its ends"),
        ("sandbox-x", "a ledger named sandbox-... is a sandbox the server makes for one session"),
    ],
)
@pytest.mark.parametrize("before_create", [False, True])
def test_a_ledger_refused_is_named_as_a_global_one_is(
    tmp_path: Path, ledger: str, why: str, before_create: bool
) -> None:
    """Before any database is looked for: an empty one had been told there was no ledger
    in the home yet, and, with one, not which setting was refused."""
    given = ("--ledger", ledger)
    arguments = (*given, "create") if before_create else ("create", *given)
    result = run_kopilka(tmp_path / "home", "token", *arguments, "--role", "teller")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"Error: ledger {ledger!r} (--ledger): {why}"), result.stderr
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ("--body-seconds", "99999999"),
            "body_seconds must be above 0 and at most 3600, not 99999999 (--body-seconds)",
        ),
        # A negative number is a number, out of range: said so, not "no number".
        (
            ("--write-seconds", "-1"),
            "write_seconds must be above 0 and at most 3600, not -1 (--write-seconds)",
        ),
        (("--workers", "65"), "workers must be 1 to 64, not 65 (--workers)"),
        (("--port", "-1"), "port must be 1 to 65535, not -1 (--port)"),
        (("--port", "+1"), "port must be a whole number, not '+1' (--port)"),
        # Given bare, as given with --port, the same words.
        (("abc",), "port must be a whole number, not 'abc' (PORT)"),
        (("0",), "port must be 1 to 65535, not 0 (PORT)"),
        (("9" * 56,), f"port must be 1 to 65535, not {'9' * 40}... (PORT)"),
        # A malformed one beside a good one is refused as such, quoted, by itself.
        (("8080", "--port", "８０８０"), "port must be a whole number, not '８０８０' (--port)"),
        (
            ("--port", "8080", "80\x1b]0;x\x07\nError: fake"),
            "port must be a whole number, not '80\\x1b]0;x\\x07\\nError: fake' (PORT)",
        ),
        # One port written twice is one port: on to the next setting.
        (
            ("--port", "8080", "08080", "--workers", "0"),
            "workers must be 1 to 64, not 0 (--workers)",
        ),
        (
            ("--connections-per-client", "9" * 200),
            f"connections_per_client must be 1 to 1048576, not {'9' * 40}..."
            " (--connections-per-client)",
        ),
    ],
)
def test_a_server_s_bound_is_refused_as_it_was_typed(
    tmp_path: Path, arguments: tuple[str, ...], message: str
) -> None:
    """As the same value in a variable or the file is: it read "not 1e+08", and "invalid
    float value: '-1'" of a number."""
    result = run_kopilka(tmp_path / "home", "serve", *arguments)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"Error: {message}\n")
    assert not (tmp_path / "home").exists()


def test_a_token_id_as_typed_is_shown_on_one_line(server: ServerProcess) -> None:
    for token_id in ("a\nb", "\x1b[2Jx"):
        for where in (("--url", server.url), ()):
            refused = token_command(server, "revoke", token_id, *where)
            assert refused.returncode == 1
            assert refused.stderr == f"Error: token {token_id!r} does not exist\n", where


def test_a_token_given_empty_or_unsendable_is_refused_never_shown(
    server: ServerProcess,
) -> None:
    """An empty token is not the admin token taken in its stead (a variable meant to hold
    a narrower one, left unset); one a header cannot carry is refused before sending,
    and the refusal does not repeat the secret."""
    for arguments, env in (
        (("--token", ""), None),
        ((), {"KOPILKA_TOKEN": ""}),
    ):
        refused = token_command(server, "list", "--url", server.url, *arguments, env=env)
        assert (refused.returncode, refused.stdout) == (1, ""), refused
        assert refused.stderr == (
            "Error: the token is empty: give a token, or none for the admin token\n"
        )
    for secret in (server.token + " ", " " + server.token, server.token + "\t"):
        refused = token_command(server, "list", "--url", server.url, "--token", secret)
        assert (refused.returncode, refused.stdout) == (1, "")
        assert refused.stderr.startswith("Error: invalid token: a token is printable ASCII")
        assert server.token not in refused.stderr
        shell = run_kopilka(server.home, "shell", "--url", server.url, "--token", secret)
        assert shell.returncode == 1 and server.token not in shell.stderr + shell.stdout


def test_a_ledger_given_is_asked_for_main_too(server: ServerProcess) -> None:
    """A token bound to another ledger is refused main when main is named, as over the
    API, not let write to its own ledger as though none were."""
    _, teller = created_token(
        token_command(
            server, "create", "--role", "teller", "--ledger", "branch", "--url", server.url
        )
    )
    deposit = ("deposit", "--client=Ledger Test", "--amount=7", "--description=x")
    for chosen, env in ((("--ledger", "main"), None), ((), {"KOPILKA_LEDGER": "main"})):
        refused = run_kopilka(
            server.home, *deposit, *chosen, "--url", server.url, "--token", teller, env=env
        )
        assert (refused.returncode, refused.stderr) == (
            1,
            "Error: this token may not use ledger 'main'\n",
        )
    own = run_kopilka(server.home, *deposit, "--url", server.url, "--token", teller)
    assert own.returncode == 0, own.stderr
    with server.client() as admin:
        assert admin.get("/v1/accounts/Ledger%20Test").status_code == 404
        branch = admin.get("/v1/accounts/Ledger%20Test", headers={"Kopilka-Ledger": "branch"})
        assert branch.json()["balance"] == "7.00"


def test_a_token_made_over_url_with_no_ledger_chosen_is_for_the_asking_tokens(
    server: ServerProcess,
) -> None:
    """As every other command over --url works in its token's ledger: a client token for
    Ann made by an admin of books was bound to main, another Ann's account."""
    _, books_admin = created_token(
        token_command(server, "create", "--role", "admin", "--ledger", "books", "--url", server.url)
    )
    made = token_command(
        server, "create", "--role", "teller", "--url", server.url, "--token", books_admin
    )
    token_id, _ = created_token(made)
    chosen = token_command(
        server,
        "create",
        "--role",
        "teller",
        "--url",
        server.url,
        "--token",
        books_admin,
        env={"KOPILKA_LEDGER": "main"},
    )
    chosen_id, _ = created_token(chosen)
    listed = token_command(server, "list", "--url", server.url).stdout.splitlines()
    ledgers = {line.split()[0]: line.split()[2] for line in listed}
    assert (ledgers[token_id], ledgers[chosen_id]) == ("ledger=books", "ledger=main")


def test_the_python_client_names_the_ledger_its_token_writes_to(server: ServerProcess) -> None:
    """Unnamed, the ledger is the token's own: the client's answers say which it is."""
    _, teller = created_token(
        token_command(
            server, "create", "--role", "teller", "--ledger", "books2", "--url", server.url
        )
    )
    with connect_bank(server.url, token=teller) as bank:
        deposit = bank.deposit("Ledger Label", 100, "x", "ledger-label-1")
        listed = bank.accounts()
        assert (deposit.ledger, bank.account("Ledger Label").ledger) == ("books2", "books2")
        assert {account.ledger for account in listed} == {"books2"}
        [outcome] = bank.execute_many([Deposit("Ledger Label", 1, "x", "ledger-label-2")])
        assert isinstance(outcome, Operation) and outcome.ledger == "books2"
    with connect_bank(server.url, token=teller, ledger="books2") as bank:
        assert bank.deposit("Ledger Label", 1, "x", "ledger-label-3").ledger == "books2"


def test_local_tokens_go_only_in_a_home_that_is_this_users_alone(tmp_path: Path) -> None:
    home = tmp_path / "shared"
    home.mkdir()
    home.chmod(0o1777)  # anyone may put files in it
    result = run_kopilka(home, "token", "create", "--role", "admin")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"Error: KOPILKA_HOME {home} may be written by other users")
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"kop_\xff\n"])
def test_an_empty_admin_token_file_is_no_token(
    server: ServerProcess, tmp_path: Path, content: bytes
) -> None:
    """Empty, or bytes that are no text (a token is ASCII): no token, in one line."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "admin.token").write_bytes(content)
    for arguments in (("token", "list"), ("shell",)):
        result = run_kopilka(home, *arguments, "--url", server.url, stdin="accounts\n")
        assert (result.returncode, result.stdout) == (1, ""), arguments
        assert result.stderr.startswith("Error: no token: set KOPILKA_TOKEN"), result.stderr


def test_no_server_there_is_said_before_no_token(tmp_path: Path) -> None:
    """With no token and nothing listening, the server not running is the news (starting
    it writes the admin token), not the token missing."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    url = f"http://127.0.0.1:{free_port()}"
    for arguments in (("get",), ("shell",), ("token", "list")):
        result = run_kopilka(home, *arguments, "--url", url, stdin="accounts\n")
        assert (result.returncode, result.stdout) == (1, ""), arguments
        assert result.stderr.startswith(f"Error: cannot reach the server at {url}: "), result.stderr
        assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", [("list",), ("revoke", "0123456789abcdef")])
def test_a_list_of_a_database_that_is_not_there_says_so_and_makes_none(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A revocation too: it made the database, then said the token did not exist."""
    typo = tmp_path / "typo" / "sub" / "x.db"
    result = run_kopilka(tmp_path / "home", "token", *command, "--db", str(typo))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: no database at {typo}: nothing has been written there (check --db,"
        " KOPILKA_DB or the db in kopilka.toml)\n"
    )
    assert not (tmp_path / "typo").exists()


def test_a_token_is_made_for_the_ledger_the_settings_choose(tmp_path: Path) -> None:
    """As every other command works in it: Ann of `books` is not Ann of main."""
    home = tmp_path / "home"
    books = {"KOPILKA_LEDGER": "books"}
    deposit = ("deposit", "--client=Ann", "--amount=10", "--description=x")
    assert run_kopilka(home, *deposit, env=books).returncode == 0
    created_token(
        run_kopilka(home, "token", "create", "--role", "client", "--client", "Ann", env=books)
    )
    created_token(
        run_kopilka(home, "token", "create", "--role", "teller", "--ledger", "main", env=books)
    )
    # In main, no Ann: warned of, as over a server.
    ann_of_main = ("token", "create", "--role", "client", "--client", "Ann", "--ledger", "main")
    created_token(
        run_kopilka(home, *ann_of_main, env=books), warned=_NO_ACCOUNT_YET.format("Ann", "main")
    )
    listed = run_kopilka(home, "token", "list").stdout.splitlines()
    assert [line.split()[1:3] for line in listed] == [
        ["client", "ledger=books"],
        ["teller", "ledger=main"],
        ["client", "ledger=main"],
    ], listed


def test_a_token_pasted_where_its_id_belongs_is_not_quoted_back(server: ServerProcess) -> None:
    """Nor told as "no token given as the token itself", which read as if none was given."""
    _, secret = created_token(
        token_command(server, "create", "--role", "teller", "--url", server.url)
    )
    told = "give the token's id (the 16 hex digits after kop_), not the token itself"
    for where in (("--url", server.url), ()):
        refused = token_command(server, "revoke", secret, *where)
        assert (refused.returncode, refused.stderr) == (1, f"Error: {told}\n")
    with server.client() as admin:
        answer = admin.delete(f"/v1/tokens/{secret}")
    assert answer.status_code == 404
    assert _secret_part(secret) not in answer.text
    assert answer.json()["error"] == {"code": "token_not_found", "message": told}


def test_a_token_id_that_no_token_has_is_refused_before_any_store_reads_it(
    server: ServerProcess, tmp_path: Path
) -> None:
    """An id of bytes that are not UTF-8 failed the local store's read in a traceback,
    and the Python client with a UnicodeEncodeError: refused as the server refuses it."""
    home = tmp_path / "home"
    assert run_kopilka(home, "init").returncode == 0
    for where in ((), ("--url", server.url)):
        refused = run_kopilka(server.home if where else home, "token", "revoke", "\udcff", *where)
        assert (refused.returncode, refused.stderr) == (
            1,
            "Error: token '\\udcff' does not exist\n",
        ), where
    # The client sends it as the byte it was, for the server to answer as for any path.
    with connect_bank(server.url, token=server.token) as bank, pytest.raises(InvalidInput) as bad:
        bank.revoke_token("\udcff")
    assert (bad.value.code, bad.value.message) == ("invalid_path", "the path is not valid UTF-8")
    with connect_bank(server.url, token=server.token) as bank:
        for not_text in (None, 7):  # an AttributeError of the path's making
            with pytest.raises(NotFound) as none:
                bank.revoke_token(not_text)  # type: ignore[arg-type]
            assert none.value.message == f"no token has the id {not_text!r}: an id is text"
        # An empty id made an empty path segment: "no such endpoint", not "no token".
        with pytest.raises(NotFound) as empty:
            bank.revoke_token("")
        assert (empty.value.code, empty.value.message) == ("token_not_found", "no token ''")
    _, teller = created_token(
        token_command(server, "create", "--role", "teller", "--url", server.url)
    )
    with connect_bank(server.url, token=teller) as bank, pytest.raises(Forbidden):
        bank.revoke_token("zz")  # not "no token": a teller may not ask


def test_a_token_quoted_in_an_api_error_has_its_secret_masked(server: ServerProcess) -> None:
    """An id shown cut to 40 characters was cut before its secret was masked, so part of
    it came back; a sandbox path quoted it whole."""
    _, secret = created_token(
        token_command(server, "create", "--role", "teller", "--url", server.url)
    )
    with server.client() as admin:
        answers = [
            admin.delete(f"/v1/tokens/x{secret}"),
            admin.delete(f"/v1/sandboxes/{secret}"),
            # Cut to 50 or 200 characters, after the masking, not before.
            admin.get(f"/v1/accounts?{secret}=1"),
            admin.post(
                "/v1/accounts",
                content=f'{{"{secret}": 1, "{secret}": 2}}',
                headers={"content-type": "application/json"},
            ),
            admin.get("/v1/" + "a" * 160 + "/" + secret),
            admin.put("/v1/" + "a" * 160 + "/" + secret),
        ]
    for answer in answers:
        assert answer.status_code in (400, 403, 404, 405, 422), answer.text
        assert _secret_part(secret) not in answer.text
        assert "_***" in answer.json()["error"]["message"]


def test_an_option_given_twice_is_refused_not_the_last_taken(tmp_path: Path) -> None:
    """argparse keeps the last: `--role client --role admin` made an admin token, and
    `--host 127.0.0.1 --host 0.0.0.0` opened the server to the network."""
    home = tmp_path / "home"
    for command, option in (
        (("token", "create", "--role", "client", "--role", "admin"), "--role"),
        (("token", "create", "--role=client", "--client=Ann", "--client=Bob"), "--client"),
        (("serve", "--host", "127.0.0.1", "--host", "0.0.0.0", "--db", "memory:"), "--host"),
    ):
        result = run_kopilka(home, *command)
        prog = " ".join(command[:2]) if command[0] == "token" else "serve"
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            f"Error: kopilka {prog} got {option} twice (see kopilka {prog} --help)\n",
        ), command
    assert not (home / "kopilka.db").exists()  # refused before anything was made


def _secret_part(token: str) -> str:
    """The start of a token's secret: what follows `kop_<16 hex digits>_` (the secret
    itself may hold an underscore)."""
    return token[len("kop_") + 17 :][:10]


def test_a_tokens_ledger_may_be_given_before_create(server: ServerProcess) -> None:
    """`kopilka --help` says a global option goes before or after the command: `token
    --ledger books3 create` was "argument command: invalid choice: 'books3'"."""
    made = token_command(
        server, "--ledger", "books3", "create", "--role", "teller", "--url", server.url
    )
    token_id, _ = created_token(made)
    listed = token_command(server, "list", "--url", server.url)
    line = next(line for line in listed.stdout.splitlines() if line.startswith(token_id))
    assert " teller ledger=books3  active " in line, line
    for arguments, said in (
        (("--ledger", "books3", "list"), "only `kopilka token create` takes --ledger, not list"),
        (
            ("--ledger=a", "create", "--role", "teller", "--ledger", "b"),
            "kopilka got --ledger twice",
        ),
    ):
        refused = token_command(server, *arguments, "--url", server.url)
        assert (refused.returncode, refused.stdout) == (1, ""), refused
        assert refused.stderr.startswith(f"Error: {said}"), refused.stderr


def test_the_homes_admin_token_revoked_says_a_restart_writes_a_new_one(tmp_path: Path) -> None:
    """'this token has been revoked' alone did not say which token was sent, nor what
    gives a new one."""
    with running_server(tmp_path / "home", db="memory:") as server:
        token_file = server.home / "admin.token"
        token_id = token_file.read_text().split("_")[1]
        revoked = run_kopilka(server.home, "token", "revoke", token_id, "--url", server.url)
        assert revoked.returncode == 0, revoked.stderr
        listed = run_kopilka(server.home, "token", "list", "--url", server.url)
    assert (listed.returncode, listed.stdout) == (1, "")
    assert listed.stderr == (
        f"Error: this token has been revoked (the admin token in {token_file}: the server"
        " writes a new one there when it starts again)\n"
    )


def test_a_warning_that_cannot_be_written_leaves_the_token_made(tmp_path: Path) -> None:
    """The token is made and its secret shown: a warning after it that finds stderr full
    had turned that into exit 1, and a script made a second token."""
    home = tmp_path / "home"
    assert run_kopilka(home, "init").returncode == 0
    with open("/dev/full", "w") as full:
        made = subprocess.run(
            [*kopilka_command(), "token", "create", "--role", "client", "--client", "Zed"],
            env=kopilka_env(home),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=full,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
    assert made.returncode == 0
    assert made.stdout.splitlines()[1].startswith("kop_"), made.stdout


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_client_name_that_is_not_utf8_is_refused_in_one_line(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """ "José" typed at a Latin-1 terminal: a traceback from the store's driver."""
    home = tmp_path / "home"
    db = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    at = ("--db", db) if db else ()
    assert run_kopilka(home, "init", *at).returncode == 0
    made = run_kopilka(home, "token", "create", "--role", "client", "--client", "Jos\udce9", *at)
    assert (made.returncode, made.stdout) == (1, "")
    assert made.stderr == (
        "Error: client name has control or invisible formatting characters, spaces other than"
        " a plain space, characters Unicode keeps for private use, or bytes that are not UTF-8\n"
    )
    listed = run_kopilka(home, "token", "list", *at)
    assert listed.returncode == 0 and "client" not in listed.stdout, listed
