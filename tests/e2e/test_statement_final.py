"""A period that has ended reads the same every time it is asked for, while others
write: a statement up to now, asked for again with the till it named, shows the same
lines. A batch takes its time before it commits; a statement read in between must not
leave that batch's line to appear in its period afterwards."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import socket
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from tests.e2e.conftest import run_kopilka
from tests.kopilka_server import ServerProcess, running_server

READS = 120
# Each read covers the last moments only, so that it stays small however long the run.
WINDOW = timedelta(milliseconds=50)


def _write_while_reading(
    server: ServerProcess, writers: int, batch_items: int
) -> list[tuple[str, dict[str, object]]]:
    with server.client() as admin:
        admin.post("/v1/accounts", json={"client": "Hot"})
    statements: list[tuple[str, dict[str, object]]] = []
    refused: list[str] = []

    def write(writer: int) -> None:
        deposit = {"client": "Hot", "amount": "1", "description": "w"}
        with server.client() as client:
            sent = 0
            while len(statements) < READS:
                key = {"Idempotency-Key": f"w{writer}-{sent}"}
                if batch_items == 1:
                    answer = client.post("/v1/deposits", json=deposit, headers=key)
                else:
                    items = [{"type": "deposit", **deposit}] * batch_items
                    answer = client.post("/v1/batch", json={"operations": items}, headers=key)
                if answer.status_code not in (200, 201):
                    refused.append(answer.text)
                sent += 1

    threads = [threading.Thread(target=write, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    try:
        with server.client() as reader:
            while len(statements) < READS:
                since = (datetime.now(UTC) - WINDOW).isoformat()
                # A connection each: with two workers, reads meet either one.
                answer = reader.get(
                    "/v1/accounts/Hot/statement",
                    params={"since": since},
                    headers={"Connection": "close"},
                )
                assert answer.status_code == 200, answer.text
                statements.append((since, answer.json()))
    finally:
        statements.extend([("", {})] * READS)  # the writers stop, whatever happened
        for thread in threads:
            thread.join(timeout=60)
    assert not refused, refused[:3]
    return statements[:READS]


def _each_period_reads_again_as_it_did(
    server: ServerProcess, writers: int, batch_items: int
) -> None:
    statements = _write_while_reading(server, writers, batch_items)
    assert any(first["lines"] for _, first in statements), "nothing was written"
    with server.client() as client:
        for since, first in statements:
            period = {"since": since, "till": str(first["till"])}
            again = client.get("/v1/accounts/Hot/statement", params=period).json()
            assert again["lines"] == first["lines"], period


@pytest.mark.parametrize(
    ("workers", "writers", "batch_items"),
    [
        (2, 4, 1),  # another process's batches, each written on its event loop
        (1, 2, 260),  # batches too big for the event loop, written on the writer thread
    ],
)
def test_a_statement_up_to_now_is_final(
    tmp_path: Path, workers: int, writers: int, batch_items: int
) -> None:
    with running_server(tmp_path / "home", workers=workers) as server:
        _each_period_reads_again_as_it_did(server, writers, batch_items)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_statement_up_to_now_is_final_on_postgresql(
    tmp_path: Path, postgres_url: str, workers: int
) -> None:
    """Batches planned on a process's view take their time before they lock a row."""
    with running_server(tmp_path / "home", postgres_url, workers=workers) as server:
        _each_period_reads_again_as_it_did(server, 4, 1)


def test_a_statement_into_the_future_ends_as_its_account_stood_when_asked(
    tmp_path: Path,
) -> None:
    """Its lines are those written before it was asked for: one written while it streams
    neither breaks it off nor joins it, though its time lies inside the period."""
    with running_server(tmp_path / "home") as server, server.client() as admin:
        deposits = [{"type": "deposit", "client": "Ann", "amount": "1"}] * 10_000
        assert admin.post("/v1/accounts", json={"client": "Ann"}).is_success
        for _ in range(2):
            assert admin.post("/v1/batch", json={"operations": deposits}).status_code == 200
        period = {"till": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
        with admin.stream("GET", "/v1/accounts/Ann/statement", params=period) as answer:
            assert answer.status_code == 200
            chunks = answer.iter_raw()
            received = next(chunks)
            late = {"client": "Ann", "amount": "5.00", "description": "late"}
            assert admin.post("/v1/deposits", json=late).status_code == 201
            for chunk in chunks:
                received += chunk
    statement = json.loads(received)
    assert (len(statement["lines"]), statement["closing_balance"]) == (20_000, "20000.00")
    assert statement["deposits"] == "20000.00"


def test_a_period_that_opens_later_adds_up_while_its_account_is_written(
    tmp_path: Path,
) -> None:
    """Its opening and its end were read apart, and a write between them (stamped before
    the period opens) counted in one and not the other: 'does not add up', a 503 and a
    corruption alarm in the log for an empty period, nearly one time in two."""
    stop = threading.Event()
    refused: list[str] = []

    def write(server: ServerProcess) -> None:
        deposit = {"client": "Ann", "amount": "0.01", "description": "w"}
        with server.client() as client:
            while not stop.is_set():
                if client.post("/v1/deposits", json=deposit).status_code != 201:
                    refused.append("deposit")

    with running_server(tmp_path / "home") as server, server.client() as reader:
        assert reader.post("/v1/accounts", json={"client": "Ann"}).is_success
        writers = [threading.Thread(target=write, args=(server,)) for _ in range(3)]
        for writer in writers:
            writer.start()
        try:
            for _ in range(100):
                period = {
                    "since": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                    "till": "2099-01-01T00:00:00Z",
                }
                answer = reader.get("/v1/accounts/Ann/statement", params=period)
                assert answer.status_code == 200, answer.text
                statement = answer.json()
                assert statement["lines"] == []
                assert statement["opening_balance"] == statement["closing_balance"]
        finally:
            stop.set()
            for writer in writers:
                writer.join(timeout=30)
    assert not refused


def test_a_statement_up_to_now_holds_operations_stamped_past_the_clock(tmp_path: Path) -> None:
    """Written while the clock was an hour ahead (set back since), an account's latest
    operations lie past now, and so does each one written after them: a statement
    without a till, embedded and over the network (whose client's clock is not the
    server's), still shows every one, and ends at the balance."""
    home = tmp_path / "home"
    opened = run_kopilka(home, "deposit", "--client=Ann", "--amount=10", "--description=first")
    assert opened.returncode == 0, opened.stderr
    an_hour = 3_600 * 10**6  # microseconds, as times are kept
    with contextlib.closing(sqlite3.connect(home / "kopilka.db")) as db, db:
        for table in ("entries", "operations"):
            db.execute(f"UPDATE {table} SET created_at = created_at + ?", (an_hour,))
    embedded = run_kopilka(
        home,
        stdin="withdraw --client=Ann --amount=3 --description=second\n"
        "show_bank_statement --client=Ann\n",
    )
    assert embedded.returncode == 0, embedded.stderr
    assert ("first" in embedded.stdout, "second" in embedded.stdout) == (True, True)
    assert "| Totals" in embedded.stdout and embedded.stdout.rstrip().endswith("$7.00 |")
    with running_server(home) as server:
        remote = run_kopilka(
            home,
            "shell",
            "--url",
            server.url,
            stdin="withdraw --client=Ann --amount=2 --description=third\n"
            "show_bank_statement --client=Ann\n",
        )
    assert remote.returncode == 0, remote.stderr
    assert all(text in remote.stdout for text in ("first", "second", "third"))
    assert remote.stdout.rstrip().endswith("$5.00 |"), remote.stdout


def test_a_head_of_a_statement_reads_no_more_than_its_status_needs(tmp_path: Path) -> None:
    """A HEAD has no body to write, so a caller gone is never noticed: a long statement
    read for it would keep the server busy for no one. Past the lines read ahead for its
    status, nothing is read: a fault on a later page, which cuts a GET short (closing
    its connection), leaves the HEAD's connection open for the next request."""
    home = tmp_path / "home"
    with running_server(home) as server, server.client() as admin:
        items = [{"type": "deposit", "client": "Ann", "amount": "1", "open_account": True}]
        answer = admin.post("/v1/batch", json={"operations": items * 2_500})
        assert answer.status_code == 200, answer.text
    with contextlib.closing(sqlite3.connect(home / "kopilka.db")) as db, db:
        (last,) = db.execute("SELECT max(created_at) FROM entries").fetchone()
        # The 1,500th entry (on the second page) moved after the last: out of time order.
        db.execute("UPDATE entries SET created_at = ? WHERE balance_after = 150000", (last + 1,))
    with running_server(home) as server:
        head = (
            f"HEAD /v1/accounts/Ann/statement HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {server.token}\r\n\r\n"
            "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
            connection.sendall(head.encode())
            answered = b""
            while answered.count(b"HTTP/1.1 ") < 2:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answered += chunk
        # The GET reads on to the fault, and is cut short there.
        with server.client() as admin, pytest.raises(httpx.RemoteProtocolError):
            admin.get("/v1/accounts/Ann/statement")
    assert answered.startswith(b"HTTP/1.1 200 "), answered
    assert answered.count(b"HTTP/1.1 200 ") == 2, answered  # the connection stayed open


def test_a_statement_out_of_time_order_is_refused_in_one_line(tmp_path: Path) -> None:
    """Entries out of time order (written, before times were kept in order, by processes
    whose clocks disagreed) whose ends still agree: refused whole, with the reason,
    not streamed with a Balance column that skips, nor broken off as though lost."""
    home = tmp_path / "home"
    for amount in (1, 2, 3, 4):
        written = run_kopilka(
            home, "deposit", "--client=Ann", f"--amount={amount}", "--description=d"
        )
        assert written.returncode == 0, written.stderr
    with contextlib.closing(sqlite3.connect(home / "kopilka.db")) as db, db:
        (fourth,) = db.execute("SELECT max(created_at) FROM entries").fetchone()
        db.execute(
            "UPDATE entries SET created_at = ? WHERE created_at < ? AND balance_after = 600",
            (fourth + 1, fourth),
        )
    embedded = run_kopilka(home, "statement", "--client=Ann")
    refusal = "Error: the statement of Ann does not add up"
    assert (embedded.returncode, embedded.stderr.startswith(refusal)) == (1, True), embedded
    with running_server(home) as server:
        with server.client() as admin:
            answer = admin.get("/v1/accounts/Ann/statement", params={"format": "csv"})
        remote = run_kopilka(home, "statement", "--client=Ann", "--url", server.url)
        again = run_kopilka(home, "statement", "--client=Ann", "--url", server.url)
        assert server.stop() == 0
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "statement_inconsistent"
    assert (remote.returncode, remote.stderr) == (again.returncode, again.stderr), again
    assert (remote.returncode, remote.stderr.startswith(refusal)) == (1, True), remote
    # The operator is told which account and entry, once however often it is asked for:
    # any token that may read the account would otherwise write to the log at will.
    logged = [line for line in server.errors.splitlines() if "does not add up" in line]
    assert len(logged) == 1, server.errors
    assert "account 1 (ledger 'main'), entry " in logged[0], logged
    # Read in time order: $1, $2, then $4 said to make $10.00 on $3.00 (the $3 moved after).
    assert "says a balance of 1000 cents where the lines up to it come to 700;" in logged[0]


def test_a_csv_statement_of_several_chunks_has_each_line_once(tmp_path: Path) -> None:
    """A CSV statement goes out 500 rows at a time: each chunk holds the rows after the
    last one sent, so a statement of 1,200 lines reads as its JSON does, row for line,
    and its amounts come to its running balances."""
    items: list[dict[str, object]] = [
        {"type": "deposit", "client": "Bob", "amount": "1000", "open_account": True}
    ]
    for index in range(1_200):
        if index % 3 == 0:
            amount = f"{index % 50 + 1}.{index % 100:02d}"
            items.append(
                {"type": "deposit", "client": "Ann", "amount": amount, "open_account": True}
            )
        elif index % 3 == 1:
            items.append(
                {
                    "type": "withdrawal",
                    "client": "Ann",
                    "amount": "0.37",
                    "description": f"w{index}",
                }
            )
        else:
            ends = ("Ann", "Bob") if index % 2 else ("Bob", "Ann")
            items.append({"type": "transfer", "from": ends[0], "to": ends[1], "amount": "1.05"})
    with running_server(tmp_path / "home") as server, server.client() as admin:
        answer = admin.post("/v1/batch", json={"operations": items})
        assert answer.status_code == 200, answer.text
        period = {"till": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
        statement = admin.get("/v1/accounts/Ann/statement", params=period).json()
        spreadsheet = admin.get("/v1/accounts/Ann/statement", params={**period, "format": "csv"})
    assert spreadsheet.status_code == 200, spreadsheet.text
    head, *rows = csv.reader(io.StringIO(spreadsheet.text))
    assert head[:6] == ["id", "created_at", "kind", "description", "amount", "balance_after"]
    lines: list[dict[str, object]] = statement["lines"]
    assert (len(lines), len(rows)) == (1_200, 1_200)
    expected = [
        [
            str(line["id"]),
            line["created_at"],
            line["kind"],
            line["description"],
            line["amount"],
            line["balance_after"],
            line.get("counterparty") or "",
            str(line["operation_id"]),
        ]
        for line in lines
    ]
    assert rows == expected
    balance = Decimal(statement["opening_balance"])
    for row in rows:
        balance += Decimal(row[4])
        assert Decimal(row[5]) == balance, row
    assert f"{balance:.2f}" == statement["closing_balance"]


def test_a_statement_sums_its_deposits_and_withdrawals(tmp_path: Path) -> None:
    """Its totals are what came in and what went out, each a positive sum, transfers
    counted on their side: over the whole history and over a period that opens on an
    earlier balance."""
    with running_server(tmp_path / "home") as server, server.client() as admin:
        money = [
            ("/v1/deposits", {"client": "Ann", "amount": "100", "open_account": True}),
            ("/v1/withdrawals", {"client": "Ann", "amount": "30"}),
            ("/v1/deposits", {"client": "Bob", "amount": "50", "open_account": True}),
            ("/v1/transfers", {"from": "Bob", "to": "Ann", "amount": "20"}),
            ("/v1/transfers", {"from": "Ann", "to": "Bob", "amount": "5.25"}),
        ]
        written = []
        for path, body in money:
            answer = admin.post(path, json=body)
            assert answer.status_code == 201, answer.text
            written.append(answer.json())
        whole = admin.get("/v1/accounts/Ann/statement").json()
        since = {"since": written[1]["created_at"]}  # from the withdrawal on
        period = admin.get("/v1/accounts/Ann/statement", params=since).json()
        bob = admin.get("/v1/accounts/Bob/statement").json()

    def totals(statement: dict[str, object]) -> tuple[object, ...]:
        names = ("opening_balance", "deposits", "withdrawals", "closing_balance")
        return tuple(statement[name] for name in names)

    assert totals(whole) == ("0.00", "120.00", "35.25", "84.75")
    assert totals(period) == ("100.00", "20.00", "35.25", "84.75")
    assert totals(bob) == ("0.00", "55.25", "20.00", "35.25")


def test_a_statement_whose_lines_stop_short_of_its_last_entry_is_refused(
    tmp_path: Path,
) -> None:
    """The account's last entry is there, its operation gone (removed by hand): the
    lines, read with their operations, end before the balance the statement is to end
    at. A short statement is read whole before its status, so it is refused (503), in
    JSON and in CSV, and the operator told which account; never a 200 that looks whole."""
    home = tmp_path / "home"
    with running_server(home) as server, server.client() as admin:
        for amount in ("10", "20", "30"):
            deposit = {"client": "Ann", "amount": amount, "open_account": True}
            assert admin.post("/v1/deposits", json=deposit).status_code == 201
    with contextlib.closing(sqlite3.connect(home / "kopilka.db")) as db, db:
        db.execute("DELETE FROM operations WHERE id = (SELECT max(id) FROM operations)")
    with running_server(home) as server:
        with server.client() as admin:
            answers = [
                admin.get("/v1/accounts/Ann/statement", params={"format": form})
                for form in ("json", "csv")
            ]
        assert server.stop() == 0
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "statement_inconsistent"
    logged = [line for line in server.errors.splitlines() if "does not add up" in line]
    assert len(logged) == 1, server.errors  # once, however often it is asked for
    says = "account 1 (ledger 'main'), the last entry says a balance of 6000 cents"
    assert f"{says} where the lines up to it come to 3000" in logged[0]
