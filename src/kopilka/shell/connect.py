"""Which Bank the shell and the one-shot commands talk to.

A server when a URL is given (flag, KOPILKA_URL or kopilka.toml); otherwise
the engine in this process over the configured database, or over memory for
a sandbox.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kopilka.bank import Bank, EmbeddedBank
from kopilka.errors import InvalidInput, NotFound, Unavailable
from kopilka.home import ADMIN_TOKEN_FILE, check_home, make_home
from kopilka.redaction import redact_url
from kopilka.settings import Settings
from kopilka.store import open_store, sqlite_path, upgraded
from kopilka.store.protocol import Store
from kopilka.store.sqlite_files import journal_without_its_file


class ConnectBank(Protocol):
    """`kopilka.client.connect_bank`: a Bank that speaks to a server over HTTP."""

    def __call__(
        self,
        url: str,
        *,
        token: str | None = None,
        sandbox: bool = False,
        ledger: str | None = None,
    ) -> Bank: ...


@dataclass(frozen=True, slots=True)
class Target:
    """Where commands go, as settled from flags, environment and file."""

    settings: Settings
    url: str | None
    token: str | None
    sandbox: bool

    def describe(self, ledger: str | None = None) -> str:
        """Where commands go; `ledger`: the one a server said this session uses."""
        if self.url is not None:
            from kopilka.client_url import normalize_url  # loaded already: the bank is a client

            where = redact_url(normalize_url(self.url))  # a bare port, as it is reached
        elif self.sandbox:
            where = "a sandbox in memory (gone when the shell ends)"
        else:
            where = redact_url(self.settings.db)
        described = f"{where}, ledger {ledger or self.settings.ledger!r}"
        if self.url is not None and self.sandbox:
            # As the embedded sandbox says it: what is done here is not kept.
            described += " (a sandbox on the server, dropped when the shell ends)"
        return described


def open_bank(target: Target, *, makes_none: bool = False) -> Bank:
    """The bank the target names. `makes_none`: for a command that could do nothing in a
    database not made yet (it reads, or acts on accounts open already), a SQLite file
    given by name that does not exist is an error (a mistyped --db), not an empty ledger
    made there that says every client is unknown."""
    if target.url is not None:
        return _connect(target)
    refuse_token_without_server(target.token, target.settings)
    if target.sandbox:
        return EmbeddedBank("memory:", target.settings.ledger)
    db = target.settings.db
    if makes_none:
        refuse_a_home_never_written(target.settings)  # a server's home among them
    else:  # the shell and writes too: they made a ledger there
        refuse_a_servers_home(target.settings)
    with said_in_one_line(db):
        bank = EmbeddedBank(local_store(target.settings, makes_none), target.settings.ledger)
    bank.when_waiting = _say_waiting
    said = upgraded(bank.engine.store.schema_versions, redact_url(db))
    if said is not None:  # as `kopilka init` and a server say it: not done in silence
        with contextlib.suppress(OSError):
            print(said, file=sys.stderr)
    return bank


def _say_waiting() -> None:
    """After Ctrl-C, a write under way waited for (on PostgreSQL, behind a row's lock)."""
    with contextlib.suppress(OSError):
        print(
            "Waiting for the write under way to end; Ctrl-C again stops waiting (it may then"
            " still be applied)",
            file=sys.stderr,
            flush=True,
        )


@contextlib.contextmanager
def said_in_one_line(db: str) -> Iterator[None]:
    """What sqlite3 and the OS raise while a database is opened, as one line naming it.
    PostgreSQL's store words each of its failures itself; anything else is a bug, and
    shows as one (a catch-all read kopilka's own errors as the database's)."""
    try:
        yield
    except (OSError, sqlite3.Error) as error:
        raise Unavailable(
            "store_unavailable", f"cannot open the database {redact_url(db)}: {error}"
        ) from error


def open_bank_tried_first(target: Target, command: Callable[[Bank], object]) -> Bank:
    """The bank the target names, for a command that may make its ledger. Where there is
    none yet, the command is first run on an empty ledger in memory: refused there, it
    would be refused in the new one, and none is made. A refused first command gave a
    mistyped --db, or another application's PostgreSQL database, kopilka's tables, and
    every later command took it for a ledger."""
    if target.url is not None:
        return open_bank(target)
    try:
        return open_bank(target, makes_none=True)
    except NotFound as missing:
        # A server's home: a write made a ledger there beside its admin token, which
        # every later command then read for the server's.
        if missing.code != "database_not_found" or isinstance(missing, _ServersHome):
            raise
    trial = EmbeddedBank("memory:", target.settings.ledger)
    try:
        command(trial)
    finally:
        trial.close()
    return open_bank(target)


# A SQLite file with no tables is its first page, of at most 64 KiB: one larger holds
# something, and is not opened here a first time (every command opens it anyway).
_NO_TABLES_BYTES_MAX = 65_536


def _may_hold_a_ledger(path: Path) -> bool:
    """Whether the home's file may hold a ledger (a file of something else, or damaged,
    is said so when opened). An empty one, or a SQLite file with no tables, holds none:
    `sqlite3` leaves such a file at a path it is given that is not there (a backup run
    with the wrong home), and a read made a whole new ledger in it, which said every
    client was unknown."""
    if journal_without_its_file(str(path)) is not None:
        return True  # what is left of a ledger removed or emptied: opening it says so
    try:
        size = path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return False
    if size == 0:
        return False
    if size > _NO_TABLES_BYTES_MAX:  # a ledger, or something: opening it says which
        return True
    uri = path.absolute().as_uri() + "?mode=ro"  # looked at, never written
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as database:
            return database.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return True


def refuse_a_home_never_written(settings: Settings) -> None:
    """A mistyped KOPILKA_HOME read as a new, empty ledger, that said every client was
    unknown (and was made there): a command that could do nothing in it says where it
    looked. A home that will not do says why first."""
    home, given = settings.home, "KOPILKA_HOME" in os.environ
    if settings.db != str(home / "kopilka.db"):
        return
    try:
        if _may_hold_a_ledger(home / "kopilka.db"):
            return
        there = home.exists() or home.is_symlink()  # a link to nowhere: said so
    except OSError:  # a directory on the way that may not be searched
        there = True
    if there:
        make_home(home)  # a file in the way, another user's: said so (nothing is made)
        refuse_a_servers_home(settings)
    elif given:  # only its last directory would be made
        if not home.parent.exists():
            raise NotFound(
                "database_not_found",
                f"KOPILKA_HOME {home} does not exist, nor does {home.parent}: check KOPILKA_HOME",
            )
        if not home.parent.is_dir():
            make_home(home)  # said as a write is told: not a directory
    told = " (check KOPILKA_HOME)" if given else ""
    raise NotFound(
        "database_not_found",
        f"no ledger in {home} yet: nothing has been written there{told};"
        " a first deposit or `kopilka init` makes one",
    )


class _ServersHome(NotFound):
    """No ledger in a home whose admin token is a server's: it keeps its ledger elsewhere."""


def refuse_a_servers_home(settings: Settings) -> None:
    """A home holding a server's admin token and no ledger: the server keeps its ledger
    elsewhere (`--db memory:`, PostgreSQL), and a command run there without its --url
    meant it. One that made a ledger there had every later command read that ledger for
    the server's, and this refusal was never seen again."""
    home = settings.home
    if settings.db_chosen or settings.db != str(home / "kopilka.db"):
        return
    try:
        # The token first: a stat, where the ledger may be opened to be looked at.
        if not (home / ADMIN_TOKEN_FILE).exists() or _may_hold_a_ledger(home / "kopilka.db"):
            return
    except OSError:  # a directory on the way that may not be searched: said elsewhere
        return
    check_home(home)  # one that will not do says why first: init would say so next
    raise _ServersHome(
        "database_not_found",
        f"no ledger in {home}: the server whose admin token is there keeps its ledger"
        " elsewhere; give its --url, or its --db (`kopilka init` makes a ledger here)",
    )


def refuse_token_without_server(token: str | None, settings: Settings) -> None:
    """A token is for a server: given with none named, the command would run on this
    machine's own ledger, one no server sees, and say it was done. A server's URL given,
    but overridden by a database given at a stronger place, is said to be: it is set."""
    overridden = settings.url_overridden
    if token is not None:
        if overridden is not None:
            raise InvalidInput(
                "invalid_option",
                f"--token is for a server, but {overridden}: give the server's --url",
            )
        raise InvalidInput(
            "invalid_option", "--token is for a server: give its --url (or KOPILKA_URL)"
        )
    if "KOPILKA_TOKEN" not in os.environ:
        return
    if overridden is not None:
        unsent = f"{overridden}, so no server gets it: give the server's --url"
    else:
        unsent = "no server is named: give its --url (or KOPILKA_URL)"
    raise InvalidInput(
        "invalid_option",
        f"KOPILKA_TOKEN is set but {unsent},"
        " or unset KOPILKA_TOKEN to use the ledger on this machine",
    )


def local_store(settings: Settings, makes_none: bool) -> Store:
    """The settings' database, not yet opened. The home's is made on first use, reads
    too (its home checked first); another one named (--db) that is not there, or holds
    no ledger, is refused to a command that `makes_none`, and left as it was."""
    db = settings.db
    in_home = db == str(settings.home / "kopilka.db")
    if in_home:
        make_home(settings.home)
    elif makes_none:
        named = sqlite_path(db)
        # Its journal left there: a ledger removed, which opening it says.
        if named is not None and not Path(named).exists() and not journal_without_its_file(named):
            raise NotFound(
                "database_not_found",
                f"no database at {db}: nothing has been written there (check --db, KOPILKA_DB"
                " or the db in kopilka.toml)",
            )
    return open_store(db, create=in_home or not makes_none, embedded=True)


def _connect(target: Target) -> Bank:
    assert target.url is not None
    try:
        # Loaded only here: the embedded path needs none of the HTTP stack.
        module = importlib.import_module("kopilka.client")
    except ImportError as error:
        raise Unavailable(
            "client_unavailable", f"this installation cannot talk to a server: {error}"
        ) from error
    connect_bank: ConnectBank = module.connect_bank
    # A ledger given (main too) is asked for, and a token bound to another is refused;
    # none given, the token's own ledger applies. A sandbox is a ledger of its own: a
    # KOPILKA_LEDGER setting is for the sessions that name none (--ledger is refused).
    chosen = target.settings.ledger_chosen and not target.sandbox
    ledger = target.settings.ledger if chosen else None
    return connect_bank(target.url, token=target.token, sandbox=target.sandbox, ledger=ledger)
