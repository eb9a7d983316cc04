"""A signal that lands in a write's narrowest window, one-shot or in the shell: the
write has returned, its answer in hand, and the handlers that hold signals while it is
written are being set. Over --url (a Client) the answer in hand was thrown away and the
command said it "may still have been applied", status 130, though it was; the embedded
bank answered it. The signal is put at that moment by making the step there raise it
once (no test can time a real one there); the bank, server and ledger are real."""

from __future__ import annotations

import io
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.kopilka_server import running_server

import kopilka.cli as cli
from kopilka import decided
from kopilka.bank import EmbeddedBank
from kopilka.client import connect_bank
from kopilka.shell.commands import APPLIED_THEN_INTERRUPTED, interrupted_write, prepare
from kopilka.shell.output import Output
from kopilka.shell.parser import parse_line
from kopilka.shell.repl import run_line


@pytest.fixture
def handlers_kept() -> Iterator[None]:
    """A command answered sets the process's handlers of ending signals for the rest of
    its life, as kopilka's own: here, the test's process's are put back after."""
    kept = {signum: signal.getsignal(signum) for signum in decided.ENDING}
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("way_in", ["embedded", "url"])
def test_a_signal_as_the_answer_is_about_to_be_written_leaves_it_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way_in: str, handlers_kept: None
) -> None:
    real_answering = cli.answering

    def the_signal_lands_here(*arguments: object) -> None:
        monkeypatch.setattr(cli, "answering", real_answering)
        raise KeyboardInterrupt

    action = prepare(parse_line("deposit --client=Ann --amount=1 --description=late"))
    shown, errors = io.StringIO(), io.StringIO()
    with running_server(tmp_path / "home") as server:
        bank = (
            EmbeddedBank(str(tmp_path / "ledger.db"))
            if way_in == "embedded"
            else connect_bank(server.url, token=server.token)
        )
        with bank:
            bank.deposit("Ann", 100, "opening")
            monkeypatch.setattr(cli, "answering", the_signal_lands_here)
            status = cli._answered(
                action, bank, Output.for_streams(shown, errors), reads_only=False
            )
            assert bank.account("Ann").balance_cents == 200
    assert (status, shown.getvalue(), errors.getvalue()) == (
        0,
        "Deposit operation was successful!\n",
        "",
    )


class _ClientsTheSignalLandsIn:
    """The shell's known names, whose refresh after an account's opening is where the
    signal lands: after the write, before its answer is written."""

    def invalidate(self) -> None:
        raise KeyboardInterrupt


def test_a_signal_between_a_shell_write_and_its_answer_is_told_it_was_done(
    tmp_path: Path,
) -> None:
    shown, errors = io.StringIO(), io.StringIO()
    with EmbeddedBank(str(tmp_path / "ledger.db")) as bank:
        with pytest.raises(KeyboardInterrupt) as interrupted:
            run_line(
                "deposit --client=Ann --amount=1 --description=late",
                bank,
                Output.for_streams(shown, errors),
                _ClientsTheSignalLandsIn(),  # type: ignore[arg-type]
            )
        assert bank.account("Ann").balance_cents == 100
    assert interrupted_write(interrupted.value) == APPLIED_THEN_INTERRUPTED
