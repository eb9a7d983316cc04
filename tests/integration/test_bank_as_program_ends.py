"""An embedded bank called from a thread that outlives the program's main thread.

Python stops every thread pool once the main thread has finished, while the program's
other threads run on (first the jobs of pools, an application's own among them, that
its exit handlers wait for; then the rest). A write committed then was told it could
not be applied, and its retry was refused before anything was read.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_PROGRAM = textwrap.dedent(
    """
    import sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime
    from kopilka.bank import EmbeddedBank

    bank = EmbeddedBank(sys.argv[1])
    bank.deposit("Ann", 100, "first", "k-first")

    def later():
        if sys.argv[2] == "thread":
            threading.main_thread().join()  # the program is ending from here on
        else:
            time.sleep(0.5)  # a pool's job, which the exit handlers wait for
        applied = bank.deposit("Ann", 250, "late", "k-late")
        print("applied", applied.id, applied.replayed)
        again = bank.deposit("Ann", 250, "late", "k-late")
        print("again", again.id, again.replayed)
        print("balance", bank.account("Ann").balance_cents)
        lines = bank.statement("Ann", datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC)).lines
        print("statement", [line.balance_after_cents for line in lines])
        print("accounts", [account.client for account in bank.accounts()])
        bank.close()
        other = EmbeddedBank(sys.argv[1])  # opened as the program ends, too
        print("reopened", other.account("Ann").balance_cents)
        other.close()

    if sys.argv[2] == "thread":
        threading.Thread(target=later).start()
    else:
        ThreadPoolExecutor(1).submit(later)  # never shut down by hand
    print("main done")
    """
)


@pytest.mark.parametrize("started_by", ["thread", "pool"])
def test_a_thread_outliving_the_main_one_is_answered_as_its_writes_went(
    tmp_path: Path, started_by: str
) -> None:
    path = tmp_path / "ledger.db"
    finished = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(path), started_by],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.stderr == ""
    assert finished.returncode == 0
    assert finished.stdout.splitlines() == [
        "main done",
        "applied 2 False",
        "again 2 True",
        "balance 350",
        "statement [100, 350]",
        "accounts ['Ann']",
        "reopened 350",
    ]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*), sum(amount) FROM operations").fetchone() == (2, 350)
