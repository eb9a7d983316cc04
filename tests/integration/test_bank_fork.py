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

import textwrap
from pathlib import Path

import pytest
from tests.forked_program import run_forking

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
