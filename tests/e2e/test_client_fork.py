"""A Client used in both processes after `os.fork()`, on a real server: each process has
connections of its own, and the parent's session stays the parent's.

The kept-alive sockets were the parent's and the child's at once: each process read
answers to the other's requests (another client's balance, another deposit's id).
The programs fork in a subprocess of their own, never in the test's process.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.forked_program import run_forking
from tests.kopilka_server import ServerProcess, running_server, server_env

from kopilka.client import connect_bank

ROUNDS = 100

_BOTH_CALL = textwrap.dedent(
    """
    import os, sys
    from kopilka.client import connect_bank

    bank = connect_bank(sys.argv[1], token=sys.argv[2], connections=1)
    for name in ("Parent", "Child"):
        bank.open_account(name)  # the one connection is kept alive from here
    child = os.fork()
    me = "Child" if child == 0 else "Parent"
    wrong = 0
    for round in range(int(sys.argv[3])):
        operation = bank.deposit(me, 1, f"{me} {round}")
        account = bank.account(me)
        answered = (operation.credit_client, operation.description, account.client)
        balances = (operation.credit_balance_after_cents, account.balance_cents)
        if answered != (me, f"{me} {round}", me) or balances != (round + 1, round + 1):
            wrong += 1
    # One write, which a pipe takes whole: print() writes its pieces one by one when
    # unbuffered (PYTHONUNBUFFERED), woven with the other process's.
    os.write(1, f"{me} wrong answers: {wrong}\\n".encode())
    if child == 0:
        bank.close()
        sys.exit(0)
    _, status = os.waitpid(child, 0)
    print("child's status:", os.waitstatus_to_exitcode(status))
    bank.close()
    """
)


def _run(server: ServerProcess, program: str, *arguments: str) -> list[str]:
    """The program's lines, once it has ended in time, with no word on stderr."""
    ended = run_forking(
        program, server.url, server.token, *arguments, env=server_env(server.home), timeout=60
    )
    assert (ended.returncode, ended.stderr) == (0, ""), ended.stdout + ended.stderr
    return sorted(ended.stdout.splitlines())


def test_a_client_called_in_both_processes_after_a_fork_gets_its_own_answers(
    tmp_path: Path,
) -> None:
    with running_server(tmp_path / "home") as server:
        lines = _run(server, _BOTH_CALL, str(ROUNDS))
        assert lines == [
            "Child wrong answers: 0",
            "Parent wrong answers: 0",
            "child's status: 0",
        ]
        with connect_bank(server.url, token=server.token) as bank:
            balances = [(a.client, a.balance_cents) for a in bank.accounts()]
    assert balances == [("Child", ROUNDS), ("Parent", ROUNDS)]  # each write once


_SANDBOX = textwrap.dedent(
    """
    import os, sys
    from kopilka.client import connect_bank

    bank = connect_bank(sys.argv[1], token=sys.argv[2], sandbox=True)
    bank.deposit("Sandy", 100, "parent's")
    child = os.fork()
    if child == 0:
        if sys.argv[3] == "use":
            print("child:", bank.deposit("Sandy", 5, "child's").credit_balance_after_cents)
            bank.close()
        sys.exit(0)  # "none": never touched, left to the finalizers as the child ends
    _, status = os.waitpid(child, 0)
    print("child's status:", os.waitstatus_to_exitcode(status))
    print("parent:", bank.deposit("Sandy", 1, "parent's").credit_balance_after_cents)
    print("sandbox:", bank.ledger)
    """
)


def test_a_forked_child_leaves_the_parents_sandbox_to_the_parent(tmp_path: Path) -> None:
    """A child's close(), or its end, dropped the sandbox the parent's session works in."""
    with running_server(tmp_path / "home") as server:
        used = _run(server, _SANDBOX, "use")
        assert used[:3] == ["child's status: 0", "child: 105", "parent: 106"]
        untouched = _run(server, _SANDBOX, "none")
        assert untouched[:2] == ["child's status: 0", "parent: 101"]
        # The parent's own end dropped it, as a session's client left open does.
        for ledger in (used[3], untouched[2]):
            with server.client(**{"Kopilka-Ledger": ledger.removeprefix("sandbox: ")}) as admin:
                gone = admin.get("/v1/accounts")
            assert gone.json()["error"]["code"] == "sandbox_not_found", gone.text


_ONLY_EXECS = textwrap.dedent(
    """
    import os, subprocess, sys
    from kopilka.client import connect_bank

    bank = connect_bank(sys.argv[1], token=sys.argv[2])
    bank.open_account("Parent")  # a connection kept alive
    parents = (bank._http, bank._slots, bank._calls)

    def said(how: str) -> None:  # in the child, before its exec
        now = (bank._http, bank._slots, bank._calls)
        kept = all(mine is theirs for mine, theirs in zip(now, parents))
        os.write(1, f"{how}: {'nothing built' if kept else 'built'}\\n".encode())

    subprocess.run([sys.executable, "-c", "pass"], preexec_fn=lambda: said("preexec_fn"))
    child = os.fork()
    if child == 0:
        said("fork and exec")
        os.execv(sys.executable, [sys.executable, "-c", "pass"])
    os.waitpid(child, 0)
    child = os.fork()
    if child == 0:  # one that calls takes connections of its own
        bank.account("Parent")
        said("fork and call")
        os._exit(0)
    os.waitpid(child, 0)
    child = os.fork()
    if child == 0:  # one that only closes it (a `with` block's end) builds no pool either
        bank.close()
        built = "nothing built" if bank._http is parents[0] else "built"
        os.write(1, f"fork and close: {built}\\n".encode())
        try:
            bank.account("Parent")
        except Exception as error:
            os.write(1, f"a call after: {error.code}\\n".encode())
        os._exit(0)
    os.waitpid(child, 0)
    print("parent:", bank.account("Parent").balance_cents, flush=True)
    bank.close()
    """
)


def test_a_forked_child_that_only_execs_builds_nothing_for_the_client(tmp_path: Path) -> None:
    """The fork's hook built a new pool (an SSL context) in every child, one that
    only execs too, where the parent's other threads may hold the locks it takes."""
    with running_server(tmp_path / "home") as server:
        lines = _run(server, _ONLY_EXECS)
    assert lines == [
        "a call after: client_closed",
        "fork and call: built",
        "fork and close: nothing built",
        "fork and exec: nothing built",
        "parent: 0",
        "preexec_fn: nothing built",
    ]
