"""The shell's history file: kept where it can be, and where it cannot (unreadable, not
writable, not a file), a session without it rather than a traceback at every line."""

from __future__ import annotations

import contextlib
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


def history_at(path: Path) -> History:
    check_home(path.parent)  # what is typed, amounts and names, is for no one else
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()  # a read-only home still gets a working shell
    return _FileHistoryOrNone(str(path))
