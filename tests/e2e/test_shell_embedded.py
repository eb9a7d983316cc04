"""The real shell, stdin piped, on a real SQLite file: every scenario, sandbox, persistence;
the scenarios on a PostgreSQL database as well."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import select
import signal
import sqlite3
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import IO

import pytest
from tests.e2e.conftest import (
    RunKopilka,
    kopilka_command,
    kopilka_env,
    run_kopilka,
    shell_runner,
)
from tests.e2e.scenarios import SCENARIOS, Scenario, check, run_scenario, run_scenarios
from tests.kopilka_server import running_server

STOPPED_WAITING = "interrupted while it waited for another's write to end; nothing was applied"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _db_arguments(backend: str, request: pytest.FixtureRequest, url_fixture: str) -> list[str]:
    """No option for the home's SQLite file; --db and a database URL for PostgreSQL."""
    return [] if backend == "sqlite" else ["--db", request.getfixturevalue(url_fixture)]


@pytest.fixture(scope="module", params=BACKENDS)
def scenario_outputs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[str]]:
    """Every scenario in one shell session (one process start), answers split by scenario,
    on the home's SQLite file and on a PostgreSQL database."""
    home = tmp_path_factory.mktemp("scenarios") / "home"
    arguments = _db_arguments(request.param, request, "postgres_module_url")
    outputs = run_scenarios(shell_runner(home, *arguments), SCENARIOS)
    # On PostgreSQL nothing may have gone to the default SQLite file instead.
    assert (home / "kopilka.db").exists() == (not arguments)
    return outputs


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
def test_scenario(scenario: Scenario, scenario_outputs: dict[str, list[str]]) -> None:
    check(scenario, scenario_outputs[scenario.name])


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_sample_session_in_a_session_of_its_own(
    backend: str, request: pytest.FixtureRequest, kopilka_home: Path
) -> None:
    # A database of its own: the module's one already holds every scenario's clients.
    arguments = _db_arguments(backend, request, "postgres_url")
    run_scenario(shell_runner(kopilka_home, *arguments), SCENARIOS[0])
    assert (kopilka_home / "kopilka.db").exists() == (not arguments)


def test_a_wrong_answer_fails_the_check() -> None:
    wrong = Scenario("wrong", "> balance --client=A\nBalance of A: $1.00")
    with pytest.raises(AssertionError):
        check(wrong, ["Balance of A: $2.00"])
    with pytest.raises(AssertionError):
        check(wrong, ["Balance of A: $1.00", "an extra line"])


def test_state_persists_across_runs(run_shell: Callable[[str], str], kopilka_home: Path) -> None:
    assert run_shell("deposit --client=Per --amount=7 --description=x\n") == (
        "Deposit operation was successful!\n"
    )
    assert (kopilka_home / "kopilka.db").is_file()
    assert run_shell("balance --client=Per\n") == "Balance of Per: $7.00\n"


def test_no_cap_is_none_with_spaces_alone_around_it(run_shell: Callable[[str], str]) -> None:
    """A tab or a no-break space around "none" had cleared the cap, where around a number
    it is refused: neither is money text. "null", the API's word, is told the shell's."""
    script = (
        "open_account --client=Capped --max-balance=100\n"
        "set_limits --client=Capped --max-balance='none\t'\n"
        "set_limits --client=Capped --max-balance='\u00a0none'\n"
        "set_limits --client=Capped --max-balance=null\n"
        "set_limits --client=Capped --max-balance=' none '\n"
    )
    assert run_shell(script).splitlines() == [
        "Account opened for Capped: floor $0.00, cap $100.00.",
        "Error: cap 'none\\t' is not a number like 100 or 1,000.25"
        " (it holds U+0009, which no amount has)",
        "Error: cap '\\xa0none' is not a number like 100 or 1,000.25"
        " (it holds U+00A0 NO-BREAK SPACE, which no amount has)",
        "Error: cap 'null' is not a number like 100 or 1,000.25; no cap is written none",
        "Limits of Capped: floor $0.00, cap none.",
    ]


def test_the_shell_makes_time_ordered_keys(
    run_shell: Callable[[str], str], kopilka_home: Path
) -> None:
    run_shell("deposit --client=Kay --amount=7 --description=x\n")
    time.sleep(0.002)
    run_shell("withdraw --client=Kay --amount=1 --description=y\n")
    with closing(sqlite3.connect(kopilka_home / "kopilka.db")) as db:
        keys = [key for (key,) in db.execute("SELECT idempotency_key FROM operations ORDER BY id")]
    assert [uuid.UUID(key).version for key in keys] == [7, 7]
    assert keys == sorted(keys)


def test_sandbox_state_is_gone_next_run(kopilka: RunKopilka) -> None:
    lines = "deposit --client=San --amount=7 --description=x\nbalance --client=San\n"
    first = kopilka("shell", "--sandbox", stdin=lines)
    assert first.stdout == "Deposit operation was successful!\nBalance of San: $7.00\n"
    second = kopilka("shell", "--sandbox", stdin="balance --client=San\n")
    assert second.stdout == "Error: no account for client 'San'\n"
    on_disk = kopilka("shell", stdin="balance --client=San\n")
    assert on_disk.stdout == "Error: no account for client 'San'\n"


@pytest.mark.parametrize("word", ["exit", "quit"])
def test_exit_mid_input_ends_the_session(run_shell: Callable[[str], str], word: str) -> None:
    deposit = "deposit --client=Ex --amount=1 --description=x"
    assert run_shell(f"{deposit}\n{word}\n{deposit}\n") == "Deposit operation was successful!\n"
    assert run_shell("balance --client=Ex\n") == "Balance of Ex: $1.00\n"


def test_refusals_keep_the_shell_going_and_exit_zero(kopilka: RunKopilka) -> None:
    result = kopilka("shell", stdin="withdraw --client=No --amount=1 --description=x\nhelp exit\n")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "Error: no account for client 'No'"
    assert result.stdout.splitlines()[1] == "exit: leave the shell (also: quit, Ctrl-D)"


def test_a_script_that_starts_with_a_byte_order_mark_runs(kopilka: RunKopilka) -> None:
    script = "\ufeffdeposit --client=Bom --amount=1 --description=x\nbalance --client=Bom\n"
    result = kopilka("shell", "--sandbox", stdin=script * 2)  # two such files joined
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "Deposit operation was successful!\nBalance of Bom: $1.00\n"
        "Deposit operation was successful!\nBalance of Bom: $2.00\n"
    )


@pytest.mark.parametrize("read_as", ["utf-8", "cp1252"])  # cp1252: a Windows console's
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_script_in_utf16_is_refused_in_one_line(
    kopilka_home: Path, encoding: str, read_as: str
) -> None:
    """As Windows PowerShell's `>` writes it: each line would be garbled words."""
    script = "deposit --client=U --amount=1 --description=x\r\nbalance --client=U\r\n"
    encoded = (
        ("\ufeff" + script).encode(encoding) if encoding.endswith("be") else script.encode(encoding)
    )
    kopilka_home.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [*kopilka_command(), "shell", "--sandbox"],
        input=encoded,
        capture_output=True,
        env={**kopilka_env(kopilka_home), "PYTHONIOENCODING": read_as},
        cwd=kopilka_home.parent,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (1, b"")
    assert result.stdout == (
        b"Error: the input is UTF-16 text; give the shell UTF-8"
        b" (PowerShell: Out-File -Encoding utf8)\n"
    )


def test_empty_input_is_a_clean_session(kopilka: RunKopilka) -> None:
    result = kopilka(stdin="")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_db_option_points_at_another_file(kopilka: RunKopilka, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    result = kopilka(
        "shell", "--db", str(other), stdin="deposit --client=O --amount=1 --description=x\n"
    )
    assert result.stdout == "Deposit operation was successful!\n"
    assert other.is_file()
    assert kopilka(stdin="balance --client=O\n").stdout == "Error: no account for client 'O'\n"
    from_env = kopilka(stdin="balance --client=O\n", env={"KOPILKA_DB": str(other)})
    assert from_env.stdout == "Balance of O: $1.00\n"


def test_a_database_that_cannot_be_opened_is_one_line(kopilka: RunKopilka, tmp_path: Path) -> None:
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    missing = not_a_directory / "x.db"
    result = kopilka("shell", "--db", str(missing), stdin="accounts\n")
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: cannot open the database {missing}")
    assert len(result.stderr.splitlines()) == 1


def test_statement_as_csv_and_json(run_shell: Callable[[str], str]) -> None:
    output = run_shell(
        "deposit --client='Cs Vee' --amount=1,000.5 --description='a, \"quoted\" one'\n"
        "statement --client='Cs Vee' --format=csv\n"
        "statement --client='Cs Vee' --format=json\n"
    )
    _, rest = output.split("\n", 1)
    csv_text, json_text = rest.split("{", 1)
    rows = list(csv.reader(io.StringIO(csv_text)))
    assert rows[0] == ["date", "description", "withdrawals", "deposits", "balance"]
    assert rows[2][1:] == ['a, "quoted" one', "", "1000.50", "1000.50"]
    assert rows[2][0].endswith("+00:00")
    assert rows[3] == ["", "Totals", "0.00", "1000.50", "1000.50"]
    document = json.loads("{" + json_text)
    assert document["lines"][0]["amount"] == "1000.50"
    assert document["closing_balance"] == "1000.50"


def test_accounts_lists_every_client(run_shell: Callable[[str], str]) -> None:
    assert run_shell("accounts\n") == "No accounts yet.\n"
    output = run_shell(
        "open_account --client=Bea --min-balance=-10 --max-balance=50\n"
        "deposit --client=Al --amount=3 --description=x\n"
        "accounts\n"
    )
    assert output.splitlines()[2:] == [
        "| Client | Balance | Floor   | Cap    |",
        "|--------|---------|---------|--------|",
        "| Al     |   $3.00 |   $0.00 |   none |",
        "| Bea    |   $0.00 | -$10.00 | $50.00 |",
    ]


def test_a_name_typed_decomposed_is_the_same_client(run_shell: Callable[[str], str]) -> None:
    nfc, nfd = "Jos\u00e9", "Jose\u0301"  # é precomposed; e + a combining accent (macOS)
    assert run_shell(
        f'deposit --client="{nfd}" --amount=10 --description=cash\n'
        f'deposit --client="{nfc}" --amount=5 --description=cash\n'
        f'withdraw --client="{nfd}" --amount=1 --description=cash\n'
        f'balance --client="{nfd}"\n'
        f'add-user -n "{nfd}" --max 100\n'
    ).splitlines() == [
        "Deposit operation was successful!",
        "Deposit operation was successful!",
        "Withdrawal operation was successful!",
        f"Balance of {nfc}: $14.00",
        f"Error: client '{nfc}' already has an account",
    ]
    statement = json.loads(run_shell(f'statement --client="{nfd}" --format=json\n'))
    assert statement["client"] == nfc
    assert [line["amount"] for line in statement["lines"]] == ["10.00", "5.00", "-1.00"]
    assert run_shell(f'accounts\nget -n "{nfd}"\n').splitlines() == [
        "| Client | Balance | Floor | Cap  |",
        "|--------|---------|-------|------|",
        f"| {nfc}   |  $14.00 | $0.00 | none |",
        f"Name:    {nfc}",
        "Balance: $14.00",
        "Floor:   $0.00",
        "Cap:     none",
    ]


def test_help_lists_commands_and_explains_one(run_shell: Callable[[str], str]) -> None:
    output = run_shell("help\nhelp statement\nhelp nope\n")
    assert output.startswith("Commands:\n  deposit ")
    assert "show_bank_statement: a client's operations" in output
    assert output.endswith("Error: unknown command 'nope'; type 'help' to list the commands\n")


def test_help_asked_for_help_explains_itself(kopilka: RunKopilka) -> None:
    """As `COMMAND --help` explains any other command, in the shell and from the OS shell."""
    shell = kopilka("shell", stdin="help --help\nhelp -h\n")
    assert (shell.returncode, shell.stderr) == (0, "")
    explained = shell.stdout.split("\nhelp: ")
    assert explained[0].startswith("help: list the commands, or explain one\nUsage: help [")
    assert len(explained) == 2
    for flag in ("--help", "-h"):
        oneshot = kopilka("help", flag)
        assert (oneshot.returncode, oneshot.stderr) == (0, "")
        assert oneshot.stdout.startswith("help: list the commands, or explain one\n")


class Terminal:
    """The shell on a pseudo-terminal, as a person would run it."""

    def __init__(
        self,
        home: Path,
        *arguments: str,
        stdout: IO[str] | None = None,
        term: str = "xterm",
        controlling: bool = False,
    ) -> None:
        """`stdout`: where the shell's answers go instead (`kopilka shell > log.txt`);
        `term`: the terminal's kind, as TERM says it; `controlling`: the shell's own
        terminal, where Ctrl-C typed (\x03) sends SIGINT and drops the line typed."""
        self._master, slave = os.openpty()
        # A real size, so neither rich nor prompt_toolkit wraps at a guessed width.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        # No cursor position requests: the test answers none, and prompt_toolkit would wait.
        env = {**kopilka_env(home), "TERM": term, "PROMPT_TOOLKIT_NO_CPR": "1"}
        self.process = subprocess.Popen(
            [*kopilka_command(), *arguments],
            stdin=slave,
            stdout=slave if stdout is None else stdout,
            stderr=slave,
            env=env,
            cwd=home.parent,
            start_new_session=True,
            preexec_fn=_take_the_terminal if controlling else None,
        )
        os.close(slave)
        self.seen = ""
        self.raw = b""  # all it showed, escape sequences and all

    def send(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    def type_lines(self, *lines: str) -> int:
        """Type each line and Enter, read all it shows until it ends; its status."""
        try:
            for line in lines:
                self.send(line + "\n")
            self.rest()
        finally:
            status = self.close()
        return status

    def expect(self, text: str, timeout_seconds: float = 15.0) -> None:
        """Wait until `text` is shown (colours and cursor moves aside); later calls look
        only at what came after it."""
        deadline = time.monotonic() + timeout_seconds
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"never saw {text!r} in {self.seen!r}"
            ready, _, _ = select.select([self._master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self._master, 65536)
                except OSError:  # the shell has exited and the terminal closed
                    chunk = b""
                assert chunk, f"the shell ended before showing {text!r}: {self.seen!r}"
                self.raw += chunk
                self.seen += _ANSI.sub("", chunk.decode(errors="replace"))
        self.seen = self.seen[self.seen.index(text) + len(text) :]

    def rest(self, timeout_seconds: float = 15.0) -> str:
        """All the shell shows from here until it exits."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the shell is still running: {self.seen!r}"
            ready, _, _ = select.select([self._master], [], [], remaining)
            try:
                chunk = os.read(self._master, 65536) if ready else b"-"
            except OSError:  # the shell has exited and the terminal closed
                chunk = b""
            if not chunk:
                return self.seen
            if ready:
                self.raw += chunk
                self.seen += _ANSI.sub("", chunk.decode(errors="replace"))

    def local_modes(self) -> int:
        """The terminal's local modes (termios lflag): ECHO, ICANON, ..."""
        modes: int = termios.tcgetattr(self._master)[3]
        return modes

    def close(self) -> int:
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        finally:
            os.close(self._master)


def _take_the_terminal() -> None:
    """In the child, in a session of its own: stdin's terminal becomes its controlling one."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@contextmanager
def terminal_session(home: Path, *arguments: str) -> Iterator[Terminal]:
    """The shell on a terminal, greeted; left with Ctrl-D at its next prompt, and its
    exit checked (0)."""
    terminal = Terminal(home, *arguments)
    try:
        terminal.expect("'exit' or Ctrl-D to leave.")
        yield terminal
        # Between prompts the terminal is in cooked mode and would swallow Ctrl-D as EOF
        # of nothing: wait for the next prompt, as a person does.
        terminal.expect(">")
        terminal.send("\x04")
    finally:
        status = terminal.close()
    assert status == 0


def _interrupted_while_it_waits(kopilka_home: Path, typed: str, said: str) -> None:
    """Ann opened with $5; `typed` sent while another program's transaction holds the
    write lock, so its first write waits; then Ctrl-C, and `said` is looked for. Nothing
    was applied, then or once the lock is let go, and the shell goes on."""
    with terminal_session(kopilka_home) as terminal:
        terminal.send("deposit --client=Ann --amount=5 --description=open\r")
        terminal.expect("Deposit operation was successful!")
        terminal.expect(">")
        with closing(sqlite3.connect(kopilka_home / "kopilka.db", isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")  # the next write waits for it
            terminal.send(typed)
            time.sleep(1.5)
            # What a terminal's Ctrl-C sends (this one is no controlling terminal).
            terminal.process.send_signal(signal.SIGINT)
            terminal.expect(said)
            other.execute("ROLLBACK")
        terminal.expect(">")
        terminal.send("balance --client=Ann\r")
        terminal.expect("Balance of Ann: $5.00")


def test_a_terminal_write_interrupted_while_it_waits_is_not_applied(kopilka_home: Path) -> None:
    """Ctrl-C while a typed write waits for another program's transaction: it stops
    waiting, nothing applied (not applied once the lock is let go), the user is told so,
    and the shell goes on."""
    typed = "deposit --client=Ann --amount=1 --description=x\r"
    _interrupted_while_it_waits(kopilka_home, typed, f"Error: {STOPPED_WAITING}")


def test_a_line_that_came_with_an_interrupted_one_is_not_run(kopilka_home: Path) -> None:
    """Two lines in one burst (typed ahead, pasted unbracketed): Ctrl-C stops the first
    as it waits, and the second, read ahead with it, is not run after it."""
    typed = (
        "deposit --client=Ann --amount=1 --description=first\r"
        "deposit --client=Ann --amount=1 --description=second\r"
    )
    _interrupted_while_it_waits(kopilka_home, typed, f"Error: {STOPPED_WAITING}")


def test_lines_pasted_after_an_interrupted_one_are_said_not_run(kopilka_home: Path) -> None:
    """A paste of three lines, the first stopped as it waits: the other two were dropped
    without a word."""
    pasted = (  # a blank line and a comment ask nothing: not counted
        "\x1b[200~deposit --client=Ann --amount=1 --description=first\n"
        "\n"
        "# and then\n"
        "deposit --client=Ann --amount=1 --description=second\n"
        "balance --client=Ann\x1b[201~\r"
    )
    said = f"Error: {STOPPED_WAITING}; the 2 lines pasted after it not run"
    _interrupted_while_it_waits(kopilka_home, pasted, said)


def test_a_read_interrupted_says_so_on_a_line_of_its_own(tmp_path: Path) -> None:
    """A read stopped (its server frozen) said nothing: the next prompt was drawn beside
    the "^C", and what was typed after it stayed there in the scrollback."""
    with (
        running_server(tmp_path / "home") as server,
        terminal_session(server.home, "shell", str(server.port)) as terminal,
    ):
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        try:
            terminal.send("accounts\r")
            time.sleep(1.0)  # waiting for the frozen server's answer
            terminal.process.send_signal(signal.SIGINT)
            terminal.expect("Error: interrupted\r\n")
        finally:
            server.process.send_signal(signal.SIGCONT)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|[\x07\x08]")


def test_terminal_prompt_with_completion_history_and_ctrl_d(kopilka_home: Path) -> None:
    with terminal_session(kopilka_home) as terminal:
        terminal.send('deposit --client="Ёжик Jones" --amount=100 --description="ATM"\r')
        terminal.expect("Deposit operation was successful!")
        terminal.send("bal\t")  # completes the command
        terminal.expect("balance")
        terminal.send(" --client=Ё\t")  # completes a known client's name, quoted
        terminal.expect('--client="Ёжик Jones"')
        terminal.send("\r")
        terminal.expect("Balance of Ёжик Jones: $100.00")
        terminal.send("withdraw --client=Nobody --amount=1 --description=x\r")
        terminal.expect("Error: no account for client 'Nobody'")
        terminal.send("accounts")
        terminal.expect("accounts")
        terminal.send("\x03")  # Ctrl-C drops the line being typed, the shell goes on
        terminal.send("help exit\r")
        terminal.expect("Also called: quit")
    history = (kopilka_home / "history").read_text()
    assert '+deposit --client="Ёжик Jones" --amount=100 --description="ATM"' in history
    # The next session recalls them: Up three times is the balance asked for above.
    with terminal_session(kopilka_home) as terminal:
        terminal.send("\x1b[A\x1b[A\x1b[A")
        terminal.expect('balance --client="Ёжик Jones"')
        terminal.send("\r")
        terminal.expect("Balance of Ёжик Jones: $100.00")


def test_a_history_that_cannot_be_read_or_written_is_done_without(kopilka_home: Path) -> None:
    """prompt_toolkit reports a failed read or write of it in a traceback and "Press
    ENTER to continue", which took the next key, at every line."""
    (kopilka_home / "history").mkdir(parents=True)  # unreadable and unwritable, even for root
    terminal = Terminal(kopilka_home)
    try:
        terminal.expect("'exit' or Ctrl-D to leave.")
        terminal.expect(">")
        terminal.send("deposit --client=Ann --amount=5 --description=x\r")
        terminal.expect("Deposit operation was successful!")
        terminal.expect(">")
        terminal.send("balance --client=Ann\r")
        terminal.expect("Balance of Ann: $5.00")
        terminal.expect(">")
        terminal.send("\x04")
        shown = terminal.rest()
    finally:
        status = terminal.close()
    assert status == 0, terminal.seen
    everything = terminal.raw.decode(errors="replace")
    assert "Traceback" not in everything and "Press ENTER" not in everything, everything
    assert "Exception" not in shown


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_as_the_prompt_starts_ends_the_session_quietly(
    kopilka_home: Path, signum: signal.Signals
) -> None:
    """Sent the moment the greeting shows, it lands while the prompt is being set up:
    it ends the session as it does at the prompt, with no traceback of a half-made loop."""
    for _ in range(3):
        terminal = Terminal(kopilka_home, "shell", "--sandbox")
        try:
            terminal.expect("'exit' or Ctrl-D to leave.")
            terminal.process.send_signal(signum)
            shown = terminal.rest()
        finally:
            status = terminal.close()
        assert status == 128 + signum, shown
        assert "Traceback" not in shown and "Exception" not in shown, shown
        assert "never awaited" not in shown, shown


def test_tab_completes_a_client_another_session_opened(kopilka_home: Path) -> None:
    """Two clerks on one ledger: a name the other opened is offered too."""
    with terminal_session(kopilka_home) as terminal:
        terminal.send("deposit --client=ZetaOld --amount=1 --description=x\r")
        terminal.expect("Deposit operation was successful!")
        terminal.send("balance --client=Ze\t")  # the names are read now
        terminal.expect("--client=ZetaOld")
        terminal.send("\r")
        terminal.expect("Balance of ZetaOld: $1.00")
        terminal.expect(">")
        for opened, typed, wait_seconds in (
            # None known starts so: the names are read again, at most once a second.
            ("ZetaNew", "ZetaN", 1.0),
            # One whose name starts as a known one's does: the names are read every 5 s.
            ("ZetaNewest", "ZetaNewe", 5.0),
        ):
            other = run_kopilka(kopilka_home, "open_account", f"--client={opened}")
            assert other.returncode == 0, other.stderr
            time.sleep(wait_seconds)
            terminal.send(f"balance --client={typed}\t")
            terminal.expect(f"--client={opened}")
            terminal.send("\r")
            terminal.expect(f"Balance of {opened}: $0.00")


def test_lines_pasted_at_once_each_run_in_turn(kopilka_home: Path) -> None:
    """A terminal hands a paste over bracketed, newlines and all, as one: read as one
    line, it ran none of them ("deposit takes no bare argument 'deposit'")."""
    with terminal_session(kopilka_home) as terminal:
        terminal.send(
            "\x1b[200~deposit --client=A --amount=1 --description=x\n"
            "deposit --client=B --amount=2 --description=y\x1b[201~\r"
        )
        terminal.expect("Deposit operation was successful!")
        terminal.expect("Deposit operation was successful!")
        terminal.expect(">")
        terminal.send("balance --client=B\r")
        terminal.expect("Balance of B: $2.00")
    assert "Error" not in terminal.raw.decode(errors="replace")


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_line_holding_a_unicode_line_separator_is_one_line_as_from_a_pipe(
    kopilka_home: Path, separator: str
) -> None:
    """str.splitlines() cut it in two at the terminal, each half an unclosed quote;
    from a pipe it is one line, and its description is refused for what it holds."""
    line = f'deposit --client=A --amount=1 --description="a{separator}b"'
    piped = run_kopilka(kopilka_home, "shell", "--sandbox", stdin=line + "\n")
    refused = "Error: description has control characters"
    assert piped.stdout.startswith(refused), piped.stdout
    with terminal_session(kopilka_home, "shell", "--sandbox") as terminal:
        terminal.expect(">")
        terminal.send(line + "\r")
        terminal.expect(refused)
        terminal.expect(">")
        terminal.send("\x1b[200~" + line + "\nbalance --client=A\x1b[201~\r")  # pasted
        terminal.expect(refused)
        terminal.expect("Error: no account for client 'A'")
    assert "cannot read the line" not in terminal.raw.decode(errors="replace")


def test_tab_and_enter_in_one_write_run_the_line_as_completed(kopilka_home: Path) -> None:
    """Keys that come in one read (a fast typist, a paste, a slow link) are taken in order:
    Enter runs the line Tab completed, the one on the screen, not the one before it."""
    with terminal_session(kopilka_home) as terminal:
        terminal.send('deposit --client="John Jones" --amount=1 --description=x\r')
        terminal.expect("Deposit operation was successful!")
        terminal.expect(">")
        terminal.send("deposit --amount=5 --description=pay --client=Jo")
        terminal.expect("--client=Jo")
        terminal.send("\t\r")
        terminal.expect("Deposit operation was successful!")
    history = (kopilka_home / "history").read_text()
    assert '+deposit --amount=5 --description=pay --client="John Jones"' in history
    accounts = run_kopilka(kopilka_home, "accounts")
    assert accounts.returncode == 0, accounts.stderr
    assert "John Jones" in accounts.stdout and "$6.00" in accounts.stdout
    assert "| Jo " not in accounts.stdout


def test_a_terminal_shell_with_its_answers_in_a_file_reads_lines(
    kopilka_home: Path, tmp_path: Path
) -> None:
    """`kopilka shell > log.txt` at a terminal: no prompt drawn into the file, where
    nobody sees it; the terminal echoes what is typed, the file gets the answers as a
    piped shell writes them, and a refusal still reaches the person on stderr."""
    log = tmp_path / "log.txt"
    with log.open("w") as answers:
        terminal = Terminal(kopilka_home, "shell", stdout=answers)
    status = terminal.type_lines(
        "deposit --client=A --amount=1 --description=x", "depost", "balance --client=A", "exit"
    )
    assert status == 0
    assert log.read_text() == "Deposit operation was successful!\nBalance of A: $1.00\n"
    shown = terminal.raw.decode(errors="replace")
    assert "\x1b" not in shown  # no prompt, no colours: the lines as typed, and the error
    assert "balance --client=A" in shown
    assert "Error: unknown command 'depost'; did you mean 'deposit'?" in shown


def test_at_a_dumb_terminal_the_line_that_runs_is_the_line_typed(kopilka_home: Path) -> None:
    """TERM=dumb (Emacs' M-x shell): the line editor drew one line and ran another (a
    Tab completed "Zed" to "Zed Zulu" on the quiet, the screen showing `Zed"`). There
    the terminal's own editing is used, and what it shows is what runs."""
    terminal = Terminal(kopilka_home, "shell", term="dumb")
    status = terminal.type_lines(
        'deposit --client="Zed Zulu" --amount=1 --description=open',
        "deposit --client=Zed\t --amount=5 --description=x",  # a Tab, as typed
        'balance --client="Zed Zulu"',
        "balance --client=Zed",
        "exit",
    )
    assert status == 0
    shown = terminal.raw.decode(errors="replace")
    assert "\x1b" not in shown  # nothing drawn: no prompt redrawn, no colours
    # The Tab is blank space, as the screen shows it: the five went to "Zed".
    assert "Balance of Zed Zulu: $1.00" in shown
    assert "Balance of Zed: $5.00" in shown


@pytest.mark.parametrize(
    ("term", "answers_in_a_file"), [("dumb", False), ("xterm", True)], ids=["dumb", "in-a-file"]
)
def test_ctrl_d_on_a_line_typed_leaves_without_running_it(
    kopilka_home: Path, tmp_path: Path, term: str, answers_in_a_file: bool
) -> None:
    """With no line editor, Ctrl-D twice on a half-typed line handed it over unended,
    and it ran: a deposit applied, the session still open."""
    log = tmp_path / "log.txt"
    with log.open("w") as answers:
        terminal = Terminal(
            kopilka_home, "shell", stdout=answers if answers_in_a_file else None, term=term
        )
    terminal.send("deposit --client=A --amount=5 --description=x\n")
    terminal.send("deposit --client=A --amount=7 --description=y")
    time.sleep(0.5)
    terminal.send("\x04")
    time.sleep(0.3)
    terminal.send("\x04")
    terminal.rest()
    assert terminal.close() == 0
    shown = terminal.seen + log.read_text()
    assert shown.count("Deposit operation was successful!") == 1, shown
    # On a line of its own, not after the text typed ("...=yError: ...").
    said = "Error: the line not ended with Enter was not run"
    assert re.search(f"(?m)^{said}", terminal.seen.replace("\r", "")), terminal.seen
    assert _balance_said(kopilka_home, "A") == "Balance of A: $5.00\n"


def _balance_said(home: Path, client: str) -> str:
    """What a one-shot `balance` prints of `client`, the shell having ended."""
    return subprocess.run(
        [*kopilka_command(), "balance", f"--client={client}"],
        env=kopilka_env(home),
        capture_output=True,
        text=True,
        check=False,
    ).stdout


@pytest.mark.parametrize(
    ("arguments", "term", "answers_in_a_file"),
    [
        (("shell", "--sandbox"), "dumb", False),
        (("shell", "--sandbox"), "xterm", True),
        ((), "xterm", True),
    ],
    ids=["dumb-terminal", "sandbox-answers-in-a-file", "answers-in-a-file"],
)
def test_ctrl_c_while_a_line_is_typed_drops_it_and_the_session_goes_on(
    kopilka_home: Path,
    tmp_path: Path,
    arguments: tuple[str, ...],
    term: str,
    answers_in_a_file: bool,
) -> None:
    """Typed at a terminal with no line editor (a dumb one; answers sent to a file), as
    at the prompt: it ended the session with status 130, and a sandbox with it."""

    def while_typed(terminal: Terminal) -> None:
        time.sleep(0.5)  # back to reading its next line
        terminal.send("deposit --client=A --amount=1 --description=y\x03")
        time.sleep(0.5)

    shown = _interrupted_with_no_line_editor(
        kopilka_home, tmp_path / "log.txt", arguments, term, answers_in_a_file, while_typed
    )
    assert "Balance of A: $5.00" in shown  # the line Ctrl-C dropped did not run


def _interrupted_with_no_line_editor(
    home: Path,
    log: Path,
    arguments: tuple[str, ...],
    term: str,
    answers_in_a_file: bool,
    interrupt: Callable[[Terminal], None],
) -> str:
    """A session typed at a terminal with no line editor: a deposit of 5, then what
    `interrupt` does, then a balance and exit (status 0: the session went on); all that
    was shown of its answers."""
    with log.open("w") as answers:
        terminal = Terminal(
            home,
            *arguments,
            stdout=answers if answers_in_a_file else None,
            term=term,
            controlling=True,
        )
    try:
        terminal.send("deposit --client=A --amount=5 --description=x\ndepost\n")
        terminal.expect("Error: unknown command 'depost'")  # on stderr, the terminal
        interrupt(terminal)
    finally:
        status = terminal.type_lines("balance --client=A", "exit")
    assert status == 0, terminal.seen
    return log.read_text() if answers_in_a_file else terminal.seen


@pytest.mark.parametrize(
    ("arguments", "term", "answers_in_a_file"),
    [(("shell",), "dumb", False), ((), "xterm", True)],
    ids=["dumb-terminal", "answers-in-a-file"],
)
def test_ctrl_c_while_a_line_runs_stops_it_and_the_session_goes_on(
    kopilka_home: Path,
    tmp_path: Path,
    arguments: tuple[str, ...],
    term: str,
    answers_in_a_file: bool,
) -> None:
    """Typed at a terminal with no line editor, a Ctrl-C while a deposit waited for the
    ledger's write lock ended the session with status 130 (a sandbox and all in it)."""

    def while_it_runs(terminal: Terminal) -> None:
        with closing(sqlite3.connect(kopilka_home / "kopilka.db", isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another program's write under way
            terminal.send("deposit --client=A --amount=1 --description=y\n")
            time.sleep(1.0)  # waiting for the lock
            terminal.send("\x03")
            terminal.expect(STOPPED_WAITING)
            other.execute("ROLLBACK")

    shown = _interrupted_with_no_line_editor(
        kopilka_home, tmp_path / "log.txt", arguments, term, answers_in_a_file, while_it_runs
    )
    assert "Balance of A: $5.00" in shown, shown  # the deposit stopped was not applied


def test_a_piped_write_stopped_while_its_answer_is_written_was_applied(
    kopilka_home: Path,
) -> None:
    """Its answer blocked on a full pipe, a deposit interrupted was logged "may still
    have been applied", with no key to settle it by, though its answer had begun; then
    "interrupted, but only once the command was applied", after an answer that had
    said so, or in place of one cut short. Its answer is written whole, the one result
    for its line, and the script stops there."""
    opened = run_kopilka(kopilka_home, "deposit", "--client=A", "--amount=1", "--description=x")
    assert opened.returncode == 0
    reading, writing = os.pipe()
    fcntl.fcntl(writing, fcntl.F_SETPIPE_SZ, 4096)
    answer = "Balance of A: $1.00\n"
    count = 4096 // len(answer)  # their answers all but fill the pipe: the next blocks
    lines = "balance --client=A\n" * count
    shell = subprocess.Popen(
        kopilka_command(),
        stdin=subprocess.PIPE,
        stdout=writing,
        stderr=subprocess.PIPE,
        env=kopilka_env(kopilka_home),
        text=True,
    )
    os.close(writing)
    try:
        assert shell.stdin is not None and shell.stderr is not None
        shell.stdin.write(lines + "deposit --client=A --amount=1 --description=y\n")
        shell.stdin.close()
        deadline = time.monotonic() + 15
        while (
            waiting := struct.unpack("i", fcntl.ioctl(reading, termios.FIONREAD, b"    "))[0]
        ) < count * len(answer):
            assert time.monotonic() < deadline, waiting
            time.sleep(0.05)
        # The deposit committed, its answer blocked on the full pipe.
        while run_kopilka(kopilka_home, "balance", "--client=A").stdout != "Balance of A: $2.00\n":
            assert time.monotonic() < deadline, "the deposit never committed"
            time.sleep(0.05)
        time.sleep(0.2)
        shell.send_signal(signal.SIGINT)
        shown = b""
        while chunk := os.read(reading, 65536):  # the answers, and what it says as it ends
            shown += chunk
        errors = shell.stderr.read()
        assert shell.wait(timeout=15) == 130
    finally:
        os.close(reading)
        shell.kill()
    # A script's log is its output: errors go there too, in order.
    log = shown.decode().splitlines()
    assert (errors, log[-2:]) == ("", [answer.rstrip("\n"), "Deposit operation was successful!"])


def test_a_command_of_the_os_shell_says_where_it_runs(kopilka_home: Path) -> None:
    output = shell_runner(kopilka_home)(
        "init\nserve\ntoken list\nshell\n"
        "kopilka deposit --client=A --amount=1 --description=x\nbalance --client=A\n"
    )
    assert output == "".join(
        f"Error: {name!r} is a command of the OS shell: run 'kopilka {name}'\n"
        for name in ("init", "serve", "token", "shell")
    ) + (
        "Error: in the shell, type the command without 'kopilka' before it\n"
        "Error: no account for client 'A'\n"
    )


def test_an_empty_format_is_refused_not_taken_for_the_table(kopilka_home: Path) -> None:
    output = shell_runner(kopilka_home)(
        "deposit --client=A --amount=1 --description=x\nstatement --client=A --format=\n"
    )
    assert output.splitlines()[-1] == "Error: format '' is not one of table, csv, json"


def test_a_description_a_spreadsheet_would_run_is_text_in_csv(
    run_shell: Callable[[str], str],
) -> None:
    output = run_shell(
        "deposit --client='Ex Cel' --amount=1 --description='=HYPERLINK(\"http://x\")'\n"
        "statement --client='Ex Cel' --format=csv\n"
    )
    rows = list(csv.reader(io.StringIO(output.split("\n", 1)[1])))
    assert rows[2][1] == '\'=HYPERLINK("http://x")'


@pytest.mark.parametrize(
    ("line", "told"),
    [("deposit --client=Ann --amount=1 --description=x", True), ("accounts", False)],
)
def test_a_piped_write_interrupted_while_it_waits_says_it_was_not_applied(
    kopilka_home: Path, line: str, told: bool
) -> None:
    """Ctrl-C while a script's write waits for the database: the write stops waiting, and
    the script's log is told, as a one-shot command's is, that nothing was applied. (A
    read has been answered by then, and the shell was waiting for its next line.)"""
    opened = subprocess.run(
        [*kopilka_command(), "deposit", "--client=Ann", "--amount=5", "--description=open"],
        env=kopilka_env(kopilka_home),
        cwd=kopilka_home.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr
    with closing(sqlite3.connect(kopilka_home / "kopilka.db", isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")  # a write waits for it; a read does not
        with subprocess.Popen(
            [*kopilka_command(), "shell"],
            env=kopilka_env(kopilka_home),
            cwd=kopilka_home.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as shell:
            assert shell.stdin is not None
            shell.stdin.write(line + "\n")
            shell.stdin.flush()
            time.sleep(1.5)  # started, and waiting for the lock (or for its next line)
            shell.send_signal(signal.SIGINT)
            time.sleep(0.5)
            other.execute("ROLLBACK")  # the shell may finish what it had begun, and end
            out, errors = shell.communicate(timeout=60)
    assert shell.returncode == 130
    if told:
        # Where a piped shell writes every answer, its refusals too: one line for the line.
        assert (out, errors) == (f"Error: {STOPPED_WAITING}\n", "")
        assert _balance_said(kopilka_home, "Ann") == "Balance of Ann: $5.00\n"
    else:
        assert "Ann" in out and errors == ""


def test_a_line_far_over_the_bound_is_refused_without_being_held(kopilka_home: Path) -> None:
    """A file of no lines piped in by mistake: read whole, its one line held twice its
    size before it was refused, and a process whose memory is bounded (ulimit) ended in
    a MemoryError's traceback. The line is refused, the next one runs."""
    import resource

    line_bytes = 300 * 1024 * 1024
    memory_max = 200 * 1024 * 1024  # well above the shell's own, below the line's

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_max, memory_max))

    kopilka_home.mkdir(mode=0o700)
    with subprocess.Popen(
        ["sh", "-c", f"head -c {line_bytes} /dev/zero | tr '\\0' x; echo; echo 'help exit'"],
        stdout=subprocess.PIPE,
    ) as feeder:
        shell = subprocess.run(
            [*kopilka_command(), "--sandbox"],
            stdin=feeder.stdout,
            capture_output=True,
            text=True,
            env=kopilka_env(kopilka_home),
            timeout=120,
            check=False,
            preexec_fn=bounded,
        )
    assert (shell.returncode, shell.stderr) == (0, "")
    assert shell.stdout.startswith(
        "Error: line is longer than 10000 characters\nexit: leave the shell"
    ), shell.stdout[:300]


def test_a_blank_line_of_any_length_is_skipped(run_shell: Callable[[str], str]) -> None:
    """Past the bound too, as a comment is: it was refused as longer than the most."""
    # A comment however far indented is skipped too.
    blanks = (" " * 20_000, " \t" * 10_000 + "\r", " " * 20_000 + "# a note")
    typed = (
        "\n".join(blanks) + "\ndeposit --client=A --amount=1 --description=x\n"
        # What stands past the bound is no blank: refused, whatever was kept of it.
        f"{' ' * 10_005}balance --client=A\n"
    )
    assert run_shell(typed) == (
        "Deposit operation was successful!\nError: line is longer than 10000 characters\n"
    )


def test_a_line_of_the_most_characters_is_read_one_more_is_refused(
    run_shell: Callable[[str], str],
) -> None:
    """At the bound, whatever ends the line; the rest of a longer one is not a line."""
    most = "balance --client=A".ljust(10_000)
    typed = (
        "deposit --client=A --amount=1 --description=x\n"
        f"{most}\r\n{most}\n{most}\r\r\n{most} \n{most}  \r\n{most}\r \n"
        # Past the two characters read beyond the bound: the line was longer still.
        f"{most}\r\rdeposit --client=A --amount=900 --description=x\n"
        # Blanks past the bound, the command after them: no blank line.
        f"{' ' * 10_005}deposit --client=A --amount=900 --description=x\n"
        f"# a comment of any length{'.' * 30_000}\n{most}"
    )
    balance = "Balance of A: $1.00\n"
    assert run_shell(typed) == (
        "Deposit operation was successful!\n"
        + balance * 3
        + "Error: line is longer than 10000 characters\n" * 5
        + balance
    )


def test_a_piped_shell_whose_reader_stopped_ends_at_the_second_signal(
    kopilka_home: Path, tmp_path: Path
) -> None:
    """Its answers' pipe full (a reader that stopped), the first SIGTERM waits for the
    line under way, and the second ends it: the line saying so, written to the same full
    pipe, held it until a third."""
    lines = tmp_path / "lines.txt"
    lines.write_text("deposit --client=F --amount=1 --description=x\n" * 5_000)
    reader, writer = os.pipe()
    with lines.open() as stdin:
        shell = subprocess.Popen(
            [*kopilka_command(), "shell"],
            stdin=stdin,
            stdout=writer,
            stderr=subprocess.DEVNULL,
            env=kopilka_env(kopilka_home),
        )
    os.close(writer)
    try:
        deadline = time.monotonic() + 60
        unread = -1
        # Until the pipe is full and stays so: the shell waits in an answer's write.
        while (now := _unread(reader)) < 60_000 or now != unread:
            assert shell.poll() is None and time.monotonic() < deadline, "it never filled"
            unread = now
            time.sleep(0.5)
        shell.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert shell.poll() is None  # held for the line under way
        shell.send_signal(signal.SIGTERM)
        assert shell.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
        os.close(reader)


def _unread(descriptor: int) -> int:
    """How many bytes wait in a pipe for its reader."""
    found: int = struct.unpack("i", fcntl.ioctl(descriptor, termios.FIONREAD, b"\0" * 4))[0]
    return found
