"""Where kopilka keeps its state and how it is configured.

Precedence: command-line flags, then environment variables (KOPILKA_*), then
the file `kopilka.toml` (in the working directory, or KOPILKA_HOME, or --config),
then defaults. A password inside a database URL is never printed: use
`redact_url` for anything shown to people or logs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import stat
import sys
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

import platformdirs

from kopilka.domain.rules import validate_chosen_ledger
from kopilka.errors import InvalidInput
from kopilka.store import sqlite_path
from kopilka.tokens import without_secrets

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8888
SANDBOX_IDLE_SECONDS_DEFAULT = 900.0
SANDBOX_IDLE_SECONDS_MAX = 7 * 24 * 3600
# In KOPILKA_HOME: the admin token a server writes at its first start.
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret


def home() -> Path:
    """KOPILKA_HOME, or the user's data directory: the database, history, tokens."""
    configured = os.environ.get("KOPILKA_HOME")
    _refuse_blank("KOPILKA_HOME", configured)  # as load_settings does
    return _home_of(configured) if configured else _default_home()


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("kopilka"))


def _home_of(configured: str) -> Path:
    """KOPILKA_HOME as given: a directory. A URL there (the database's, meant for
    KOPILKA_DB) is refused unquoted: made into directories, its password was a path
    that messages and logs showed."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", configured):
        raise InvalidInput(
            "invalid_setting",
            "KOPILKA_HOME is a URL; it names a directory (a database's URL goes in KOPILKA_DB)",
        )
    return _expanded(configured)


def _refuse_blank(name: str, value: str | None) -> None:
    """A variable set to nothing (or blanks) is refused, not read as "not given"."""
    if value is not None and not value.strip():
        raise InvalidInput("invalid_setting", f"{name} is set but empty: give it, or unset it")


def _expanded(path: str) -> Path:
    """`~` or `~user` at the start of a path, as a shell would have made it, had it seen
    it (no shell expands `--db=~/books.db`, or a path written in a file)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # no such user, or no home directory to be found
        raise InvalidInput(
            "invalid_setting", f"{path!r}: no home directory is known for its '~'"
        ) from None


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
    # Per server process: open connections from one client address, seconds a client
    # may take to send a request's headers, and then its body, and seconds it may leave
    # the server waiting to write (not reading what it asked for).
    connections_per_client: int = 256
    header_seconds: float = 10.0
    body_seconds: float = 10.0
    write_seconds: float = 30.0
    # How long an unused sandbox ledger is kept before the server drops it.
    sandbox_idle_seconds: float = SANDBOX_IDLE_SECONDS_DEFAULT


def make_home(path: Path) -> None:
    """Create KOPILKA_HOME if need be; one line saying why it cannot be, or why one that
    is there will not do: it holds the ledger and the admin token, so it must be this
    user's, and no one else may write in it (and put their own files there). Of a home
    given (KOPILKA_HOME), only the last directory is made: a mistyped one would hold a new
    ledger, empty, that says every client is unknown."""
    try:
        path.mkdir(parents=path == _default_home(), exist_ok=True)
        info = path.stat()
    except OSError as error:
        if isinstance(error, FileExistsError):
            reason = "a file is in the way"
        elif isinstance(error, FileNotFoundError):
            reason = f"{path.parent} does not exist (kopilka makes only its last directory)"
        else:
            reason = error.strerror or str(error)
        raise InvalidInput(
            "invalid_setting", f"cannot create KOPILKA_HOME {path}: {reason}"
        ) from error
    _check_home(path, info)


def others_may_write(info: os.stat_result, user: int | None = None) -> bool:
    """Whether anyone but the owner (and `user`, the one running kopilka, when given) may
    write the file or directory: its mode lets others, or its group, unless that group is
    the owner's own or `user`'s (the private group each user has where the usual umask is
    002, so that group-writable is owner-writable; a directory of root's made for a
    service, `install -d -o root -g kopilka -m 0770`, is written by root and the service's
    user alone)."""
    if info.st_mode & 0o002:
        return True
    if not info.st_mode & 0o020:
        return False
    if _a_private_group(info.st_uid, info.st_gid):
        return False
    return user is None or user == info.st_uid or not _a_private_group(user, info.st_gid)


def _a_private_group(uid: int, gid: int) -> bool:
    if sys.platform == "win32":
        return False
    import grp
    import pwd

    try:
        owner = pwd.getpwuid(uid)
        members = grp.getgrgid(gid).gr_mem
    except KeyError:  # a user or group without a name: nothing to tell it is private
        return False
    if owner.pw_gid != gid or not set(members) <= {owner.pw_name}:
        return False
    # Nor anyone else's own group (the members listed are only those added to it).
    return not any(user.pw_gid == gid and user.pw_uid != uid for user in pwd.getpwall())


def check_home(path: Path) -> None:
    """The checks of make_home, for a home read or written only if it is there (a shell's
    history, the admin token a client reads): one that is not is no concern."""
    try:
        info = path.stat()
    except OSError:
        return
    _check_home(path, info)


def _check_home(path: Path, info: os.stat_result) -> None:
    if info.st_uid != os.geteuid():
        raise InvalidInput(
            "invalid_setting",
            f"KOPILKA_HOME {path} belongs to another user; use a directory of your own",
        )
    if others_may_write(info):
        raise InvalidInput(
            "invalid_setting",
            f"KOPILKA_HOME {path} may be written by other users (mode"
            f" {info.st_mode & 0o777:o}): `chmod go-w` it, or use another",
        )


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


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
    *,
    serving: bool = False,
) -> Settings:
    """Merge flags (None means "not given"), environment and file, in that order.
    `serving`: for `kopilka serve`, which reads no server URL."""
    flags = {key: value for key, value in (flags or {}).items() if value is not None}
    environ = os.environ if environ is None else environ
    base = _home_of(environ["KOPILKA_HOME"]) if environ.get("KOPILKA_HOME") else home()
    if config_path == "":  # given, and empty (a variable left unset): not "none given"
        raise InvalidInput("invalid_setting", "the config file may not be empty: give a path")
    for name in (*_WHERE_VARIABLES, *(_SERVED_VARIABLES if serving else ())):
        if serving and name in _NOT_SERVED:
            continue
        # Set to nothing (`KOPILKA_DB=$PG_URL` with PG_URL unset) is no "not given": the
        # ledger would silently be the home's SQLite file instead of the one meant. A
        # blank one (" ") is no name anyone meant either.
        _refuse_blank(name, environ.get(name))
    file_values, file_path = _read_file(config_path or environ.get("KOPILKA_CONFIG"), base)

    def rank(name: str) -> int:
        """Where a setting comes from: 0 a flag, 1 the environment, 2 the file, 3 nowhere."""
        if name in flags:
            return 0
        if environ.get(f"KOPILKA_{name.upper()}"):
            return 1
        return 2 if name in file_values else 3

    def pick(name: str, default: Any) -> Any:
        place = rank(name)
        if place == 0:
            return flags[name]
        if place == 1:
            return environ[f"KOPILKA_{name.upper()}"]
        return file_values.get(name, default)

    def given_at(name: str) -> str:
        """Where a setting's value was given, as its refusal names it."""
        return (f"--{name.replace('_', '-')}", f"KOPILKA_{name.upper()}", str(file_path))[
            rank(name)
        ]

    db = str(pick("db", str(base / "kopilka.db")))
    if any(unicodedata.category(character) in _BREAKS for character in db):
        # A line break at its end (a file read into a variable) made a lookalike file.
        raise InvalidInput(
            "invalid_setting",
            f"the database {redact_url(db)!r} has a line break or another control character",
        )
    if db != db.strip():
        # A space copied in with it (`--db "books.db "`) made a lookalike file beside it.
        raise InvalidInput(
            "invalid_setting",
            f"the database {redact_url(db)!r} begins or ends with a space: give it without",
        )
    if rank("db") < 3:
        db = _sqlite_path_as_meant(db, file_path.parent if file_path and rank("db") == 2 else None)
    # The database and a server's URL both say where the ledger is: the one given at
    # the stronger place wins, so KOPILKA_DB overrides a url in kopilka.toml (a tie,
    # both given at one place, goes to the server).
    url = pick("url", None) if rank("url") <= rank("db") else None
    # A PostgreSQL URL only: a SQLite file named postgres... took the password into its
    # path, shown back with it.
    if db.startswith(("postgresql://", "postgres://")) and environ.get("KOPILKA_DB_PASSWORD_FILE"):
        db = _with_password(db, _read_password(Path(environ["KOPILKA_DB_PASSWORD_FILE"])))

    ledger = "main" if serving else str(pick("ledger", "main"))  # a server serves them all
    ledger = validate_chosen_ledger(ledger)  # in NFC, as the ledger keeps its name
    settings = Settings(
        db=db,
        url=url,
        host=DEFAULT_HOST,
        port=DEFAULT_PORT,
        workers=1,
        ledger=ledger,
        home=base,
        ledger_chosen=rank("ledger") < 3,
        db_chosen=rank("db") < 3,
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
                f"{name} must be {kind}, not {_shown_value(value)} ({given_at(name)})",
            ) from None
        if (least < number_read if above else least <= number_read) and number_read <= most:
            return number_read
        bounds = f"above {least} and at most {most}" if above else f"{least} to {most}"
        raise InvalidInput(
            "invalid_setting",
            f"{name} must be {bounds}, not {_shown_number(number_read)} ({given_at(name)})",
        )

    port = within("port", DEFAULT_PORT, 1, 65535)
    workers = within("workers", 1, 1, 64)
    connections_per_client = within("connections_per_client", 256, 1, 1 << 20)
    header_seconds = within("header_seconds", 10.0, 0, 3600, above=True)
    body_seconds = within("body_seconds", 10.0, 0, 3600, above=True)
    write_seconds = within("write_seconds", 30.0, 0, 3600, above=True)
    # Whole seconds are what POST /v1/sandboxes tells a client.
    sandbox_idle_seconds = within(
        "sandbox_idle_seconds", SANDBOX_IDLE_SECONDS_DEFAULT, 1, SANDBOX_IDLE_SECONDS_MAX
    )
    host = str(pick("host", DEFAULT_HOST))
    # No host name or address holds "/" or "@": a URL given for the host (the database's,
    # password and all) is refused here, not echoed by a failed listen.
    if not host or not host.isprintable() or any(c in host for c in " /@"):
        raise InvalidInput("invalid_setting", f"host {host!r} is no host name or address")
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


_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def _typed(value: Any, form: re.Pattern[str]) -> Any:
    """A number typed as text (a flag, a variable) in its one form; one from the TOML
    file is a number already."""
    if isinstance(value, str) and form.fullmatch(value) is None:
        raise ValueError(f"invalid number: {value!r}")
    return value


def _shown_value(value: object) -> str:
    """A setting's value as a refusal quotes it: masked whole, before it is cut short (a
    URL's password cut from its '@' is not recognised as one)."""
    text = hide_secrets(repr(value), [value] if isinstance(value, str) else [])
    return text if len(text) <= 40 else text[:40] + "..."


def _shown_number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


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
        path = str(_expanded(path))
    if directory is not None and not os.path.isabs(path):
        path = os.path.join(directory, path)
    return scheme + path


def _read_file(config_path: str | Path | None, base: Path) -> tuple[dict[str, Any], Path | None]:
    """The settings of the kopilka.toml in use, and its path (None: there is none)."""
    candidates = (
        [Path(config_path)] if config_path else [Path("kopilka.toml"), base / "kopilka.toml"]
    )
    for candidate in candidates:
        info = _looked_at(candidate)
        is_directory = info is not None and stat.S_ISDIR(info.st_mode)
        # One given may be a pipe too (`--config <(...)`); one looked for is a file.
        given = bool(config_path) and info is not None and not is_directory
        if (info is not None and stat.S_ISREG(info.st_mode)) or given:
            try:
                with candidate.open("rb") as handle:
                    _check_owner(candidate, os.fstat(handle.fileno()))
                    values = tomllib.load(handle)
            except tomllib.TOMLDecodeError as error:
                raise InvalidInput("invalid_setting", f"{candidate}: {error}") from error
            except OSError as error:
                raise _unreadable(candidate, error) from error
            except UnicodeDecodeError as error:
                raise InvalidInput(
                    "invalid_setting", f"cannot read {candidate}: {error}"
                ) from error
            _check_file(candidate, values)
            return values, candidate.absolute()
        if config_path:
            what = "is a directory" if is_directory else "does not exist"
            raise InvalidInput("invalid_setting", f"config file {_shown_path(candidate)} {what}")
    return {}, None


def _looked_at(candidate: Path) -> os.stat_result | None:
    """The config file's status; None if there is none. One that cannot even be looked
    at (a KOPILKA_HOME or working directory this user may not enter) is refused, not
    taken for none: it may be there, saying where the commands and the token go."""
    try:
        return candidate.stat()
    except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL in it
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


def _check_owner(path: Path, info: os.stat_result) -> None:
    """A kopilka.toml says where the ledger is and which server gets the token: one that
    another user wrote (in a shared working directory, say) would send the caller's
    token, and money, where that user wants. So it must be this user's (or root's), and
    no one else may write it, as KOPILKA_HOME."""
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
                "invalid_setting", f"{path}: unknown setting {name!r} (known: {known})"
            )
        # TOML's true and false are Python bools, which are ints too: never a number here.
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = "a string" if kinds == (str,) else "a number"
            if kinds == (int,):
                wanted = "a whole number"
            raise InvalidInput(
                "invalid_setting", f"{path}: {name} must be {wanted}, not {_shown_value(value)}"
            )


def _read_password(path: Path) -> str:
    """The file's first line, as it is (spaces are a password's too): what follows it (a
    note, a rotated password) is not read."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, ValueError) as error:  # missing, unreadable, a directory, not text
        reason = error.strerror if isinstance(error, OSError) else "not a text file"
        raise InvalidInput(
            "invalid_setting", f"cannot read KOPILKA_DB_PASSWORD_FILE {path}: {reason}"
        ) from error
    if not lines or not lines[0]:
        # An empty password is no password anyone wrote down: the file was meant to
        # hold one (a secret not mounted yet, a note above it).
        where = "is empty" if not lines else "has an empty first line"
        raise InvalidInput(
            "invalid_setting",
            f"KOPILKA_DB_PASSWORD_FILE {path} {where}: the password is its first line",
        )
    return lines[0]


def split_url(url: str, code: str, what: str) -> SplitResult:
    """urlsplit, with a URL it cannot read (an unbalanced bracket) refused in one line."""
    try:
        return urlsplit(url)
    except ValueError as error:  # "Invalid IPv6 URL"
        raise InvalidInput(code, f"{what} {redact_url(url)!r}: {error}") from None


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


# Query parameters whose value is a secret or names where one is kept (libpq's names).
_SECRET_PARAMETERS = ("password", "sslpassword", "passfile", "sslkey")
# A secret value runs to the next "&name=" or the end: an unescaped '&' or '#' in a
# password must not let its tail show.


def _spelled_any_way(name: str) -> str:
    """A pattern for `name` with any of its letters percent-escaped, as a driver reads it."""
    return "".join(f"(?:{re.escape(c)}|%{ord(c.lower()):02x}|%{ord(c.upper()):02x})" for c in name)


_SECRET_QUERY = re.compile(
    r"([?&](?:" + "|".join(map(_spelled_any_way, _SECRET_PARAMETERS)) + r")=)(.*?)"
    r"(?=&[A-Za-z_]+=|$)",
    re.IGNORECASE | re.DOTALL,
)
# A "," too: the driver splits its hosts at one ("h1:5432,h2"), and quotes the piece
# before it as a port it cannot read.
_URL_DELIMITERS = re.compile(r"[:/?#@&,\[\]]")


def _split_userinfo(rest: str) -> tuple[str, str, str]:
    """(userinfo, '@', the rest) of what follows '//'; ('', '', rest) without userinfo.

    The userinfo ends at the LAST '@': a password with an unescaped '/', '?', '#'
    or '@' would otherwise be read as the host or the path and printed as such. An
    '@' later in the query only hides more than needed, never less.
    """
    userinfo, at, after = rest.rpartition("@")
    return (userinfo, at, after) if at else ("", "", rest)


# Up to four parts, decimal, octal (0...) or hex (0x...), separated by dots.
_IPV4_PART = r"(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_IPV4_SHORT_FORM = re.compile(rf"{_IPV4_PART}(?:\.{_IPV4_PART}){{0,3}}")


def on_this_machine(host: str) -> bool:
    """A host that names this machine (loopback), read without a name lookup."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # a zone on ::1 means nothing there, and any text passes for one
        return address.is_loopback and getattr(address, "scope_id", None) is None
    # The short IPv4 forms the resolver takes as they are ("127.1", "0x7f.1"), as the
    # connection will: no name lookup. Those alone: inet_aton also takes "127.0.0.1 .x",
    # whatever follows a space, where the lookup reads a name that may be anywhere.
    if not _IPV4_SHORT_FORM.fullmatch(host):
        return False
    try:
        return ipaddress.ip_address(socket.inet_aton(host)).is_loopback
    except OSError:  # a name: it may resolve anywhere
        return False


def redact_url(url: str) -> str:
    """The URL with any password replaced by '***', safe to print and log.

    Hides the userinfo password (user:***@host) and the values of secret query
    parameters (?password=***), however oddly they are written.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url  # a file path or 'memory:'
    rest = _SECRET_QUERY.sub(r"\1***", rest)
    userinfo, at, after = _split_userinfo(rest)
    user, colon, _ = userinfo.partition(":")
    if colon:
        rest = f"{user}:***{at}{after}"
    return f"{scheme}://{rest}"


# A database's or a server's URL written anywhere in a message: the scheme, then one or
# more slashes (a path that went through Path() has one), up to a space or a quote; a
# colon just before the space is the message's ("URL: reason"), not the URL's.
_URL_IN_TEXT = re.compile(
    r"\b(postgres(?:ql)?|https?):(/+)([^\s'\"]+?)(?=:\s|:$|[\s'\"]|$)", re.IGNORECASE
)
# Where such a URL starts within a word (`--DB=postgresql://...`).
_URL_START = re.compile(r"\b(?:postgres(?:ql)?|https?):/+", re.IGNORECASE)
# libpq's keyword=value form: password=... or password='...'.
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"&]+)", re.IGNORECASE)


def hide_secrets(message: str, given: Iterable[str] | None = None) -> str:
    """A message with the password of every URL it quotes replaced by '***', and the
    secret of every token: an argument given in the wrong place is echoed back as it was
    written (`kopilka get URL`, `kopilka TOKEN`).

    Only a URL (or libpq keyword settings) quoted in the message is changed, never other
    text that happens to hold the same letters. `given`: the words the message may quote
    (by default the command line's), whose URLs are found whole however they are
    written, a space or a quote in the password and all.
    """
    for word in sys.argv[1:] if given is None else given:
        start = _URL_START.search(word)
        if start is not None:
            url = word[start.start() :]
            quoted = repr(url)[1:-1]  # as a message quotes it with !r: escapes and all
            if url in message:
                message = message.replace(url, _redacted(url))
            elif quoted in message:
                message = message.replace(quoted, repr(_redacted(url))[1:-1])
        elif "password" in word.lower() and word in message:
            message = message.replace(word, _KEYWORD_PASSWORD.sub(r"\1***", word))
    message = _URL_IN_TEXT.sub(lambda found: _redacted(found.group(0)), message)
    # A token pasted where a name, a command or an id belongs: its id is enough to say.
    return without_secrets(message)


def _redacted(url: str) -> str:
    """A URL as redact_url shows it, with as many slashes after its scheme as it had."""
    scheme, _, rest = url.partition(":")
    slashes = rest[: len(rest) - len(rest.lstrip("/"))]
    shown = redact_url(f"{scheme}://{rest[len(slashes) :]}")
    return f"{scheme}:{slashes}{shown.partition('://')[2]}"


def redact_text(text: str, url: str) -> str:
    """`text` with every secret written in `url` replaced by '***'.

    For what may echo part of the URL, such as a driver's error about a URL it
    could not parse ("invalid literal for int(): 'S3cret'").
    """
    _, separator, rest = url.partition("://")
    if not separator:
        return text
    secrets = [match.group(2) for match in _SECRET_QUERY.finditer(rest)]
    userinfo, _, _ = _split_userinfo(_SECRET_QUERY.sub(r"\1***", rest))
    secrets.append(userinfo.partition(":")[2])
    secrets += [unquote(secret) for secret in secrets]
    for secret in sorted({secret for secret in secrets if len(secret) > 1}, key=len, reverse=True):
        text = text.replace(secret, "***")
    # A parser that split the URL at a '/' or ':' inside the password echoes a piece; a
    # piece is masked only where it stands alone, so that masking it inside an ordinary
    # word ("Pa***word") does not tell which letters the password holds.
    pieces = {piece for secret in secrets for piece in _URL_DELIMITERS.split(secret)}
    for piece in sorted((piece for piece in pieces if len(piece) > 1), key=len, reverse=True):
        text = re.sub(rf"(?<![^\W_]){re.escape(piece)}(?![^\W_])", "***", text)
    return text
