"""An EmbeddedBank inherited by a process forked from the one that opened it.

Its loop thread is not in the child, so a call there waited for ever; a child that
never called it hung as it ended, its finalizer waiting on that loop; and on
PostgreSQL the child's end took the parent's connections out of the event loop they
share, and the parent's next call waited for ever. Its connections are never to be
used across a fork (SQLite's rule): the child is refused, in one line, and its end
leaves the parent's bank as it was. The programs fork in a subprocess of their own,
never in the test's process.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
from tests.forked_program import run_forking

from kopilka.bank import EmbeddedBank

_PROGRAM = textwrap.dedent(
    """
    import os, sys, threading
    from kopilka.bank import EmbeddedBank
    from kopilka.errors import KopilkaError

    database, does = sys.argv[1], sys.argv[2]
    bank = EmbeddedBank(database)
    bank.deposit("Ann", 100, "before")
    writing = threading.Event()

    def write_on() -> None:  # a thread of the parent's, mid-call as it forks
        while not writing.is_set():
            bank.deposit("Bob", 1, "all along")

    writer = threading.Thread(target=write_on)
    if does == "close":
        writer.start()
    child = os.fork()
    if child == 0:
        if does == "use":
            for call in (lambda: bank.deposit("Ann", 1, "child's"), bank.accounts):
                try:
                    call()
                except KopilkaError as error:
                    print("child:", error.code, error.message.replace(str(os.getppid()), "N"))
        elif does == "new":
            with EmbeddedBank(database) as own:
                print("child's own:", own.deposit("Ann", 5, "child's").credit_balance_after_cents)
        elif does == "close":
            with bank:
                pass
        sys.exit(0)  # as a program ends: its exit handlers and finalizers run
    _, status = os.waitpid(child, 0)
    writing.set()
    if does == "close":
        writer.join()
    print("child's status:", os.waitstatus_to_exitcode(status))
    print("parent:", bank.deposit("Ann", 1, "after").credit_balance_after_cents)
    bank.close()
    """
)

_STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=_STORES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return str(tmp_path / "ledger.db")


def _run(database: str, does: str) -> list[str]:
    """The program's lines, once it has ended in time, with no word on stderr."""
    ended = run_forking(_PROGRAM, database, does, timeout=30)
    assert (ended.returncode, ended.stderr) == (0, ""), ended.stdout + ended.stderr
    return ended.stdout.splitlines()


def test_a_bank_called_in_a_forked_child_is_refused_there(database: str) -> None:
    refusal = (
        "child: bank_of_another_process this bank was opened in process N, before a fork:"
        " open a new one in this process"
    )
    assert _run(database, "use") == [refusal, refusal, "child's status: 0", "parent: 101"]


@pytest.mark.parametrize("does", ["nothing", "new", "close"])
def test_a_forked_child_ends_and_leaves_the_parents_bank_as_it_was(
    database: str, does: str
) -> None:
    """`new`: the child opens and closes a bank of its own; `close`: it closes the one it
    inherited, while a thread of the parent's was writing through it as it forked."""
    lines = _run(database, does)
    if does == "new":
        assert lines == ["child's own: 105", "child's status: 0", "parent: 106"]
    else:
        assert lines == ["child's status: 0", "parent: 101"]


_DIES_HOLDING_THE_LOCK = textwrap.dedent(
    """
    import os, signal, sys, time
    from kopilka.bank import EmbeddedBank

    bank = EmbeddedBank(sys.argv[1])
    bank.deposit("Ann", 100, "before")
    # Held as a batch holds it, through the store's own descriptor, as the process forks.
    assert bank.engine.store._writer_lock.try_acquire()
    ready, told = os.pipe()
    child = os.fork()
    if child == 0:  # a long-lived worker that never touches the bank
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)  # the test reads the parent's output to its end
        os.dup2(quiet, 2)
        os.write(told, b"x")
        time.sleep(60)
        os._exit(0)
    os.read(ready, 1)
    print(child, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the parent dies mid-batch (kill -9, OOM)
    """
)


def test_a_forked_child_does_not_keep_the_write_lock_of_its_dead_parent(tmp_path: Path) -> None:
    """The child shared the lock file's open file with its parent, and the lock is the
    open file's: it held the lock until it ended, and every writer waited 10 s, busy."""
    database = str(tmp_path / "ledger.db")
    ended = run_forking(_DIES_HOLDING_THE_LOCK, database, timeout=30)
    assert ended.returncode == -signal.SIGKILL, ended.stdout + ended.stderr
    child = int(ended.stdout)
    try:
        os.kill(child, 0)  # still there, sleeping
        started = time.monotonic()
        with EmbeddedBank(database) as bank:
            balance = bank.deposit("Ann", 1, "after").credit_balance_after_cents
        assert (balance, time.monotonic() - started < 2) == (101, True)
    finally:
        os.kill(child, signal.SIGKILL)


_FORKS_WHILE_BUSY = textwrap.dedent(
    """
    import os, sys, threading
    from kopilka.bank import EmbeddedBank

    database, children = sys.argv[1], int(sys.argv[2])
    bank = EmbeddedBank(database)
    bank.deposit("Ann", 100, "before")
    done = threading.Event()

    def write_on() -> None:
        while not done.is_set():
            bank.deposit("Bob", 1, "all along")

    def read_on() -> None:
        while not done.is_set():
            bank.accounts()

    busy = [threading.Thread(target=work) for work in (write_on, read_on)]
    for thread in busy:
        thread.start()
    for _ in range(children):
        child = os.fork()
        if child == 0:
            with EmbeddedBank(database) as own:
                own.deposit("Carol", 1, "child's")
            os._exit(0)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
    done.set()
    for thread in busy:
        thread.join()
    print("Carol:", bank.account("Carol").balance_cents)
    bank.close()
    """
)


def test_children_forked_while_the_parent_is_inside_sqlite_open_banks_of_their_own(
    tmp_path: Path,
) -> None:
    """A fork copies SQLite's process-wide mutexes as they are: one held by a thread of the
    parent's at that instant (its memory allocator's, say) was never released in the child,
    whose first SQLite call then hung for good."""
    database = str(tmp_path / "ledger.db")
    ended = run_forking(_FORKS_WHILE_BUSY, database, "20", timeout=60)
    assert (ended.returncode, ended.stderr, ended.stdout) == (0, "", "Carol: 20\n")


_FORKS_WHILE_A_WRITE_WAITS = textwrap.dedent(
    """
    import os, sys, threading, time
    from kopilka.bank import EmbeddedBank
    from kopilka.store.sqlite_lock import WriterLock

    database = sys.argv[1]
    bank = EmbeddedBank(database)
    bank.deposit("Ann", 100, "before")
    another_writer = WriterLock(database)  # as another process's batch holds it
    assert another_writer.try_acquire()
    letting_go = threading.Event()

    def let_go() -> None:
        letting_go.set()
        another_writer.release()

    threading.Timer(3, let_go).start()

    def deposit() -> None:
        print("deposit:", bank.deposit("Ann", 1, "waits").credit_balance_after_cents)

    depositing = threading.Thread(target=deposit)
    depositing.start()
    time.sleep(0.3)  # by now its batch waits for the lock
    child = os.fork()
    if child == 0:
        os._exit(0)
    print("forked while the lock was held:", not letting_go.is_set())
    os.waitpid(child, 0)
    depositing.join()
    bank.close()
    """
)


def test_a_fork_does_not_wait_for_a_write_waiting_for_another_writers_lock(
    tmp_path: Path,
) -> None:
    """Waiting for the lock, the batch holds nothing of SQLite's: a fork went ahead only
    once the other writer had let go, up to 10 s later."""
    ended = run_forking(_FORKS_WHILE_A_WRITE_WAITS, str(tmp_path / "ledger.db"), timeout=30)
    assert (ended.returncode, ended.stderr) == (0, ""), ended.stdout + ended.stderr
    assert ended.stdout.splitlines() == ["forked while the lock was held: True", "deposit: 101"]


_FORKS_WHILE_A_JOB_RUNS = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from kopilka.bank import EmbeddedBank
    from kopilka.store import sqlite_fork_gate
    from kopilka.store.sqlite_jobs import submit

    database, signum = sys.argv[1], getattr(signal, sys.argv[2])
    if signum == signal.SIGTERM:  # ended as kopilka's command line ends on it
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sqlite_fork_gate._SAID_AFTER_SECONDS = 0.2  # said sooner than a real wait's 10 s
    bank = EmbeddedBank(database)
    bank.deposit("Ann", 100, "before")
    release, ended = threading.Event(), threading.Event()

    def job() -> None:  # held at the gate as one inside SQLite is, till released
        release.wait()
        ended.set()

    def meanwhile() -> None:
        time.sleep(0.5)  # the fork waits for the job
        os.kill(os.getpid(), signum)
        time.sleep(0.5)
        release.set()

    submit(ThreadPoolExecutor(1), job)
    threading.Thread(target=meanwhile).start()
    try:
        if os.fork() == 0:
            with EmbeddedBank(database) as own:
                own.deposit("Carol", 1, "child's")
            os._exit(0)
        time.sleep(3)  # a signal that came just before it is taken after it
        print("no signal")
    except (KeyboardInterrupt, SystemExit) as stopped:
        said = "once the fork was done, the job ended before it:"
        print(type(stopped).__name__, said, ended.is_set())
    _, status = os.wait()
    print("child's status:", os.waitstatus_to_exitcode(status))
    print("Carol:", bank.account("Carol").balance_cents)
    bank.close()
    """
)


@pytest.mark.parametrize(
    ("signum", "raised"), [("SIGINT", "KeyboardInterrupt"), ("SIGTERM", "SystemExit")]
)
def test_a_fork_waits_for_a_job_to_end_and_holds_a_signal_till_it_is_done(
    tmp_path: Path, signum: str, raised: str
) -> None:
    """It went ahead after 10 s, the job still inside SQLite, and the child could hang as
    before; a signal's exception during the wait was printed as ignored, and the fork
    went ahead at once."""
    ended = run_forking(_FORKS_WHILE_A_JOB_RUNS, str(tmp_path / "ledger.db"), signum, timeout=60)
    assert ended.returncode == 0, ended.stdout + ended.stderr
    assert ended.stdout.splitlines() == [
        f"{raised} once the fork was done, the job ended before it: True",
        "child's status: 0",
        "Carol: 1",
    ]
    assert ended.stderr == "a fork has waited 0.2 s for SQLite work under way to end\n"


_FORKS_INSIDE_A_JOB = textwrap.dedent(
    """
    import os, sys
    from concurrent.futures import ThreadPoolExecutor
    from kopilka.bank import EmbeddedBank
    from kopilka.store.sqlite_jobs import submit

    bank = EmbeddedBank(sys.argv[1])
    bank.deposit("Ann", 100, "before")

    def forks() -> int:  # as a logging handler that runs a program, called in a job
        child = os.fork()
        if child == 0:
            os._exit(0)
        return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])

    print("child's status:", submit(ThreadPoolExecutor(1), forks).result())
    print("Ann:", bank.account("Ann").balance_cents)
    bank.close()
    """
)


def test_a_fork_inside_a_job_does_not_wait_for_itself(tmp_path: Path) -> None:
    """A warning the store logs inside a job, to a handler that forks: the fork waited
    for the job it was in, for ever."""
    ended = run_forking(_FORKS_INSIDE_A_JOB, str(tmp_path / "ledger.db"), timeout=30)
    assert (ended.returncode, ended.stdout, ended.stderr) == (
        0,
        "child's status: 0\nAnn: 100\n",
        "",
    )


_AN_ASYNCIO_APP_FORKS = textwrap.dedent(
    """
    import asyncio, os, signal, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from kopilka.store.sqlite_jobs import submit

    calls = []

    async def main() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, calls.append, 1)
        release = threading.Event()
        submit(ThreadPoolExecutor(1), release.wait)  # held at the gate till released

        def meanwhile() -> None:
            time.sleep(0.3)  # the fork waits for the job
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.3)
            release.set()

        threading.Thread(target=meanwhile).start()
        child = os.fork()
        if child == 0:
            os._exit(0)
        os.waitpid(child, 0)
        await asyncio.sleep(0.5)
        print("the loop's handler ran for one SIGTERM:", len(calls))

    asyncio.run(main())
    """
)


def test_a_signal_held_through_a_fork_reaches_an_asyncio_loop_once() -> None:
    """Held, it was noted, and it reached the loop's wakeup descriptor as it came: sent
    again once the fork was done, the loop's handler ran for it twice."""
    ended = run_forking(_AN_ASYNCIO_APP_FORKS, timeout=30)
    assert (ended.returncode, ended.stdout, ended.stderr) == (
        0,
        "the loop's handler ran for one SIGTERM: 1\n",
        "",
    )
