"""The database's files as a store opened them, to refuse a commit once they are gone.

SQLite writes through the descriptors it opened. A database file removed or replaced
while a process has it open (`rm`, a backup moved over it, its `-wal` journal deleted
as a stray file) goes on taking commits, each acknowledged, into a file no path names
any more, and all of them are lost when the process ends. Its `-shm` deleted, another
process makes a new one, and the two write one journal each by an index of its own:
one's commits are lost under the other's. Before each COMMIT the store looks whether
the paths still name the files it opened (three `stat` calls, a few microseconds a
batch) and refuses the batch, nothing applied, once one does not.
"""

from __future__ import annotations

import os

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
        if database is None or _identity(self.real_path) == database:
            return []
        left = list(zip(self.paths[1:], journal, strict=True))
        if any(opened is None or _identity(path) != opened for path, opened in left):
            return []
        return [(path, opened[1]) for path, opened in left if opened is not None]


def _identity(path: str) -> Identity | None:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino
