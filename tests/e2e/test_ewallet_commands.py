"""The e-wallet commands: init, add-user, transfer -f/-t, get, each a real process, on
the home's SQLite file and on PostgreSQL (named with --db, and once with KOPILKA_DB)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import pytest
from tests.e2e.conftest import RunKopilka, kopilka_command, kopilka_env
from tests.kopilka_server import free_port

from kopilka.redaction import redact_url
from kopilka.store.postgres_schema import MIGRATION_LOCK_KEY, SCHEMA_VERSION


@dataclass(frozen=True)
class Backend:
    """Where the commands keep the ledger, and how they are told so."""

    db: str  # the SQLite file or the PostgreSQL URL
    arguments: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_postgres(self) -> bool:
        return self.db.startswith(("postgresql://", "postgres://"))


SQLITE = "sqlite"
POSTGRES = pytest.param("postgresql", marks=pytest.mark.postgres)
POSTGRES_FROM_ENV = pytest.param("postgresql-env", marks=pytest.mark.postgres)


@pytest.fixture(params=[SQLITE, POSTGRES])
def backend(request: pytest.FixtureRequest, kopilka_home: Path) -> Backend:
    if request.param == SQLITE:
        return Backend(str(kopilka_home / "kopilka.db"))  # the default: no option at all
    # One database for the module (a CREATE DATABASE per test would cost more), emptied
    # so that each test starts as on a new SQLite home.
    url: str = request.getfixturevalue("postgres_module_url")
    asyncio.run(_drop_every_table(url))
    if request.param == "postgresql-env":
        return Backend(url, env={"KOPILKA_DB": url})
    return Backend(url, ("--db", url))


async def _drop_every_table(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        names = await connection.fetch(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()"
        )
        if names:
            await connection.execute(f"DROP TABLE {', '.join(row[0] for row in names)}")
    finally:
        await connection.close()


@pytest.fixture
def wallet(kopilka: RunKopilka, backend: Backend) -> RunKopilka:
    """`kopilka` on the test's backend."""

    def run(
        *arguments: str, stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return kopilka(
            *backend.arguments, *arguments, stdin=stdin, env={**backend.env, **(env or {})}
        )

    return run


def stored_clients(backend: Backend) -> list[str]:
    """The clients the backend's database holds: the commands wrote there and nowhere
    else (the query fails if there is no schema)."""
    query = "SELECT client FROM accounts ORDER BY client"
    if backend.is_postgres:
        return asyncio.run(_fetch_column(backend.db, query))
    with closing(sqlite3.connect(backend.db)) as database:
        return [client for (client,) in database.execute(query)]


def ledger_tables(backend: Backend) -> list[str]:
    """The tables of the backend's database ([] where no SQLite file is)."""
    if backend.is_postgres:
        return asyncio.run(
            _fetch_column(
                backend.db, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        )
    if not Path(backend.db).exists():
        return []
    with closing(sqlite3.connect(backend.db)) as database:
        return [name for (name,) in database.execute("SELECT name FROM sqlite_master")]


async def _fetch_column(url: str, query: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        return [row[0] for row in await connection.fetch(query)]
    finally:
        await connection.close()


def test_init_creates_the_schema_and_is_idempotent(wallet: RunKopilka, backend: Backend) -> None:
    where = redact_url(backend.db)
    created = wallet("init")
    assert (created.returncode, created.stderr) == (0, "")
    assert created.stdout.startswith(f"Schema created in {where} (version ")
    for _ in range(2):
        result = wallet("init")
        assert (result.returncode, result.stderr) == (0, "")
        assert result.stdout == f"Schema is up to date in {where}.\n"
    assert stored_clients(backend) == []


def test_init_never_prints_a_password(kopilka: RunKopilka) -> None:
    result = kopilka("init", "--db", "postgresql://teller:s3cret@127.0.0.1:1/bank")
    assert result.returncode == 1
    assert "s3cret" not in result.stdout + result.stderr
    assert result.stderr.startswith("Error: ")
    assert "postgresql://teller:***@127.0.0.1:1/bank" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_add_user_posts_the_opening_balance_as_a_deposit(wallet: RunKopilka) -> None:
    added = wallet("add-user", "-n", "Jane Doe", "--max", "1000", "-c", "100")
    assert (added.returncode, added.stderr) == (0, "")
    assert added.stdout == "Added user Jane Doe: balance $100.00, floor $0.00, cap $1,000.00.\n"
    statement = wallet("statement", "--client=Jane Doe").stdout.splitlines()
    assert statement[3].endswith("| Opening balance  |             |  $100.00 | $100.00 |")
    assert wallet("get", "-n", "Jane Doe").stdout == (
        "Name:    Jane Doe\nBalance: $100.00\nFloor:   $0.00\nCap:     $1,000.00\n"
    )


def test_add_user_with_a_positive_floor_and_no_opening_balance(wallet: RunKopilka) -> None:
    assert wallet("add-user", "-n", "Flo", "--min", "10", "--max", "none", "-c", "50").stdout == (
        "Added user Flo: balance $50.00, floor $10.00, cap none.\n"
    )
    assert wallet("add-user", "-n", "Zed", "--max", "20").stdout == (
        "Added user Zed: balance $0.00, floor $0.00, cap $20.00.\n"
    )
    assert wallet("get").stdout.splitlines() == [
        "| Client | Balance | Floor  | Cap    |",
        "|--------|---------|--------|--------|",
        "| Flo    |  $50.00 | $10.00 |   none |",
        "| Zed    |   $0.00 |  $0.00 | $20.00 |",
    ]


def test_a_refused_add_user_leaves_no_account(wallet: RunKopilka, backend: Backend) -> None:
    refusals = {
        ("-n", "Ann", "--max", "10", "-c", "10.01"): (
            "Error: the opening balance $10.01 is above the cap of $10.00\n"
        ),
        ("-n", "Ann", "--min", "5", "--max", "10"): (
            "Error: the opening balance $0.00 is below the floor $5.00\n"
        ),
        ("-n", "Ann", "--min", "50", "--max", "10", "-c", "60"): (
            "Error: the cap $10.00 is below the floor $50.00\n"
        ),
        ("-n", "Ann", "-c", "5"): "Error: add-user needs --max (usage: add-user -n NAME "
        "[--min AMOUNT] --max AMOUNT|none [-c AMOUNT])\n",
        ("-n", "Ann", "--max", "10", "-c", "-1"): (
            "Error: an opening balance must be $0.00 to $1,000,000,000,000.00\n"
        ),
        (
            "-n",
            "Ann",
            "--max",
            "-1",
            "-c",
            "-5",
        ): "Error: the cap -$1.00 is below the floor $0.00\n",
        ("-n", "Ann", "--max", "10", "-c", "1.001"): (
            "Error: opening balance '1.001' has more than two decimals\n"
        ),
        ("-n", "Ann", "--max", "none", "-c", "1000000000000.01"): (
            "Error: an opening balance must be $0.00 to $1,000,000,000,000.00\n"
        ),
        ("-n", "", "--max", "10"): "Error: client name is empty\n",
        ("-n", "Ann", "--min", "", "--max", "10"): "Error: floor is empty\n",
        ("-n", "Ann", "--min", "abc", "--max", "xyz"): (
            "Error: floor 'abc' is not a number like 100 or 1,000.25\n"
        ),
        ("-n", "Ann", "--max", "xyz"): "Error: cap 'xyz' is not a number like 100 or 1,000.25\n",
        ("-n", "Ann", "--max", "1" + "0" * 30): (
            f"Error: cap '1{'0' * 30}' is out of range: a floor or cap is at most"
            " $1,000,000,000,000,000.00 from zero\n"
        ),
        ("-n", " Ann", "--max", "10"): (
            "Error: a new client's name may not start or end with a space: ' Ann'\n"
        ),
    }
    for arguments, stderr in refusals.items():
        result = wallet("add-user", *arguments)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", stderr), arguments
    others = {
        ("deposit", "--client=Ann", "--amount=0", "--description=x"): (
            "Error: amount must be greater than zero\n"
        ),
        ("deposit", "--client=Ann  Lee", "--amount=1", "--description=x"): (
            "Error: a new client's name may not hold two spaces in a row: 'Ann  Lee'\n"
        ),
        ("open_account", "--client=Ann", "--min-balance=5", "--max-balance=1"): (
            "Error: the cap $1.00 is below the floor $5.00\n"
        ),
        ("open_account", "--client=\u201cAnn\u201d"): (
            "Error: a new client's name may not be wrapped in quotes, which were meant to quote"
            " it: '\u201cAnn\u201d'\n"
        ),
    }
    for arguments, stderr in others.items():
        result = wallet(*arguments)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", stderr), arguments
    # Refused for its input before its database was opened: none was made. A mistyped
    # --db, or another application's PostgreSQL database, was given kopilka's tables, and
    # later commands took it for a ledger.
    assert ledger_tables(backend) == []
    assert wallet("add-user", "-n", "Ann", "--max", "10").returncode == 0
    again = wallet("add-user", "-n", "Ann", "--max", "10")
    assert (again.returncode, again.stderr) == (1, "Error: client 'Ann' already has an account\n")
    assert stored_clients(backend) == ["Ann"]


@pytest.mark.parametrize("backend", [SQLITE, POSTGRES, POSTGRES_FROM_ENV], indirect=True)
def test_transfer_exit_codes_and_the_ewallet_rule(wallet: RunKopilka, backend: Backend) -> None:
    wallet("add-user", "-n", "Payer", "--min", "-20", "--max", "none", "-c", "100")
    wallet("add-user", "-n", "Payee", "--max", "150", "-c", "100")
    over_cap = wallet("transfer", "-f", "Payer", "-t", "Payee", "50.01")
    assert (over_cap.returncode, over_cap.stdout) == (1, "")
    assert over_cap.stderr == (
        "Error: the transfer would take Payee above the cap of $150.00 (balance $100.00)\n"
    )
    done = wallet("transfer", "-f", "Payer", "-t", "Payee", "50", "-d", "rent")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "Transfer operation was successful!\n",
        "",
    )
    wallet("set_limits", "--client=Payee", "--max-balance=none")
    below_floor = wallet("transfer", "-t", "Payee", "-f", "Payer", "70.01")
    assert (below_floor.returncode, below_floor.stderr) == (
        1,
        "Error: insufficient funds: Payer has $70.00 available\n",
    )
    assert wallet("transfer", "-f", "Payer", "-t", "Payee", "70").returncode == 0
    assert wallet("get", "-n", "Payer").stdout.splitlines()[1] == "Balance: -$20.00"
    assert wallet("get", "-n", "Payee").stdout.splitlines()[1] == "Balance: $220.00"
    assert stored_clients(backend) == ["Payee", "Payer"]


@pytest.mark.postgres
def test_a_read_of_a_database_without_a_ledger_writes_nothing_there(
    kopilka: RunKopilka, postgres_url: str
) -> None:
    """As a SQLite file named that is not there: a read says so, and leaves the database
    (another application's, or a mistyped name) as it was, with no tables of kopilka's;
    so does a write that only an account open already could take."""
    for command in (
        ("get",),
        ("get", "-n", "Ann"),
        ("balance", "--client=Ann"),
        ("transfer", "-f", "Ann", "-t", "Bob", "1"),
        ("withdraw", "--client=Ann", "--amount=1", "--description=cash"),
    ):
        result = kopilka(*command, "--db", postgres_url)
        assert (result.returncode, result.stdout) == (1, ""), result
        assert result.stderr == (
            f"Error: no kopilka ledger in {redact_url(postgres_url)} (check --db, KOPILKA_DB"
            " or the db in kopilka.toml)\n"
        )
    assert ledger_tables(Backend(postgres_url)) == []
    written = kopilka("add-user", "-n", "Ann", "--max", "100", "--db", postgres_url)
    assert written.returncode == 0, written.stderr
    assert kopilka("get", "-n", "Ann", "--db", postgres_url).returncode == 0


@pytest.mark.postgres
def test_init_names_the_database_a_url_without_one_was_given(
    kopilka: RunKopilka, postgres_url: str
) -> None:
    """A URL with no database name takes libpq's default (here PGDATABASE): init says
    which database it set up, which the URL does not."""
    parts = urlsplit(postgres_url)
    database = unquote(parts.path.lstrip("/"))
    bare = urlunsplit(parts._replace(path=""))
    created = kopilka("init", "--db", bare, env={"PGDATABASE": database})
    assert (created.returncode, created.stderr) == (0, "")
    assert created.stdout == (
        f"Schema created in database {database!r} at {redact_url(bare)}"
        f" (version {SCHEMA_VERSION}).\n"
    )
    again = kopilka("init", "--db", postgres_url)
    assert again.stdout == f"Schema is up to date in {redact_url(postgres_url)}.\n"


@pytest.mark.postgres
def test_a_driver_refusal_with_a_hint_is_one_line(
    kopilka: RunKopilka, postgres_url: str, tmp_path: Path
) -> None:
    """asyncpg adds a HINT line to some refusals (a root certificate not there)."""
    url = postgres_url + ("&" if "?" in postgres_url else "?") + "sslmode=verify-full"
    result = kopilka("balance", "--client=A", "--db", url, env={"HOME": str(tmp_path)})
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("Error: cannot open the database at ")
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("named_by", ["url", "PGPASSFILE"])
def test_a_password_file_others_may_read_is_named_by_where_not_by_its_path(
    kopilka: RunKopilka, tmp_path: Path, named_by: str
) -> None:
    """The driver skips such a file and said so by a Python warning, printed raw above the
    error line with the file's path, which kopilka never shows: the error line says it."""
    secret_place = tmp_path / "secret-place"
    secret_place.mkdir()
    passfile = secret_place / "pgpass"
    passfile.write_text("*:*:*:app:pw\n")
    passfile.chmod(0o644)
    url = f"postgresql://app@127.0.0.1:{free_port()}/db"  # nothing listens: refused at once
    env = {"HOME": str(tmp_path)}
    if named_by == "url":
        url += f"?passfile={passfile}"
    else:
        env["PGPASSFILE"] = str(passfile)
    result = kopilka("get", "-n", "Ann", "--db", url, env=env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "secret-place" not in result.stderr
    where = "the URL's passfile" if named_by == "url" else "PGPASSFILE"
    assert result.stderr.endswith(
        f"; the password file named by {where} was not read: others may read or write it"
        " (chmod 600 makes it the owner's alone)\n"
    ), result.stderr
    passfile.chmod(0o600)  # a private one is read, and nothing is said of it
    result = kopilka("get", "-n", "Ann", "--db", url, env=env)
    assert result.returncode == 1
    assert "password file" not in result.stderr, result.stderr


@pytest.mark.postgres
def test_init_says_it_waits_for_another_process_s_upgrade(
    kopilka_home: Path, postgres_url: str
) -> None:
    """Another process upgrading the schema is waited for as long as it takes: `kopilka
    init` sat silent meanwhile, as though hung, where a server logs the wait."""

    async def hold_the_lock() -> tuple[str, int, str, str]:
        upgrading = await asyncpg.connect(postgres_url)
        try:
            await upgrading.execute("BEGIN")
            await upgrading.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            process = subprocess.Popen(
                [*kopilka_command(), "init", "--db", postgres_url],
                env=kopilka_env(kopilka_home),
                cwd=kopilka_home.parent,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert process.stderr is not None
            try:
                told = await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), 15)
            except TimeoutError:
                told = "nothing said in 15 s"
        finally:
            await upgrading.close()  # the upgrade done, as far as init can tell
        out, errors = await asyncio.to_thread(process.communicate, timeout=30)
        return told, process.returncode, out, errors

    told, status, out, errors = asyncio.run(hold_the_lock())
    where = redact_url(postgres_url)
    assert told == (
        f"Warning: another process is upgrading the schema of the database at {where}:"
        " waiting for it\n"
    )
    assert (status, errors) == (0, ""), errors
    assert out.startswith("Schema created in "), out


def _service_of(url: str) -> str:
    """A connection service's lines for the database `url` names."""
    parts = urlsplit(url)
    return (
        f"host={parts.hostname}\nport={parts.port}\ndbname={parts.path.lstrip('/')}\n"
        f"user={unquote(parts.username or '')}\n"
    )


async def _tables_in(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        return [row["tablename"] for row in rows]
    finally:
        await connection.close()


@pytest.mark.postgres
def test_a_service_the_driver_would_not_find_is_refused_not_taken_for_the_defaults(
    kopilka: RunKopilka, postgres_url: str, tmp_path: Path
) -> None:
    """The driver reads a service only from PGSERVICEFILE or ~/.pg_service.conf, and reads
    no PGSERVICE: one defined elsewhere (PGSYSCONFDIR's file, as psql finds it), or
    mistyped, was skipped in silence, and the ledger made in the database the PG*
    defaults named (here the test's database itself)."""
    parts = urlsplit(postgres_url)
    defaults = {
        "HOME": str(tmp_path),
        "PGHOST": str(parts.hostname),
        "PGPORT": str(parts.port),
        "PGUSER": unquote(parts.username or ""),
        "PGDATABASE": parts.path.lstrip("/"),
    }
    system = tmp_path / "sysconf"
    system.mkdir()
    (system / "pg_service.conf").write_text(f"[books]\n{_service_of(postgres_url)}")
    elsewhere = {**defaults, "PGSYSCONFDIR": str(system)}
    add = ("add-user", "-n", "Ann", "--max", "9")
    result = kopilka(*add, "--db", "postgresql://?service=books", env=elsewhere)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: no service 'books' in {tmp_path / '.pg_service.conf'} (kopilka reads a"
        " service from PGSERVICEFILE or ~/.pg_service.conf only, not from PGSYSCONFDIR)\n"
    )
    named = {**defaults, "PGSERVICE": "books"}
    result = kopilka(*add, "--db", "postgresql://", env=named)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: PGSERVICE is set, which kopilka does not read: name the service in the"
        " database URL (postgresql://?service=NAME), or unset PGSERVICE\n"
    )
    assert asyncio.run(_tables_in(postgres_url)) == []  # nothing was made there
    service_file = tmp_path / "services.conf"
    service_file.write_text(f"[books]\n{_service_of(postgres_url)}")
    found = {"HOME": str(tmp_path), "PGSERVICEFILE": str(service_file)}
    result = kopilka(*add, "--db", "postgresql://?service=books", env=found)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert "accounts" in asyncio.run(_tables_in(postgres_url))


def test_a_services_value_the_driver_cannot_read_is_refused_without_quoting_it(
    kopilka: RunKopilka, tmp_path: Path
) -> None:
    """The driver reads the file with interpolation: its error at a lone % printed the rest
    of the value, a password."""
    service_file = tmp_path / "services.conf"
    service_file.write_text("[books]\nhost=127.0.0.1\nuser=ann\npassword=Secret%Tail99\n")
    env = {"HOME": str(tmp_path), "PGSERVICEFILE": str(service_file)}
    result = kopilka("get", "--db", "postgresql://?service=books", env=env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: the password of service 'books' in PGSERVICEFILE ({service_file}) holds"
        " a % the PostgreSQL driver cannot read there: give it another way (a password: in"
        " KOPILKA_DB_PASSWORD_FILE or PGPASSFILE)\n"
    )


@pytest.mark.postgres
def test_a_url_asking_for_another_client_encoding_still_speaks_utf8(
    kopilka: RunKopilka, postgres_url: str
) -> None:
    """client_encoding=LATIN1 in the URL: a name LATIN1 cannot spell failed in the driver
    with a traceback, or was refused as text the database (UTF8) cannot store."""
    url = postgres_url + ("&" if "?" in postgres_url else "?") + "client_encoding=LATIN1"
    added = kopilka("add-user", "-n", "Петя Ёжиков", "--max", "5", "-c", "1", "--db", url)
    assert (added.returncode, added.stderr) == (0, ""), added.stderr
    shown = kopilka("get", "-n", "Петя Ёжиков", "--db", url)
    assert (shown.returncode, shown.stderr) == (0, ""), shown.stderr
    assert "Петя Ёжиков" in shown.stdout and "$1.00" in shown.stdout
