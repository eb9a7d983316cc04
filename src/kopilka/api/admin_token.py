"""The admin token a server keeps in KOPILKA_HOME, for the local CLI to read.

Every running server holds a shared lock on a file beside the token for as long as it
runs. A server whose database does not honour the token there may replace it only
while no other server holds that lock: otherwise the other server, on another
database, would lose the token its local shells use.

Servers start in the home in turn, by a lock on the home itself, held from before the
store is opened until the token is kept or written: a server of the token's database
still opening its store keeps one of another database from replacing the token, and
servers of one database started together each find the token the first one wrote.
Holding the shared lock from its start instead, each of those had kept the others from
writing one, and all but one were refused as if on another database.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path

from kopilka.api.auth import new_token_record
from kopilka.errors import Conflict, InvalidInput, Unavailable
from kopilka.home import keep_private, make_home
from kopilka.store import keeps_nothing, sqlite_path
from kopilka.store.protocol import Store
from kopilka.store.sqlite_files import journal_without_its_file
from kopilka.tokens import secret_matches, token_id_of

# A server's turn lasts while it opens its store (upgrading it, perhaps) and looks at the
# token: a second or so, unless its database is slow to answer.
_TURN_WAIT_SECONDS_MAX = 60.0
# One open lock per token file, held until this process ends.
_held: dict[Path, int] = {}
# The home's turn, where this process holds it: from prepare_admin_token to the end of
# ensure_admin_token.
_turns: dict[Path, int] = {}
logger = logging.getLogger(__name__)


def prepare_admin_token(
    path: Path, stop_asked: Callable[[], bool] = lambda: False, *, db: str | None = None
) -> bool:
    """What keeping the admin token in `path` needs of the home, checked before the store
    is opened, so that a server that cannot keep it stops with nothing made (no new
    database): the home made, this process's turn in it taken (held until
    ensure_admin_token), a token there readable, and room to write a new one (written
    where there is none, or where the database, which only opening it tells, does not
    honour the one there). `db`: the server's database; one not there yet (looked for
    once the turn is taken: a server of the same one may have made it meanwhile)
    honours no token, so another server running in the home refuses it now (it was
    refused once it had made its database, empty, where a mistyped path had led it).
    False: a stop was asked for while it waited for its turn."""
    make_home(path.parent)
    if not _take_turn(path.parent, stop_asked):
        return False
    try:
        _check_room(path)
        if db is not None and _made_by_opening(db):
            lock = _hold_file(path)
            if not _try_lock(lock, fcntl.LOCK_EX):
                made = "keeps no token" if keeps_nothing(db) else "is not there yet (check --db)"
                raise _home_in_use(path, f"is not honoured by the database {db}, which {made},")
            fcntl.flock(lock, fcntl.LOCK_UN)  # no server runs here: none to refuse it
    except BaseException:
        _end_turn(path.parent)
        raise
    return True


def _check_room(path: Path) -> None:
    _hold_file(path)  # the lock file can be made
    if path.is_dir():
        raise InvalidInput(
            "invalid_setting", f"cannot write the admin token {path}: a directory is in the way"
        )
    if path.is_file():
        _read_token(path)
    probe = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as error:
        raise InvalidInput(
            "invalid_setting", f"cannot write the admin token {path}: {error.strerror}"
        ) from error


async def ensure_admin_token(store: Store, path: Path) -> bool:
    """Keep a working admin token in `path` (mode 0600); True when a new one was made.

    The file's token is kept while the store still honours it, so restarting
    the server does not invalidate a shell that already read it.
    """
    make_home(path.parent)
    _take_turn(path.parent)  # taken already where prepared
    try:
        lock = _hold_file(path)
        fcntl.flock(lock, fcntl.LOCK_SH)  # no one holds it alone outside their turn
        return await _keep_or_write(store, path, lock)
    finally:
        _end_turn(path.parent)


async def _keep_or_write(store: Store, path: Path, lock: int) -> bool:
    if await _honoured(store, path):
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            # Made private again, it is kept; but someone may have read it meanwhile.
            logger.warning(
                "the admin token in %s was readable by others; it is private again, but"
                " may have been read: revoke it (kopilka token revoke %s) and restart the"
                " server to have a new one written",
                path,
                token_id_of(path.read_text(encoding="ascii").strip()),
            )
            path.chmod(0o600)
        return False
    if not _try_lock(lock, fcntl.LOCK_EX):
        # Which database the other server has is not known here: if another, a new
        # token would leave its shells without theirs.
        raise _home_in_use(path)
    try:
        await _write_new_token(store, path)
    finally:
        fcntl.flock(lock, fcntl.LOCK_SH)
    return True


async def _write_new_token(store: Store, path: Path) -> None:
    """A new admin token, in the store and in `path`, or in neither: a token whose secret
    could not be written down is revoked, and no copy of it is left on disk."""
    record, secret = new_token_record("admin", None)
    temporary = path.with_name(f".{path.name}.{record.id}")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secret + "\n")
        await store.put_token(record)
        try:
            os.replace(temporary, path)  # atomic: a reader sees the old token or the new one
        except OSError:
            await store.revoke_token(record.id)
            raise
    except OSError as error:
        reason = "a directory is in the way" if path.is_dir() else error.strerror
        raise InvalidInput(
            "invalid_setting", f"cannot write the admin token {path}: {reason}"
        ) from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


async def _honoured(store: Store, path: Path) -> bool:
    """Whether the file holds an admin token the store honours: anything else there (bytes
    that are no text, another role's token put in its place) is replaced."""
    if not path.is_file():
        return False
    secret = _read_token(path)
    if secret is None:
        return False
    token_id = token_id_of(secret)
    record = None if token_id is None else await store.get_token(token_id)
    return (
        record is not None
        and record.role == "admin"
        and not record.revoked
        and secret_matches(secret, record)
    )


def _read_token(path: Path) -> str | None:
    """The token in the file; None for bytes that are no token (a token is ASCII)."""
    try:
        return path.read_text(encoding="ascii").strip()
    except UnicodeDecodeError:
        return None
    except OSError as error:  # made unreadable to the server (restored as root, say)
        raise InvalidInput(
            "invalid_setting", f"cannot read the admin token {path}: {error.strerror}"
        ) from error


def _hold_file(path: Path) -> int:
    """This process's lock file of the token, opened once and kept open (its shared lock,
    once taken, held until the process ends)."""
    lock = _held.get(path)
    if lock is None:
        try:
            lock = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            keep_private(lock)
        except OSError as error:
            raise _cannot_keep(path.parent, error) from error
        os.set_inheritable(lock, False)
        _held[path] = lock
    return lock


def _take_turn(home: Path, stop_asked: Callable[[], bool] = lambda: False) -> bool:
    """This process's turn in the home, waited for while another server starts there;
    False if a stop was asked for meanwhile."""
    if home in _turns:
        return True
    try:
        turn = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise _cannot_keep(home, error) from error
    deadline = time.monotonic() + _TURN_WAIT_SECONDS_MAX
    while not _try_lock(turn, fcntl.LOCK_EX):
        if stop_asked() or time.monotonic() > deadline:
            os.close(turn)
            if stop_asked():
                return False
            raise Unavailable(
                "home_locked",
                f"another kopilka server has been starting in {home} for over"
                f" {_TURN_WAIT_SECONDS_MAX:.0f} s: start this one once it has started",
            )
        time.sleep(0.01)
    _turns[home] = turn
    return True


def _end_turn(home: Path) -> None:
    turn = _turns.pop(home, None)
    if turn is not None:
        os.close(turn)  # and its lock with it


def _made_by_opening(db: str) -> bool:
    """Whether opening the database makes it: a SQLite file not there yet, or one kept
    in memory (whether a PostgreSQL database is new, only opening it tells)."""
    if keeps_nothing(db):
        return True
    path = sqlite_path(db)
    if path is None:
        return False
    try:
        os.stat(path)
    except FileNotFoundError:
        # Its journal left there: a ledger removed, which opening it refuses, and says.
        return journal_without_its_file(path) is None
    except OSError:  # not to be looked at (a directory not to be searched): the store says
        pass
    return False


def _home_in_use(path: Path, why: str = "is missing or not honoured by this database,") -> Conflict:
    return Conflict(
        "home_in_use",
        f"the admin token in {path} {why} and another kopilka server uses {path.parent}:"
        " stop it first (a new token is then written), or give each database a"
        " KOPILKA_HOME of its own",
    )


def _cannot_keep(home: Path, error: OSError) -> InvalidInput:
    return InvalidInput(
        "invalid_setting", f"cannot keep the admin token in {home}: {error.strerror}"
    )


def _try_lock(lock: int, kind: int) -> bool:
    try:
        fcntl.flock(lock, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
