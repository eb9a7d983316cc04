"""The Python client's retries after a lost answer, against a real server behind a
proxy that lets a request through and then hangs up before its answer."""

from __future__ import annotations

import contextlib
import gc
import re
import signal
import socket
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.e2e.conftest import run_kopilka
from tests.kopilka_server import running_server
from tests.local_listener import Handler, serving

from kopilka.client import Client, connect_bank
from kopilka.domain.model import Deposit, Operation
from kopilka.errors import Busy, KopilkaError, NotFound, Unavailable
from kopilka.shell.commands import calls_handed, interrupted_write, settle_write
from kopilka.shell.output import OUTCOME_UNKNOWN_EXIT

Hook = Callable[[bytes], None]


def _read_message(connection: socket.socket, buffered: bytes) -> tuple[bytes, bytes]:
    """One HTTP message (head and Content-Length body) and what came after it."""
    while b"\r\n\r\n" not in buffered:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buffered += chunk
    head, _, rest = buffered.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    size = int(length[1]) if length else 0
    while len(rest) < size:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return head + b"\r\n\r\n" + rest[:size], rest[size:]


@contextlib.contextmanager
def _relaying(upstream: str, answer_for: Callable[[bytes, bytes], bytes | None]) -> Iterator[str]:
    """A proxy to `upstream` that passes every request on, and hands the client what
    `answer_for(request, answer)` makes of the server's answer; None: it hangs up."""
    target = urlsplit(upstream)

    def relay(client: socket.socket) -> None:
        with socket.create_connection((target.hostname, target.port)) as server:
            buffered = b""
            while True:
                request, buffered = _read_message(client, buffered)
                server.sendall(request)
                answer = answer_for(request, _read_message(server, b"")[0])
                if answer is None:
                    return
                client.sendall(answer)

    with serving(relay) as url:
        yield url


@contextlib.contextmanager
def _proxy_losing_first_answer(upstream: str, method: bytes, lost: Hook) -> Iterator[str]:
    """The first answer to a `method` request is thrown away (after `lost` is called
    with its request) and the client's connection closed, as a network that fails at
    that moment would."""
    answers_lost: list[bytes] = []

    def answer_for(request: bytes, answer: bytes) -> bytes | None:
        if request.startswith(method + b" ") and not answers_lost:
            answers_lost.append(request)
            lost(request)
            return None
        return answer

    with _relaying(upstream, answer_for) as url:
        yield url


GATEWAY_TIMEOUT = (
    b"HTTP/1.1 504 Gateway Timeout\r\ncontent-type: text/plain\r\ncontent-length: 16\r\n"
    b"connection: close\r\n\r\nupstream timeout"
)


def _writes_answered_with(upstream: str, made: bytes) -> contextlib.AbstractContextManager[str]:
    """Every POST is passed on and answered with `made`, as a gateway that gave up
    waiting answers with its own 504: behind it, the server took the request all the same."""
    return _relaying(
        upstream, lambda request, answer: made if request.startswith(b"POST ") else answer
    )


# A load balancer's own 503, as one answers a request it passed on and then lost.
UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 19\r\n"
    b"connection: close\r\n\r\nno healthy upstream"
)
_DEFECT_BODY = b'{"error": {"code": "internal_error", "message": "internal error"}}'
DEFECT = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_DEFECT_BODY), _DEFECT_BODY)
)
# A cloud gateway's 503, in its own JSON shape: its code is a number.
_GATEWAY_BODY = (
    b'{"error": {"code": 503, "message": "The service is currently unavailable.",'
    b' "status": "UNAVAILABLE"}}'
)
GATEWAY_UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n" + (
    b"content-length: %d\r\n\r\n%s" % (len(_GATEWAY_BODY), _GATEWAY_BODY)
)


NOT_KOPILKAS = "without an error body: the answer is not kopilka's"


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        (GATEWAY_TIMEOUT, f"the server at {{url}} answered 504 {NOT_KOPILKAS}"),
        # A defect of the server's may strike after the commit, in making the answer.
        (DEFECT, "the server answered 500: internal error"),
        # Retried, as kopilka's own 503 is, and answered so each time: the last attempt's
        # was said to be no kopilka answer (bad_response), as if nothing had been applied.
        (UNAVAILABLE, f"the server at {{url}} answered 503 {NOT_KOPILKAS}"),
        # Its number was read as a code of kopilka's: "503", told as nothing applied.
        (
            GATEWAY_UNAVAILABLE,
            "the server at {url} answered 503 with an error code not kopilka's",
        ),
    ],
    ids=["a gateway's 504", "the server's own 500", "a load balancer's 503", "JSON, a number"],
)
def test_a_write_answered_5xx_is_not_said_to_be_refused(
    tmp_path: Path, answer: bytes, cause: str
) -> None:
    """A 5xx other than kopilka's 503 may come after the write applied: its caller must
    hear that it may have (a command line exits 4), not that it was refused (1) and may
    be sent anew."""
    with (
        running_server(tmp_path / "home") as server,
        _writes_answered_with(server.url, answer) as url,
    ):
        cause = cause.format(url=url)  # what answered named: not kopilka, at that address
        with connect_bank(url, token=server.token, ledger="main") as bank:
            with pytest.raises(Unavailable) as caught:
                bank.deposit("Ann", 100, "pay", "gate-1")
            assert caught.value.code == "outcome_unknown"
            assert caught.value.message == (
                f"{cause}; whether this was applied is not known: retry with the same"
                " idempotency key, it is never applied twice"
            )
            assert bank.account("Ann").balance_cents == 100  # it was, behind the 5xx
            with pytest.raises(Unavailable) as unkeyed:  # the key made here is no help
                bank.deposit("Ann", 100, "pay")
            assert unkeyed.value.code == "outcome_unknown"
            assert unkeyed.value.message == (
                f"{cause}; whether this was applied is not known: check before repeating it"
            )
            # An opening under a key of the caller's: its retry replays, as a deposit's.
            with pytest.raises(Unavailable) as opening:
                bank.open_account("Bea", 0, None, 0, "gate-open-1")
            assert opening.value.message == (
                f"{cause}; whether this was applied is not known: retry with the same"
                " idempotency key, it is never applied twice"
            )
        deposit = ("deposit", "--client=Ann", "--amount=1", "--description=pay")
        result = run_kopilka(tmp_path / "cli", *deposit, "--url", url, "--token", server.token)
        assert result.returncode == OUTCOME_UNKNOWN_EXIT, result.stderr
        assert result.stderr.startswith(f"Error: {cause}; whether this was applied")
        assert "(to retry it safely: --idempotency-key=" in result.stderr
        with connect_bank(server.url, token=server.token, ledger="main") as bank:
            assert bank.account("Ann").balance_cents == 300  # each applied once


_DAMAGED_BODY = (
    b'{"error": {"code": "database_damaged", "message": "the database is damaged (database'
    b' disk image is malformed); nothing was applied: it must be restored from a backup"}}'
)
DAMAGED = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n" + (
    b"content-length: %d\r\n\r\n%s" % (len(_DAMAGED_BODY), _DAMAGED_BODY)
)


_TOO_SLOW_BODY = (
    b'{"error": {"code": "request_timeout", "message": "the request body arrived too slowly"}}'
)
TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n" + (
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_SLOW_BODY), _TOO_SLOW_BODY)
)
_NO_ROUTE_BODY = b'{"error": {"code": "not_found", "message": "no such endpoint: /v1/deposits"}}'
NO_ROUTE = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n" + (
    b"content-length: %d\r\n\r\n%s" % (len(_NO_ROUTE_BODY), _NO_ROUTE_BODY)
)


@pytest.mark.parametrize(
    "retry_answer",
    [
        DAMAGED,
        # A network that lost the first attempt's answer may be slow with the retry too.
        TOO_SLOW,
        # The retry reached another server behind the same address (an older one).
        NO_ROUTE,
    ],
    ids=["the database damaged", "408 for its body", "404 for its route"],
)
def test_a_write_whose_retry_is_refused_for_itself_may_have_applied(
    tmp_path: Path, retry_answer: bytes
) -> None:
    """No retry mends a damaged database, so the client stops at it, as at a refusal of
    the retry alone; but the attempt before it, its answer lost, may have applied: the
    caller hears that, not the retry's "nothing was applied"."""
    posts: list[bytes] = []

    def answer_for(request: bytes, answer: bytes) -> bytes | None:
        if not request.startswith(b"POST "):
            return answer
        posts.append(request)
        return None if len(posts) == 1 else retry_answer  # the first applied, its answer lost

    with (
        running_server(tmp_path / "home") as server,
        _relaying(server.url, answer_for) as url,
        connect_bank(url, token=server.token, ledger="main") as bank,
    ):
        with pytest.raises(Unavailable) as caught:
            bank.deposit("Ann", 100, "pay", "damaged-1")
        assert caught.value.code == "outcome_unknown", caught.value.message
        assert len(posts) == 2  # retried once, and no more after the damage was said
        assert bank.account("Ann").balance_cents == 100


def test_a_limits_change_resent_after_a_lost_answer_does_not_undo_a_later_one(
    tmp_path: Path,
) -> None:
    """Its first try applied, then someone else changed the cap, then the answer was
    lost: the client's resend must not set its cap again over the other one."""
    with running_server(tmp_path / "home") as server, server.client() as other_admin:
        made = other_admin.post("/v1/accounts", json={"client": "Ann", "max_balance": "10.00"})
        assert made.status_code == 201, made.text
        sent: list[bytes] = []

        def someone_else_sets_a_cap(request: bytes) -> None:
            sent.append(request)
            changed = other_admin.patch("/v1/accounts/Ann", json={"max_balance": "0.50"})
            assert changed.status_code == 200, changed.text

        with _proxy_losing_first_answer(server.url, b"PATCH", someone_else_sets_a_cap) as url:
            bank = connect_bank(url, token=server.token, ledger="main")
            try:
                answered = bank.set_limits("Ann", max_balance_cents=1_000)
            finally:
                bank.close()
        # The resend answers the account as it is now, the later change kept.
        kept = other_admin.get("/v1/accounts/Ann").json()
        assert kept["max_balance"] == "0.50"
        assert answered.max_balance_cents == 50
        assert re.search(rb"(?i)\r\nidempotency-key: ", sent[0])


def test_a_write_whose_first_answer_was_lost_is_no_replay_to_its_caller(
    tmp_path: Path,
) -> None:
    """Called once without a key: the client's own resend under the key it made answers
    the operation the first try applied, and to the caller that is no replay. With the
    caller's key, a replay may be of the caller's own earlier call, and says so."""
    with running_server(tmp_path / "home") as server:
        for key, replayed in ((None, False), ("callers-1", True)):
            sent: list[bytes] = []
            with (
                _proxy_losing_first_answer(server.url, b"POST", sent.append) as url,
                connect_bank(url, token=server.token, ledger="main") as bank,
            ):
                operation = bank.deposit("Ann", 100, "pay", key)
            assert len(sent) == 1  # a first answer was lost, and the call resent
            assert operation.replayed is replayed
        with connect_bank(server.url, token=server.token, ledger="main") as bank:
            assert bank.account("Ann").balance_cents == 200  # each applied once


def test_an_account_opened_whose_answer_was_lost_is_resent_and_opened_once(
    tmp_path: Path,
) -> None:
    """An opening (with its opening deposit) had no key unless the caller gave one, and
    was not resent: `kopilka add-user --url` said its outcome was unknown, though the
    account stood. Now resent under a key made for it, it is answered as opened."""
    with running_server(tmp_path / "home") as server:
        # With the caller's key, a replay may be of the caller's own earlier call: said so.
        for client, key, replayed in (("Ann", "", False), ("Bob", "callers-1", True)):
            sent: list[bytes] = []
            with (
                _proxy_losing_first_answer(server.url, b"POST", sent.append) as url,
                connect_bank(url, token=server.token, ledger="main") as bank,
            ):
                opened = bank.open_account(client, 0, 10_000, 500, key)
            assert len(sent) == 1  # a first answer was lost, and the call resent
            assert (opened.balance_cents, opened.replayed) == (500, replayed)
            with connect_bank(server.url, token=server.token, ledger="main") as bank:
                assert bank.account(client).balance_cents == 500
                assert len(bank.statement(client, None, None).lines) == 1


def test_add_user_whose_answer_was_lost_adds_the_user_once(tmp_path: Path) -> None:
    """`kopilka add-user --url` exited 4, "whether this was applied is not known", though
    the account stood: its opening was not resent."""
    with running_server(tmp_path / "home") as server:
        with _proxy_losing_first_answer(server.url, b"POST", lambda request: None) as url:
            added = run_kopilka(
                tmp_path / "cli",
                "add-user",
                "-n",
                "Ann",
                "--max",
                "100",
                "-c",
                "5",
                "--url",
                url,
                env={"KOPILKA_TOKEN": server.token},
            )
        assert (added.returncode, added.stderr) == (0, ""), added.stderr
        with connect_bank(server.url, token=server.token, ledger="main") as bank:
            assert bank.account("Ann").balance_cents == 500
            assert len(bank.statement("Ann", None, None).lines) == 1


def test_a_refusal_a_shell_line_was_given_on_its_clients_resend_is_no_replay(
    tmp_path: Path,
) -> None:
    """The line gave no key: the client's own resend under the key made for it got the
    refusal the first try had, and the shell said it was given again, as if the line
    had been a repeat of an earlier one."""
    with running_server(tmp_path / "home") as server:
        assert (
            run_kopilka(
                server.home,
                "deposit",
                "--client=A",
                "--amount=5",
                "--url",
                server.url,
                "--description=x",
            ).returncode
            == 0
        )
        sent: list[bytes] = []
        with _proxy_losing_first_answer(server.url, b"POST", sent.append) as url:
            shell = run_kopilka(
                server.home,
                "shell",
                "--url",
                url,
                stdin="withdraw --client=A --amount=100 --description=y\n",
            )
    assert len(sent) == 1  # a first answer was lost, and the request resent
    assert (shell.returncode, shell.stdout) == (
        0,
        "Error: insufficient funds: A has $5.00 available\n",
    )


def test_a_client_closed_while_its_write_waits_says_it_may_have_been_applied(
    tmp_path: Path,
) -> None:
    """Closed by another thread while a deposit waits on the server: the deposit goes
    through there, and its caller is told so or that it may have been, with the key that
    settles it: never a raw error of the closed connection pool, which it could take for
    a failure and pay again."""
    home = tmp_path / "home"
    with running_server(home) as server:
        bank = connect_bank(server.url, token=server.token, ledger="main")
        bank.deposit("Ann", 100, "seed", "seed")
        outcome: list[BaseException | Operation] = []
        database = sqlite3.connect(
            home / "kopilka.db", isolation_level=None, check_same_thread=False
        )
        database.execute("BEGIN IMMEDIATE")  # the deposit waits on the server for it
        let_go = threading.Timer(1.5, lambda: (database.execute("ROLLBACK"), database.close()))
        let_go.start()
        caller = threading.Thread(
            target=lambda: outcome.append(_outcome(lambda: bank.deposit("Ann", 100, "d", "K1")))
        )
        caller.start()
        time.sleep(0.5)
        bank.close()
        caller.join(timeout=30)
        let_go.join()
        (told,) = outcome
        if not isinstance(told, Operation):  # its answer lost with the connection
            assert isinstance(told, Unavailable) and told.code == "outcome_unknown", told
        with connect_bank(server.url, token=server.token, ledger="main") as again:
            settled = again.deposit("Ann", 100, "d", "K1")  # the same key: not again
            assert settled.replayed and again.account("Ann").balance_cents == 200


def _outcome(call: Callable[[], Operation]) -> BaseException | Operation:
    try:
        return call()
    except BaseException as error:
        return error


@pytest.mark.parametrize("sandbox", [False, True], ids=["a ledger", "a sandbox"])
def test_a_client_closed_while_calls_are_under_way_lets_them_end(
    tmp_path: Path, sandbox: bool
) -> None:
    """As the embedded bank closes: the calls under way in other threads end as they would
    have (they were told outcome_unknown, their connections closed under them, or
    sandbox_not_found, the sandbox dropped first), the sandbox is dropped after them,
    later calls are refused, and no socket is left open."""
    home = tmp_path / "home"
    with running_server(home) as server:
        ledger = None if sandbox else "main"  # a sandbox is a ledger of its own
        bank = connect_bank(server.url, token=server.token, ledger=ledger, sandbox=sandbox)
        bank.deposit("Ann", 100, "seed", "seed")
        database = sqlite3.connect(
            home / "kopilka.db", isolation_level=None, check_same_thread=False
        )
        database.execute("BEGIN IMMEDIATE")  # the deposits wait on the server for it
        let_go = threading.Timer(1.0, lambda: (database.execute("ROLLBACK"), database.close()))
        outcomes: list[BaseException | Operation] = []

        def pay(key: str) -> None:
            outcomes.append(_outcome(lambda: bank.deposit("Ann", 100, "d", key)))

        callers = [threading.Thread(target=pay, args=(f"K{n}",)) for n in range(4)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            let_go.start()
            for caller in callers:
                caller.start()
            deadline = time.monotonic() + 10
            while bank._calls.count < len(callers) and time.monotonic() < deadline:
                time.sleep(0.01)  # every call sent, and waiting on the lock
            assert bank._calls.count == len(callers)
            bank.close()
            for caller in callers:  # their requests ended before close() returned; the
                caller.join(timeout=10)  # threads then only take the answers in
            let_go.join()
            gc.collect()
        assert len(outcomes) == len(callers)
        assert all(isinstance(outcome, Operation) for outcome in outcomes), outcomes
        with pytest.raises(KopilkaError) as refused:
            bank.account("Ann")
        assert refused.value.code == "client_closed"
        assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
        if sandbox:
            with server.client(**{"Kopilka-Ledger": bank.ledger}) as admin:
                assert admin.get("/v1/accounts").status_code == 404  # dropped all the same


def test_a_write_not_sent_after_its_ledger_lookup_failed_names_no_key(tmp_path: Path) -> None:
    """Without --ledger, a one-shot write first asks which ledger its token writes to. A
    gateway's 504 to that question means the write was never sent: a key 'to retry it
    safely' would say it might have been applied."""
    with (
        running_server(tmp_path / "home") as server,
        _relaying(
            server.url,
            lambda request, answer: GATEWAY_TIMEOUT if request.startswith(b"GET ") else answer,
        ) as url,
    ):
        deposit = ("deposit", "--client=Ann", "--amount=1", "--description=pay")
        result = run_kopilka(tmp_path / "cli", *deposit, "--url", url, "--token", server.token)
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        assert result.stderr == (
            f"Error: the server at {url} did not say which ledger the token is for"
            f" (it answered 504 {NOT_KOPILKAS}); nothing was sent: try again\n"
        )
        assert "idempotency-key" not in result.stderr, result.stderr
        with connect_bank(server.url, token=server.token, ledger="main") as bank:
            assert bank.accounts() == []  # never sent


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (DEFECT, "it answered 500: internal error"),
        (
            b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n",
            f"it answered 502 {NOT_KOPILKAS}",
        ),
        (GATEWAY_TIMEOUT, f"it answered 504 {NOT_KOPILKAS}"),
        (UNAVAILABLE, f"it answered 503 {NOT_KOPILKAS}"),  # after the retries
    ],
    ids=["500", "502", "504", "503"],
)
@pytest.mark.parametrize("write", ["deposit", "open_account"])
def test_a_ledger_lookup_answered_amiss_says_the_write_was_not_sent(
    tmp_path: Path, answer: bytes, said: str, write: str
) -> None:
    """Only the question which ledger the token is for went out: its 5xx had read "the
    server answered 500: internal error", as if said of the write. An account's opening
    asked it only once the opening had gone out, and so said "nothing was sent" of an
    account opened with its money."""
    asked: list[bytes] = []

    def answer_for(request: bytes, real: bytes) -> bytes:
        asked.append(request.split(b" ", 2)[1])
        return answer if request.startswith(b"GET /v1/whoami ") else real

    with (
        running_server(tmp_path / "home") as server,
        _relaying(server.url, answer_for) as url,
        connect_bank(url, token=server.token) as bank,
        pytest.raises(Unavailable) as caught,
    ):
        if write == "deposit":
            bank.deposit("Ann", 100, "pay", "lookup-1")
        else:
            bank.open_account("Ann", opening_balance_cents=500, idempotency_key="lookup-1")
    assert set(asked) == {b"/v1/whoami"}, asked  # the write never went
    assert (caught.value.message, caught.value.before_the_write) == (
        f"the server at {url} did not say which ledger the token is for ({said});"
        " nothing was sent: try again",
        True,
    )


def test_a_write_whose_retry_is_refused_its_caller_may_have_applied(tmp_path: Path) -> None:
    """Between a withdrawal whose answer was lost and its retry, the caller's token was
    revoked: the retry's 401 says nothing of the first attempt, which applied. The caller
    must hear that it may have been, not only that its token is revoked."""
    with running_server(tmp_path / "home") as server, server.client() as admin:
        assert admin.post("/v1/accounts", json={"client": "Ann"}).is_success
        assert admin.post("/v1/deposits", json={"client": "Ann", "amount": "10"}).is_success
        made = admin.post("/v1/tokens", json={"role": "client", "client": "Ann"}).json()

        def revoked(request: bytes) -> None:
            assert admin.delete(f"/v1/tokens/{made['id']}").is_success

        with (
            _proxy_losing_first_answer(server.url, b"POST", revoked) as url,
            connect_bank(url, token=made["secret"], ledger="main") as bank,
            pytest.raises(Unavailable) as caught,
        ):
            bank.withdraw("Ann", 300, "atm", "atm-1")
        assert caught.value.code == "outcome_unknown", caught.value.message
        assert admin.get("/v1/accounts/Ann").json()["balance"] == "7.00"


def test_a_token_made_whose_answer_was_lost_is_to_be_looked_for_and_revoked(
    tmp_path: Path,
) -> None:
    """Its secret is gone either way: the caller is told where to look, and what to do
    with a token made (not retried: a second try would make a second token)."""
    sent: list[bytes] = []
    with (
        running_server(tmp_path / "home") as server,
        _proxy_losing_first_answer(server.url, b"POST", sent.append) as url,
    ):
        made = run_kopilka(
            tmp_path / "cli",
            "token",
            "create",
            "--role",
            "teller",
            "--url",
            url,
            "--token",
            server.token,
        )
        assert (made.returncode, made.stdout) == (OUTCOME_UNKNOWN_EXIT, ""), made
        assert made.stderr.endswith(
            f"check before repeating it: look with `kopilka token list --url={url}"
            " --token=TOKEN`, and revoke a token made whose secret never came\n"
        ), made.stderr
        assert len(sent) == 1
        with server.client() as admin:
            roles = [token["role"] for token in admin.get("/v1/tokens").json()]
        assert roles.count("teller") == 1


def test_a_revocation_whose_answer_was_lost_is_told_there_is_no_such_token(
    tmp_path: Path,
) -> None:
    """Revoking again changes nothing, so a retry's "no such token" is the answer."""
    sent: list[bytes] = []
    with (
        running_server(tmp_path / "home") as server,
        _proxy_losing_first_answer(server.url, b"DELETE", sent.append) as url,
        connect_bank(url, token=server.token, ledger="main") as bank,
        pytest.raises(NotFound) as caught,
    ):
        bank.revoke_token("0123456789abcdef")
    assert caught.value.code == "token_not_found"
    assert len(sent) == 1


def test_a_read_answered_5xx_is_the_servers_fault_not_the_callers(tmp_path: Path) -> None:
    """A 500 or a gateway's 502 on a read was raised as InvalidInput (422): a program
    that retries on Unavailable gave up, and one that reports bad input blamed its own."""
    gateway = (
        b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"\r\n%s" % (len(_DEFECT_BODY), _DEFECT_BODY)
    )
    for answer, status in [(DEFECT, 500), (gateway, 502)]:
        with (
            running_server(tmp_path / f"home-{status}") as server,
            _relaying(
                server.url, lambda request, real, made=answer: made if b"/Ann " in request else real
            ) as url,
            connect_bank(url, token=server.token, ledger="main") as bank,
            pytest.raises(Unavailable) as caught,
        ):
            bank.account("Ann")
        assert (caught.value.code, caught.value.message) == (
            "internal_error",
            f"the server answered {status}: internal error",
        )


def _answering_after(
    seconds: float | list[float], head: bytes, body: bytes, asked: list[bytes]
) -> Handler:
    """A server that answers every request with `head` and `body`, `seconds` after it came
    (a list: the nth request after its nth, the last for the rest)."""
    delays = seconds if isinstance(seconds, list) else [seconds]

    def answer(connection: socket.socket) -> None:
        buffered = b""
        while True:
            request, buffered = _read_message(connection, buffered)
            asked.append(request)
            time.sleep(delays[min(len(asked), len(delays)) - 1])
            connection.sendall(head + b"content-length: %d\r\n\r\n%s" % (len(body), body))

    return answer


@contextlib.contextmanager
def _bank_answered_after(
    seconds: float | list[float],
    head: bytes,
    body: bytes,
    asked: list[bytes],
    timeout: float,
    connections: int = 8,
) -> Iterator[Client]:
    """A client of a server answering every request with `head` and `body`, `seconds`
    after it came (the requests in `asked`)."""
    with (
        serving(_answering_after(seconds, head, body, asked)) as url,
        connect_bank(
            url, token="kop_x_y", ledger="main", timeout_seconds=timeout, connections=connections
        ) as bank,
    ):
        yield bank


@pytest.mark.parametrize(("timeout", "attempts"), [(1.5, 1), (2.8, 2)])
def test_retries_of_a_busy_server_end_within_the_calls_timeout(
    timeout: float, attempts: int
) -> None:
    """A 503 store_busy comes after the server's own wait for the ledger (10 s): four
    attempts, each as long, made a call with a 15 s timeout take 25-45 s. A retry is
    sent only with the time left to be answered as late: one cut short by the deadline
    would leave the write's outcome unknown, where "nothing was applied" was known."""
    asked: list[bytes] = []
    busy = b'{"error": {"code": "store_busy", "message": "the database is busy"}}'
    head = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    with (
        _bank_answered_after(1.0, head, busy, asked, timeout) as bank,
        pytest.raises(Unavailable) as caught,
    ):
        started = time.monotonic()
        bank.deposit("Ann", 100, "pay", "busy-1")
    took = time.monotonic() - started
    assert len(asked) == attempts
    assert took < timeout, took
    assert (caught.value.code, caught.value.message) == ("store_busy", "the database is busy")


def test_a_busy_server_is_asked_four_times_at_most_and_given_time_between() -> None:
    """A 503 store_busy answered at once, with time to spare: the write is sent four
    times in all, 0.05, 0.1 and 0.2 s apart, and the last answer is the call's."""
    asked: list[bytes] = []
    busy = b'{"error": {"code": "store_busy", "message": "the database is busy"}}'
    head = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    with (
        _bank_answered_after(0.01, head, busy, asked, 10.0) as bank,
        pytest.raises(Unavailable) as caught,
    ):
        started = time.monotonic()
        bank.deposit("Ann", 100, "pay", "busy-1")
    took = time.monotonic() - started
    assert len(asked) == 4
    assert 0.35 <= took < 5, took
    assert len({request.partition(b"\r\n\r\n")[2] for request in asked}) == 1  # the same
    assert [re.search(rb"(?i)idempotency-key: *(\S+)", request)[1] for request in asked] == [
        b"busy-1"
    ] * 4
    assert caught.value.code == "store_busy"


def test_a_call_waiting_for_a_connection_ends_within_its_timeout() -> None:
    """The wait for one of the client's connections was not counted: a call with a 3 s
    timeout that waited 2.5 s for one then waited 3 s more for its answer. One that
    would have too little of its time left for an answer is not sent."""
    ok = b'{"status": "ok"}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    asked: list[bytes] = []
    answered: list[object] = []
    with (
        serving(_answering_after(2.5, head, ok, asked)) as url,
        connect_bank(
            url, token="kop_x_y", ledger="main", timeout_seconds=3.0, connections=1
        ) as bank,
    ):
        holding = threading.Thread(target=lambda: answered.append(bank.health()))
        holding.start()
        deadline = time.monotonic() + 10
        while not asked:  # the one connection is taken, its request at the server
            assert time.monotonic() < deadline, "the first call never reached the server"
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(Busy) as caught:
            bank.deposit("Ann", 100, "pay", "waited-1")
        took = time.monotonic() - started
        holding.join()
    assert answered == [{"status": "ok"}]
    assert took < 3.0, took
    assert caught.value.code == "client_busy"  # nothing sent: no outcome to be unsure of
    assert caught.value.before_the_write
    assert len(asked) == 1


def test_a_write_cut_short_before_any_attempt_went_out_applied_nothing() -> None:
    """Ctrl-C between attempts whose connections were refused (a server restarting): it
    was said to have maybe been applied, and a teller sent to check for nothing."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: connections are refused
        bank = Client(f"http://127.0.0.1:{port}", "kop_x_y", ledger="main")
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            since = calls_handed(bank)
            signal.setitimer(signal.ITIMER_REAL, 0.12)  # in the waits between attempts
            with pytest.raises(KeyboardInterrupt) as caught:
                bank.deposit("Ann", 100, "pay", "cut-short-1")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            bank.close()
    settle_write(caught.value, bank, since)
    assert interrupted_write(caught.value) == (
        "interrupted before it reached the server; nothing was applied"
    )


@pytest.mark.parametrize("ledger", ["main", None])
def test_a_write_to_a_server_never_reached_was_not_sent(ledger: str | None) -> None:
    """Refused connections: nothing of the write was sent, whether or not the client had
    to ask the server for its ledger first (it said so only then)."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: connections are refused
        with (
            connect_bank(f"http://127.0.0.1:{port}", token="kop_x_y", ledger=ledger) as bank,
            pytest.raises(Unavailable) as caught,
        ):
            bank.deposit("Ann", 100, "pay", "never-1")
    assert (caught.value.code, caught.value.before_the_write) == ("server_unreachable", True)


def test_a_revocation_whose_answer_never_came_is_safe_to_repeat() -> None:
    """Revoking twice revokes once: "check before repeating it" sent people looking."""
    with (
        serving(_answering_after(5.0, b"HTTP/1.1 204 No Content\r\n", b"", [])) as url,
        connect_bank(url, token="kop_x_y", ledger="main", timeout_seconds=0.5) as bank,
        pytest.raises(Unavailable) as caught,
    ):
        bank.revoke_token("0123456789abcdef")
    assert caught.value.code == "outcome_unknown"
    assert caught.value.message.endswith(
        "whether this was applied is not known: repeating it is safe, done twice it is done once"
    )


@pytest.mark.parametrize(("timeout", "sends"), [(1.5, 1), (2.8, 2)])
def test_a_batchs_resends_end_within_the_calls_timeout(timeout: float, sends: int) -> None:
    """Items answered 503 are resent: each resend had a whole timeout of its own."""
    asked: list[bytes] = []
    busy = b'{"results": [{"status": 503, "error": {"code": "store_busy", "message": "busy"}}]}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    with _bank_answered_after(1.0, head, busy, asked, timeout) as bank:
        started = time.monotonic()
        [outcome] = bank.execute_many([Deposit("Ann", 100, "pay", "busy-1")])
    took = time.monotonic() - started
    assert len(asked) == sends
    assert took < timeout, took
    assert isinstance(outcome, Unavailable)
    assert (outcome.code, outcome.message) == ("store_busy", "busy")


def test_a_batchs_items_answered_busy_are_sent_four_times_at_most() -> None:
    """Items answered 503 at once, with time to spare: the batch is sent four times in
    all, 0.05, 0.1 and 0.2 s apart, under its one key, and the last answer stands."""
    asked: list[bytes] = []
    busy = b'{"results": [{"status": 503, "error": {"code": "store_busy", "message": "busy"}}]}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    with _bank_answered_after(0.01, head, busy, asked, 10.0) as bank:
        started = time.monotonic()
        [outcome] = bank.execute_many([Deposit("Ann", 100, "pay", "busy-1")], "batch-1")
    took = time.monotonic() - started
    assert len(asked) == 4
    assert 0.35 <= took < 5, took
    keys = {re.search(rb"(?i)idempotency-key: *(\S+)", request)[1] for request in asked}
    assert keys == {b"batch-1"}
    assert isinstance(outcome, Unavailable)
    assert (outcome.code, outcome.message) == ("store_busy", "busy")


def test_a_call_given_a_connection_late_waits_only_for_the_rest_of_its_time() -> None:
    """Its connection free a second into a 3 s timeout, a call waited 3 s more for an
    answer that took longer: the time it waited for the connection is the call's."""
    ok = b'{"status": "ok"}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    asked: list[bytes] = []
    with _bank_answered_after([1.0, 2.5], head, ok, asked, 3.0, connections=1) as bank:
        holding = threading.Thread(target=bank.health)
        holding.start()
        _wait_for(lambda: len(asked) == 1)  # the one connection is taken
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            bank.health()
        took = time.monotonic() - started
        holding.join()
    assert len(asked) == 2  # sent once the connection was free, a second in
    assert caught.value.code == "server_unreachable"
    assert 2.5 < took < 3.3, took


def test_a_batchs_resend_waits_for_a_connection_only_while_it_can_be_answered() -> None:
    """Its resend, given the one connection late, went out with less time left than the
    send before it took: its items known unapplied became unknown."""
    asked: list[bytes] = []
    busy = b'{"results": [{"status": 503, "error": {"code": "store_busy", "message": "busy"}}]}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    with _bank_answered_after([1.0, 1.2], head, busy, asked, 3.0, connections=1) as bank:
        outcomes: list[object] = []
        batch = threading.Thread(
            target=lambda: outcomes.extend(
                bank.execute_many([Deposit("Ann", 100, "pay", "busy-1")])
            )
        )
        batch.start()
        _wait_for(lambda: len(asked) == 1)
        bank.health()  # takes the connection as the batch's send gives it back, for 1.2 s
        batch.join()
    assert len(asked) == 2  # the batch and the other call: no resend
    [outcome] = outcomes
    assert isinstance(outcome, Unavailable)
    assert (outcome.code, outcome.message) == ("store_busy", "busy")


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "never came to pass"
        time.sleep(0.01)


def _answering_in_turn(answers: list[tuple[float, bytes, bytes]], asked: list[bytes]) -> Handler:
    """A server whose nth request is answered with the nth (delay, head, body), the last
    for the rest."""

    def answer(connection: socket.socket) -> None:
        buffered = b""
        while True:
            request, buffered = _read_message(connection, buffered)
            asked.append(request)
            delay, head, body = answers[min(len(asked), len(answers)) - 1]
            time.sleep(delay)
            connection.sendall(head + b"content-length: %d\r\n\r\n%s" % (len(body), body))

    return answer


_JSON_HEAD = b"content-type: application/json\r\n"


def test_a_retry_after_a_quick_refusal_keeps_the_time_an_answer_needs() -> None:
    """A 429 answered at once set the time a retry needed to 0.05 s: given the client's
    one connection late, the retry went out with that little left, and a write known
    not applied ended as not known."""
    asked: list[bytes] = []
    answers = [
        (
            0.3,
            b"HTTP/1.1 429 Too Many Requests\r\n" + _JSON_HEAD,
            b'{"error": {"code": "busy", "message": "slow down"}}',
        ),
        (2.3, b"HTTP/1.1 200 OK\r\n" + _JSON_HEAD, b'{"status": "ok"}'),
        (1.0, b"HTTP/1.1 201 Created\r\n" + _JSON_HEAD, b"{}"),
    ]
    with (
        serving(_answering_in_turn(answers, asked)) as url,
        connect_bank(
            url, token="kop_x_y", ledger="main", timeout_seconds=3.0, connections=1
        ) as bank,
    ):
        holding = threading.Thread(target=bank.health)  # takes the connection next, 2.3 s
        deposit = threading.Thread(target=lambda: outcomes.append(_outcome_of(bank)))
        outcomes: list[object] = []
        deposit.start()
        _wait_for(lambda: len(asked) == 1)
        holding.start()
        deposit.join()
        holding.join()
    [outcome] = outcomes
    assert isinstance(outcome, KopilkaError)
    assert (outcome.code, outcome.message) == ("busy", "slow down")  # nothing sent again
    assert len(asked) == 2


def _outcome_of(bank: Client) -> object:
    try:
        return bank.deposit("Ann", 100, "pay", "quick-1")
    except KopilkaError as error:
        return error


def test_a_batchs_resend_is_timed_from_when_its_send_went_out() -> None:
    """The send's wait for the one connection was counted as the server's time: its
    items answered 503 at once were not resent, though there was time to."""
    asked: list[bytes] = []
    busy = b'{"results": [{"status": 503, "error": {"code": "store_busy", "message": "busy"}}]}'
    refused = (
        b'{"results": [{"status": 422, "error": {"code": "insufficient_funds", "message": "no"}}]}'
    )
    answers = [
        (1.6, b"HTTP/1.1 200 OK\r\n" + _JSON_HEAD, b'{"status": "ok"}'),
        (0.0, b"HTTP/1.1 200 OK\r\n" + _JSON_HEAD, busy),
        (0.0, b"HTTP/1.1 200 OK\r\n" + _JSON_HEAD, refused),
    ]
    with (
        serving(_answering_in_turn(answers, asked)) as url,
        connect_bank(
            url, token="kop_x_y", ledger="main", timeout_seconds=3.0, connections=1
        ) as bank,
    ):
        holding = threading.Thread(target=bank.health)
        holding.start()
        _wait_for(lambda: len(asked) == 1)  # the one connection held for 1.6 s
        [outcome] = bank.execute_many([Deposit("Ann", 100, "pay", "late-1")])
        holding.join()
    assert len(asked) == 3  # resent, and its answer taken
    assert isinstance(outcome, KopilkaError) and outcome.code == "insufficient_funds", outcome


def test_a_batch_whose_answer_was_lost_is_not_told_unapplied_by_a_resend() -> None:
    """The first send's answer lost (it may have applied every item), the next answered
    an item 503 "nothing was changed" (a piece of the request failing then): that speaks
    of the second send alone, and the item stays unknown, not said to be unapplied."""
    asked: list[bytes] = []
    busy = b'{"results": [{"status": 503, "error": {"code": "store_busy", "message": "busy"}}]}'

    def answer(connection: socket.socket) -> None:
        buffered = b""
        while True:
            request, buffered = _read_message(connection, buffered)
            asked.append(request)
            if len(asked) == 1:
                return  # hangs up: the answer to the first send is lost
            head = b"HTTP/1.1 200 OK\r\n" + _JSON_HEAD
            connection.sendall(head + b"content-length: %d\r\n\r\n%s" % (len(busy), busy))

    with (
        serving(answer) as url,
        connect_bank(url, token="kop_x_y", ledger="main", timeout_seconds=2.0) as bank,
    ):
        [outcome] = bank.execute_many([Deposit("Ann", 100, "pay", "lost-1")], "batch-1")
    assert len(asked) >= 2
    assert isinstance(outcome, Unavailable)
    assert outcome.code == "outcome_unknown", outcome.message


def test_a_write_redirected_elsewhere_was_not_applied() -> None:
    """A front that sends http to https passes nothing on: the write was said to be
    maybe applied, and every retry under its key was redirected again, never settled."""
    asked: list[bytes] = []
    moved = b"HTTP/1.1 308 Permanent Redirect\r\nlocation: https://bank.example/v1/deposits\r\n"
    with (
        serving(_answering_in_turn([(0.0, moved, b"")], asked)) as url,
        connect_bank(url, token="kop_x_y", ledger="main") as bank,
        pytest.raises(Unavailable) as caught,
    ):
        bank.deposit("Ann", 100, "pay", "moved-1")
    assert (caught.value.code, caught.value.message) == (
        "bad_response",
        f"the server at {url} answered 308, a redirect (to 'https://bank.example/v1/deposits')"
        " that kopilka never sends: check the URL; nothing was applied",
    )
    assert len(asked) == 1
