"""How kopilka is configured.

Precedence: command-line flags, then environment variables (KOPILKA_*), then
the file `kopilka.toml` in the working directory, then the one in KOPILKA_HOME (or
only the file --config names), then defaults. A password inside a database URL is
never printed (see redaction.py); where KOPILKA_HOME is, and what it must be, is
home.py's.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import ipaddress
import os
import re
import stat
import tomllib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlunsplit

from kopilka.domain.rules import validate_chosen_ledger
from kopilka.errors import InvalidInput
from kopilka.home import (
    expand_tilde,
    home,
    home_from_variable,
    others_may_write,
    refuse_blank_variable,
)
from kopilka.redaction import cut_short, quoted
from kopilka.store import sqlite_path
from kopilka.urls import split_url

DEFAULT_HOST = "127.0.0.1"
# --config's help, where a command takes it: both default files are read, not one.
CONFIG_HELP = (
    "a settings file, read alone (default: KOPILKA_CONFIG, else kopilka.toml in"
    " KOPILKA_HOME and in the working directory, the latter's settings winning)"
)
DEFAULT_PORT = 8888
SANDBOX_IDLE_SECONDS_DEFAULT = 900.0
SANDBOX_IDLE_SECONDS_MAX = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Settings:
    # 'memory:', a SQLite path, or a postgresql:// URL, its password perhaps: not in the
    # settings' repr, which a traceback or a log line may show.
    db: str = field(repr=False)
    url: str | None  # a server's base URL: set means "talk to a server"
    host: str
    port: int
    workers: int
    ledger: str
    home: Path
    # The ledger was given (flag, environment or file), not the default: a server is
    # asked for it even when it is "main", rather than the token's own.
    ledger_chosen: bool = False
    # The database was given (flag, environment or file): the home's own file named so
    # is meant, a server's admin token beside it or not.
    db_chosen: bool = False
    # A server's URL given but overridden by a database given at a stronger place, as a
    # refusal says it ("--db overrides KOPILKA_URL"); None when none was.
    url_overridden: str | None = None
    # Per server process: open connections from one client address, seconds a client
    # may take to send a request's headers, and then its body, and seconds it may leave
    # the server waiting to write (not reading what it asked for).
    connections_per_client: int = 256
    header_seconds: float = 10.0
    body_seconds: float = 10.0
    write_seconds: float = 30.0
    # How long an unused sandbox ledger is kept before the server drops it.
    sandbox_idle_seconds: float = SANDBOX_IDLE_SECONDS_DEFAULT


# Control characters and line or paragraph separators: never part of a path meant.
_BREAKS = ("Cc", "Zl", "Zp")
# The variables that say where the ledger is, which one, and how to reach it.
_WHERE_VARIABLES = (
    "KOPILKA_HOME",
    "KOPILKA_CONFIG",
    "KOPILKA_DB",
    "KOPILKA_URL",
    "KOPILKA_LEDGER",
    "KOPILKA_DB_PASSWORD_FILE",
)
# Of those, the ones a server does not read.
_NOT_SERVED = ("KOPILKA_URL", "KOPILKA_LEDGER")
# The ones only a server reads, refused blank as well: taken as not given, an empty
# KOPILKA_PORT served on the default port.
_SERVED_VARIABLES = (
    "KOPILKA_HOST",
    "KOPILKA_PORT",
    "KOPILKA_WORKERS",
    "KOPILKA_CONNECTIONS_PER_CLIENT",
    "KOPILKA_HEADER_SECONDS",
    "KOPILKA_BODY_SECONDS",
    "KOPILKA_WRITE_SECONDS",
    "KOPILKA_SANDBOX_IDLE_SECONDS",
)
# The others kopilka reads: a client's token, and what a server hands its workers.
_SET_BY_USERS = (*_WHERE_VARIABLES, *_SERVED_VARIABLES, "KOPILKA_TOKEN")
_READ_VARIABLES = frozenset((*_SET_BY_USERS, "KOPILKA_SUPERVISOR_PID", "KOPILKA_METRICS_DIRECTORY"))
# What Kubernetes sets in every pod beside a Service whose name begins so (kopilka,
# kopilka-db: KOPILKA_DB_SERVICE_HOST, KOPILKA_DB_PORT, ...): no one's slip to warn of.
_SERVICE_LINK = re.compile(
    r"KOPILKA_(?:\w+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_\w+)?|PORT(?:_\d+_(?:TCP|UDP|SCTP)\w*)?)"
)
# Its NAME_PORT holds a URL (tcp://10.0.0.12:8888); a bare number there is someone's port
# for kopilka, given under a name it does not read (..._LISTEN_PORT).
_SERVICE_PORT_ALONE = re.compile(r"KOPILKA_(?!\w*SERVICE_PORT$)\w+_PORT")


def _set_by_kubernetes(name: str, value: str) -> bool:
    if not _SERVICE_LINK.fullmatch(name):
        return False
    return not _SERVICE_PORT_ALONE.fullmatch(name) or "://" in value


def unread_variable_warnings(environ: Mapping[str, str]) -> list[str]:
    """A warning for each KOPILKA_* variable that kopilka does not read: a typing slip
    (..._DB_URL for ..._DB) would leave the ledger the home's SQLite file without a word. Not
    refused: a name of another program's may begin so. Names only, never a value."""
    warnings = []
    for name in sorted(environ):
        if not name.startswith("KOPILKA_") or name in _READ_VARIABLES:
            continue
        if _set_by_kubernetes(name, environ[name]):
            continue
        # Compared without the prefix all share, which made any name look close to all.
        near = difflib.get_close_matches(
            name.removeprefix("KOPILKA_").upper(),
            [known.removeprefix("KOPILKA_") for known in _SET_BY_USERS],
            n=2,
            cutoff=0.6,
        )
        meant = f"; did you mean {' or '.join(f'KOPILKA_{n}' for n in near)}?" if near else ""
        warnings.append(f"{quoted(name, 80)} is no variable kopilka reads: it is ignored{meant}")
    return warnings


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
    *,
    serving: bool = False,
    spelled: Mapping[str, str] | None = None,
) -> Settings:
    """Merge flags (None means "not given"), environment and file, in that order.
    `serving`: for `kopilka serve`, which reads no server URL. `spelled`: how a flag was
    given, where not as --NAME (serve's bare PORT), for its refusal to say."""
    flags = {key: value for key, value in (flags or {}).items() if value is not None}
    environ = os.environ if environ is None else environ
    base = home_from_variable(environ["KOPILKA_HOME"]) if environ.get("KOPILKA_HOME") else home()
    if config_path == "":  # given, and empty (a variable left unset): not "none given"
        raise InvalidInput("invalid_setting", "the config file may not be empty: give a path")
    for name in (*_WHERE_VARIABLES, *(_SERVED_VARIABLES if serving else ())):
        if serving and name in _NOT_SERVED:
            continue
        # Set to nothing (`KOPILKA_DB=$PG_URL` with PG_URL unset) is no "not given": the
        # ledger would silently be the home's SQLite file instead of the one meant. A
        # blank one (" ") is no name anyone meant either.
        refuse_blank_variable(name, environ.get(name))
    files = _read_files(config_path or environ.get("KOPILKA_CONFIG"), base)
    nowhere = 2 + len(files)

    def rank(name: str) -> int:
        """Where a setting comes from: 0 a flag, 1 the environment, 2 and on the files
        (the nearest first), `nowhere` last."""
        if name in flags:
            return 0
        if environ.get(f"KOPILKA_{name.upper()}"):
            return 1
        return next((2 + at for at, (values, *_) in enumerate(files) if name in values), nowhere)

    def pick(name: str, default: Any) -> Any:
        place = rank(name)
        if place == 0:
            return flags[name]
        if place == 1:
            return environ[f"KOPILKA_{name.upper()}"]
        return files[place - 2][0][name] if place < nowhere else default

    def given_at(name: str) -> str:
        """Where a setting's value was given, as its refusal names it."""
        place = rank(name)
        if place >= 2:
            return str(files[place - 2][1])
        flag = (spelled or {}).get(name, f"--{name.replace('_', '-')}")
        return (flag, f"KOPILKA_{name.upper()}")[place]

    def named_at(name: str) -> str:
        """A setting as a sentence names it: `--db`, `KOPILKA_DB`, `the db in PATH`."""
        return f"the {name} in {given_at(name)}" if rank(name) >= 2 else given_at(name)

    db = str(pick("db", str(base / "kopilka.db")))
    # Named after the value in each refusal, as a number's is; none given, the home's.
    db_at = given_at("db") if rank("db") < nowhere else "KOPILKA_HOME"
    if not db:  # a flag or the file's db (a variable set to nothing is refused above)
        raise InvalidInput(
            "invalid_setting", f"the database may not be empty ({db_at}): give a path or URL"
        )
    if rank("db") < nowhere:
        # A form no database has, refused before the value is quoted below: a mistyped
        # URL's password (postgresql//u:pw@h) is in no URL a mask knows. Not quoted here.
        try:  # spaces or a line break around it said below, once it is known no URL's
            sqlite_path(_without_what_surrounds(db))
        except InvalidInput as refused:
            code = "invalid_setting" if refused.code == "invalid_option" else refused.code
            raise InvalidInput(code, f"{named_at('db')}: {refused.message}") from None
    if any(unicodedata.category(character) in _BREAKS for character in db):
        # A line break at its end (a file read into a variable) made a lookalike file.
        raise InvalidInput(
            "invalid_setting",
            f"the database {quoted(db, 120)} ({db_at}) has a line break or another"
            " control character",
        )
    if db != db.strip():
        # A space copied in with it (`--db "books.db "`) made a lookalike file beside it.
        raise InvalidInput(
            "invalid_setting",
            f"the database {quoted(db, 120)} ({db_at}) begins or ends with a space:"
            " give it without",
        )
    if rank("db") < nowhere:
        db = _sqlite_path_as_meant(db, files[rank("db") - 2][2] if rank("db") >= 2 else None)
    # The database and a server's URL both say where the ledger is: the one given at
    # the stronger place wins, so KOPILKA_DB overrides a url in kopilka.toml, and a url
    # in the working directory's file a db in the home's (a tie, both given at one
    # place, goes to the server).
    url = pick("url", None) if rank("url") <= rank("db") else None
    overridden = url is None and rank("url") < nowhere
    url_overridden = f"{named_at('db')} overrides {named_at('url')}" if overridden else None
    # A PostgreSQL URL only: a SQLite file named postgres... took the password into its
    # path, shown back with it.
    if db.startswith(("postgresql://", "postgres://")) and environ.get("KOPILKA_DB_PASSWORD_FILE"):
        db = _with_password(db, _read_password(expand_tilde(environ["KOPILKA_DB_PASSWORD_FILE"])))

    ledger = "main" if serving else str(pick("ledger", "main"))  # a server serves them all
    given = not serving and rank("ledger") < nowhere  # else main, which is no refusal's
    ledger = chosen_ledger(ledger, given_at("ledger") if given else "default")
    settings = Settings(
        db=db,
        url=url,
        host=DEFAULT_HOST,
        port=DEFAULT_PORT,
        workers=1,
        ledger=ledger,
        home=base,
        ledger_chosen=rank("ledger") < nowhere,
        db_chosen=rank("db") < nowhere,
        url_overridden=url_overridden,
    )
    # Only a server reads how it listens: another command is not held to it (Kubernetes
    # sets KOPILKA_PORT=tcp://... beside every program of a Service named kopilka).
    return _served(settings, pick, given_at) if serving else settings


def _served(
    settings: Settings, pick: Callable[[str, Any], Any], given_at: Callable[[str], str]
) -> Settings:
    """`settings` with how a server listens and bounds its clients, as configured."""

    def within(name: str, default: float, least: float, most: float, above: bool = False) -> Any:
        """A whole number (a float default: a number of seconds) in its range; one line
        naming the setting, the value and where it was given otherwise (nan is in none)."""
        value = pick(name, default)
        if isinstance(default, int):
            read: Callable[[Any], float] = whole_number
            kind = "a whole number"
        else:
            read, kind = number, "a number of seconds"
        try:
            number_read = read(value)
        except (TypeError, ValueError, OverflowError):
            raise InvalidInput(
                "invalid_setting",
                f"{name} must be {kind}, not {quoted(value)} ({given_at(name)})",
            ) from None
        if (least < number_read if above else least <= number_read) and number_read <= most:
            return number_read
        bounds = f"above {least} and at most {most}" if above else f"{least} to {most}"
        # As typed: a flag's or variable's digits (no secret can be in them), the file's
        # number as TOML read it ("1e+08" was shown of 99999999, "1.23457e+06" of 1234567).
        shown = cut_short(repr(value) if not isinstance(value, str) else value)
        raise InvalidInput(
            "invalid_setting", f"{name} must be {bounds}, not {shown} ({given_at(name)})"
        )

    port = within("port", DEFAULT_PORT, 1, 65535)
    workers = within("workers", 1, 1, 64)
    connections_per_client = within("connections_per_client", 256, 1, 1 << 20)
    header_seconds = within("header_seconds", 10.0, 0, 3600, above=True)
    body_seconds = within("body_seconds", 10.0, 0, 3600, above=True)
    write_seconds = within("write_seconds", 30.0, 0, 3600, above=True)
    sandbox_idle_seconds = within(
        "sandbox_idle_seconds", SANDBOX_IDLE_SECONDS_DEFAULT, 1, SANDBOX_IDLE_SECONDS_MAX
    )
    host = str(pick("host", DEFAULT_HOST))
    if host.startswith("[") and host.endswith("]") and _an_ipv6_address(host[1:-1]):
        host = host[1:-1]  # as a URL writes it, and the server says where it listens
    # No host name or address holds "/" or "@": a URL given for the host (the database's,
    # password and all) is refused here, not echoed by a failed listen.
    if not host or not host.isprintable() or any(c in host for c in " /@[]"):
        # A user and password before an '@', as a URL gives them (a URL's own are masked
        # as every message's are): the password not shown.
        userinfo, at, after = host.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        shown = f"{user}:***@{after}" if at and colon and "://" not in host else host
        raise InvalidInput(
            "invalid_setting",
            f"host {shown!r} ({given_at('host')}) is no host name or address",
        )
    return replace(
        settings,
        host=host,
        port=port,
        workers=workers,
        connections_per_client=connections_per_client,
        header_seconds=header_seconds,
        body_seconds=body_seconds,
        write_seconds=write_seconds,
        sandbox_idle_seconds=sandbox_idle_seconds,
    )


def _an_ipv6_address(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


# What kopilka.toml may hold, and of which TOML type: anything else is refused, so that a
# typing slip (`db = 5`, `prot = 8889`) is an error, not a silent default.
_FILE_SETTINGS: dict[str, tuple[type, ...]] = {
    "db": (str,),
    "url": (str,),
    "host": (str,),
    "port": (int,),
    "workers": (int,),
    "ledger": (str,),
    "connections_per_client": (int,),
    "header_seconds": (int, float),
    "body_seconds": (int, float),
    "write_seconds": (int, float),
    "sandbox_idle_seconds": (int, float),
}


def whole_number(value: Any) -> int:
    """A count or a port, as typed: ASCII digits only (int() would take "２０" for 20,
    "+1_6" for 16 and " 8" for 8)."""
    return int(_typed(value, _DIGITS))


def number(value: Any) -> float:
    """A number of seconds, as typed: digits with a decimal point or none (float() would
    take "1_0", "nan" and "1e3" too)."""
    return float(_typed(value, _DECIMAL))


# A minus sign is read, for the range to refuse: "-1" is a whole number, out of range.
_DIGITS = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def _typed(value: Any, form: re.Pattern[str]) -> Any:
    """A number typed as text (a flag, a variable) in its one form; one from the TOML
    file is a number already."""
    if isinstance(value, str) and form.fullmatch(value) is None:
        raise ValueError(f"invalid number: {value!r}")
    return value


def _sqlite_path_as_meant(db: str, directory: Path | None) -> str:
    """A SQLite file as a person means it: `~` is their home (no shell expands it in
    `--db=~/books.db` or in a file), and a relative path written in a kopilka.toml is
    relative to that file, not to wherever kopilka happens to run. URLs, memory: and
    anything else with a scheme are left as they are."""
    if not db.strip() or sqlite_path(db) is None:
        return db  # empty (refused when opened), memory or PostgreSQL; refused if mistyped
    scheme = "sqlite:" if db.startswith("sqlite:") and not db.startswith("sqlite://") else ""
    if not scheme and re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", db):
        return db  # a URL
    # Left as written otherwise: a path's text is what sqlite_path checks for a mistyped
    # URL ('postgresql//...'), which normalizing would hide.
    path = db.removeprefix(scheme)
    if path.startswith("~"):
        path = str(expand_tilde(path))
    if directory is not None and not os.path.isabs(path):
        path = os.path.join(directory, path)
    return scheme + path


# A config file read: its settings, its path, and where a relative path in it is from.
_ConfigFile = tuple[dict[str, Any], Path, Path | None]


def _read_files(config_path: str | Path | None, base: Path) -> list[_ConfigFile]:
    """The settings of each kopilka.toml in use and its path, the nearest first: the one
    given, or the working directory's and then the home's. Both are read: a file in a
    project that names only its ledger had made the home's `db` go unread, and its
    money went into another database, made for it there without a word."""
    candidates = (
        [expand_tilde(str(config_path))]
        if config_path
        else [Path("kopilka.toml"), base / "kopilka.toml"]
    )
    found: list[_ConfigFile] = []
    for candidate in candidates:
        info = _looked_at(candidate)
        is_directory = info is not None and stat.S_ISDIR(info.st_mode)
        # One given may be a pipe too (`--config <(...)`); one looked for is a file.
        given = bool(config_path) and info is not None and not is_directory
        if (info is not None and stat.S_ISREG(info.st_mode)) or given:
            try:
                with candidate.open("rb") as handle:
                    status = os.fstat(handle.fileno())
                    _check_owner(candidate, status)
                    # A byte order mark, as some editors save UTF-8, is no statement.
                    values = tomllib.loads(handle.read().decode("utf-8-sig"))
            except tomllib.TOMLDecodeError as error:
                shown = candidate.absolute()  # the working directory's, named whole
                raise InvalidInput("invalid_setting", f"{shown}: {error}") from error
            except OSError as error:
                raise _unreadable(candidate, error) from error
            except UnicodeDecodeError as error:
                shown = candidate.absolute()
                raise InvalidInput("invalid_setting", f"cannot read {shown}: {error}") from error
            _check_file(candidate, values)
            if not any(_same_file(candidate, path) for _, path, _ in found):  # run in the home
                found.append((values, candidate.absolute(), _relative_to(candidate, status)))
        elif config_path:
            what = "is a directory" if is_directory else "does not exist"
            raise InvalidInput("invalid_setting", f"config file {_shown_path(candidate)} {what}")
        elif info is not None and not _the_null_device(info):
            # Looked for, and something else stands in its place: not taken for none (a
            # link to /dev/null is, as an empty file is).
            raise InvalidInput(
                "invalid_setting", f"{_shown_path(candidate.absolute())} is not a file"
            )
    return found


def _relative_to(candidate: Path, status: os.stat_result) -> Path | None:
    """Where a relative path written in a config file is from: the file's directory. One
    given as an open descriptor (`--config /dev/stdin < books.toml`) is the real file's;
    a pipe's (`--config <(...)`) none, the working directory, as a flag's: not /dev/fd."""
    if not stat.S_ISREG(status.st_mode):
        return None
    path = candidate.absolute()
    if path.parts[1:2] in (("dev",), ("proc",)):
        real = Path(os.path.realpath(path))
        return real.parent if real.is_file() else None  # a here-document's, deleted
    return path.parent


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.samefile(other)
    except OSError:
        return False


def _looked_at(candidate: Path) -> os.stat_result | None:
    """The config file's status; None if there is none. One that cannot even be looked
    at (a KOPILKA_HOME or working directory this user may not enter) is refused, not
    taken for none: it may be there, saying where the commands and the token go."""
    try:
        return candidate.stat()
    except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL in it
        if candidate.is_symlink():
            # A link to a file not there (a secret not mounted yet) is no file "not
            # there": read, it would say where the commands and the token go.
            target = os.readlink(candidate)
            raise InvalidInput(
                "invalid_setting",
                f"{_shown_path(candidate.absolute())} is a link to {target!r},"
                " which does not exist",
            ) from None
        return None
    except OSError as error:
        raise _unreadable(candidate, error) from error


def _unreadable(candidate: Path, error: OSError) -> InvalidInput:
    """`cannot read PATH: Permission denied`: the whole path, and the OS's reason alone."""
    with contextlib.suppress(OSError):  # the working directory is gone: as given
        candidate = candidate.absolute()
    reason = error.strerror or str(error)
    return InvalidInput("invalid_setting", f"cannot read {_shown_path(candidate)}: {reason}")


def _shown_path(path: Path) -> str:
    return str(path) if str(path).isprintable() else repr(str(path))


def _the_null_device(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == os.stat(os.devnull).st_rdev


def _check_owner(path: Path, info: os.stat_result) -> None:
    """A kopilka.toml says where the ledger is and which server gets the token: one that
    another user wrote (in a shared working directory, say) would send the caller's
    token, and money, where that user wants. So it must be this user's (or root's), and
    no one else may write it, as KOPILKA_HOME. /dev/null (no file read at all) is
    everyone's to write, and says nothing."""
    if _the_null_device(info):
        return
    if info.st_uid not in (os.geteuid(), 0):
        raise InvalidInput(
            "invalid_setting",
            f"{path.absolute()} belongs to another user, who would choose where your"
            " commands and token go: remove it, or run elsewhere",
        )
    if others_may_write(info, os.geteuid()):
        raise InvalidInput(
            "invalid_setting",
            f"{path.absolute()} may be written by other users (mode"
            f" {info.st_mode & 0o777:o}): `chmod go-w` it",
        )


def _check_file(path: Path, values: dict[str, Any]) -> None:
    for name, value in values.items():
        kinds = _FILE_SETTINGS.get(name)
        if kinds is None:
            known = ", ".join(_FILE_SETTINGS)
            raise InvalidInput(
                "invalid_setting", f"{path.absolute()}: unknown setting {name!r} (known: {known})"
            )
        # TOML's true and false are Python bools, which are ints too: never a number here.
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = "a string" if kinds == (str,) else "a number"
            if kinds == (int,):
                wanted = "a whole number"
            # Worded, and its file named, as a value of the right kind out of range is. A
            # number in quotes is told so: "not '8889'" read as a refusal of 8889 itself.
            text = "the text " if _a_number_in_quotes(value) else ""
            raise InvalidInput(
                "invalid_setting",
                f"{name} must be {wanted}, not"
                f" {text}{quoted(value, mapping='a table', spell=as_toml)} ({path.absolute()})",
            )


def chosen_ledger(ledger: str, given_at: str) -> str:
    """The ledger named (in NFC, as the ledger keeps its name), or its refusal naming
    where it was given: `--ledger`, a variable, a file."""
    try:
        return validate_chosen_ledger(ledger)
    except InvalidInput as refused:
        raise InvalidInput(
            refused.code, f"ledger {quoted(ledger)} ({given_at}): {refused.message}"
        ) from None


def _without_what_surrounds(text: str) -> str:
    """Text without the spaces, line breaks and invisible marks (a byte order mark, a
    zero-width space) copied in around it."""
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or unicodedata.category(text[start]) == "Cf"):
        start += 1
    while end > start and (text[end - 1].isspace() or unicodedata.category(text[end - 1]) == "Cf"):
        end -= 1
    return text[start:end]


def _a_number_in_quotes(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value.strip())
    except ValueError:
        return False
    return True


def as_toml(value: object) -> str:
    """A value read from the file in TOML's spelling: `true`, not Python's `True`, and a
    date in ISO form, not `datetime.date(1979, 5, 27)` (a number as Python writes it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return f"[{', '.join(as_toml(item) for item in value)}]"
    if isinstance(value, datetime.date | datetime.time):  # a datetime is a date too
        return value.isoformat()
    return repr(value)  # a number, or a text in TOML's literal quotes


# No password is this long: a first line longer is no password file's.
_PASSWORD_LINE_BYTES_MAX = 4096


def _read_password(path: Path) -> str:
    """The file's first line, as it is (spaces are a password's too), its line end
    dropped: what follows it (a note, a rotated password) is not read, nor a first line
    longer than any password to its end (a device that never ends one, /dev/zero)."""
    try:
        with path.open("rb") as file:
            first = file.readline(_PASSWORD_LINE_BYTES_MAX + 2)  # and its line end, \r\n
    except (OSError, ValueError) as error:  # missing, unreadable, a directory, a NUL
        reason = error.strerror if isinstance(error, OSError) else None
        raise _no_password_in(path, reason or str(error)) from error
    written = first.removesuffix(b"\n").removesuffix(b"\r")
    if len(written) > _PASSWORD_LINE_BYTES_MAX:
        raise _no_password_in(path, f"its first line is over {_PASSWORD_LINE_BYTES_MAX} bytes")
    try:
        line = written.decode()
    except UnicodeDecodeError as error:
        raise _no_password_in(path, "not a text file") from error
    if not line:
        # An empty password is no password anyone wrote down: the file was meant to
        # hold one (a secret not mounted yet, a note above it).
        where = "is empty" if not first else "has an empty first line"
        raise InvalidInput(
            "invalid_setting",
            f"KOPILKA_DB_PASSWORD_FILE {path} {where}: the password is its first line",
        )
    return line


def _no_password_in(path: Path, reason: str) -> InvalidInput:
    return InvalidInput("invalid_setting", f"cannot read KOPILKA_DB_PASSWORD_FILE {path}: {reason}")


def _with_password(url: str, password: str) -> str:
    """The URL with `password` as its userinfo password (replacing any there).

    The user and the host part are kept exactly as written: a bracketed IPv6
    address, several hosts (h1:5432,h2:5433) or a percent-escaped user survive.
    """
    parts = split_url(url, "invalid_setting", "cannot read the database URL")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    netloc = f"{user}:{quote(password, safe='')}@{hostport}"
    return urlunsplit(parts._replace(netloc=netloc))
