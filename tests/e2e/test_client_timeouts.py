"""One call of the network client waits about its timeout for a server that does not
answer, however it fails to: a real server stopped (SIGSTOP), or one whose queue of
connections is full, so that no connection to it is made."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.kopilka_server import running_server

from kopilka.bank import Bank, EmbeddedBank
from kopilka.client import Client, connect_bank
from kopilka.errors import InvalidInput, Unavailable

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
