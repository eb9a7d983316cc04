"""PostgreSQL store: asyncpg with a connection pool; a batch is one transaction.

A batch locks the existing accounts it touches in id order (SELECT ... FOR
UPDATE), so batches from any number of processes serialise per account and
never deadlock on each other; the rules run in memory (`plan_batch`); the
plan is written with array (unnest) statements in a few round trips
(postgres_batch.py); then COMMIT. A batch that only moves money between
accounts this process knows is planned on its last view of them instead, and
written in one statement that checks each account first (postgres_accounts.py;
a stale view means planning again the locking way). Transient failures
(deadlock, serialization, a lost connection before COMMIT) surface as
RetryableStoreError, which the engine retries. A connection lost *during*
COMMIT is settled by asking the server whether the transaction committed
(pg_xact_status), so a batch is never applied twice nor reported lost when it
was not. A statement the database cancels (statement_timeout, pg_cancel_backend) is
no lost connection: it rolled back, and is told so at once, not retried. An
unreachable database is Unavailable (HTTP 503) at once, and the pool reconnects by
itself when the server is back; a request that waited its bound for a pooled
connection asks the database on one of its own whether the pool is busy or the
database away. A statement that times out (a silent server) fails its write, not tried
again, and retires every connection opened before it. The schema's version is
postgres_migrate.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
from asyncpg.connect_utils import SessionAttribute
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    stop_before_delay,
)

from kopilka.clock import MonotonicClock
from kopilka.domain.model import (
    MONEY_COMMAND_TYPES,
    SANDBOX_PREFIX,
    Account,
    ClaimKey,
    Command,
    Operation,
    Outcome,
    SetLimits,
    sandbox_ledgers,
)
from kopilka.domain.names import folded_name
from kopilka.domain.rules import (
    BatchPlan,
    KnownKeys,
    accounts_touched,
    claimed_keys,
    namesake_keys,
    operation_keys,
    plan_batch,
)
from kopilka.domain.statement import EntryMark, StatementLine
from kopilka.errors import (
    LOOK_FIRST,
    NOT_KNOWN,
    RETRY_UNDER_THE_KEY,
    InvalidInput,
    KopilkaError,
    Rejected,
    RetryableStoreError,
    Unavailable,
    UnstorableInput,
    database_away,
    database_refused,
    unapplied,
)
from kopilka.redaction import redact_text, redact_url
from kopilka.store.postgres_accounts import AccountCache, StaleViews
from kopilka.store.postgres_batch import (
    KeyAlreadyUsed,
    PlannedBatch,
    closed_sandboxes,
    hold_refused_accounts,
    load_claims,
    load_namesakes,
    load_operations,
    load_refusals,
    new_revisions,
    refusal_may_be_a_retry,
    write_plan,
    write_planned_batch,
)
from kopilka.store.postgres_claims import StandingClaims
from kopilka.store.postgres_dropping import SLICE_ROWS, Emptying, ended_with_rows
from kopilka.store.postgres_migrate import give_missing_folds, migrate
from kopilka.store.postgres_passfile import skipped_password_file
from kopilka.store.postgres_schema import SANDBOXES_LOCK_KEY, SCHEMA_VERSION
from kopilka.store.postgres_text import unstorable_commands, without
from kopilka.store.postgres_waits import LongWaits
from kopilka.store.shared_question import Answer, SharedQuestion
from kopilka.store.told import Told
from kopilka.tokens import TokenRecord

T = TypeVar("T")
Connection = Any  # asyncpg ships no type hints

logger = logging.getLogger(__name__)

_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)

# The connection or the server went away: the statement did not complete here.
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: connection exceptions
    # Class 57's that end the session; not its query_canceled (57014), which leaves the
    # session and its connection as they were (_CANCELLED).
    asyncpg.exceptions.AdminShutdownError,  # 57P01: shutting down, or pg_terminate_backend
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up, or shutting down
    asyncpg.exceptions.DatabaseDroppedError,  # 57P04
    asyncpg.exceptions.IdleSessionTimeoutError,  # 57P05
    asyncpg.InterfaceError,  # "connection is closed"
    # A session the server killed while asyncpg was between messages leaves the
    # protocol mid-way ("cannot switch to state 11; another operation (2) is in
    # progress") until the socket's close is read: as lost as a closed connection.
    asyncpg.exceptions.InternalClientError,
)
# A statement the database cancelled: its statement_timeout ran out, or an operator's
# pg_cancel_backend. The server answered, with an error: the transaction is rolled back
# (a COMMIT too: one cancelled in its deferred triggers did not commit, and one cancelled
# while it waits for a synchronous standby is committed, with only a warning).
_CANCELLED = asyncpg.exceptions.QueryCanceledError
# What a batch being settled tries again, on another connection: lost, or a deadlock.
_SETTLE_AGAIN: tuple[type[BaseException], ...] = (RetryableStoreError, *_CONNECTION_LOST)
# Refusals of the whole database's that pass (a disk freed, a standby promoted): logged
# when they begin and when a batch's write commits again, not once for ever as a missing
# grant or table is.
_PASSING_REFUSALS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.InsufficientResourcesError,
)
# Every session's: named, and speaking UTF-8, whatever a URL's client_encoding asks (the
# driver encodes text as the session speaks: a name it could not encode so failed as a
# traceback, and a name the database could store was refused as one it cannot).
_SESSION = {"application_name": "kopilka", "client_encoding": "UTF8"}
# How long the database is given to answer on a connection of its own, when a wait for
# a pooled connection ran out: as long as a readiness check gives it. Its answer serves
# the requests of the next second too, rather than one more connection each.
_ASKED_APART_SECONDS = 2.0
_ASKED_APART_KEPT_SECONDS = 1.0
# A batch or a read the database has not answered in this long is logged, once a spell
# (postgres_waits.py).
WAIT_LOGGED_SECONDS = 5.0
# Text of a request that a database in another encoding than UTF8 has no character for.
_UNSTORABLE_TEXT = (
    asyncpg.exceptions.UntranslatableCharacterError,
    asyncpg.exceptions.CharacterNotInRepertoireError,
)
# The database refuses the work for how it is set up, not for the request: a role
# without a grant, a read-only standby, a full disk. No retry helps, and it is no bug of
# kopilka's: one line that says so, not a traceback. (A table or column not there is
# left out: that is how a fault in kopilka's own SQL shows, and it is logged in full.)
_DATABASE_REFUSED: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.InsufficientPrivilegeError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: disk full, out of memory
    asyncpg.exceptions.PostgresSystemError,  # class 58: I/O errors
    asyncpg.exceptions.InternalServerError,  # class XX: data corrupted
    # An operator's trigger raising, or failing an ASSERT (class P0): kopilka's own
    # schema raises none of these (its one RAISE is a serialization failure).
    asyncpg.exceptions.PLPGSQLError,
    # A table, column or function of kopilka's schema gone (renamed or dropped by hand).
    asyncpg.exceptions.UndefinedTableError,
    asyncpg.exceptions.UndefinedColumnError,
    asyncpg.exceptions.UndefinedFunctionError,
)
# Failures PostgreSQL itself expects to be retried: nothing was applied.
_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization
    asyncpg.exceptions.LockNotAvailableError,  # lock_timeout
    asyncpg.exceptions.UniqueViolationError,  # a concurrent insert of the same key
)

# What a batch planned on this process's view of its accounts may hold.
_PLANNED_COMMAND_TYPES = (*MONEY_COMMAND_TYPES, ClaimKey)

_ACCOUNT_COLUMNS = "id, ledger, client, balance, min_balance, max_balance, created_at"
_TOKEN_COLUMNS = "id, token_hash, role, client, ledger, created_at, revoked"  # noqa: S105


def _account(row: Sequence[Any]) -> Account:
    return Account(
        ledger=row[1],
        client=row[2],
        balance_cents=row[3],
        min_balance_cents=row[4],
        max_balance_cents=row[5],
        created_at=row[6],
        id=row[0],
    )


def _token(row: Sequence[Any]) -> TokenRecord:
    return TokenRecord(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]))


def _unstorable(error: BaseException) -> InvalidInput:
    return InvalidInput("invalid_text", f"text this database cannot store: {error}")


def _busy(error: BaseException) -> Unavailable:
    """A read or a store write (not a batch, which the engine retries) that met a lock held
    past lock_timeout (a table locked by hand, a VACUUM FULL) or a conflict: it rolled
    back, and may be tried again."""
    return unapplied(
        "store_busy", f"the database is busy, nothing was changed; try again ({error})"
    )


def _pool_busy() -> Unavailable:
    """A request that waited its bound for a pooled connection, the database answering
    on a connection of its own: every pooled one is in use; the database is not away."""
    return unapplied(
        "store_busy",
        "the ledger is busy: every connection to the database is in use;"
        " nothing was changed, try again",
    )


def _every_connection_in_use(pool: Any) -> bool:
    """Every slot of the pool holds an open connection, and none is idle: a readiness
    check would wait behind the requests for one. Only a hint, taken as the check
    begins; what a request is told, busy or away, the database itself says."""
    return bool(pool.get_size() >= pool.get_max_size() and pool.get_idle_size() == 0)


def _cancelled(error: BaseException) -> Unavailable:
    """A read or a store write that the database cancelled (_CANCELLED): rolled back, and
    not tried again, as the same statement_timeout would end each try as late."""
    return unapplied(
        "store_busy",
        f"the database cancelled this ({_first_line(error)}); nothing was changed, try again",
    )


def _first_line(error: BaseException) -> str:
    """The driver may add a HINT line; a message is one line."""
    return str(error).partition("\n")[0]


def _row_count(status: str) -> int:
    """The count at the end of a command tag such as 'UPDATE 1'."""
    return int(status.rsplit(" ", 1)[1])


async def _durable_commits(connection: Connection) -> None:
    """A commit is on disk when it returns, and on the synchronous standbys' disks where
    there are any, whatever the database's or the role's default: `off` would answer
    before the flush and lose the commit in a crash, `local` and `remote_write` before
    a standby has it. `on` or the stronger `remote_apply` is kept as it is."""
    if await connection.fetchval("SHOW synchronous_commit") not in ("on", "remote_apply"):
        await connection.execute("SET synchronous_commit = on")


class _Connection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg has no hints
    """asyncpg's connection, marked with the store's count of silences as it opened."""

    __slots__ = ("silences_before",)


async def _no_reset(connection: Connection) -> None:
    """Nothing to reset on release: the store keeps no session state but the commit
    level set as the connection opened, which must stay (asyncpg's default reset would
    undo it, at a round trip per use; an open transaction is still rolled back)."""


# asyncpg names the values target_session_attrs may take by a method's repr, a memory
# address; the one-line refusal names the values.
_SESSION_ATTRIBUTES_REPR = re.compile(r"<built-in method values of mappingproxy object at \w+>")


def _said_plainly(message: str) -> str:
    accepted = ", ".join(repr(attribute.value) for attribute in SessionAttribute)
    return _SESSION_ATTRIBUTES_REPR.sub(accepted, message)


class PostgresStore:
    # Two batches in flight: one plans and writes while the other waits for its fsync.
    concurrent_batches_max = 2
    # How many of an ended sandbox's rows one transaction deletes.
    sandbox_slice_rows = SLICE_ROWS

    def __init__(
        self,
        url: str,
        clock: MonotonicClock | None = None,
        *,
        pool_size_max: int = 10,
        connect_timeout_seconds: float = 5.0,
        command_timeout_seconds: float = 60.0,
        lock_timeout_seconds: float = 20.0,
        settle_timeout_seconds: float = 2.0,
        account_cache_max: int = 100_000,
        create_schema: bool = True,
        tells_why: bool = False,
    ) -> None:
        """`create_schema` False: a database without kopilka's schema is refused
        (database_not_found) rather than given one, for a command that only reads.
        `tells_why`: the caller is told why the database is away, not only the log: an
        embedded caller, who has no server log to read and chose the database itself."""
        assert url.startswith(("postgresql://", "postgres://"))
        assert pool_size_max >= self.concurrent_batches_max
        self._url = _without_a_bare_slash(url)
        self.redacted_url = redact_url(url)
        self._clock = clock or MonotonicClock()
        self.schema_versions: tuple[int, int] | None = None  # once open
        # The database the server says it is, once open: a URL may name none (libpq's
        # default, PGDATABASE or the user's name, is then used).
        self.database: str | None = None
        self._pool_size_max = pool_size_max
        self._connect_timeout_seconds = connect_timeout_seconds
        self._command_timeout_seconds = command_timeout_seconds
        self._lock_timeout_seconds = lock_timeout_seconds
        self._settle_timeout_seconds = settle_timeout_seconds
        self._accounts = AccountCache(account_cache_max)
        self._claims = StandingClaims()
        self.stale_views = StaleViews()
        self._pool: Any = None
        self._batch_connections: list[Connection] = []
        # Statements that timed out: connections opened before the last are not used again.
        self._silences = 0
        self._outage_logged = False
        # A read answered says nothing of the batches, which may wait for rows.
        self._long_batches = LongWaits(
            "batch",
            "batches",
            "it is silent, or another transaction holds the batch's rows",
            self.redacted_url,
            lambda: self._outage_logged,
        )
        self._long_reads = LongWaits(
            "read",
            "reads",
            "it is silent, or another session holds a table it reads",
            self.redacted_url,
            lambda: self._outage_logged,
        )
        self._refusals_told = Told()  # each reason once: a table, a grant
        self._writes_refused = False  # a _PASSING_REFUSALS' spell logged, its end not yet
        self._asked_apart = SharedQuestion(self._ask_apart, _ASKED_APART_KEPT_SECONDS)
        self._create_schema = create_schema
        self._tells_why = tells_why

    def __repr__(self) -> str:
        return f"PostgresStore({self.redacted_url!r})"

    # -- lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        assert self._pool is None, "store is already open"
        try:
            self._pool = await asyncpg.create_pool(
                self._url,
                # No floor of idle connections: asyncpg would keep redialling (and
                # logging) while the server is away; connections open on demand.
                min_size=0,
                max_size=self._pool_size_max,
                timeout=self._connect_timeout_seconds,
                command_timeout=self._command_timeout_seconds,
                reset=_no_reset,
                init=self._opened,
                connection_class=_Connection,
                server_settings={
                    **_SESSION,
                    "lock_timeout": f"{int(self._lock_timeout_seconds * 1000)}ms",
                    "timezone": "UTC",
                    # Each statement sees what committed while it waited for a lock (a key
                    # applied, an account opened, a schema migrated by another process):
                    # whatever default the database or role sets.
                    "default_transaction_isolation": "read committed",
                    # Accounts are hot in memory: probing the primary key per changed
                    # account beats hashing the whole table (PostgreSQL's own SSD advice).
                    "random_page_cost": "1.1",
                },
            )
            async with self._pool.acquire(timeout=self._connect_timeout_seconds) as connection:
                found = await migrate(connection, self.redacted_url, create=self._create_schema)
                self.schema_versions = (found, SCHEMA_VERSION)
                self.database = await connection.fetchval("SELECT current_database()")
        except BaseException as error:
            if isinstance(error, Exception):
                await self.close()
                if not isinstance(error, KopilkaError):
                    raise self._cannot_open(error) from error
            else:  # cancelled (Ctrl-C while reaching the database): no waiting for it now
                pool, self._pool = self._pool, None
                if pool is not None:
                    pool.terminate()
            raise

    async def _opened(self, connection: Connection) -> None:
        connection.silences_before = self._silences
        await _durable_commits(connection)

    def _lost(self, connection: Connection, error: BaseException) -> None:
        """Close a connection that failed as lost. One whose statement timed out went
        silent (a frozen server, a network dropping its packets), and so, most likely,
        did every other opened before it: none of those is handed out again, or each
        caller in turn would wait a whole timeout on one. Opening anew costs a round
        trip or two, and only after a timeout."""
        if isinstance(error, TimeoutError):
            self._silences += 1
        _discard(connection)

    def _before_a_silence(self, connection: Connection) -> bool:
        return bool(connection.silences_before < self._silences)

    def forget_in_child(self) -> None:
        return None  # its locks are the database server's, held by the parent's sessions

    def stop_waiting(self) -> None:
        return None  # a batch waits for row locks at most lock_timeout, then is retried

    def wait_again(self) -> None:
        return None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._asked_apart.forget()
        kept, self._batch_connections = self._batch_connections, []
        if pool is not None:
            for connection in kept:
                with contextlib.suppress(*_CONNECTION_LOST):
                    await pool.release(connection)
            try:
                await asyncio.wait_for(pool.close(), self._connect_timeout_seconds)
            except _CONNECTION_LOST:  # TimeoutError included
                pool.terminate()

    def _cannot_open(self, error: Exception) -> Unavailable:
        """For whoever starts kopilka: which database (redacted) and why.

        Any failure counts, a URL the driver cannot parse included; its message is
        scrubbed, as it may quote a piece of the password.
        """
        if isinstance(error, TimeoutError) and not str(error):  # it has no words of its own
            reason = f"no answer within {self._connect_timeout_seconds:g} s"
        else:
            # The first line: the driver may add a HINT line, and a refusal is one line.
            first = str(error).splitlines()[0] if str(error) else ""
            reason = self._redacted(f"{type(error).__name__}: {_said_plainly(first)}", error)
        skipped = skipped_password_file(self._url)
        if skipped is not None:  # the likely cause of a refused password, or the next one
            reason = f"{reason}; {skipped}"
        return Unavailable(
            "store_unavailable", f"cannot open the database at {self.redacted_url}: {reason}"
        )

    def _unavailable(self, error: BaseException, *, reading: bool = False) -> Unavailable:
        """What a caller is told: that the database is away (and, to a write, that
        nothing of it was applied); why, only if `tells_why`, for a server's caller may
        not learn of its database. Where and why go to the log, once per outage, for the
        operator."""
        self._log_outage(error)
        why = f" ({self._outage_reason(error)})" if self._tells_why else ""
        told = database_away(why)
        assert told.to_a_write is not None
        return told if reading else told.to_a_write

    def _refused(self, error: BaseException) -> Unavailable:
        """The database's own reason in one line (its first: a HINT follows on the next),
        without where the database is. The operator's log gets where, once per reason."""
        first_line = str(error).partition("\n")[0]
        reason = self._redacted(f"{first_line} ({type(error).__name__})", error)
        if isinstance(error, _PASSING_REFUSALS):
            told = not self._writes_refused
            self._writes_refused = True
        else:
            told = self._refusals_told.first_time(reason)
        if told:
            logger.warning(
                "the database at %s refuses kopilka's work: %s", self.redacted_url, reason
            )
        return Unavailable("store_unavailable", f"the database refused this: {reason}")

    def _log_outage(self, error: BaseException) -> None:
        if not self._outage_logged:
            self._outage_logged = True
            reason = self._outage_reason(error)
            skipped = skipped_password_file(self._url)
            if skipped is not None:  # a connection opened anew, refused its password
                reason = f"{reason}; {skipped}"
            logger.warning("the database at %s is unavailable (%s)", self.redacted_url, reason)

    def _outage_reason(self, error: BaseException) -> str:
        if isinstance(error, TimeoutError) and not str(error):  # no words of its own
            return "it did not answer in time"
        # The first line: the driver may add a HINT line, and a refusal is one line.
        first = str(error).partition("\n")[0]
        return self._redacted(f"{type(error).__name__}: {first}", error)

    def _redacted(self, reason: str, error: BaseException) -> str:
        """The driver may quote a piece of the URL, the password's included; the server
        never does, and masking a weak password that is a word of its message (the user
        name, "failed") would tell what the password is."""
        if isinstance(error, asyncpg.PostgresError):
            return reason
        return redact_text(reason, self._url)

    def _log_recovery(self) -> None:
        if self._outage_logged:
            self._outage_logged = False
            logger.warning("the database at %s is available again", self.redacted_url)

    def _log_writes_taken(self) -> None:
        """After a batch's write committed: the end of refusals that pass, logged once."""
        if self._writes_refused:
            self._writes_refused = False
            logger.warning("the database at %s takes kopilka's work again", self.redacted_url)

    @contextlib.asynccontextmanager
    async def _connection(self, *, reading: bool = False) -> AsyncIterator[Connection]:
        """A pooled connection; an unreachable server is Unavailable at once.

        A connection that failed as lost is terminated, never handed to the next
        caller: asyncpg may not have read the socket's close yet.
        """
        pool = self._pool  # the one to give it back to, should the store close meanwhile
        connection = await self._acquire(reading=reading)
        ended = self._long_reads.watch(WAIT_LOGGED_SECONDS) if reading else None
        answered = False
        try:
            yield connection
            answered = True
        except _CONNECTION_LOST as error:
            self._lost(connection, error)
            raise
        else:
            self._log_recovery()
        finally:
            if ended is not None:
                ended(answered)
            # A broken connection is dropped by the pool; never mask the real error.
            with contextlib.suppress(*_CONNECTION_LOST):
                await pool.release(connection)

    async def _acquire(self, *, reading: bool = False) -> Connection:
        pool = self._pool
        if pool is None:  # a read that came as the store closed (another thread's close)
            raise Unavailable("shutting_down", "the ledger is shutting down; try again")
        try:
            connection: Connection = await pool.acquire(timeout=self._connect_timeout_seconds)
            while self._before_a_silence(connection):
                # Closed, its slot goes back. The pool hands out its open connections
                # first: each opened before the silence is met and closed in turn, a
                # cost of nothing but the closing, and only then are new ones opened.
                _discard(connection)
                with contextlib.suppress(*_CONNECTION_LOST):
                    await pool.release(connection)
                connection = await pool.acquire(timeout=self._connect_timeout_seconds)
        except TimeoutError as error:
            # Every pooled connection in use (each waiting for a row, say), or the
            # database silent (each waiting on it, or a slot's connecting unanswered).
            # What the pool holds tells neither, and changes as the wait ends: the
            # database is asked, on a connection of its own.
            silent = await self._asked_apart.answer()
            if silent is None:
                raise _pool_busy() from error
            raise self._unavailable(silent, reading=reading) from error
        except (*_CONNECTION_LOST, asyncpg.PostgresError) as error:
            raise self._unavailable(error, reading=reading) from error
        return connection

    @contextlib.asynccontextmanager
    async def _batch_connection(self) -> AsyncIterator[Connection]:
        """A connection to write a batch with, kept for the next batch afterwards
        instead of going back to the pool: asyncpg's acquire and release each wait
        for the event loop to come round (a task, a shield), and so would every
        caller of the batch. Lost or left in a transaction, it is not kept.
        """
        pool = self._pool  # the one to give it back to, should the store close meanwhile
        connection = None
        while self._batch_connections:
            kept = self._batch_connections.pop()
            if not _open(kept):  # one the server closed meanwhile is dropped
                continue
            if self._before_a_silence(kept):
                _discard(kept)  # its slot goes back to the pool
                continue
            connection = kept
            break
        if connection is None:
            connection = await self._acquire()
        idle = answered = False
        ended = self._long_batches.watch(WAIT_LOGGED_SECONDS)
        try:
            yield connection
            self._log_recovery()
            idle = answered = True
        except _CONNECTION_LOST as error:
            self._lost(connection, error)
            raise
        except Exception:
            idle = True  # a failed batch has rolled back
            raise
        finally:
            ended(answered)
            if _open(connection):
                if idle and self._pool is pool and not connection.is_in_transaction():
                    self._batch_connections.append(connection)
                else:
                    with contextlib.suppress(*_CONNECTION_LOST):
                        await pool.release(connection)  # the pool resets a cancelled one

    # -- the batch ------------------------------------------------------------

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        try:
            return await self._apply(commands)
        except _UNSTORABLE_TEXT as error:
            return await self._apply_storable(commands, error)
        except _DATABASE_REFUSED as error:
            raise self._refused(error) from error
        except asyncpg.exceptions.CheckViolationError as error:
            # A CHECK of the database's own that the rules do not know (another
            # program's): the engine applies each request alone, and only the one that
            # breaks it is refused, with no "try again", for it would fail again.
            raise UnstorableInput(self._refused_by_a_constraint(error)) from error

    def _refused_by_a_constraint(self, error: BaseException) -> Rejected:
        reason = self._redacted(str(error).partition("\n")[0], error)
        if self._refusals_told.first_time(reason):  # once a reason: no log flood
            logger.warning("the database at %s refused a write: %s", self.redacted_url, reason)
        return database_refused(reason)

    async def _apply_storable(
        self, commands: Sequence[Command], error: BaseException
    ) -> list[Outcome]:
        """The batch met a text the database cannot store, and nothing of it applied: the
        commands that hold such text are refused (invalid_text), each alone, as a batch's
        items are, and the rest applied."""
        refused = await unstorable_commands(commands, self._refusal_of_texts)
        if not refused:  # a text of no command's: the batch fails whole
            raise UnstorableInput(_unstorable(error)) from error
        known: dict[int, Outcome] = dict(refused)
        rest = without(commands, known)
        applied = iter(await self.apply(rest) if rest else ())
        return [known[index] if index in known else next(applied) for index in range(len(commands))]

    async def _refusal_of_texts(self, texts: list[str]) -> InvalidInput | None:
        try:  # as a write's: the database lost here, nothing of the batch was applied
            await self._once(
                lambda connection: connection.fetchval("SELECT cardinality($1::text[])", texts)
            )
        except InvalidInput as refusal:  # only _once's for a text no row can hold
            assert refusal.code == "invalid_text", refusal
            return refusal
        return None

    async def _apply(self, commands: Sequence[Command]) -> list[Outcome]:
        assert commands
        planned = (
            self._plan_on_known_accounts(commands) if self.stale_views.worth_trying() else None
        )
        if planned is not None:
            outcomes = await self._write_planned(commands, planned)
            if outcomes is not None:
                return outcomes
        try:
            async with self._batch_connection() as connection:
                return await self._apply_once(connection, commands, check_keys=False)
        except (KeyAlreadyUsed, asyncpg.exceptions.CheckViolationError):
            # A CHECK of the database's own is met before a key's uniqueness: a request
            # applied before under its key, resent, would be refused by it as applied
            # twice, where it is to be answered as it was.
            pass
        # Rare: a retried request. Run the batch again, reading its keys first, on the
        # connection kept again, or another: the ROLLBACK may have lost that one, and
        # asyncpg then gives it back to the pool.
        async with self._batch_connection() as connection:
            try:
                return await self._apply_once(connection, commands, check_keys=True)
            except KeyAlreadyUsed as error:
                raise RetryableStoreError("an idempotency key was taken concurrently") from error

    def _plan_on_known_accounts(self, commands: Sequence[Command]) -> PlannedBatch | None:
        """A plan made on the accounts as this process last saw them, when the batch
        only moves money between such accounts and every command succeeds.

        A batch request's claim on its key rides along: the statement inserts it,
        and fails (the batch is planned again from locked rows, its claims read) if
        the key is held already. Anything else (a new account, a refusal to keep,
        limits set) goes the way that locks and reads first. Batches are planned one
        after another, so the next one is planned on this one's outcome before it is
        written.
        """
        claims: list[ClaimKey] = []
        for command in commands:
            # A sandbox's batch goes the locking way, which checks that it is still open.
            if not isinstance(command, _PLANNED_COMMAND_TYPES) or command.ledger.startswith(
                SANDBOX_PREFIX
            ):
                return None
            if isinstance(command, ClaimKey):
                claims.append(command)
        keys = accounts_touched(commands)
        hinted = self._accounts.hinted(keys)
        if hinted is None:
            return None
        accounts, before, writers = hinted
        # A long request's later pieces meet the claim its first piece made.
        standing = self._claims.standing(claims) if claims else None
        plan = plan_batch(commands, accounts, {}, self._clock.now(), standing)
        if plan.new_accounts or plan.refusals:
            return None
        new_claims = len(claims) - len(standing or ())
        if new_claims and (len(plan.claims) != new_claims or not plan.operations):
            # A claim let go (nothing took effect under it) writes nothing that could
            # fail on a key held already: only reading the claims can tell.
            return None
        planned = PlannedBatch(
            plan,
            keys,
            before,
            new_revisions(plan.changed_accounts),
            writers,
            asyncio.get_running_loop().create_future(),
        )
        self._accounts.remember(plan.changed_accounts, planned.revisions, planned.written)
        return planned

    async def _write_planned(
        self, commands: Sequence[Command], planned: PlannedBatch
    ) -> list[Outcome] | None:
        """Write a plan made on known accounts in one statement, committed on its own,
        once the batches it was planned on are written.

        None when the accounts were not as planned (or the statement failed for
        another reason): nothing was written, and the batch is planned again.
        """
        if not planned.plan.operations:
            planned.written.set_result(True)
            return planned.plan.outcomes  # every command was refused as bad input
        written = key_taken = False
        lost: BaseException | None = None
        try:
            for before in planned.after:  # not gather: that would cost a loop step more
                if not await before:
                    return None  # planned on a batch that was not written
            async with self._batch_connection() as connection:
                operation_ids = await write_planned_batch(connection, planned)
            written = True
        except _CONNECTION_LOST as error:
            lost = error
        except asyncpg.exceptions.UniqueViolationError:
            key_taken = True  # a retried key, or a claim held: the locking way reads keys
        except asyncpg.exceptions.LockNotAvailableError as error:
            raise self._locked_too_long(error) from error  # the locking way would wait again
        except _CANCELLED as error:  # rolled back; the locking way would wait again too
            raise self._batch_cancelled(error) from error
        except _UNSTORABLE_TEXT:
            raise  # a request's text, no stale view: apply refuses the commands holding it
        except asyncpg.PostgresError:
            pass  # the view was stale (or the locking way will meet the same error)
        finally:
            # Before anything else runs: a batch planned on this one is waiting.
            planned.written.set_result(written)
            if not written:
                self._accounts.forget_states(planned.keys)
        try:
            if isinstance(lost, TimeoutError):
                # Silent: settling it would wait on the database as long again. The key
                # settles it, once the database answers (a batch written anew under it
                # gives its accounts new revisions, and this statement, should it run,
                # fails them).
                raise self._outcome_unknown(lost) from lost
            if lost is not None:
                return await self._settle_planned(commands, planned.plan)
        finally:
            lost = None  # raised through this frame, it holds it, and the plan, in a cycle
        if key_taken:
            self.stale_views.record_key_taken()
        else:
            self.stale_views.record(failed=not written)
        if not written:
            return None
        self._log_writes_taken()
        plan = planned.plan
        for operation, operation_id in zip(plan.operations, operation_ids, strict=True):
            operation.id = operation_id
        plan.resolve_ids()
        self._claims.remember(plan.claims)
        return plan.outcomes

    async def _settle_planned(self, commands: Sequence[Command], plan: BatchPlan) -> list[Outcome]:
        """The connection broke while a planned batch's one statement was in flight:
        it may have committed or may yet. The batch is applied again the way that
        locks first (waiting for that statement's row locks if it holds them) and
        reads the keys: each key applies once, and an operation found already
        written with this plan's time was this batch's own, so it is no replay.
        """
        # A pooled connection the same cut ended, or a deadlock: each try reads the keys,
        # so tried again at once on another, each still applies once.
        applying = AsyncRetrying(
            retry=retry_if_exception_type(_SETTLE_AGAIN),
            stop=stop_after_delay(self._settle_timeout_seconds),
            reraise=True,
        )
        try:
            outcomes: list[Outcome] = await applying(self._apply_on_a_connection, commands)
        except _SETTLE_AGAIN as error:
            # Not kept in a local: raised through this frame, it would hold it.
            lost = isinstance(error, _CONNECTION_LOST)
            raise self._outcome_unknown(error if lost else None) from error
        except (KopilkaError, KeyAlreadyUsed) as error:
            raise self._outcome_unknown() from error
        planned_at = plan.operations[0].created_at
        # A key given twice in the batch (a caller's retry queued beside its first try):
        # its second is a replay still, as the plan had it.
        repeats = {index for index, _ in plan.pending_replays}
        return [
            replace(outcome, replayed=False)
            if isinstance(outcome, Operation)
            and outcome.created_at == planned_at
            and index not in repeats
            else outcome
            for index, outcome in enumerate(outcomes)
        ]

    async def _apply_on_a_connection(self, commands: Sequence[Command]) -> list[Outcome]:
        async with self._connection() as connection:
            return await self._apply_once(connection, commands, check_keys=True)

    async def _apply_once(
        self, connection: Connection, commands: Sequence[Command], *, check_keys: bool
    ) -> list[Outcome]:
        keys = accounts_touched(commands)
        # Until this batch is done its accounts are not as last seen: a batch that
        # touches them meanwhile is planned after it, rather than fail for them.
        self._accounts.forget_states(keys)
        transaction = connection.transaction()
        try:
            await transaction.start()
            sandboxes = sandbox_ledgers(commands)
            closed = await closed_sandboxes(connection, sandboxes) if sandboxes else ()
            accounts, revisions, latest_entry_at = await self._accounts.lock(connection, keys)
            folded = namesake_keys(keys, accounts)
            namesakes = await load_namesakes(connection, folded) if folded else None
            if latest_entry_at is not None:
                # Another process, its clock ahead of ours, may have written them last.
                # Batches planned on what this one leaves are later still.
                self._clock.not_before(latest_entry_at)
            # Floors and caps as read, to spot the ones SetLimits changes (if any may).
            limits = (
                {a.id: (a.min_balance_cents, a.max_balance_cents) for a in accounts.values()}
                if any(isinstance(command, SetLimits) for command in commands)
                else None
            )
            known: KnownKeys = {}
            claims = claimed_keys(commands)
            # A claimed key that names a money operation is taken (claims are few, so
            # their keys are always read); a money key that names a claim is found by
            # the write.
            keys = operation_keys(commands) | claims if check_keys else claims
            if keys:
                # Operations last: should two processes have both applied and refused
                # one key at once, the applied operation is the answer that stands.
                known.update(await load_refusals(connection, keys))
                known.update(await load_operations(connection, keys))
            known_claims = await load_claims(connection, keys) if keys else None
            # Taken after the locks: a batch that waited for another one's accounts is
            # later in time too, so per-account time order is application order.
            now = self._clock.now()
            plan = plan_batch(commands, accounts, known, now, known_claims, closed, namesakes)
            if plan.refusals:
                revisions.update(await hold_refused_accounts(connection, plan, accounts))
            if not check_keys and await refusal_may_be_a_retry(connection, commands, plan):
                raise KeyAlreadyUsed
            transaction_id, written = await write_plan(connection, plan, limits)
            revisions.update(written)
        except BaseException as error:
            if isinstance(error, _CONNECTION_LOST):
                # Before COMMIT nothing is applied: the server rolls back a lost session.
                self._lost(connection, error)
                if isinstance(error, TimeoutError):
                    # Silent, not closed: not tried again, as each try may wait as long
                    # (a new connection to a server that has stalled, or rows this
                    # session still holds).
                    raise self._unavailable(error) from error
                raise RetryableStoreError(f"{type(error).__name__}: {error}") from error
            await _rollback_quietly(transaction)
            if isinstance(error, asyncpg.exceptions.LockNotAvailableError):
                raise self._locked_too_long(error) from error
            if isinstance(error, _CANCELLED):
                raise self._batch_cancelled(error) from error
            if isinstance(error, _TRANSIENT):
                raise RetryableStoreError(f"{type(error).__name__}: {error}") from error
            raise
        try:
            await transaction.commit()
        except _CONNECTION_LOST as error:
            self._lost(connection, error)
            if transaction_id is None:
                return plan.outcomes  # nothing was written: the outcome is the same
            outcomes = await self._settle(transaction_id, plan)
        except _CANCELLED as error:  # in a deferred trigger: not committed
            raise self._batch_cancelled(error) from error
        except asyncpg.PostgresError as error:
            raise RetryableStoreError(f"{type(error).__name__}: {error}") from error
        else:
            outcomes = plan.outcomes
        if transaction_id is not None:
            # Committed. A batch that wrote nothing (a replay, its operations read) ends
            # no spell: a retried key answers so on a full disk too.
            self._log_writes_taken()
        self._accounts.remember([*accounts.values(), *plan.new_accounts], revisions)
        if known_claims:
            self._claims.remember_read(known_claims)  # with this plan's own, now standing
        return outcomes

    async def _settle(self, transaction_id: str, plan: BatchPlan) -> list[Outcome]:
        """The connection broke during COMMIT: ask the server whether it committed.

        Committed: the plan's outcomes are exactly what was written. Aborted: nothing
        was, and the engine may retry. Server away, or still busy with that COMMIT
        past the deadline: the callers are told at once to retry with the same
        idempotency keys, which never apply twice (waiting longer would hold up every
        caller queued behind this batch too).
        """
        in_progress = 0  # answers "in progress" so far, each waited for longer

        def pause(state: RetryCallState) -> float:
            # A pooled connection the same cut ended (all kopilka's sessions terminated):
            # asked on another at once, a new one at last; the server away is Unavailable
            # at the connecting. The question cancelled, the COMMIT's fate is as unknown:
            # asked again (no outage to log for it). A COMMIT still in progress: asked
            # again after 10, 20, 40 ... 200 ms, while the next answer may come in time.
            nonlocal in_progress
            if state.outcome is None or state.outcome.failed:
                return 0.0
            in_progress += 1
            return float(min(0.01 * 2 ** (in_progress - 1), 0.2))

        asking = AsyncRetrying(
            retry=retry_if_exception_type((*_CONNECTION_LOST, _CANCELLED))
            | retry_if_result(lambda status: status == "in progress"),
            wait=pause,
            stop=stop_before_delay(self._settle_timeout_seconds),
            retry_error_callback=_last_answer,
        )
        try:
            status: str | None = await asking(self._commit_status, transaction_id)
        except (*_CONNECTION_LOST, _CANCELLED) as error:
            # Not kept in a local: raised through this frame, it would hold it.
            lost = isinstance(error, _CONNECTION_LOST)
            raise self._outcome_unknown(error if lost else None) from error
        except Unavailable as error:
            raise self._outcome_unknown() from error
        if status == "committed":
            return plan.outcomes
        if status == "aborted":
            raise RetryableStoreError("the connection broke during COMMIT; rolled back")
        raise self._outcome_unknown()  # still in progress when the time ran out

    async def _commit_status(self, transaction_id: str) -> str | None:
        async with self._connection() as connection:
            status: str | None = await connection.fetchval(
                "SELECT pg_xact_status($1::text::xid8)",
                transaction_id,
                # A new connection may be as silent as the one that lost the COMMIT.
                timeout=self._settle_timeout_seconds,
            )
            return status

    def _outcome_unknown(self, error: BaseException | None = None) -> Unavailable:
        if error is not None:
            self._log_outage(error)
        return Unavailable(
            "outcome_unknown", f"lost the database while committing{NOT_KNOWN}{RETRY_UNDER_THE_KEY}"
        )

    # -- reads ----------------------------------------------------------------

    async def _read(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """Run a read; once more on a fresh connection if a pooled one had gone stale."""
        try:
            with contextlib.suppress(*_CONNECTION_LOST):
                async with self._connection(reading=True) as connection:
                    return await work(connection)
        except _UNSTORABLE_TEXT as error:  # a name no row of this database can hold
            raise _unstorable(error) from error
        except _DATABASE_REFUSED as error:
            raise self._refused(error) from error
        except _TRANSIENT as error:
            raise _busy(error) from error
        except _CANCELLED as error:
            raise _cancelled(error) from error
        return await self._once(work, reading=True)

    def _locked_too_long(self, error: BaseException) -> Unavailable:
        """A batch that waited lock_timeout for an account another session holds (a
        transaction left open by hand, a frozen process): not retried, as a deadlock is,
        for each try would wait as long again and hold one of the process's few batch
        slots, and with them every other account's writes, for minutes."""
        logger.warning("a batch waited past lock_timeout for a row lock: %s", error)
        return unapplied(
            "store_busy",
            # Said to every request of the batch, those of other accounts applied with it too.
            "the database is busy: an account of this request, or of another applied with it,"
            f" has been locked by another session for over {self._lock_timeout_seconds:g} s;"
            " nothing was changed, try again",
        )

    def _batch_cancelled(self, error: BaseException) -> Unavailable:
        """A batch whose statement the database cancelled (_CANCELLED): rolled back, and
        not retried, as a deadlock is: the same statement_timeout would end each try
        as late, while the batch holds one of the process's few batch slots."""
        logger.warning("the database cancelled a batch's statement: %s", _first_line(error))
        return unapplied(
            "store_busy",
            # Said to every request of the batch, those of other accounts applied with it too.
            "the database cancelled the writing of this request, or of another applied with"
            f" it ({_first_line(error)}); nothing was changed, try again",
        )

    async def _write(
        self, work: Callable[[Connection], Awaitable[T]], *, repeatable: bool = False
    ) -> T:
        """Once only: a connection lost once the work was sent may hide a committed write,
        and the caller is told that whether it was applied is not known (a token made is
        looked for before another is made). Done twice, a `repeatable` one (a mark, a
        drop) is done once: lost, it is only to be tried again."""
        # Ends no spell of refused writes: these few rows (a sweep that finds nothing, a
        # sandbox's row rewritten in place) may go through while a full disk still
        # refuses the batches, which say when it has passed.
        return await self._once(work, lost=self._try_again if repeatable else self._not_known)

    def _try_again(self, error: BaseException) -> Unavailable:
        return self._unavailable(error, reading=True)

    def _not_known(self, error: BaseException) -> Unavailable:
        self._log_outage(error)
        return Unavailable(
            "outcome_unknown", f"lost the database while writing this{NOT_KNOWN}{LOOK_FIRST}"
        )

    async def _once(
        self,
        work: Callable[[Connection], Awaitable[T]],
        *,
        reading: bool = False,
        lost: Callable[[BaseException], Unavailable] | None = None,
    ) -> T:
        try:
            async with self._connection(reading=reading) as connection:
                return await work(connection)
        except _CONNECTION_LOST as error:
            if lost is not None:
                raise lost(error) from error
            raise self._unavailable(error, reading=reading) from error
        except _UNSTORABLE_TEXT as error:
            raise _unstorable(error) from error
        except _DATABASE_REFUSED as error:
            raise self._refused(error) from error
        except _TRANSIENT as error:
            raise _busy(error) from error
        except _CANCELLED as error:
            raise _cancelled(error) from error

    async def ping(self) -> None:
        """A trivial read on a pooled connection. Its caller bounds the wait (a readiness
        check, and its message, has one figure); a connection given up on (cancelled)
        is closed, not given back: handing back one whose query is still out would wait
        for the server that is not answering. With every pooled connection in use, it
        is asked on one of its own instead: a busy pool says nothing of the database."""
        pool = self._pool
        if pool is not None and _every_connection_in_use(pool):
            silent = await self._asked_apart.answer()
            if silent is not None:
                raise self._unavailable(silent, reading=True) from silent
            return
        connection = await self._acquire(reading=True)
        try:
            await connection.fetchval("SELECT 1")
        except BaseException as error:
            _discard(connection)
            with contextlib.suppress(*_CONNECTION_LOST):
                await pool.release(connection)  # its slot; at once, as it is closed
            if isinstance(error, _CONNECTION_LOST):
                raise self._unavailable(error, reading=True) from error
            if isinstance(error, _CANCELLED):
                raise _cancelled(error) from error
            raise
        else:
            self._log_recovery()
        await pool.release(connection)

    async def _ask_apart(self) -> Answer:
        """A trivial read on a connection opened for it, and closed at once, outside the
        pool (one more than the pool's, for a moment): None when the database answered
        within _ASKED_APART_SECONDS (or the connect timeout, if shorter), else what it
        met. An error the server answered the read with (it was cancelled) is an answer."""
        try:
            async with asyncio.timeout(min(_ASKED_APART_SECONDS, self._connect_timeout_seconds)):
                connection = await asyncpg.connect(self._url, server_settings=dict(_SESSION))
                try:
                    with contextlib.suppress(_CANCELLED):
                        await connection.fetchval("SELECT 1")
                finally:
                    connection.terminate()
        except (*_CONNECTION_LOST, asyncpg.PostgresError) as error:
            met: BaseException = error  # asyncpg's errors are untyped
            return met
        self._log_recovery()
        return None

    async def get_account(self, ledger: str, client: str) -> Account | None:
        try:
            row = await self._read(
                lambda connection: connection.fetchrow(
                    f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE ledger = $1 AND client = $2",
                    ledger,
                    client,
                )
            )
        except InvalidInput as refusal:
            assert refusal.code == "invalid_text", refusal
            return None  # a name (or ledger) no row of this database can hold: no account
        return None if row is None else _account(row)

    async def give_missing_folds(self) -> int:
        """`kopilka init`: postgres_migrate.give_missing_folds; lost, only to be done again."""
        return await self._write(give_missing_folds, repeatable=True)

    async def namesake(self, ledger: str, client: str) -> str | None:
        folded = folded_name(client).encode()  # as kept: see migration 9
        try:
            name = await self._read(
                lambda connection: connection.fetchval(
                    "SELECT client FROM accounts WHERE ledger = $1 AND folded = $2", ledger, folded
                )
            )
        except InvalidInput as refusal:
            assert refusal.code == "invalid_text", refusal
            return None  # a ledger no row of this database can hold: no account
        return None if name is None else str(name)

    async def list_accounts(
        self, ledger: str, *, after_client: str | None = None, limit: int = 1_000
    ) -> list[Account]:
        rows = await self._read(
            lambda connection: connection.fetch(
                # In code point order, the stores' one order, whatever the collation.
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts"
                ' WHERE ledger = $1 AND client COLLATE "C" > $2'
                ' ORDER BY client COLLATE "C" LIMIT $3',
                ledger,
                after_client or "",
                limit,
            )
        )
        return [_account(row) for row in rows]

    async def settle_history(self, account: Account, through: datetime) -> None:
        """A new revision for the account: the update waits for the writer holding its
        row, if any, and a batch planned on the old revision (its time taken then) fails
        its check and is planned again, taking a later time. Every other batch locks the
        row before it takes its time."""
        self._clock.not_before(through)
        await self._write(
            lambda connection: connection.execute(
                "UPDATE accounts SET revision = $2 WHERE id = $1",
                account.id,
                random.getrandbits(63),
            ),
            repeatable=True,
        )
        self._accounts.forget_states({(account.ledger, account.client)})

    async def last_entry(self, account_id: int, before: datetime) -> EntryMark | None:
        row = await self._read(
            lambda connection: connection.fetchrow(
                "SELECT id, created_at, balance_after FROM entries"
                " WHERE account_id = $1 AND created_at < $2"
                " ORDER BY created_at DESC, id DESC LIMIT 1",
                account_id,
                before,
            )
        )
        return None if row is None else EntryMark(*row)

    async def statement_page(
        self,
        account_id: int,
        since: datetime | None,
        till: datetime,
        after_entry_id: int,
        limit: int,
    ) -> list[StatementLine]:
        rows = await self._read(
            lambda connection: connection.fetch(
                "SELECT e.id, e.created_at, o.kind, o.description, e.amount, e.balance_after,"
                " CASE WHEN e.amount < 0 THEN c.client ELSE d.client END, o.id"
                " FROM entries e JOIN operations o ON o.id = e.operation_id"
                " LEFT JOIN accounts d ON d.id = o.debit_account_id"
                " LEFT JOIN accounts c ON c.id = o.credit_account_id"
                " WHERE e.account_id = $1 AND (e.created_at, e.id) > ($2, $4)"
                " AND e.created_at <= $3 ORDER BY e.created_at, e.id LIMIT $5",
                account_id,
                _BEGINNING if since is None else since,
                till,
                after_entry_id,
                limit,
            )
        )
        return [StatementLine(*row) for row in rows]

    async def drop_sandbox(self, ledger: str) -> bool:
        if not await self.end_sandbox(ledger):
            return False
        await self._empty([ledger])
        return True

    # -- sandboxes ------------------------------------------------------------

    async def open_sandbox(
        self, ledger: str, now: datetime, sandboxes_max: int, owner: str = "", owner_max: int = 0
    ) -> bool:
        async def open_one(connection: Connection) -> str:
            async with connection.transaction():
                # One opening at a time, everywhere: two counting at once would both find
                # room for one more, and both take it.
                await connection.execute("SELECT pg_advisory_xact_lock($1)", SANDBOXES_LOCK_KEY)
                status: str = await connection.execute(
                    "INSERT INTO sandboxes (ledger, last_used) SELECT $1, $2"
                    " WHERE (SELECT count(*) FROM sandboxes) < $3"
                    " AND ($5 = 0 OR (SELECT count(*) FROM sandboxes"
                    " WHERE starts_with(ledger, $4)) < $5)",
                    ledger,
                    now,
                    sandboxes_max,
                    owner,
                    owner_max,
                )
                return status

        return await self._write(open_one) == "INSERT 0 1"

    async def sandbox_is_open(self, ledger: str) -> bool:
        found = await self._read(
            lambda connection: connection.fetchval(
                "SELECT 1 FROM sandboxes WHERE ledger = $1", ledger
            )
        )
        return found is not None

    async def touch_sandbox(self, ledger: str, now: datetime) -> bool:
        status = await self._write(
            lambda connection: connection.execute(
                "UPDATE sandboxes SET last_used = greatest(last_used, $2) WHERE ledger = $1",
                ledger,
                now,
            ),
            repeatable=True,
        )
        return bool(status == "UPDATE 1")

    async def end_sandbox(self, ledger: str) -> bool:
        async def end(connection: Connection) -> bool:
            # Waits for the batches that found it open (they hold its row FOR KEY SHARE);
            # any batch after finds it ended.
            status = await connection.execute("DELETE FROM sandboxes WHERE ledger = $1", ledger)
            return bool(status == "DELETE 1")

        ended = await self._write(end, repeatable=True)
        self._forget_ledgers([ledger] if ended else [])
        return ended

    async def end_idle_sandboxes(self, unused_since: datetime) -> list[str]:
        async def end(connection: Connection) -> list[str]:
            rows = await connection.fetch(
                "DELETE FROM sandboxes WHERE last_used < $1 RETURNING ledger", unused_since
            )
            return [row[0] for row in rows]

        idle: list[str] = await self._write(end, repeatable=True)
        self._forget_ledgers(idle)
        return idle

    async def drop_idle_sandboxes(self, unused_since: datetime) -> list[str]:
        idle = await self.end_idle_sandboxes(unused_since)
        await self._empty(idle)
        return idle

    async def empty_ended_sandboxes(self) -> list[str]:
        ended = await self._read(ended_with_rows)
        await self._empty(ended)
        return ended

    async def _empty(self, ledgers: list[str]) -> None:
        """The rows of these ended sandboxes, a slice per transaction
        (postgres_dropping.py)."""
        for ledger in ledgers:
            emptying = Emptying(ledger, self.sandbox_slice_rows)

            async def step(connection: Connection, emptying: Emptying = emptying) -> bool:
                async with connection.transaction():
                    return await emptying.step(connection)

            while not await self._write(step, repeatable=True):
                pass
        # A batch refused in an ended sandbox may have read its accounts since.
        self._forget_ledgers(ledgers)

    def _forget_ledgers(self, ledgers: list[str]) -> None:
        for ledger in ledgers:
            self._accounts.forget_ledger(ledger)
            self._claims.forget_ledger(ledger)

    # -- tokens ---------------------------------------------------------------

    async def put_token(self, record: TokenRecord) -> None:
        await self._write(
            lambda connection: connection.execute(
                f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                record.id,
                record.token_hash,
                record.role,
                record.client,
                record.ledger,
                record.created_at,
                record.revoked,
            )
        )

    async def get_token(self, token_id: str) -> TokenRecord | None:
        row = await self._read(
            lambda connection: connection.fetchrow(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE id = $1", token_id
            )
        )
        return None if row is None else _token(row)

    async def revoke_token(self, token_id: str) -> bool:
        status = await self._write(
            lambda connection: connection.execute(
                "UPDATE tokens SET revoked = true WHERE id = $1 AND NOT revoked", token_id
            )
        )
        return _row_count(status) == 1

    async def list_tokens(self) -> list[TokenRecord]:
        rows = await self._read(
            lambda connection: connection.fetch(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"
            )
        )
        return [_token(row) for row in rows]


def _discard(connection: Connection) -> None:
    """Close a connection that failed as lost, so the pool never hands it out again:
    asyncpg may not have read the socket's close yet, or its protocol may be mid-way."""
    # Already closed: asyncpg has detached it and returned its slot to the pool.
    with contextlib.suppress(asyncpg.InterfaceError):
        connection.terminate()


def _open(connection: Connection) -> bool:
    """Not closed, and not given back (a lost connection is, as it is closed)."""
    try:
        return not connection.is_closed()
    except asyncpg.InterfaceError:  # released: the proxy no longer has a connection
        return False


async def _rollback_quietly(transaction: Any) -> None:
    """Roll back if possible; a broken connection has rolled back on the server anyway."""
    with contextlib.suppress(Exception):
        await transaction.rollback()


def _last_answer(state: RetryCallState) -> Any:
    """What the last try gave, or the error it raised, once tries stop."""
    assert state.outcome is not None
    return state.outcome.result()


def _without_a_bare_slash(url: str) -> str:
    """The URL as the driver is to read it: one whose path is a bare "/" names no
    database, and then libpq (psql) takes `?dbname=` or PGDATABASE, which the driver read
    only where the URL had no path at all."""
    before_query, mark, query = url.partition("?")
    if before_query.endswith("/") and urlsplit(url).path == "/":
        return before_query[:-1] + mark + query
    return url
