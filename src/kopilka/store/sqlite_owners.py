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
from kopilka.home import others_may_write

# The files SQLite reads beside a database: in WAL mode its journal and the index to it,
# and a rollback journal too, which it plays back into the file at open ("hot"), in WAL
# mode or not: pages of another moment written over the ledger's, with no trace left.
JOURNALS = ("-wal", "-shm", "-journal")


def refuse_files_of_others(path: str) -> None:
    """Refuse a database whose file or journal another user owns, or whose directory
    another user owns or others may write (where they could put a `-wal` beside it
    between two runs, sticky bit or not). Root is held to it as well: a `-wal` or `-shm`
    it made beside a service user's file would stop that user's server writing. A
    directory of root's that others may not write is anyone's to use: its group may, if
    it is this user's own (`install -d -o root -g kopilka -m 0770`).

    The journals and the directory looked at are the real file's: SQLite follows a link
    (to the file, or to a directory on the way) and keeps its `-wal` and `-shm` beside
    the file it leads to. A link's own directory is held to the same."""
    _refuse_another_users("the database", path, os.stat)
    real = os.path.realpath(path)
    linked = real != os.path.abspath(path)
    shown = f"{path} (really {real})" if linked else path
    for suffix in JOURNALS:
        # Not followed: a link another user made is theirs, wherever it points.
        of = f" (beside {real}, where the database {path} leads)" if linked else ""
        _refuse_another_users(f"the database's {suffix} file", real + suffix, os.lstat, of)
    _refuse_a_directory_of_others(
        shown, Path(real).parent, "put a -wal file beside it, read into the ledger as its own"
    )
    if linked:
        # The link's own directory too: whoever may write it may change where the link
        # leads.
        _refuse_a_directory_of_others(shown, Path(path).absolute().parent, "change where it leads")


def _refuse_a_directory_of_others(shown: str, directory: Path, could: str) -> None:
    try:
        found = directory.stat()
    except OSError:
        return  # not there: said in its own words when opened
    if found.st_uid not in (os.geteuid(), 0):
        raise InvalidInput(
            "invalid_setting",
            f"the database {shown} is in {directory}, which belongs to another user (uid"
            f" {found.st_uid}), who could replace it: keep the ledger in a directory of"
            " your own",
        )
    if others_may_write(found, os.geteuid()):
        raise InvalidInput(
            "invalid_setting",
            f"the database {shown} is in {directory}, which other users may write (mode"
            f" {stat.S_IMODE(found.st_mode):o}): one could {could}; keep the ledger in a"
            " directory of your own",
        )


def _refuse_another_users(
    said: str, path: str, look: Callable[[str], os.stat_result], of: str = ""
) -> None:
    try:
        found = look(path)
    except OSError:
        return  # not there yet (made by this user), or said in its own words later
    owner = found.st_uid
    if owner != os.geteuid() and (stat.S_ISREG(found.st_mode) or stat.S_ISLNK(found.st_mode)):
        raise InvalidInput(
            "invalid_setting",
            f"{said} {path}{of} belongs to another user (uid {owner}): run kopilka as that"
            " user, or keep the ledger in a file of your own",
        )
