"""SQLite store: one file, WAL, synchronous=FULL; a batch is one IMMEDIATE transaction.

Writes use one connection (SQLite has one writer anyway); reads use a second
one on their own thread, which WAL lets run beside a commit. Several
processes may share the file: BEGIN IMMEDIATE serialises their batches (taken
in turn through a lock file, `sqlite_lock.py`) and everything is re-read inside it.

A small batch is planned, written and committed on the event loop. Planning is
pure Python: on a thread it would hold the GIL against the busy event loop
statement by statement and take several times its own CPU time in wall time.
Its COMMIT blocks the loop for the fsync, about a millisecond, while every
caller of the batch waits for it anyway; handing it to a thread and back cost
more CPU than that (the two threads take turns at the GIL). While the disk is
slow the COMMIT goes to the writer thread, so the loop does not stall on it.
Big batches, a contended write lock and every other write run whole on the
writer thread, so the loop never waits on a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from types import NoneType
from typing import Any, NoReturn, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_fixed

from kopilka.clock import MonotonicClock, from_micros, to_micros
from kopilka.domain.model import (
    Account,
    Command,
    Operation,
    Outcome,
    Refusal,
    sandbox_ledgers,
)
from kopilka.domain.names import folded_name
from kopilka.domain.rules import (
    AccountKey,
    BatchPlan,
    FoldedKey,
    KnownClaims,
    KnownKeys,
    OperationKey,
    accounts_touched,
    claimed_keys,
    namesake_keys,
    operation_keys,
    plan_batch,
    refused_money_keys,
)
from kopilka.domain.statement import EntryMark, StatementLine
from kopilka.errors import (
    Interrupted,
    KopilkaError,
    Rejected,
    RetryableStoreError,
    Unavailable,
    UnstorableInput,
    database_refused,
    unapplied,
)
from kopilka.store import sqlite_fork_gate as fork_gate
from kopilka.store.not_a_ledger import (
    listed,
    missing_tables,
    newer_schema,
    no_ledger,
    refuse_foreign_tables,
)
from kopilka.store.refusal_rows import REFUSAL_COLUMNS, refusal_values
from kopilka.store.sqlite_checkpoint import WRITER_AUTOCHECKPOINT_PAGES, Checkpointer
from kopilka.store.sqlite_dropping import SLICE_ROWS, Emptying, ended_with_rows
from kopilka.store.sqlite_errors import (
    is_a_constraints_refusal,
    is_busy,
    is_damaged,
    is_not_a_database,
    is_read_only,
    not_cents,
)
from kopilka.store.sqlite_files import (
    OpenedFiles,
    journal_replaced,
    journal_without_its_file,
    leave_open,
    left_open_here,
    opened_here_before,
)
from kopilka.store.sqlite_jobs import run, submit
from kopilka.store.sqlite_lock import WriterLock
from kopilka.store.sqlite_migrate import (
    give_folds,
    look_inside,
    migrate,
    missing_folds,
    unknown_version,
    version_lost,
)
from kopilka.store.sqlite_owners import JOURNALS, refuse_files_of_others
from kopilka.store.sqlite_schema import SCHEMA_VERSION, tables_at
from kopilka.store.told import Told
from kopilka.tokens import TokenRecord

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Bound values per statement, safely below SQLite's SQLITE_MAX_VARIABLE_NUMBER.
_VARIABLES_MAX = 900
_BUSY_TIMEOUT_MS = 10_000
# Less free room than a page: a database that cannot be opened is said to be on a full disk.
_DISK_ROOM_MIN_BYTES = 4096
# Less than a few batches' WAL frames: a server is not ready for traffic, whose writes fail.
_READY_DISK_ROOM_MIN_BYTES = 1 << 20
# Kopilka's first tables, which every version of its schema has.
_LEDGER_TABLES = frozenset({"accounts", "operations", "entries"})


def _newer_kopilkas(version: int, names: list[str]) -> bool:
    """A schema version above this kopilka's, in a file with one of kopilka's first
    tables or none at all: a newer kopilka's, whose tables are not this one's to judge.
    Another program's file (its own tables, and a user_version of its own) is not."""
    return version > SCHEMA_VERSION and (not names or not _LEDGER_TABLES.isdisjoint(names))


def _kopilkas_tables(names: list[str]) -> bool:
    """Exactly the tables of one of kopilka's schema versions."""
    found = frozenset(names)
    return any(found == tables_at(version) for version in range(1, SCHEMA_VERSION + 1))


_FENCE_POLL_SECONDS = 0.0005  # as a waiting writer tries the lock (sqlite_lock.py)
# A BEGIN that found another program's write transaction tries again after this.
_BEGIN_POLL_SECONDS = 0.001
_PAGE_CACHE_KIB = 64 * 1024
# A statement's pages are read once, in order: a small cache of their own serves them.
_STATEMENT_PAGE_CACHE_KIB = 4 * 1024
# Batches up to this many commands are planned and written on the event loop
# (about 50 µs each on a slow machine, so the loop stalls at most ~15 ms).
INLINE_COMMANDS_MAX = 256
# While a small batch's COMMIT takes longer than this on average (a slow or busy disk),
# it goes to the writer thread, so that reads, health checks and new connections are not
# held up behind the disk. The average follows the COMMITs wherever they run, so the loop
# takes them back once the disk is fast again. One slow fsync now and then (10-25 ms
# here, beside a checkpoint) moves the average little.
LOOP_COMMIT_SECONDS_MAX = 0.010
_COMMIT_AVERAGE_WEIGHT = 1 / 8  # of the newest COMMIT, as TCP weighs its newest round trip
# Entries past the statement index's end (schema migration 8) at which a batch indexes
# them: enough that each account has several to put on its leaf at once, few enough
# that a statement reads them by id quickly and the batch that indexes them (a few ms)
# does not stand out. A batch as big as this indexes its own entries at once.
UNINDEXED_ENTRIES_MAX = 1024

# An account is its row in `accounts` (who, where, since when) and in `balances` (the
# narrow row every batch rewrites: the balance and its bounds).
_ACCOUNT_COLUMNS = "a.id, a.ledger, a.client, b.balance, b.min_balance, b.max_balance, a.created_at"
_ACCOUNTS = "accounts a JOIN balances b ON b.account_id = a.id"


def _account(row: Sequence[Any]) -> Account:
    balance, floor, cap = row[3], row[4], row[5]
    if type(balance) is not int or type(floor) is not int or type(cap) not in (int, NoneType):
        raise not_cents(f"the balance of account id {row[0]}")
    return Account(
        ledger=row[1],
        client=row[2],
        balance_cents=balance,
        min_balance_cents=floor,
        max_balance_cents=cap,
        created_at=from_micros(row[6]),
        id=row[0],
    )


def _refusal(row: Sequence[Any]) -> Refusal:
    """A refusal read as REFUSAL_COLUMNS, its time kept as microseconds."""
    *values, micros = row
    values.append(from_micros(micros))
    return Refusal(*values)


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """`callback` on `loop`, from another thread; nothing once the loop has closed (a
    process interrupted with Ctrl-C while a job of the writer's still ran), when no one
    is left to count on it."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


def connect(path: str, *, existing: bool = False) -> sqlite3.Connection:
    """A connection with the durability and integrity settings every caller needs.
    `existing`: to the file that is there, never a new one made at the path (for a
    connection made later, when the file may have been removed meanwhile)."""
    if existing:
        uri = Path(path).absolute().as_uri() + "?mode=rw"
        connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    else:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA journal_mode = WAL")
    # FULL: a commit is on disk when it returns, power loss included. Never lowered.
    connection.execute("PRAGMA synchronous = FULL")
    # Foreign keys stay off (SQLite's default), as the PostgreSQL schema has none: every
    # ledger row is written by the batch that has just read or created the accounts it
    # names, and checking each reference cost 7% of a transfer's instructions (12,300 of
    # 175,000). The references are declared and checked whole (foreign_key_check) by
    # every upgrade and by the tests; the balances keep their CHECK constraints.
    connection.execute("PRAGMA foreign_keys = OFF")
    # A bounded page cache big enough for the hot part of the indexes (default is 2 MB).
    connection.execute(f"PRAGMA cache_size = -{_PAGE_CACHE_KIB}")
    return connection


def _make_private(path: str) -> None:
    """The database and its journals readable by their owner alone, as kopilka makes them
    now: one an older kopilka made, or a restore copied in, may be open to every user. (A
    file of another user's cannot be changed, and is left as it is.)"""
    real = os.path.realpath(path)  # SQLite keeps the journal beside the file a link leads to
    for name in (path, *(real + suffix for suffix in JOURNALS)):
        with contextlib.suppress(OSError):
            mode = os.stat(name).st_mode
            if mode & 0o077:
                os.chmod(name, mode & 0o700)


def _journal_writable_as_the_database(path: str) -> None:
    """The -wal and -shm writable by their owner again once the database file is: a read
    of a read-only database leaves them behind with its mode (SQLite copies it), and
    then every write would fail on them, the database itself writable again. (A file
    of another user's cannot be changed, and is left as it is.)"""
    with contextlib.suppress(OSError):
        if not os.stat(path).st_mode & stat.S_IWUSR:
            return  # read-only on purpose: a write says so (_read_only_files)
    real = os.path.realpath(path)  # the journal is beside the file a link leads to
    for name in (f"{real}-wal", f"{real}-shm"):
        with contextlib.suppress(OSError):
            found = os.lstat(name)  # a link is not followed to a file of elsewhere
            mine = stat.S_ISREG(found.st_mode) and found.st_uid == os.geteuid()
            if mine and not found.st_mode & stat.S_IWUSR:
                os.chmod(name, stat.S_IMODE(found.st_mode) | stat.S_IRUSR | stat.S_IWUSR)


def _read_only_files(path: str, *, directory: bool = True) -> list[str]:
    """Which of the database's files (and, with `directory`, the directory they are in)
    this process may not write, as the caller may be told (no path: the server's files
    are its own)."""
    real = os.path.realpath(path)  # the journal is beside the file a link leads to
    files = (
        (path, "the database file"),
        (f"{real}-wal", "its -wal file"),
        (f"{real}-shm", "its -shm file"),
    )
    read_only = [
        said for name, said in files if os.path.exists(name) and not os.access(name, os.W_OK)
    ]
    # SQLite makes the -wal and -shm beside the database, even to read it.
    if directory and not os.access(Path(real).parent, os.W_OK):
        read_only.append("its directory")
    return read_only


class SqliteStore:
    concurrent_batches_max = 1
    # How many of an ended sandbox's rows one transaction deletes.
    sandbox_slice_rows = SLICE_ROWS

    def __init__(
        self,
        path: str | Path,
        clock: MonotonicClock | None = None,
        account_cache_max: int = 50_000,
        create_schema: bool = True,
        unindexed_entries_max: int = UNINDEXED_ENTRIES_MAX,
    ) -> None:
        """`create_schema` False: a file without kopilka's schema is refused
        (database_not_found), and left as it was, for a command that only reads."""
        self.path = str(path)
        self._create_schema = create_schema
        self._clock = clock or MonotonicClock()
        # The writer's view of recently used accounts, so a batch need not re-read them.
        # Valid only while no other connection has committed (checked per batch with
        # PRAGMA data_version); bounded, so memory stays flat however many accounts exist.
        self._account_cache: OrderedDict[AccountKey, Account] = OrderedDict()
        self._account_cache_max = account_cache_max
        self._data_version = -1
        self._loaded: dict[AccountKey, Account] = {}  # read from the database this batch
        self._unindexed_entries_max = unindexed_entries_max
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="kopilka-sqlite-writer")
        self._reader_thread = ThreadPoolExecutor(1, thread_name_prefix="kopilka-sqlite-reader")
        # Statements' pages on a thread and connection of their own: behind a queue of
        # long statements' pages, an account's balance or a statement's first page would
        # wait for every one of them.
        self._statement_thread = ThreadPoolExecutor(
            1, thread_name_prefix="kopilka-sqlite-statements"
        )
        # Jobs handed to the writer thread and not finished: only at zero may the event
        # loop use the writer connection itself.
        self._writer_jobs = 0
        # A small batch's COMMIT, in seconds, as a moving average (see LOOP_COMMIT_SECONDS_MAX).
        self._commit_seconds = 0.0
        # Why writes fail now (a full disk, a read-only file), told to the operator's log
        # once for each outage, and its end once: None while they work.
        self._failing: str | None = None
        # The damage a read or write met, told once: no commit that passes mends it (it
        # logged the damage, then "available again", over and over), and this process is
        # not ready from then on.
        self._damage: str | None = None
        self._writer: sqlite3.Connection | None = None
        self._writer_read_only = False  # opened while the files were: see _open_writer
        self._reader: sqlite3.Connection | None = None
        self._statement_reader: sqlite3.Connection | None = None
        self._checkpointer: Checkpointer | None = None
        self._writer_lock: WriterLock | None = None
        # The same lock file through a descriptor of its own: see settle_history.
        self._history_fence: WriterLock | None = None
        # Set by stop_waiting: a batch waiting for the write lock gives up, nothing applied.
        self._stop_waiting = threading.Event()
        self._constraints_told = Told()  # each constraint's refusal logged once
        # Another program's transaction (kopilka's writers take the lock file first)
        # holds SQLite's own lock: BEGIN asked again until the batch's deadline. One for
        # the store's writer thread, as made anew for each batch it would leave a few
        # objects in reference cycles (tenacity's own) for the collector.
        self._begin_deadline = 0.0
        self._beginning = Retrying(
            retry=retry_if_exception(_busy),
            wait=wait_fixed(_BEGIN_POLL_SECONDS),
            stop=self._begin_given_up,
            sleep=_sleep_stepped_out,
            reraise=True,
        )
        self._files: OpenedFiles | None = None  # a file's: none for ":memory:"
        self.schema_versions: tuple[int, int] | None = None  # once open

    # -- lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._look_before_opening()
        except OSError as error:  # a directory on the way that may not be searched
            # Said as the database's, not a traceback: a worker started again meanwhile
            # waits for it, as for a file gone, rather than stopping the server.
            raise self._cannot_open(error) from error
        try:
            self._writer_lock = WriterLock(self.path)
        except OSError as error:  # a file where the directory should be, no permission
            raise self._cannot_open(error) from error
        try:
            self._writer = await self._write(lambda: self._open_writer())
            self._reader = await self._read(lambda: connect(self.path, existing=self._a_file))
            self._statement_reader = await self._read(
                self._connect_for_statements, self._statement_thread
            )
        except BaseException:
            await self._unopen()
            raise
        self._history_fence = WriterLock(self.path)
        if self._a_file:
            self._files = OpenedFiles(self.path)
            self._checkpointer = Checkpointer(self._connect_for_checkpoints, database=self.path)
            _make_private(self.path)

    async def _look_before_opening(self) -> None:
        if self._a_file:
            refuse_files_of_others(self.path)
            # Before any connection: one to a file of no pages deletes its -wal, reads too.
            left = journal_without_its_file(self.path) or opened_here_before(self.path)
            if left is not None:
                raise Unavailable(
                    "store_unavailable", f"cannot open the database {self.path}: {left}"
                )
        if not self._create_schema and self._a_file:
            await run(self._reader_thread, self._require_a_ledger)
        elif self._a_file:
            await run(self._reader_thread, self._refuse_another_programs_file)
        if Path(self.path).is_dir():  # refused before a lock file is put beside it
            raise self._a_directory()
        directory = Path(self.path).parent
        if self._a_file and not directory.exists():
            # A mistyped directory in --db: made, it would hold a new, empty ledger that
            # every later command with the right path never sees.
            raise Unavailable(
                "store_unavailable",
                f"cannot open the database {self.path}: there is no directory {directory}"
                " (check --db, KOPILKA_DB or the db in kopilka.toml; or create it first)",
            )
        if self._a_file:
            _journal_writable_as_the_database(self.path)

    def _require_a_ledger(self) -> None:
        """Read, never written (not even its journal mode): another program's file, or
        an empty one, is refused before anything of kopilka's is put in it."""
        if Path(self.path).is_dir():
            raise self._a_directory()
        if Path(self.path).exists() and not Path(self.path).is_file():
            raise no_ledger(self.path)  # /dev/null; a pipe would hold the read up for good
        try:
            version, names = self._look_inside()
        except sqlite3.Error as error:  # not a database: said now, nothing put beside it
            raise self._cannot_open(error) from error
        if _newer_kopilkas(version, names):
            raise newer_schema(self.path, version, SCHEMA_VERSION)
        if version == 0 and _kopilkas_tables(names):
            raise self._version_lost()
        # Another program may well set a user_version of its own: the tables decide.
        if version == 0 or _LEDGER_TABLES.isdisjoint(names):
            raise no_ledger(self.path)
        if version < 0:
            raise unknown_version(self.path, version)
        self._refuse_a_damaged_ledger(version, names)

    def _refuse_another_programs_file(self) -> None:
        """A file with tables and no schema of kopilka's is another program's, and one that
        is no database at all is no ledger: refused before anything of kopilka's (a lock
        file, the WAL journal mode) touches it."""
        path = Path(self.path)
        if not path.exists() or path.is_dir():  # a new ledger; a directory is said later
            return
        if not path.is_file():  # /dev/null, a pipe: SQLite would put a journal beside it
            raise Unavailable(
                "store_unavailable",
                f"cannot open the database {self.path}: it is not a regular file",
            )
        try:
            version, names = self._look_inside()
        except sqlite3.Error as error:
            if is_not_a_database(error):
                raise self._cannot_open(error) from error
            return  # busy, say: opening it waits, or says why in one line
        if _newer_kopilkas(version, names):
            raise newer_schema(self.path, version, SCHEMA_VERSION)
        # Tables or views and no schema version, or a version (another program may set
        # one of its own, negative too) and none of kopilka's first tables, which every
        # version of its schema has.
        if version == 0 and _kopilkas_tables(names):
            raise self._version_lost()
        if (version == 0 and names) or (version != 0 and _LEDGER_TABLES.isdisjoint(names)):
            if not names:
                raise Unavailable(
                    "foreign_tables",
                    f"the database at {self.path} has a schema version kopilka did not set"
                    f" ({version}) and no tables; use an empty database",
                )
            refuse_foreign_tables(self.path, tuple(names), names)
        if version < 0:  # kopilka's tables, and a version no kopilka sets
            raise unknown_version(self.path, version)
        if version > 0:
            self._refuse_a_damaged_ledger(version, names)

    def _look_inside(self) -> tuple[int, list[str]]:
        """The file's user_version and the names of its tables and views, read only."""
        return self._read_only(look_inside)

    def _version_lost(self) -> Unavailable:
        return self._read_only(lambda connection: version_lost(self.path, connection))

    def _read_only(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """`read` on a connection of its own that cannot write the file, nor make it."""
        uri = Path(self.path).absolute().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            return read(connection)

    def _refuse_a_damaged_ledger(self, version: int, names: list[str]) -> None:
        """Every table of the ledger's schema version there (a newer one's is refused
        before): one dropped by hand would pass for up to date and fail every write."""
        missing = sorted(tables_at(version).difference(names))
        if missing:
            raise missing_tables(self.path, missing)

    @property
    def _a_file(self) -> bool:
        return self.path != ":memory:"

    async def _unopen(self) -> None:
        """The lock, and the connections opened after it, let go: opening failed."""
        for connection, thread in (
            (self._writer, self._writer_thread),
            (self._reader, self._reader_thread),
        ):
            if connection is not None:
                await run(thread, connection.close)
        self._writer = self._reader = None
        if self._writer_lock is not None:
            self._writer_lock.close()
            self._writer_lock = None

    def _open_writer(self) -> sqlite3.Connection:
        # A ledger required, not made (a worker of a server, which opened it first): to
        # the file just looked at, never a new, empty one made at the path should that
        # file have gone since; the connections after the writer's, to the file it opened.
        existing = not self._create_schema and self._a_file
        try:
            connection = connect(self.path, existing=existing)
        except sqlite3.Error as error:
            if existing and not Path(self.path).exists():
                raise no_ledger(self.path) from error
            raise self._cannot_open(error) from error
        try:
            self.schema_versions = (migrate(connection), SCHEMA_VERSION)
        except BaseException as error:
            connection.close()
            if isinstance(error, sqlite3.Error):  # locked past the busy timeout, read-only
                raise self._cannot_open(error) from error
            raise
        # Checkpoints run on their own thread; the writer's is only the backstop.
        connection.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}")
        # SQLite opens a file it may not write read-only, and this process's connections
        # to it share that (its -shm mapped read-only) until the last of them closes:
        # writable again, the file is still refused every write until kopilka restarts.
        # Not so its directory: the -wal and -shm there already (or it would not have
        # opened), the files are written all the same.
        read_only = _read_only_files(self.path, directory=False) if self._a_file else []
        if read_only:
            self._writer_read_only = True
            logger.warning(
                "the database %s was opened read-only (%s %s): writes are refused until"
                " kopilka is started again with its files writable",
                self.path,
                listed(read_only),
                "is" if len(read_only) == 1 else "are",
            )
        return connection

    async def close(self) -> None:
        end: Callable[[sqlite3.Connection], None] = sqlite3.Connection.close
        if journal_replaced(self._files):
            # Commits were refused since; another process's go on in the journal it made.
            assert self._files is not None
            end = leave_open
            left_open_here(self._files)
            logger.error(
                "the database's journal (%s-wal, -shm) was replaced while in use: its"
                " connections are left open as kopilka ends, for closing them would"
                " checkpoint the journal as it was into the database",
                self.path,
            )
        if self._checkpointer is not None:
            # First, so that the writer closes last and leaves the database checkpointed.
            await run(self._reader_thread, partial(self._checkpointer.close, end), gate=False)
            self._checkpointer = None
        if self._writer is not None:
            await self._write(partial(end, self._writer))
        for connection, thread in (
            (self._reader, self._reader_thread),
            (self._statement_reader, self._statement_thread),
        ):
            if connection is not None:
                await self._read(partial(end, connection), thread)
        self._writer = self._reader = self._statement_reader = None
        for thread in (self._writer_thread, self._reader_thread, self._statement_thread):
            thread.shutdown(wait=True)
        for lock in (self._writer_lock, self._history_fence):
            if lock is not None:
                lock.close()
        self._writer_lock = self._history_fence = None

    async def _write(self, work: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._submit_write(work))

    def _submit_write(self, work: Callable[[], T], *, gate: bool = True) -> Future[T]:
        loop = asyncio.get_running_loop()
        job = submit(self._writer_thread, work, gate=gate)
        self._writer_jobs += 1
        # Counted down when the job has really finished, even if its caller was cancelled.
        job.add_done_callback(lambda _: _call_soon(loop, self._writer_job_done))
        return job

    def _writer_job_done(self) -> None:
        self._writer_jobs -= 1

    async def _read(self, work: Callable[[], T], thread: ThreadPoolExecutor | None = None) -> T:
        """`work` on the reader thread (or `thread`): a statement's pages have their own."""
        try:
            return await run(thread or self._reader_thread, work)
        except sqlite3.Error as error:  # a damaged file: one line, not a traceback
            failure = self._failed(error, reading=True)
            failure.to_a_write = self._failed(error)  # the outage logged once all the same
            raise failure from error

    async def damage(self) -> str | None:
        """SQLite's integrity_check of the whole file (`kopilka init`): its first finding,
        or None. Not at every open: it reads every page, and every index against its
        table (quick_check does not: a restore beside a stale -wal that lost index rows
        passed it, and a retried key then applied twice)."""

        def check() -> str | None:
            try:
                (first,) = self._read_db.execute("PRAGMA integrity_check(1)").fetchone()
            except sqlite3.DatabaseError as error:
                if not is_damaged(error):
                    raise  # busy, out of memory, an I/O error: said as any read's failure
                return str(error)
            if first == "ok":
                return None
            # "*** in database main ***" on a line of its own, then the finding.
            return " ".join(str(first).replace("*** in database main ***", "").split())

        return await self._read(check)

    async def give_missing_folds(self) -> int:
        """`kopilka init`: the folds sqlite_migrate.missing_folds finds, written taking
        turns with the other processes' writers; a ledger missing none is only read (no
        wait for the write lock beside a server's long transaction)."""
        missing = await self._read(lambda: missing_folds(self._read_db))
        if not missing:
            return 0
        return await self._write_transaction(lambda: give_folds(self._db, missing))

    def _connect_for_checkpoints(self) -> sqlite3.Connection:
        """Made at the first checkpoint: to the file opened, not to an empty one made at
        the path should that file have been removed since (the ledger's path then held an
        empty file, a worker started again took for one), nor to that file emptied since:
        SQLite deletes the -wal beside a file of no pages as it opens it, this store's
        commits with it."""
        if journal_without_its_file(self.path) is not None:  # the writer's checkpoint is left
            raise sqlite3.OperationalError(
                "the database file is gone or empty beside its journal, which opening it would"
                " delete: not opened"
            )
        return connect(self.path, existing=True)

    def _connect_for_statements(self) -> sqlite3.Connection:
        connection = connect(self.path, existing=self._a_file)
        connection.execute(f"PRAGMA cache_size = -{_STATEMENT_PAGE_CACHE_KIB}")
        return connection

    @property
    def commit_seconds(self) -> float:
        """A small batch's COMMIT (mostly its fsync), in seconds, as a moving average."""
        return self._commit_seconds

    @property
    def _db(self) -> sqlite3.Connection:
        assert self._writer is not None, "store is not open"
        return self._writer

    @property
    def _lock(self) -> WriterLock:
        assert self._writer_lock is not None, "store is not open"
        return self._writer_lock

    @property
    def _read_db(self) -> sqlite3.Connection:
        assert self._reader is not None, "store is not open"
        return self._reader

    # -- the batch ------------------------------------------------------------

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        if self._writer_jobs == 0 and len(commands) <= INLINE_COMMANDS_MAX:
            holder = fork_gate.enter()  # a fork waits for the transaction, BEGIN to COMMIT
            try:
                plan = self._write_inline(commands)
            except BaseException:
                fork_gate.leave()
                raise
            if plan is None:
                fork_gate.leave()
            elif self._commit_seconds <= LOOP_COMMIT_SECONDS_MAX:
                try:
                    return self._timed_commit(plan)
                finally:
                    fork_gate.leave()
            else:
                # Submitted with no await since the write above, so the COMMIT is the next
                # thing the (idle) thread does with the connection; shielded, so that a
                # cancelled caller cannot leave the transaction open.
                job = self._submit_write(lambda: self._commit_and_leave(plan, holder), gate=False)
                return await asyncio.shield(asyncio.wrap_future(job))
        return await self._write(lambda: self._apply(commands))

    def _commit_and_leave(self, plan: BatchPlan, holder: int) -> list[Outcome]:
        """The inline transaction's COMMIT, on the writer thread, and the gate let go
        that `holder` (the event loop's thread) took."""
        try:
            return self._timed_commit(plan)
        finally:
            fork_gate.leave(holder)

    def _timed_commit(self, plan: BatchPlan) -> list[Outcome]:
        started = time.monotonic()
        outcomes = self._commit(plan)
        took = time.monotonic() - started
        self._commit_seconds += (took - self._commit_seconds) * _COMMIT_AVERAGE_WEIGHT
        return outcomes

    def _write_inline(self, commands: Sequence[Command]) -> BatchPlan | None:
        """BEGIN, plan and write on the event loop, leaving the COMMIT to the caller.

        None, with nothing done, when the write lock is taken (the thread waits for it
        instead), or a key was used before or a constraint of the database's own refused
        the batch (the thread redoes it reading keys).
        """
        if not self._lock.try_acquire():
            return None
        db = self._db
        db.execute("PRAGMA busy_timeout = 0")
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            self._lock.release()
            return None
        except BaseException as error:  # a file damaged (not a database): said, let go
            self._abandon(error)
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        try:
            return self._plan_and_write(commands, check_keys=False)
        except _KeyAlreadyUsed:
            self._roll_back()
            return None
        except sqlite3.IntegrityError as error:
            if not is_a_constraints_refusal(error):
                self._abandon(error)
            self._roll_back()  # the thread runs it again, reading its keys (see _apply)
            return None
        except BaseException as error:
            self._abandon(error)

    def _apply(self, commands: Sequence[Command]) -> list[Outcome]:
        try:
            return self._apply_once(commands, check_keys=False)
        except (_KeyAlreadyUsed, UnstorableInput):
            # Rare: a retried request. Run the batch again, reading its keys first. A
            # constraint of the database's own is met before a key's uniqueness (a
            # trigger before an insert): a request applied before under its key, resent,
            # is refused by it as applied twice, where it is to be answered as it was.
            return self._apply_once(commands, check_keys=True)

    def _apply_once(self, commands: Sequence[Command], *, check_keys: bool) -> list[Outcome]:
        self._begin()
        try:
            plan = self._plan_and_write(commands, check_keys=check_keys)
        except BaseException as error:
            self._abandon(error)
        return self._commit(plan)

    def _plan_and_write(self, commands: Sequence[Command], *, check_keys: bool) -> BatchPlan:
        """Inside the open transaction: read what the batch needs, apply the rules, write."""
        self._check_cache()
        touched = accounts_touched(commands)
        accounts = self._accounts_for(touched)
        folded = namesake_keys(touched, accounts)
        namesakes = self._load_namesakes(folded) if folded else None
        known: KnownKeys = {}
        claims = claimed_keys(commands)
        # A claimed key that names a money operation is taken (claims are few, so their
        # keys are always read); a money key that names a claim is found by the write.
        keys = operation_keys(commands) | claims if check_keys else claims
        if keys:
            known.update(self._load_refusals(keys))
            known.update(self._load_operations(keys))
        known_claims = self._load_claims(keys) if keys else None
        sandboxes = sandbox_ledgers(commands)
        closed = self._closed_sandboxes(sandboxes) if sandboxes else ()
        # The time is taken under the write lock, so it orders batches across processes.
        now = self._clock.now()
        plan = plan_batch(commands, accounts, known, now, known_claims, closed, namesakes)
        if not check_keys and self._refusal_may_be_a_retry(commands, plan):
            raise _KeyAlreadyUsed
        self._write_plan(plan)
        return plan

    def _closed_sandboxes(self, sandboxes: set[str]) -> set[str]:
        """Of these sandbox ledgers, the ones not open: read under the write lock, which
        a drop takes too, so none can close before this batch commits."""
        marks = ", ".join("?" * len(sandboxes))
        open_now = self._db.execute(
            f"SELECT ledger FROM sandboxes WHERE ledger IN ({marks})",  # marks only
            tuple(sandboxes),
        )
        return sandboxes - {row[0] for row in open_now}

    def forget_in_child(self) -> None:
        for lock in (self._writer_lock, self._history_fence):
            if lock is not None:
                lock.forget_in_child()

    def stop_waiting(self) -> None:
        self._stop_waiting.set()

    def wait_again(self) -> None:
        self._stop_waiting.clear()

    def _begin(self) -> None:
        """On the writer thread: wait for the other processes' batches, then BEGIN.

        A batch that waited the whole busy timeout for the write lock is not tried again:
        other writers kept it (a queue of other processes' batches, or another program's
        transaction left open, a frozen process), each try would wait as long, and eight
        tries kept a caller over a minute, past its client's timeout, to be applied after
        that had given up. It is refused at once, nothing applied, as PostgreSQL refuses
        one past its lock_timeout. It waits here,
        not in SQLite's busy handler, which nothing stops: a batch its caller gave up on
        (Ctrl-C, `stop_waiting`) stops waiting, nothing applied."""
        self._begin_deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        with fork_gate.stepped_out():  # no transaction is open yet
            acquired = self._lock.acquire(_BUSY_TIMEOUT_MS / 1000, stop=self._stop_waiting)
        if not acquired:
            if self._stop_waiting.is_set():
                raise _interrupted()
            raise self._waited_too_long()
        db = self._db
        try:
            db.execute("PRAGMA busy_timeout = 0")
            try:
                self._beginning(db.execute, "BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                if not is_busy(error):
                    raise
                if self._stop_waiting.is_set():
                    raise _interrupted() from None
                raise self._held_too_long() from error
        except KopilkaError:
            self._roll_back()  # lets go of the write lock (no transaction is open)
            raise
        except BaseException as error:
            self._abandon(error)
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")

    def _begin_given_up(self, state: RetryCallState) -> bool:
        return self._stop_waiting.is_set() or time.monotonic() >= self._begin_deadline

    def _waited_too_long(self) -> Unavailable:
        """The lock file's wait timed out: other writers of kopilka's had it in turn all
        that time (one-shot commands, other workers), or one held it (a frozen process),
        not necessarily another program."""
        seconds = f"{_BUSY_TIMEOUT_MS / 1000:g}"
        logger.warning(
            "the database %s: a write waited over %s s for its turn at the write lock",
            self.path,
            seconds,
        )
        return unapplied(
            "store_busy",
            f"the database is busy: this write waited over {seconds} s for its turn behind"
            " other writers; nothing was changed",
        )

    def _held_too_long(self) -> Unavailable:
        """With the lock file taken, SQLite's own lock stayed busy: a program that does
        not take the lock file (another program, a transaction left open) holds it."""
        seconds = f"{_BUSY_TIMEOUT_MS / 1000:g}"
        logger.warning(
            "the database %s: its write lock has been held for over %s s", self.path, seconds
        )
        return unapplied(
            "store_busy",
            f"the database is busy: another program has held its write lock for over"
            f" {seconds} s; nothing was changed",
        )

    def _commit(self, plan: BatchPlan) -> list[Outcome]:
        try:
            self._refuse_if_gone()
            self._db.execute("COMMIT")
        except BaseException as error:
            self._abandon(error)
        self._lock.release()
        if self._failing is not None:
            self._failing = None
            logger.warning("the database %s is available again", self.path)
        if self._checkpointer is not None:
            self._checkpointer.after_commit()
        self._remember(plan)
        return plan.outcomes

    def _abandon(self, error: BaseException) -> NoReturn:
        """Roll the batch back and re-raise; a busy or locked database may be retried, and
        any other SQLite error (a damaged file, a full disk) fails the batch in one line."""
        try:
            self._roll_back()
            if isinstance(error, sqlite3.Error) and is_a_constraints_refusal(error):
                # The batch's data, not the database, at fault: a constraint no rule of
                # kopilka's knows (another program's CHECK or trigger) refused it. The
                # engine applies each request alone, and only the one that breaks it is
                # refused: no outage, no "try again", for it would fail again.
                raise UnstorableInput(self._refused_by_a_constraint(error)) from error
            if isinstance(error, sqlite3.Error):
                if is_busy(error):
                    raise RetryableStoreError(str(error)) from error
                if is_damaged(error):
                    # Read beside a file put in its place (a copy taken mid-checkpoint, its
                    # pages torn): the replacement is the cause to tell, not damage.
                    self._refuse_if_gone()
                raise self._failed(error) from error
            raise error
        finally:
            del error  # raised from this frame, it would hold it, and the plan, in a cycle

    def _refused_by_a_constraint(self, error: sqlite3.Error) -> Rejected:
        reason = str(error)
        if self._constraints_told.first_time(reason):  # once a reason: no log flood
            logger.warning("the database %s refused a write: %s", self.path, reason)
        return database_refused(reason)

    def _a_directory(self) -> Unavailable:
        return Unavailable(
            "store_unavailable", f"cannot open the database {self.path}: it is a directory"
        )

    def _cannot_open(self, error: Exception) -> Unavailable:
        reason = str(error)
        # A truncated file, say; not a file of something else (NOTADB), no ledger at all.
        if isinstance(error, sqlite3.Error) and is_damaged(error) and not is_not_a_database(error):
            return Unavailable(
                "database_damaged",
                f"the database {self.path} is damaged ({reason}): restore it from a backup"
                " (docs/operations.md, Backups)",
            )
        if isinstance(error, OSError) and error.errno == errno.EROFS:
            # Met making the writers' lock file beside it: not a permission to change.
            reason = "the file system it is on is mounted read-only"
        elif isinstance(error, sqlite3.Error) and is_read_only(error):
            reason = self._read_only_reason(error)
        elif isinstance(error, sqlite3.Error) and _disk_full(self.path):
            # SQLite cannot make the shared-memory file a WAL database is read through, and
            # says "disk I/O error", which sends one looking for a failing disk.
            reason = f"{reason}: the disk it is on is full"
        return Unavailable("store_unavailable", f"cannot open the database {self.path}: {reason}")

    def _failed(self, error: sqlite3.Error, *, reading: bool = False) -> Unavailable:
        """For the caller, without the file's path (a client token's caller has no business
        with the server's files); for the operator's log, with it, once an outage (a full
        disk, a damaged file, a read-only one), or a server would fail in silence. A
        write is told nothing of it was applied; a read, which applies nothing, is not."""
        reason = str(error)
        advice = [] if reading else ["nothing was applied"]
        if is_damaged(error):  # no retry mends it: a restore does
            if self._damage is None:
                self._damage = reason
                logger.warning(
                    "the database %s is damaged (%s): stop kopilka and restore it from a"
                    " backup (docs/operations.md, Backups)",
                    self.path,
                    reason,
                )
            ending = "" if reading else "; nothing was applied"
            return Unavailable(
                "database_damaged",
                f"the database is damaged ({reason}){ending}: it must be restored from a backup",
            )
        if is_read_only(error):  # so until someone changes a file's mode: no "try again"
            reason = self._read_only_reason(error)
        else:
            advice.append("try again")
        if self._new_outage(reason):
            logger.warning("the database %s failed: %s", self.path, reason)
        ending = f"; {', '.join(advice)}" if advice else ""
        return Unavailable("store_unavailable", f"the database failed ({reason}){ending}")

    def _new_outage(self, reason: str) -> bool:
        """Whether the operator's log has yet to hear of this failure: it is said once an
        outage, not once a request."""
        if reason == self._failing:
            return False
        self._failing = reason
        return True

    def _read_only_reason(self, error: sqlite3.Error) -> str:
        """SQLite's "attempt to write a readonly database", with the file to blame."""
        read_only = _read_only_files(self.path)
        if not read_only:
            return str(error)
        verb = "is" if len(read_only) == 1 else "are"
        return f"{error}: {listed(read_only)} {verb} read-only"

    def _refuse_if_gone(self, *, writing: bool = True) -> None:
        """Unavailable when the database's path no longer names the file opened (a commit
        there would go to a file no later open finds), or cannot be looked at."""
        if self._files is None:
            return
        try:
            gone = self._files.gone()
        except OSError as error:
            raise self._file_unknown(error, writing=writing) from None
        if gone is not None:
            raise self._file_gone(gone, writing=writing)

    def _file_unknown(self, error: OSError, *, writing: bool) -> Unavailable:
        """The path could not be looked at (a directory's mode changed, a disk error), so
        whether it still names the file opened is unknown: told as _file_gone is."""
        reason = f"{self.path} cannot be looked at ({error.strerror or error})"
        if self._new_outage(reason):
            logger.error("the database file %s; writes are refused until it can be", reason)
        said = "the database's file cannot be looked at"
        return Unavailable(
            "store_unavailable", f"{said}; nothing was applied, try again" if writing else said
        )

    def _file_gone(self, path: str, *, writing: bool = True) -> Unavailable:
        """For the caller, without the path; for the operator's log, with it, once. A
        readiness check is told no word of writes applied."""
        reason = f"{path} was removed or replaced while in use"
        if self._new_outage(reason):
            advice = "stop kopilka and start it again on the database meant"
            left = self._files.journal_left_behind() if self._files is not None else []
            if left:
                # A file put at the path would read them as its own journal at its next
                # open, another database's pages. Not moved here: a program that opened
                # the new file may be writing into them (the inodes tell, when acted on).
                named = " and ".join(f"{name} (inode {inode})" for name, inode in left)
                advice = (
                    f"stop kopilka; then, once no program has them open, move away {named},"
                    " which belong to the file removed or replaced (keep them if that"
                    " file's last operations are wanted), and start kopilka again on the"
                    " database meant"
                )
            logger.error("the database file %s; every write is refused: %s", reason, advice)
        said = "the database's file was removed or replaced while in use"
        return Unavailable("store_unavailable", f"{said}; nothing was applied" if writing else said)

    def _roll_back(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        finally:
            # The plan changed cached accounts in place: they are no longer the truth,
            # whether or not the ROLLBACK itself failed.
            self._account_cache.clear()
            self._lock.release()

    def _refusal_may_be_a_retry(self, commands: Sequence[Command], plan: BatchPlan) -> bool:
        """Whether a key the plan refuses was used before (rules.refused_money_keys)."""
        for ledger, key in refused_money_keys(commands, plan):
            found = self._db.execute(
                "SELECT 1 FROM operations WHERE ledger = ? AND idempotency_key = ?"
                " UNION ALL SELECT 1 FROM refusals WHERE ledger = ? AND idempotency_key = ?"
                " UNION ALL SELECT 1 FROM batch_requests WHERE ledger = ? AND idempotency_key = ?",
                (ledger, key, ledger, key, ledger, key),
            ).fetchone()
            if found is not None:
                return True
        return False

    def _check_cache(self) -> None:
        """Forget cached accounts if another connection (process) committed since our last,
        and take no time before the last operation it wrote: its clock may be ahead of
        ours, and a statement orders an account's entries by time."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._account_cache.clear()
            self._data_version = version
            # Writers take turns, each after the last: the newest id has the latest time.
            last = self._db.execute(
                "SELECT created_at FROM operations ORDER BY id DESC LIMIT 1"
            ).fetchone()
            if last is not None:
                self._clock.not_before(from_micros(last[0]))

    def _accounts_for(self, keys: set[AccountKey]) -> dict[AccountKey, Account]:
        """The batch's accounts: cached ones as they are, the rest read (and kept aside)."""
        cache = self._account_cache
        accounts = {}
        for key in keys:
            account = cache.get(key)
            if account is not None:
                cache.move_to_end(key)  # least recently used first out
                accounts[key] = account
        self._loaded = {}
        if len(accounts) < len(keys):
            self._loaded = self._load_accounts(keys - accounts.keys())
            accounts.update(self._loaded)
        return accounts

    def _remember(self, plan: BatchPlan) -> None:
        """After a commit: cache what was read or created. Cached accounts were changed
        in place by the plan, so they are current already. The least recently used go."""
        cache = self._account_cache
        cache.update(self._loaded)
        for account in plan.new_accounts:
            cache[(account.ledger, account.client)] = account
        self._loaded = {}
        while len(cache) > self._account_cache_max:
            cache.popitem(last=False)

    def _load_accounts(self, keys: set[AccountKey]) -> dict[AccountKey, Account]:
        by_ledger: dict[str, list[str]] = {}
        for ledger, client in keys:
            by_ledger.setdefault(ledger, []).append(client)
        accounts: dict[AccountKey, Account] = {}
        for ledger, clients in by_ledger.items():
            for chunk in _chunks(clients, _VARIABLES_MAX):
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT {_ACCOUNT_COLUMNS} FROM {_ACCOUNTS} "
                    f"WHERE a.ledger = ? AND a.client IN ({marks})",
                    (ledger, *chunk),
                )
                for row in rows:
                    accounts[(ledger, row[2])] = _account(row)
        return accounts

    def _a_refused_key_from(self, operation_id: int) -> bool:
        """Whether an operation from this id on has the key of a kept refusal, or of a
        claim (an account write's or a whole batch's)."""
        found = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM operations o JOIN refusals r"
            " ON r.ledger = o.ledger AND r.idempotency_key = o.idempotency_key"
            " WHERE o.id >= ?) OR EXISTS (SELECT 1 FROM operations o JOIN batch_requests b"
            " ON b.ledger = o.ledger AND b.idempotency_key = o.idempotency_key"
            " WHERE o.id >= ?)",
            (operation_id, operation_id),
        ).fetchone()[0]
        return bool(found)

    def _rows_by_key(self, select: str, keys: set[OperationKey]) -> Iterator[tuple[str, Any]]:
        """(ledger, row) of `select`, whose WHERE ends in `ledger = ? AND key IN ({marks})`,
        for the given (ledger, key) pairs: a statement per ledger and chunk of keys."""
        by_ledger: dict[str, list[str]] = {}
        for ledger, key in keys:
            by_ledger.setdefault(ledger, []).append(key)
        for ledger, idempotency_keys in by_ledger.items():
            for chunk in _chunks(idempotency_keys, _VARIABLES_MAX):
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(select.format(marks=marks), (ledger, *chunk)):
                    yield ledger, row

    def _load_refusals(self, keys: set[OperationKey]) -> KnownKeys:
        rows = self._rows_by_key(
            f"SELECT {REFUSAL_COLUMNS} FROM refusals"
            " WHERE ledger = ? AND idempotency_key IN ({marks})",
            keys,
        )
        return {(ledger, row[1]): _refusal(row) for ledger, row in rows}

    def _load_namesakes(self, folded: set[FoldedKey]) -> dict[FoldedKey, str]:
        rows = self._rows_by_key(
            "SELECT folded, client FROM accounts WHERE ledger = ? AND folded IN ({marks})",
            folded,
        )
        return {(ledger, row[0]): row[1] for ledger, row in rows}

    def _load_claims(self, keys: set[OperationKey]) -> KnownClaims:
        rows = self._rows_by_key(
            "SELECT idempotency_key, digest FROM batch_requests"
            " WHERE ledger = ? AND idempotency_key IN ({marks})",
            keys,
        )
        return {(ledger, row[0]): row[1] for ledger, row in rows}

    def _load_operations(self, keys: set[OperationKey]) -> dict[OperationKey, Operation]:
        rows = list(
            self._rows_by_key(
                "SELECT o.id, o.idempotency_key, o.kind, o.amount, d.client, c.client,"
                " o.description, o.created_at, o.debit_account_id, o.credit_account_id"
                " FROM operations o"
                " LEFT JOIN accounts d ON d.id = o.debit_account_id"
                " LEFT JOIN accounts c ON c.id = o.credit_account_id"
                " WHERE o.ledger = ? AND o.idempotency_key IN ({marks})",
                keys,
            )
        )
        balances = self._balances_after([row for _, row in rows])
        return {
            (ledger, row[1]): Operation(
                ledger=ledger,
                idempotency_key=row[1],
                kind=row[2],
                amount_cents=row[3],
                debit_client=row[4],
                credit_client=row[5],
                description=row[6],
                created_at=from_micros(row[7]),
                debit_balance_after_cents=balances.get((row[0], True)),
                credit_balance_after_cents=balances.get((row[0], False)),
                id=row[0],
            )
            for ledger, row in rows
        }

    def _balances_after(self, operations: list[Sequence[Any]]) -> dict[tuple[int, bool], int]:
        """(operation id, debit side) -> the balance it left, for these operations (rows of
        _load_operations). Read in bulk, not one lookup each: one of a batch found its entry
        among every entry its account has at the batch's time, and a retried batch of
        10,000 transfers from one account took seconds. From the statement index, the
        entries of the operations' accounts at each of their times; from past its end,
        the last few batches' entries of these operations."""
        wanted = {row[0] for row in operations}
        accounts_at: dict[int, set[int]] = {}
        for row in operations:
            accounts_at.setdefault(row[7], set()).update(a for a in row[8:10] if a is not None)
        found: dict[tuple[int, bool], int] = {}
        for created_at, accounts in accounts_at.items():
            for chunk in _chunks(sorted(accounts), _VARIABLES_MAX):
                marks = ",".join("?" * len(chunk))
                found.update(
                    self._entry_balances(
                        "SELECT e.operation_id, e.amount < 0, e.balance_after"
                        " FROM statement_index s JOIN entries e ON e.id = s.entry_id"
                        f" WHERE s.created_at = ? AND s.account_id IN ({marks})",  # marks only
                        (created_at, *chunk),
                        wanted,
                    )
                )
        for chunk in _chunks(sorted(wanted), _VARIABLES_MAX):
            marks = ",".join("?" * len(chunk))
            found.update(
                self._entry_balances(
                    "SELECT operation_id, amount < 0, balance_after FROM entries"
                    f" WHERE {_UNINDEXED} AND operation_id IN ({marks})",  # marks only
                    chunk,
                    wanted,
                )
            )
        return found

    def _entry_balances(
        self, select: str, parameters: Sequence[Any], wanted: set[int]
    ) -> dict[tuple[int, bool], int]:
        balances = {}
        for operation_id, debit, balance_after in self._db.execute(select, parameters):
            if operation_id in wanted:
                if type(balance_after) is not int:  # an answer given again is one of cents
                    raise not_cents(f"an entry of operation id {operation_id}")
                balances[(operation_id, bool(debit))] = balance_after
        return balances

    def _write_plan(self, plan: BatchPlan) -> None:
        db = self._db
        if plan.new_accounts:
            next_id = db.execute(_NEXT_ID.format(table="accounts"), ("accounts",)).fetchone()[0]
            for offset, account in enumerate(plan.new_accounts):
                account.id = next_id + offset
            db.executemany(
                "INSERT INTO accounts (id, ledger, client, folded, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (a.id, a.ledger, a.client, folded_name(a.client), to_micros(a.created_at))
                    for a in plan.new_accounts
                ],
            )
            db.executemany(
                "INSERT INTO balances (account_id, balance, min_balance, max_balance)"
                " VALUES (?, ?, ?, ?)",
                [
                    (a.id, a.balance_cents, a.min_balance_cents, a.max_balance_cents)
                    for a in plan.new_accounts
                ],
            )
        if plan.operations:
            next_id = db.execute(_NEXT_ID.format(table="operations"), ("operations",)).fetchone()[0]
            micros = to_micros(plan.operations[0].created_at)  # one time per batch
            # Both row lists in one pass: this loop runs once per operation of every batch.
            operation_rows = []
            entry_rows = []
            sides = zip(plan.operations, plan.sides, strict=True)
            for operation_id, (o, (debit, credit)) in enumerate(sides, start=next_id):
                o.id = operation_id
                debit_id = credit_id = None
                if debit is not None:
                    debit_id = debit.id
                    entry_rows.append(
                        (
                            operation_id,
                            debit_id,
                            -o.amount_cents,
                            o.debit_balance_after_cents,
                            micros,
                        )
                    )
                if credit is not None:
                    credit_id = credit.id
                    entry_rows.append(
                        (
                            operation_id,
                            credit_id,
                            o.amount_cents,
                            o.credit_balance_after_cents,
                            micros,
                        )
                    )
                operation_rows.append(
                    (
                        operation_id,
                        o.ledger,
                        o.idempotency_key,
                        o.kind,
                        o.amount_cents,
                        debit_id,
                        credit_id,
                        o.description,
                        micros,
                    )
                )
            # Keys are checked by the unique index itself, and against kept refusals by
            # one join over the new rows: either means a retried request, and the batch
            # is redone with its keys read first.
            inserted = db.executemany(
                "INSERT INTO operations (id, ledger, idempotency_key, kind, amount,"
                " debit_account_id, credit_account_id, description, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (ledger, idempotency_key) DO NOTHING",
                operation_rows,
            ).rowcount
            if inserted != len(plan.operations) or self._a_refused_key_from(next_id):
                raise _KeyAlreadyUsed
            self._write_entries(entry_rows)
        if plan.refusals:
            db.executemany(
                f"INSERT INTO refusals ({REFUSAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [refusal_values(r, to_micros(r.created_at)) for r in plan.refusals],
            )
        if plan.claims:
            micros = to_micros(self._clock.now())
            db.executemany(
                "INSERT INTO batch_requests (ledger, idempotency_key, digest, created_at)"
                " VALUES (?, ?, ?, ?)",
                [(c.ledger, c.idempotency_key, c.digest, micros) for c in plan.claims],
            )
        if plan.changed_accounts and plan.limits_changed:
            db.executemany(
                "UPDATE balances SET balance = ?, min_balance = ?, max_balance = ?"
                " WHERE account_id = ?",
                [
                    (a.balance_cents, a.min_balance_cents, a.max_balance_cents, a.id)
                    for a in plan.changed_accounts
                ],
            )
        elif plan.changed_accounts:
            db.executemany(
                "UPDATE balances SET balance = ? WHERE account_id = ?",
                [(a.balance_cents, a.id) for a in plan.changed_accounts],
            )
        plan.resolve_ids()

    def _write_entries(self, rows: list[tuple[int, int, int, int | None, int]]) -> None:
        """A batch's entries, past the statement index's end; once enough are, indexed
        all at once (see migration 8)."""
        db = self._db
        # The index's end is never past the last entry (a trigger of migration 8 sees to
        # it when the newest are deleted), so the new ones are past it.
        last_id, indexed_upto, last_given = db.execute(
            "SELECT (SELECT coalesce(max(id), 0) FROM entries),"
            " (SELECT entry_id FROM statement_index_upto),"
            " (SELECT last_id FROM ids_given WHERE name = 'entries')"
        ).fetchone()
        if last_given is None or last_given <= last_id:  # SQLite's next ids are new
            db.executemany(
                "INSERT INTO entries (operation_id, account_id, amount, balance_after,"
                " created_at) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        else:  # the newest went with a dropped ledger: their ids are not given again
            db.executemany(
                "INSERT INTO entries (id, operation_id, account_id, amount, balance_after,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(entry_id, *row) for entry_id, row in enumerate(rows, start=last_given + 1)],
            )
        if last_id + len(rows) - indexed_upto >= self._unindexed_entries_max:
            db.execute(
                "INSERT INTO statement_index (account_id, created_at, entry_id)"
                " SELECT account_id, created_at, id FROM entries WHERE id > ?",
                (indexed_upto,),
            )
            db.execute("UPDATE statement_index_upto SET entry_id = (SELECT max(id) FROM entries)")

    # -- reads ----------------------------------------------------------------

    async def ping(self) -> None:
        # A file gone refuses every write until a restart: not ready, though reads answer.
        self._refuse_if_gone(writing=False)
        if self._writer_read_only:  # so, too, a file opened read-only (_open_writer)
            raise Unavailable(
                "store_unavailable",
                "the database was opened read-only: writes are refused until kopilka is"
                " started again with its files writable",
            )
        if self._damage is not None:
            raise Unavailable(
                "database_damaged",
                f"the database is damaged ({self._damage}): it must be restored from a backup",
            )
        # Reads answer on a full disk, and every write fails: no traffic while it is
        # nearly full. Said as it is: an operator who finds some room left is not misled.
        if _disk_full(self.path, _READY_DISK_ROOM_MIN_BYTES):
            raise Unavailable(
                "store_unavailable",
                f"the disk the database is on has less than {_READY_DISK_ROOM_MIN_BYTES >> 20} MiB"
                " free: writes fail or soon will",
            )
        await self._read(lambda: self._read_db.execute("SELECT 1 FROM accounts LIMIT 1").fetchall())

    async def get_account(self, ledger: str, client: str) -> Account | None:
        def read() -> Account | None:
            row = self._read_db.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM {_ACCOUNTS} WHERE a.ledger = ? AND a.client = ?",
                (ledger, client),
            ).fetchone()
            return None if row is None else _account(row)

        return await self._read(read)

    async def namesake(self, ledger: str, client: str) -> str | None:
        folded = folded_name(client)

        def read() -> str | None:
            row = self._read_db.execute(
                "SELECT client FROM accounts WHERE ledger = ? AND folded = ?", (ledger, folded)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._read(read)

    async def list_accounts(
        self, ledger: str, *, after_client: str | None = None, limit: int = 1_000
    ) -> list[Account]:
        def read() -> list[Account]:
            rows = self._read_db.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM {_ACCOUNTS} WHERE a.ledger = ? AND a.client > ?"
                " ORDER BY a.client LIMIT ?",
                (ledger, after_client or "", limit),
            )
            return [_account(row) for row in rows]

        return await self._read(read)

    async def settle_history(self, account: Account, through: datetime) -> None:
        """Wait for the batch holding the write lock, if any (this process's or another's):
        it takes its time under the lock, so every batch after it takes a later one."""
        self._clock.not_before(through)
        fence = self._history_fence
        assert fence is not None, "store is not open"
        # Looked at between the event loop's other work, with no thread to queue for, and
        # for at most as long as a writer waits for the lock.
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        while not fence.free_now():
            if time.monotonic() >= deadline:
                raise Unavailable("store_busy", "the ledger is busy; try again")
            await asyncio.sleep(_FENCE_POLL_SECONDS)

    async def last_entry(self, account_id: int, before: datetime) -> EntryMark | None:
        def read() -> EntryMark | None:
            last = _in_statement_order(
                "account_id = :account AND created_at < :before",
                order="created_at DESC, {id} DESC",
                limit="1",
            )
            row = self._read_db.execute(
                f"SELECT e.id, e.created_at, e.balance_after FROM ({last}) p"
                " JOIN entries e ON e.id = p.id",
                {"account": account_id, "before": to_micros(before)},
            ).fetchone()
            return None if row is None else EntryMark(row[0], from_micros(row[1]), row[2])

        return await self._read(read)

    async def statement_page(
        self,
        account_id: int,
        since: datetime | None,
        till: datetime,
        after_entry_id: int,
        limit: int,
    ) -> list[StatementLine]:
        def read() -> list[StatementLine]:
            assert self._statement_reader is not None, "store is not open"
            page = _in_statement_order(
                "account_id = :account AND (created_at, {id}) > (:since, :after)"
                " AND created_at <= :till",
                order="created_at, {id}",
                limit=":limit",
            )
            rows = self._statement_reader.execute(
                "SELECT e.id, e.created_at, o.kind, o.description, e.amount, e.balance_after,"
                " CASE WHEN e.amount < 0 THEN c.client ELSE d.client END, o.id"
                f" FROM ({page}) p JOIN entries e ON e.id = p.id"
                " JOIN operations o ON o.id = e.operation_id"
                " LEFT JOIN accounts d ON d.id = o.debit_account_id"
                " LEFT JOIN accounts c ON c.id = o.credit_account_id"
                " ORDER BY e.created_at, e.id",
                {
                    "account": account_id,
                    "since": -(2**62) if since is None else to_micros(since),
                    "after": after_entry_id,
                    "till": to_micros(till),
                    "limit": limit,
                },
            )
            return [
                StatementLine(
                    row[0], from_micros(row[1]), row[2], row[3], row[4], row[5], row[6], row[7]
                )
                for row in rows
            ]

        return await self._read(read, self._statement_thread)

    async def drop_sandbox(self, ledger: str) -> bool:
        if not await self.end_sandbox(ledger):
            return False
        await self._empty([ledger])
        return True

    def _note_ids_given(self) -> None:
        """The highest ids there are, in this transaction, before any ledger's rows go:
        no later row takes one of a dropped ledger's (migration 9)."""
        for table in ("accounts", "operations", "entries"):  # names of ours, no input
            self._db.execute(
                "INSERT INTO ids_given (name, last_id)"
                f" SELECT ?, coalesce(max(id), 0) FROM {table} WHERE true"
                " ON CONFLICT (name) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                (table,),
            )

    async def _write_transaction(self, work: Callable[[], T]) -> T:
        """`work` on the writer thread in its own transaction, taking turns with other
        processes' writers through the lock file like every batch does."""
        return await self._write(lambda: self._in_transaction(work))

    def _in_transaction(self, work: Callable[[], T]) -> T:
        """`work` and its COMMIT; a database that is busy past the wait, read-only, full or
        damaged fails it in one line (a token, a sandbox: no batch to retry it)."""
        try:
            self._begin()
        except RetryableStoreError as error:
            raise Unavailable("store_busy", f"the database {self.path} is busy: {error}") from error
        try:
            result = work()
            self._refuse_if_gone()
            self._db.execute("COMMIT")
        except BaseException as error:
            self._roll_back()
            if isinstance(error, sqlite3.Error):
                raise self._failed(error) from error
            raise
        self._lock.release()
        return result

    # -- sandboxes ------------------------------------------------------------

    async def open_sandbox(
        self, ledger: str, now: datetime, sandboxes_max: int, owner: str = "", owner_max: int = 0
    ) -> bool:
        def write() -> bool:
            cursor = self._db.execute(
                "INSERT INTO sandboxes (ledger, last_used) SELECT ?, ?"
                " WHERE (SELECT count(*) FROM sandboxes) < ?"
                " AND (? = 0 OR (SELECT count(*) FROM sandboxes"
                " WHERE substr(ledger, 1, length(?)) = ?) < ?)",
                (ledger, to_micros(now), sandboxes_max, owner_max, owner, owner, owner_max),
            )
            return cursor.rowcount == 1

        return await self._write_transaction(write)

    async def sandbox_is_open(self, ledger: str) -> bool:
        def read() -> bool:
            found = self._read_db.execute("SELECT 1 FROM sandboxes WHERE ledger = ?", (ledger,))
            return found.fetchone() is not None

        return await self._read(read)

    async def touch_sandbox(self, ledger: str, now: datetime) -> bool:
        def write() -> bool:
            cursor = self._db.execute(
                "UPDATE sandboxes SET last_used = max(last_used, ?) WHERE ledger = ?",
                (to_micros(now), ledger),
            )
            return cursor.rowcount == 1

        return await self._write_transaction(write)

    async def end_sandbox(self, ledger: str) -> bool:
        return bool(await self._write_transaction(lambda: self._end_sandboxes([ledger])))

    def _end_sandboxes(self, ledgers: list[str]) -> list[str]:
        """Of these sandboxes, end those open, in this transaction; their names. Their
        rows stay, no one's, until `_empty` takes them out."""
        db = self._db
        ended = [
            ledger
            for ledger in ledgers
            if db.execute("DELETE FROM sandboxes WHERE ledger = ?", (ledger,)).rowcount == 1
        ]
        if ended:
            self._note_ids_given()
            self._account_cache.clear()
        return ended

    async def end_idle_sandboxes(self, unused_since: datetime) -> list[str]:
        def end() -> list[str]:
            rows = self._db.execute(
                "SELECT ledger FROM sandboxes WHERE last_used < ?", (to_micros(unused_since),)
            )
            return self._end_sandboxes([row[0] for row in rows])

        return await self._write_transaction(end)

    async def drop_idle_sandboxes(self, unused_since: datetime) -> list[str]:
        idle = await self.end_idle_sandboxes(unused_since)
        await self._empty(idle)
        return idle

    async def empty_ended_sandboxes(self) -> list[str]:
        ended = await self._read(lambda: ended_with_rows(self._read_db))
        await self._empty(ended)
        return ended

    async def _empty(self, ledgers: list[str]) -> None:
        """The rows of these ended sandboxes, a slice per transaction (sqlite_dropping.py):
        other writes take the lock between slices, whatever a sandbox's size."""
        for ledger in ledgers:
            step = partial(self._empty_slice, Emptying(ledger, self.sandbox_slice_rows))
            while not await self._write_transaction(step):
                pass

    def _empty_slice(self, emptying: Emptying) -> bool:
        done = emptying.step(self._db)
        if done:
            # A batch refused in the ended sandbox may have cached accounts since gone.
            self._account_cache.clear()
        return done

    # -- tokens ---------------------------------------------------------------

    async def put_token(self, record: TokenRecord) -> None:
        await self._write_transaction(
            lambda: self._db.execute(
                "INSERT INTO tokens (id, token_hash, role, client, ledger, created_at, revoked)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.token_hash,
                    record.role,
                    record.client,
                    record.ledger,
                    to_micros(record.created_at),
                    int(record.revoked),
                ),
            )
        )

    async def get_token(self, token_id: str) -> TokenRecord | None:
        def read() -> TokenRecord | None:
            row = self._read_db.execute(
                "SELECT id, token_hash, role, client, ledger, created_at, revoked"
                " FROM tokens WHERE id = ?",
                (token_id,),
            ).fetchone()
            return None if row is None else _token(row)

        return await self._read(read)

    async def revoke_token(self, token_id: str) -> bool:
        def write() -> bool:
            cursor = self._db.execute(
                "UPDATE tokens SET revoked = 1 WHERE id = ? AND revoked = 0", (token_id,)
            )
            return cursor.rowcount == 1

        return await self._write_transaction(write)

    async def list_tokens(self) -> list[TokenRecord]:
        def read() -> list[TokenRecord]:
            rows = self._read_db.execute(
                "SELECT id, token_hash, role, client, ledger, created_at, revoked"
                " FROM tokens ORDER BY created_at"
            )
            return [_token(row) for row in rows]

        return await self._read(read)


class _KeyAlreadyUsed(Exception):
    """A batch met an idempotency key that is already in the database."""


# The entries past the statement index's end, read by id from the table's end.
_UNINDEXED = "id > (SELECT entry_id FROM statement_index_upto)"
# The id a new row of {table} takes: past every row there, and past those a dropped
# ledger took away (migration 9).
_NEXT_ID = (
    "SELECT max(coalesce(max(id), 0), coalesce((SELECT last_id FROM ids_given WHERE name = ?), 0))"
    " + 1 FROM {table}"
)


def _in_statement_order(where: str, *, order: str, limit: str) -> str:
    """Ids and times of the entries `where` says (of one account, by its time and
    `{id}`), in `order` up to `limit`: from the statement index and from the entries
    past its end, each read in order up to the limit, then the two together."""
    indexed = (
        f"SELECT entry_id AS id, created_at FROM statement_index"
        f" WHERE {where.format(id='entry_id')} ORDER BY {order.format(id='entry_id')}"
    )
    unindexed = (
        f"SELECT id, created_at FROM entries WHERE {_UNINDEXED}"
        f" AND {where.format(id='id')} ORDER BY {order.format(id='id')}"
    )
    return (
        f"SELECT * FROM ({indexed} LIMIT {limit}) UNION ALL"
        f" SELECT * FROM ({unindexed} LIMIT {limit})"
        f" ORDER BY {order.format(id='id')} LIMIT {limit}"
    )


def _token(row: Sequence[Any]) -> TokenRecord:
    return TokenRecord(row[0], row[1], row[2], row[3], row[4], from_micros(row[5]), bool(row[6]))


def _interrupted() -> Interrupted:
    return Interrupted(
        "interrupted", "interrupted while it waited for another's write to end; nothing was applied"
    )


def _disk_full(path: str, room_min_bytes: int = _DISK_ROOM_MIN_BYTES) -> bool:
    """Whether the file system of `path` has less room than that (a page of it) for
    this process: root may write into the blocks a file system keeps for it."""
    try:
        stats = os.statvfs(Path(path).resolve().parent)
        blocks = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail
        return blocks * stats.f_frsize < room_min_bytes
    except OSError:
        return False


def _busy(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and is_busy(error)


def _sleep_stepped_out(seconds: float) -> None:
    """A wait before a BEGIN, with no transaction open: a fork need not wait for it."""
    with fork_gate.stepped_out():
        time.sleep(seconds)
