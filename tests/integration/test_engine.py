"""The engine under concurrency, on real SQLite files: batching, bounds, shutdown, threads."""

from __future__ import annotations

import asyncio
import gc
import random
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.garbage import objects_left_in_cycles

from kopilka.bank import EmbeddedBank
from kopilka.client import Client
from kopilka.domain.model import (
    ClaimKey,
    Command,
    Deposit,
    OpenAccount,
    Operation,
    Outcome,
    Transfer,
    Withdraw,
)
from kopilka.engine import GATHER_STEPS_MAX, Engine, EngineState
from kopilka.errors import Busy, InvalidInput, KopilkaError, Unavailable
from kopilka.limits import Limits
from kopilka.store import open_store
from kopilka.store import sqlite as sqlite_store

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
HOT_ACCOUNTS = {  # client: (floor, cap, opening deposit)
    "Ann": (0, 40_000, 20_000),
    "Bob": (-10_000, None, 5_000),
    "Cid": (0, 25_000, 20_000),
    "Dee": (-2_000, 30_000, 0),
}
TASKS = 64
TRANSFERS_PER_TASK = 12


async def open_engine(path: Path, limits: Limits | None = None) -> Engine:
    engine = Engine(open_store(str(path)), limits)
    await engine.start()
    return engine


async def open_hot_accounts(engine: Engine) -> int:
    commands: list[Command] = []
    for client, (floor, cap, opening) in HOT_ACCOUNTS.items():
        commands.append(OpenAccount(client, floor, cap))
        if opening:
            commands.append(Deposit(client, opening, "opening", f"open-{client}"))
    outcomes = await engine.submit_many(commands)
    assert not any(isinstance(o, KopilkaError) for o in outcomes), outcomes
    return sum(opening for _, _, opening in HOT_ACCOUNTS.values())


async def transfer_randomly(engines: list[Engine], task: int) -> list[Outcome]:
    chooser = random.Random(task)
    names = list(HOT_ACCOUNTS)
    outcomes: list[Outcome] = []
    for number in range(TRANSFERS_PER_TASK):
        source, target = chooser.sample(names, 2)
        amount = chooser.choice([1, 500, 2_500, 7_000, 15_000])
        command = Transfer(source, target, amount, "hot", f"t{task}-{number}")
        outcomes.append(await engines[number % len(engines)].execute(command))
    return outcomes


async def check_hot_invariants(engine: Engine, total_cents: int, transfers: int) -> None:
    accounts = await engine.list_accounts("main")
    assert sum(a.balance_cents for a in accounts) == total_cents
    lines = 0
    for account in accounts:
        floor, cap, _ = HOT_ACCOUNTS[account.client]
        assert (account.min_balance_cents, account.max_balance_cents) == (floor, cap)
        assert account.balance_cents >= floor
        assert cap is None or account.balance_cents <= cap
        statement = await engine.statement("main", account.client, None, FAR_FUTURE)
        running = 0
        for line in statement.lines:
            running += line.amount_cents
            assert line.balance_after_cents == running
            assert line.balance_after_cents >= floor
            assert cap is None or line.balance_after_cents <= cap
        assert running == account.balance_cents
        lines += sum(1 for line in statement.lines if line.kind == "transfer")
    assert lines == 2 * transfers


def successful_transfers(results: list[list[Outcome]]) -> int:
    count = 0
    for outcome in (o for outcomes in results for o in outcomes):
        if isinstance(outcome, KopilkaError):
            assert outcome.code in ("insufficient_funds", "cap_exceeded"), outcome
        else:
            assert isinstance(outcome, Operation)
            count += 1
    return count


async def test_concurrent_conflicting_transfers_keep_invariants(tmp_path: Path) -> None:
    engine = await open_engine(tmp_path / "kopilka.db")
    try:
        total = await open_hot_accounts(engine)
        results = await asyncio.gather(*(transfer_randomly([engine], t) for t in range(TASKS)))
        transfers = successful_transfers(results)
        assert 0 < transfers < TASKS * TRANSFERS_PER_TASK  # some refused, some applied
        await check_hot_invariants(engine, total, transfers)
        assert engine.stats.operations >= TASKS * TRANSFERS_PER_TASK
        assert max(engine.stats.size_histogram) > 1, engine.stats.size_histogram
    finally:
        await engine.close()


async def deposits_after_steps(engine: Engine, steps: list[int]) -> list[Outcome]:
    """One deposit to Ann per entry, each queued that many event-loop steps from now."""

    async def deposit(number: int, delay: int) -> Outcome:
        for _ in range(delay):
            await asyncio.sleep(0)
        return await engine.execute(Deposit("Ann", 100, "gathered", f"step-{number}"))

    return await asyncio.gather(*(deposit(n, delay) for n, delay in enumerate(steps)))


async def test_a_batch_waits_for_requests_still_arriving(tmp_path: Path) -> None:
    engine = await open_engine(tmp_path / "kopilka.db")
    try:
        await engine.execute(OpenAccount("Ann", 0, None))
        before = engine.stats.batches
        outcomes = await deposits_after_steps(engine, [n % 5 for n in range(40)])
        assert all(isinstance(o, Operation) for o in outcomes), outcomes
        assert engine.stats.batches == before + 1
    finally:
        await engine.close()


async def test_a_steady_trickle_does_not_hold_a_batch_back(tmp_path: Path) -> None:
    engine = await open_engine(tmp_path / "kopilka.db")
    try:
        await engine.execute(OpenAccount("Ann", 0, None))
        before = engine.stats.batches
        # One request every step, for longer than a batch waits.
        steps = list(range(3 * GATHER_STEPS_MAX))
        outcomes = await deposits_after_steps(engine, steps)
        assert all(isinstance(o, Operation) for o in outcomes), outcomes
        assert engine.stats.batches - before >= 2
    finally:
        await engine.close()


async def test_one_callers_flood_does_not_hold_back_another(tmp_path: Path) -> None:
    engine = await open_engine(tmp_path / "kopilka.db", Limits(batch_operations_max=10))
    try:
        await engine.execute(OpenAccount("Ann", 0, None))
        flood = [Deposit("Ann", 1, "import", f"import-{n}") for n in range(100)]
        imported = asyncio.ensure_future(engine.submit_many(flood, caller="importer"))
        await asyncio.sleep(0)  # the import is queued: ten batches of ten
        single = await engine.execute(Deposit("Ann", 7, "counter", "teller-1"), "teller")
        assert isinstance(single, Operation)
        outcomes = await imported
        ids = [o.id for o in outcomes if isinstance(o, Operation)]
        assert len(ids) == 100
        # Applied after at most one of the import's batches, not after all ten.
        assert sum(1 for operation_id in ids if operation_id < single.id) <= 10
    finally:
        await engine.close()


@pytest.mark.parametrize("shared_seconds", [0.0, 60.0])
async def test_beside_another_caller_batches_keep_the_shared_bound(
    tmp_path: Path, shared_seconds: float
) -> None:
    limits = Limits(
        batch_operations_max=40, shared_batch_operations_max=10, shared_batch_seconds=shared_seconds
    )
    engine = await open_engine(tmp_path / "kopilka.db", limits)

    def flood(prefix: str) -> list[Command]:
        return [Deposit("Ann", 1, prefix, f"{prefix}-{n}") for n in range(100)]

    async def batches_of_import(prefix: str) -> int:
        before = engine.stats.batches
        await engine.submit_many(flood(prefix), caller="importer")
        return engine.stats.batches - before

    try:
        await engine.execute(OpenAccount("Ann", 0, None))
        assert await batches_of_import("alone") == 3  # 40, 40, 20: alone, the full bound
        before = engine.stats.batches
        imported = asyncio.ensure_future(engine.submit_many(flood("beside"), caller="importer"))
        await asyncio.sleep(0)  # the import is queued, in pieces of ten
        single = await engine.execute(Deposit("Ann", 7, "counter", "teller-1"), "teller")
        assert isinstance(single, Operation)
        ids = [o.id for o in await imported if isinstance(o, Operation)]
        assert len(ids) == 100
        # The teller's deposit went in after at most one of the import's batches.
        assert sum(1 for operation_id in ids if operation_id < single.id) <= 10
        # Ten, then the teller's one alone (ten more would not fit beside it); then,
        # alone again, 40, 40, 10, or, within the time, nine batches of ten.
        assert engine.stats.batches - before == (11 if shared_seconds else 5)
        # For `shared_batch_seconds` after the teller's write, an import alone keeps to
        # ten too (the teller's next request may be on its way); after that, forty.
        assert await batches_of_import("after") == (10 if shared_seconds else 3)
    finally:
        await engine.close()


async def test_past_half_full_one_caller_leaves_room_for_others(tmp_path: Path) -> None:
    engine = await open_engine(
        tmp_path / "kopilka.db", Limits(batch_operations_max=10, queue_depth_max=100)
    )
    try:
        await engine.execute(OpenAccount("Ann", 0, None))

        def ten(prefix: str) -> list[Command]:
            return [Deposit("Ann", 1, prefix, f"{prefix}-{n}") for n in range(10)]

        # Each task queues its request in its first step, in this order, before the
        # writer runs: the importer holds 50 of the 60 operations waiting.
        requests = [engine.submit_many(ten(f"import-{n}"), caller="importer") for n in range(5)]
        requests.append(engine.submit_many(ten("teller"), caller="teller"))
        requests.append(engine.submit_many(ten("import-5"), caller="importer"))
        results = await asyncio.gather(*requests, return_exceptions=True)
        assert isinstance(results[-1], Busy)  # 60 of 70 would be the importer's
        assert all(isinstance(result, list) for result in results[:-1]), results
        # Alone, a caller may hold half the queue and no more: one who sends a request at
        # a time is never waiting when a flood comes, and found the queue full.
        alone = [engine.submit_many(ten(f"alone-{n}"), caller="importer") for n in range(6)]
        alone.append(engine.submit_many(ten("teller-2"), caller="teller"))
        results = await asyncio.gather(*alone, return_exceptions=True)
        assert all(isinstance(result, list) for result in results[:5]), results
        assert isinstance(results[5], Busy)  # 60 of 100 would be the importer's
        assert isinstance(results[6], list), results[6]
    finally:
        await engine.close()


async def test_one_request_alone_may_be_as_large_as_any(tmp_path: Path) -> None:
    """Half the queue is the most a caller's requests may hold alone, not the most one
    request may carry: the embedded bank takes up to 100,000 operations a call."""
    limits = Limits(batch_operations_max=10, queue_depth_max=100, request_operations_max=100)
    engine = await open_engine(tmp_path / "kopilka.db", limits)
    try:
        await engine.execute(OpenAccount("Ann", 0, None))
        commands: list[Command] = [Deposit("Ann", 1, "all", f"all-{n}") for n in range(100)]
        outcomes = await engine.submit_many(commands)
        assert all(isinstance(outcome, Operation) for outcome in outcomes)
    finally:
        await engine.close()


async def test_two_engines_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "kopilka.db"
    first = await open_engine(path)
    second = await open_engine(path)
    try:
        total = await open_hot_accounts(first)
        results = await asyncio.gather(
            *(transfer_randomly([first, second], t) for t in range(TASKS // 2))
        )
        transfers = successful_transfers(results)
        await check_hot_invariants(first, total, transfers)
        await check_hot_invariants(second, total, transfers)
    finally:
        await first.close()
        await second.close()


async def test_close_drains_and_answers_queued_work(tmp_path: Path) -> None:
    path = tmp_path / "kopilka.db"
    engine = await open_engine(path)
    tasks = [
        asyncio.create_task(engine.execute(Deposit("Ann", 100, "queued", f"q{n}")))
        for n in range(200)
    ]
    await asyncio.sleep(0)  # every task has queued its command
    await engine.close()
    assert engine.state is EngineState.CLOSED
    outcomes = await asyncio.gather(*tasks)
    assert all(isinstance(o, Operation) for o in outcomes)
    reopened = await open_engine(path)
    try:
        assert (await reopened.get_account("main", "Ann")).balance_cents == 200 * 100
    finally:
        await reopened.close()


async def test_close_during_a_claimed_request_answers_each_item(tmp_path: Path) -> None:
    """A claimed request whose first piece applied before the close is answered item by
    item: an error raised for the whole request would say that nothing applied."""
    path = tmp_path / "kopilka.db"
    engine = await open_engine(path)
    head = engine.limits.shared_batch_operations_max
    deposits = [Deposit("Ann", 100, "long", f"long-{n}") for n in range(head + 500)]
    request = asyncio.create_task(
        engine.submit_many(deposits, ClaimKey("main", "batch-1", "digest"))
    )
    await asyncio.sleep(0)  # queued: the close lets its first piece through
    await engine.close()
    outcomes = await request
    applied = [o for o in outcomes if isinstance(o, Operation)]
    assert len(applied) == head
    assert all(isinstance(o, Unavailable) for o in outcomes[head:])
    reopened = await open_engine(path)
    try:
        account = await reopened.get_account("main", "Ann")
        assert account is not None and account.balance_cents == 100 * len(applied)
    finally:
        await reopened.close()


async def test_submit_after_close_is_unavailable(tmp_path: Path) -> None:
    engine = await open_engine(tmp_path / "kopilka.db")
    await engine.close()
    await engine.close()  # closing twice is harmless
    with pytest.raises(Unavailable):
        await engine.execute(Deposit("Ann", 100, "late", "late"))
    with pytest.raises(Unavailable):
        await engine.submit_many([Deposit("Ann", 100, "late", "late")])


async def test_full_queue_refuses_with_busy(tmp_path: Path) -> None:
    limits = Limits(batch_operations_max=2, queue_depth_max=4)
    engine = await open_engine(tmp_path / "kopilka.db", limits)
    try:
        queued = [
            asyncio.create_task(
                engine.submit_many(
                    [Deposit("Ann", 1, "q", f"q{n}a"), Deposit("Ann", 1, "q", f"q{n}b")],
                    caller=f"caller-{n}",  # half the queue each: the most one may hold
                )
            )
            for n in range(2)
        ]
        await asyncio.sleep(0)  # both requests wait in the queue; the writer has not run
        with pytest.raises(Busy):
            await engine.execute(Deposit("Ann", 1, "one too many", "extra"))
        results = await asyncio.gather(*queued)
        assert all(isinstance(o, Operation) for outcomes in results for o in outcomes)
        accepted = await engine.execute(Deposit("Ann", 1, "room again", "extra"))
        assert isinstance(accepted, Operation)
        with pytest.raises(Busy):
            await engine.submit_many([Deposit("Ann", 1, "x", f"big{n}") for n in range(5)])
        assert (await engine.get_account("main", "Ann")).balance_cents == 5
    finally:
        await engine.close()


async def test_request_size_is_bounded(tmp_path: Path) -> None:
    limits = Limits(batch_operations_max=2, queue_depth_max=100, request_operations_max=3)
    engine = await open_engine(tmp_path / "kopilka.db", limits)
    try:
        with pytest.raises(InvalidInput) as info:
            await engine.submit_many([Deposit("Ann", 1, "x", f"k{n}") for n in range(4)])
        assert info.value.code == "too_many_operations"
        assert await engine.submit_many([]) == []
    finally:
        await engine.close()


async def test_list_call_gives_one_outcome_per_operation_in_order(tmp_path: Path) -> None:
    engine = await open_engine(tmp_path / "kopilka.db", Limits(batch_operations_max=3))
    try:
        commands: list[Command] = []
        for n in range(10):
            commands.append(Deposit("Ann", 100, f"in {n}", f"d{n}"))
            commands.append(Withdraw("Ann", 150, f"out {n}", f"w{n}"))
        outcomes = await engine.submit_many(commands)
        assert len(outcomes) == len(commands)
        balance = 0
        for command, outcome in zip(commands, outcomes, strict=True):
            if isinstance(command, Withdraw) and balance < command.amount_cents:
                assert isinstance(outcome, KopilkaError)
                assert outcome.code == "insufficient_funds"
                continue
            assert isinstance(outcome, Operation)
            assert outcome.idempotency_key == command.idempotency_key
            balance += (
                command.amount_cents if isinstance(command, Deposit) else -command.amount_cents
            )
        assert (await engine.get_account("main", "Ann")).balance_cents == balance
        assert engine.stats.batches >= 7  # 20 operations in batches of at most 3
    finally:
        await engine.close()


def test_embedded_bank_works_from_a_plain_thread(tmp_path: Path) -> None:
    path = str(tmp_path / "kopilka.db")
    found: dict[str, object] = {}

    def use_the_bank() -> None:
        try:
            with EmbeddedBank(path) as bank:
                bank.deposit("John Jones", 10_000, "ATM Deposit", "k1")
                bank.open_account("Jane Doe", max_balance_cents=5_000)
                bank.transfer("John Jones", "Jane Doe", 2_500, "rent", "k2")
                try:
                    bank.transfer("John Jones", "Jane Doe", 2_501, "too much", "k3")
                except KopilkaError as error:
                    found["refusal"] = error.code
                found["replay"] = bank.deposit("John Jones", 10_000, "ATM Deposit", "k1").replayed
                found["many"] = bank.execute_many(
                    [Withdraw("John Jones", 500, "cash", "k4"), Withdraw("Nobody", 1, "x", "k5")]
                )
                found["accounts"] = [(a.client, a.balance_cents) for a in bank.accounts()]
                statement = bank.statement("Jane Doe", None, FAR_FUTURE)
                found["jane"] = [line.text for line in statement.lines]
        except BaseException as error:  # surfaced in the test thread below
            found["crash"] = error

    worker = threading.Thread(target=use_the_bank)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert "crash" not in found, found.get("crash")
    assert found["refusal"] == "cap_exceeded"
    assert found["replay"] is True
    many = found["many"]
    assert isinstance(many, list)
    assert isinstance(many[0], Operation)
    assert isinstance(many[1], KopilkaError)
    assert many[1].code == "account_not_found"
    assert found["accounts"] == [("Jane Doe", 2_500), ("John Jones", 7_000)]
    assert found["jane"] == ["Transfer from John Jones: rent"]

    with EmbeddedBank(path) as again:  # the data outlives the bank
        assert again.account("John Jones").balance_cents == 7_000


def test_an_embedded_bank_closed_while_threads_call_it_answers_each_call(
    tmp_path: Path,
) -> None:
    """Closed by one thread while others deposit: the calls under way end first, the
    later ones are refused as closed, none waits for ever on a loop stopped under it, and
    every deposit acknowledged is in the ledger, no other."""
    path = str(tmp_path / "kopilka.db")
    bank = EmbeddedBank(path)
    bank.deposit("Ann", 1, "seed", "seed")
    acknowledged: list[str] = []
    refused: list[str] = []
    odd: list[BaseException] = []
    closed = threading.Event()

    def deposit_until_closed(writer: int) -> None:
        number = 0
        while True:
            key = f"w{writer}-{number}"
            number += 1
            try:
                bank.deposit("Ann", 1, "x", key)
                acknowledged.append(key)
            except KopilkaError as error:
                refused.append(error.code)
                if closed.is_set():
                    return
            except BaseException as error:
                odd.append(error)
                return

    writers = [
        threading.Thread(target=deposit_until_closed, args=(n,), daemon=True) for n in range(8)
    ]
    for writer in writers:
        writer.start()
    time.sleep(0.5)
    bank.close()
    closed.set()
    for writer in writers:
        writer.join(timeout=10)
    assert not any(writer.is_alive() for writer in writers), "a call waits for ever"
    assert not odd, odd
    assert set(refused) == {"client_closed"}
    with EmbeddedBank(path) as again:
        assert again.account("Ann").balance_cents == 1 + len(acknowledged)


async def test_batch_waits_for_a_write_lock_held_elsewhere(tmp_path: Path) -> None:
    """Another process's write transaction makes a batch wait (on the writer thread,
    not the event loop), then apply once the lock is free."""
    path = tmp_path / "kopilka.db"
    engine = await open_engine(path)
    try:
        await open_hot_accounts(engine)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        pending = asyncio.ensure_future(engine.execute(Deposit("Bob", 100, "d", "locked-1")))
        started = time.monotonic()
        await asyncio.sleep(0.2)
        # The loop went on (far sooner than the 10 s busy timeout) while the batch waits.
        assert time.monotonic() - started < 5
        assert not pending.done()
        other.execute("ROLLBACK")
        other.close()
        outcome = await asyncio.wait_for(pending, 10)
        assert isinstance(outcome, Operation)
        account = await engine.get_account("main", "Bob")
        assert account.balance_cents == 5_000 + 100
    finally:
        await engine.close()


async def test_commits_leave_the_event_loop_while_the_disk_is_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While COMMITs take longer than the bound on average, they go to the writer thread,
    so the event loop does not stall on the disk; once they are fast, the loop commits."""
    store = sqlite_store.SqliteStore(tmp_path / "kopilka.db")
    await store.open()
    committed_on: list[str] = []

    def trace(sql: str) -> None:
        if sql == "COMMIT":
            committed_on.append(threading.current_thread().name)

    try:
        await store._write(lambda: store._db.set_trace_callback(trace))
        # A bound of a nanosecond: every real COMMIT is slow against it.
        monkeypatch.setattr(sqlite_store, "LOOP_COMMIT_SECONDS_MAX", 1e-9)
        await store.apply([OpenAccount("Ann")])  # nothing measured yet: on the loop
        await store.apply([Deposit("Ann", 100, "d", "slow-1")])
        await store.apply([Deposit("Ann", 200, "d", "slow-2")])
        monkeypatch.setattr(sqlite_store, "LOOP_COMMIT_SECONDS_MAX", 60.0)  # a fast disk
        await store.apply([Deposit("Ann", 300, "d", "slow-3")])
        loop_thread = threading.current_thread().name
        assert committed_on[0] == loop_thread
        assert committed_on[1].startswith("kopilka-sqlite-writer")
        assert committed_on[2].startswith("kopilka-sqlite-writer")
        assert committed_on[3] == loop_thread
        account = await store.get_account("main", "Ann")
        assert account is not None and account.balance_cents == 600
    finally:
        await store.close()


async def test_a_cancelled_caller_does_not_leave_a_batch_half_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling the caller while its batch commits on the writer thread (as while the
    disk is slow) neither loses nor repeats it, and the next batch runs normally."""
    monkeypatch.setattr(sqlite_store, "LOOP_COMMIT_SECONDS_MAX", -1.0)  # all on the thread
    path = tmp_path / "kopilka.db"
    store = open_store(str(path))
    await store.open()
    try:
        await store.apply([OpenAccount("Ann")])
        task = asyncio.ensure_future(store.apply([Deposit("Ann", 700, "d", "cancel-1")]))
        await asyncio.sleep(0)  # the batch is written; its COMMIT is on the writer thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (after,) = await store.apply([Deposit("Ann", 5, "d", "cancel-2")])
        assert isinstance(after, Operation)
        # Either the cancelled deposit committed or it did not; nothing in between,
        # and a retry of its key applies it at most once.
        (retried,) = await store.apply([Deposit("Ann", 700, "d", "cancel-1")])
        assert isinstance(retried, Operation)
        account = await store.get_account("main", "Ann")
        assert account is not None and account.balance_cents == 705
    finally:
        await store.close()


@pytest.mark.parametrize("seconds", [0, -1, float("inf"), float("nan"), "5", True])
def test_a_time_bound_that_is_no_positive_number_of_seconds_is_refused(
    tmp_path: Path, seconds: object
) -> None:
    """Refused in one line, as the client and the embedded bank alike: not a socket's
    own error at the first call, a wait that never ends, or one that never begins."""
    with pytest.raises(InvalidInput) as refused:
        Client("http://127.0.0.1:9", "kop_x_y", timeout_seconds=seconds)  # type: ignore[arg-type]
    assert refused.value.code == "invalid_timeout"
    with EmbeddedBank(str(tmp_path / "kopilka.db")) as bank:
        with pytest.raises(InvalidInput) as refused:
            bank.accounts(wait_seconds=seconds)  # type: ignore[arg-type]
        assert refused.value.message.startswith("wait_seconds must be a positive number")
        assert bank.accounts(wait_seconds=5) == []


async def test_a_cancelled_callers_pieces_that_fail_leave_no_error_unretrieved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A long request's caller cancelled while its first piece is written: when that
    piece fails, so do the pieces after it, and their errors, which no one will await,
    are taken, not logged at exit as "never retrieved" (each with its traceback held)."""
    monkeypatch.setattr(sqlite_store, "LOOP_COMMIT_SECONDS_MAX", -1.0)  # all on the thread
    path = tmp_path / "kopilka.db"
    engine = await open_engine(path, Limits(batch_operations_max=2))
    try:
        await engine.submit_many([OpenAccount("Ann")])
        with sqlite3.connect(path) as database:  # a database that fails one write
            database.execute(
                "CREATE TRIGGER refuse_the_first BEFORE INSERT ON operations"
                " WHEN NEW.description = 'first' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        texts = ("first", "second", "third", "fourth", "fifth", "sixth")
        deposits = [Deposit("Ann", 100, text, f"piece-{text}") for text in texts]
        caller = asyncio.ensure_future(engine.submit_many(deposits))
        for _ in range(3):  # the first piece reaches the writer thread
            await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        (after,) = await engine.submit_many([Deposit("Ann", 5, "after", "after-1")])
        assert isinstance(after, Operation)  # the failed pieces are behind us
        account = await engine.get_account("main", "Ann")
        assert account is not None and account.balance_cents == 5
    finally:
        await engine.close()
    del caller
    gc.collect()
    await asyncio.sleep(0)
    lost = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
    assert lost == []


async def test_batches_the_writer_thread_applies_leave_nothing_for_the_collector(
    tmp_path: Path,
) -> None:
    """The server keeps young collections rare (collector.py): a batch too big for the
    event loop, applied on the writer thread, is freed as it ends, not left in
    reference cycles for the collector."""
    engine = await open_engine(tmp_path / "kopilka.db")
    size = sqlite_store.INLINE_COMMANDS_MAX + 1
    try:
        await engine.submit_many([Deposit("Ann", 1, "pay", f"w{n}") for n in range(size)])
        with objects_left_in_cycles() as left:
            for batch in range(20):
                deposits = [Deposit("Ann", 1, "pay", f"k{batch}-{n}") for n in range(size)]
                await engine.submit_many(deposits)
        assert (await engine.get_account("main", "Ann")).balance_cents == 21 * size
    finally:
        await engine.close()
    assert left == []
