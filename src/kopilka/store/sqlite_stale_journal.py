"""The journal a database file replaced under kopilka leaves behind, set aside.

A backup moved over the ledger while kopilka runs (against docs/operations.md, which
says to stop it first): SQLite keeps the old file's `-wal` and `-shm` when it closes,
that file having moved, and the file now at the path reads them at its next open as
its own journal, another database's pages over its own. So the store that had them
open renames them as it closes, `NAME.replaced-TIME-PID`, kept and never deleted.

Only when no one else has them open: another process that opened the new file since
(a restarted worker, a one-shot command) commits into the same `-wal`, and renaming it
would lose what it acknowledged. Every SQLite connection holds a shared lock on one
byte of the `-shm` (its "dead man switch") as long as it is open; the store takes that
byte for writing while it renames. An open-file-description lock, because it also
meets the locks of this process's own connections, where a POSIX lock would not, and
because closing it drops nothing of theirs. Linux has it; elsewhere the files are left
and the log says to remove them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from collections import Counter
from dataclasses import dataclass, field

from kopilka.store.sqlite_files import Identity, OpenedFiles, identity

# UNIX_SHM_DMS in SQLite's os_unix.c: 120 bytes of header, then its 8 lock bytes.
_SHM_DEAD_MAN_SWITCH = 128
# struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for an OFD lock), padded.
_FLOCK = "hhqqi4x"
# Stores of this process open on each database file: a store closing while another
# still has it open must not touch the journal they share.
_OPEN_HERE: Counter[Identity] = Counter()


@dataclass
class SetAside:
    moved: list[tuple[str, str]] = field(default_factory=list)
    left: str | None = None  # why the stale journal was left in place


def opened(files: OpenedFiles) -> None:
    if files.identities[0] is not None:
        _OPEN_HERE[files.identities[0]] += 1


def set_aside_if_stale(files: OpenedFiles) -> SetAside:
    """Once the store's connections are closed: its -wal and -shm renamed, if the file
    they belong to is no longer at its path and no one else has them open."""
    database = files.identities[0]
    if database is not None:
        _OPEN_HERE[database] -= 1
        if _OPEN_HERE[database] <= 0:
            del _OPEN_HERE[database]
    if database is None or identity(files.real_path) == database:
        return SetAside()  # the file is where it was: its journal is its own
    stale = [
        path
        for path, opened_as in zip(files.paths[1:], files.identities[1:], strict=True)
        if opened_as is not None and identity(path) == opened_as
    ]
    if not stale:
        return SetAside()
    if database in _OPEN_HERE:
        return SetAside(left="another connection of this process has it open")
    shm = files.paths[2]
    if shm not in stale:
        return SetAside(left="its -shm, whose lock says who has it open, is gone")
    if not hasattr(fcntl, "F_OFD_SETLK"):
        return SetAside(left="this system cannot tell whether another process has it open")
    try:
        descriptor = os.open(shm, os.O_RDWR | os.O_NOFOLLOW)
    except OSError as error:
        return SetAside(left=f"its -shm cannot be opened ({error.strerror})")
    try:
        status = os.fstat(descriptor)
        if (status.st_dev, status.st_ino) != files.identities[2]:
            return SetAside()  # replaced since it was looked at: not the store's any more
        lock = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, _SHM_DEAD_MAN_SWITCH, 1, 0)
        try:
            fcntl.fcntl(descriptor, fcntl.F_OFD_SETLK, lock)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):
                return SetAside(left="another process has it open")
            return SetAside(left=f"its -shm cannot be locked ({error.strerror})")
        return _rename(stale)
    finally:
        os.close(descriptor)  # and with it the lock


def _rename(paths: list[str]) -> SetAside:
    stamp = f"replaced-{int(time.time())}-{os.getpid()}"
    done = SetAside()
    for path in paths:
        aside = f"{path}.{stamp}"
        try:
            os.link(path, aside)  # never over a file already there, as a rename would be
            os.unlink(path)
        except OSError as error:
            done.left = f"{path} could not be renamed ({error.strerror})"
            return done
        done.moved.append((path, aside))
    return done
