"""The shell's history file: kept where it can be, and where it cannot (unreadable, not
writable, not a file), a session without it rather than a traceback at every line.

The file keeps the last ENTRIES_KEPT lines typed. prompt_toolkit's file history only
appends, and reads the whole file into memory at each start: years of a teller's lines
(tens of megabytes, each name and amount typed) were all kept and all read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from kopilka.home import check_home
from kopilka.redaction import hide_secrets


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
    the shell by mistake, refused there): kept in the file, it outlived the session."""
    return "--token" in line or hide_secrets(line, line.split()) != line


ENTRIES_KEPT = 10_000
# Cut back to ENTRIES_KEPT once past this size (an entry, with its time, is about 60-100
# bytes), so a start reads no more than about this much, and rewrites the file seldom.
_BYTES_BEFORE_CUT = 2 * 1024 * 1024
# How prompt_toolkit's FileHistory begins each entry ("# <time>" line, then "+" lines):
# no line of an entry's text can hold it, as each starts with "+".
_ENTRY_START = b"\n# "


def history_at(path: Path) -> History:
    check_home(path.parent)  # what is typed, amounts and names, is for no one else
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        if path.stat().st_size > _BYTES_BEFORE_CUT:
            _keep_the_last_entries(path)
    except OSError:
        return InMemoryHistory()  # a read-only home still gets a working shell
    return _FileHistoryOrNone(str(path))


def _keep_the_last_entries(path: Path) -> None:
    entries = path.read_bytes().split(_ENTRY_START)[1:]
    kept = b"".join(_ENTRY_START + entry for entry in entries[-ENTRIES_KEPT:])
    cut = path.with_name(f".{path.name}.cut")
    descriptor = os.open(cut, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(kept)
    os.replace(cut, path)  # whole: a shell stopped meanwhile leaves the old file
