"""Whose the database's files are. A ledger kept in files another user may change is
theirs to change too: the file itself, and the `-wal` beside it, which SQLite reads into
the database at the next open as the ledger's own commits (balances changed by no
operation, and the `-wal` then removed: no trace left)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from kopilka.errors import InvalidInput
from kopilka.settings import others_may_write

# The files SQLite reads beside a database in WAL mode: its journal and the index to it.
_JOURNALS = ("-wal", "-shm")


def refuse_files_of_others(path: str) -> None:
    """Refuse a database whose file or journal another user owns, or whose directory
    another user owns or others may write (where they could put a `-wal` beside it
    between two runs, sticky bit or not). Root is held to it as well: a `-wal` or `-shm`
    it made beside a service user's file would stop that user's server writing. A
    directory of root's that others may not write is anyone's to use."""
    _refuse_another_users("the database", path, os.stat)
    for suffix in _JOURNALS:
        # Not followed: a link another user made is theirs, wherever it points.
        _refuse_another_users(f"the database's {suffix} file", path + suffix, os.lstat)
    directory = Path(path).absolute().parent
    try:
        found = directory.stat()
    except OSError:
        return  # not there: said in its own words when opened
    if found.st_uid not in (os.geteuid(), 0):
        raise InvalidInput(
            "invalid_setting",
            f"the database {path} is in {directory}, which belongs to another user (uid"
            f" {found.st_uid}), who could replace it: keep the ledger in a directory of"
            " your own",
        )
    if others_may_write(found):
        raise InvalidInput(
            "invalid_setting",
            f"the database {path} is in {directory}, which other users may write (mode"
            f" {stat.S_IMODE(found.st_mode):o}): one could put a -wal file beside it,"
            " read into the ledger as its own; keep the ledger in a directory of your own",
        )


def _refuse_another_users(said: str, path: str, look: Callable[[str], os.stat_result]) -> None:
    try:
        found = look(path)
    except OSError:
        return  # not there yet (made by this user), or said in its own words later
    owner = found.st_uid
    if owner != os.geteuid() and (stat.S_ISREG(found.st_mode) or stat.S_ISLNK(found.st_mode)):
        raise InvalidInput(
            "invalid_setting",
            f"{said} {path} belongs to another user (uid {owner}): run kopilka as that"
            " user, or keep the ledger in a file of your own",
        )
