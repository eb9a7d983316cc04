"""KOPILKA_HOME: where it is, and whether it is safe to keep a ledger and tokens in.

It holds the database, the shell's history and the admin token, so it must be this
user's and no one else may write in it; a config file is held to the same rule.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
from pathlib import Path

import platformdirs

from kopilka.errors import InvalidInput
from kopilka.redaction import quoted

# In KOPILKA_HOME: the admin token a server writes at its first start.
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret


def home() -> Path:
    """KOPILKA_HOME, or the user's data directory: the database, history, tokens."""
    configured = os.environ.get("KOPILKA_HOME")
    refuse_blank_variable("KOPILKA_HOME", configured)  # as load_settings does
    return home_from_variable(configured) if configured else _default_home()


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("kopilka"))


def home_from_variable(configured: str) -> Path:
    """KOPILKA_HOME as given: a directory. A URL there (the database's, meant for
    KOPILKA_DB) is refused unquoted: made into directories, its password was a path
    that messages and logs showed."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", configured):
        raise InvalidInput(
            "invalid_setting",
            "KOPILKA_HOME is a URL; it names a directory (a database's URL goes in KOPILKA_DB)",
        )
    refuse_blank_variable("KOPILKA_HOME", configured)
    if configured != configured.strip():
        # A space pasted in with it (a .env file, a unit's Environment=) made a lookalike
        # directory beside the home, holding a new ledger, empty, as the database's does.
        raise InvalidInput(
            "invalid_setting",
            f"KOPILKA_HOME {quoted(configured, 120)} begins or ends with a space: give it without",
        )
    return expand_tilde(configured)


def refuse_blank_variable(name: str, value: str | None) -> None:
    """A variable set to nothing (or blanks) is refused, not read as "not given"."""
    if value is not None and not value.strip():
        raise InvalidInput("invalid_setting", f"{name} is set but empty: give it, or unset it")


def expand_tilde(path: str) -> Path:
    """`~` or `~user` at the start of a path, as a shell would have made it, had it seen
    it (no shell expands `--db=~/books.db`, or a path written in a file)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # no such user, or no home directory to be found
        raise InvalidInput(
            "invalid_setting", f"{path!r}: no home directory is known for its '~'"
        ) from None


def keep_private(descriptor: int) -> None:
    """A file of this user's, opened, made readable by its owner alone: a lock file left
    open to others (by an older kopilka, a restore) lets any user take its lock, and
    every write, or a server's start, then waits on them. (Another user's is left, as is
    one on a file system mounted read-only.)"""
    with contextlib.suppress(OSError):
        found = os.fstat(descriptor)
        if found.st_uid == os.geteuid() and found.st_mode & 0o077:
            os.fchmod(descriptor, stat.S_IMODE(found.st_mode) & 0o700)


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
            raise InvalidInput("invalid_setting", _not_a_directory(path)) from error
        if isinstance(error, FileNotFoundError):
            reason = f"{path.parent} does not exist (kopilka makes only its last directory)"
        else:
            reason = error.strerror or str(error)
        raise InvalidInput(
            "invalid_setting", f"cannot create KOPILKA_HOME {path}: {reason}"
        ) from error
    _check_home(path, info)


def _not_a_directory(path: Path) -> str:
    """What is at the home's path instead of a directory: said, not "cannot create" (a
    read would create nothing)."""
    if path.is_symlink() and not path.exists():
        return f"KOPILKA_HOME {path} is a symlink to {os.readlink(path)}, which does not exist"
    return f"KOPILKA_HOME {path} is a file, not a directory"


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
            f" {stat.S_IMODE(info.st_mode):o}): `chmod go-w` it, or use another",
        )
