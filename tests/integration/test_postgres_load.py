"""PostgreSQL under contention and outage: several engines and two OS processes on a
few hot accounts with floors and caps, and the server stopped and started under load.

Each test ends by checking the ledger in SQL: money is conserved, bounds hold, and
every account's entries, in statement order, add up to each balance they record.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from tests.pgserver import PostgresTestServer

from kopilka.domain.model import (
    Command,
    Deposit,
    OpenAccount,
    Operation,
    Outcome,
    Transfer,
    Withdraw,
)
from kopilka.engine import Engine
from kopilka.errors import InvalidInput, KopilkaError, Unavailable
from kopilka.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

HOT_ACCOUNTS = {  # client: (floor, cap, opening deposit)
    "Ann": (0, 40_000, 20_000),
    "Bob": (-10_000, None, 5_000),
    "Cid": (0, 25_000, 20_000),
    "Dee": (-2_000, 30_000, 0),
    "Eve": (0, 10_000, 10_000),
}
RULE_REFUSALS = {"insufficient_funds", "cap_exceeded"}


async def open_hot_accounts(url: str) -> None:
    commands: list[Command] = []
    for client, (floor, cap, opening) in HOT_ACCOUNTS.items():
        commands.append(OpenAccount(client, floor, cap))
        if opening:
            commands.append(Deposit(client, opening, "opening", f"open-{client}"))
    async with Engine(PostgresStore(url)) as engine:
        outcomes = await engine.submit_many(commands)
    assert not [o for o in outcomes if isinstance(o, KopilkaError)], outcomes


async def check_ledger(url: str) -> dict[str, int]:
    """Invariants of the whole database; returns the balances by client."""
    connection = await asyncpg.connect(url)
    try:
        total = await connection.fetchval("SELECT coalesce(sum(balance), 0) FROM accounts")
        net = await connection.fetchval(
            "SELECT coalesce(sum(CASE kind WHEN 'deposit' THEN amount"
            " WHEN 'withdrawal' THEN -amount ELSE 0 END), 0) FROM operations"
        )
        assert total == net, "money appeared or vanished"
        out_of_bounds = await connection.fetchval(
            "SELECT count(*) FROM accounts WHERE balance < min_balance"
            " OR (max_balance IS NOT NULL AND balance > max_balance)"
        )
        assert out_of_bounds == 0
        # In statement order (created_at, id) each entry's balance_after is the running
        # sum: so the time order is the order in which batches were applied.
        broken_chain = await connection.fetchval(
            "SELECT count(*) FROM (SELECT balance_after, sum(amount) OVER"
            " (PARTITION BY account_id ORDER BY created_at, id) AS running FROM entries) AS e"
            " WHERE balance_after <> running"
        )
        assert broken_chain == 0
        unbalanced = await connection.fetchval(
            "SELECT count(*) FROM accounts a WHERE balance <>"
            " coalesce((SELECT sum(amount) FROM entries WHERE account_id = a.id), 0)"
        )
        assert unbalanced == 0
        transfers_unpaired = await connection.fetchval(
            "SELECT count(*) FROM operations o WHERE kind = 'transfer' AND"
            " (SELECT sum(amount) FROM entries WHERE operation_id = o.id) <> 0"
        )
        assert transfers_unpaired == 0
        rows = await connection.fetch("SELECT client, balance FROM accounts")
        return {row[0]: row[1] for row in rows}
    finally:
        await connection.close()


def random_transfer(rnd: random.Random, key: str) -> Transfer:
    sender, receiver = rnd.sample(sorted(HOT_ACCOUNTS), 2)
    return Transfer(sender, receiver, rnd.randrange(1, 8_000), "hot", key)


def assert_only_rule_refusals(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        if isinstance(outcome, KopilkaError):
            assert outcome.code in RULE_REFUSALS, outcome


# -- several engines in one process ----------------------------------------------------


async def test_engines_on_hot_accounts_keep_every_invariant(postgres_url: str) -> None:
    await open_hot_accounts(postgres_url)
    engines = [Engine(PostgresStore(postgres_url)) for _ in range(4)]
    await asyncio.gather(*(engine.start() for engine in engines))
    try:

        async def caller(index: int) -> list[Outcome]:
            rnd = random.Random(index)
            engine = engines[index % len(engines)]
            outcomes = []
            for number in range(15):
                command = random_transfer(rnd, f"t{index}-{number}")
                outcomes.append(await engine.execute(command))
            return outcomes

        async def batch_caller(index: int) -> list[Outcome]:
            rnd = random.Random(1_000 + index)
            commands = [random_transfer(rnd, f"b{index}-{n}") for n in range(100)]
            return await engines[index].submit_many(commands)

        results = await asyncio.gather(
            *(caller(index) for index in range(48)), *(batch_caller(i) for i in range(4))
        )
    finally:
        await asyncio.gather(*(engine.close() for engine in engines))
    outcomes = [outcome for result in results for outcome in result]
    assert_only_rule_refusals(outcomes)  # no deadlock, no "busy" reaches a caller
    applied = [o for o in outcomes if isinstance(o, Operation)]
    assert len(applied) > len(outcomes) // 3
    balances = await check_ledger(postgres_url)
    assert sum(balances.values()) == sum(opening for _, _, opening in HOT_ACCOUNTS.values())


async def test_of_two_transfers_that_cannot_both_fit_exactly_one_succeeds(
    postgres_url: str,
) -> None:
    rounds = 8
    commands: list[Command] = []
    for number in range(rounds):
        commands += [
            OpenAccount(f"payer{number}"),
            Deposit(f"payer{number}", 10_000, "funds", f"fund{number}"),
            OpenAccount(f"capped{number}", max_balance_cents=10_000),
            OpenAccount(f"other{number}"),
            OpenAccount(f"full{number}", max_balance_cents=10_000),
            Deposit(f"sender{number}a", 10_000, "funds", f"fund{number}a"),
            Deposit(f"sender{number}b", 10_000, "funds", f"fund{number}b"),
        ]
    senders: dict[str, int] = {}  # what each sender into a full account must keep
    first, second = Engine(PostgresStore(postgres_url)), Engine(PostgresStore(postgres_url))
    await first.start()
    await second.start()
    try:
        await first.submit_many(commands)
        for number in range(rounds):
            # Floor: 70 + 70 out of 100. Cap: 70 + 70 into a cap of 100.
            floor_pair = await asyncio.gather(
                first.execute(
                    Transfer(f"payer{number}", f"other{number}", 7_000, "", f"f{number}a")
                ),
                second.execute(
                    Transfer(f"payer{number}", f"other{number}", 7_000, "", f"f{number}b")
                ),
            )
            cap_pair = await asyncio.gather(
                first.execute(Deposit(f"capped{number}", 7_000, "", f"c{number}a")),
                second.execute(Deposit(f"capped{number}", 7_000, "", f"c{number}b")),
            )
            # Cap, by transfers: 70 from each of two senders into a cap of 100.
            transfer_cap_pair = await asyncio.gather(
                first.execute(
                    Transfer(f"sender{number}a", f"full{number}", 7_000, "", f"t{number}a")
                ),
                second.execute(
                    Transfer(f"sender{number}b", f"full{number}", 7_000, "", f"t{number}b")
                ),
            )
            for pair, code in (
                (floor_pair, "insufficient_funds"),
                (cap_pair, "cap_exceeded"),
                (transfer_cap_pair, "cap_exceeded"),
            ):
                kinds = Counter(
                    "ok" if isinstance(o, Operation) else getattr(o, "code", o) for o in pair
                )
                assert kinds == Counter({"ok": 1, code: 1}), pair
            refused = next(o for o in transfer_cap_pair if isinstance(o, KopilkaError))
            assert refused.message == (
                f"the transfer would take full{number} above the cap of $100.00 (balance $70.00)"
            )
            for side, outcome in zip("ab", transfer_cap_pair, strict=True):
                paid = isinstance(outcome, Operation)
                senders[f"sender{number}{side}"] = 3_000 if paid else 10_000
    finally:
        await first.close()
        await second.close()
    balances = await check_ledger(postgres_url)
    assert all(balances[f"payer{n}"] == 3_000 for n in range(rounds))
    assert all(balances[f"capped{n}"] == 7_000 for n in range(rounds))
    assert all(balances[f"full{n}"] == 7_000 for n in range(rounds))
    assert {client: balances[client] for client in senders} == senders


async def test_accounts_opened_by_two_engines_at_once_exist_once(postgres_url: str) -> None:
    first, second = Engine(PostgresStore(postgres_url)), Engine(PostgresStore(postgres_url))
    await first.start()
    await second.start()
    try:
        results = await asyncio.gather(
            *(
                engine.execute(Deposit(f"new{n}", 100, "first deposit", f"{side}{n}"))
                for n in range(30)
                for side, engine in (("a", first), ("b", second))
            )
        )
    finally:
        await first.close()
        await second.close()
    assert all(isinstance(outcome, Operation) for outcome in results), results
    balances = await check_ledger(postgres_url)
    assert balances == {f"new{n}": 200 for n in range(30)}


async def test_the_same_key_from_two_engines_at_once_applies_once(postgres_url: str) -> None:
    await open_hot_accounts(postgres_url)
    first, second = Engine(PostgresStore(postgres_url)), Engine(PostgresStore(postgres_url))
    await first.start()
    await second.start()
    try:
        commands = [Transfer("Ann", "Bob", 10, "same key", f"shared{n}") for n in range(40)]
        answers = await asyncio.gather(
            *(engine.execute(command) for command in commands for engine in (first, second))
        )
    finally:
        await first.close()
        await second.close()
    assert all(isinstance(answer, Operation) for answer in answers), answers
    for number in range(40):
        pair = [
            a
            for a in answers
            if isinstance(a, Operation) and a.idempotency_key == f"shared{number}"
        ]
        assert sorted(a.replayed for a in pair) == [False, True]
        assert pair[0].id == pair[1].id
    balances = await check_ledger(postgres_url)
    assert balances["Ann"] == 20_000 - 400


async def test_an_account_dropped_and_reopened_elsewhere_is_found_again(
    postgres_url: str,
) -> None:
    """One engine remembers an account's id; another drops its (sandbox) ledger and
    opens the client again under a new id. The first must use the new account."""
    first, second = Engine(PostgresStore(postgres_url)), Engine(PostgresStore(postgres_url))
    await first.start()
    await second.start()
    sandbox, now = "sandbox-reopened", datetime.now(UTC)
    try:
        assert await first.store.open_sandbox(sandbox, now, 10)
        await first.execute(Deposit("Kim", 500, "old", "k1", ledger=sandbox))
        assert await second.store.drop_sandbox(sandbox)
        assert await second.store.open_sandbox(sandbox, now, 10)
        await second.execute(Deposit("Kim", 70, "new", "k2", ledger=sandbox))
        outcome = await first.execute(Deposit("Kim", 5, "again", "k3", ledger=sandbox))
        assert isinstance(outcome, Operation), outcome
        assert outcome.credit_balance_after_cents == 75
        assert await second.store.drop_sandbox(sandbox)
        assert await second.store.open_sandbox(sandbox, now, 10)
        gone = await first.execute(Withdraw("Kim", 1, "gone", "k4", ledger=sandbox))
        assert isinstance(gone, KopilkaError)
        assert gone.code == "account_not_found"
    finally:
        await first.close()
        await second.close()
    await check_ledger(postgres_url)


# -- two OS processes ------------------------------------------------------------------

WORKER = r"""
import asyncio, json, random, sys, time
from kopilka.domain.model import Deposit, Operation, Transfer
from kopilka.engine import Engine
from kopilka.errors import KopilkaError
from kopilka.store.postgres import PostgresStore

URL, NAME, START = sys.argv[1], sys.argv[2], float(sys.argv[3])
CLIENTS = json.loads(sys.argv[4])

async def main():
    report = {"applied": 0, "refused": {}, "first": [], "unexpected": []}
    async with Engine(PostgresStore(URL)) as engine:
        await asyncio.sleep(max(0.0, START - time.time()))  # both processes start together

        async def caller(task):
            rnd = random.Random(f"{NAME}-{task}")
            for number in range(25):
                sender, receiver = rnd.sample(CLIENTS, 2)
                command = Transfer(sender, receiver, rnd.randrange(1, 8000), "x",
                                   f"{NAME}-{task}-{number}")
                if number % 5 == 0:  # the same keys from both processes
                    key = f"shared-{task}-{number}"
                    command = Deposit("Bob", 1, "shared", key, open_account=False)
                try:
                    outcome = await engine.execute(command)
                except KopilkaError as error:
                    report["unexpected"].append(repr(error))
                    continue
                if isinstance(outcome, Operation):
                    report["applied"] += 1
                    if outcome.idempotency_key.startswith("shared") and not outcome.replayed:
                        report["first"].append(outcome.idempotency_key)
                else:
                    report["refused"][outcome.code] = report["refused"].get(outcome.code, 0) + 1

        await asyncio.gather(*(caller(task) for task in range(16)))
    print(json.dumps(report))

asyncio.run(main())
"""


def test_two_processes_on_hot_accounts(postgres_url: str) -> None:
    asyncio.run(open_hot_accounts(postgres_url))
    start = time.time() + 2.0
    clients = json.dumps(sorted(HOT_ACCOUNTS))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, postgres_url, name, str(start), clients],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("p1", "p2")
    ]
    reports: list[dict[str, Any]] = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr.decode()
        reports.append(json.loads(stdout))
    for report in reports:
        assert report["unexpected"] == []
        assert set(report["refused"]) <= RULE_REFUSALS
        assert report["applied"] > 0
    first = reports[0]["first"] + reports[1]["first"]
    # Bob has no cap, so every shared deposit applies: once, whichever process is first.
    assert sorted(first) == sorted({f"shared-{t}-{n}" for t in range(16) for n in range(0, 25, 5)})
    asyncio.run(check_ledger(postgres_url))


# -- the server goes away under load ---------------------------------------------------


async def test_server_stopped_under_load_fails_fast_and_recovers(
    postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    if not postgres_server.is_managed:
        pytest.skip("an external server (KOPILKA_TEST_POSTGRES_URL) is not ours to stop")
    await open_hot_accounts(postgres_url)
    acknowledged: dict[str, Transfer] = {}
    unknown: dict[str, Transfer] = {}  # answered 503: maybe applied, to be retried
    slowest_failure_seconds = 0.0
    down = asyncio.Event()
    stop_load = asyncio.Event()
    async with Engine(PostgresStore(postgres_url)) as engine:

        async def caller(index: int) -> None:
            nonlocal slowest_failure_seconds
            rnd = random.Random(index)
            number = 0
            while not stop_load.is_set():
                number += 1
                command = random_transfer(rnd, f"load{index}-{number}")
                sent = time.monotonic()
                try:
                    outcome = await engine.execute(command)
                except Unavailable as error:
                    assert error.code in ("store_unavailable", "outcome_unknown"), error
                    slowest_failure_seconds = max(slowest_failure_seconds, time.monotonic() - sent)
                    unknown[command.idempotency_key] = command
                    await asyncio.sleep(0.02)
                    continue
                if isinstance(outcome, Operation):
                    acknowledged[command.idempotency_key] = command
                else:
                    assert isinstance(outcome, KopilkaError), outcome
                    assert outcome.code in RULE_REFUSALS, outcome

        callers = [asyncio.create_task(caller(index)) for index in range(16)]
        await asyncio.sleep(1.0)
        before = len(acknowledged)
        await asyncio.to_thread(postgres_server.stop, "immediate")
        down.set()
        await asyncio.sleep(1.5)
        # While it is down, callers are told at once; reads too.
        with pytest.raises(Unavailable):
            await engine.get_account("main", "Ann")
        during = len(acknowledged)
        await asyncio.to_thread(postgres_server.start)
        recovered_at = time.monotonic()
        while len(acknowledged) < during + 50:  # serving again, same engine, same pool
            assert time.monotonic() - recovered_at < 15, "the store did not come back"
            await asyncio.sleep(0.05)
        stop_load.set()
        await asyncio.gather(*callers)
        assert before > 0
        assert unknown, "the outage went unnoticed"
        assert slowest_failure_seconds < 5.0
        # A 503 may hide an applied batch: retrying with the same key settles it.
        retried = await engine.submit_many(list(unknown.values()))
    for command, outcome in zip(unknown.values(), retried, strict=True):
        if isinstance(outcome, Operation):
            acknowledged[command.idempotency_key] = command
        else:
            assert isinstance(outcome, KopilkaError), outcome
            assert outcome.code in RULE_REFUSALS, outcome
    connection = await asyncpg.connect(postgres_url)
    try:
        rows = await connection.fetch(
            "SELECT idempotency_key, count(*) FROM operations"
            " WHERE idempotency_key LIKE 'load%' GROUP BY idempotency_key"
        )
    finally:
        await connection.close()
    stored = {row[0]: row[1] for row in rows}
    assert set(acknowledged) <= set(stored), "an acknowledged transfer was lost"
    assert set(stored.values()) == {1}
    await check_ledger(postgres_url)


async def test_a_request_the_database_cannot_store_fails_alone(postgres_url: str) -> None:
    """The engine groups requests into one transaction; one that makes the database fail
    (a NUL, which PostgreSQL cannot store, from a caller that did not check it) must not
    take the others with it, and is refused as the bad input it is."""
    async with Engine(PostgresStore(postgres_url)) as engine:
        good = [
            Deposit(f"alone-{n}", 100, "fine", f"alone-{n}", open_account=True) for n in range(5)
        ]
        bad = Deposit("nul\u0000name", 100, "bad", "alone-bad", open_account=True)
        answers = await asyncio.gather(
            *(engine.submit_many([command]) for command in [*good[:2], bad, *good[2:]]),
            return_exceptions=True,
        )
    [failed] = answers.pop(2)  # refused as one of the request's items, not the request
    assert isinstance(failed, InvalidInput) and failed.code == "invalid_text", failed
    for answer in answers:
        assert isinstance(answer, list) and isinstance(answer[0], Operation), answer
