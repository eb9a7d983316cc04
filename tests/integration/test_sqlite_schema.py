"""The SQLite schema: upgrades in place, and its own guards refuse bad rows written
behind the ledger's back."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.case_upgrade import (
    ALIKE_ACCOUNTS,
    FOLDED_AFTER,
    FOLDED_BY_INIT,
    INIT_SAYS,
    LOOKALIKE_ACCOUNTS,
    LOOKALIKE_FOLDED_AFTER,
    OPENED_BY_AN_OLDER_KOPILKA,
    assert_a_name_alike_an_older_kopilkas_is_refused,
    assert_each_keeps_its_account_and_no_more_are_opened,
    assert_lookalikes_each_keep_their_account,
)
from tests.e2e.conftest import a_ledger_with_one_deposit, run_kopilka
from tests.kopilka_server import running_server
from tests.nfc_ledger_upgrade import (
    BATCH_DIGEST,
    CAFE_NFC,
    CAFE_NFD,
    NAIVE_NFC,
    NAIVE_NFD,
    OLD_ACCOUNTS,
    OLD_BATCH_KEYS,
    SANDBOX,
    TEA_NFC,
    TEA_NFD,
    assert_cafe_is_one_ledger_again,
    assert_tokens_reach_the_ledgers_they_were_made_for,
    old_tokens,
)
from tests.nfc_upgrade import (
    JOSE_NFC,
    JOSE_NFD,
    REFUSED,
    TWIN_ACCOUNTS,
    assert_jose_is_one_client_again,
    assert_no_token_reaches_another_account,
    assert_twins_are_left_for_an_operator,
    old_client_token,
)

from kopilka.bank import EmbeddedBank
from kopilka.domain.model import OPENING_DESCRIPTION, Deposit, client_name
from kopilka.engine import Engine
from kopilka.errors import KopilkaError, Unavailable
from kopilka.store import open_store
from kopilka.store.sqlite import SqliteStore, connect
from kopilka.store.sqlite_migrate import OBJECTS_FOUND, look_inside, migrate
from kopilka.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, tables_at
from kopilka.tokens import TokenRecord

OPERATION = (
    "INSERT INTO operations (ledger, idempotency_key, kind, amount, debit_account_id,"
    " credit_account_id, description, created_at) VALUES ('main', ?, ?, ?, ?, ?, '', 0)"
)


@pytest.fixture
def database(tmp_path: Path) -> sqlite3.Connection:
    connection = connect(str(tmp_path / "schema.db"))
    migrate(connection)
    connection.execute(
        "INSERT INTO accounts (id, ledger, client, created_at) VALUES (1, 'main', 'A', 0)"
    )
    connection.execute("INSERT INTO balances (account_id, balance) VALUES (1, 0)")
    return connection


def test_a_well_formed_operation_is_accepted(database: sqlite3.Connection) -> None:
    for kind in ("deposit", "withdrawal", "transfer"):
        database.execute(OPERATION, (f"k-{kind}", kind, 100, None, 1))
    assert database.execute("SELECT count(*) FROM operations").fetchone()[0] == 3


@pytest.mark.parametrize(
    ("kind", "amount", "debit", "credit"),
    [
        ("gift", 100, None, 1),  # unknown kind
        ("Deposit", 100, None, 1),  # kinds are exact
        ("deposit", 0, None, 1),  # no zero amounts
        ("deposit", -5, None, 1),  # nor negative ones
        ("deposit", 100, None, None),  # an operation touches at least one account
    ],
)
def test_a_bad_operation_is_refused(
    database: sqlite3.Connection, kind: str, amount: int, debit: int | None, credit: int | None
) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        database.execute(OPERATION, ("k", kind, amount, debit, credit))


def test_a_reference_to_a_missing_account_is_found_by_the_audit(
    database: sqlite3.Connection,
) -> None:
    """References are declared, not enforced row by row (connect()): the check every
    upgrade and test runs names the row that refers to nothing."""
    assert database.execute("PRAGMA foreign_keys").fetchone()[0] == 0
    database.execute(OPERATION, ("k", "deposit", 100, None, 99))
    assert database.execute("PRAGMA foreign_key_check").fetchall() == [
        ("operations", 1, "accounts", 0)
    ]


def test_an_entry_of_zero_is_refused(database: sqlite3.Connection) -> None:
    database.execute(OPERATION, ("k", "deposit", 100, None, 1))
    with pytest.raises(sqlite3.IntegrityError):
        database.execute(
            "INSERT INTO entries (operation_id, account_id, amount, balance_after, created_at)"
            " VALUES (1, 1, 0, 0, 0)"
        )


def test_a_database_of_the_first_version_is_upgraded_keeping_its_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    old = connect(path)
    old.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1")
    old.execute(
        "INSERT INTO accounts (id, ledger, client, balance, created_at)"
        " VALUES (1, 'main', 'A', 500, 0)"
    )
    old.close()

    # What init says of it: an operator upgrading sees that it was done.
    upgraded = run_kopilka(tmp_path / "home", "init", "--db", path)
    assert (upgraded.returncode, upgraded.stderr) == (0, "")
    assert upgraded.stdout == f"Schema upgraded from version 1 to {SCHEMA_VERSION} in {path}.\n"
    connection = connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute(
        "SELECT client, balance FROM accounts JOIN balances ON account_id = id"
    ).fetchall() == [("A", 500)]
    assert connection.execute("SELECT count(*) FROM sandboxes").fetchone()[0] == 0
    assert migrate(connection) == SCHEMA_VERSION  # again: nothing to do


def _schema_4_with_history(path: str) -> None:
    """A database of schema 4 (balances still in accounts) with operations referring to
    its accounts, as the last release left it."""
    old = connect(path)
    for number, migration in enumerate(MIGRATIONS[:4], start=1):
        old.executescript(f"{migration}; PRAGMA user_version = {number}")
    old.executemany(
        "INSERT INTO accounts (id, ledger, client, balance, min_balance, max_balance,"
        " created_at) VALUES (?, 'main', ?, ?, ?, ?, 0)",
        [(1, "A", 400, -100, None), (2, "B", 100, 0, 1_000)],
    )
    old.execute(
        "INSERT INTO operations (id, ledger, idempotency_key, kind, amount, debit_account_id,"
        " credit_account_id, description, created_at)"
        " VALUES (1, 'main', 'k1', 'transfer', 100, 1, 2, 'rent', 0)"
    )
    old.executemany(
        "INSERT INTO entries (operation_id, account_id, amount, balance_after, created_at)"
        " VALUES (1, ?, ?, ?, 0)",
        [(1, -100, 400), (2, 100, 100)],
    )
    old.close()


def test_schema_4_moves_balances_to_their_own_table_keeping_every_reference(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "four.db")
    _schema_4_with_history(path)

    connection = connect(path)
    assert migrate(connection) == 4
    assert connection.execute(
        "SELECT id, client, balance, min_balance, max_balance"
        " FROM accounts JOIN balances ON account_id = id ORDER BY id"
    ).fetchall() == [(1, "A", 400, -100, None), (2, "B", 100, 0, 1_000)]
    assert "balance" not in {row[1] for row in connection.execute("PRAGMA table_info(accounts)")}
    assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    # The operations and entries still refer to the (rebuilt) accounts table.
    connection.execute(OPERATION, ("k2", "deposit", 100, None, 99))
    assert connection.execute("PRAGMA foreign_key_check").fetchall() == [
        ("operations", 2, "accounts", 0)
    ]
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute("UPDATE balances SET balance = 1001 WHERE account_id = 2")


def test_an_upgrade_that_would_break_a_reference_changes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "dangling.db")
    _schema_4_with_history(path)
    old = connect(path)
    old.execute("UPDATE entries SET account_id = 99 WHERE account_id = 2")  # damaged by hand
    old.close()

    connection = connect(path)
    with pytest.raises(Unavailable, match="entries"):
        migrate(connection)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 4
    assert connection.execute("SELECT count(*) FROM accounts").fetchone()[0] == 2


_UPGRADE_PAST_A_FILE_SIZE_LIMIT = """
import resource, signal, sys
from kopilka.store.sqlite import connect
from kopilka.store.sqlite_migrate import migrate

connection = connect(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, as on a full disk
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
migrate(connection)
"""


def test_an_upgrade_that_fails_to_write_says_why(tmp_path: Path) -> None:
    """A full disk was told as 'cannot rollback - no transaction is active': SQLite had
    rolled the upgrade back itself, and the ROLLBACK after it failed in its stead."""
    path = tmp_path / "four.db"
    _schema_4_with_history(str(path))
    with closing(connect(str(path))) as old:
        old.execute("BEGIN")
        old.executemany(
            "INSERT INTO accounts (id, ledger, client, balance, created_at)"
            " VALUES (?, 'main', ?, 0, 0)",
            [(number, f"client {number}") for number in range(3, 20_000)],
        )
        old.execute("COMMIT")
    limit = max(file.stat().st_size for file in tmp_path.iterdir()) + 4096
    upgrade = subprocess.run(
        [sys.executable, "-c", _UPGRADE_PAST_A_FILE_SIZE_LIMIT, str(path), str(limit)],
        capture_output=True,
        text=True,
    )
    assert upgrade.returncode == 1
    assert "disk I/O error" in upgrade.stderr.splitlines()[-1], upgrade.stderr
    with closing(connect(str(path))) as after:
        assert after.execute("PRAGMA user_version").fetchone()[0] == 4


def test_an_upgrade_behind_another_process_s_lock_says_so(tmp_path: Path) -> None:
    """A second init, or a server, started while a long upgrade ran: 'database is
    locked', with no word of why or of what to do."""
    path = str(tmp_path / "four.db")
    _schema_4_with_history(path)
    with closing(connect(path)) as upgrading, closing(connect(path)) as second:
        upgrading.execute("BEGIN IMMEDIATE")
        second.execute("PRAGMA busy_timeout = 50")
        with pytest.raises(Unavailable) as refused:
            migrate(second)
        upgrading.execute("ROLLBACK")
    assert refused.value.code == "store_busy"
    assert refused.value.message == (
        f"the schema of {path} (version 4) needs an upgrade, and another process holds its"
        " write lock (upgrading it, say); nothing was changed: try again once it is done"
    )


def test_tables_kopilka_did_not_create_are_refused_by_name(tmp_path: Path) -> None:
    """A file with no schema version but tables (of kopilka's names or not) was made by
    something else: refused, naming them, and left as it was, by init and by a shell
    that only reads alike (its journal mode too, and no lock file put beside it)."""
    path = tmp_path / "stranger.db"
    with closing(sqlite3.connect(path)) as stranger:
        stranger.executescript(
            "CREATE TABLE notes (text TEXT);"
            "CREATE TABLE balances (who TEXT, amount REAL);"
            "CREATE TABLE accounts (number TEXT);"
            "INSERT INTO accounts VALUES ('40817');"
        )
    refusal = (
        f"the database at {path} has tables that kopilka did not create"
        " (accounts, balances, notes); use an empty database"
    )
    init = run_kopilka(tmp_path / "home", "init", "--db", str(path))
    assert (init.returncode, init.stdout, init.stderr) == (1, "", f"Error: {refusal}\n")
    shell = run_kopilka(tmp_path / "home", "shell", "--db", str(path), stdin="get\n")
    assert (shell.returncode, shell.stdout, shell.stderr) == (1, "", f"Error: {refusal}\n")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("stranger")) == [
        "stranger.db"
    ]
    with closing(sqlite3.connect(path)) as stranger:
        assert stranger.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert stranger.execute("PRAGMA user_version").fetchone()[0] == 0
        assert stranger.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall() == [
            ("accounts",),
            ("balances",),
            ("notes",),
        ]
        assert stranger.execute("SELECT * FROM accounts").fetchall() == [("40817",)]
    # The migration alone refuses it too (another process may have made tables meanwhile).
    with closing(connect(str(path))) as connection:
        with pytest.raises(Unavailable) as refused:
            migrate(connection)
        assert (refused.value.code, refused.value.message) == ("foreign_tables", refusal)


@pytest.mark.parametrize("version", [3, -5])
def test_another_programs_file_with_a_schema_version_of_its_own_is_refused_untouched(
    tmp_path: Path, version: int
) -> None:
    """Many programs set user_version: it does not make their file a ledger. One below
    zero is no kopilka's either: the migrations would have run from the end of their list
    (MIGRATIONS[-1]) on a file without kopilka's tables."""
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as other:
        other.executescript(f"CREATE TABLE notes (body TEXT); PRAGMA user_version = {version};")
    refusal = (
        f"the database at {path} has tables that kopilka did not create (notes);"
        " use an empty database"
    )
    for command in (
        ("init",),
        ("deposit", "--client=A", "--amount=1", "--description=x"),
        ("add-user", "-n", "Ann", "--max", "none"),
    ):
        result = run_kopilka(tmp_path / "home", *command, "--db", str(path))
        assert (result.returncode, result.stderr) == (1, f"Error: {refusal}\n"), command
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("app")) == ["app.db"]
    with closing(sqlite3.connect(path)) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert other.execute("PRAGMA user_version").fetchone()[0] == version


def test_an_old_kopilka_schema_is_not_taken_for_another_programs(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    _schema_4_with_history(path)
    result = run_kopilka(tmp_path / "home", "balance", "--client=A", "--db", path)
    assert (result.returncode, result.stdout) == (0, "Balance of A: $4.00\n"), result.stderr
    shell = run_kopilka(tmp_path / "home", "shell", "--db", path, stdin="balance --client=B\n")
    assert (shell.returncode, shell.stdout) == (0, "Balance of B: $1.00\n"), shell.stderr


# -- schema 6: client names written before they were kept in NFC -------------------------


def _schema_5(path: str) -> sqlite3.Connection:
    """An empty database of schema 5, as the release before names were kept in NFC."""
    return _empty_schema(path, 5)


def _empty_schema(path: str, version: int) -> sqlite3.Connection:
    old = connect(path)
    old.create_function("nfc", 1, lambda name: name)  # migration 6's: no rows here
    old.create_function("fold", 1, lambda name: name)  # migration 10's and 11's: nor here
    for number, migration in enumerate(MIGRATIONS[:version], start=1):
        old.executescript(f"{migration}; PRAGMA user_version = {number}")
    return old


def _add_accounts(old: sqlite3.Connection, *accounts: tuple[int, str, str, int]) -> None:
    """Accounts (id, ledger, client, balance), each with the deposit that filled it."""
    for account_id, ledger, client, balance in accounts:
        old.execute(
            "INSERT INTO accounts (id, ledger, client, created_at) VALUES (?, ?, ?, 0)",
            (account_id, ledger, client),
        )
        old.execute(
            "INSERT INTO balances (account_id, balance) VALUES (?, ?)", (account_id, balance)
        )
        if balance:
            operation = old.execute(
                "INSERT INTO operations (ledger, idempotency_key, kind, amount,"
                " credit_account_id, description, created_at)"
                " VALUES (?, ?, 'deposit', ?, ?, 'opening', 0)",
                (ledger, f"in-{account_id}", balance, account_id),
            ).lastrowid
            old.execute(
                "INSERT INTO entries (operation_id, account_id, amount, balance_after,"
                " created_at) VALUES (?, ?, ?, ?, 0)",
                (operation, account_id, balance, balance),
            )


def _add_client_token_and_refusal(old: sqlite3.Connection, client: str) -> None:
    old.execute(
        "INSERT INTO tokens (id, token_hash, role, client, ledger, created_at)"
        " VALUES ('t-jose', 'not-a-real-hash', 'client', ?, 'main', 0)",
        (client,),
    )
    old.execute(
        "INSERT INTO refusals (ledger, idempotency_key, kind, amount, debit_client,"
        " credit_client, description, code, message, created_at)"
        " VALUES ('main', 'k-refused', 'withdrawal', 10000, ?, NULL, 'rent',"
        " 'insufficient_funds', ?, 0)",
        (client, REFUSED),
    )


async def test_schema_5_names_in_another_normal_form_are_rewritten_in_nfc(
    tmp_path: Path,
) -> None:
    path = tmp_path / "five.db"
    old = _schema_5(str(path))
    _add_accounts(old, (1, "main", JOSE_NFD, 500), (2, "main", "Ann", 0))
    old.execute(  # José paid Ann 100 before the upgrade
        "INSERT INTO operations (id, ledger, idempotency_key, kind, amount, debit_account_id,"
        " credit_account_id, description, created_at)"
        " VALUES (10, 'main', 'k-rent', 'transfer', 100, 1, 2, 'rent', 1)"
    )
    old.executemany(
        "INSERT INTO entries (operation_id, account_id, amount, balance_after, created_at)"
        " VALUES (10, ?, ?, ?, 1)",
        [(1, -100, 400), (2, 100, 100)],
    )
    old.execute("UPDATE balances SET balance = balance - 100 WHERE account_id = 1")
    old.execute("UPDATE balances SET balance = balance + 100 WHERE account_id = 2")
    _add_client_token_and_refusal(old, JOSE_NFD)
    old.close()

    async with Engine(open_store(str(path))) as engine:
        await assert_jose_is_one_client_again(engine)

    connection = connect(str(path))
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute("SELECT debit_client, credit_client FROM refusals").fetchall() == [
        (JOSE_NFC, None)
    ]
    assert connection.execute("SELECT count(*) FROM accounts").fetchone()[0] == 2
    assert connection.execute("PRAGMA foreign_key_check").fetchall() == []


async def test_schema_5_twin_spellings_both_stay_and_the_rest_is_rewritten(
    tmp_path: Path,
) -> None:
    """Where another account of the ledger has or would take the NFC name, no account
    is renamed: which client is which is for an operator to decide."""
    path = tmp_path / "twins.db"
    old = _schema_5(str(path))
    _add_accounts(old, *TWIN_ACCOUNTS)
    _add_client_token_and_refusal(old, JOSE_NFD)
    old.close()

    async with Engine(open_store(str(path))) as engine:
        await assert_twins_are_left_for_an_operator(engine)

    connection = connect(str(path))
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute(
        "SELECT id, ledger, client, balance FROM accounts JOIN balances ON account_id = id"
        " ORDER BY id"
    ).fetchall() == [
        (1, "main", JOSE_NFD, 300),
        (2, "main", JOSE_NFC, 200),
        (3, "side", JOSE_NFC, 50),
        (4, "main", "\u212b", 7),
        (5, "main", "A\u030a", 9),
    ]
    assert connection.execute(
        "SELECT credit_account_id, amount FROM operations ORDER BY id"
    ).fetchall() == [(1, 300), (2, 200), (3, 50), (4, 7), (5, 9)]
    assert connection.execute("PRAGMA foreign_key_check").fetchall() == []


def test_schema_5_a_token_for_a_twin_spelling_is_revoked_and_no_other(tmp_path: Path) -> None:
    """A token for the decomposed "José" beside a precomposed one must not become the
    other's token; one for a decomposed name alone in its ledger keeps its account."""
    path = tmp_path / "tokens.db"
    old = _schema_5(str(path))
    _add_accounts(old, *TWIN_ACCOUNTS)
    twin, twin_secret = old_client_token(JOSE_NFD, "main")  # account 1
    side, side_secret = old_client_token(JOSE_NFD, "side")  # account 3
    for record in (twin, side):
        old.execute(
            "INSERT INTO tokens (id, token_hash, role, client, ledger, created_at)"
            " VALUES (?, ?, 'client', ?, ?, 0)",
            (record.id, record.token_hash, record.client, record.ledger),
        )
    old.close()

    with running_server(tmp_path / "home", str(path)) as server:
        assert_no_token_reaches_another_account(server, twin_secret, side_secret)

    with closing(connect(str(path))) as connection:
        tokens = connection.execute("SELECT id, client, revoked FROM tokens").fetchall()
    assert (twin.id, JOSE_NFD, 1) in tokens
    assert (side.id, JOSE_NFC, 0) in tokens


async def test_a_damaged_database_fails_each_request_in_one_line_not_as_busy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A table gone (a file damaged by hand or by a disk) is no busy ledger to retry:
    reads and writes get store_unavailable naming the fault, and nothing changes. The
    operator's log says it once."""
    path = tmp_path / "kopilka.db"
    engine = Engine(open_store(str(path)))
    await engine.start()
    try:
        await engine.execute(Deposit("Ann", 500, "pay", "k1"))
    finally:
        await engine.close()
    engine = Engine(open_store(str(path)))
    await engine.start()
    try:
        with closing(sqlite3.connect(path)) as raw:  # damaged while the server runs
            raw.execute("DROP TABLE entries")
            raw.commit()
        # A write is told nothing of it was applied; a read, which applies nothing, is not.
        for work, settled in (
            (engine.execute(Deposit("Ann", 100, "pay", "k2")), " nothing was applied,"),
            (engine.statement("main", "Ann", None, datetime(2100, 1, 1, tzinfo=UTC)), ""),
        ):
            with pytest.raises(Unavailable) as failed:
                await work
            assert failed.value.code == "store_unavailable"
            assert failed.value.message == (
                f"the database failed (no such table: entries);{settled} try again"
            )
            assert str(path) not in failed.value.message  # the server's files are its own
        assert (await engine.get_account("main", "Ann")).balance_cents == 500
    finally:
        await engine.close()
    logged = [r.getMessage() for r in caplog.records if r.name == "kopilka.store.sqlite"]
    assert logged == [f"the database {path} failed: no such table: entries"]


def test_a_damaged_ledger_is_said_so_when_opened_by_any_command(tmp_path: Path) -> None:
    """A ledger missing one of its tables is neither "no ledger" nor up to date."""
    home = tmp_path / "home"
    database = a_ledger_with_one_deposit(home)
    with closing(sqlite3.connect(database)) as raw:
        raw.execute("DROP TABLE entries")
        raw.commit()
    refusal = (
        f"Error: the kopilka ledger in {database} is damaged: its table entries is missing;"
        " restore it from a backup\n"
    )
    for command in (
        ("balance", "--client=Ann"),
        ("init",),
        ("deposit", "--client=Ann", "--amount=1", "--description=x"),
    ):
        result = run_kopilka(home, *command)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", refusal), command


@pytest.mark.parametrize(
    ("script", "version"),
    [
        ("CREATE VIEW v AS SELECT 1", 0),
        ("CREATE VIEW v AS SELECT 1", 5),
        ("", 5),
        ("CREATE TABLE photos (x)", 20240101),  # a date as a version: not a newer kopilka
    ],
)
def test_another_programs_views_or_version_alone_are_refused_untouched(
    tmp_path: Path, script: str, version: int
) -> None:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as other:
        other.executescript(f"{script}; PRAGMA user_version = {version};")
    for command in (("init",), ("balance", "--client=A")):
        result = run_kopilka(tmp_path / "home", *command, "--db", str(path))
        assert result.returncode == 1, (command, result.stderr)
        if command == ("balance", "--client=A"):  # a read: no ledger there
            assert result.stderr.startswith(f"Error: no kopilka ledger in {path}"), result.stderr
        else:
            assert "use an empty database" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("app")) == ["app.db"]
    with closing(sqlite3.connect(path)) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_database_made_open_to_every_user_is_made_private(tmp_path: Path) -> None:
    """As an older kopilka, or a restore under umask 022, left it."""
    home = tmp_path / "home"
    assert (
        run_kopilka(home, "deposit", "--client=Ann", "--amount=1", "--description=x").returncode
        == 0
    )
    database = home / "kopilka.db"
    # Another connection keeps the WAL and its index in place past kopilka's exit.
    with closing(sqlite3.connect(database)) as other:
        other.execute("SELECT count(*) FROM accounts").fetchone()
        journal = home / "kopilka.db-journal"  # a rollback journal's pages are the ledger's
        journal.write_bytes(b"")  # empty: no journal to play back, left as it is
        files = (database, home / "kopilka.db-wal", home / "kopilka.db-shm", journal)
        for name in files:
            name.chmod(0o644)
        assert run_kopilka(home, "balance", "--client=Ann").stdout == "Balance of Ann: $1.00\n"
        assert [name.stat().st_mode & 0o777 for name in files] == [0o600] * 4


def test_a_read_waits_for_no_other_process_writing(tmp_path: Path) -> None:
    """Opening an up-to-date database only reads its schema version: a read goes on
    beside another process's open write transaction (WAL), not behind it."""
    home = tmp_path / "home"
    assert (
        run_kopilka(home, "deposit", "--client=Ann", "--amount=1", "--description=x").returncode
        == 0
    )
    with closing(sqlite3.connect(home / "kopilka.db", isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE balances SET balance = balance")
        balance = run_kopilka(home, "balance", "--client=Ann")
        still_held = other.in_transaction
        other.execute("ROLLBACK")
    assert (balance.returncode, balance.stdout) == (0, "Balance of Ann: $1.00\n")
    assert still_held


async def test_each_outage_is_told_once_and_its_end_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not once in the life of the process: a second outage after the database came back
    is told again, and each end of one is told as well."""
    path = tmp_path / "kopilka.db"

    def rename(old: str, new: str) -> None:
        with closing(sqlite3.connect(path)) as raw:
            raw.execute(f"ALTER TABLE {old} RENAME TO {new}")
            raw.commit()

    async with Engine(open_store(str(path))) as engine:
        await engine.execute(Deposit("Ann", 500, "pay", "k1"))
        for outage in range(2):
            rename("entries", "entries_away")
            for attempt in range(2):
                with pytest.raises(Unavailable):
                    await engine.execute(Deposit("Ann", 1, "pay", f"k-{outage}-{attempt}"))
            rename("entries_away", "entries")
            await engine.execute(Deposit("Ann", 1, "pay", f"k-{outage}-after"))
    logged = [r.getMessage() for r in caplog.records if r.name == "kopilka.store.sqlite"]
    failed = f"the database {path} failed: no such table: entries"
    back = f"the database {path} is available again"
    assert logged == [failed, back, failed, back]


async def test_every_connection_commits_durably(tmp_path: Path) -> None:
    """WAL with synchronous FULL: a commit is on disk, power loss included, when it
    returns; the writer's and the reader's connections alike."""
    store = SqliteStore(tmp_path / "kopilka.db")
    async with Engine(store) as engine:
        await engine.execute(Deposit("Ann", 100, "pay", "k1"))
        for connection in (store._db, store._read_db, connect(store.path)):
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert connection.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL


# -- a schema version below zero, a table gone ------------------------------------------


def test_a_ledger_with_a_negative_schema_version_is_refused_not_migrated(tmp_path: Path) -> None:
    home = tmp_path / "home"
    database = a_ledger_with_one_deposit(home)
    with closing(sqlite3.connect(database)) as raw:
        raw.execute("PRAGMA user_version = -3")
    refusal = (
        f"the database at {database} has schema version -3, which no kopilka sets;"
        " restore it from a backup"
    )
    for command in (
        ("init",),
        ("deposit", "--client=Ann", "--amount=1", "--description=x"),
        ("balance", "--client=Ann"),
    ):
        result = run_kopilka(home, *command)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", f"Error: {refusal}\n")
    # The migration alone refuses it too (another process may have set it meanwhile).
    with closing(connect(str(database))) as connection:
        with pytest.raises(Unavailable) as refused:
            migrate(connection)
        assert (refused.value.code, refused.value.message) == ("unknown_schema", refusal)
        assert connection.execute("PRAGMA user_version").fetchone()[0] == -3
        assert connection.execute("SELECT count(*) FROM operations").fetchone()[0] == 1


def test_the_tables_of_each_schema_version_are_those_its_migrations_leave(
    tmp_path: Path,
) -> None:
    """tables_at reads the migrations' text: pinned against what they really make."""
    connection = connect(str(tmp_path / "versions.db"))
    for name in ("nfc", "fold"):  # migrations 6's and 10's: no rows here
        connection.create_function(name, 1, lambda name: name)
    for number, migration in enumerate(MIGRATIONS, start=1):
        connection.executescript(f"{migration}; PRAGMA user_version = {number}")
        made = {row[0] for row in connection.execute(OBJECTS_FOUND)}
        assert tables_at(number) == made, number
    assert "balances" in tables_at(SCHEMA_VERSION)


@pytest.mark.parametrize("table", sorted(tables_at(SCHEMA_VERSION)))
def test_a_ledger_missing_any_of_its_tables_is_said_damaged_by_every_command(
    tmp_path: Path, table: str
) -> None:
    """Not "Schema is up to date", then every write failing with "no such table"."""
    home = tmp_path / "home"
    database = a_ledger_with_one_deposit(home)
    with closing(sqlite3.connect(database)) as raw:
        raw.execute(f"DROP TABLE {table}")
        raw.commit()
    refusal = (
        f"Error: the kopilka ledger in {database} is damaged: its table {table} is missing;"
        " restore it from a backup\n"
    )
    for command in (("init",), ("deposit", "--client=Ann", "--amount=1", "--description=x")):
        result = run_kopilka(home, *command)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", refusal), command


async def test_tables_missing_are_named_in_a_sentence_and_an_old_ledger_too(
    tmp_path: Path,
) -> None:
    path = tmp_path / "two.db"
    async with Engine(open_store(str(path))) as engine:
        await engine.execute(Deposit("Ann", 500, "pay", "k1"))
    with closing(sqlite3.connect(path)) as raw:
        raw.executescript("DROP TABLE operations; DROP TABLE entries;")
    with pytest.raises(Unavailable) as refused:
        await SqliteStore(path).open()
    assert (refused.value.code, refused.value.message) == (
        "broken_schema",
        f"the kopilka ledger in {path} is damaged: its tables entries and operations are"
        " missing; restore it from a backup",
    )
    # A ledger of schema 3 without its sandboxes is not upgraded as if whole.
    old = tmp_path / "three.db"
    with closing(connect(str(old))) as connection:
        for number, migration in enumerate(MIGRATIONS[:3], start=1):
            connection.executescript(f"{migration}; PRAGMA user_version = {number}")
        connection.execute("DROP TABLE sandboxes")
    with pytest.raises(Unavailable) as refused:
        await SqliteStore(old).open()
    assert refused.value.code == "broken_schema"
    assert "its table sandboxes is missing" in refused.value.message
    with closing(sqlite3.connect(old)) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 3


# -- schema 7: ledger names written before they were kept in NFC -------------------------


def _schema_6_with_cafe_ledgers(path: str) -> dict[str, tuple[TokenRecord, str]]:
    """A database of schema 6, the release before ledger names were kept in NFC, holding
    OLD_ACCOUNTS and the rest of tests/nfc_ledger_upgrade.py's rows; its tokens."""
    tokens = old_tokens()
    with closing(connect(path)) as old:
        old.create_function("nfc", 1, client_name, deterministic=True)  # for migration 6
        for number, migration in enumerate(MIGRATIONS[:6], start=1):
            old.executescript(f"{migration}; PRAGMA user_version = {number}")
        _add_accounts(old, *OLD_ACCOUNTS)
        old.execute(  # Ann paid Bob 100 before the upgrade
            "INSERT INTO operations (id, ledger, idempotency_key, kind, amount, debit_account_id,"
            " credit_account_id, description, created_at)"
            " VALUES (10, ?, 'k-rent', 'transfer', 100, 1, 2, 'rent', 1)",
            (CAFE_NFD,),
        )
        old.executemany(
            "INSERT INTO entries (operation_id, account_id, amount, balance_after, created_at)"
            " VALUES (10, ?, ?, ?, 1)",
            [(1, -100, 400), (2, 100, 100)],
        )
        old.execute("UPDATE balances SET balance = 400 WHERE account_id = 1")
        old.execute("UPDATE balances SET balance = 100 WHERE account_id = 2")
        old.execute(
            "INSERT INTO refusals (ledger, idempotency_key, kind, amount, debit_client,"
            " credit_client, description, code, message, created_at)"
            " VALUES (?, 'k-refused', 'withdrawal', 10000, 'Ann', NULL, 'rent',"
            " 'insufficient_funds', ?, 0)",
            (CAFE_NFD, REFUSED),
        )
        old.executemany(
            "INSERT INTO batch_requests (ledger, idempotency_key, digest, created_at)"
            " VALUES (?, ?, ?, 0)",
            [(ledger, key, BATCH_DIGEST) for ledger, key in OLD_BATCH_KEYS],
        )
        old.execute("INSERT INTO sandboxes (ledger, last_used) VALUES (?, 0)", (SANDBOX,))
        old.executemany(
            "INSERT INTO tokens (id, token_hash, role, client, ledger, created_at)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            [(r.id, r.token_hash, r.role, r.client, r.ledger) for r, _ in tokens.values()],
        )
        old.commit()
    return tokens


async def test_schema_7_ledger_names_in_another_normal_form_are_rewritten_in_nfc(
    tmp_path: Path,
) -> None:
    path = tmp_path / "six.db"
    tokens = _schema_6_with_cafe_ledgers(str(path))

    async with Engine(open_store(str(path))) as engine:
        await assert_cafe_is_one_ledger_again(engine)

    with closing(connect(str(path))) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        ledgers = {
            table: connection.execute(f"SELECT DISTINCT ledger FROM {table}").fetchall()
            for table in ("accounts", "operations", "refusals", "batch_requests", "sandboxes")
        }
        revoked = connection.execute("SELECT id, ledger, revoked FROM tokens").fetchall()
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    # The TEA twins keep their rows, each under its own spelling.
    assert {table: set(rows) for table, rows in ledgers.items()} == {
        "accounts": {(CAFE_NFC,), (TEA_NFD,), (TEA_NFC,), (NAIVE_NFC,)},
        "operations": {(CAFE_NFC,), (TEA_NFD,), (TEA_NFC,), (NAIVE_NFC,)},
        "refusals": {(CAFE_NFC,)},
        "batch_requests": {(CAFE_NFC,), (TEA_NFD,)},
        "sandboxes": {(SANDBOX,)},
    }
    token_id = {purpose: record.id for purpose, (record, _) in tokens.items()}
    assert set(revoked) == {
        (token_id["cafe"], CAFE_NFC, 0),
        (token_id["ann"], CAFE_NFC, 0),
        (token_id["tea twin"], TEA_NFD, 1),  # revoked, its spelling kept
        (token_id["tea"], TEA_NFC, 0),
        (token_id["admin"], TEA_NFC, 0),
        (token_id["naive stray"], NAIVE_NFD, 1),  # its NFC is another's: revoked
        (token_id["cafe nfc"], CAFE_NFC, 1),  # another's renamed into it: revoked
    }
    # The twin's token, left spelt as it was, is told apart from the NFC one it looks like.
    listed = run_kopilka(tmp_path / "home", "token", "list", "--db", str(path)).stdout
    (twin,) = [line for line in listed.splitlines() if line.startswith(token_id["tea twin"])]
    assert f"ledger={TEA_NFD} (spelt otherwise: 'the\\u0301')  revoked" in twin, twin


def test_schema_7_each_token_reaches_the_ledger_it_was_made_for(tmp_path: Path) -> None:
    path = tmp_path / "six.db"
    tokens = _schema_6_with_cafe_ledgers(str(path))
    with running_server(tmp_path / "home", str(path)) as server:
        assert_tokens_reach_the_ledgers_they_were_made_for(server, tokens)


def test_the_version_and_the_tables_are_read_at_one_moment(tmp_path: Path) -> None:
    """A first write beside another process's: that one committed kopilka's schema
    between the reading of the file's version and of its tables, and the file read as
    version 0 with kopilka's tables, refused as "tables that kopilka did not create".
    Here another connection commits the schema just as the tables are about to be read."""
    path = str(tmp_path / "kopilka.db")
    connect(path).close()  # an empty file, in WAL mode, as a first writer leaves it
    other = connect(path)
    reader = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True)

    def commit_schema_before_the_tables_are_read(statement: str) -> None:
        if statement == OBJECTS_FOUND and not other.in_transaction:
            migrate(other)

    reader.set_trace_callback(commit_schema_before_the_tables_are_read)
    try:
        version, names = look_inside(reader)
        assert (version, names) == (0, [])  # as it was when the reading began
        assert look_inside(reader) == (SCHEMA_VERSION, sorted(tables_at(SCHEMA_VERSION)))
    finally:
        reader.close()
        other.close()


def test_an_opening_retried_under_its_key_kept_before_openings_kept_claims_is_no_key_reuse(
    tmp_path: Path,
) -> None:
    """Schema 5 kept an opening's deposit under its key, and no claim: the same opening
    again was told its key was "already used for another request", its own."""
    path = str(tmp_path / "five.db")
    with closing(_schema_5(path)) as old, old:
        # Ann's deposit (key in-1) is her opening's; Dee's (in-2), a deposit that opened hers.
        _add_accounts(old, (1, "main", "Ann", 500), (2, "main", "Dee", 500))
        old.execute(
            "UPDATE operations SET description = ? WHERE idempotency_key = 'in-1'",
            (OPENING_DESCRIPTION,),
        )
    with EmbeddedBank(path) as bank:
        with pytest.raises(KopilkaError) as refused:
            bank.open_account("Ann", 0, None, 500, idempotency_key="in-1")
        assert refused.value.code == "account_exists", refused.value
        # Another client's opening under that key is another request all the same, as is
        # one of another opening balance.
        for client, opening, key in (
            ("Bob", 500, "in-1"),
            ("Ann", 400, "in-1"),
            ("Dee", 500, "in-2"),
        ):
            with pytest.raises(KopilkaError) as reused:
                bank.open_account(client, 0, None, opening, idempotency_key=key)
            assert reused.value.code == "idempotency_key_reused", (client, reused.value)

        assert [account.client for account in bank.accounts()] == ["Ann", "Dee"]
    with running_server(tmp_path / "home", path) as server, server.client() as admin:
        answer = admin.post(
            "/v1/accounts",
            json={"client": "Ann", "opening_balance": "5.00"},  # its 500 cents
            headers={"Idempotency-Key": "in-1"},
        )
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["code"] == "account_exists"
        # A refusal kept under a key opened nothing: an opening under it is another request.
        deposit = {"client": "Cy", "amount": "5.00"}
        refused = admin.post("/v1/deposits", json=deposit, headers={"Idempotency-Key": "k-no"})
        assert refused.json()["error"]["code"] == "account_not_found", refused.text
        # Without money: an opening with some is refused for its deposit's key anyway.
        opening = {"client": "Cy", "opening_balance": "0.00"}
        again = admin.post("/v1/accounts", json=opening, headers={"Idempotency-Key": "k-no"})
        assert again.json()["error"]["code"] == "idempotency_key_reused", again.text
        assert admin.get("/v1/accounts/Cy").status_code == 404


# -- schema 10: names alike but for case --------------------------------------------------


async def test_schema_9_names_alike_but_for_case_each_keep_their_account(tmp_path: Path) -> None:
    path = str(tmp_path / "nine.db")
    with closing(_empty_schema(path, 9)) as old, old:
        _add_accounts(old, *ALIKE_ACCOUNTS)

    async with Engine(open_store(path)) as engine:
        await assert_each_keeps_its_account_and_no_more_are_opened(engine)
    assert _folded_names_upgraded(path) == FOLDED_AFTER


def _folded_names_upgraded(path: str) -> list[tuple[int, str | None]]:
    """Each account's folded name, by id, in a ledger upgraded whole."""
    with closing(connect(path)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return connection.execute("SELECT id, folded FROM accounts ORDER BY id").fetchall()


async def test_init_folds_the_names_an_older_kopilka_opened_after_schema_10(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    path = home / "kopilka.db"
    with closing(_empty_schema(str(path), 9)) as old, old:
        _add_accounts(old, *ALIKE_ACCOUNTS)
    async with Engine(open_store(str(path))):
        pass  # upgraded: "John Jones" holds the fold
    with closing(connect(str(path))) as older, older:
        _add_accounts(older, *OPENED_BY_AN_OLDER_KOPILKA)

    folded = run_kopilka(home, "init")
    assert (folded.returncode, folded.stdout) == (
        0,
        f"Schema is up to date in {path}.\n{INIT_SAYS}",
    ), folded.stderr
    again = run_kopilka(home, "init")  # nothing left to fold
    assert (again.returncode, again.stdout) == (0, f"Schema is up to date in {path}.\n")

    with closing(connect(str(path))) as connection:
        rows = connection.execute("SELECT id, folded FROM accounts ORDER BY id")
        assert rows.fetchall() == FOLDED_AFTER + FOLDED_BY_INIT  # those kept apart stay so
    async with Engine(open_store(str(path))) as engine:
        await assert_a_name_alike_an_older_kopilkas_is_refused(engine)


# -- schema 11: names in letters drawn like Latin ones ------------------------------------


async def test_schema_10_names_in_lookalike_letters_each_keep_their_account(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "ten.db")
    with closing(_empty_schema(path, 10)) as old, old:
        for account, folded in LOOKALIKE_ACCOUNTS:
            _add_accounts(old, account)
            old.execute("UPDATE accounts SET folded = ? WHERE id = ?", (folded, account[0]))

    async with Engine(open_store(path)) as engine:
        await assert_lookalikes_each_keep_their_account(engine)
    assert _folded_names_upgraded(path) == LOOKALIKE_FOLDED_AFTER


def test_a_command_that_upgrades_the_schema_says_so_once(tmp_path: Path) -> None:
    """As `kopilka init` and a server say it: a one-shot or a shell that upgraded the
    ledger did it in silence, and an older kopilka still running was not thought of."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    path = home / "kopilka.db"
    with closing(_empty_schema(str(path), 10)) as old, old:
        _add_accounts(old, (1, "main", "Joe", 100))
    first = run_kopilka(home, "balance", "--client=Joe")
    said = f"Schema upgraded from version 10 to {SCHEMA_VERSION} in {path}.\n"
    assert (first.returncode, first.stderr) == (0, said), first.stdout
    again = run_kopilka(home, "balance", "--client=Joe")
    assert (again.returncode, again.stderr) == (0, "")


def test_init_of_a_ledger_with_no_name_to_fold_waits_for_no_writer(tmp_path: Path) -> None:
    """Only read, as it was before it looked for names to fold: beside another process's
    write transaction it answered "busy" after 10 s."""
    home = tmp_path / "home"
    path = a_ledger_with_one_deposit(home)
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        result = run_kopilka(home, "init")
        took = time.monotonic() - started
        writer.execute("ROLLBACK")
    assert (result.returncode, result.stdout) == (0, f"Schema is up to date in {path}.\n")
    assert took < 8, took  # SQLite's wait for the write lock is 10 s


# -- a copy made with .dump: kopilka's tables, no schema version ------------------------


def _dumped(source: Path, copy: Path) -> None:
    """As `sqlite3 SOURCE .dump | sqlite3 COPY`: every row, and no user_version."""
    with closing(sqlite3.connect(source)) as original, closing(sqlite3.connect(copy)) as made:
        made.executescript("\n".join(original.iterdump()))


def test_a_ledger_copied_with_dump_is_told_its_version_was_lost(tmp_path: Path) -> None:
    """Called "tables that kopilka did not create ...; use an empty database", which sent
    the operator to start a new ledger beside the clients' money."""
    home = tmp_path / "home"
    copy = tmp_path / "copy.db"
    _dumped(a_ledger_with_one_deposit(home), copy)
    said = (
        f"Error: the database at {copy} holds kopilka's tables but no schema version (a copy"
        " made with sqlite3's .dump loses it); they are those of schema version"
        f" {SCHEMA_VERSION}, this kopilka's: if it is a copy of a ledger, set it with sqlite3"
        f" {copy} 'PRAGMA user_version = {SCHEMA_VERSION}'\n"
    )
    deposit = ("deposit", "--client=Ann", "--amount=1", "--description=x")
    for command in (("get",), ("init",), deposit):
        refused = run_kopilka(home, *command, "--db", str(copy))
        assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", said), command
    with closing(sqlite3.connect(copy)) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # as it is told
    balance = run_kopilka(home, "balance", "--client=Ann", "--db", str(copy))
    assert balance.stdout == "Balance of Ann: $1.00\n", balance.stderr


def test_an_older_ledger_copied_with_dump_is_told_to_be_restored(tmp_path: Path) -> None:
    old, copy = tmp_path / "nine.db", tmp_path / "copy.db"
    with closing(_empty_schema(str(old), 9)) as nine, nine:
        _add_accounts(nine, (1, "main", "Ann", 100))
    _dumped(old, copy)
    refused = run_kopilka(tmp_path / "home", "init", "--db", str(copy))
    assert (refused.returncode, refused.stderr) == (
        1,
        f"Error: the database at {copy} holds kopilka's tables but no schema version (a copy"
        f" made with sqlite3's .dump loses it), not exactly those of this kopilka's schema"
        f" (version {SCHEMA_VERSION}): restore the ledger from a backup made with .backup or"
        " VACUUM INTO (docs/operations.md, Backups)\n",
    )
