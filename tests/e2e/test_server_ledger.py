"""Hundreds of concurrent clients fighting over a few hot accounts with floors and caps."""

from __future__ import annotations

import asyncio
import random
import socket
import sqlite3
import subprocess
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from tests.kopilka_server import (
    RawConnection,
    ServerProcess,
    free_port,
    kopilka_command,
    running_server,
    server_env,
)

from kopilka.store.sqlite_schema import SCHEMA_VERSION

HOT = {
    "H0": ("-50", None),
    "H1": ("0", "400"),
    "H2": ("0", None),
    "H3": ("-20", "250"),
    "H4": ("0", "150"),
}
TASKS = 300
OPERATIONS_PER_TASK = 8


def _setup(server: ServerProcess) -> Decimal:
    opening = Decimal(0)
    with server.client() as admin:
        for client, (floor, cap) in HOT.items():
            answer = admin.post(
                "/v1/accounts", json={"client": client, "min_balance": floor, "max_balance": cap}
            )
            assert answer.status_code == 201, answer.text
            deposit = admin.post(
                "/v1/deposits",
                json={"client": client, "amount": "100", "description": f"open-{client}"},
            )
            assert deposit.status_code == 201, deposit.text
            opening += 100
    return opening


_PATHS = {"transfer": "/v1/transfers", "deposit": "/v1/deposits", "withdrawal": "/v1/withdrawals"}


async def _keyed_batch(
    http: RawConnection, rnd: random.Random, key: str, acked: list[dict[str, str]]
) -> None:
    """A keyed POST /v1/batch of a few items, then the same request again: it replays
    (on PostgreSQL its claim on the key rides in the one statement, or the retry meets it)."""
    items = []
    for index in range(rnd.randint(1, 3)):
        source, target = rnd.sample(sorted(HOT), 2)
        item_key = f"{key}:{index}"
        amount = f"{rnd.randint(1, 6000) / 100:.2f}"
        kind = rnd.choice(("transfer", "transfer", "deposit", "withdrawal"))
        item = {"type": kind, "amount": amount, "description": item_key}
        item |= {"from": source, "to": target} if kind == "transfer" else {"client": source}
        items.append(item | {"idempotency_key": item_key})
    body = {"operations": items}
    answers = []
    for _ in range(2):
        status, _, answer = await http.request("POST", "/v1/batch", body, {"Idempotency-Key": key})
        assert status == 200, answer
        answers.append([result["status"] for result in answer["results"]])
    assert answers[0] == answers[1]  # the retry answers as the first did
    for item, result in zip(items, answers[0], strict=True):
        if result == 201:
            acked.append({"key": item["description"], "path": _PATHS[item["type"]], **item})


async def _worker(http: RawConnection, seed: int, acked: list[dict[str, str]]) -> None:
    rnd = random.Random(seed)
    for number in range(OPERATIONS_PER_TASK):
        key = f"t{seed}-{number}"
        amount = f"{rnd.randint(1, 6000) / 100:.2f}"
        roll = rnd.random()
        if roll < 0.15:
            await _keyed_batch(http, rnd, key, acked)
            continue
        if roll < 0.6:
            source, target = rnd.sample(sorted(HOT), 2)
            path, body = "/v1/transfers", {"from": source, "to": target, "amount": amount}
        elif roll < 0.8:
            path, body = "/v1/deposits", {"client": rnd.choice(sorted(HOT)), "amount": amount}
        else:
            path, body = "/v1/withdrawals", {"client": rnd.choice(sorted(HOT)), "amount": amount}
        body["description"] = key
        status, _, answer = await http.request("POST", path, body, {"Idempotency-Key": key})
        assert status in (201, 422), answer
        if status == 201:
            acked.append({"key": key, "path": path, "amount": amount})
        else:
            assert answer["error"]["code"] in ("insufficient_funds", "cap_exceeded")


async def _storm(servers: list[ServerProcess]) -> list[dict[str, str]]:
    """TASKS clients, spread over the servers, each with its own keep-alive connection."""
    acked: list[dict[str, str]] = []

    async def task(seed: int) -> None:
        async with RawConnection(servers[seed % len(servers)]) as connection:
            await _worker(connection, seed, acked)

    await asyncio.gather(*(task(seed) for seed in range(TASKS)))
    return acked


# The storm's clients all come from 127.0.0.1: allow them past the per-address bound.
MANY = {"KOPILKA_CONNECTIONS_PER_CLIENT": str(2 * TASKS)}


def test_conflicting_transfers_keep_every_invariant(tmp_path: Path) -> None:
    with running_server(tmp_path / "home", **MANY) as server:
        opening = _setup(server)
        acked = asyncio.run(_storm([server]))
        _check_ledger(server, opening, acked)


def test_two_servers_on_one_sqlite_file_keep_every_invariant(tmp_path: Path) -> None:
    database = str(tmp_path / "shared.db")
    with (
        running_server(tmp_path / "home", database, **MANY) as first,
        running_server(tmp_path / "home", database, **MANY) as second,
    ):
        opening = _setup(first)
        acked = asyncio.run(_storm([first, second]))
        _check_ledger(second, opening, acked)


@pytest.mark.postgres
def test_two_servers_on_one_postgres_database_keep_every_invariant(
    tmp_path: Path, postgres_url: str
) -> None:
    with (
        running_server(tmp_path / "home", postgres_url, **MANY) as first,
        running_server(tmp_path / "home", postgres_url, **MANY) as second,
    ):
        opening = _setup(first)
        acked = asyncio.run(_storm([first, second]))
        _check_ledger(second, opening, acked)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_worker_processes_keep_every_invariant_and_stop_cleanly(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """`kopilka serve --workers 2`: two engines behind one port, on one database."""
    database = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    with running_server(tmp_path / "home", database, workers=2, **MANY) as server:
        opening = _setup(server)
        acked = asyncio.run(_storm([server]))
        _check_ledger(server, opening, acked)
        assert server.stop() == 0  # SIGTERM: the workers finish, the parent exits 0


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_on_a_port_in_use_says_so_in_one_line_and_changes_nothing(
    tmp_path: Path, workers: int
) -> None:
    home = tmp_path / "home"
    with running_server(home) as server:
        token = (home / "admin.token").read_text()
        # Another database in the same home: a start would write a token of its own.
        other = ("--db", str(tmp_path / "other.db"), "--workers", str(workers))
        taken = _serve(home, str(server.port), *other)
        assert (home / "admin.token").read_text() == token
        new_home = tmp_path / "new" / "home"  # nothing made for a server that never ran
        assert _serve(new_home, str(server.port)).returncode == 1
        assert not (tmp_path / "new").exists()
    assert taken.returncode == 1, taken
    assert taken.stdout == ""
    assert taken.stderr == (
        f"Error: cannot listen on 127.0.0.1:{server.port}: Address already in use\n"
    )


def test_an_ipv6_address_in_use_is_written_as_a_url_writes_it(tmp_path: Path) -> None:
    """It said "cannot listen on ::1:PORT", where the line of a server listening there
    writes http://[::1]:PORT."""
    with socket.socket(socket.AF_INET6) as taken:
        try:
            taken.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback on this machine")
        taken.listen()
        port = taken.getsockname()[1]
        refused = _serve(tmp_path / "home", "--host", "::1", "--port", str(port))
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == f"Error: cannot listen on [::1]:{port}: Address already in use\n"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_database_in_a_home_in_use_is_refused_and_keeps_the_token(
    tmp_path: Path, workers: int
) -> None:
    """Its own admin token would replace the running server's, which the local shells
    of that server read; once that server has stopped, it may."""
    home = tmp_path / "home"
    other = ("--db", str(tmp_path / "other.db"), "--workers", str(workers))
    with running_server(home) as server:
        token = (home / "admin.token").read_text()
        refused = _serve(home, str(free_port()), *other)
        assert (home / "admin.token").read_text() == token
        with server.client() as admin:  # the first server's shells still get in
            assert admin.get("/v1/whoami").status_code == 200
        # The same database in the same home is another server of the same bank: welcome.
        with running_server(home, server.db) as same:
            assert (home / "admin.token").read_text() == token
            with same.client() as admin:
                assert admin.get("/v1/whoami").status_code == 200
    assert refused.returncode == 1, refused
    assert refused.stdout == ""
    # Refused before its database was made: at a mistyped path, an empty ledger was left.
    assert refused.stderr == (
        f"Error: the admin token in {home / 'admin.token'} is not honoured by the database"
        f" {tmp_path / 'other.db'}, which is not there yet (check --db), and another kopilka"
        f" server uses {home}: stop it first (a new token is then written), or give each"
        " database a KOPILKA_HOME of its own\n"
    )
    assert not list(tmp_path.glob("other.db*"))
    with running_server(home, str(tmp_path / "other.db"), workers=workers) as replacing:
        assert (home / "admin.token").read_text() != token
        with replacing.client() as admin:
            assert admin.get("/v1/whoami").status_code == 200


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_newer_schema_says_so_in_one_line(tmp_path: Path, workers: str) -> None:
    database = tmp_path / "newer.db"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA user_version = 99")
    port = str(free_port())
    refused = _serve(tmp_path / "home", port, "--db", str(database), "--workers", workers)
    assert refused.returncode == 1, refused
    assert refused.stdout == ""
    assert refused.stderr == (
        f"Error: the database at {database} has schema version 99, newer than this kopilka"
        f" knows ({SCHEMA_VERSION}); upgrade kopilka\n"
    )
    assert not (tmp_path / "home" / "admin.token").exists()


def _serve(home: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*kopilka_command(), "serve", *arguments],
        env=server_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _check_ledger(server: ServerProcess, opening: Decimal, acked: list[dict[str, str]]) -> None:
    """Money conserved, bounds held, every acknowledged operation once, nothing else."""
    assert len(acked) > TASKS  # plenty succeeded, so the checks below mean something
    with server.client() as admin:
        accounts = {a["client"]: a for a in admin.get("/v1/accounts").json()["accounts"]}
        statements = {
            client: admin.get(f"/v1/accounts/{client}/statement").json() for client in HOT
        }
    deposited = sum(Decimal(a["amount"]) for a in acked if a["path"] == "/v1/deposits")
    withdrawn = sum(Decimal(a["amount"]) for a in acked if a["path"] == "/v1/withdrawals")
    total = sum(Decimal(account["balance"]) for account in accounts.values())
    assert total == opening + deposited - withdrawn
    for client, (floor, cap) in HOT.items():
        balance = Decimal(accounts[client]["balance"])
        assert balance >= Decimal(floor), client
        assert cap is None or balance <= Decimal(cap), client
        lines = statements[client]["lines"]
        assert Decimal(statements[client]["closing_balance"]) == balance
        for line in lines:  # every running balance stayed in bounds too
            assert Decimal(line["balance_after"]) >= Decimal(floor)
            assert cap is None or Decimal(line["balance_after"]) <= Decimal(cap)
    seen = Counter(line["description"] for s in statements.values() for line in s["lines"])
    for operation in acked:
        sides = 2 if operation["path"] == "/v1/transfers" else 1
        assert seen[operation["key"]] == sides, operation
    acked_keys = {operation["key"] for operation in acked}
    strays = [key for key in seen if key not in acked_keys and not key.startswith("open-")]
    assert strays == []  # nothing refused was recorded


def test_an_admin_token_that_cannot_be_written_leaves_no_working_token(tmp_path: Path) -> None:
    """Neither in a store (none is made: the home is looked at first) nor on disk."""
    home = tmp_path / "home"
    (home / "admin.token").mkdir(parents=True)  # a directory where the file should be
    for _ in range(2):
        refused = _serve(home, str(free_port()))
        assert (refused.returncode, refused.stdout) == (1, "")
        assert refused.stderr == (
            f"Error: cannot write the admin token {home / 'admin.token'}: a directory is in"
            " the way\n"
        )
    assert sorted(p.name for p in home.iterdir()) == [".admin.token.lock", "admin.token"]


def test_a_token_bound_to_a_ledger_spelt_decomposed_reaches_it_spelt_precomposed(
    tmp_path: Path,
) -> None:
    """Ledger names are kept in NFC, as client names are: "café" typed with a combining
    accent (as a macOS terminal sends it) and "café" precomposed are one ledger, whichever
    spelling a token was made for, over the API or by `kopilka token create`."""
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    with running_server(tmp_path / "home") as server:
        with server.client() as admin:
            made = {
                name: admin.post("/v1/tokens", json={"role": "teller", "ledger": name})
                for name in (nfc, nfd)
            }
        assert [answer.status_code for answer in made.values()] == [201, 201]
        assert [answer.json()["ledger"] for answer in made.values()] == [nfc, nfc]
        with server.client(made[nfc].json()["secret"]) as precomposed:
            assert precomposed.post("/v1/accounts", json={"client": "Ann"}).status_code == 201
            deposit = precomposed.post("/v1/deposits", json={"client": "Ann", "amount": "50"})
            assert deposit.status_code == 201, deposit.text
        local = server.command("token", "create", "--role", "teller", "--ledger", nfd)
        assert local.returncode == 0, local.stderr
        secrets = [made[nfd].json()["secret"], local.stdout.splitlines()[1]]
        for secret in secrets:
            with server.client(secret) as decomposed:
                assert decomposed.get("/v1/whoami").json()["ledger"] == nfc
                ann = decomposed.get("/v1/accounts/Ann")
                assert ann.status_code == 200, ann.text
                assert ann.json()["balance"] == "50.00"
        listed = server.command("token", "list")
    assert listed.returncode == 0, listed.stderr
    tellers = [line for line in listed.stdout.splitlines() if " teller " in line]
    assert len(tellers) == 3
    assert all(f" ledger={nfc}  active " in line for line in tellers), listed.stdout
