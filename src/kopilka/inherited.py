"""Clients a forked process inherits from the one that made them.

A copy made by `os.fork()` holds what is the parent's alone: a client's keep-alive
sockets (shared with the parent, so each process read the other's answers). Each client
is told once, in the child, before anything else runs there; a call costs nothing for it.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol


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


if hasattr(os, "register_at_fork"):  # none on Windows, which has no fork
    os.register_at_fork(after_in_child=_in_the_child)
