"""A PostgreSQL password file the driver skipped, told in kopilka's own words.

Like libpq, asyncpg skips a password file that others may read, or that is no plain
file, and says so by a Python warning: printed raw above kopilka's error line, with the
file's path, which kopilka never shows (postgres.md). The warning is silenced; when the
database cannot be opened, the reason says which file was skipped and why, by where it
was named, not by its path.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

# The driver's words for a file it skips (asyncpg.connect_utils._read_password_file).
warnings.filterwarnings(
    "ignore", message="password file ", category=UserWarning, module=r"asyncpg\.connect_utils"
)


def skipped_password_file(url: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """Why the password file the driver would read for `url` is skipped, if it is.

    The driver reads one only when no password is given otherwise, by its rules: a
    URL's password not empty, its `password` parameter, or PGPASSWORD set (even empty).
    Which one: the URL's `passfile` parameter, else PGPASSFILE, else ~/.pgpass (none
    where this user has no home). Never raises: it is asked while an error is told.
    """
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        if parts.password or "password" in query or "PGPASSWORD" in environ:
            return None
    except ValueError:  # a URL the driver refuses on its own terms
        return None
    if "passfile" in query:
        where, path = "the URL's passfile", Path(query["passfile"][-1])
    elif "PGPASSFILE" in environ:  # set empty, the driver reads "" (this directory)
        where, path = "PGPASSFILE", Path(environ["PGPASSFILE"])
    else:
        try:
            where, path = "~/.pgpass", Path.home() / ".pgpass"
        except (RuntimeError, KeyError):  # no HOME, and a user the system does not name
            return None
    try:
        mode = path.stat().st_mode
    except OSError:  # none there: nothing was skipped
        return None
    if not stat.S_ISREG(mode):
        why = "it is not a plain file"
    elif mode & (stat.S_IRWXG | stat.S_IRWXO):
        why = "others may read or write it (chmod 600 makes it the owner's alone)"
    else:
        return None
    return f"the password file named by {where} was not read: {why}"
