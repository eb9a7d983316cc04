"""A database file removed or replaced under a running store: its writes are refused.

SQLite would go on committing into the file it opened, which no path names any more,
and every operation acknowledged so would be lost as the process ends. And files the
store may not write, or that are no database at all.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.e2e.conftest import (
    RUN_TIMEOUT_SECONDS,
    a_ledger_with_one_deposit,
    kopilka_command,
    kopilka_env,
    run_kopilka,
)
from tests.file_modes import (
    a_directory_anyone_may_enter,
    a_user_with_a_group_of_their_own,
    file_modes_enforced,
    in_mode,
    run_kopilka_as,
    run_python_as,
)
from tests.kopilka_server import free_port, running_server

from kopilka.api.auth import new_token_record
from kopilka.bank import EmbeddedBank
from kopilka.domain.model import SANDBOX_PREFIX, Deposit, Operation, Withdraw
from kopilka.errors import KopilkaError, NotFound, Unavailable
from kopilka.store.sqlite import SqliteStore
from kopilka.store.sqlite_schema import SCHEMA_VERSION


def _remove(path: Path) -> None:
    path.unlink()


def _replace(path: Path) -> None:
    other = path.with_name("restored.db")
    other.write_bytes(path.read_bytes())  # a copy put in its place, as a restore might
    os.replace(other, path)


def _remove_the_journal(path: Path) -> None:
    Path(f"{path}-wal").unlink()  # taken for a stray file: it holds the commits


def _remove_the_shared_index(path: Path) -> None:
    # Taken for a stray file too: another process then makes a new one, and each writes
    # the journal by an index of its own.
    Path(f"{path}-shm").unlink()


@pytest.mark.parametrize(
    "change", [_remove, _replace, _remove_the_journal, _remove_the_shared_index]
)
async def test_writes_to_a_database_file_gone_are_refused(
    tmp_path: Path, change: object, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kopilka.db"
    async with _store_with_a_deposit(path) as store:
        assert callable(change)
        change(path)
        for attempt in range(2):  # every write, not only the first
            with pytest.raises(Unavailable) as refused, caplog.at_level(logging.ERROR):
                await store.apply([Deposit("Ann", 5, "pay", f"k{attempt + 2}")])
            assert refused.value.message == (
                "the database's file was removed or replaced while in use; nothing was applied"
            )
        # Not ready either: a load balancer asking /v1/ready sends traffic elsewhere.
        with pytest.raises(Unavailable) as not_ready, caplog.at_level(logging.ERROR):
            await store.ping()
        assert not_ready.value.message == (  # of no write: it says nothing of one
            "the database's file was removed or replaced while in use"
        )
        # The checkpoint the deposit asked for may meet the change too, and warn of it.
        told = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
        assert len(told) == 1 and "was removed or replaced while in use" in told[0]


@contextlib.asynccontextmanager
async def _store_with_a_deposit(path: Path) -> AsyncIterator[SqliteStore]:
    """A store on a new database at `path`, Ann's deposit of $1 in it."""
    store = SqliteStore(str(path))
    await store.open()
    try:
        (opened,) = await store.apply([Deposit("Ann", 100, "pay", "k1")])
        assert isinstance(opened, Operation)
        yield store
    finally:
        await store.close()


async def test_a_token_or_sandbox_written_after_the_file_went_is_refused(tmp_path: Path) -> None:
    """Not only batches: a token made, or a sandbox opened, into a file no path names
    any more was acknowledged, and lost with the journal at the process's end."""
    path = tmp_path / "kopilka.db"
    async with _store_with_a_deposit(path) as store:
        path.rename(tmp_path / "moved.db")
        record, _ = new_token_record("teller", None)
        with pytest.raises(Unavailable) as refused:
            await store.put_token(record)
        assert refused.value.message == (
            "the database's file was removed or replaced while in use; nothing was applied"
        )
        with pytest.raises(Unavailable):
            await store.open_sandbox(f"{SANDBOX_PREFIX}x", datetime.now(UTC), 10)


async def test_a_path_through_a_link_no_longer_a_directory_refuses_and_holds_nothing(
    tmp_path: Path,
) -> None:
    """The database reached through a link to its directory, the link replaced by a file:
    the path names no file (NotADirectoryError, not "no such file"). The batch written is
    refused and rolled back whole: the write lock let go, no balance of it kept in
    memory, and writes go on once the link is back."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    store = SqliteStore(str(link / "kopilka.db"))
    await store.open()
    other = SqliteStore(str(real / "kopilka.db"))
    try:
        (first,) = await store.apply([Deposit("Ann", 100, "pay", "k1")])
        assert isinstance(first, Operation)
        link.unlink()
        link.write_text("no directory")
        with pytest.raises(Unavailable) as refused:
            await store.apply([Deposit("Ann", 5, "pay", "k2")])
        assert refused.value.message == (
            "the database's file was removed or replaced while in use; nothing was applied"
        )
        await other.open()  # the write lock is free: another process writes at once
        (beside,) = await other.apply([Deposit("Ann", 1, "pay", "k3")])
        assert isinstance(beside, Operation) and beside.credit_balance_after_cents == 101
        link.unlink()
        link.symlink_to(link)  # a loop: whether the path names the file cannot be told
        with pytest.raises(Unavailable) as unknown:
            await store.apply([Deposit("Ann", 5, "pay", "k5")])
        assert unknown.value.message == (
            "the database's file cannot be looked at; nothing was applied, try again"
        )
        with pytest.raises(Unavailable) as not_ready:
            await store.ping()
        assert not_ready.value.message == "the database's file cannot be looked at"
        link.unlink()
        link.symlink_to(real, target_is_directory=True)
        (again,) = await store.apply([Deposit("Ann", 5, "pay", "k4")])
        assert isinstance(again, Operation) and again.credit_balance_after_cents == 106
    finally:
        await store.close()
        await other.close()


async def test_a_file_gone_whose_old_directory_cannot_be_looked_at_is_still_told_gone(
    tmp_path: Path,
) -> None:
    """The database reached by a link to its file, the link pointed elsewhere, and the
    directory the file was in no longer to be looked at (a loop here): said gone in one
    line, the journal left behind named only when it can be told, no OSError raised."""
    (tmp_path / "real").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "other.db").write_bytes(b"")
    link = tmp_path / "books.db"
    link.symlink_to(tmp_path / "real" / "kopilka.db")
    store = SqliteStore(str(link))
    await store.open()
    try:
        (first,) = await store.apply([Deposit("Ann", 100, "pay", "k1")])
        assert isinstance(first, Operation)
        link.unlink()
        link.symlink_to(tmp_path / "other" / "other.db")
        (tmp_path / "real").rename(tmp_path / "real-away")
        (tmp_path / "real").symlink_to(tmp_path / "real")  # a loop
        with pytest.raises(Unavailable) as refused:
            await store.apply([Deposit("Ann", 5, "pay", "k2")])
        assert refused.value.message == (
            "the database's file was removed or replaced while in use; nothing was applied"
        )
    finally:
        await store.close()


async def test_a_ledger_required_that_goes_as_it_is_opened_is_not_made_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that requires a ledger (a server's worker, started again) found the file,
    which was then removed before its writer connected: SQLite made a new, empty ledger at
    the path, which every worker then took for the one restored there later."""
    path = tmp_path / "kopilka.db"
    made = SqliteStore(str(path))
    await made.open()
    await made.apply([Deposit("Ann", 100, "pay", "k1")])
    await made.close()
    kept = path.read_bytes()
    looked = SqliteStore._require_a_ledger

    def found_then_removed(store: SqliteStore) -> None:
        looked(store)
        path.unlink()

    store = SqliteStore(str(path), create_schema=False)
    try:
        with monkeypatch.context() as racing:
            racing.setattr(SqliteStore, "_require_a_ledger", found_then_removed)
            with pytest.raises(NotFound) as refused:
                await store.open()
        assert refused.value.code == "database_not_found"
        assert not path.exists()
        path.write_bytes(kept)  # restored: the same store opens it when asked again
        await store.open()
        (again,) = await store.apply([Deposit("Ann", 5, "pay", "k2")])
        assert isinstance(again, Operation) and again.credit_balance_after_cents == 105
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _ann_with_five_dollars(path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(str(path))
    await store.open()
    try:
        await store.apply([Deposit("Ann", 500, "pay", "k1")])
        yield store
    finally:
        await store.close()


async def _outcome_or_outage(store: SqliteStore, command: Deposit | Withdraw) -> object:
    """The command's outcome, or the outage the store raised for its batch."""
    try:
        (outcome,) = await store.apply([command])
    except Unavailable as error:
        return error
    return outcome


@pytest.mark.parametrize(
    ("column", "value"),
    [("balance", 1e19), ("balance", "lots"), ("min_balance", 0.5), ("max_balance", "x")],
)
async def test_a_balance_another_program_wrote_that_is_no_whole_number_of_cents_is_refused(
    tmp_path: Path, column: str, value: object
) -> None:
    """SQLite's CHECKs let a REAL or a text by: a withdrawal from 1e19 was computed in
    floating point and committed, an entry written and the balance left as it was."""
    path = tmp_path / "kopilka.db"
    async with _ann_with_five_dollars(path) as store:
        with closing(sqlite3.connect(path)) as other:
            other.execute(f"UPDATE balances SET {column} = ?", (value,))
            other.commit()
        damaged = (
            "the database is damaged (the balance of account id 1 holds an amount that is no"
            " whole number of cents)"
        )
        with pytest.raises(Unavailable) as refused:
            await store.get_account("main", "Ann")
        assert refused.value.code == "database_damaged"
        assert refused.value.message.startswith(damaged)
        with pytest.raises(Unavailable):  # not ready: a probe says so
            await store.ping()
        outcome = await _outcome_or_outage(store, Withdraw("Ann", 100, "cash", "k2"))
        assert isinstance(outcome, Unavailable) and outcome.message.startswith(damaged)
        with closing(sqlite3.connect(path)) as other:
            assert other.execute("SELECT count(*) FROM entries").fetchone() == (1,)


async def test_a_file_damaged_under_a_store_is_said_damaged_and_its_write_lock_let_go(
    tmp_path: Path,
) -> None:
    """Its header overwritten (a copy put over it in place, say): BEGIN failed with a
    DatabaseError no one caught, answered as an internal error with a traceback each time,
    and the writers' lock was never let go, every other process's write waiting on it."""
    import fcntl

    path = tmp_path / "kopilka.db"
    async with _ann_with_five_dollars(path) as store:
        with closing(sqlite3.connect(path)) as other:
            # The journal emptied into the file (once the store's checkpoint has let go):
            # page 1 is then read from the file, its header with it.
            deadline = time.monotonic() + 10
            while other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone() != (0, 0, 0):
                assert time.monotonic() < deadline, "the journal was never emptied"
                time.sleep(0.01)
        with path.open("r+b") as file:
            file.write(b"garbage garbage!")
        outcome = await _outcome_or_outage(store, Deposit("Ann", 5, "pay", "k2"))
        assert isinstance(outcome, Unavailable), outcome
        assert outcome.code == "database_damaged", outcome
        with Path(f"{path}-writer.lock").open("rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no BlockingIOError


def _journal_of(database: Path) -> tuple[int, int, bytes]:
    """The -wal and -shm beside the database: their inodes, and the -wal's bytes (the
    -shm's change as its readers come and go)."""
    wal, shm = Path(f"{database}-wal"), Path(f"{database}-shm")
    return wal.stat().st_ino, shm.stat().st_ino, wal.read_bytes()


def _journal_left(database: Path, removed: bool) -> str:
    """What a command is told of the database removed (or emptied) beside its journal."""
    found = f"its -wal and -shm are there ({database}-wal, {database}-shm)"
    keep = "move them away first, keeping them if those are wanted"
    if removed:
        said = (
            f"it is not there, but {found}: the file was removed or moved, and a ledger made"
            " at its path would have SQLite discard them, with the last operations they may"
            f" hold; {keep} (docs/operations.md, Backups)"
        )
    else:
        said = (
            f"it is an empty file, but {found}: the file was emptied, its ledger lost, and a"
            " ledger made in it would have SQLite discard them, with the last operations"
            f" they may hold; {keep}, and restore the ledger from a backup"
            " (docs/operations.md, Backups)"
        )
    return f"cannot open the database {database}: {said}"


def test_the_journal_of_a_ledger_removed_under_a_server_is_left_for_the_operator(
    tmp_path: Path,
) -> None:
    """The file removed while a server ran, its -wal and -shm left at their names: one-shot
    commands said the home was that of a server keeping its ledger elsewhere, and the
    `kopilka init` they offered made a new ledger at the path, SQLite deleting the -wal
    that held the removed file's last operations. Every way in is refused, the journal
    left as it is, until the operator has moved it away."""
    home = tmp_path / "home"
    database = home / "kopilka.db"
    refusal = f"Error: {_journal_left(database, removed=True)}\n"
    deposit = ("deposit", "--client=Bob", "--amount=5", "--description=x")
    # `serve` beside the one running had said the database "is not there yet (check --db)".
    commands = [("balance", "--client=Ann"), ("get",), ("init",), deposit, ("token", "list")]
    commands.append(("serve", str(free_port())))
    with running_server(home) as server:
        with server.client() as admin:
            body = {"client": "Ann", "amount": "250", "open_account": True}
            assert admin.post("/v1/deposits", json=body).status_code == 201
        database.unlink()
        journal = _journal_of(database)
        for command in commands:
            result = run_kopilka(home, *command)
            assert (result.returncode, result.stdout, result.stderr) == (1, "", refusal), command
        shell = run_kopilka(home, stdin="get\n")
        assert (shell.returncode, shell.stdout, shell.stderr) == (1, "", refusal)
    served = run_kopilka(home, "serve", str(free_port()))  # the server stopped meanwhile
    assert (served.returncode, served.stdout, served.stderr) == (1, "", refusal)
    assert _journal_of(database) == journal and not database.exists()
    for name in (f"{database}-wal", f"{database}-shm"):  # as the operator is told
        os.replace(name, f"{name}.of-the-removed-file")
    made = run_kopilka(home, "init")  # no backup to restore: a new ledger, as offered
    assert (made.returncode, made.stdout) == (
        0,
        f"Schema created in {database} (version {SCHEMA_VERSION}).\n",
    )
    assert run_kopilka(home, *deposit).returncode == 0
    assert run_kopilka(home, "balance", "--client=Bob").stdout == "Balance of Bob: $5.00\n"


@pytest.mark.parametrize("removed", [True, False])
@pytest.mark.parametrize("through_a_link", [False, True])
async def test_a_store_opens_no_file_whose_journal_outlived_it(
    tmp_path: Path, removed: bool, through_a_link: bool
) -> None:
    """Removed, or emptied in place, under a store still running: SQLite deletes a -wal
    it finds beside a file of no pages as it opens one (even to read it), the running
    store's with it. Another store refuses it before any connection, as it is given (by
    a link too: the journal is looked for beside the file the link leads to)."""
    real = tmp_path / "data" / "ledger.db"
    real.parent.mkdir()
    given = tmp_path / "ledger.db" if through_a_link else real
    if through_a_link:
        given.symlink_to(real)
    store = SqliteStore(str(given))
    await store.open()  # its schema in the -wal: no commit since, nor checkpoint
    try:
        if removed:
            real.unlink()
        else:
            os.truncate(real, 0)
        journal = _journal_of(real)
        said = _journal_left(real, removed).replace(f"database {real}:", f"database {given}:")
        for create_schema in (True, False):  # a write's open, and a read's
            refused = SqliteStore(str(given), create_schema=create_schema)
            with pytest.raises(Unavailable) as told:
                await refused.open()
            assert (told.value.code, told.value.message) == ("store_unavailable", said)
        assert _journal_of(real) == journal
        assert real.exists() != removed
    finally:
        await store.close()


# -- files kopilka may not write, and files that are no database -------------------------


@pytest.mark.parametrize("through_a_link", [False, True])
def test_a_ledger_read_while_read_only_takes_writes_again_once_writable(
    tmp_path: Path, through_a_link: bool
) -> None:
    """A read of a read-only ledger leaves its -wal and -shm read-only (SQLite gives them
    the database file's mode): made writable again, every write failed for good. Through
    a link, the journal beside the link was looked at, not the one beside the file."""
    enforced = file_modes_enforced(tmp_path)
    home = tmp_path / "home"
    database = home / "kopilka.db"
    if through_a_link:
        home.mkdir(mode=0o700)
        (tmp_path / "real").mkdir(mode=0o700)
        database.symlink_to(tmp_path / "real" / "ledger.db")
        database = tmp_path / "real" / "ledger.db"
    deposit = ("deposit", "--client=Ann", "--amount=5", "--description=x")
    assert run_kopilka_as(enforced, home, *deposit).returncode == 0
    database.chmod(0o400)
    read = run_kopilka_as(enforced, home, "balance", "--client=Ann")
    assert (read.returncode, read.stdout) == (0, "Balance of Ann: $5.00\n"), read.stderr
    journal = [Path(f"{database}-wal"), Path(f"{database}-shm")]
    assert [name.stat().st_mode & 0o777 for name in journal] == [0o400, 0o400]
    database.chmod(0o600)
    written = run_kopilka_as(enforced, home, *deposit)
    assert (written.returncode, written.stderr) == (0, "")
    read = run_kopilka_as(enforced, home, "balance", "--client=Ann")
    assert read.stdout == "Balance of Ann: $10.00\n", read.stderr


# A store opened on a ledger made read-only first, read and asked if it is ready; and one
# opened where its directory may not be searched. Run with file modes enforced.
_OPENED_READ_ONLY = """
import asyncio, os, sys
from kopilka.engine import Engine
from kopilka.errors import KopilkaError
from kopilka.store.sqlite import SqliteStore

async def main(path):
    os.chmod(path, 0o400)
    store = SqliteStore(path, create_schema=False)
    async with Engine(store) as engine:
        print((await engine.get_account("main", "Ann")).balance_cents)  # reads answer
        try:
            await store.ping()
        except KopilkaError as error:
            print(error.code, error.message)

asyncio.run(main(sys.argv[1]))
"""
_OPENED_UNSEARCHABLE = """
import asyncio, sys
from kopilka.errors import KopilkaError
from kopilka.store.sqlite import SqliteStore

async def main(path):
    try:
        store = SqliteStore(path, create_schema=False)
        await store.open()
        await store.ping()
        print("ready")
        await store.close()
    except KopilkaError as error:
        print(error.code, error.message)

asyncio.run(main(sys.argv[1]))
"""


def _python_run(prefix: tuple[str, ...], code: str, path: Path) -> subprocess.CompletedProcess[str]:
    """`python -c CODE PATH` after `prefix` (file modes enforced), its output read."""
    return subprocess.run(
        [*prefix, sys.executable, "-c", code, path],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


def test_a_server_that_opened_a_read_only_ledger_is_not_ready(tmp_path: Path) -> None:
    """SQLite opens a file it may not write read-only, and the process keeps it so until
    restarted, though made writable: a server started on a restore left 0400 refused
    every write while it said it was ready."""
    enforced = file_modes_enforced(tmp_path)
    path = a_ledger_with_one_deposit(tmp_path / "home")  # Ann, $1.00
    ran = _python_run(enforced, _OPENED_READ_ONLY, path)
    assert ran.stdout == (
        "100\nstore_unavailable the database was opened read-only: writes are refused until"
        " kopilka is started again with its files writable\n"
    ), ran.stderr
    assert f"the database {path} was opened read-only (the database file" in ran.stderr


def test_a_ledger_whose_directory_may_not_be_searched_is_said_unavailable(
    tmp_path: Path,
) -> None:
    """A worker of `serve --workers` started again then met a bare PermissionError, and its
    failed start stopped the whole server; told as the database's, it waits for it."""
    enforced = file_modes_enforced(tmp_path)
    home = tmp_path / "home"
    path = a_ledger_with_one_deposit(home)
    with in_mode(home, 0o000, then=0o700):
        ran = _python_run(enforced, _OPENED_UNSEARCHABLE, path)
    assert ran.stdout.startswith(f"store_unavailable cannot open the database {path}:"), (
        ran.stdout + ran.stderr
    )


def test_a_ledger_reached_through_a_link_in_a_read_only_directory_is_ready(
    tmp_path: Path,
) -> None:
    """Its journal is beside the file the link leads to, where it is written: the
    link's own directory read-only was taken for the database opened read-only, and a
    server that wrote all the same was never ready."""
    enforced = file_modes_enforced(tmp_path)
    path = a_ledger_with_one_deposit(tmp_path / "home")
    links = tmp_path / "links"
    links.mkdir(mode=0o700)
    (links / "ledger.db").symlink_to(path)
    with in_mode(links, 0o500, then=0o700):
        ran = _python_run(enforced, _OPENED_UNSEARCHABLE, links / "ledger.db")
    assert ran.stdout == "ready\n", ran.stdout + ran.stderr


def test_a_write_to_a_read_only_ledger_names_the_file_and_no_retry(tmp_path: Path) -> None:
    """ "try again" never helps a read-only file: the caller is told which one it is."""
    enforced = file_modes_enforced(tmp_path)
    home = tmp_path / "home"
    deposit = ("deposit", "--client=Ann", "--amount=5", "--description=x")
    assert run_kopilka_as(enforced, home, *deposit).returncode == 0
    (home / "kopilka.db").chmod(0o400)
    refused = run_kopilka_as(enforced, home, *deposit, "--idempotency-key=k-read-only")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.startswith(
        "Error: the database failed (attempt to write a readonly database: the database"
        " file, its -wal file and its -shm file are read-only); nothing was applied"
    ), refused.stderr
    assert "try again" not in refused.stderr


def test_a_ledger_whose_directory_is_read_only_names_the_directory(tmp_path: Path) -> None:
    """The database file writable, its directory not: SQLite cannot make the -wal and
    -shm it reads through, and said only "attempt to write a readonly database"."""
    enforced = file_modes_enforced(tmp_path)
    home = tmp_path / "home"
    deposit = ("deposit", "--client=Ann", "--amount=5", "--description=x")
    assert run_kopilka_as(enforced, home, *deposit).returncode == 0
    with in_mode(home, 0o500, then=0o700):
        read = run_kopilka_as(enforced, home, "balance", "--client=Ann")
    assert (read.returncode, read.stdout) == (1, "")
    assert read.stderr == (
        f"Error: cannot open the database {home / 'kopilka.db'}: attempt to write a readonly"
        " database: its directory is read-only\n"
    )


def test_a_path_that_is_no_regular_file_is_refused_in_one_line_with_nothing_beside_it(
    tmp_path: Path,
) -> None:
    refusal = "cannot open the database /dev/null: it is not a regular file"
    with pytest.raises(KopilkaError) as refused:
        EmbeddedBank("/dev/null")
    assert (refused.value.code, refused.value.message) == ("store_unavailable", refusal)
    deposit = ("deposit", "--client=Ann", "--amount=5", "--description=x")
    result = run_kopilka(tmp_path / "home", *deposit, "--db", "/dev/null")
    assert (result.returncode, result.stderr) == (1, f"Error: {refusal}\n")
    # A pipe, which a read would wait on for good: nothing of kopilka's is put beside it.
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for command in (deposit, ("balance", "--client=Ann")):
        result = run_kopilka(tmp_path / "home", *command, "--db", str(pipe))
        assert result.returncode == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pipe")) == ["pipe"]
    # A file of something else is said so, and nothing put beside it either.
    text = tmp_path / "notes.txt"
    text.write_text("not a ledger\n" * 100)
    result = run_kopilka(tmp_path / "home", *deposit, "--db", str(text))
    assert (result.returncode, result.stderr) == (
        1,
        f"Error: cannot open the database {text}: file is not a database\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("notes")) == ["notes.txt"]


def test_the_journal_made_writable_again_is_the_ledgers_own_file_only(tmp_path: Path) -> None:
    """A -wal that is a link is not followed (it would make a file elsewhere writable),
    and a file of another user's is left as it is, root or not."""
    from kopilka.store.sqlite import _journal_writable_as_the_database

    database = tmp_path / "w.db"
    database.write_bytes(b"")
    database.chmod(0o600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not kopilka's")
    elsewhere.chmod(0o444)
    (tmp_path / "w.db-wal").symlink_to(elsewhere)
    shm = tmp_path / "w.db-shm"
    shm.write_bytes(b"")
    shm.chmod(0o444)
    _journal_writable_as_the_database(str(database))
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o444
    assert stat.S_IMODE(shm.stat().st_mode) == 0o644  # its own: made writable again
    if os.geteuid() == 0:  # another user's file, which root could change
        os.chown(shm, 65534, 65534)
        shm.chmod(0o444)
        _journal_writable_as_the_database(str(database))
        assert stat.S_IMODE(shm.stat().st_mode) == 0o444


@pytest.mark.skipif(os.geteuid() != 0, reason="a file of another user's is made as root")
def test_a_database_file_another_user_owns_is_refused_untouched(tmp_path: Path) -> None:
    """Made in a shared directory by someone else before the ledger was (mode 0666): the
    ledger written into it stayed theirs, to read and to change."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    planted = shared / "ledger.db"
    planted.write_bytes(b"")
    planted.chmod(0o666)
    os.chown(planted, 65534, 65534)  # nobody's
    home = tmp_path / "home"
    result = run_kopilka(
        home, "deposit", "--client=Ann", "--amount=5", "--description=pay", "--db", str(planted)
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: the database {planted} belongs to another user (uid 65534): run kopilka as"
        " that user, or keep the ledger in a file of your own\n"
    )
    assert planted.read_bytes() == b""
    assert sorted(path.name for path in shared.iterdir()) == ["ledger.db"]


def _balance_refused(tmp_path: Path, database: Path) -> str:
    """Ann's balance asked of the ledger at `database`: refused, in the words returned."""
    result = run_kopilka(tmp_path / "home", "balance", "--client=Ann", "--db", str(database))
    assert (result.returncode, result.stdout) == (1, "")
    return result.stderr


def _a_ledger_with_a_deposit(directory: Path) -> Path:
    database = directory / "ledger.db"
    deposit = ("deposit", "--client=Ann", "--amount=5", "--description=pay", "--db", str(database))
    result = run_kopilka(directory / "home", *deposit)
    assert (result.returncode, result.stderr) == (0, "")
    return database


@pytest.mark.skipif(os.geteuid() != 0, reason="a file of another user's is made as root")
@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
@pytest.mark.parametrize("through_a_link", [False, True])
def test_a_journal_another_user_put_beside_the_database_is_refused_untouched(
    tmp_path: Path, suffix: str, through_a_link: bool
) -> None:
    """SQLite reads a -wal found beside the database into it at the next open, as the
    ledger's own commits: one another user wrote changed balances with no operation, and
    was then removed, leaving no trace. Reached through a link, it is looked for beside
    the real file, where SQLite reads it (beside the link it was not found)."""
    if through_a_link:
        given, database, _ = _a_link(tmp_path, 0o755)
    else:
        given = database = _a_ledger_with_a_deposit(tmp_path)
    before = database.read_bytes()
    planted = Path(f"{database}{suffix}")
    planted.write_bytes(b"not the ledger's")
    os.chown(planted, 65534, 65534)  # nobody's
    result = run_kopilka(tmp_path / "home", "get", "--db", str(given))
    assert (result.returncode, result.stdout) == (1, "")
    where = f" (beside {database}, where the database {given} leads)" if through_a_link else ""
    assert result.stderr == (
        f"Error: the database's {suffix} file {planted}{where} belongs to another user (uid"
        " 65534): run kopilka as that user, or keep the ledger in a file of your own\n"
    )
    assert planted.read_bytes() == b"not the ledger's"
    assert database.read_bytes() == before


def test_a_database_in_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    """Sticky or not, anyone may make a -wal there while no kopilka has the ledger open."""
    database = _a_ledger_with_a_deposit(tmp_path)
    with in_mode(tmp_path, 0o1777, then=0o700):
        refusal = _balance_refused(tmp_path, database)
    assert refusal == (
        f"Error: the database {database} is in {tmp_path}, which other users may write"
        " (mode 1777): one could put a -wal file beside it, read into the ledger as its"
        " own; keep the ledger in a directory of your own\n"
    )
    assert not Path(f"{database}-wal").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory of another user's is made as root")
def test_a_database_in_another_users_directory_is_refused(tmp_path: Path) -> None:
    """Its owner may rename the ledger away and put a file of theirs in its place."""
    database = _a_ledger_with_a_deposit(tmp_path)
    os.chown(tmp_path, 65534, 65534)
    try:
        refusal = _balance_refused(tmp_path, database)
    finally:
        os.chown(tmp_path, 0, 0)
    assert refusal == (
        f"Error: the database {database} is in {tmp_path}, which belongs to another user"
        " (uid 65534), who could replace it: keep the ledger in a directory of your own\n"
    )


# One deposit into the ledger at argv[1], its balance after; or the refusal's code and words.
_DEPOSIT = """
import sys
from kopilka.bank import EmbeddedBank
from kopilka.errors import KopilkaError
try:
    with EmbeddedBank(sys.argv[1]) as bank:
        print(bank.deposit("Ann", 100, "pay").credit_balance_after_cents)
except KopilkaError as error:
    print(error.code, error.message)
"""


def test_a_database_in_roots_directory_of_the_users_own_group_is_opened() -> None:
    """`install -d -o root -g kopilka -m 0770 /var/lib/kopilka`, kopilka the service user's
    own group: root and that user alone may write it. It was refused as one others may
    write, the group being no group of the directory's owner's (root's) own."""
    user = a_user_with_a_group_of_their_own()
    taken = {group.gr_gid for group in grp.getgrall()}
    nameless = next(gid for gid in range(54321, 65534) if gid not in taken)
    with a_directory_anyone_may_enter() as srv:
        state = srv / "kopilka"
        state.mkdir()
        os.chown(state, 0, user.pw_gid)
        state.chmod(0o770)
        database = state / "k.db"
        for _ in range(2):
            opened = run_python_as(user, _DEPOSIT, str(database), cwd=srv)
            assert (opened.returncode, opened.stderr) == (0, "")
            assert opened.stdout in ("100\n", "200\n")
        assert (database.stat().st_uid, opened.stdout) == (user.pw_uid, "200\n")
        # Still refused: a group not known to be theirs alone, a directory anyone may
        # write, one of another user's.
        for owner, group, mode in (
            (0, nameless, 0o770),
            (0, user.pw_gid, 0o777),
            (65534 if user.pw_uid != 65534 else 1, user.pw_gid, 0o770),
        ):
            os.chown(state, owner, group)
            state.chmod(mode)
            refused = run_python_as(user, _DEPOSIT, str(database), cwd=srv)
            assert refused.stdout.startswith(
                f"invalid_setting the database {database} is in {state}, which"
            ), (owner, group, mode, refused.stdout, refused.stderr)


def _a_link(tmp_path: Path, mode: int) -> tuple[Path, Path, Path]:
    """A ledger at tmp_path/real/ledger.db, its directory of `mode`, and a link to it in
    tmp_path/links: (the link, the ledger, its directory)."""
    real = tmp_path / "real"
    real.mkdir()
    database = _a_ledger_with_a_deposit(real)
    real.chmod(mode)
    links = tmp_path / "links"
    links.mkdir(mode=0o755)
    link = links / "ledger.db"
    link.symlink_to(database)
    return link, database, real


def test_a_database_reached_through_a_link_is_held_to_the_real_files_directory(
    tmp_path: Path,
) -> None:
    """SQLite follows the link and keeps the -wal and -shm beside the file it leads to: in
    a directory anyone may write, the link to it was opened, where the ledger itself was
    refused."""
    link, database, real = _a_link(tmp_path, 0o777)
    try:
        for path in (link, database):
            shown = f"{link} (really {database})" if path == link else str(database)
            assert _balance_refused(tmp_path, path) == (
                f"Error: the database {shown} is in {real}, which other users may write (mode"
                " 777): one could put a -wal file beside it, read into the ledger as its own;"
                " keep the ledger in a directory of your own\n"
            )
        assert sorted(p.name for p in real.iterdir()) == ["ledger.db", "ledger.db-writer.lock"]
        # A link in a directory anyone may write, to a ledger in one of its own: whoever
        # may write there may change where the link leads.
        real.chmod(0o700)
        link.parent.chmod(0o777)
        assert _balance_refused(tmp_path, link) == (
            f"Error: the database {link} (really {database}) is in {link.parent}, which other"
            " users may write (mode 777): one could change where it leads; keep the ledger"
            " in a directory of your own\n"
        )
        link.parent.chmod(0o755)
        result = run_kopilka(tmp_path / "home", "balance", "--client=Ann", "--db", str(link))
        assert (result.returncode, result.stdout) == (0, "Balance of Ann: $5.00\n"), result.stderr
    finally:
        real.chmod(0o700)
        link.parent.chmod(0o755)


def test_a_write_beside_a_server_whose_shared_index_was_deleted_is_not_lost(
    tmp_path: Path,
) -> None:
    """The -shm deleted under a running server: a one-shot deposit beside it made a new
    index, and the server's next writes, by its own, wrote over that deposit's pages (its
    account left without a balance, every later write to it failing)."""
    home = tmp_path / "home"
    with running_server(home) as server:
        with server.client() as admin:
            body = {"client": "Ann", "amount": "1", "open_account": True}
            assert admin.post("/v1/deposits", json=body).status_code == 201
        Path(f"{home / 'kopilka.db'}-shm").unlink()
        beside = run_kopilka(home, "deposit", "--client=Zed", "--amount=50", "--description=x")
        assert beside.returncode == 0, beside.stderr
        with server.client() as admin:
            for _ in range(5):
                answer = admin.post("/v1/deposits", json=body)
                assert answer.status_code == 503, answer.text  # refused, nothing applied
                assert answer.json()["error"]["code"] == "store_unavailable"
    after = run_kopilka(home, "balance", "--client=Zed")
    assert (after.returncode, after.stdout) == (0, "Balance of Zed: $50.00\n"), after.stderr
    assert run_kopilka(home, "balance", "--client=Ann").stdout == "Balance of Ann: $1.00\n"


def test_a_server_whose_shared_index_was_deleted_keeps_what_others_committed_as_it_stops(
    tmp_path: Path,
) -> None:
    """Its -shm deleted, one-shot commands made a new one and committed by it, each
    acknowledged. The server, stopped as the operator is told to, closed its connections,
    and SQLite checkpointed by the index the server still held: their deposits were lost
    (at times the file damaged)."""
    home = tmp_path / "home"
    database = home / "kopilka.db"
    with running_server(home) as server:
        with server.client() as admin:
            body = {"client": "Ann", "amount": "250", "open_account": True}
            assert admin.post("/v1/deposits", json=body).status_code == 201
            # At once after: its checkpoint waits its interval, so the server's index
            # holds frames not yet in the file.
            body = {"client": "Ann", "amount": "20"}
            assert admin.post("/v1/deposits", json=body).status_code == 201
        Path(f"{database}-shm").unlink()
        for _ in range(3):
            deposit = ("deposit", "--client=Ann", "--amount=10", "--description=beside")
            assert run_kopilka(home, *deposit).returncode == 0
        with server.client() as admin:
            refused = admin.post("/v1/deposits", json={"client": "Ann", "amount": "1"})
            assert refused.status_code == 503, refused.text
        assert server.stop() == 0
    assert run_kopilka(home, "balance", "--client=Ann").stdout == "Balance of Ann: $300.00\n"
    with closing(sqlite3.connect(database)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert "its connections are left open as kopilka ends" in server.errors


def test_a_server_whose_journal_was_deleted_keeps_what_it_acknowledged_as_it_stops(
    tmp_path: Path,
) -> None:
    """Only removed, no other made in its place: closed, SQLite copies the journal it
    still has open into the file. Left open, the last deposits were lost with it."""
    home = tmp_path / "home"
    with running_server(home) as server:
        with server.client() as admin:
            body = {"client": "Ann", "amount": "250", "open_account": True}
            assert admin.post("/v1/deposits", json=body).status_code == 201
            body = {"client": "Ann", "amount": "20"}  # its checkpoint waits its interval
            assert admin.post("/v1/deposits", json=body).status_code == 201
        Path(f"{home / 'kopilka.db'}-wal").unlink()
        assert server.stop() == 0
    assert "left open" not in server.errors
    assert run_kopilka(home, "balance", "--client=Ann").stdout == "Balance of Ann: $270.00\n"


async def test_a_database_whose_connections_were_left_open_is_not_opened_again_here(
    tmp_path: Path,
) -> None:
    """SQLite shares one index of the journal among a process's connections: a store
    opened here again would write by the stale one, over what the others committed."""
    path = tmp_path / "kopilka.db"
    async with _store_with_a_deposit(path):
        Path(f"{path}-shm").unlink()
        beside = run_kopilka(
            tmp_path / "home",
            "deposit",
            "--client=Ann",
            "--amount=5",
            "--description=x",
            "--db",
            str(path),
        )
        assert beside.returncode == 0, beside.stderr
    again = SqliteStore(str(path))
    with pytest.raises(Unavailable) as refused:
        await again.open()
    assert refused.value.message == (
        f"cannot open the database {path}: this process left its connections open, its"
        " journal replaced while in use; open it in a new process"
    )
    after = run_kopilka(tmp_path / "home", "balance", "--client=Ann", "--db", str(path))
    assert after.stdout == "Balance of Ann: $6.00\n", after.stderr


def _a_ledger_damaged_where_operations_are_added(home: Path) -> Path:
    for client in ("Ann", "Bob", "Cy"):
        made = run_kopilka(
            home, "deposit", f"--client={client}", "--amount=5", "--description=" + "x" * 500
        )
        assert made.returncode == 0, made.stderr
    database = home / "kopilka.db"
    with closing(sqlite3.connect(database)) as reader:  # the operations' last page
        (number,) = reader.execute(
            "SELECT max(pageno) FROM dbstat WHERE name = 'operations'"
        ).fetchone()
    page = 4096
    with database.open("r+b") as file:  # overwritten whole: no page of any kind
        file.seek((number - 1) * page)
        file.write(b"\xff" * page)
    return database


def test_init_says_a_damaged_ledger_is_damaged_not_up_to_date(tmp_path: Path) -> None:
    """A restore beside a stale -wal, say: its tables are there, and init had said "Schema
    is up to date" of a file every write was refused on, as a failure to try again."""
    home = tmp_path / "home"
    database = _a_ledger_damaged_where_operations_are_added(home)
    result = run_kopilka(home, "init")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"Error: the database {database} is damaged (")
    assert result.stderr.endswith("): restore it from a backup (docs/operations.md, Backups)\n")
    assert result.stderr.count("\n") == 1


def test_a_ledger_cut_short_is_said_damaged_when_opened(tmp_path: Path) -> None:
    """Not "cannot open the database: database disk image is malformed", which says
    nothing of what to do: a restore."""
    home = tmp_path / "home"
    database = _a_ledger_damaged_where_operations_are_added(home)
    os.truncate(database, 4 * 4096)
    for command in (("balance", "--client=Ann"), ("init",)):
        result = run_kopilka(home, *command)
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            f"Error: the database {database} is damaged (database disk image is malformed):"
            " restore it from a backup (docs/operations.md, Backups)\n",
        ), command


def test_init_reads_every_index_against_its_table(tmp_path: Path) -> None:
    """quick_check reads pages, not whether an index holds its table's rows: a restore
    beside a stale -wal that lost index rows passed it as up to date, and a retried key
    then applied twice. (An index of another table of the file, made to disagree with
    its table here, stands for the ledger's own.)"""
    home = tmp_path / "home"
    database = a_ledger_with_one_deposit(home)
    with closing(sqlite3.connect(database)) as raw:
        raw.executescript(
            "CREATE TABLE scratch (a, b); CREATE INDEX scratch_a ON scratch (a);"
            " INSERT INTO scratch VALUES (1, 2); PRAGMA writable_schema = ON;"
            " UPDATE sqlite_master SET sql = 'CREATE INDEX scratch_a ON scratch (b)'"
            " WHERE name = 'scratch_a';"
        )
    result = run_kopilka(home, "init")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"Error: the database {database} is damaged (row 1 missing from index scratch_a):"
        " restore it from a backup (docs/operations.md, Backups)\n"
    )


async def test_damage_met_is_told_once_and_the_store_is_not_ready_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch that passes (in main, which reads no sandbox) mends nothing: the log said
    the damage, then "available again", over and over, and /v1/ready stayed ready."""
    database = str(tmp_path / "kopilka.db")
    store = SqliteStore(database)
    await store.open()
    sandbox = f"{SANDBOX_PREFIX}{'s' * 80}-0"
    try:
        await store.apply([Deposit("Ann", 5, "x", "k")])
        now = datetime.now(UTC)
        for number in range(60):  # sandboxes over more than one page
            assert await store.open_sandbox(f"{sandbox[:-2]}-{number}", now, sandboxes_max=100)
    finally:
        await store.close()
    _damage_pages_of(database, "sandboxes", "sqlite_autoindex_sandboxes_1")  # index too
    store = SqliteStore(database)
    await store.open()
    try:
        for attempt in range(2):
            with pytest.raises(Unavailable) as refused:
                await store.apply([Deposit("Bob", 5, "play", f"s{attempt}", ledger=sandbox)])
            assert refused.value.code == "database_damaged"
            (passed,) = await store.apply([Deposit("Ann", 5, "x", f"k{attempt}")])
            assert isinstance(passed, Operation), passed
        with pytest.raises(Unavailable) as not_ready:
            await store.ping()
        assert not_ready.value.code == "database_damaged"
    finally:
        await store.close()
    told = [r.getMessage() for r in caplog.records if r.name == "kopilka.store.sqlite"]
    assert len(told) == 1 and "is damaged" in told[0], told


def _damage_pages_of(database: str, *names: str) -> None:
    """Every page of the tables and indexes `names` overwritten, as a disk fault might."""
    with closing(sqlite3.connect(database)) as reader:
        marks = ", ".join("?" * len(names))
        pages = reader.execute(
            f"SELECT pageno FROM dbstat WHERE name IN ({marks})", names
        ).fetchall()
    with open(database, "r+b") as file:
        for (number,) in pages:
            file.seek((number - 1) * 4096)
            file.write(b"\xff" * 4096)


@pytest.mark.parametrize("through_a_link", [False, True])
async def test_a_restore_moved_in_under_a_running_store_is_served_whole_as_the_log_says(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, through_a_link: bool
) -> None:
    """A backup moved over the ledger while kopilka ran (its -wal left, against the
    documented steps): the log said to restart kopilka, and the -wal the old file left at
    its path was read into the backup, which served a damaged file. The log names the
    files to move away first (through a link, beside the file it leads to)."""
    path = tmp_path / "kopilka.db"
    if through_a_link:
        (tmp_path / "data").mkdir()
        path.symlink_to(tmp_path / "data" / "kopilka.db")
        path = tmp_path / "data" / "kopilka.db"  # where the backup goes, and the journal
    store = SqliteStore(str(tmp_path / "kopilka.db"))
    await store.open()
    try:
        await store.apply([Deposit("Ann", 100, "pay", "k1")])
        backup = _backed_up(path, tmp_path / "backup.db")
        await store.apply([Deposit(f"Client {n}", 5, "x" * 400, f"k{n + 2}") for n in range(300)])
        os.replace(backup, path)
        with pytest.raises(Unavailable):
            await store.apply([Deposit("Ann", 5, "pay", "late")])
    finally:
        await store.close()
    told = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(told) == 1, told
    inodes = [os.stat(f"{path}-{name}").st_ino for name in ("wal", "shm")]
    assert (
        f"move away {path}-wal (inode {inodes[0]}) and {path}-shm (inode {inodes[1]}),"
        " which belong to the file removed or replaced"
    ) in told[0]
    for name in (f"{path}-wal", f"{path}-shm"):  # as the operator is told
        os.replace(name, f"{name}.of-the-replaced-file")
    restarted = SqliteStore(str(tmp_path / "kopilka.db"))
    await restarted.open()
    try:
        assert await restarted.damage() is None
        assert [account.client for account in await restarted.list_accounts("main")] == ["Ann"]
    finally:
        await restarted.close()


def test_a_write_into_a_damaged_ledger_says_restore_it_not_try_again(tmp_path: Path) -> None:
    """SQLite's "database disk image is malformed" was a store_unavailable "try again",
    over and over, as if it would pass: no retry mends a damaged file."""
    home = tmp_path / "home"
    _a_ledger_damaged_where_operations_are_added(home)
    result = run_kopilka(home, "deposit", "--client=Dan", "--amount=5", "--description=x")
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert result.stderr == (
        "Error: the database is damaged (database disk image is malformed); nothing was"
        " applied: it must be restored from a backup\n"
    )
    with running_server(home) as server, server.client() as admin:
        answer = admin.post(
            "/v1/deposits", json={"client": "Dan", "amount": "5", "open_account": True}
        )
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "database_damaged"


def _backed_up(path: Path, backup: Path) -> Path:
    """A backup as SQLite's backup API makes one (the `.backup` of the docs)."""
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(backup)) as copy:
        source.backup(copy)
    return backup


def _a_shell_that_deposited_for_bob(home: Path) -> subprocess.Popen[str]:
    """The embedded shell, piped, its database open: a deposit made and answered."""
    shell = subprocess.Popen(
        kopilka_command(),
        env=kopilka_env(home),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert shell.stdin is not None and shell.stdout is not None
    shell.stdin.write("deposit --client=Bob --amount=5 --description=x\n")
    shell.stdin.flush()
    assert shell.stdout.readline() == "Deposit operation was successful!\n"
    return shell


async def test_a_journal_another_process_opened_since_a_restore_is_left_to_it(
    tmp_path: Path,
) -> None:
    """A shell opened on the restored file before the store that had the old one open
    closed: the shell commits into the -wal at the path, and that store, closing, must
    not take it from under the shell (whose later deposits were refused, or lost, when
    it did)."""
    home = tmp_path / "home"
    path = a_ledger_with_one_deposit(home)
    store = SqliteStore(str(path))
    await store.open()
    try:
        backup = _backed_up(path, tmp_path / "backup.db")
        await store.apply([Deposit("Zed", 100, "after the backup", "k1")])
        with closing(sqlite3.connect(path)) as raw:  # all of the -wal in the old file
            raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
        os.replace(backup, path)
        shell = _a_shell_that_deposited_for_bob(home)
    finally:
        await store.close()
    said, errors = shell.communicate(
        "deposit --client=Cy --amount=5 --description=x\nexit\n", timeout=RUN_TIMEOUT_SECONDS
    )
    assert (shell.returncode, said, errors) == (0, "Deposit operation was successful!\n", "")
    listed = run_kopilka(home, "get")
    names = [row.split("|")[1].strip() for row in listed.stdout.splitlines()[2:]]
    assert names == ["Ann", "Bob", "Cy"], listed.stdout


async def test_a_journal_the_new_file_made_is_not_named_to_be_moved_away(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The old journal removed and the backup moved in as the docs say, but with kopilka
    still running, and a shell then opened on the new file: the log named the shell's
    journal as the replaced file's, and moving it away lost what the shell acknowledged."""
    home = tmp_path / "home"
    path = a_ledger_with_one_deposit(home)
    store = SqliteStore(str(path))
    await store.open()
    try:
        await store.apply([Deposit("Zed", 100, "before the restore", "k1")])
        backup = _backed_up(path, tmp_path / "backup.db")
        for name in (f"{path}-wal", f"{path}-shm"):
            os.unlink(name)
        os.replace(backup, path)
        shell = _a_shell_that_deposited_for_bob(home)
        with pytest.raises(Unavailable), caplog.at_level(logging.ERROR):
            await store.apply([Deposit("Ann", 5, "pay", "late")])
    finally:
        await store.close()
    said, errors = shell.communicate("exit\n", timeout=RUN_TIMEOUT_SECONDS)
    assert (shell.returncode, errors) == (0, ""), said
    told = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(told) == 2, told
    assert told[0].endswith(
        "every write is refused: stop kopilka and start it again on the database meant"
    )
    # Closed, SQLite would have deleted the journal at its name, the shell's by then.
    assert "its connections are left open as kopilka ends" in told[1]


async def test_a_read_that_meets_damage_has_the_words_a_write_is_told_too(tmp_path: Path) -> None:
    """A token read before a write is checked (the server's look at its caller) failing:
    the write was told the read's words, which say nothing of whether it was applied,
    or a fixed line that lost the reason."""
    database = str(tmp_path / "kopilka.db")
    store = SqliteStore(database)
    await store.open()
    try:
        record, _ = new_token_record("teller", None)
        await store.put_token(record)
    finally:
        await store.close()
    _damage_pages_of(database, "tokens")
    store = SqliteStore(database)
    await store.open()
    try:
        with pytest.raises(Unavailable) as refused:
            await store.get_token(record.id)
    finally:
        await store.close()
    damaged = "the database is damaged (database disk image is malformed)"
    assert refused.value.message == f"{damaged}: it must be restored from a backup"
    assert refused.value.to_a_write is not None
    assert (refused.value.to_a_write.code, refused.value.to_a_write.message) == (
        "database_damaged",
        f"{damaged}; nothing was applied: it must be restored from a backup",
    )
