"""Standard input left non-blocking by what runs kopilka, read as if it blocked.

A program that starts kopilka may hand it a pipe or a terminal set non-blocking (as
Node.js leaves its own). Read through Python's text stream, "nothing yet" then reads as
the end of the input: a script stopped early with status 0, its half-written last line
run. The descriptor's mode is shared with whoever else holds it, so it is left as it is;
a read that would block waits here for input instead.
"""

from __future__ import annotations

import io
import os
import select
from typing import TextIO


class _WaitingReader(io.RawIOBase):
    """A descriptor's bytes, each read waiting for some to come rather than none."""

    def __init__(self, descriptor: int) -> None:
        super().__init__()
        self._descriptor = descriptor

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._descriptor

    def isatty(self) -> bool:
        return os.isatty(self._descriptor)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while True:
            try:
                return os.readv(self._descriptor, [buffer])
            except BlockingIOError:
                select.select([self._descriptor], [], [])


def waiting_input(stream: TextIO) -> TextIO:
    """`stream` as it is, or read anew through a reader that waits when its descriptor
    is non-blocking (in the same encoding, errors and line ends: none translated)."""
    if os.name != "posix":  # select() and readv() take no pipe elsewhere
        return stream
    try:
        blocking = os.get_blocking(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return stream  # no descriptor of its own (a test's)
    if blocking:
        return stream
    reader = io.BufferedReader(_WaitingReader(stream.fileno()))
    return io.TextIOWrapper(reader, encoding=stream.encoding, errors=stream.errors, newline="\n")
