"""One call of the network client waits about its timeout for a server that does not
answer, however it fails to: a real server stopped (SIGSTOP), or one whose queue of
connections is full, so that no connection to it is made."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.kopilka_server import running_server
from tests.local_listener import serving

from kopilka.bank import Bank, EmbeddedBank
from kopilka.client import CONNECTIONS_MAX, Client, connect_bank
from kopilka.errors import Busy, InvalidInput, KopilkaError, NotFound, Unavailable

TIMEOUT_SECONDS = 1.0
# The timeout, the few short pauses between retries that end quickly, and the machine's
# own slowness; not a second timeout.
WAIT_SECONDS_MAX = 3 * TIMEOUT_SECONDS  # one wait, not the four a retry loop took
QUEUE_FILLERS_MAX = 64


@contextlib.contextmanager
def _queue_full() -> Iterator[str]:
    """A listener that never accepts, its queue filled: a connection to it is not made
    (the kernel drops its SYN), as to a frozen server that many clients wait on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers: list[socket.socket] = []
        try:
            for _ in range(QUEUE_FILLERS_MAX):
                filler = socket.socket()
                fillers.append(filler)
                filler.settimeout(0.3)
                try:
                    filler.connect(address)
                except TimeoutError:
                    break  # full: this one was not let in
            else:
                pytest.skip("the queue of connections never filled")
            yield f"http://127.0.0.1:{address[1]}"
        finally:
            for filler in fillers:
                filler.close()


def _waited_seconds(call: Callable[[], object]) -> tuple[float, Unavailable]:
    started = time.monotonic()
    with pytest.raises(Unavailable) as refused:
        call()
    return time.monotonic() - started, refused.value


def test_a_server_that_takes_no_connection_is_waited_for_once() -> None:
    """A connect that timed out was retried as one refused is, four times in all: the
    shell's 30 s became two minutes, for a read or a write."""
    with _queue_full() as url:
        client = Client(url, "kop_x_y", ledger="main", timeout_seconds=TIMEOUT_SECONDS)
        try:
            for call in (
                lambda: client.account("Ann"),
                lambda: client.deposit("Ann", 100, "x", "key-1"),
            ):
                waited, error = _waited_seconds(call)
                assert waited < WAIT_SECONDS_MAX, waited
                # Never sent: it says so, no "may have been applied".
                assert error.code == "server_unreachable", error.message
                assert error.message.startswith(f"cannot reach the server at {url}"), error
        finally:
            client.close()


def test_a_stopped_server_is_waited_for_once(tmp_path: Path) -> None:
    """It took the request (the kernel did) and never answers: one wait, then the call
    ends; a write says it may have been applied."""
    with running_server(tmp_path / "home") as server:
        client = Client(server.url, server.token, timeout_seconds=TIMEOUT_SECONDS)
        try:
            client.deposit("Ann", 100, "x")
            assert server.process is not None
            server.process.send_signal(signal.SIGSTOP)
            try:
                waited, error = _waited_seconds(lambda: client.account("Ann"))
                assert waited < WAIT_SECONDS_MAX, waited
                assert error.message.endswith(
                    "took the request but did not answer in time; try again"
                )
                waited, error = _waited_seconds(lambda: client.deposit("Ann", 100, "y", "key-2"))
                assert waited < WAIT_SECONDS_MAX, waited
                assert error.code == "outcome_unknown", error.message
            finally:
                server.process.send_signal(signal.SIGCONT)
            assert client.account("Ann").balance_cents in (100, 200)  # it went on
        finally:
            client.close()


def test_connect_bank_takes_the_timeout_its_client_waits() -> None:
    """Documented in docs/api.md: connect_bank() took no timeout_seconds, so its client
    waited the default 30 s."""
    with (
        _queue_full() as url,
        connect_bank(url, token="kop_x_y", ledger="main", timeout_seconds=TIMEOUT_SECONDS) as bank,
    ):
        waited, error = _waited_seconds(lambda: bank.account("Ann"))
        assert waited < WAIT_SECONDS_MAX, waited
        assert error.code == "server_unreachable", error.message


def test_who_am_i_waits_no_longer_than_asked() -> None:
    """Tab in a shell of a client token asks the server whose token it is: on a slow
    server the prompt froze for the client's whole timeout, Ctrl-C being a key there."""

    def silent(connection: socket.socket) -> None:
        connection.recv(65536)
        time.sleep(10)

    with serving(silent) as url, Client(url, "kop_x_y", ledger="main") as client:
        started = time.monotonic()
        with pytest.raises(KopilkaError):
            client.whoami(wait_seconds=TIMEOUT_SECONDS)
        assert time.monotonic() - started < WAIT_SECONDS_MAX


@pytest.mark.parametrize(
    "connections",
    [0, -1, 257, 10**5000, True, 2.0, "8", None],
    ids=["0", "-1", "257", "10**5000", "True", "2.0", "'8'", "None"],  # 10**5000 has no repr
)
def test_connections_no_pool_can_keep_are_refused_in_one_line(connections: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        connect_bank("http://127.0.0.1:8888", token="kop_x_y", connections=connections)  # type: ignore[arg-type]
    assert refused.value.code == "invalid_option"
    assert refused.value.message.startswith("connections is a whole number from 1 to 256, not ")


def test_a_dict_given_a_python_call_is_called_a_dict() -> None:
    """Its keys are not shown (one may say its value is a password), and "a table" is a
    settings file's word, not a Python caller's."""
    with pytest.raises(InvalidInput) as refused:
        connect_bank("http://127.0.0.1:8888", token="kop_x_y", connections={"password": "x"})  # type: ignore[arg-type]
    assert refused.value.message == "connections is a whole number from 1 to 256, not a dict"


@pytest.mark.parametrize(
    "seconds",
    [10**400, 10**5000, 1e300, float("nan"), 0],
    ids=["10**400", "10**5000", "1e300", "nan", "0"],  # 10**5000 has no repr
)
def test_a_timeout_no_wait_can_take_is_refused_in_one_line(seconds: float) -> None:
    """Past what a socket or thread waits (10**400 is no float at all), it was a raw
    OverflowError, from the client or from the call it was given to."""
    with pytest.raises(InvalidInput) as refused:
        Client("http://127.0.0.1:8888", "kop_x_y", timeout_seconds=seconds)
    assert refused.value.code == "invalid_timeout"
    assert refused.value.message.startswith("timeout_seconds must be a positive number")
    banks: list[Bank] = [Client("http://127.0.0.1:8888", "kop_x_y", ledger="main")]
    banks.append(EmbeddedBank("memory:"))
    for bank in banks:
        with bank, pytest.raises(InvalidInput) as refused:
            bank.accounts(wait_seconds=seconds)
        assert refused.value.code == "invalid_timeout", bank


def test_a_listing_whose_wait_ends_before_its_first_page_sent_nothing() -> None:
    """It said the server "took the request but did not answer in time"."""
    with (
        Client("http://127.0.0.1:8888", "kop_x_y", ledger="main") as bank,
        pytest.raises(Busy) as refused,
    ):
        bank.accounts(wait_seconds=1e-9)
    assert (refused.value.code, refused.value.before_the_write) == ("client_busy", True)
    assert "nothing was sent" in refused.value.message


@pytest.mark.parametrize("connections", [CONNECTIONS_MAX, 3, 1], ids=["default", "given", "one"])
def test_a_call_that_waits_for_a_busy_connection_says_so(connections: int) -> None:
    """More calls at once than the client has connections, on a slow but healthy server:
    one that waited its whole timeout for a connection was `server_unreachable`, "cannot
    reach the server at URL: " with no reason, though the server answered all along."""
    asked: list[str] = []
    all_asked = threading.Event()  # every connection holds a call the server is on
    answer = threading.Event()  # the server answers them (slow, not down)

    def slow_server(connection: socket.socket) -> None:
        while True:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = connection.recv(4096)
                if not chunk:
                    return
                head += chunk
            asked.append(head.split(b" ", 2)[1].decode())
            if len(asked) == connections:
                all_asked.set()
            answer.wait(30)
            body = b'{"accounts": [], "next_after": null}'
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )

    answered: list[object] = []
    given = {} if connections == CONNECTIONS_MAX else {"connections": connections}
    with (
        serving(slow_server) as url,
        Client(url, "kop_x_y", ledger="main", timeout_seconds=TIMEOUT_SECONDS, **given) as client,
    ):
        # Each waits for its answer far longer than the client's own timeout.
        threads = [
            threading.Thread(target=lambda: answered.append(client.accounts(wait_seconds=30)))
            for _ in range(connections)
        ]
        for thread in threads:
            thread.start()
        try:
            assert all_asked.wait(10), asked
            started = time.monotonic()
            with pytest.raises(KopilkaError) as refused:
                client.health()
            waited, error = time.monotonic() - started, refused.value
        finally:
            answer.set()
            for thread in threads:
                thread.join()
    assert isinstance(error, Busy), error
    which = (
        "the one connection of this client was"
        if connections == 1
        else f"all {connections} connections of this client were"
    )
    said = re.fullmatch(
        which + r" busy for ([0-9.]+) s with other calls; nothing was sent: try again",
        error.message,
    )
    assert error.code == "client_busy" and said is not None, error.message
    assert error.before_the_write
    # As long as it waited: till a quarter of its time was left, too little for an answer.
    assert 0.7 <= float(said[1]) < TIMEOUT_SECONDS, error.message
    assert waited < WAIT_SECONDS_MAX, waited  # one wait, not four
    assert answered == [[]] * connections  # the others were answered, in time
    assert asked == ["/v1/accounts?limit=1000"] * connections  # and this one never sent


# Too short for any answer: spent, whatever the machine, before a connection is taken
# (1e-6 s is too, as a rule, by a few tenths of a microsecond).
SHORT_TIMEOUT_SECONDS = 1e-9


def test_a_call_whose_timeout_ran_out_with_connections_free_says_so(tmp_path: Path) -> None:
    """A timeout spent before the call took a connection, every one of them free: it was
    told "all 8 connections of this client were busy for 0.0 s with other calls", with
    no other call under way. Nothing was sent, the ledger's lookup included."""
    said = (
        f"the call's timeout of {SHORT_TIMEOUT_SECONDS:.10g} s ran out before it was sent,"
        " too little of it left to wait for an answer; nothing was sent: try again with a"
        " longer timeout"
    )
    with running_server(tmp_path / "home", "memory:") as server:
        for ledger in ("main", None):
            with connect_bank(
                server.url,
                token=server.token,
                ledger=ledger,
                timeout_seconds=SHORT_TIMEOUT_SECONDS,
            ) as bank:
                for call in (
                    lambda: bank.account("Ann"),
                    lambda: bank.deposit("Ann", 100, "pay", "short-1"),
                ):
                    with pytest.raises(Busy) as refused:
                        call()
                    assert (refused.value.code, refused.value.message) == ("client_busy", said)
        with (
            connect_bank(server.url, token=server.token, ledger="main") as bank,
            pytest.raises(NotFound),
        ):
            bank.account("Ann")  # the deposit was not sent


def _copy(source: socket.socket, target: socket.socket) -> None:
    while data := source.recv(65536):
        target.sendall(data)
    target.shutdown(socket.SHUT_WR)


def test_a_short_call_with_its_connection_held_by_another_says_it_was_busy(
    tmp_path: Path,
) -> None:
    """The one connection held by another call (its answer held back on the way) is
    busy, however short the waiting call's own timeout."""
    taken = threading.Event()  # the other call has the connection
    release = threading.Event()  # its answer goes on
    answered: list[object] = []
    with running_server(tmp_path / "home", "memory:") as server:
        upstream = urlsplit(server.url)

        def relay(client: socket.socket) -> None:
            taken.set()
            with socket.create_connection((upstream.hostname, upstream.port)) as to_server:
                forth = threading.Thread(target=_copy, args=(client, to_server), daemon=True)
                forth.start()
                release.wait(30)
                _copy(to_server, client)
                forth.join()

        with (
            serving(relay) as url,
            connect_bank(
                url,
                token=server.token,
                ledger="main",
                timeout_seconds=SHORT_TIMEOUT_SECONDS,
                connections=1,
            ) as bank,
        ):
            holding = threading.Thread(
                target=lambda: answered.append(bank.accounts(wait_seconds=30))
            )
            holding.start()
            try:
                assert taken.wait(10), "the other call never took the connection"
                with pytest.raises(Busy) as refused:
                    bank.deposit("Ann", 100, "pay", "held-1")
            finally:
                release.set()
                holding.join()
        with (
            connect_bank(server.url, token=server.token, ledger="main") as bank,
            pytest.raises(NotFound),
        ):
            bank.account("Ann")  # the deposit was not sent
    assert answered == [[]]
    said = re.fullmatch(
        r"the one connection of this client was busy( for [0-9.]+ m?s)? with other calls;"
        r" nothing was sent: try again",
        refused.value.message,
    )
    assert refused.value.code == "client_busy" and said is not None, refused.value.message
