"""The shell's history file: kept where it can be, and where it cannot (unreadable, not
writable, not a file), a session without it rather than a traceback at every line.

The file keeps the last ENTRIES_KEPT lines typed, up to BYTES_KEPT of them. prompt_toolkit's
file history only appends, and reads the whole file into memory at each start: years of
a teller's lines (tens of megabytes, each name and amount typed) were all kept and all
read.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from kopilka.errors import InvalidInput
from kopilka.home import check_home, make_home
from kopilka.redaction import hide_secrets
from kopilka.shell.parser import split_line


class _FileHistoryOrNone(FileHistory):
    """prompt_toolkit's file history, its reads and writes failing quietly: its own
    report of a failure is a traceback and "Press ENTER to continue", at each line."""

    def load_history_strings(self) -> Iterable[str]:
        try:
            return list(super().load_history_strings())
        except OSError:
            return []

    def store_string(self, string: str) -> None:
        if _holds_a_secret(string):
            return  # recalled in this session only, never written to the file
        with contextlib.suppress(OSError):
            super().store_string(string)


def _holds_a_secret(line: str) -> bool:
    """A line typed with a token, or a URL with its password (a global option given in
    the shell by mistake, refused there): kept in the file, it outlived the session.
    Each word is looked at as the shell reads it too: a password with a space in it,
    quoted or escaped, is cut in two by the spaces alone, and no half is a URL's."""
    if "--token" in line or hide_secrets(line, line.split()) != line:
        return True
    try:
        words = split_line(line)
    except InvalidInput:  # an open quote, say: its words are not known, a URL's may be
        return "://" in line or "password" in line.lower()
    return any(hide_secrets(word, [word]) != word for word in words)


ENTRIES_KEPT = 10_000
BYTES_KEPT = 1024 * 1024  # an entry, with its time, is about 60-200 bytes
# Cut back once past twice what is kept: a start reads no more than about this much, and
# the file is rewritten once in many sessions, not at each start.
_BYTES_BEFORE_CUT = 2 * BYTES_KEPT
# How prompt_toolkit's FileHistory begins each entry ("# <time>" line, then "+" lines):
# no line of an entry's text can hold it, as each starts with "+".
_ENTRY_START = b"\n# "


def history_at(path: Path) -> History:
    check_home(path.parent)  # what is typed, amounts and names, is for no one else
    try:
        # Only the home's last directory, as for a ledger: a mistyped home is not made.
        make_home(path.parent)
        path.touch(exist_ok=True)
    except (OSError, InvalidInput):
        return InMemoryHistory()  # a read-only home still gets a working shell
    with contextlib.suppress(OSError):  # another user's file is left as it is
        # One an older kopilka or a copy left readable by others: private again, as the
        # database is, for it holds every name, amount and description typed. A regular
        # file of this user's alone: a link to /dev/null (history turned off) is left be.
        found = path.stat()
        if stat.S_ISREG(found.st_mode) and found.st_uid == os.geteuid() and found.st_mode & 0o077:
            path.chmod(found.st_mode & 0o700)
    with contextlib.suppress(OSError):  # not cut (a full disk): read whole, as it was
        if path.stat().st_size > _BYTES_BEFORE_CUT:
            _keep_the_last_entries(path.resolve())  # a link's file, the link kept
    return _FileHistoryOrNone(str(path))


def _keep_the_last_entries(path: Path) -> None:
    """The file cut back to its last entries, in a file of its own put in its place
    whole; the lines a running shell appends meanwhile go with them."""
    with path.open("rb") as history:
        entries = history.read().split(_ENTRY_START)[1:]
        kept: list[bytes] = []
        size = 0
        for entry in reversed(entries[-ENTRIES_KEPT:]):
            if len(_ENTRY_START) + len(entry) > BYTES_KEPT:
                continue  # one line past what is kept (a paste gone wrong): that alone goes
            size += len(_ENTRY_START) + len(entry)
            if size > BYTES_KEPT:
                break
            kept.append(_ENTRY_START + entry)
        # A name of its own: two shells starting at once each cut to a file of theirs.
        descriptor, cut = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(b"".join(reversed(kept)))
                handle.write(history.read())  # appended since it was read
            os.replace(cut, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(cut)
            raise
