"""Sandbox ledgers: private to their session, dropped on close and after an idle timeout."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.kopilka_server import ServerProcess, kopilka_command, running_server, server_env
from tests.sqlite_references import assert_references_whole

from kopilka.api.sandbox import SANDBOXES_PER_TOKEN_MAX
from kopilka.client import connect_bank
from kopilka.domain.model import Deposit, Transfer
from kopilka.errors import Forbidden, InvalidInput, NotFound
from kopilka.store.sqlite import SqliteStore


def sandbox_shell(server: ServerProcess, **env: str) -> subprocess.Popen[str]:
    """`kopilka shell --sandbox` on `server`, its input and output piped."""
    return subprocess.Popen(
        [*kopilka_command(), "shell", "--sandbox", "--url", server.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**server_env(server.home), **env},
    )


def test_sandboxes_are_isolated_from_each_other_and_from_main(tmp_path: Path) -> None:
    with running_server(tmp_path / "home") as server:
        with server.client() as admin:
            admin.post("/v1/deposits", json={"client": "Main", "amount": "5", "open_account": True})
        first = connect_bank(server.url, token=server.token, sandbox=True)
        second = connect_bank(server.url, token=server.token, sandbox=True)
        try:
            first.deposit("Sandy", 1_000, "play", "k1")
            second.deposit("Sandy", 7_000, "play", "k1")  # same key, other ledger: no clash
            assert first.account("Sandy").balance_cents == 1_000
            assert second.account("Sandy").balance_cents == 7_000
            assert [a.client for a in first.accounts()] == ["Sandy"]
            with pytest.raises(NotFound):
                first.account("Main")
        finally:
            second.close()
        with server.client() as admin:
            assert admin.get("/v1/accounts/Sandy").status_code == 404
            sandbox_ledger = first.ledger
            assert (
                admin.get(
                    "/v1/accounts/Sandy", headers={"Kopilka-Ledger": second.ledger}
                ).status_code
                == 404
            )
            created = admin.post("/v1/tokens", json={"role": "teller"}).json()
        with pytest.raises(Forbidden):  # another token may not enter this sandbox
            stranger = connect_bank(server.url, token=created["secret"])
            stranger._http.headers["Kopilka-Ledger"] = sandbox_ledger
            stranger.account("Sandy")
        first.close()
        with server.client() as admin:
            gone = admin.get("/v1/accounts/Sandy", headers={"Kopilka-Ledger": sandbox_ledger})
            assert gone.status_code == 404


def test_a_client_asking_for_a_sandbox_and_a_ledger_is_refused_as_the_shell_is(
    tmp_path: Path,
) -> None:
    """The ledger named went unused, without a word (a number or a name no header carries
    too), and the client worked in a new sandbox, its writes dropped with it."""
    with running_server(tmp_path / "home") as server:
        shell = subprocess.run(
            [*kopilka_command(), "shell", "--sandbox", "--ledger", "books", "--url", server.url],
            input="deposit --client=Ann --amount=1 --description=x\n",
            capture_output=True,
            text=True,
            env=server_env(server.home),
            timeout=30,
            check=False,
        )
        for ledger in ("books", "main", 5, "кни́га"):
            with pytest.raises(InvalidInput) as refused:
                connect_bank(server.url, token=server.token, sandbox=True, ledger=ledger)  # type: ignore[arg-type]
            assert (refused.value.code, refused.value.message) == (
                "invalid_option",  # named as a Python caller gives them
                "give either sandbox=True or ledger=: a sandbox is a ledger of its own",
            ), ledger
        # A KOPILKA_LEDGER setting is left for the sessions that name no sandbox.
        with sandbox_shell(server, KOPILKA_LEDGER="books") as set_aside:
            typed = "deposit --client=Ann --amount=1 --description=x\n"
            out, errors = set_aside.communicate(typed, timeout=30)
        assert (set_aside.returncode, out, errors) == (0, "Deposit operation was successful!\n", "")
        with server.client(**{"Kopilka-Ledger": "books"}) as admin:
            assert admin.get("/v1/accounts/Ann").status_code == 404  # it went to the sandbox
    assert (shell.returncode, shell.stdout) == (1, "")
    assert shell.stderr == (
        "Error: give either --sandbox or --ledger: a sandbox is a ledger of its own\n"
    )


def test_a_token_asked_for_in_a_sandbox_session_is_told_to_name_its_ledger(
    tmp_path: Path,
) -> None:
    """In this call's words: the server's named a header and a body the caller never saw."""
    with (
        running_server(tmp_path / "home") as server,
        connect_bank(server.url, token=server.token, sandbox=True) as bank,
    ):
        with pytest.raises(InvalidInput) as refused:
            bank.create_token("teller")
        assert (refused.value.code, refused.value.message) == (
            "invalid_ledger",
            "a token is not bound to a sandbox, which lasts one session: give create_token"
            " its ledger (ledger=...)",
        )
        _, secret = bank.create_token("teller", ledger="main")
        with connect_bank(server.url, token=secret) as teller:
            assert teller.whoami()["ledger"] == "main"
        # A token that may make none is told so, not sent to name a ledger first.
        with connect_bank(server.url, token=secret, sandbox=True) as teller:
            with pytest.raises(Forbidden) as forbidden:
                teller.create_token("client", client="Ann")
            assert forbidden.value.message == "only an admin token may manage tokens"
        # The role not to be learnt (the server gone): the advice stands, as it did.
        bank_left = connect_bank(server.url, token=server.token, sandbox=True)
        assert server.stop() == 0
        with pytest.raises(InvalidInput) as still:
            bank_left.create_token("teller")
        assert still.value.code == "invalid_ledger"
        bank_left.close()


def test_one_token_cannot_take_every_sandbox(tmp_path: Path) -> None:
    with running_server(tmp_path / "home") as server:
        with server.client() as admin:
            admin.post("/v1/deposits", json={"client": "Ann", "amount": "5", "open_account": True})
            secret = admin.post("/v1/tokens", json={"role": "client", "client": "Ann"}).json()
        with server.client(secret["secret"]) as ann:
            made = [ann.post("/v1/sandboxes") for _ in range(SANDBOXES_PER_TOKEN_MAX)]
            assert {answer.status_code for answer in made} == {201}
            refused = ann.post("/v1/sandboxes")
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "too_many_sandboxes"
            with server.client() as admin:  # everyone else still gets one
                assert admin.post("/v1/sandboxes").status_code == 201
            ended = made[0].json()["ledger"]
            assert ann.delete(f"/v1/sandboxes/{ended}").status_code == 204
            assert ann.post("/v1/sandboxes").status_code == 201


def new_sandbox_with_account(server: httpx.Client, client: str) -> str:
    """Make a sandbox and open `client`'s account in it; the sandbox's ledger name."""
    ledger: str = server.post("/v1/sandboxes").json()["ledger"]
    made = server.post(
        "/v1/deposits",
        headers={"Kopilka-Ledger": ledger},
        json={"client": client, "amount": "1", "open_account": True},
    )
    assert made.status_code == 201
    return ledger


def test_a_sandbox_is_told_its_idle_time_as_configured(tmp_path: Path) -> None:
    with (
        running_server(tmp_path / "home", KOPILKA_SANDBOX_IDLE_SECONDS="2.5") as server,
        server.client() as admin,
    ):
        made = admin.post("/v1/sandboxes")
        assert made.status_code == 201
        assert made.json()["idle_timeout_seconds"] == 2.5  # not cut down to 2


def test_an_idle_sandbox_is_dropped_by_the_server(tmp_path: Path) -> None:
    with (
        running_server(tmp_path / "home", KOPILKA_SANDBOX_IDLE_SECONDS="1") as server,
        server.client() as admin,
    ):
        headers = {"Kopilka-Ledger": new_sandbox_with_account(admin, "Ghost")}
        assert admin.get("/v1/accounts/Ghost", headers=headers).status_code == 200
        time.sleep(2.0)
        assert admin.get("/v1/accounts/Ghost", headers=headers).status_code == 404


def test_a_sandbox_in_use_through_another_server_process_is_kept(tmp_path: Path) -> None:
    """Two processes on one database (as with --workers 2): the one that made the
    sandbox and then saw nothing of it must not drop it while the other serves it."""
    home = tmp_path / "home"
    with (
        running_server(home, KOPILKA_SANDBOX_IDLE_SECONDS="3") as first,
        running_server(home, KOPILKA_SANDBOX_IDLE_SECONDS="3") as second,
        first.client() as on_first,
    ):
        headers = {"Kopilka-Ledger": new_sandbox_with_account(on_first, "Sandy")}
        with second.client(**headers) as on_second:
            deadline = time.monotonic() + 7.0  # well past the idle time, in use all along
            while time.monotonic() < deadline:
                assert on_second.get("/v1/accounts/Sandy").status_code == 200
                time.sleep(0.1)
        assert on_first.get("/v1/accounts/Sandy", headers=headers).status_code == 200


def test_a_sandbox_ended_through_one_server_process_takes_no_write_through_another(
    tmp_path: Path,
) -> None:
    """The other process has just seen the sandbox in use, so its own record says open:
    reads and writes are refused all the same (a write racing the end is refused in its
    own transaction: the store contract's tests), and nothing is left in the database."""
    home = tmp_path / "home"
    with (
        running_server(home) as first,
        running_server(home) as second,
        first.client() as on_first,
    ):
        ledger = new_sandbox_with_account(on_first, "Sandy")
        headers = {"Kopilka-Ledger": ledger}
        with second.client(**headers) as on_second:
            assert on_second.get("/v1/accounts/Sandy").status_code == 200
            keyed = on_second.post(  # its key kept, to go with the sandbox
                "/v1/batch",
                json={"operations": [{"type": "deposit", "client": "Sandy", "amount": "1"}]},
                headers={"Idempotency-Key": "sandy-batch"},
            )
            assert keyed.json()["results"][0]["status"] == 201, keyed.text
            assert on_first.delete(f"/v1/sandboxes/{ledger}").status_code == 204
            for read in ("/v1/accounts", "/v1/accounts/Sandy", "/v1/accounts/Sandy/statement"):
                gone = on_second.get(read)  # not an empty ledger, as if it went on
                assert (gone.status_code, gone.json()["error"]["code"]) == (
                    404,
                    "sandbox_not_found",
                ), read
            late = on_second.post(
                "/v1/deposits", json={"client": "Late", "amount": "1", "open_account": True}
            )
            assert (late.status_code, late.json()["error"]["code"]) == (404, "sandbox_not_found")
            batch = on_second.post(
                "/v1/batch",
                json={"operations": [{"type": "deposit", "client": "Sandy", "amount": "1"}]},
            )
            assert (batch.status_code, batch.json()["error"]["code"]) == (404, "sandbox_not_found")
        # Ended already: said so, as for any request to it.
        again = on_first.delete(f"/v1/sandboxes/{ledger}")
        assert (again.status_code, again.json()["error"]["code"]) == (404, "sandbox_not_found")
    assert sqlite_rows_of_ledger(home / "kopilka.db", ledger) == 0


def sqlite_rows_of_ledger(path: Path, ledger: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return sum(
            db.execute(f"SELECT count(*) FROM {table} WHERE ledger = ?", (ledger,)).fetchone()[0]
            for table in ("accounts", "operations", "refusals", "batch_requests", "sandboxes")
        )


def sqlite_entries_of_ledger(path: Path, ledger: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        found = db.execute(
            "SELECT count(*) FROM entries e JOIN accounts a ON a.id = e.account_id"
            " WHERE a.ledger = ?",
            (ledger,),
        )
        return int(found.fetchone()[0])


def test_a_killed_servers_idle_sandbox_is_dropped_by_the_next(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running_server(home) as server, server.client() as admin:
        ledger = new_sandbox_with_account(admin, "Ghost")
        server.stop(signal.SIGKILL)
    with (
        running_server(home, KOPILKA_SANDBOX_IDLE_SECONDS="1") as server,
        server.client() as admin,
    ):
        time.sleep(2.0)
        gone = admin.get("/v1/accounts/Ghost", headers={"Kopilka-Ledger": ledger})
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "sandbox_not_found"


async def _fill(path: Path, ledger: str, transfers: int) -> None:
    """Transfers among a sandbox's accounts, written beside the server that made it (as
    another process on its database): a big sandbox, quickly."""
    store = SqliteStore(path)
    await store.open()
    try:
        clients = [f"Client {number}" for number in range(50)]
        await store.apply(
            [Deposit(client, 10**9, "seed", f"seed {client}", ledger) for client in clients]
        )
        for batch in range(transfers // 10_000):
            await store.apply(
                [
                    Transfer(
                        clients[n % 50], clients[(n + 1) % 50], 1, "play", f"{batch}-{n}", ledger
                    )
                    for n in range(10_000)
                ]
            )
    finally:
        await store.close()


@pytest.mark.timeout(180)
def test_a_sandbox_dropped_as_its_server_is_killed_is_emptied_by_the_next(
    tmp_path: Path,
) -> None:
    """A DELETE answers once the sandbox has ended, and its rows go after, a slice at a
    time. Killed in the middle of that, the server leaves rows of a sandbox no longer
    open: the next server takes them out, and the main ledger is as it was."""
    home = tmp_path / "home"
    path = home / "kopilka.db"
    with running_server(home) as server, server.client() as admin:
        assert admin.post(
            "/v1/deposits", json={"client": "Main", "amount": "5", "open_account": True}
        ).is_success
        ledger = admin.post("/v1/sandboxes").json()["ledger"]
        asyncio.run(_fill(path, ledger, transfers=40_000))
        entries = sqlite_entries_of_ledger(path, ledger)
        assert admin.delete(f"/v1/sandboxes/{ledger}").status_code == 204
        deadline = time.monotonic() + 30
        while sqlite_entries_of_ledger(path, ledger) == entries:
            assert time.monotonic() < deadline, "its rows are not being taken out"
            time.sleep(0.001)
        server.stop(signal.SIGKILL)  # with some of its rows gone
    assert sqlite_entries_of_ledger(path, ledger) > 0, "the drop was over before the kill"
    with (
        running_server(home, KOPILKA_SANDBOX_IDLE_SECONDS="1") as server,
        server.client() as admin,
    ):
        gone = admin.get("/v1/accounts", headers={"Kopilka-Ledger": ledger})
        assert (gone.status_code, gone.json()["error"]["code"]) == (404, "sandbox_not_found")
        deadline = time.monotonic() + 60
        # Its reaper looks 4 times a second.
        while sqlite_rows_of_ledger(path, ledger) + sqlite_entries_of_ledger(path, ledger) > 0:
            assert time.monotonic() < deadline, "never emptied"
            time.sleep(0.1)
        main = admin.get("/v1/accounts/Main/statement").json()
        assert (main["closing_balance"], len(main["lines"])) == ("5.00", 1)
    assert_references_whole(path)
    assert "Traceback" not in server.errors, server.errors


def test_a_shell_session_idle_at_its_prompt_keeps_its_sandbox(tmp_path: Path) -> None:
    """The idle timeout is for a client that vanished, not a user who paused to think.
    What keeps the sandbox in use goes straight to the server too, never through a
    proxy named in the environment, which would be handed the token."""
    with (
        running_server(tmp_path / "home", KOPILKA_SANDBOX_IDLE_SECONDS="1") as server,
        socket.socket() as proxy,
    ):
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        proxy.settimeout(0.1)
        address = f"http://127.0.0.1:{proxy.getsockname()[1]}"
        shell = sandbox_shell(server, HTTP_PROXY=address, http_proxy=address)
        assert shell.stdin is not None
        shell.stdin.write('deposit --client="Pat" --amount=5 --description="before a pause"\n')
        shell.stdin.flush()
        time.sleep(3.0)  # three idle timeouts with nothing typed
        shell.stdin.write('balance --client="Pat"\n')
        out, err = shell.communicate(timeout=30)
        with pytest.raises(TimeoutError):
            proxy.accept()  # nothing ever came
    assert (shell.returncode, err) == (0, "")
    assert out == "Deposit operation was successful!\nBalance of Pat: $5.00\n"


def test_a_statement_cut_off_by_its_sandbox_dropped_is_never_shown_whole(tmp_path: Path) -> None:
    """Its lines stopped where the drop took the rest, and the answer ended as a whole
    statement: valid JSON, totals adding up, most of the money missing."""
    with running_server(tmp_path / "home") as server, server.client() as admin:
        ledger = admin.post("/v1/sandboxes").json()["ledger"]
        inside = {"Kopilka-Ledger": ledger}
        assert admin.post("/v1/accounts", json={"client": "Ann"}, headers=inside).is_success
        deposits = [{"type": "deposit", "client": "Ann", "amount": "1"}] * 10_000
        for _ in range(2):
            batch = admin.post("/v1/batch", json={"operations": deposits}, headers=inside)
            assert batch.status_code == 200
        with admin.stream("GET", "/v1/accounts/Ann/statement", headers=inside) as answer:
            assert answer.status_code == 200
            chunks = answer.iter_raw()
            received = next(chunks)
            assert admin.delete(f"/v1/sandboxes/{ledger}").status_code == 204
            with pytest.raises(httpx.RemoteProtocolError):  # cut short, not ended
                for chunk in chunks:
                    received += chunk
    assert b'"closing_balance"' not in received
    # Nor is the operator told that a ledger does not add up: a sandbox ended, that is all.
    assert "does not add up" not in server.errors, server.errors


def test_leaving_a_sandbox_session_does_not_wait_on_a_server_that_stopped_answering(
    tmp_path: Path,
) -> None:
    """`exit` with the server frozen waited, silent, for the keeper's read and then the
    sandbox's drop, each for the client's whole timeout: 30 to 60 s. The server drops
    an idle sandbox by itself."""
    with running_server(tmp_path / "home", KOPILKA_SANDBOX_IDLE_SECONDS="3") as server:
        assert server.process is not None
        shell = sandbox_shell(server)
        assert shell.stdin is not None and shell.stdout is not None
        shell.stdin.write('deposit --client="Pat" --amount=5 --description="x"\n')
        shell.stdin.flush()
        assert shell.stdout.readline() == "Deposit operation was successful!\n"
        server.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1.5)  # the keeper's next read is under way, unanswered
            started = time.monotonic()
            shell.stdin.close()
            shell.wait(timeout=60)
            left_after = time.monotonic() - started
        finally:
            server.process.send_signal(signal.SIGCONT)
    assert shell.returncode == 0
    assert left_after < 10, left_after


def _is_dropped(server: ServerProcess, ledger: str) -> bool:
    with server.client(**{"Kopilka-Ledger": ledger}) as admin:
        answer = admin.get("/v1/accounts")
    if answer.status_code == 200:
        return False
    assert answer.json()["error"]["code"] == "sandbox_not_found", answer.text
    return True


def test_sandbox_clients_dropped_unclosed_drop_their_sandboxes(tmp_path: Path) -> None:
    """Their keepers went on reading from their sandboxes for as long as the process
    lived: one token's next sandbox session was refused (too_many_sandboxes)."""
    with running_server(tmp_path / "home") as server, server.client() as admin:
        secret = admin.post("/v1/tokens", json={"role": "teller"}).json()["secret"]
        ledgers = []
        for _ in range(SANDBOXES_PER_TOKEN_MAX + 1):
            bank = connect_bank(server.url, token=secret, sandbox=True)
            bank.deposit("Sandy", 100, "play")
            assert bank._sandbox is not None
            keeper = bank._sandbox._thread
            ledgers.append(bank.ledger)
            del bank  # never closed
            gc.collect()
            assert not keeper.is_alive()
        assert [ledger for ledger in ledgers if not _is_dropped(server, ledger)] == []


def test_a_sandbox_client_left_open_as_its_program_ends_drops_its_sandbox(
    tmp_path: Path,
) -> None:
    program = (
        "import sys\n"
        "from kopilka.client import connect_bank\n"
        "bank = connect_bank(sys.argv[1], token=sys.argv[2], sandbox=True)\n"
        "bank.deposit('Sandy', 100, 'play')\n"
        "print(bank.ledger, flush=True)\n"
    )
    with running_server(tmp_path / "home") as server:
        ended = subprocess.run(
            [sys.executable, "-c", program, server.url, server.token],
            capture_output=True,
            text=True,
            env=server_env(server.home),
            timeout=30,
            check=False,
        )
        assert (ended.returncode, ended.stderr) == (0, "")
        assert _is_dropped(server, ended.stdout.strip())


def test_a_program_ending_with_its_sandbox_client_open_waits_briefly_for_a_name_lookup(
    tmp_path: Path,
) -> None:
    """httpx bounds no name lookup: a resolver that did not answer (the network down)
    held the program's end for as long as it took (20 s here), where the drop is waited
    for a few seconds at most. Its connection is closed first, so that the drop looks
    the name up again."""
    program = (
        "import socket, sys, time\n"
        "from kopilka.client import connect_bank\n"
        "bank = connect_bank(sys.argv[1], token=sys.argv[2], sandbox=True)\n"
        "bank.deposit('Sandy', 100, 'play')\n"
        "bank._sandbox._http._transport._pool.close()\n"
        "real = socket.getaddrinfo\n"
        "def unanswered(*arguments, **options):\n"
        "    time.sleep(20)\n"
        "    return real(*arguments, **options)\n"
        "socket.getaddrinfo = unanswered\n"
    )
    with running_server(tmp_path / "home") as server:
        started = time.monotonic()
        ended = subprocess.run(
            [
                sys.executable,
                "-c",
                program,
                server.url.replace("127.0.0.1", "localhost"),
                server.token,
            ],
            capture_output=True,
            text=True,
            env=server_env(server.home),
            timeout=60,
            check=False,
        )
        took = time.monotonic() - started
    assert (ended.returncode, ended.stderr) == (0, "")
    assert took < 12, took
