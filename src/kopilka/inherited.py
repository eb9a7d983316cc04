"""Banks and clients a forked process inherits from the one that made them.

A copy made by `os.fork()` holds what is the parent's alone: an embedded bank's loop
thread (not running in the child, so a call there waited for ever) and database
connections (SQLite's rule: never used across a fork), a client's keep-alive sockets
(shared with the parent, so each process read the other's answers). Each bank and
client is told once, in the child, before anything else runs there (a call costs
nothing for it): a bank refuses every call there, a client takes connections of its own
at its first call there (none made in a child that only execs).
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

from kopilka.errors import InvalidInput


class Inheritable(Protocol):
    def forked(self) -> None:
        """Called in a child process forked from the one that made it."""


_LIVE: weakref.WeakSet[Inheritable] = weakref.WeakSet()


def tell_when_forked(owner: Inheritable) -> None:
    """Have `owner.forked()` called in every child forked from this process while it lives."""
    _LIVE.add(owner)


def _in_the_child() -> None:
    failed: list[Exception] = []
    for owner in list(_LIVE):
        try:
            owner.forked()
        except Exception as error:  # the others are told all the same
            failed.append(error)
    if failed:
        raise failed[0]  # printed by Python: a fork's handlers have no caller to raise to


def keep_for_good(kept: object) -> None:
    """Never finalized in this process, not even as it ends: the parent's, copied here,
    whose finalizers would act on what the two processes share (a socket, a database)."""
    import ctypes  # loaded only in a child that inherited a bank

    pythonapi = getattr(ctypes, "pythonapi", None)  # CPython's own
    if pythonapi is not None:
        pythonapi.Py_IncRef(ctypes.py_object(kept))


def of_another_process(opened_in: int) -> InvalidInput:
    return InvalidInput(
        "bank_of_another_process",
        f"this bank was opened in process {opened_in}, before a fork: open a new one in this"
        " process",
    )


if hasattr(os, "register_at_fork"):  # none on Windows, which has no fork
    os.register_at_fork(after_in_child=_in_the_child)
