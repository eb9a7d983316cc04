"""WAL checkpoints run on their own thread: commits leave them, and nothing is lost by it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kopilka.domain.model import Deposit, Operation
from kopilka.store.sqlite import SqliteStore, connect
from kopilka.store.sqlite_checkpoint import WRITER_AUTOCHECKPOINT_PAGES, Checkpointer


def deposits(count: int, prefix: str) -> list[Deposit]:
    return [Deposit(f"{prefix}{i}", 100, "pay", f"{prefix}-{i}") for i in range(count)]


async def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return bool(condition())


async def test_a_commit_is_copied_into_the_database_file_beside_the_writer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kopilka.db"
    store = SqliteStore(path)
    await store.open()
    try:
        size_before = os.path.getsize(path)
        # Below any automatic checkpoint (SQLite's default is 1,000 pages): only the
        # checkpoint thread copies these pages from the WAL into the database file.
        outcomes = await store.apply(deposits(300, "c"))
        assert all(isinstance(o, Operation) for o in outcomes)
        wal_pages = os.path.getsize(f"{path}-wal") // 4096
        assert 10 < wal_pages < min(1_000, WRITER_AUTOCHECKPOINT_PAGES)
        assert await wait_until(lambda: os.path.getsize(path) >= size_before + 10 * 4096)
    finally:
        await store.close()


async def test_closing_right_after_commits_keeps_every_operation(tmp_path: Path) -> None:
    path = tmp_path / "kopilka.db"
    store = SqliteStore(path)
    await store.open()
    for round_number in range(5):
        await store.apply(deposits(500, f"r{round_number}-"))
    await store.close()  # a checkpoint may be running: close waits for it
    assert not Path(f"{path}-wal").exists() or os.path.getsize(f"{path}-wal") == 0
    with sqlite3.connect(path) as connection:
        (count,) = connection.execute("SELECT count(*) FROM operations").fetchone()
    assert count == 2_500


async def test_a_checkpoint_after_the_file_was_removed_makes_no_file_there(tmp_path: Path) -> None:
    """Its connection, made at its first checkpoint, made an empty database at the path
    of a ledger removed meanwhile."""
    path = str(tmp_path / "kopilka.db")
    store = SqliteStore(path)
    await store.open()
    try:
        for name in (path, f"{path}-wal", f"{path}-shm"):
            Path(name).unlink(missing_ok=True)
        assert store._checkpointer is not None
        store._checkpointer.after_commit()  # as a commit that went before the removal does
        await asyncio.sleep(0.3)
    finally:
        await store.close()
    assert not Path(path).exists()


async def test_a_checkpoint_after_the_file_was_emptied_keeps_its_journal(tmp_path: Path) -> None:
    """Its connection, made at its first checkpoint, opened the file emptied in place
    meanwhile (`: > kopilka.db`), and SQLite deleted the -wal beside that file of no
    pages, the commits in it with it."""
    path = str(tmp_path / "kopilka.db")
    store = SqliteStore(path)
    await store.open()
    try:
        journal = Path(f"{path}-wal").read_bytes()  # the schema, committed there
        os.truncate(path, 0)
        assert store._checkpointer is not None
        store._checkpointer.after_commit()  # as a commit that went before the cut does
        await asyncio.sleep(0.3)
        assert Path(f"{path}-wal").read_bytes() == journal
    finally:
        await store.close()


def test_a_failing_checkpoint_is_logged_once_and_harms_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    unopenable = tmp_path / "a directory"
    unopenable.mkdir()
    checkpointer = Checkpointer(
        lambda: connect(str(unopenable)), interval_seconds=0.01, database=str(unopenable)
    )
    try:
        for _ in range(5):
            checkpointer.after_commit()
            time.sleep(0.05)
    finally:
        checkpointer.close()
    failures = [r for r in caplog.records if "checkpoints of" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].getMessage().startswith(f"WAL checkpoints of {unopenable} fail")
