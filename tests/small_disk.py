"""A file system of its own, small enough to fill: a full disk, for real."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(mount_point: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of `size` at `mount_point`, private as a ledger's directory must be (mounting one
    needs root: skipped without)."""
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr!r}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write a file in `directory` until its file system is full; the file."""
    filler = directory / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as writing:
        while True:
            writing.write(b"\0" * 4096)
            writing.flush()
    return filler
