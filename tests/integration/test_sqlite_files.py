"""A database file removed or replaced under a running store: its writes are refused.

SQLite would go on committing into the file it opened, which no path names any more,
and every operation acknowledged so would be lost as the process ends.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from kopilka.domain.model import Deposit, Operation
from kopilka.errors import Unavailable
from kopilka.store.sqlite import SqliteStore


def _remove(path: Path) -> None:
    path.unlink()


def _replace(path: Path) -> None:
    other = path.with_name("restored.db")
    other.write_bytes(path.read_bytes())  # a copy put in its place, as a restore might
    os.replace(other, path)


def _remove_the_journal(path: Path) -> None:
    Path(f"{path}-wal").unlink()  # taken for a stray file: it holds the commits


@pytest.mark.parametrize("change", [_remove, _replace, _remove_the_journal])
async def test_writes_to_a_database_file_gone_are_refused(
    tmp_path: Path, change: object, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kopilka.db"
    store = SqliteStore(str(path))
    await store.open()
    try:
        (opened,) = await store.apply([Deposit("Ann", 100, "pay", "k1")])
        assert isinstance(opened, Operation)
        assert callable(change)
        change(path)
        for attempt in range(2):  # every write, not only the first
            with pytest.raises(Unavailable) as refused, caplog.at_level(logging.ERROR):
                await store.apply([Deposit("Ann", 5, "pay", f"k{attempt + 2}")])
            assert refused.value.message == (
                "the database's file was removed or replaced while in use; nothing was applied"
            )
        told = [record.getMessage() for record in caplog.records]
        assert len(told) == 1 and "was removed or replaced while in use" in told[0]
    finally:
        await store.close()
