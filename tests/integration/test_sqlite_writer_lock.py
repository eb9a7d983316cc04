"""Writers in several processes take turns through a lock file, not SQLite's busy handler.

A second `WriterLock` on the same database stands for another kopilka process: each
opens the file itself, and the kernel's lock does not tell the two apart.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kopilka.api.auth import new_token_record
from kopilka.domain.model import Deposit, Operation
from kopilka.errors import Unavailable
from kopilka.store import sqlite as sqlite_store
from kopilka.store.sqlite import SqliteStore, connect
from kopilka.store.sqlite_lock import LOCK_FILE_SUFFIX, WriterLock

# Long enough that SQLite's busy handler, sleeping ever longer between tries, would
# next look at 428 ms: a batch left to it starts ~90 ms after the lock is free.
HOLD_SECONDS = 0.335
STARTS_WITHIN_SECONDS = 0.05


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "kopilka.db")


@pytest.fixture
async def store(path: str) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(path)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def other_process(path: str) -> Iterator[WriterLock]:
    lock = WriterLock(path)
    yield lock
    lock.close()


async def test_a_waiting_batch_starts_as_soon_as_another_process_commits(
    path: str, store: SqliteStore, other_process: WriterLock
) -> None:
    other_connection = connect(path)
    waits: list[float] = []
    try:
        # Up to three tries at the time: a loaded machine is slow to run the batch's
        # threads now and then. How it waits is looked at in each.
        for attempt in range(3):
            assert other_process.try_acquire()
            other_connection.execute("BEGIN IMMEDIATE")
            deposit = Deposit("Ann", 100, "pay", f"k{attempt}")
            batch = asyncio.create_task(store.apply([deposit]))
            await asyncio.sleep(HOLD_SECONDS)
            assert not batch.done()  # it waits: the other process is writing
            # In the kernel, which wakes it as the lock is let go: polled or left to
            # SQLite's busy handler, it would look again only after a sleep of its own.
            assert blocked_on(path + LOCK_FILE_SUFFIX), "the batch does not wait on the lock"
            other_connection.execute("ROLLBACK")
            other_process.release()
            released = time.perf_counter()
            (outcome,) = await batch
            waits.append(time.perf_counter() - released)
            assert isinstance(outcome, Operation)
            if waits[-1] < STARTS_WITHIN_SECONDS:
                break
        assert min(waits) < STARTS_WITHIN_SECONDS, waits
    finally:
        other_connection.close()


def blocked_on(lock_path: str) -> bool:
    """Whether a wait for `lock_path`'s flock is blocked in the kernel (/proc/locks shows
    such a wait as "->" beside the lock it waits for)."""
    found = os.stat(lock_path)
    file = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
    with open("/proc/locks") as locks:
        return any(
            line.split()[1:3] == ["->", "FLOCK"] and line.split()[6] == file for line in locks
        )


async def test_every_way_a_transaction_ends_lets_go_of_the_lock(
    store: SqliteStore, other_process: WriterLock
) -> None:
    def free() -> bool:
        if not other_process.try_acquire():
            return False
        other_process.release()
        return True

    await store.apply([Deposit("Ann", 100, "pay", "k1")])  # a batch on the event loop
    assert free()
    # A retried key: rolled back on the loop, redone on the thread reading keys.
    (replayed,) = await store.apply([Deposit("Ann", 100, "pay", "k1")])
    assert isinstance(replayed, Operation) and replayed.replayed
    assert free()
    big = [Deposit(f"c{i}", 100, "pay", f"big-{i}") for i in range(1_000)]
    await store.apply(big)  # too big for the loop: on the writer thread
    assert free()
    await store.open_sandbox("sandbox-a", datetime.now(UTC), 10)  # in its own transaction
    assert free()


async def test_the_small_writes_take_turns_through_the_lock_too(
    store: SqliteStore, other_process: WriterLock
) -> None:
    """Tokens and sandboxes wait for another process's batch as a batch does,
    instead of SQLite's busy handler, and let go of the lock after."""
    now = datetime.now(UTC)
    writes = [
        lambda: store.put_token(new_token_record("teller", None, "main")[0]),
        lambda: store.open_sandbox("sandbox-a", now, 10),
        lambda: store.touch_sandbox("sandbox-a", now),
        lambda: store.drop_sandbox("sandbox-a"),
    ]
    for write in writes:
        assert other_process.try_acquire()
        task = asyncio.create_task(write())
        await asyncio.sleep(0.05)
        assert not task.done()  # it waits its turn
        other_process.release()
        await task
        assert other_process.try_acquire()  # and leaves the lock free
        other_process.release()


async def test_a_closed_store_holds_nothing(path: str, other_process: WriterLock) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.apply([Deposit("Ann", 100, "pay", "k1")])
    await store.close()
    assert other_process.try_acquire()
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM operations").fetchone() == (1,)


def test_a_database_named_through_a_link_has_the_lock_of_the_file_it_leads_to(
    path: str, tmp_path: Path
) -> None:
    """Each took a lock beside the name it was given: a server given the link and one
    given the file wrote at once, and a statement of a period that had ended changed."""
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "link.db"
    link.symlink_to(path)
    through_the_link, by_name = WriterLock(str(link)), WriterLock(path)
    try:
        assert through_the_link.try_acquire()
        assert not by_name.try_acquire()
        through_the_link.release()
        assert by_name.try_acquire()
    finally:
        through_the_link.close()
        by_name.close()
    assert not (tmp_path / "elsewhere" / f"link.db{LOCK_FILE_SUFFIX}").exists()


def test_waiting_for_the_lock_gives_up_after_its_time(path: str, other_process: WriterLock) -> None:
    waiter = WriterLock(path)
    try:
        assert other_process.try_acquire()
        started = time.perf_counter()
        assert not waiter.acquire(timeout_seconds=0.05)
        assert 0.05 <= time.perf_counter() - started < 1.0
        other_process.release()
        assert waiter.acquire(timeout_seconds=0.05)
    finally:
        waiter.close()


async def test_a_store_that_cannot_open_leaves_no_lock_file_open(path: str) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 999")  # a schema from a newer kopilka
    store = SqliteStore(path)
    with pytest.raises(Unavailable, match="newer than this kopilka knows"):
        await store.open()
    assert open_lock_files() == []


def open_lock_files() -> list[str]:
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            names.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the descriptor that listed the directory
            continue
    return [name for name in names if name.endswith(LOCK_FILE_SUFFIX)]


WRITER_FOREVER = """
import asyncio, sys
from kopilka.domain.model import Deposit
from kopilka.store.sqlite import SqliteStore

async def main():
    store = SqliteStore(sys.argv[1])
    await store.open()
    for number in range(10**9):
        await store.apply([Deposit(f"w{i}", 100, "pay", f"w-{number}-{i}") for i in range(200)])
        if number == 0:
            print("writing", flush=True)

asyncio.run(main())
"""


async def test_a_process_killed_while_writing_holds_nobody_up(path: str) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER_FOREVER, path], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "writing"
        await asyncio.sleep(0.2)  # it holds the lock for most of each batch
    finally:
        writer.kill()
        writer.wait()
    store = SqliteStore(path)
    await store.open()
    try:
        started = time.perf_counter()
        (outcome,) = await store.apply([Deposit("Ann", 100, "pay", "after-kill")])
        assert isinstance(outcome, Operation)
        assert time.perf_counter() - started < 2.0
    finally:
        await store.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# Waits a second for the lock in a process of its own, and prints how many times the
# process was woken meanwhile. Wake-ups, not CPU seconds: a virtual machine's CPU clock
# charged an idle second's sleep 7-10 ms, as much as a real poll costs. And in the
# test's own process, threads left by other tests would be counted too.
WAITER_WAKE_UPS = """
import resource, sys
from kopilka.store.sqlite_lock import WriterLock
waiter = WriterLock(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF)
assert not waiter.acquire(timeout_seconds=1.0)
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
print(after.ru_nvcsw - before.ru_nvcsw, cpu)
"""


def test_a_long_wait_seldom_wakes_its_process(path: str, other_process: WriterLock) -> None:
    """Tried every half millisecond, a second's wait took ~50 ms of CPU: a hundred one-shot
    commands waiting at once took every core from the very process holding the lock.
    Such a wait woke its process ~1,600 times a second; one in the kernel, ~30."""
    assert other_process.try_acquire()
    waited = subprocess.run(
        [sys.executable, "-c", WAITER_WAKE_UPS, path],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    wake_ups, cpu_seconds = waited.stdout.split()
    assert int(wake_ups) < 200
    # And no spinning, which wakes nothing (a loose bound: the CPU clock is coarse).
    assert float(cpu_seconds) < 0.3


def test_a_wait_in_the_kernel_stops_when_asked_and_leaves_nothing_held(
    path: str, other_process: WriterLock
) -> None:
    waiter = WriterLock(path)
    stop = threading.Event()
    stopped_at: list[float] = []

    def stop_waiting() -> None:
        stopped_at.append(time.perf_counter())
        stop.set()

    try:
        assert other_process.try_acquire()
        # Timed from the stop itself: a clock read before the timer's (a loaded machine
        # may run the timer first) saw a prompt stop as one too early.
        threading.Timer(0.3, stop_waiting).start()
        assert not waiter.acquire(timeout_seconds=10, stop=stop)
        returned = time.perf_counter()
        assert stopped_at, "it stopped waiting before it was asked to"
        # Promptly: a few of its 50 ms looks at `stop`, far from the 10 s it would wait.
        assert returned - stopped_at[0] < 0.25
        other_process.release()
        # The wait given up lets go of the lock as soon as it gets it.
        deadline = time.monotonic() + 2
        while not other_process.try_acquire():
            assert time.monotonic() < deadline, "a wait given up kept the lock"
            time.sleep(0.001)
        # A new wait takes the lock as it is let go, and lets go of it in turn.
        threading.Timer(0.1, other_process.release).start()
        assert waiter.acquire(timeout_seconds=5)
        assert not other_process.try_acquire()
        waiter.release()
        assert other_process.try_acquire()
        other_process.release()
    finally:
        waiter.close()


async def test_a_write_that_waited_its_time_behind_other_writers_says_so(
    path: str, store: SqliteStore, other_process: WriterLock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "another program has held its write lock": other kopilka processes take it in
    turn (a crowd of one-shot commands), and this one waited too long for its turn."""
    monkeypatch.setattr(sqlite_store, "_BUSY_TIMEOUT_MS", 300)
    assert other_process.try_acquire()
    with pytest.raises(Unavailable) as refused:
        # A write on the writer thread, as a crowd's would be.
        await store.open_sandbox("sandbox-a", datetime.now(UTC), 10)
    assert (refused.value.code, refused.value.message) == (
        "store_busy",
        "the database is busy: this write waited over 0.3 s for its turn behind other"
        " writers; nothing was changed",
    )
    assert refused.value.before_the_write  # no key offered to retry it "safely" with
    other_process.release()
    (outcome,) = await store.apply([Deposit("Ann", 100, "pay", "k1")])
    assert isinstance(outcome, Operation)


def test_a_lock_taken_in_the_kernel_is_let_go_though_a_child_was_forked(tmp_path: Path) -> None:
    """A lock the kernel's wait took is held through a descriptor of its own. Closing that
    alone lets go of nothing while a child forked meanwhile (a library user's
    multiprocessing pool) keeps the same open file: every writer would wait for the child."""
    path = str(tmp_path / "x.db")
    holder, waiting, other = WriterLock(path), WriterLock(path), WriterLock(path)
    assert holder.try_acquire()
    threading.Timer(0.1, holder.release).start()
    assert waiting.acquire(5.0)  # past its first 5 ms: taken by the wait in the kernel
    child = os.fork()
    if child == 0:  # holds every descriptor of its parent's, and does nothing
        time.sleep(30)
        os._exit(0)
    try:
        waiting.release()
        assert other.try_acquire()
        other.release()
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
        for lock in (holder, waiting, other):
            lock.close()
