"""The database's files as a store opened them, to refuse a commit once they are gone.

SQLite writes through the descriptors it opened. A database file removed or replaced
while a process has it open (`rm`, a backup moved over it, its `-wal` journal deleted
as a stray file) goes on taking commits, each acknowledged, into a file no path names
any more, and all of them are lost when the process ends. Its `-shm` deleted, another
process makes a new one, and the two write one journal each by an index of its own:
one's commits are lost under the other's. Before each COMMIT the store looks whether
the paths still name the files it opened (three `stat` calls, a few microseconds a
batch) and refuses the batch, nothing applied, once one does not.

A database file removed (or emptied) leaves its `-wal` and `-shm` at their names,
the last operations in them. SQLite deletes a `-wal` it finds beside a file of no
pages as it opens it, reads too: a store does not open such a file at all.
"""

from __future__ import annotations

import ctypes
import os
import sqlite3
import stat

# (device, inode): a file, whatever its name.
Identity = tuple[int, int]


class OpenedFiles:
    def __init__(self, database_path: str) -> None:
        # SQLite keeps the journal beside the file a link leads to, not beside the link.
        self.real_path = os.path.realpath(database_path)
        journal = (self.real_path + "-wal", self.real_path + "-shm")
        self.paths = (database_path, *journal)
        # None: not there yet (SQLite makes the journal with the first write).
        self.identities = [_identity(path) for path in self.paths]

    def gone(self) -> str | None:
        """The path that no longer names the file opened (removed, or another file put
        in its place), or None while they all do."""
        for index, path in enumerate(self.paths):
            now = _identity(path)
            opened = self.identities[index]
            if opened is None:
                self.identities[index] = now  # made since: this is the one
            elif now != opened:
                return path
        return None

    def journal_left_behind(self) -> list[tuple[str, int]]:
        """The -wal and -shm this store opened, with their inodes, when the file they
        belong to is no longer at its path and they still are: SQLite leaves them so,
        and a file put at the path would read them as its own journal at its next open.
        None of them once the journal at the path is another's (the new file's)."""
        database, *journal = self.identities
        try:
            if database is None or _identity(self.real_path) == database:
                return []
            left = list(zip(self.paths[1:], journal, strict=True))
            if any(opened is None or _identity(path) != opened for path, opened in left):
                return []
        except OSError:  # not to be looked at: none named, rather than the wrong ones
            return []
        return [(path, opened[1]) for path, opened in left if opened is not None]


def journal_replaced(files: OpenedFiles | None) -> bool:
    """Whether another -wal or -shm than the one opened is at its path: another process,
    finding none, made its own, and wrote by it. One only removed is not: closed, SQLite
    copies what the journal holds, through the descriptor it has, into the file."""
    if files is None:
        return False
    for path, opened in zip(files.paths[1:], files.identities[1:], strict=True):
        try:
            now = _identity(path)
        except OSError:  # not to be looked at: nothing tells of another's
            continue
        if opened is not None and now is not None and now != opened:
            return True
    return False


def leave_open(connection: sqlite3.Connection) -> None:
    """Never closed, not even as the interpreter ends: held by one reference more than
    anything lets go of. SQLite's close checkpoints by the index of the journal this
    process opened; the journal replaced, that writes over what others committed since,
    or damages the file. Left open, the process ends as a killed one does, and the next
    to open the database reads the journal as it stands."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(connection))


# Database files whose connections this process left open. SQLite shares one index of a
# file's journal among all of a process's connections to it: that stale one, which any
# connection opened here again would write by.
_left_open: set[Identity] = set()


def left_open_here(files: OpenedFiles) -> None:
    """Its connections are left open (leave_open): no store of this process opens the
    file again."""
    database = files.identities[0]
    if database is not None:
        _left_open.add(database)


def opened_here_before(database_path: str) -> str | None:
    """Why this process may not open the database, when it left its connections open
    (left_open_here); None otherwise."""
    try:
        database = _identity(os.path.realpath(database_path))
    except OSError:
        return None  # said in its own words as it opens
    if database is None or database not in _left_open:
        return None
    return (
        "this process left its connections open, its journal replaced while in use; open"
        " it in a new process"
    )


def journal_without_its_file(database_path: str) -> str | None:
    """Why the database may not be opened, when its file is not there or is empty and
    its -wal or -shm are (beside the file a link leads to, where SQLite keeps them):
    what is left of a ledger removed or emptied, which a new ledger made at the path
    would have SQLite discard. None otherwise."""
    real = os.path.realpath(database_path)
    try:
        status = os.stat(real)
    except FileNotFoundError:
        status = None
    except OSError:  # a directory on the way, say: said in its own words when opened
        return None
    if status is not None and (not stat.S_ISREG(status.st_mode) or status.st_size > 0):
        return None
    journal = [real + suffix for suffix in ("-wal", "-shm") if os.path.lexists(real + suffix)]
    if not journal:
        return None
    names = " and ".join("-" + name.rpartition("-")[2] for name in journal)
    verb, them, they = ("is", "it", "it") if len(journal) == 1 else ("are", "them", "they")
    found = f"its {names} {verb} there ({', '.join(journal)})"
    keep = f"move {them} away first, keeping {them} if those are wanted"
    if status is None:
        return (
            f"it is not there, but {found}: the file was removed or moved, and a ledger made"
            f" at its path would have SQLite discard {them}, with the last operations {they}"
            f" may hold; {keep} (docs/operations.md, Backups)"
        )
    return (
        f"it is an empty file, but {found}: the file was emptied, its ledger lost, and a"
        f" ledger made in it would have SQLite discard {them}, with the last operations"
        f" {they} may hold; {keep}, and restore the ledger from a backup"
        " (docs/operations.md, Backups)"
    )


def _identity(path: str) -> Identity | None:
    """None when no file is at `path` (a directory on its way made no directory too: a
    link to it replaced by a file). Another failure (permission, a disk error) is raised:
    whether the path still names the file is then unknown."""
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return status.st_dev, status.st_ino
