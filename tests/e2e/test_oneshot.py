"""One-shot commands from the OS shell: exit codes, stdout and stderr, global options."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from tests.e2e.conftest import (
    RUN_TIMEOUT_SECONDS,
    RunKopilka,
    kopilka_command,
    kopilka_env,
    run_kopilka,
)
from tests.e2e.test_shell_embedded import Terminal
from tests.file_modes import file_modes_enforced, run_kopilka_as
from tests.kopilka_server import free_port
from tests.small_disk import fill
from tests.small_disk import small_disk as small_disk_mounted

from kopilka.bank import EmbeddedBank
from kopilka.domain.model import Deposit

DEPOSIT = ("deposit", "--client=John Jones", "--amount=100", "--description=ATM Deposit")


def _never_written(home: Path) -> str:
    """What a command that could do nothing in a home no command wrote in says."""
    return (
        f"Error: no ledger in {home} yet: nothing has been written there (check"
        " KOPILKA_HOME); a first deposit or `kopilka init` makes one\n"
    )


@pytest.mark.parametrize("left", ["an empty file", "a database with no tables"])
def test_a_file_where_the_ledger_goes_that_holds_none_is_no_ledger_to_a_read(
    kopilka: RunKopilka, kopilka_home: Path, left: str
) -> None:
    """sqlite3 leaves such a file at a path it is given that is not there (a backup run
    with the wrong home): a read made a whole new ledger in it, which said every client
    was unknown; and in a server's home (its admin token there) a write made one beside
    it. A write makes the ledger in a home of its own, as ever."""
    kopilka_home.mkdir(mode=0o700)
    database = kopilka_home / "kopilka.db"
    if left == "an empty file":
        database.touch()
    else:
        with closing(sqlite3.connect(database)) as made:
            made.execute("PRAGMA journal_mode = wal")
    size = database.stat().st_size
    read = kopilka("balance", "--client=John Jones")
    assert (read.returncode, read.stderr) == (1, _never_written(kopilka_home))
    assert database.stat().st_size == size
    (kopilka_home / "admin.token").write_text("kop_0123456789abcdef_x\n")
    served = kopilka(*DEPOSIT)
    assert (served.returncode, served.stderr) == (
        1,
        f"Error: no ledger in {kopilka_home}: the server whose admin token is there keeps"
        " its ledger elsewhere; give its --url, or its --db (`kopilka init` makes a ledger"
        " here)\n",
    )
    assert database.stat().st_size == size
    (kopilka_home / "admin.token").unlink()
    assert kopilka(*DEPOSIT).returncode == 0
    assert kopilka("balance", "--client=John Jones").stdout == "Balance of John Jones: $100.00\n"


def test_success_exits_zero_with_the_message_on_stdout(kopilka: RunKopilka) -> None:
    result = kopilka(*DEPOSIT)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "Deposit operation was successful!\n",
        "",
    )
    balance = kopilka("balance", "--client", "John Jones")
    assert balance.stdout == "Balance of John Jones: $100.00\n"


def test_a_mistyped_variable_is_warned_of_and_the_command_runs(kopilka_home: Path) -> None:
    """KOPILKA_DB_URL set for a PostgreSQL ledger was read by nothing, silently: the
    deposit went into a new SQLite file in the home. What Kubernetes sets beside a
    Service named kopilka is not warned of."""
    result = run_kopilka(
        kopilka_home,
        *DEPOSIT,
        env={
            "KOPILKA_DB_URL": "postgresql://ann:s3cret@db/books",
            "KOPILKA_SERVICE_HOST": "10.0.0.1",
            "KOPILKA_PORT_8888_TCP_ADDR": "10.0.0.1",
            "KOPILKA_DB_SERVICE_HOST": "10.0.0.2",  # a Service named kopilka-db
        },
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "Deposit operation was successful!\n",
        "Warning: 'KOPILKA_DB_URL' is no variable kopilka reads: it is ignored; did you mean"
        " KOPILKA_URL?\n",
    )


def test_a_refusal_exits_one_with_one_line_on_stderr(kopilka: RunKopilka) -> None:
    assert kopilka(*DEPOSIT).returncode == 0
    result = kopilka("withdraw", "--client=Nobody", "--amount=1", "--description=x")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "Error: no account for client 'Nobody'\n",
    )


def test_a_home_no_command_wrote_in_is_not_made_by_a_read(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """A mistyped KOPILKA_HOME read as a new, empty ledger, made there, that said every
    client was unknown; and made every missing directory of the path. A deposit opens
    the home's ledger, as ever."""
    for command in (
        ("balance", "--client=John Jones"),
        ("accounts",),
        ("get",),
        ("withdraw", "--client=John Jones", "--amount=1", "--description=x"),
        ("transfer", "-f", "John Jones", "-t", "Bob", "1"),
        # A token made there would be honoured by no server.
        ("token", "create", "--role", "teller"),
        ("token", "list"),
        ("token", "revoke", "0123456789abcdef"),
    ):
        result = kopilka(*command)
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            _never_written(kopilka_home),
        ), command
        assert not kopilka_home.exists(), command
    typo = kopilka_home / "typo" / "home"
    nested = kopilka(*DEPOSIT, env={"KOPILKA_HOME": str(typo)})
    assert (nested.returncode, nested.stdout, nested.stderr) == (
        1,
        "",
        f"Error: cannot create KOPILKA_HOME {typo}: {typo.parent} does not exist (kopilka"
        " makes only its last directory)\n",
    )
    read = kopilka("balance", "--client=John Jones", env={"KOPILKA_HOME": str(typo)})
    assert read.stderr == (
        f"Error: KOPILKA_HOME {typo} does not exist, nor does {typo.parent}: check KOPILKA_HOME\n"
    )
    in_a_file = kopilka_home.parent / "a-file" / "home"  # its parent there, but a file
    in_a_file.parent.write_text("")
    read = kopilka("balance", "--client=John Jones", env={"KOPILKA_HOME": str(in_a_file)})
    assert read.stderr == f"Error: cannot create KOPILKA_HOME {in_a_file}: Not a directory\n"
    assert not kopilka_home.exists()
    # A server's home (its ledger elsewhere: --db memory:, PostgreSQL): not made a second.
    kopilka_home.mkdir(mode=0o700)
    (kopilka_home / "admin.token").write_text("kop_0123456789abcdef_x\n")
    # Nor by a write: made there, the ledger was read for the server's by every later
    # command, and the refusal that said where to look was never seen again.
    for command in (("token", "list"), DEPOSIT, ("add-user", "-n", "Ann", "--max", "none")):
        served = kopilka(*command)
        assert (served.returncode, served.stderr) == (
            1,
            f"Error: no ledger in {kopilka_home}: the server whose admin token is there keeps"
            " its ledger elsewhere; give its --url, or its --db (`kopilka init` makes a ledger"
            " here)\n",
        ), command
    shell = kopilka("shell", stdin="accounts\n")  # the shell made one, even to read
    assert (shell.returncode, shell.stderr) == (1, served.stderr)
    assert sorted(path.name for path in kopilka_home.iterdir()) == ["admin.token"]
    named = kopilka(*DEPOSIT, "--db", str(kopilka_home / "kopilka.db"))  # meant: made
    assert (named.returncode, named.stderr) == (0, "")
    (kopilka_home / "kopilka.db").unlink()
    # A home that will not do says why first, not "kopilka init", which would say it next.
    kopilka_home.chmod(0o777)
    for command in (("shell",), ("balance", "--client=John Jones"), DEPOSIT):
        unsafe = kopilka(*command, stdin="accounts\n")
        assert unsafe.returncode == 1
        assert unsafe.stderr.startswith(
            f"Error: KOPILKA_HOME {kopilka_home} may be written by other users"
        ), command
    kopilka_home.chmod(0o700)
    assert kopilka("init").returncode == 0  # a ledger there, asked for
    assert kopilka(*DEPOSIT).returncode == 0
    assert kopilka("balance", "--client=John Jones").stdout == "Balance of John Jones: $100.00\n"


def test_a_description_of_bytes_that_are_not_utf8_is_one_error_line(
    kopilka: RunKopilka,
) -> None:
    assert kopilka(*DEPOSIT).returncode == 0
    # "\udce9" is how Python hands over the byte 0xE9 of a command line that is not UTF-8.
    result = kopilka("deposit", "--client=John Jones", "--amount=1", "--description=\udce9t\udce9")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "Error: description has control characters or bytes that are not UTF-8\n",
    )
    assert kopilka("balance", "--client=John Jones").stdout == "Balance of John Jones: $100.00\n"


def test_a_period_of_the_second_shown_holds_the_operation_shown(kopilka: RunKopilka) -> None:
    assert kopilka(*DEPOSIT).returncode == 0
    table = kopilka("statement", "--client=John Jones").stdout
    shown = re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", table)
    assert shown is not None, table
    moment = shown.group()
    again = kopilka("statement", "--client=John Jones", f"--since={moment}", f"--till={moment}")
    assert "ATM Deposit" in again.stdout, again.stdout
    minute = kopilka("statement", "--client=John Jones", f"--till={moment[:16]}")
    assert "ATM Deposit" in minute.stdout, minute.stdout


def test_grammar_errors_exit_one_without_a_traceback(kopilka: RunKopilka) -> None:
    cases = {
        ("depositt",): "Error: unknown command 'depositt'; did you mean 'deposit'?\n",
        ("exit",): "Error: unknown command 'exit'; type 'help' to list the commands\n",
        ("deposit", "--client=A", "--amount=5"): (
            "Error: deposit needs --description "
            "(usage: deposit --client=NAME --amount=AMOUNT --description=TEXT)\n"
        ),
        ("deposit", "--client=A", "--amount=1e3", "--description=x"): (
            "Error: amount '1e3' is not a number like 100 or 1,000.25\n"
        ),
        ("balance", "--client=A", "--bogus=1"): (
            "Error: balance has no option --bogus; it takes --client and the global options"
            " --db, --url, --token, --ledger, --config\n"
        ),
        # A global option mistyped is an option, not the command, before or after it.
        ("--sandbx",): "Error: kopilka has no option --sandbx; did you mean --sandbox?\n",
        ("--ur", "http://127.0.0.1:1", "balance", "--client=A"): (
            "Error: kopilka has no option --ur; did you mean --url?\n"
        ),
        ("balance", "--client=A", "--ur", "http://127.0.0.1:1"): (
            "Error: balance has no option --ur; did you mean --url?\n"
        ),
        ("--client=A", "balance"): (
            "Error: --client is no option of kopilka's own: give it after the command's name\n"
        ),
        # serve's and token's options, before their names; options of no program.
        ("--role", "admin", "token", "create"): (
            "Error: --role is no option of kopilka's own: give it after token's name\n"
        ),
        ("--workers", "2", "serve"): (
            "Error: --workers is no option of kopilka's own: give it after serve's name\n"
        ),
        ("--", "balance"): "Error: kopilka takes no --: give each option as it is\n",
        # serve or token named as a value, not as the command: no such line.
        ("--x", "deposit", "--client", "token", "--amount=5"): (
            "Error: kopilka has no option --x; before a command it takes --sandbox, --db, --url,"
            " --token, --ledger, --config, --help, --version\n"
        ),
        ("--x", "help", "serve"): (
            "Error: kopilka has no option --x; before a command it takes --sandbox, --db, --url,"
            " --token, --ledger, --config, --help, --version\n"
        ),
        # add-user's input refused before any ledger is looked for, in the rules' order.
        ("--url", "http://127.0.0.1:1", "add-user", "-n", "A", "--max", "none", "-c", "1e3"): (
            "Error: opening balance '1e3' is not a number like 100 or 1,000.25\n"
        ),
        ("--url", "http://127.0.0.1:1", "add-user", "-n", "A", "--max", "none", "-c", "-5"): (
            "Error: an opening balance must be $0.00 to $1,000,000,000,000.00\n"
        ),
        ("--url", "http://127.0.0.1:1", "add-user", "-n", "A", "--max", "-1", "-c", "-5"): (
            "Error: the cap -$1.00 is below the floor $0.00\n"
        ),
        ("--help=x",): "Error: option --help takes no value\n",
        ("--version=1",): "Error: option --version takes no value\n",
        ("--l", "main", "balance"): "Error: kopilka has no option --l; did you mean --ledger?\n",
        ("statement", "--client=A", "--to=2024-01-31"): (
            "Error: show_bank_statement has no option --to; did you mean --till?\n"
        ),
        ("shell", "extra"): (
            "Error: kopilka shell's PORT is a port number, not 'extra'; usage: kopilka shell"
            " [--db PATH|URL] [--sandbox] [--url URL] [--token TOKEN] [--ledger NAME]"
            " [--config FILE] [PORT]\n"
        ),
        ("shell", "postgresql://al:" + "S" * 40 + "@h/db"): (
            "Error: kopilka shell's PORT is a port number, not 'postgresql://al:***@h/db';"
            " usage: kopilka shell [--db PATH|URL] [--sandbox] [--url URL] [--token TOKEN]"
            " [--ledger NAME] [--config FILE] [PORT]\n"
        ),
        ("shell", "8889", "kop_0123456789abcdef_" + "S" * 43): (
            "Error: kopilka shell takes one port, not also 'kop_0123456789abcdef_***'; usage:"
            " kopilka shell [--db PATH|URL] [--sandbox] [--url URL] [--token TOKEN] [--ledger"
            " NAME] [--config FILE] [PORT]\n"
        ),
        ("shell", "--sandbox", "--sandbox"): "Error: kopilka got --sandbox twice\n",
        ("shell", "--sandbox=no"): "Error: option --sandbox takes no value\n",
        ("accounts", "--db"): "Error: option --db needs a value\n",
    }
    for arguments, stderr in cases.items():
        result = kopilka(*arguments)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", stderr), arguments


def test_global_options_before_or_after_the_command(kopilka: RunKopilka, tmp_path: Path) -> None:
    database = tmp_path / "global.db"
    assert kopilka("--db", str(database), *DEPOSIT).returncode == 0
    after = kopilka("balance", "--client=John Jones", f"--db={database}")
    assert after.stdout == "Balance of John Jones: $100.00\n"
    default = kopilka("balance", "--client=John Jones")
    assert default.stderr == _never_written(tmp_path / "home")


def test_a_global_option_before_serve_or_token_is_passed_on_or_named(
    kopilka: RunKopilka, tmp_path: Path
) -> None:
    """One they take goes to their own parsers, wherever it stands, a value the same
    word as the command included; one they do not take is named, not its value."""
    database = tmp_path / "serve.db"
    assert kopilka("--db", str(database), *DEPOSIT).returncode == 0
    empty = kopilka("--db", str(database), "token", "list")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "No tokens yet.\n", "")
    made = kopilka("--ledger", "books", "--db", str(database), "token", "create", "--role=teller")
    assert made.returncode == 0, made.stderr
    listed = kopilka("--db", str(database), "token", "list")
    assert "teller ledger=books" in listed.stdout.replace("  ", " ")
    for ledger in ("books", "serve"):  # a subcommand without a --ledger of its own
        unread = kopilka("--ledger", ledger, "--db", str(database), "token", "list")
        assert unread.stderr == (
            f"Error: unrecognized arguments: --ledger {ledger} (see kopilka token --help)\n"
        )
    for before, command in (
        (("--url", "18250"), ("serve", "18267")),
        (("--ledger", "books"), ("serve", "18257")),
        (("--sandbox",), ("token", "list")),
    ):
        result = kopilka(*before, *command)
        name = before[0]
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            f"Error: kopilka {command[0]} does not take {name} (see kopilka {command[0]} --help)\n",
        )
    named = kopilka("--db", "token", "token", "list")  # a file named "token"
    assert named.stderr.startswith("Error: no database at "), named.stderr


def test_ledgers_are_separate_namespaces(kopilka: RunKopilka) -> None:
    assert kopilka("--ledger", "savings", *DEPOSIT).returncode == 0
    assert kopilka("balance", "--client=John Jones").returncode == 1
    savings = kopilka("balance", "--client=John Jones", "--ledger=savings")
    assert savings.stdout == "Balance of John Jones: $100.00\n"


def test_a_ledger_is_one_whether_its_name_is_spelt_decomposed_or_precomposed(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """Ledger names are compared in NFC, as client names are: "café" typed with a
    combining accent (as macOS terminals may send it) is the ledger "café" precomposed,
    named by --ledger, KOPILKA_LEDGER or kopilka.toml alike."""
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    deposit = ("deposit", "--client=Ann", "--amount=50", "--description=x")
    assert kopilka("--ledger", nfc, *deposit).returncode == 0
    for ledger in ("--ledger", nfd), ("--ledger", nfc):
        balance = kopilka("balance", "--client=Ann", *ledger)
        assert (balance.stdout, balance.stderr) == ("Balance of Ann: $50.00\n", "")
    assert kopilka(*deposit, env={"KOPILKA_LEDGER": nfd}).returncode == 0
    kopilka_home.mkdir(exist_ok=True)
    (kopilka_home / "kopilka.toml").write_text(f'ledger = "{nfd}"\n', encoding="utf-8")
    balance = kopilka("balance", "--client=Ann")
    assert (balance.stdout, balance.stderr) == ("Balance of Ann: $100.00\n", "")
    accounts = kopilka("accounts", "--ledger", nfc)
    assert accounts.returncode == 0, accounts.stderr
    assert accounts.stdout.count("Ann") == 1


def test_database_from_config_file_and_environment(kopilka: RunKopilka, tmp_path: Path) -> None:
    from_file, from_env = tmp_path / "file.db", tmp_path / "env.db"
    config = tmp_path / "custom.toml"
    config.write_text(f'db = "{from_file}"\n')
    assert kopilka("--config", str(config), *DEPOSIT).returncode == 0
    assert from_file.is_file()
    # The environment wins over the file, and a flag over both: each holds its own client.
    environment = {"KOPILKA_DB": str(from_env)}
    deposit_as = ("deposit", "--amount=1", "--description=where")
    assert kopilka(*deposit_as, "--client=Env", env=environment).returncode == 0
    from_flag = tmp_path / "flag.db"
    assert kopilka(*deposit_as, "--client=Flag", "--db", str(from_flag)).returncode == 0
    both = ("accounts", "--config", str(config))
    assert "John Jones" in kopilka(*both).stdout
    read = kopilka(*both, env=environment).stdout
    assert "Env" in read and "John Jones" not in read, read
    read = kopilka(*both, "--db", str(from_flag), env=environment).stdout
    assert "Flag" in read and "Env" not in read and "John Jones" not in read, read
    missing = kopilka("accounts", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: config file ")


def test_statement_one_shot_prints_the_plain_table(kopilka: RunKopilka) -> None:
    kopilka(*DEPOSIT)
    result = kopilka("show_bank_statement", "--client=John Jones", "--since", "2021-01-01")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert (
        lines[0] == "| Date                | Description      | Withdrawals | Deposits | Balance |"
    )
    assert lines[3].endswith("| ATM Deposit      |             |  $100.00 | $100.00 |")
    assert (
        lines[4] == "|                     | Totals           |       $0.00 |  $100.00 | $100.00 |"
    )


def test_a_statement_of_an_hour_the_clocks_skip_is_empty(kopilka: RunKopilka) -> None:
    """New York's 02:00-02:59 of 2026-03-08 never comes: a statement of it (an hour by
    hour walk meets one) holds nothing, and is no error."""
    kopilka(*DEPOSIT)
    new_york = {"TZ": "EST5EDT,M3.2.0,M11.1.0"}
    period = ("--since", "2026-03-08 02:00", "--till", "2026-03-08 02:59")
    result = kopilka("statement", "--client=John Jones", *period, "--format=json", env=new_york)
    assert (result.returncode, result.stderr) == (0, "")
    statement = json.loads(result.stdout)
    assert statement["lines"] == []
    assert statement["opening_balance"] == statement["closing_balance"] == "0.00"


def test_a_repeated_idempotency_key_applies_once(kopilka: RunKopilka) -> None:
    for _ in range(2):
        assert kopilka(*DEPOSIT, "--idempotency-key=pay-1").returncode == 0
    assert kopilka("balance", "--client=John Jones").stdout == "Balance of John Jones: $100.00\n"
    other = kopilka(
        "deposit", "--client=John Jones", "--amount=5", "--description=x", "--idempotency-key=pay-1"
    )
    assert other.returncode == 1
    assert "was already used for another request" in other.stderr


def test_help_and_version_need_no_database(kopilka: RunKopilka, kopilka_home: Path) -> None:
    for arguments in (
        *(("help",), ("--help",), ("help", "transfer"), ("transfer", "--help")),
        *(("init", "--help"), ("init", "-h")),
    ):
        result = kopilka(*arguments)
        assert result.returncode == 0, arguments
        assert result.stderr == ""
    assert "-f, --from NAME" in kopilka("transfer", "--help").stdout
    assert "init" in kopilka("help").stdout
    for overview in ("help", "--help"):  # as typed at the OS prompt, where it is read
        shown = kopilka(overview).stdout
        assert 'e.g. kopilka deposit --client="John Jones"' in shown
        assert shown.endswith("Type 'kopilka help COMMAND' for a command's options and examples.\n")
    assert kopilka("init", "--help").stdout.startswith("init: create or upgrade")
    for asked in (("help", "deposit"), ("deposit", "--help")):  # a command's help too
        shown = kopilka(*asked).stdout
        assert "\nUsage: kopilka deposit --client=NAME" in shown, shown
        assert '\n  kopilka deposit --client="John Jones"' in shown, shown
    assert "\nUsage: kopilka init\n" in kopilka("init", "--help").stdout
    assert kopilka("--version").stdout.startswith("kopilka ")
    for command in ("serve", "token"):  # both default files are read, not one
        words = " ".join(kopilka(command, "--help").stdout.split())
        assert "(default: KOPILKA_CONFIG, else kopilka.toml in KOPILKA_HOME and in" in words
    for command in ("shell", "serve", "token"):  # each with a parser of its own
        for asked in ([command], ["--command", command], [f"--command={command}"]):
            result = kopilka("help", *asked)
            assert (result.returncode, result.stderr) == (0, ""), asked
            assert result.stdout.lower().startswith(f"usage: kopilka {command}"), result.stdout
    assert not (kopilka_home / "kopilka.db").exists()


def test_an_option_value_with_a_newline_reaches_the_domains_check(kopilka: RunKopilka) -> None:
    assert kopilka(*DEPOSIT).returncode == 0
    for extra in (("--description=l1\nl2",), ("--description", "l1\nl2")):
        result = kopilka("deposit", "--client=John Jones", "--amount=1", *extra)
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            "Error: description has control characters or bytes that are not UTF-8\n",
        )
    named = kopilka("transfer", "-f", "John Jones", "-t", "Jane", "1", "-d=a\nb")
    assert named.stderr == "Error: description has control characters or bytes that are not UTF-8\n"
    assert kopilka("balance", "--client=John Jones").stdout == "Balance of John Jones: $100.00\n"


def test_a_token_or_ledger_that_http_cannot_carry_is_one_error_line(kopilka: RunKopilka) -> None:
    url = ("--url", "http://127.0.0.1:1")  # refused before anything is sent
    result = kopilka(*DEPOSIT, *url, "--token", "ключ")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: invalid token: a token is printable ASCII text without spaces at its ends\n"
    )
    result = kopilka(*DEPOSIT, *url, "--token", "x", "--ledger", "Ωmega")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: a ledger named to a server is printable ASCII text (an HTTP header carries"
        " it); a token bound to a ledger named otherwise reaches it without naming it\n"
    )


def test_a_database_kopilka_cannot_use_is_one_error_line(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    for db, message in (
        ("", "Error: the database may not be empty (--db): give a path or URL\n"),
        # SQLite's name for a temporary database, gone when it is closed
        ("sqlite:", "Error: --db: the database may not be empty: give a path or URL\n"),
        (
            "host=db.internal dbname=bank password=S3cret",
            "Error: --db: a PostgreSQL database is named by a URL (postgresql://user@host/db),"
            " not by keyword=value settings\n",
        ),
        (  # a quoted value, a space in it: libpq's too, and no file's name
            "host=db.internal dbname=bank password='S3 cret'",
            "Error: --db: a PostgreSQL database is named by a URL (postgresql://user@host/db),"
            " not by keyword=value settings\n",
        ),
        (  # postgresql:// forgotten: the text, password and all, was shown back as a path
            "ann:S3cret@db.internal:5432/bank",
            "Error: --db: a PostgreSQL database is named by a URL that begins with"
            " postgresql:// (for a file of such a name, write ./ before it)\n",
        ),
        (
            "mysql://user:secret@host/db",
            "Error: --db: kopilka cannot use a mysql:// database: give a SQLite path or a"
            " postgresql:// URL\n",
        ),
        (  # SQLite would read it as a URI: written to x.db, looked for as 'file:x.db'
            "file:x.db",
            "Error: --db: a SQLite database is given by its path, not as a file: URI"
            " ('file:x.db')\n",
        ),
        (  # two slashes: a host, and the file would have been /x.db, at the root
            "sqlite://x.db",
            "Error: --db: 'sqlite://x.db' names a host, not a file: write sqlite:PATH, or"
            " sqlite:///PATH for the absolute path /PATH\n",
        ),
    ):
        for command in (DEPOSIT, ("get",)):  # a read as much as a write
            result = kopilka(*command, "--db", db)
            assert (result.returncode, result.stdout, result.stderr) == (1, "", message)
    # Where it was given is named, whichever place that was.
    (kopilka_home.parent / "kopilka.toml").write_text('db = "sqlite:"\n')
    from_file = kopilka("get")
    assert from_file.stderr == (
        f"Error: the db in {kopilka_home.parent / 'kopilka.toml'}: the database may not be"
        " empty: give a path or URL\n"
    )
    from_variable = kopilka("get", env={"KOPILKA_DB": "mysql://h/db"})
    assert from_variable.stderr.startswith("Error: KOPILKA_DB: kopilka cannot use a mysql://")
    assert not (kopilka_home.parent / "mysql:").exists()  # not taken for a file's path
    assert not (kopilka_home.parent / "x.db").exists()


def test_a_sqlite_file_in_a_directory_named_postgres_is_a_file(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    (kopilka_home.parent / "postgres").mkdir(parents=True)
    for db in ("postgres/ledger.db", "./postgres/ledger.db"):
        result = kopilka(*DEPOSIT, "--db", db)
        assert (result.returncode, result.stderr) == (0, ""), db
    assert (kopilka_home.parent / "postgres" / "ledger.db").exists()


@pytest.mark.parametrize(
    "db",
    [
        "postgresql:/app:S3cret@db.internal/bank",
        "postgresql//app:S3cret@127.0.0.1/bank",
        "postgres:db",
        "PostgreSQL://app@db/bank",
        # Refused as mistyped, not quoted as a name with a space or a line break at its
        # end: a password in no URL the mask knows was shown.
        "postgresql//app:S3cret@127.0.0.1/bank ",
        "postgres:app:S3cret@db/bank\n",
        " postgresql//app:S3cret@127.0.0.1/bank",  # a space before it, as after
        "\tpostgres:app:S3cret@db/bank",
        "\ufeffpostgresql//app:S3cret@127.0.0.1/bank",  # a byte order mark, from a file
    ],
)
@pytest.mark.parametrize("command", [DEPOSIT, ("balance", "--client=John Jones"), ("init",)])
def test_a_mistyped_postgresql_url_is_refused_not_made_a_file(
    kopilka: RunKopilka, tmp_path: Path, db: str, command: tuple[str, ...]
) -> None:
    result = kopilka(*command, "--db", db)  # run in tmp_path
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: --db: a PostgreSQL database is named by a URL that begins with postgresql://"
        " (two slashes, in lower case)\n"
    )
    assert not [p for p in tmp_path.rglob("*") if "ostgre" in p.name]  # no file of that name


@pytest.mark.parametrize("db", ["MEMORY:", "Memory:", "SQLITE:books.db", "Sqlite::memory:"])
def test_kopilkas_name_of_a_database_in_capitals_is_refused_not_made_a_file(
    kopilka: RunKopilka, tmp_path: Path, db: str
) -> None:
    """`--db MEMORY:` made a lasting SQLite file named MEMORY:, where memory: keeps
    nothing, and SQLITE:books.db a file of that whole name."""
    result = kopilka(*DEPOSIT, "--db", db)  # run in tmp_path
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: --db: {db!r}: kopilka's names of a database are in lower case (memory:,"
        " sqlite:PATH); for a file of that name, write ./ before it\n"
    )
    assert not [p for p in tmp_path.rglob("*") if p.name.lower().startswith(("memory", "sqlite"))]


def test_a_database_url_given_in_the_wrong_place_is_quoted_without_its_password(
    kopilka: RunKopilka,
) -> None:
    url = "postgresql://alice:S3cretPW@127.0.0.1:1/bank"
    assert kopilka("init").returncode == 0  # the token commands read the home's ledger
    for arguments in (
        ("get", url),
        ("serve", url),
        ("token", "list", url),
        ("token", "revoke", url),
        ("--config", url, "get"),
        ("get", url.replace("S3cretPW", 'S3cret"PW')),
        ("serve", url.replace("S3cretPW", "S3cret PW")),
    ):
        result = kopilka(*arguments)
        assert (result.returncode, result.stdout) == (1, ""), arguments
        assert "S3cret" not in result.stderr and "alice:***@" in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    # A mistyped option is named without its value at all.
    mistyped = kopilka(f"--DB={url}", "get")
    assert (mistyped.returncode, mistyped.stdout, mistyped.stderr) == (
        1,
        "",
        "Error: kopilka has no option --DB; did you mean --db?\n",
    )
    piped = kopilka("shell", stdin=f"get {url}\n")
    assert "S3cretPW" not in piped.stdout + piped.stderr and "alice:***@" in piped.stdout


def test_a_global_option_given_twice_is_refused(kopilka: RunKopilka, kopilka_home: Path) -> None:
    for twice in (("--ledger=x", "--ledger=y"), ("--db", "a.db", "--db=b.db")):
        result = kopilka(twice[0], *DEPOSIT, *twice[1:])
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr.startswith("Error: kopilka got --") and "twice" in result.stderr
    balance = kopilka("balance", "--client", "John Jones")
    assert balance.stderr == _never_written(kopilka_home)  # nothing applied


def test_a_global_option_takes_no_option_for_its_value(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """`--db --ledger=books` made a database named `--ledger=books` in the working
    directory; a command's value that names a global option (a description `--db`) was
    taken as that option's, the next word its value."""
    refused = {
        (*DEPOSIT, "--db", "--ledger=books"): "--db",
        ("deposit", "--client=A", "--amount=1", "--description", "--db", "--db", "g"): "--db",
        ("deposit", "--client=A", "--amount=1", "--description", "--ledger", "--db", "g"): (
            "--ledger"
        ),
        ("deposit", "--client=A", "--amount=1", "--description", "--token", "--db", "g"): (
            "--token"
        ),
        ("shell", "--db", "--sandbox"): "--db",
    }
    for words, option in refused.items():
        result = kopilka(*words, stdin="deposit --client=A --amount=1 --description=x\n")
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            f"Error: option {option} needs a value; one that starts with '-' is written"
            f" {option}=VALUE\n",
        ), words
    assert list(kopilka_home.parent.iterdir()) == []  # nothing opened, nothing applied
    assert kopilka("--db=-x.db", "balance", "--client=A").stderr == (  # the = form is taken
        "Error: no database at -x.db: nothing has been written there (check --db, KOPILKA_DB"
        " or the db in kopilka.toml)\n"
    )


def test_a_bad_ledger_in_a_config_file_is_refused_naming_the_file(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """usage.md: every refusal names the value and where it was given; the ledger's named
    neither, so a file read long ago was no suspect."""
    config = kopilka_home.parent / "t.toml"
    config.write_text('ledger = ""\n')
    result = kopilka("balance", "--client=Ann", "--config", str(config))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: ledger '' ({config}): a ledger name is 1 to 100 printable characters,"
        " without spaces at its ends\n"
    )


def test_an_empty_key_or_ledger_is_refused_not_ignored(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    for _ in range(2):  # an empty key given is no key to replay by: refused each time
        result = kopilka(*DEPOSIT, "--idempotency-key=")
        assert (result.returncode, result.stderr) == (
            1,
            "Error: idempotency key must be 1 to 200 characters\n",
        )
    result = kopilka(*DEPOSIT, "--ledger=")
    assert result.stderr == (
        "Error: ledger '' (--ledger): a ledger name is 1 to 100 printable characters,"
        " without spaces at its ends\n"
    )
    result = kopilka(*DEPOSIT, "--ledger= main")
    assert result.stderr.startswith("Error: ledger ' main' (--ledger): a ledger name is 1 to")
    balance = kopilka("balance", "--client", "John Jones")
    assert balance.stderr == _never_written(kopilka_home)  # nothing applied, nor made


def _run_with_stdout(
    home: Path, stdout: int | None, *arguments: str, script: str | None = None
) -> tuple[int, str]:
    """`kopilka ARGUMENTS` with its standard output on a given descriptor (None: closed),
    fed `script` on its standard input (None: nothing)."""
    home.parent.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(
        [*kopilka_command(), *arguments],
        stdin=subprocess.DEVNULL if script is None else subprocess.PIPE,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=kopilka_env(home),
        cwd=home.parent,
        # Closed in the child, as `kopilka ... >&-` leaves it.
        preexec_fn=(lambda: os.close(1)) if stdout is None else None,
    ) as process:
        _, errors = process.communicate(script, timeout=RUN_TIMEOUT_SECONDS)
    return process.returncode, errors


def _shell_on_a_full_disk(home: Path, script: str) -> tuple[int, str]:
    """`kopilka shell` fed `script`, its standard output on a full disk."""
    with open("/dev/full", "w") as full:
        return _run_with_stdout(home, full.fileno(), "shell", script=script)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_an_answer_that_cannot_be_written_is_not_called_a_refusal(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """Exit 1 says nothing was done, and a script would do it again: a deposit made but
    not reported (stdout on a full disk) exits 3, with one line, and is made once."""
    with open("/dev/full", "w") as full:
        status, errors = _run_with_stdout(kopilka_home, full.fileno(), *DEPOSIT)
    assert status == 3
    assert errors == (
        "Error: the command ran, but its answer could not be written"
        " (No space left on device); check before repeating it\n"
    )
    assert kopilka("balance", "--client=John Jones").stdout == "Balance of John Jones: $100.00\n"
    # The shell fed a script stops at the first answer it cannot write, the same way.
    script = "deposit --client='John Jones' --amount=1 --description=a\n" * 3
    status, errors = _shell_on_a_full_disk(kopilka_home, script)
    assert (status, errors.count("\n")) == (3, 1), errors
    assert kopilka("balance", "--client=John Jones").stdout == "Balance of John Jones: $101.00\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_piped_shell_stops_at_a_refusal_it_cannot_write(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """Its refusals are answers, in its log among the others: lost on a full disk, a
    script of refused commands ended 0 with an empty log, and ran on."""
    assert kopilka(*DEPOSIT).returncode == 0
    script = (
        "depost --client='John Jones'\ndeposit --client='John Jones' --amount=1 --description=a\n"
    )
    status, errors = _shell_on_a_full_disk(kopilka_home, script)
    assert status == 3
    assert errors == (
        "Error: the shell's output could not be written (No space left on device): it"
        " stopped at a line it refused; check what the lines before it did before running"
        " them again\n"
    )
    assert kopilka("balance", "--client=John Jones").stdout == "Balance of John Jones: $100.00\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_refusal_whose_error_line_cannot_be_written_is_still_a_refusal(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """Exit 3 says the command ran: a refused withdrawal with stderr on a full disk
    exited 3, and a script reading the docs would take it as made."""
    assert kopilka(*DEPOSIT).returncode == 0
    refused = (
        ("withdraw", "--client=Nobody", "--amount=1", "--description=x"),
        ("deposit", "--client=John Jones", "--amount=x", "--description=x"),
    )
    for words in refused:
        with open("/dev/full", "w") as full:
            result = subprocess.run(
                [*kopilka_command(), *words],
                stdout=subprocess.PIPE,
                stderr=full,
                env=kopilka_env(kopilka_home),
                cwd=kopilka_home.parent,
                timeout=RUN_TIMEOUT_SECONDS,
                check=False,
            )
        assert (result.returncode, result.stdout) == (1, b""), words


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_init_tokens_and_help_whose_answers_cannot_be_written_say_they_ran(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """A schema made and a token created (its secret then lost) are not refusals either:
    exit 3 and the one line, as for a deposit; help too, where nothing was done. Nor is
    anything to be checked before any of these, or a read, is run again ("check before
    repeating it" sent people looking)."""
    written = (
        "Error: the command ran, but its answer could not be written (No space left on device)\n"
    )
    assert kopilka(*DEPOSIT).returncode == 0
    commands = [
        ("balance", "--client=John Jones"),
        ("statement", "--client=John Jones"),
        ("init",),
        ("token", "list"),
        ("--version",),
        ("help", "deposit"),
        ("token", "--help"),
        ("serve", "--help"),
    ]
    for command in commands:
        with open("/dev/full", "w") as full:
            assert _run_with_stdout(kopilka_home, full.fileno(), *command) == (3, written), command
    # A token whose secret no one saw is named, to be revoked.
    with open("/dev/full", "w") as full:
        status, errors = _run_with_stdout(
            kopilka_home, full.fileno(), "token", "create", "--role", "teller"
        )
    tokens = kopilka("token", "list").stdout.splitlines()
    assert [line.split()[1] for line in tokens] == ["teller"], tokens
    token_id = tokens[0].split()[0]
    assert (status, errors) == (
        3,
        f"Error: token {token_id} was made, but its secret could not be written (No space"
        f" left on device): no one has it; revoke it (kopilka token revoke {token_id})\n",
    )


def test_an_answer_whose_reader_went_away_is_not_called_a_refusal(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """`kopilka deposit ... | reader-that-left`: the deposit was made, so not exit 1."""
    reader, writer = os.pipe()
    os.close(reader)  # the reader left before the answer came
    try:
        status, errors = _run_with_stdout(kopilka_home, writer, *DEPOSIT)
    finally:
        os.close(writer)
    assert (status, errors) == (3, "")
    assert kopilka("balance", "--client=John Jones").stdout == "Balance of John Jones: $100.00\n"


def test_a_long_answer_whose_reader_left_mid_way_stops_the_shell(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """A reader that takes the first line of a long statement and leaves (`| head -1`):
    the rest of the answer cannot be written, so the command exits 3, quietly, and a
    piped shell stops there rather than run the lines after it; at a refusal as at an
    answer (the shell's refusals go among its answers)."""
    script = "".join(f"deposit --client=S --amount=1 --description=d{n}\n" for n in range(1500))
    assert kopilka("shell", stdin=script).returncode == 0
    refusals = "".join(f"balance --client=Nobody{n}\n" for n in range(3000))
    for arguments, stdin in (
        (("statement", "--client=S"), ""),
        (("shell",), "statement --client=S\ndeposit --client=S --amount=1 --description=x\n"),
        (("shell",), refusals + "deposit --client=S --amount=1 --description=x\n"),
    ):
        with subprocess.Popen(
            [*kopilka_command(), *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=kopilka_env(kopilka_home),
            cwd=kopilka_home.parent,
        ) as process:
            assert process.stdin is not None and process.stdout is not None
            assert process.stderr is not None
            # Fits the two pipes' buffers: written whole while the shell answers.
            process.stdin.write(stdin.encode())
            process.stdin.close()
            process.stdout.readline()
            process.stdout.close()  # the reader leaves
            assert process.wait(timeout=RUN_TIMEOUT_SECONDS) == 3, arguments
            assert process.stderr.read() == b"", arguments
    assert kopilka("balance", "--client=S").stdout == "Balance of S: $1,500.00\n"


def test_a_token_made_whose_reader_left_is_named_to_be_revoked(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    assert kopilka("init").returncode == 0
    reader, writer = os.pipe()
    os.close(reader)  # the reader left before the secret came
    try:
        status, errors = _run_with_stdout(
            kopilka_home, writer, "token", "create", "--role", "teller"
        )
    finally:
        os.close(writer)
    (token_id,) = [line.split()[0] for line in kopilka("token", "list").stdout.splitlines()]
    assert (status, errors) == (
        3,
        f"Error: token {token_id} was made, but its secret could not be written (Broken"
        f" pipe): no one has it; revoke it (kopilka token revoke {token_id})\n",
    )


def test_a_name_the_output_encoding_lacks_is_shown_escaped(kopilka: RunKopilka) -> None:
    assert kopilka("deposit", "--client=Ёжик", "--amount=10", "--description=x").returncode == 0
    for encoding in ("latin-1", "latin-1:surrogateescape"):
        shown = kopilka("balance", "--client=Ёжик", env={"PYTHONIOENCODING": encoding})
        assert (shown.returncode, shown.stderr) == (0, "")
        assert shown.stdout == "Balance of \\u0401\\u0436\\u0438\\u043a: $10.00\n"
        listed = kopilka("accounts", env={"PYTHONIOENCODING": encoding})
        assert (listed.returncode, listed.stderr) == (0, "")
    # Nor does input its encoding cannot read end the shell: the line is refused.
    piped = kopilka("shell", stdin="balance --client=Ёжик\n", env={"PYTHONIOENCODING": "ascii"})
    assert (piped.returncode, piped.stderr) == (0, "")
    assert piped.stdout.startswith(
        "Error: client name has control or invisible formatting characters"
    )
    made = kopilka("init", "--db", "кошелёк.db", env={"PYTHONIOENCODING": "ascii"})
    assert (made.returncode, made.stderr) == (0, ""), made.stderr


def test_a_refusal_with_stderr_closed_writes_nothing_on_stdout(
    kopilka_home: Path,
) -> None:
    """In `answer=$(kopilka ... 2>&-)` the refusal must not pass for the answer: a
    command's refusal, a usage mistake, a database refused before any command ran."""
    kopilka_home.parent.mkdir(parents=True, exist_ok=True)
    for arguments in (
        ("withdraw", "--client=Nobody", "--amount=1", "--description=x"),
        ("balance", "--clent=x"),
        ("balance", "--client=x", "--db", "postgres:/x"),
    ):
        refused = subprocess.run(
            [*kopilka_command(), *arguments],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=kopilka_env(kopilka_home),
            cwd=kopilka_home.parent,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
            preexec_fn=lambda: os.close(2),
        )
        assert (refused.returncode, refused.stdout) == (1, b""), arguments
    # And stdin closed: a shell with nothing to read ends as on empty input.
    shell = subprocess.run(
        [*kopilka_command(), "--sandbox"],
        capture_output=True,
        env=kopilka_env(kopilka_home),
        cwd=kopilka_home.parent,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
        preexec_fn=lambda: os.close(0),
    )
    assert (shell.returncode, shell.stderr) == (0, b"")


def test_a_closed_standard_output_does_nothing(kopilka: RunKopilka, kopilka_home: Path) -> None:
    status, errors = _run_with_stdout(kopilka_home, None, *DEPOSIT)
    assert (status, errors) == (1, "Error: standard output is closed; nothing was done\n")
    balance = kopilka("balance", "--client=John Jones")
    assert balance.stderr == _never_written(kopilka_home)


def test_a_home_or_database_kopilka_cannot_create_is_one_line(tmp_path: Path) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    home = run_kopilka(in_the_way, "balance", "--client=Ann")
    assert (home.returncode, home.stdout) == (1, "")
    assert home.stderr == f"Error: KOPILKA_HOME {in_the_way} is a file, not a directory\n"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    for command in [("balance", "--client=Ann"), DEPOSIT]:
        home = run_kopilka(dangling, *command)
        assert (home.returncode, home.stdout, home.stderr) == (
            1,
            "",
            f"Error: KOPILKA_HOME {dangling} is a symlink to {tmp_path / 'gone'}, which does"
            " not exist\n",
        )
    assert not (tmp_path / "gone").exists()
    # On a port of its own: the default one may be some other server's.
    serve = ("serve", "--port", str(free_port()), "--db", str(in_the_way / "x.db"))
    database = run_kopilka(tmp_path / "home", *serve)
    assert (database.returncode, database.stdout) == (1, "")
    assert database.stderr.startswith(f"Error: cannot open the database {in_the_way / 'x.db'}: ")
    assert database.stderr.count("\n") == 1, database.stderr


def test_a_home_others_may_write_in_or_own_is_refused(tmp_path: Path) -> None:
    """It holds the ledger and the admin token: another user could read the one and
    put their own in place of the other."""
    home = tmp_path / "shared"
    home.mkdir()
    home.chmod(0o777)
    refusal = (
        f"KOPILKA_HOME {home} may be written by other users (mode 777):"
        " `chmod go-w` it, or use another"
    )
    for command in (
        (*DEPOSIT,),
        ("serve", "--port", str(free_port())),
        ("balance", "--client=A", "--url", "http://127.0.0.1:1"),  # its admin token read
    ):
        result = run_kopilka(home, *command)
        assert (result.returncode, result.stdout) == (1, ""), command
        assert result.stderr == f"Error: {refusal}\n"
    terminal = Terminal(home, "shell", "--sandbox")  # what is typed is kept there
    try:
        terminal.expect(f"Error: {refusal}")
    finally:
        assert terminal.close() == 1
    assert list(home.iterdir()) == []
    home.chmod(0o1777)  # sticky, as /tmp: its mode shown whole
    result = run_kopilka(home, *DEPOSIT)
    assert result.stderr == f"Error: {refusal.replace('(mode 777)', '(mode 1777)')}\n"
    if os.geteuid() == 0:  # only root may give a directory away
        home.chmod(0o755)
        os.chown(home, 65534, 65534)  # nobody's
        result = run_kopilka(home, *DEPOSIT)
        assert result.stderr == (
            f"Error: KOPILKA_HOME {home} belongs to another user; use a directory of your own\n"
        )


@pytest.mark.parametrize("closed", ["the home", "its kopilka.toml"])
def test_a_config_file_that_cannot_be_read_is_refused_in_one_line(
    tmp_path: Path, closed: str
) -> None:
    """A home that may not be entered was told as Python's errno line, even to a command
    given --url or --db. Its kopilka.toml, not read, may be there saying where commands
    and the token go: it is refused, not taken for none."""
    enforced = file_modes_enforced(tmp_path)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    config = home / "kopilka.toml"
    config.write_text('ledger = "other"\n')
    shut = home if closed == "the home" else config
    shut.chmod(0o000)
    try:
        for command in (
            ("get", "--url", "127.0.0.1:1"),
            ("get", "--db", str(tmp_path / "other.db")),
            ("serve", "--port", str(free_port()), "--db", str(tmp_path / "served.db")),
        ):
            result = run_kopilka_as(enforced, home, *command)
            assert (result.returncode, result.stdout) == (1, ""), command
            assert result.stderr == f"Error: cannot read {config}: Permission denied\n"
    finally:
        shut.chmod(0o700)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["home"]


def test_a_home_in_a_directory_that_may_not_be_entered_is_one_line(tmp_path: Path) -> None:
    """Whether a ledger is there cannot be told: said as the home not to be made, not as
    Python's errno line naming the database."""
    enforced = file_modes_enforced(tmp_path)
    config = tmp_path / "kopilka.toml"  # given, so none is looked for in the home
    config.write_text("")
    config.chmod(0o644)
    shut = tmp_path / "shut"
    shut.mkdir(mode=0o000)
    try:
        for command in (("balance", "--client=Ann"), ("token", "list")):
            result = subprocess.run(
                [*enforced, *kopilka_command(), *command],
                capture_output=True,
                text=True,
                env={**kopilka_env(shut / "home"), "KOPILKA_CONFIG": str(config)},
                cwd=tmp_path,
                timeout=RUN_TIMEOUT_SECONDS,
                check=False,
            )
            assert (result.returncode, result.stdout, result.stderr) == (
                1,
                "",
                f"Error: cannot create KOPILKA_HOME {shut / 'home'}: Permission denied\n",
            ), command
    finally:
        shut.chmod(0o700)


def test_a_command_on_a_database_file_that_is_not_there_says_so_and_makes_none(
    kopilka: RunKopilka, tmp_path: Path
) -> None:
    """A mistyped --db must not answer from an empty ledger made there on the spot, nor
    a write that only an account open already could take be refused from one."""
    typo = tmp_path / "typo" / "books.db"
    for command in (
        ("balance", "--client=Ann"),
        ("get",),
        ("accounts",),
        ("transfer", "-f", "Ann", "-t", "Bob", "1"),
        ("withdraw", "--client=Ann", "--amount=1", "--description=cash"),
        ("set_limits", "--client=Ann", "--min-balance=0"),
    ):
        read = kopilka(*command, "--db", str(typo))
        assert (read.returncode, read.stdout) == (1, "")
        assert read.stderr == (
            f"Error: no database at {typo}: nothing has been written there"
            " (check --db, KOPILKA_DB or the db in kopilka.toml)\n"
        )
    assert not typo.parent.exists()
    typo.parent.mkdir()  # a file is made only in a directory that is there
    assert kopilka(*DEPOSIT, "--db", str(typo)).returncode == 0  # a write makes it
    assert kopilka("balance", "--client=John Jones", "--db", str(typo)).returncode == 0


def test_a_read_on_another_programs_sqlite_file_leaves_it_as_it_was(
    kopilka: RunKopilka, tmp_path: Path
) -> None:
    """As on PostgreSQL: a file without kopilka's tables (another program's, or empty) is
    refused by a command that only reads, and not one byte of it changes."""
    import sqlite3

    other, empty = tmp_path / "other.db", tmp_path / "empty.db"
    with contextlib.closing(sqlite3.connect(other)) as database:
        database.execute("CREATE TABLE users (id INTEGER)")
        database.execute("PRAGMA user_version = 1")  # as many programs set one
        database.commit()
    empty.write_bytes(b"")
    before = {path: path.read_bytes() for path in (other, empty)}
    for path in (other, empty):
        read = kopilka("get", "--db", str(path))
        assert (read.returncode, read.stdout) == (1, "")
        assert read.stderr == (
            f"Error: no kopilka ledger in {path} (check --db, KOPILKA_DB or the db in"
            " kopilka.toml)\n"
        )
    assert {path: path.read_bytes() for path in (other, empty)} == before
    # Kopilka's table names in another program's file, and a newer schema: refused, as
    # they were, before anything is written (not even the journal mode).
    lookalike, newer = tmp_path / "lookalike.db", tmp_path / "newer.db"
    for path, version in ((lookalike, 0), (newer, 99)):
        with contextlib.closing(sqlite3.connect(path)) as database:
            database.executescript(
                "CREATE TABLE accounts (x); CREATE TABLE operations (y); CREATE TABLE entries (z);"
                f" PRAGMA user_version = {version};"
            )
        written = path.read_bytes()
        read = kopilka("get", "--db", str(path))
        assert (read.returncode, read.stdout) == (1, "")
        assert read.stderr.count("\n") == 1, read.stderr
        assert path.read_bytes() == written
    assert "newer than this kopilka knows" in kopilka("get", "--db", str(newer)).stderr
    directory = kopilka("get", "--db", str(tmp_path))
    assert directory.stderr == f"Error: cannot open the database {tmp_path}: it is a directory\n"
    notes = tmp_path / "notes.txt"  # not a database at all: said so, nothing put beside it
    notes.write_text("hello\n")
    read = kopilka("get", "--db", str(notes))
    assert (read.returncode, read.stdout) == (1, "")
    assert read.stderr == f"Error: cannot open the database {notes}: file is not a database\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("other", "empty"))) == [
        "empty.db",
        "other.db",
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "Error: the server URL may not be empty: give http://HOST:PORT\n"),
        ("http://[::1", "Error: invalid server URL 'http://[::1': Invalid IPv6 URL\n"),
        (
            "http://127.0.0.1:1/\tx",
            "Error: invalid server URL 'http://127.0.0.1:1/\\tx': it has a control character\n",
        ),
        (
            "http://a\nb:1",
            "Error: invalid server URL 'http://a\\nb:1': it has a control character\n",
        ),
        *(
            (
                port,
                f"Error: invalid server URL {port!r}: a port is a whole number from 1 to 65535\n",
            )
            for port in ("-1", "+5", "0", "70000")
        ),
        # No server listens on port 0 (to a listener it means "any free port").
        *(
            (
                url,
                f"Error: invalid server URL {url!r}: a port is a whole number from 1 to 65535\n",
            )
            for url in ("http://127.0.0.1:0", "http://localhost:70000")
        ),
        # Short IPv4 forms the HTTP library will not take (the first one a loopback).
        *(
            (
                f"{host}:18500",
                f"Error: invalid server URL 'http://{host}:18500': Invalid IPv4 address:"
                f" '{host}'\n",
            )
            for host in ("0177.0.0.1", "10.0.0.01")
        ),
        # Names the HTTP library takes and then cannot send to: a traceback.
        *(
            (
                f"http://{host}:18500",
                f"Error: invalid server URL 'http://{host}:18500': its host has an empty part"
                " or one over 63 characters\n",
            )
            for host in ("a..b", "a" * 64 + ".com")
        ),
        (
            "http://xn--a:18500",
            "Error: invalid server URL 'http://xn--a:18500': its host is no valid name\n",
        ),
        # The API's own prefix: every request would go to /v1/v1/...
        *(
            (
                url,
                f"Error: invalid server URL {url!r}: give the server's address without /v1"
                " (the client adds the API's paths to it)\n",
            )
            for url in ("http://127.0.0.1:18500/v1", "http://127.0.0.1:18500/v1/accounts")
        ),
        (  # the byte 0xFF of a command line, as Python hands it over
            "http://127.0.0.1:18500/\udcff",
            "Error: invalid server URL 'http://127.0.0.1:18500/\\udcff': it has bytes that"
            " are not UTF-8\n",
        ),
    ],
)
def test_a_server_url_that_cannot_be_read_is_one_line(
    kopilka: RunKopilka, url: str, message: str
) -> None:
    result = kopilka("get", "--url", url)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", message)


# A write, a read and an e-wallet command: one-shot commands of each kind.
ONE_SHOT_SAMPLES = [
    ("deposit", "--client=Ann", "--amount=1", "--description=x"),
    ("balance", "--client=Ann"),
    ("add-user", "-n", "Ann", "--max", "10"),
]


@pytest.mark.parametrize("command", ONE_SHOT_SAMPLES)
def test_a_one_shot_command_takes_no_sandbox(
    kopilka: RunKopilka, kopilka_home: Path, command: tuple[str, ...]
) -> None:
    """Its sandbox would end with it: a deposit said done would be kept nowhere."""
    result = kopilka(*command, "--sandbox")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: {command[0]} would work in a sandbox that ends with it, keeping nothing:"
        " --sandbox is for a shell session (kopilka shell --sandbox)\n"
    )
    assert not (kopilka_home / "kopilka.db").exists()


# kopilka's own and SQLite's: either ends with the process.
IN_MEMORY = ("memory:", "sqlite::memory:")


@pytest.mark.parametrize("db", IN_MEMORY)
@pytest.mark.parametrize("command", ONE_SHOT_SAMPLES)
def test_a_one_shot_command_takes_no_ledger_in_memory(
    kopilka: RunKopilka, command: tuple[str, ...], db: str
) -> None:
    """It would end with the command: a deposit said done would be kept nowhere."""
    result = kopilka(*command, "--db", db)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: {command[0]} would work on a ledger in memory that ends with it, keeping"
        " nothing: memory: is for a server or a shell session\n"
    )


@pytest.mark.parametrize("db", IN_MEMORY)
def test_init_and_token_keep_nothing_in_memory(kopilka: RunKopilka, db: str) -> None:
    initialized = kopilka("init", "--db", db)
    assert (initialized.returncode, initialized.stdout) == (1, "")
    assert (
        initialized.stderr
        == "Error: init works on a database that is kept; memory: keeps nothing\n"
    )
    created = kopilka("token", "create", "--role", "admin", "--db", db)
    assert (created.returncode, created.stdout) == (1, "")
    assert created.stderr == (
        "Error: a token in memory would end with this command, honoured by no server:"
        " give the server's --url, or its --db\n"
    )
    # They make no token: told so in their own words, not create's.
    for command in (("list",), ("revoke", "kop_0123456789abcdef")):
        result = kopilka("token", *command, "--db", db)
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == (
            f"Error: a database in memory holds no tokens to {command[0]}: give the server's"
            " --url, or its --db\n"
        )


def test_init_has_no_sandbox_to_set_up(kopilka: RunKopilka, kopilka_home: Path) -> None:
    result = kopilka("init", "--sandbox")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "Error: init works on a database; a sandbox has none to set up\n"
    assert not (kopilka_home / "kopilka.db").exists()


def test_init_refuses_a_ledger_or_token_it_would_not_use(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """`init --ledger books` said the schema was made, as if for that ledger alone."""
    for option in ("--ledger=books", "--token=kop_x_y"):
        result = kopilka("init", option)
        assert (result.returncode, result.stdout) == (1, "")
        name = option.partition("=")[0]
        assert result.stderr == f"Error: init sets up the whole database: it takes no {name}\n"
    assert not (kopilka_home / "kopilka.db").exists()
    assert kopilka("init", env={"KOPILKA_LEDGER": "books"}).returncode == 0  # a setting


def _started(kopilka_home: Path, arguments: Sequence[str]) -> subprocess.Popen[str]:
    """`kopilka ARGUMENTS` running in `kopilka_home`'s parent, its output piped."""
    kopilka_home.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [*kopilka_command(), *arguments],
        env=kopilka_env(kopilka_home),
        cwd=kopilka_home.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("delay_seconds", [0.03, 0.06, 0.09, 0.12, 0.15, 0.18, 0.21, 0.24])
def test_ctrl_c_while_kopilka_loads_says_nothing(kopilka_home: Path, delay_seconds: float) -> None:
    """Interrupted before it runs, a command ends as an interrupted one does: no traceback
    of the import it was in the middle of."""
    with _started(kopilka_home, DEPOSIT) as process:
        time.sleep(delay_seconds)
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=30)
    # Killed by the signal before Python took it over, 130 after; or done by then. On a
    # loaded machine it may land in Python's own start (reading the site packages' .pth
    # files, or setting up the script as __main__), which CPython ends with status 1 and
    # an error of its own.
    in_python_start = errors.startswith(
        ("Fatal Python error: init_import_site", "python: failed to set __main__.__loader__")
    )
    assert process.returncode in (-signal.SIGINT, 130, 0) or (
        process.returncode == 1 and in_python_start
    ), errors
    # On a loaded machine the signal may land in Python's own start or the installed
    # script's first lines, before any of kopilka's code runs: no frame of it is ours.
    frames = re.findall(r'File "([^"]+)"', errors)
    assert not any(f"{os.sep}kopilka{os.sep}" in frame for frame in frames), errors


def test_a_write_stopped_as_it_is_answered_is_never_applied_in_silence(kopilka_home: Path) -> None:
    """Ctrl-C or SIGTERM just after the commit, as the bank was being closed or the answer
    written: the deposit was applied, and the command said nothing (exit 130 or 143), so
    a rerun without a key would deposit again. Stopped at delays swept over the moments a
    deposit takes here, each run that applied it must say so, or that it may have."""
    started = time.monotonic()
    with _started(kopilka_home, (*DEPOSIT, "--idempotency-key=timing")) as timed:
        timed.communicate(timeout=30)
    took = time.monotonic() - started
    runs: list[tuple[str, float, int, str, str]] = []
    for index in range(30):
        key = f"run-{index}"
        delay_seconds = took * (0.7 + 0.4 * index / 30)
        stop = (signal.SIGINT, signal.SIGTERM)[index % 2]
        with _started(kopilka_home, (*DEPOSIT, f"--idempotency-key={key}")) as process:
            time.sleep(delay_seconds)
            process.send_signal(stop)
            out, errors = process.communicate(timeout=30)
        runs.append((key, delay_seconds, process.returncode, out, errors))
    with contextlib.closing(sqlite3.connect(kopilka_home / "kopilka.db")) as db:
        applied = {key for (key,) in db.execute("SELECT idempotency_key FROM operations")}
    for key, delay_seconds, status, out, errors in runs:
        said_done = "Deposit operation was successful!" in out or "it is done" in errors
        if key in applied:
            assert said_done or "may" in errors, (delay_seconds, status, out, errors)
        else:
            assert not said_done, (delay_seconds, status, out, errors)


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name
)
def test_a_signal_once_a_write_is_answered_leaves_its_status_as_said(
    kopilka_home: Path, signum: signal.Signals
) -> None:
    """A signal just after `Deposit operation was successful!`, as the bank closed or the
    program ended: it exited 130, 143 or 129 (which say the command was interrupted), or
    was killed by it, and a script that read `$?` made the deposit again."""
    assert run_kopilka(kopilka_home, *DEPOSIT).returncode == 0  # the ledger, made
    for run in range(5):
        with _started(kopilka_home, (*DEPOSIT, f"--idempotency-key=run-{run}")) as process:
            assert process.stdout is not None
            answered = process.stdout.readline()
            process.send_signal(signum)
            out, errors = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
        assert (process.returncode, answered + out, errors) == (
            0,
            "Deposit operation was successful!\n",
            "",
        ), run
    balance = run_kopilka(kopilka_home, "balance", "--client=John Jones")
    assert balance.stdout == "Balance of John Jones: $600.00\n"


@contextlib.contextmanager
def _stdout_full() -> Iterator[tuple[int, int]]:
    """A pipe (reading end, writing end) already full: a command's answer written to it
    waits until the reader takes what fills it."""
    reading, writing = os.pipe()
    try:
        fcntl.fcntl(writing, fcntl.F_SETPIPE_SZ, 4096)
        os.set_blocking(writing, False)
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(writing, b"#" * 512)
        os.set_blocking(writing, True)
        yield reading, writing
    finally:
        for end in (reading, writing):
            with contextlib.suppress(OSError):
                os.close(end)


def _drained(reading: int) -> bytes:
    """All that is written to the pipe until its writers are gone."""
    taken = b""
    while chunk := os.read(reading, 65536):
        taken += chunk
    return taken


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_write_stopped_while_its_answer_waits_is_answered_once_as_done(
    kopilka_home: Path, signum: signal.Signals
) -> None:
    """The deposit committed, its answer waiting on a full pipe, then a signal: it ended
    130 or 143, which say it was interrupted, though it was done; its answer, cut short
    by the signal, was written again after it. Now the answer is written once, whole,
    and the status is the one it says."""
    with _a_deposit_waiting_on_its_answer(kopilka_home) as (process, reading):
        process.send_signal(signum)
        time.sleep(0.2)  # taken, as it waits
        shown = _drained(reading).lstrip(b"#")
        _, errors = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    assert (process.returncode, shown, errors) == (0, b"Deposit operation was successful!\n", "")


@pytest.mark.parametrize("errors_to", ["their own pipe", "the same pipe"])
def test_a_second_signal_while_a_writes_answer_waits_ends_it_unwritten(
    kopilka_home: Path, errors_to: str
) -> None:
    """Sent twice (a reader that takes no more, a user who does not wait), the signals
    end it at once, and it says that the command ran: status 3, not 143. With stderr the
    same full pipe (`2>&1`), the saying waited there for ever, and so did the process."""
    same = errors_to == "the same pipe"
    with _a_deposit_waiting_on_its_answer(kopilka_home, errors_too=same) as (process, _):
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    told = (
        "Error: the command ran, but its answer could not be written (interrupted); check"
        " before repeating it\n"
    )
    assert (process.returncode, errors) == (3, None if same else told)


@contextlib.contextmanager
def _a_deposit_waiting_on_its_answer(
    kopilka_home: Path, *, errors_too: bool = False
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A second deposit of John Jones's, committed, its answer waiting on a full pipe (the
    process, and the pipe's end to read; its stderr there too if `errors_too`); killed
    at the end if still waiting."""
    assert run_kopilka(kopilka_home, *DEPOSIT).returncode == 0
    with _stdout_full() as (reading, writing):
        process = subprocess.Popen(
            [*kopilka_command(), *DEPOSIT],
            stdout=writing,
            stderr=writing if errors_too else subprocess.PIPE,
            env=kopilka_env(kopilka_home),
            cwd=kopilka_home.parent,
            text=True,
        )
        os.close(writing)
        with process:
            try:
                _until_the_balance_is(kopilka_home, "$200.00")
                time.sleep(0.2)
                yield process, reading
            finally:
                process.kill()


def _until_the_balance_is(kopilka_home: Path, balance: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while run_kopilka(kopilka_home, "balance", "--client=John Jones").stdout != (
        f"Balance of John Jones: {balance}\n"
    ):
        assert time.monotonic() < deadline, f"the balance never came to {balance}"
        time.sleep(0.05)


def _interrupted_at_a_silent_listener(
    kopilka_home: Path,
    arguments: Callable[[int], list[str]],
    first_bytes: bytes = b"",
    signum: signal.Signals = signal.SIGINT,
) -> tuple[int, str, str]:
    """kopilka ARGUMENTS(port) against a listener that takes the connection, reads what
    starts with `first_bytes`, and never answers; then Ctrl-C (or `signum`): (status,
    stdout, stderr)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with _started(kopilka_home, arguments(silent.getsockname()[1])) as process:
            connection, _ = silent.accept()
            with connection:
                if first_bytes:
                    connection.settimeout(10)
                    assert connection.recv(65536).startswith(first_bytes)
                time.sleep(0.3)
                process.send_signal(signum)
                out, errors = process.communicate(timeout=30)
    return process.returncode, out, errors


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
@pytest.mark.parametrize("command", [("get",), DEPOSIT, ("add-user", "-n", "Ann", "--max", "1")])
def test_a_signal_while_a_database_is_being_reached_ends_the_command_at_once(
    kopilka_home: Path, command: tuple[str, ...], signum: signal.Signals
) -> None:
    """A PostgreSQL server that takes the connection and never answers: a signal ends the
    command at once, nothing sent, without a traceback of the connection left behind; a
    write says that nothing was applied. SIGTERM took effect only once the connect
    timeout (5 s) had run out, and a write said nothing."""
    result = _interrupted_at_a_silent_listener(
        kopilka_home,
        lambda port: [*command, "--db", f"postgresql://app:pw@127.0.0.1:{port}/bank"],
        signum=signum,
    )
    said = (
        "" if command == ("get",) else "Error: interrupted before it began; nothing was applied\n"
    )
    assert result == (128 + signum, "", said)


def test_a_write_interrupted_while_on_its_way_says_it_may_have_been_applied(
    kopilka_home: Path,
) -> None:
    """Ctrl-C while a server has the request: the user is told, not left with silence,
    and given the key the write went under, to retry it with."""
    # The ledger named: the client need not ask the server which is the token's.
    token = ["--token", "kop_0123456789abcdef_x", "--ledger", "main"]
    for given, key in ((["--idempotency-key=rent may"], "'rent may'"), ([], "[0-9a-f-]{36}")):
        status, out, errors = _interrupted_at_a_silent_listener(
            kopilka_home,
            lambda port, given=given: [
                *DEPOSIT,
                *given,
                "--url",
                f"http://127.0.0.1:{port}",
                *token,
            ],
            b"POST /v1/deposits ",
        )
        assert (status, out) == (130, "")
        assert re.fullmatch(
            "Error: interrupted; the command may still have been applied"
            f" \\(to retry it safely: --idempotency-key={key}\\)\n",
            errors,
        ), errors


def test_the_shell_quotes_no_password_of_a_url_typed_in_a_line(kopilka: RunKopilka) -> None:
    lines = [
        'get "postgresql://u:it\'s S3cret@127.0.0.1/db"',
        "get 'postgresql://u:S3cret x@127.0.0.1/db'",
    ]
    piped = kopilka("shell", stdin="\n".join(lines) + "\n")
    assert piped.returncode == 0
    assert "S3cret" not in piped.stdout + piped.stderr
    assert piped.stdout.count("u:***@127.0.0.1") == 2, piped.stdout


def test_a_directory_given_as_the_database_is_refused_leaving_nothing_beside_it(
    kopilka: RunKopilka, tmp_path: Path
) -> None:
    """A write (which would make the schema) is refused as a read is, and puts no lock
    file beside the directory."""
    directory = tmp_path / "ledger"
    directory.mkdir()
    write = kopilka(
        "deposit", "--client=Ann", "--amount=1", "--description=x", "--db", str(directory)
    )
    assert (write.returncode, write.stdout) == (1, "")
    assert write.stderr == f"Error: cannot open the database {directory}: it is a directory\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ledger"]


def test_a_token_pasted_in_the_wrong_place_is_not_echoed_whole(kopilka: RunKopilka) -> None:
    """Scripts and CI logs keep stderr: the token's id says which one it was."""
    secret = "kop_0123456789abcdef_AbC-dEf_ghIJKLmnopQRstuvwxyz0123456789-_abcd"
    assert kopilka("init").returncode == 0  # a ledger for the revoke to look in
    for words in ((secret,), ("balance", secret), ("token", "revoke", f"x{secret}")):
        result = kopilka(*words)
        assert result.returncode == 1, words
        assert "AbC-dEf" not in result.stderr and "kop_0123456789abcdef_***" in result.stderr
    # A client's name of that shape, but no secret's length, is shown as it is.
    named = kopilka("balance", "--client=kop_0123456789abcdef_shop")
    assert named.stderr == "Error: no account for client 'kop_0123456789abcdef_shop'\n"
    # Messages that shorten what they quote: masked first, or a part of it was shown.
    for words, env in (
        (("balance", "--client=Ann", "--db", f"file:{secret}"), {}),
        (("serve",), {"KOPILKA_PORT": secret}),
        (("statement", "--client=Ann", f"--since=2026-01-01 {secret}"), {}),
    ):
        result = kopilka(*words, env=env)
        assert result.returncode == 1, words
        assert "AbC-dEf" not in result.stderr and "kop_0123456789abcdef_***" in result.stderr


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A file system of its own, of 1 MB, to fill."""
    with small_disk_mounted(tmp_path / "small") as mount_point:
        yield mount_point


def test_a_database_on_a_full_disk_is_said_to_be_so(small_disk: Path) -> None:
    """SQLite cannot open a WAL database without room for its shared-memory file, and says
    "disk I/O error": the user is told the disk is full, not left to suspect it failing."""
    home = small_disk / "home"
    assert run_kopilka(home, *DEPOSIT).returncode == 0
    filler = fill(small_disk)
    refused = run_kopilka(home, "balance", "--client=John Jones")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.startswith(f"Error: cannot open the database {home / 'kopilka.db'}: ")
    assert refused.stderr.endswith(": the disk it is on is full\n")
    assert refused.stderr.count("\n") == 1
    filler.unlink()
    read = run_kopilka(home, "balance", "--client=John Jones")
    assert read.stdout == "Balance of John Jones: $100.00\n"


def test_a_database_on_a_read_only_mount_is_said_to_be_so(small_disk: Path) -> None:
    """Not the errno's own words, nor a lock file the user never heard of."""
    home = small_disk / "home"
    assert run_kopilka(home, *DEPOSIT).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    refused = run_kopilka(home, "balance", "--client=John Jones")
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        1,
        "",
        f"Error: cannot open the database {home / 'kopilka.db'}: the file system it is on is"
        " mounted read-only\n",
    )


@contextlib.contextmanager
def _write_lock_held(database: Path, holder: str) -> Iterator[None]:
    """The database's write lock held: by another program (a transaction left open) or
    by another kopilka process (its writers' lock file, as a batch of its holds it)."""
    if holder == "another program":
        with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            yield
            other.execute("ROLLBACK")
    else:
        import fcntl

        with open(f"{database}-writer.lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield


def _until_it_opens(process: subprocess.Popen[str], path: Path) -> None:
    """Wait until `process` has `path` open (its store is open, its command under way)."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if any(
                os.readlink(link) == str(path) for link in Path(f"/proc/{process.pid}/fd").iterdir()
            ):
                return
        time.sleep(0.01)
    raise AssertionError(f"{path} was never opened")


@pytest.mark.parametrize("holder", ["another program", "another kopilka"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_write_stopped_while_it_waits_for_another_is_not_applied(
    kopilka: RunKopilka, kopilka_home: Path, holder: str, signum: signal.Signals
) -> None:
    """Ctrl-C (or a `timeout`) while another holds the write lock: the write stops waiting
    at once, and is not applied once the lock is free, its caller gone."""
    assert kopilka(*DEPOSIT).returncode == 0
    database = kopilka_home / "kopilka.db"
    more = ("deposit", "--client=John Jones", "--amount=5", "--description=more")
    with _write_lock_held(database, holder), _started(kopilka_home, more) as process:
        _until_it_opens(process, Path(f"{database}-writer.lock"))
        time.sleep(0.5)  # its write submitted, and waiting
        began = time.monotonic()
        process.send_signal(signum)
        out, errors = process.communicate(timeout=30)
        took = time.monotonic() - began
    assert (process.returncode, out) == (128 + signum, "")
    assert errors == (
        "Error: interrupted while it waited for another's write to end; nothing was applied\n"
    )
    assert took < 3, f"it waited {took:.1f} s"
    balance = kopilka("balance", "--client=John Jones")
    assert balance.stdout == "Balance of John Jones: $100.00\n"


def _until_it_waits_for_a_row(postgres_url: str) -> None:
    """Wait until a kopilka connection waits for a row's lock."""
    with contextlib.closing(psycopg2.connect(postgres_url)) as watcher:
        watcher.autocommit = True
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            with watcher.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = 'kopilka' AND wait_event_type = 'Lock'"
                )
                if cursor.fetchone()[0]:
                    return
            time.sleep(0.02)
    raise AssertionError("no kopilka connection ever waited for a lock")


@contextlib.contextmanager
def _withdrawing_behind_a_row_lock(
    kopilka: RunKopilka, kopilka_home: Path, postgres_url: str, floor_raised: bool = False
) -> Iterator[tuple[subprocess.Popen[str], Any]]:
    """John Jones given $100, his row then locked by another session (his floor raised
    to his balance there first, if asked), and a one-shot withdrawal of $5 from him
    started and waiting for that lock: the withdrawal's process, and the other session."""
    assert kopilka(*DEPOSIT, "--db", postgres_url).returncode == 0
    withdrawal = ("withdraw", "--client=John Jones", "--amount=5", "--description=atm")
    with contextlib.closing(psycopg2.connect(postgres_url)) as other, other.cursor() as cursor:
        cursor.execute("SELECT 1 FROM accounts WHERE client = 'John Jones' FOR UPDATE")
        if floor_raised:
            cursor.execute("UPDATE accounts SET min_balance = balance WHERE client = 'John Jones'")
        with _started(kopilka_home, (*withdrawal, "--db", postgres_url)) as process:
            _until_it_waits_for_a_row(postgres_url)
            yield process, other


@pytest.mark.postgres
@pytest.mark.parametrize("the_other_write", ["ends", "raises the floor"])
def test_a_write_stopped_while_it_waits_for_a_row_says_how_it_ended(
    kopilka: RunKopilka, kopilka_home: Path, postgres_url: str, the_other_write: str
) -> None:
    """On PostgreSQL a write waits for a row's lock to its end, stopped or not, and its
    outcome is then known: it was said only that it 'may still have been applied', with
    no key to settle it by, though it was applied, or refused. Applied, the signal came
    too late to stop it: it is answered as done, status 0 (143 had a script run it
    again)."""
    floor_raised = the_other_write == "raises the floor"
    with _withdrawing_behind_a_row_lock(kopilka, kopilka_home, postgres_url, floor_raised) as (
        process,
        other,
    ):
        process.send_signal(signal.SIGTERM)
        time.sleep(1)  # taken at once (a lock's wait is interrupted), its write waiting on
        other.commit()
        out, errors = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    balance = kopilka("balance", "--client=John Jones", "--db", postgres_url).stdout
    if the_other_write == "ends":
        done = "Withdrawal operation was successful!\n"
        assert (process.returncode, out, errors) == (0, done, "")
        assert balance == "Balance of John Jones: $95.00\n"
    else:
        # Refused as it would have been unstopped, and said so: the refusal, not a wait.
        assert (process.returncode, out) == (128 + signal.SIGTERM, "")
        assert errors == (
            "Error: interrupted; nothing was applied: insufficient funds: John Jones has $0.00"
            " available\n"
        )
        assert balance == "Balance of John Jones: $100.00\n"


@pytest.mark.postgres
def test_a_write_waited_for_after_ctrl_c_says_why_the_command_goes_on(
    kopilka: RunKopilka, kopilka_home: Path, postgres_url: str
) -> None:
    """After Ctrl-C only "^C" showed while the write waited for a row's lock, up to 20 s:
    Ctrl-C seemed not to work. Waited for a while, it says so, and how to stop waiting."""
    with _withdrawing_behind_a_row_lock(kopilka, kopilka_home, postgres_url) as (process, other):
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        said = process.stderr.readline()  # once it has waited a while
        other.rollback()
        out, errors = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    assert said == (
        "Waiting for the write under way to end; Ctrl-C again stops waiting (it may then"
        " still be applied)\n"
    )
    # The signal came too late to stop it: answered as done.
    assert (process.returncode, out, errors) == (0, "Withdrawal operation was successful!\n", "")


@pytest.mark.postgres
def test_a_second_ctrl_c_while_a_write_waits_for_a_row_ends_the_command(
    kopilka: RunKopilka, kopilka_home: Path, postgres_url: str
) -> None:
    """The second Ctrl-C said the write may still have been applied, and then the command
    waited on, closing its bank, for as long as the row's lock was held (up to 20 s)."""
    with _withdrawing_behind_a_row_lock(kopilka, kopilka_home, postgres_url) as (process, other):
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)  # waiting for the write's end
        began = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, errors = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
        took = time.monotonic() - began
        other.rollback()
    assert (process.returncode, out) == (130, "")
    assert errors.startswith("Error: interrupted; the command may still have been applied")
    assert took < 5, f"it waited {took:.1f} s"
    # Its transaction never committed: the lock's holder was the first to finish.
    balance = kopilka("balance", "--client=John Jones", "--db", postgres_url).stdout
    assert balance == "Balance of John Jones: $100.00\n"


def test_a_database_named_in_kopilka_toml_that_is_not_there_names_the_file(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """It said to check --db or KOPILKA_DB, neither of which had named it."""
    kopilka_home.parent.mkdir(parents=True, exist_ok=True)
    missing = kopilka_home.parent / "books.db"
    (kopilka_home.parent / "kopilka.toml").write_text(f'db = "{missing}"\n')
    result = kopilka("balance", "--client=A")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: no database at {missing}: nothing has been written there (check --db,"
        " KOPILKA_DB or the db in kopilka.toml)\n"
    )
    assert not missing.exists()


def test_how_a_server_would_listen_is_no_concern_of_other_commands(kopilka: RunKopilka) -> None:
    """Kubernetes sets KOPILKA_PORT=tcp://IP:PORT beside every program of a Service named
    kopilka: a client's commands went on to fail, each one, on a port they never use."""
    beside = {"KOPILKA_PORT": "tcp://10.0.0.1:8888", "KOPILKA_WORKERS": "tcp://x"}
    deposit = kopilka("deposit", "--client=Ann", "--amount=5", "--description=pay", env=beside)
    assert (deposit.returncode, deposit.stderr) == (0, "")
    assert "$5.00" in kopilka("get", "-n", "Ann", env=beside).stdout
    # `serve` reads them, and says which one it cannot.
    served = kopilka("serve", env=beside)
    assert served.returncode == 1
    assert (
        served.stderr
        == "Error: port must be a whole number, not 'tcp://10.0.0.1:8888' (KOPILKA_PORT)\n"
    )


def test_a_since_past_this_clock_lists_what_a_clock_ahead_stamped(
    kopilka: RunKopilka, kopilka_home: Path
) -> None:
    """Operations stamped by a clock that ran ahead (another machine's, a server's): a
    statement since then, up to now, holds them, as the bank's now is never before its
    latest operation. This machine's clock refused the since as in the future."""
    assert kopilka("deposit", "--client=F", "--amount=2", "--description=ahead").returncode == 0
    ahead = int(datetime(2090, 6, 1, 12, tzinfo=UTC).timestamp() * 1_000_000)
    with contextlib.closing(sqlite3.connect(kopilka_home / "kopilka.db")) as db, db:
        db.execute("UPDATE entries SET created_at = ?", (ahead,))
        db.execute("UPDATE operations SET created_at = ?", (ahead,))
    result = kopilka("statement", "--client=F", "--since=2090-06-01", "--format=csv")
    assert (result.returncode, result.stderr) == (0, "")
    assert "2090-06-01" in result.stdout and "ahead" in result.stdout
    # Past the bank's now too, it is said to be in the future.
    later = kopilka("statement", "--client=F", "--since=2091-01-01")
    assert later.stderr == "Error: the start of the period (since) is in the future\n"


def test_a_database_in_a_directory_that_is_not_there_is_refused(
    kopilka: RunKopilka, tmp_path: Path
) -> None:
    """A mistyped directory in --db made a new, empty ledger there, which every later
    command with the right path never saw: the deposit seemed lost."""
    typo = tmp_path / "ledgrs" / "books.db"
    for command in (DEPOSIT, ("add-user", "-n", "Ann", "--max", "100"), ("init",)):
        result = kopilka(*command, "--db", str(typo))
        assert (result.returncode, result.stdout) == (1, ""), command
        assert result.stderr == (
            f"Error: cannot open the database {typo}: there is no directory {typo.parent}"
            " (check --db, KOPILKA_DB or the db in kopilka.toml; or create it first)\n"
        )
    assert not typo.parent.exists()
    typo.parent.mkdir()
    assert kopilka(*DEPOSIT, "--db", str(typo)).returncode == 0


def test_a_long_answer_to_a_slow_non_blocking_reader_is_written_whole(
    kopilka_home: Path,
) -> None:
    """Started by a program that leaves its pipe non-blocking (Node.js does), kopilka
    met a full pipe as an error: the statement stopped at 64 KiB, exit 3."""
    assert run_kopilka(kopilka_home, *DEPOSIT).returncode == 0  # the home and its ledger
    with EmbeddedBank(str(kopilka_home / "kopilka.db")) as bank:
        bank.execute_many([Deposit("Ann", 1, "x" * 60, f"key-{n}") for n in range(2_000)])
    reading, writing = os.pipe()
    os.set_blocking(writing, False)
    statement = subprocess.Popen(
        [*kopilka_command(), "statement", "--client=Ann"],
        stdout=writing,
        stderr=subprocess.PIPE,
        env=kopilka_env(kopilka_home),
        cwd=kopilka_home.parent,
    )
    os.close(writing)
    time.sleep(1.0)  # the reader is slow: the pipe fills first
    shown = b""
    while chunk := os.read(reading, 65536):
        shown += chunk
    os.close(reading)
    _, errors = statement.communicate(timeout=RUN_TIMEOUT_SECONDS)
    assert (statement.returncode, errors) == (0, b"")
    assert len(shown) > 2 * 65536
    assert shown.decode().splitlines()[-1].startswith("|            ")  # the totals row, last


def test_a_script_on_a_non_blocking_pipe_is_waited_for_not_taken_as_ended(
    kopilka_home: Path,
) -> None:
    """Handed a pipe left non-blocking, the shell read "nothing yet" as the end of the
    input: a deposit half-written by its producer ran for $10, not $1,000, the rest
    never read, and the shell exited 0."""
    reading, writing = os.pipe()
    try:
        os.write(writing, b"deposit --client=NB --description=rent --amount=10")
        os.set_blocking(reading, False)
        shell = subprocess.Popen(
            kopilka_command(),
            stdin=reading,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=kopilka_env(kopilka_home),
            cwd=kopilka_home.parent,
        )
        os.close(reading)
        time.sleep(1.0)  # the producer is slow: the shell meets an empty pipe first
        os.write(writing, b"00\nbalance --client=NB\n")
    finally:
        os.close(writing)
    out, errors = shell.communicate(timeout=RUN_TIMEOUT_SECONDS)
    assert (shell.returncode, out, errors) == (
        0,
        b"Deposit operation was successful!\nBalance of NB: $1,000.00\n",
        b"",
    )


def test_a_token_made_whose_secret_was_lost_is_named_with_where_it_is(
    kopilka: RunKopilka, kopilka_home: Path, tmp_path: Path
) -> None:
    """The revoke suggested left out the --db (or --url) given: run as told, it looked in
    the home's ledger, or was refused there, and the token stayed."""
    books = tmp_path / "books.db"
    assert kopilka("init", "--db", str(books)).returncode == 0
    with open("/dev/full", "w") as full:
        status, errors = _run_with_stdout(
            kopilka_home, full.fileno(), "token", "create", "--role", "teller", "--db", str(books)
        )
    listed = kopilka("token", "list", "--db", str(books)).stdout.splitlines()
    (token_id,) = [line.split()[0] for line in listed]
    revoke = f"kopilka token revoke {token_id} --db={books}"
    assert (status, errors) == (
        3,
        f"Error: token {token_id} was made, but its secret could not be written (No space"
        f" left on device): no one has it; revoke it ({revoke})\n",
    )
    assert kopilka(*revoke.split()[1:]).returncode == 0  # run as told, it is revoked
