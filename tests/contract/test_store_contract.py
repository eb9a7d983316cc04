"""The store contract: every backend passes the same suite, through the engine and directly."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from tests.contract.conftest import Backend

from kopilka.clock import MonotonicClock
from kopilka.domain.model import (
    Account,
    ClaimKey,
    Command,
    Deposit,
    OpenAccount,
    Operation,
    Outcome,
    SetLimits,
    Transfer,
    Withdraw,
)
from kopilka.domain.statement import StatementLine
from kopilka.engine import Engine
from kopilka.errors import KopilkaError, Rejected
from kopilka.limits import Limits
from kopilka.money import AMOUNT_CENTS_MAX, BALANCE_CENTS_MAX
from kopilka.tokens import TokenRecord, hash_secret

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
JOHN = "John Jones"
JANE = "Jane Doe"


async def applied(engine: Engine, command: Command) -> Operation:
    outcome = await engine.execute(command)
    assert isinstance(outcome, Operation), outcome
    return outcome


async def refused(engine: Engine, command: Command, code: str) -> KopilkaError:
    outcome = await engine.execute(command)
    assert isinstance(outcome, KopilkaError), outcome
    assert outcome.code == code, outcome
    return outcome


async def balance(engine: Engine, client: str, ledger: str = "main") -> int:
    return (await engine.get_account(ledger, client)).balance_cents


async def lines_of(engine: Engine, client: str, ledger: str = "main") -> list[StatementLine]:
    statement = await engine.statement(ledger, client, None, FAR_FUTURE)
    return list(statement.lines)


def codes(outcomes: list[Outcome]) -> list[str]:
    return ["ok" if not isinstance(o, KopilkaError) else o.code for o in outcomes]


@contextlib.asynccontextmanager
async def two_processes(backend: Backend) -> AsyncIterator[tuple[Engine, Engine]]:
    """Two engines on one database, as two server processes are; not for a memory store,
    which is one process's own."""
    if not backend.durable:
        pytest.skip("a memory store is one process's own")
    first, second = await backend.start_engine(), await backend.start_engine()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


# -- money commands ---------------------------------------------------------------------


async def test_deposit_opens_account(engine: Engine) -> None:
    assert await engine.store.get_account("main", JOHN) is None
    operation = await applied(engine, Deposit(JOHN, 10_000, "ATM Deposit", "d1"))
    assert operation.id > 0
    assert not operation.replayed
    assert operation.credit_balance_after_cents == 10_000
    account = await engine.get_account("main", JOHN)
    assert account.id > 0
    assert (account.balance_cents, account.min_balance_cents, account.max_balance_cents) == (
        10_000,
        0,
        None,
    )


async def test_unknown_client_not_found(engine: Engine) -> None:
    with pytest.raises(KopilkaError) as info:
        await engine.get_account("main", "Nobody")
    assert info.value.code == "account_not_found"
    await refused(engine, Withdraw("Nobody", 1, "x", "w"), "account_not_found")
    await refused(engine, Deposit("Nobody", 1, "x", "d", open_account=False), "account_not_found")
    assert await engine.store.get_account("main", "Nobody") is None
    # The same deposit asking to open the account is another request under that key.
    await refused(
        engine, Deposit("Nobody", 1, "x", "d", open_account=True), "idempotency_key_reused"
    )
    await refused(engine, Deposit("Nobody", 1, "x", "d", open_account=False), "account_not_found")
    assert await engine.store.get_account("main", "Nobody") is None


async def test_withdraw_and_transfer(engine: Engine) -> None:
    await applied(engine, Deposit(JOHN, 10_000, "pay", "d1"))
    await applied(engine, Deposit(JANE, 1, "open", "d2"))
    withdrawal = await applied(engine, Withdraw(JOHN, 2_500, "ATM", "w1"))
    assert withdrawal.debit_balance_after_cents == 7_500
    transfer = await applied(engine, Transfer(JOHN, JANE, 7_500, "rent", "t1"))
    assert transfer.kind == "transfer"
    assert (transfer.debit_balance_after_cents, transfer.credit_balance_after_cents) == (0, 7_501)
    assert (await balance(engine, JOHN), await balance(engine, JANE)) == (0, 7_501)


async def test_floor_enforced_and_refusal_changes_nothing(engine: Engine) -> None:
    opened = await engine.execute(OpenAccount(JOHN, min_balance_cents=-5_000))
    assert isinstance(opened, Account)
    assert opened.id > 0
    await applied(engine, Deposit(JANE, 100, "open", "d0"))
    await applied(engine, Withdraw(JOHN, 4_000, "overdraft", "w1"))
    error = await refused(engine, Withdraw(JOHN, 1_001, "too far", "w2"), "insufficient_funds")
    assert "$10.00 available" in error.message
    await refused(engine, Transfer(JOHN, JANE, 1_001, "too far", "t1"), "insufficient_funds")
    assert await balance(engine, JOHN) == -4_000
    assert await balance(engine, JANE) == 100
    assert [line.amount_cents for line in await lines_of(engine, JOHN)] == [-4_000]
    await applied(engine, Withdraw(JOHN, 1_000, "to the floor", "w3"))
    assert await balance(engine, JOHN) == -5_000


async def test_cap_enforced_and_refusal_changes_nothing(engine: Engine) -> None:
    await engine.execute(OpenAccount(JANE, max_balance_cents=10_000))
    await applied(engine, Deposit(JOHN, 50_000, "pay", "d0"))
    await applied(engine, Deposit(JANE, 6_000, "pay", "d1"))
    error = await refused(engine, Deposit(JANE, 4_001, "too much", "d2"), "cap_exceeded")
    assert "$100.00" in error.message
    await refused(engine, Transfer(JOHN, JANE, 4_001, "too much", "t1"), "cap_exceeded")
    assert (await balance(engine, JOHN), await balance(engine, JANE)) == (50_000, 6_000)
    await applied(engine, Transfer(JOHN, JANE, 4_000, "to the cap", "t2"))
    assert (await balance(engine, JOHN), await balance(engine, JANE)) == (46_000, 10_000)


async def test_a_balance_stops_at_the_banks_largest(engine: Engine) -> None:
    """Without a cap, deposits stop at BALANCE_CENTS_MAX, refused one by one: no store error."""
    deposits = [
        Deposit(JOHN, AMOUNT_CENTS_MAX, "big", f"big-{n}", open_account=True)
        for n in range(BALANCE_CENTS_MAX // AMOUNT_CENTS_MAX + 1)
    ]
    outcomes = await engine.submit_many(deposits)
    assert codes(outcomes) == ["ok"] * (len(deposits) - 1) + ["cap_exceeded"]
    assert await balance(engine, JOHN) == BALANCE_CENTS_MAX
    await refused(engine, Deposit(JOHN, 1, "one more", "over"), "cap_exceeded")
    assert await balance(engine, JOHN) == BALANCE_CENTS_MAX


async def test_open_account_with_an_opening_balance_is_one_step(engine: Engine) -> None:
    opened = await engine.execute(OpenAccount(JOHN, 2_000, 9_000, "main", 5_000, "open-john"))
    assert isinstance(opened, Account)
    assert (opened.balance_cents, opened.min_balance_cents, opened.max_balance_cents) == (
        5_000,
        2_000,
        9_000,
    )
    account = await engine.get_account("main", JOHN)
    assert (account.balance_cents, account.min_balance_cents) == (5_000, 2_000)
    (line,) = await lines_of(engine, JOHN)
    assert (line.description, line.amount_cents, line.balance_after_cents) == (
        "Opening balance",
        5_000,
        5_000,
    )
    # Repeated (a retried add-user): the account is there, nothing is applied again.
    await refused(
        engine, OpenAccount(JOHN, 2_000, 9_000, "main", 5_000, "open-john"), "account_exists"
    )
    assert await balance(engine, JOHN) == 5_000


async def test_a_refused_opening_creates_nothing(engine: Engine) -> None:
    await applied(engine, Deposit(JANE, 100, "pay", "used-key"))
    refusals = {
        OpenAccount(JOHN, 2_000, None, "main", 1_999, "k1"): "floor_above_balance",
        OpenAccount(JOHN, 0, 1_000, "main", 1_001, "k2"): "cap_below_balance",
        OpenAccount(JOHN, 0, None, "main", 500, "used-key"): "idempotency_key_reused",
        OpenAccount(JOHN, 0, None, "main", 500, ""): "invalid_idempotency_key",
        OpenAccount(JOHN, 0, None, "main", -1, "k3"): "invalid_amount",
    }
    for command, code in refusals.items():
        await refused(engine, command, code)
    assert await engine.store.get_account("main", JOHN) is None
    assert await balance(engine, JANE) == 100


async def test_open_account_exists(engine: Engine) -> None:
    first = await engine.execute(OpenAccount(JOHN, -100, 500))
    assert isinstance(first, Account)
    assert (first.min_balance_cents, first.max_balance_cents) == (-100, 500)
    await refused(engine, OpenAccount(JOHN), "account_exists")
    account = await engine.get_account("main", JOHN)
    assert account.id == first.id
    assert (account.min_balance_cents, account.max_balance_cents) == (-100, 500)


async def test_no_new_account_is_named_as_another_but_for_case(engine: Engine) -> None:
    await applied(engine, Deposit(JOHN, 100, "pay", "d1"))
    await applied(engine, Deposit("Straße", 100, "pay", "d2"))
    message = "a new client's name may not differ from another client's, 'John Jones', only in"
    for command in (
        Deposit("john jones", 5, "pay", "d3"),
        OpenAccount("JOHN JONES", 0, None, "main", 500, "k1"),
    ):
        refusal = await refused(engine, command, "invalid_client")
        assert refusal.message.startswith(message), refusal
    # Full case folding: "STRASSE" is "Straße" but for case.
    await refused(engine, Deposit("STRASSE", 5, "pay", "d4"), "invalid_client")
    # In one batch, the later of two alike.
    outcomes = await engine.store.apply(
        [Deposit("Ann Lee", 5, "pay", "d5"), Deposit("ANN LEE", 5, "pay", "d6")]
    )
    assert codes(outcomes) == ["ok", "invalid_client"]
    # Nothing else was opened, the names themselves go on as they were, and so do names
    # alike but for case in another ledger.
    accounts = await engine.store.list_accounts("main")
    assert [a.client for a in accounts] == ["Ann Lee", JOHN, "Straße"]
    await applied(engine, Deposit(JOHN, 5, "pay", "d7"))
    assert await balance(engine, JOHN) == 105
    await applied(engine, Deposit("john jones", 5, "pay", "d8", ledger="side"))


async def test_no_new_account_is_named_in_letters_drawn_like_anothers(engine: Engine) -> None:
    """Cyrillic "Јое" lists as "Joe": a deposit to it would open a second account that a
    teller could not tell from the first. Refused either way round, in one batch too, and
    what is alike but for case as well ("ЈОЕ"); a lookup is told which account there is."""
    await applied(engine, Deposit("Joe", 100, "pay", "d1"))
    await applied(engine, Deposit("Иван", 100, "pay", "d2"))  # no Latin lookalike: "Ivan" too
    await applied(engine, Deposit("Ivan", 100, "pay", "d3"))
    await applied(engine, Deposit("עידו לוי", 100, "pay", "d3a"))
    await applied(engine, Deposit("עידן לוי", 100, "pay", "d3b"))  # Ido, Idan: two people
    for name, key in (("Јое", "d4"), ("ЈОЕ", "d5")):
        refusal = await refused(engine, Deposit(name, 5, "pay", key), "invalid_client")
        assert refusal.message == (
            "a new client's name may not look like another client's, 'Joe': drawn with"
            f" letters alike, it would list as that name: '{name}'"
        )
    await applied(engine, Deposit("Нора", 100, "pay", "d6"))
    await refused(engine, Deposit("Hopa", 5, "pay", "d7"), "invalid_client")
    outcomes = await engine.store.apply(
        [Deposit("Рере", 5, "pay", "d8"), Deposit("Pepe", 5, "pay", "d9")]
    )
    assert codes(outcomes) == ["ok", "invalid_client"]
    assert await engine.store.namesake("main", "Јое") == "Joe"
    with pytest.raises(KopilkaError) as looked_up:
        await engine.get_account("main", "Јое")
    assert looked_up.value.message == (
        "no account for client 'Јое'; 'Joe' has one, a name that looks the same (letters"
        " drawn alike)"
    )
    accounts = await engine.store.list_accounts("main")
    assert sorted(a.client for a in accounts) == sorted(
        ["Joe", "Иван", "Ivan", "Нора", "Рере", "עידו לוי", "עידן לוי"]
    )


async def test_a_name_alike_but_for_case_is_told_of_its_namesake(engine: Engine) -> None:
    await applied(engine, Deposit(JOHN, 100, "pay", "d1"))
    await applied(engine, Deposit("Straße", 100, "pay", "d2"))
    store = engine.store
    assert await store.namesake("main", "JOHN JONES") == JOHN
    assert await store.namesake("main", JOHN) == JOHN
    assert await store.namesake("main", "strasse") == "Straße"
    assert await store.namesake("main", "Jane") is None
    assert await store.namesake("side", "john jones") is None
    # A lookup by name says which account there is; a money command's refusal does not.
    with pytest.raises(KopilkaError) as looked_up:
        await engine.get_account("main", "john jones")
    assert (looked_up.value.code, looked_up.value.message) == (
        "account_not_found",
        "no account for client 'john jones'; 'John Jones' has one, a name that differs only"
        " in case",
    )
    refusal = await refused(engine, Withdraw("john jones", 1, "x", "w1"), "account_not_found")
    assert refusal.message == "no account for client 'john jones'"


async def test_a_dropped_ledger_leaves_its_names_free(engine: Engine) -> None:
    now = datetime.now(UTC)
    assert await engine.store.open_sandbox("sandbox-x", now, sandboxes_max=5)
    await applied(engine, Deposit(JOHN, 100, "pay", "d1", ledger="sandbox-x"))
    assert await engine.store.drop_sandbox("sandbox-x")
    assert await engine.store.open_sandbox("sandbox-x", now, sandboxes_max=5)
    await applied(engine, Deposit("john jones", 100, "pay", "d1", ledger="sandbox-x"))


# -- idempotency --------------------------------------------------------------------------


async def test_replay_returns_first_result_and_applies_once(engine: Engine) -> None:
    command = Deposit(JOHN, 10_000, "pay", "key-1")
    first = await applied(engine, command)
    await applied(engine, Deposit(JOHN, 5, "later", "key-2"))
    again = await applied(engine, command)
    assert again.replayed
    assert again.id == first.id
    assert again.credit_balance_after_cents == first.credit_balance_after_cents == 10_000
    assert again.created_at == first.created_at
    assert await balance(engine, JOHN) == 10_005
    assert len(await lines_of(engine, JOHN)) == 2


async def test_an_answer_its_caller_changes_changes_nothing_kept(engine: Engine) -> None:
    """The memory store kept the very object it answered with: a program that changed it
    (an embedding one) had its honest retry refused as another request under the key."""
    command = Deposit(JOHN, 10_000, "pay", "key-1")
    first = await applied(engine, command)
    first.amount_cents, first.credit_balance_after_cents = 1, 1
    again = await applied(engine, command)
    assert again.replayed
    assert (again.amount_cents, again.credit_balance_after_cents) == (10_000, 10_000)


async def test_replay_wins_over_a_refusal(engine: Engine) -> None:
    await applied(engine, Deposit(JOHN, 10_000, "pay", "d1"))
    withdrawal = Withdraw(JOHN, 10_000, "all of it", "w1")
    first = await applied(engine, withdrawal)
    retried = await engine.execute(withdrawal)  # a client retrying after a lost answer
    assert isinstance(retried, Operation), retried
    assert retried.replayed
    assert retried.id == first.id
    assert await balance(engine, JOHN) == 0


async def test_reused_key_conflicts_even_when_refused(engine: Engine) -> None:
    await applied(engine, Deposit(JOHN, 10_000, "pay", "d1"))
    await applied(engine, Withdraw(JOHN, 10_000, "all of it", "w1"))
    await refused(engine, Withdraw(JOHN, 5_000, "half", "w1"), "idempotency_key_reused")


async def test_key_reused_with_different_params_conflicts(engine: Engine) -> None:
    await applied(engine, Deposit(JOHN, 10_000, "pay", "key"))
    error = await refused(engine, Deposit(JOHN, 20_000, "pay", "key"), "idempotency_key_reused")
    assert error.http_status == 409
    await refused(engine, Withdraw(JOHN, 10_000, "pay", "key"), "idempotency_key_reused")
    assert await balance(engine, JOHN) == 10_000


async def test_a_refused_key_repeats_its_refusal(engine: Engine) -> None:
    """A retry gets the first answer, a refusal too: never applied later by surprise."""
    await applied(engine, Deposit(JOHN, 100, "pay", "d1"))
    first = await refused(engine, Withdraw(JOHN, 500, "cash", "w1"), "insufficient_funds")
    await applied(engine, Deposit(JOHN, 100, "pay", "d2"))
    still = await refused(engine, Withdraw(JOHN, 500, "cash", "w1"), "insufficient_funds")
    assert still.message == first.message  # not "$2.00 available": the first answer
    await applied(engine, Deposit(JOHN, 300, "pay", "d2b"))
    again = await refused(engine, Withdraw(JOHN, 500, "cash", "w1"), "insufficient_funds")
    assert again.message == first.message  # the first answer, word for word
    await refused(engine, Withdraw(JOHN, 400, "cash", "w1"), "idempotency_key_reused")
    await refused(engine, Transfer(JOHN, "Nobody", 1, "gift", "t1"), "account_not_found")
    await applied(engine, Deposit("Nobody", 1, "open", "d3"))
    await refused(engine, Transfer(JOHN, "Nobody", 1, "gift", "t1"), "account_not_found")
    # In one batch, after a refusal kept in that batch, the same key is refused alike.
    twice = await engine.submit_many(
        [Withdraw(JOHN, 9_999, "big", "w2"), Withdraw(JOHN, 9_999, "big", "w2")]
    )
    assert codes(twice) == ["insufficient_funds", "insufficient_funds"]
    assert await balance(engine, JOHN) == 500


async def test_a_kept_refusal_goes_with_its_ledger(engine: Engine) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert await engine.store.open_sandbox("sandbox-x", now, sandboxes_max=5)
    await applied(engine, Deposit(JOHN, 100, "pay", "d1", ledger="sandbox-x"))
    await refused(engine, Withdraw(JOHN, 500, "cash", "w1", "sandbox-x"), "insufficient_funds")
    assert await engine.store.drop_sandbox("sandbox-x")
    assert await engine.store.open_sandbox("sandbox-x", now, sandboxes_max=5)
    await applied(engine, Deposit(JOHN, 600, "pay", "d1", ledger="sandbox-x"))
    await applied(engine, Withdraw(JOHN, 500, "cash", "w1", "sandbox-x"))


async def test_in_batch_duplicate_keys(engine: Engine) -> None:
    command = Deposit(JOHN, 700, "pay", "dup")
    outcomes = await engine.submit_many([command, Deposit(JOHN, 1, "x", "other"), command])
    first, _, again = outcomes
    assert isinstance(first, Operation)
    assert isinstance(again, Operation)
    assert not first.replayed
    assert again.replayed
    assert again.id == first.id > 0
    assert await balance(engine, JOHN) == 701


async def test_batch_mixes_replays_new_work_and_conflicts(engine: Engine) -> None:
    old = await applied(engine, Deposit(JOHN, 1_000, "pay", "old"))
    outcomes = await engine.store.apply(
        [
            Deposit(JANE, 50, "new", "new-1"),
            Deposit(JOHN, 1_000, "pay", "old"),
            Deposit(JOHN, 999, "pay", "old"),
            Transfer(JOHN, JANE, 300, "rent", "new-2"),
        ]
    )
    assert codes(outcomes) == ["ok", "ok", "idempotency_key_reused", "ok"]
    replay = outcomes[1]
    assert isinstance(replay, Operation)
    assert replay.replayed
    assert replay.id == old.id
    assert (await balance(engine, JOHN), await balance(engine, JANE)) == (700, 350)


async def test_batch_with_mixed_successes_and_failures(engine: Engine) -> None:
    await engine.execute(OpenAccount(JANE, max_balance_cents=1_000))
    commands: list[Command] = [
        Deposit(JOHN, 5_000, "pay", "b1"),
        Withdraw(JOHN, 6_000, "too much", "b2"),
        Transfer(JOHN, JANE, 2_000, "over cap", "b3"),
        Transfer(JOHN, JANE, 1_000, "rent", "b4"),
        Transfer(JOHN, "Nobody", 1, "lost", "b5"),
        Deposit("", 1, "no name", "b6"),
        Withdraw(JOHN, 4_000, "rest", "b7"),
    ]
    outcomes = await engine.submit_many(commands)
    assert codes(outcomes) == [
        "ok",
        "insufficient_funds",
        "cap_exceeded",
        "ok",
        "account_not_found",
        "invalid_client",
        "ok",
    ]
    assert (await balance(engine, JOHN), await balance(engine, JANE)) == (0, 1_000)
    assert [line.balance_after_cents for line in await lines_of(engine, JOHN)] == [
        5_000,
        4_000,
        0,
    ]


async def test_concurrent_transfers_over_hot_accounts(engine: Engine) -> None:
    limits = {"Ann": (-3_000, None), "Bob": (0, 12_000), "Cid": (0, 9_000)}
    await engine.submit_many(
        [OpenAccount(client, floor, cap) for client, (floor, cap) in limits.items()]
        + [Deposit(client, 6_000, "opening", f"open-{client}") for client in limits]
    )

    async def worker(number: int) -> list[Outcome]:
        names = list(limits)
        outcomes: list[Outcome] = []
        for step in range(8):
            source = names[(number + step) % 3]
            target = names[(number + step + 1 + step % 2) % 3]
            amount = (1, 2_000, 4_500)[(number * 7 + step) % 3]
            command = Transfer(source, target, amount, "hot", f"w{number}-{step}")
            outcomes.append(await engine.execute(command))
        return outcomes

    results = await asyncio.gather(*(worker(number) for number in range(32)))
    outcomes = [outcome for batch in results for outcome in batch]
    assert set(codes(outcomes)) <= {"ok", "insufficient_funds", "cap_exceeded"}
    assert "ok" in codes(outcomes)
    assert "insufficient_funds" in codes(outcomes)
    accounts = await engine.list_accounts("main")
    assert sum(a.balance_cents for a in accounts) == 18_000
    transfer_lines = 0
    for account in accounts:
        floor, cap = limits[account.client]
        assert account.balance_cents >= floor
        assert cap is None or account.balance_cents <= cap
        lines = await lines_of(engine, account.client)
        running = 0
        for line in lines:
            running += line.amount_cents
            assert line.balance_after_cents == running
        assert running == account.balance_cents
        transfer_lines += sum(1 for line in lines if line.kind == "transfer")
    assert transfer_lines == 2 * codes(outcomes).count("ok")


async def test_store_apply_directly(backend: Backend) -> None:
    store = backend.open()
    await store.open()
    try:
        outcomes = await store.apply(
            [Deposit(JOHN, 100, "a", "k1"), Withdraw(JOHN, 100, "b", "k2"), OpenAccount(JANE)]
        )
        assert codes(outcomes) == ["ok", "ok", "ok"]
        assert all(o.id > 0 for o in outcomes)  # type: ignore[union-attr]
        account = await store.get_account("main", JOHN)
        assert account is not None
        assert account.balance_cents == 0
    finally:
        await store.close()


# -- statements -------------------------------------------------------------------------


async def test_statement_period_opening_balance_and_running_balances(engine: Engine) -> None:
    first = await applied(engine, Deposit(JOHN, 10_000, "ATM Deposit", "s1"))
    second = await applied(engine, Withdraw(JOHN, 3_000, "ATM Withdrawal", "s2"))
    third = await applied(engine, Deposit(JOHN, 5_000, "Salary", "s3"))
    await applied(engine, Withdraw(JOHN, 2_000, "Groceries", "s4"))
    assert first.created_at < second.created_at < third.created_at

    statement = await engine.statement("main", JOHN, second.created_at, third.created_at)
    assert statement.opening_balance_cents == 10_000
    assert [line.description for line in statement.lines] == ["ATM Withdrawal", "Salary"]
    assert [line.amount_cents for line in statement.lines] == [-3_000, 5_000]
    assert [line.balance_after_cents for line in statement.lines] == [7_000, 12_000]
    assert [line.created_at for line in statement.lines] == [second.created_at, third.created_at]
    assert (statement.withdrawals_cents, statement.deposits_cents) == (3_000, 5_000)
    assert statement.closing_balance_cents == 12_000

    whole = await engine.statement("main", JOHN, None, FAR_FUTURE)
    assert whole.opening_balance_cents == 0
    assert [line.balance_after_cents for line in whole.lines] == [10_000, 7_000, 12_000, 10_000]
    assert whole.closing_balance_cents == await balance(engine, JOHN)


async def test_last_entry_is_the_balance_just_before(engine: Engine) -> None:
    first = await applied(engine, Deposit(JOHN, 10_000, "a", "o1"))
    second = await applied(engine, Withdraw(JOHN, 4_000, "b", "o2"))
    account = await engine.get_account("main", JOHN)
    store = engine.store
    assert await store.last_entry(account.id, first.created_at) is None
    before_second = await store.last_entry(account.id, second.created_at)
    assert before_second is not None
    assert (before_second.created_at, before_second.balance_after_cents) == (
        first.created_at,
        10_000,
    )
    just_after = await store.last_entry(account.id, second.created_at + timedelta(microseconds=1))
    latest = await store.last_entry(account.id, FAR_FUTURE)
    assert latest is not None and latest == just_after
    assert (latest.created_at, latest.balance_after_cents) == (second.created_at, 6_000)
    assert latest.entry_id > before_second.entry_id


async def test_empty_period_still_has_opening_and_closing(engine: Engine) -> None:
    operation = await applied(engine, Deposit(JOHN, 2_500, "a", "e1"))
    later = operation.created_at + timedelta(days=1)
    statement = await engine.statement("main", JOHN, later, later + timedelta(days=1))
    assert list(statement.lines) == []
    assert statement.opening_balance_cents == statement.closing_balance_cents == 2_500
    earlier = await engine.statement(
        "main",
        JOHN,
        operation.created_at - timedelta(days=2),
        operation.created_at - timedelta(days=1),
    )
    assert list(earlier.lines) == []
    assert earlier.opening_balance_cents == earlier.closing_balance_cents == 0


async def test_a_period_from_the_calendars_first_day_to_its_last(engine: Engine) -> None:
    """Year 1 east of UTC and 9999 west of it are no moments UTC can hold: PostgreSQL's
    driver failed on them (a DataError); the period runs to the calendar's ends."""
    await applied(engine, Deposit(JOHN, 2_500, "a", "c1"))
    first = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    last = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
    statement = await engine.statement("main", JOHN, first, last)
    assert [line.amount_cents for line in statement.lines] == [2_500]
    assert statement.opening_balance_cents == 0


async def test_since_after_till_refused(engine: Engine) -> None:
    await applied(engine, Deposit(JOHN, 1, "a", "p1"))
    with pytest.raises(KopilkaError) as info:
        await engine.statement("main", JOHN, FAR_FUTURE, FAR_FUTURE - timedelta(seconds=1))
    assert info.value.code == "invalid_period"


async def test_lines_of_one_batch_keep_their_order(engine: Engine) -> None:
    outcomes = await engine.submit_many(
        [
            Deposit(JOHN, 10_000, "one", "b1"),
            Withdraw(JOHN, 3_000, "two", "b2"),
            Deposit(JOHN, 500, "three", "b3"),
            Withdraw(JOHN, 7_500, "four", "b4"),
        ]
    )
    assert codes(outcomes) == ["ok"] * 4
    lines = await lines_of(engine, JOHN)
    assert [line.description for line in lines] == ["one", "two", "three", "four"]
    assert [line.balance_after_cents for line in lines] == [10_000, 7_000, 7_500, 0]
    assert [line.entry_id for line in lines] == sorted({line.entry_id for line in lines})


async def test_statement_page_after_a_place_in_time_and_id_order(engine: Engine) -> None:
    """Each page from the last line's (time, id): a batch's lines share one time, so a
    page may end inside it, and the next goes on from that line, not from its time."""
    await engine.submit_many([Deposit(JOHN, 100 + n, f"d{n}", f"k{n}") for n in range(5)])
    await engine.submit_many([Deposit(JOHN, 200 + n, f"e{n}", f"j{n}") for n in range(4)])
    account = await engine.get_account("main", JOHN)
    everything = await engine.store.statement_page(account.id, None, FAR_FUTURE, 0, 1_000)
    assert len(everything) == 9
    pages: list[list[StatementLine]] = []
    since, after = None, 0
    while True:
        page = await engine.store.statement_page(account.id, since, FAR_FUTURE, after, 2)
        if not page:
            break
        assert len(page) <= 2
        pages.append(page)
        since, after = page[-1].created_at, page[-1].entry_id
    assert [line for page in pages for line in page] == everything
    assert len(pages) == 5
    # From a time alone (no entry id), every line of that time is in.
    second = everything[5].created_at
    from_the_second = await engine.store.statement_page(account.id, second, FAR_FUTURE, 0, 100)
    assert from_the_second == [line for line in everything if line.created_at >= second]


async def test_engine_statement_reads_many_pages(backend: Backend) -> None:
    engine = await backend.start_engine(Limits(statement_page_rows=3))
    try:
        await engine.submit_many([Deposit(JOHN, 10, f"d{n}", f"k{n}") for n in range(10)])
        statement = await engine.statement("main", JOHN, None, FAR_FUTURE)
        assert [line.balance_after_cents for line in statement.lines] == list(range(10, 101, 10))
    finally:
        await engine.close()


async def test_transfer_lines_name_the_counterparty(engine: Engine) -> None:
    await applied(engine, Deposit(JOHN, 10_000, "pay", "d1"))
    await applied(engine, Deposit(JANE, 1, "open", "d2"))
    await applied(engine, Transfer(JOHN, JANE, 2_500, "rent", "t1"))
    await applied(engine, Transfer(JANE, JOHN, 500, "", "t2"))
    john = await lines_of(engine, JOHN)
    jane = await lines_of(engine, JANE)
    assert [line.text for line in john] == [
        "pay",
        "Transfer to Jane Doe: rent",
        "Transfer from Jane Doe",
    ]
    assert [line.text for line in jane] == [
        "open",
        "Transfer from John Jones: rent",
        "Transfer to John Jones",
    ]
    assert john[1].counterparty == JANE
    assert jane[1].counterparty == JOHN
    assert (john[1].amount_cents, jane[1].amount_cents) == (-2_500, 2_500)


async def test_a_line_names_the_operation_its_caller_was_given(engine: Engine) -> None:
    pay = await applied(engine, Deposit(JOHN, 10_000, "pay", "d1"))
    opened = await applied(engine, Deposit(JANE, 1, "open", "d2"))
    rent = await applied(engine, Transfer(JOHN, JANE, 2_500, "rent", "t1"))
    john = await lines_of(engine, JOHN)
    jane = await lines_of(engine, JANE)
    assert [line.operation_id for line in john] == [pay.id, rent.id]
    assert [line.operation_id for line in jane] == [opened.id, rent.id]


# -- accounts and limits ------------------------------------------------------------------


async def test_list_accounts_keyset_paging(engine: Engine) -> None:
    names = ["Eve", "Ann", "Dora", "Carl", "Bob"]
    await engine.submit_many([OpenAccount(name) for name in names])
    await engine.execute(OpenAccount("Zed", ledger="elsewhere"))
    every = await engine.list_accounts("main")
    assert [a.client for a in every] == sorted(names)
    pages: list[list[str]] = []
    after: str | None = None
    while page := await engine.list_accounts("main", after_client=after, limit=2):
        pages.append([a.client for a in page])
        after = page[-1].client
    assert pages == [["Ann", "Bob"], ["Carl", "Dora"], ["Eve"]]
    assert await engine.list_accounts("main", after_client="Eve") == []


async def test_set_limits(engine: Engine) -> None:
    await applied(engine, Deposit(JOHN, 5_000, "pay", "d1"))
    changed = await engine.execute(
        SetLimits(JOHN, min_balance_cents=-1_000, max_balance_cents=8_000)
    )
    assert isinstance(changed, Account)
    assert (changed.min_balance_cents, changed.max_balance_cents) == (-1_000, 8_000)
    account = await engine.get_account("main", JOHN)
    assert (account.min_balance_cents, account.max_balance_cents, account.balance_cents) == (
        -1_000,
        8_000,
        5_000,
    )
    await refused(engine, Deposit(JOHN, 3_001, "over", "d2"), "cap_exceeded")
    await applied(engine, Withdraw(JOHN, 6_000, "overdraft", "w1"))
    await refused(engine, SetLimits(JOHN, max_balance_cents=-1_001), "invalid_limit")
    await refused(engine, SetLimits(JOHN, min_balance_cents=0), "floor_above_balance")
    await refused(
        engine,
        SetLimits(JOHN, max_balance_cents=-1_001, min_balance_cents=-2_000),
        "cap_below_balance",
    )
    cleared = await engine.execute(SetLimits(JOHN, clear_max=True))
    assert isinstance(cleared, Account)
    assert cleared.max_balance_cents is None
    account = await engine.get_account("main", JOHN)
    assert (account.min_balance_cents, account.max_balance_cents, account.balance_cents) == (
        -1_000,
        None,
        -1_000,
    )


# -- ledgers --------------------------------------------------------------------------------


async def test_ledgers_are_isolated_and_dropped_alone(engine: Engine) -> None:
    sandbox = "sandbox-isolated"
    assert await engine.store.open_sandbox(sandbox, datetime(2030, 1, 1, tzinfo=UTC), 5)
    await applied(engine, Deposit(JOHN, 100, "main pay", "same-key"))
    await applied(engine, Deposit(JOHN, 900, "sandbox pay", "same-key", ledger=sandbox))
    await applied(engine, Deposit(JANE, 5, "sandbox", "other", ledger=sandbox))
    assert await balance(engine, JOHN) == 100
    assert await balance(engine, JOHN, sandbox) == 900
    assert [a.client for a in await engine.list_accounts("main")] == [JOHN]

    assert await engine.store.drop_sandbox(sandbox)
    assert await engine.store.open_sandbox(sandbox, datetime(2030, 1, 1, tzinfo=UTC), 5)
    assert await engine.store.get_account(sandbox, JOHN) is None
    assert await engine.list_accounts(sandbox) == []
    assert await balance(engine, JOHN) == 100
    assert [line.description for line in await lines_of(engine, JOHN)] == ["main pay"]
    # The dropped ledger forgot its keys; the kept one still remembers.
    fresh = await applied(engine, Deposit(JOHN, 1, "new", "same-key", ledger=sandbox))
    assert not fresh.replayed
    assert (await applied(engine, Deposit(JOHN, 100, "main pay", "same-key"))).replayed
    assert [line.description for line in await lines_of(engine, JOHN, sandbox)] == ["new"]


async def test_an_id_is_never_given_twice_not_even_after_its_ledger_is_dropped(
    engine: Engine,
) -> None:
    """The newest rows gone with a sandbox (dropped at its end, or idle) lend their ids to
    no later account, operation or statement line, in any ledger."""
    store = engine.store
    start = datetime(2030, 1, 1, tzinfo=UTC)
    await applied(engine, Deposit(JOHN, 100, "main pay", "m1"))
    given: dict[str, set[int]] = {"accounts": set(), "operations": set(), "entries": set()}
    for number in range(3):
        sandbox = f"sandbox-ids-{number}"
        assert await store.open_sandbox(sandbox, start, sandboxes_max=5)
        await applied(engine, Deposit(JANE, 7, "play", "k", ledger=sandbox))
        await applied(engine, Deposit(JOHN, 1, "play", "k2", ledger=sandbox))
        played = await applied(engine, Transfer(JANE, JOHN, 2, "play", "t", ledger=sandbox))
        given["operations"].add(played.id)
        given["entries"].update(line.entry_id for line in await lines_of(engine, JANE, sandbox))
        account = await store.get_account(sandbox, JOHN)
        assert account is not None
        given["accounts"].add(account.id)
        if number == 0:
            assert await store.drop_sandbox(sandbox)
        else:
            assert await store.drop_idle_sandboxes(start + timedelta(minutes=1)) == [sandbox]
        later = await applied(engine, Deposit(JOHN, 1, "after", f"m-after-{number}"))
        assert later.id > max(given["operations"])
        assert (await lines_of(engine, JOHN))[-1].entry_id > max(given["entries"])
        newcomer = await applied(engine, Deposit(f"Newcomer {number}", 1, "hello", f"n{number}"))
        newcomer_account = await store.get_account("main", f"Newcomer {number}")
        assert newcomer.id > later.id
        assert newcomer_account is not None
        assert newcomer_account.id > max(given["accounts"])


async def test_ids_stay_taken_when_an_older_sandbox_is_dropped_after_a_newer_one(
    engine: Engine,
) -> None:
    """Dropping a sandbox records the highest ids taken so far: the second drop, when the
    newest rows had already gone with the first, must not lower what the first kept."""
    store = engine.store
    start = datetime(2030, 1, 1, tzinfo=UTC)
    for sandbox in ("sandbox-old", "sandbox-new"):
        assert await store.open_sandbox(sandbox, start, sandboxes_max=5)
    await applied(engine, Deposit(JOHN, 1, "play", "k", ledger="sandbox-old"))
    newest = await applied(engine, Deposit(JANE, 1, "play", "k", ledger="sandbox-new"))
    entry = (await lines_of(engine, JANE, "sandbox-new"))[-1].entry_id
    account = await store.get_account("sandbox-new", JANE)
    assert account is not None
    assert await store.drop_sandbox("sandbox-new")
    assert await store.drop_sandbox("sandbox-old")
    later = await applied(engine, Deposit("Newcomer", 1, "hello", "n"))
    assert later.id > newest.id
    assert (await lines_of(engine, "Newcomer"))[-1].entry_id > entry
    newcomer = await store.get_account("main", "Newcomer")
    assert newcomer is not None and newcomer.id > account.id


async def test_sandboxes_are_recorded_touched_and_dropped_when_idle(engine: Engine) -> None:
    store = engine.store
    start = datetime(2030, 1, 1, tzinfo=UTC)
    assert await store.open_sandbox("sandbox-a", start, sandboxes_max=2)
    assert await store.open_sandbox("sandbox-b", start, sandboxes_max=2)
    assert not await store.open_sandbox("sandbox-c", start, sandboxes_max=2)
    await applied(engine, Deposit(JOHN, 100, "play", "k", ledger="sandbox-a"))
    await applied(engine, Deposit(JOHN, 200, "play", "k", ledger="sandbox-b"))
    await applied(engine, Deposit(JOHN, 300, "real", "k"))

    assert await store.touch_sandbox("sandbox-b", start + timedelta(minutes=10))
    assert not await store.touch_sandbox("sandbox-unknown", start)
    assert await store.drop_idle_sandboxes(start + timedelta(minutes=5)) == ["sandbox-a"]
    assert await store.get_account("sandbox-a", JOHN) is None
    assert await balance(engine, JOHN, "sandbox-b") == 200
    assert await balance(engine, JOHN) == 300
    assert not await store.touch_sandbox("sandbox-a", start + timedelta(minutes=6))
    # An older use (a slow request from another process) never moves the time back.
    assert await store.touch_sandbox("sandbox-b", start)
    assert await store.drop_idle_sandboxes(start + timedelta(minutes=9)) == []

    assert await store.sandbox_is_open("sandbox-b")
    assert await store.drop_sandbox("sandbox-b")  # the session ended
    assert not await store.sandbox_is_open("sandbox-b")
    assert not await store.drop_sandbox("sandbox-b")  # ended already
    assert not await store.touch_sandbox("sandbox-b", start + timedelta(minutes=11))
    assert await store.open_sandbox("sandbox-c", start, sandboxes_max=2)
    assert await balance(engine, JOHN) == 300


async def test_a_dropped_sandbox_takes_its_batch_keys_with_it(engine: Engine) -> None:
    """Dropped, a ledger's history goes whole, the claims of its batch requests too: they
    were left, for ever, and a sandbox of that name met its keys as taken."""
    store = engine.store
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert await store.open_sandbox("sandbox-t1-keys", now, sandboxes_max=5)
    claimed = await store.apply(
        [
            ClaimKey("sandbox-t1-keys", "b1", "first", covers=1),
            Deposit(JOHN, 5, "play", "b1:0", ledger="sandbox-t1-keys"),
        ]
    )
    assert isinstance(claimed[1], Operation)
    assert await store.drop_sandbox("sandbox-t1-keys")
    assert await store.open_sandbox("sandbox-t1-keys", now, sandboxes_max=5)
    again = await store.apply(
        [
            ClaimKey("sandbox-t1-keys", "b1", "another body", covers=1),
            Deposit(JANE, 7, "play", "b1:0", ledger="sandbox-t1-keys"),
        ]
    )
    assert isinstance(again[1], Operation) and not again[1].replayed, again


async def test_a_sandbox_takes_writes_only_while_it_is_open(engine: Engine) -> None:
    """Checked in the write's own transaction: a batch that raced the sandbox's end (in
    this process or another, whose view of it is older) leaves nothing behind, not even a
    kept refusal, and a claim under its key is not kept either."""
    store = engine.store
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert await store.open_sandbox("sandbox-t1-a", now, sandboxes_max=5)
    await applied(engine, Deposit(JOHN, 100, "play", "k1", ledger="sandbox-t1-a"))
    assert await store.drop_sandbox("sandbox-t1-a")
    outcomes = await store.apply(
        [
            Deposit(JOHN, 5, "late", "k2", ledger="sandbox-t1-a"),
            Withdraw(JOHN, 500, "late", "k3", ledger="sandbox-t1-a"),
            ClaimKey("sandbox-t1-a", "b1", "digest", covers=1),
            Deposit(JANE, 1, "late", "b1:0", ledger="sandbox-t1-a"),
            OpenAccount("Ann", ledger="sandbox-t1-a"),
            Deposit(JOHN, 7, "real", "k2"),
            Deposit(JOHN, 9, "never opened", "k5", ledger="sandbox-t1-never"),
        ]
    )
    assert codes(outcomes[:5]) == ["sandbox_not_found"] * 5
    assert isinstance(outcomes[5], Operation)
    assert codes(outcomes[6:]) == ["sandbox_not_found"]
    # Said as every request to a sandbox gone is told, naming it.
    for outcome, ledger in ((outcomes[0], "sandbox-t1-a"), (outcomes[6], "sandbox-t1-never")):
        assert isinstance(outcome, KopilkaError)
        assert outcome.message == (
            f"no sandbox {ledger!r}: it has ended (closed, or idle too long) or never was;"
            " start a new session"
        )
    assert await engine.list_accounts("sandbox-t1-a") == []
    assert await balance(engine, JOHN) == 7
    # Opened again under that name, nothing of the writes above is there.
    assert await store.open_sandbox("sandbox-t1-a", now, sandboxes_max=5)
    assert await engine.list_accounts("sandbox-t1-a") == []
    fresh = await applied(engine, Deposit(JOHN, 1, "again", "k3", ledger="sandbox-t1-a"))
    assert not fresh.replayed
    # A ledger whose name only looks alike is no sandbox: it takes writes as any other.
    await applied(engine, Deposit(JOHN, 1, "x", "k6", ledger="sandbox"))


async def test_an_ended_sandbox_takes_no_writes_and_its_rows_go_once_emptied(
    backend: Backend, engine: Engine
) -> None:
    """Ended in a short transaction of its own (closed, or idle); its rows (however
    many) are taken out after, a slice at a time, by whoever empties the ended
    sandboxes: this process, or the next to look should it stop first. A ledger only
    named alike is left alone."""
    store = engine.store
    now = datetime(2030, 1, 1, tzinfo=UTC)
    # Named as the API names them: only such a ledger is taken for a sandbox ended.
    sandbox, idle = "sandbox-00000000000000e1-0000000000e1", "sandbox-00000000000000e1-000000000001"
    assert await store.open_sandbox(sandbox, now, sandboxes_max=5)
    assert await store.open_sandbox(idle, now - timedelta(hours=1), sandboxes_max=5)
    await applied(engine, Deposit(JOHN, 3, "play", "k1", ledger=idle))
    await applied(engine, Deposit(JOHN, 100, "play", "k1", ledger=sandbox))
    await applied(engine, Deposit(JANE, 1, "play", "k0", ledger=sandbox))
    await applied(engine, Transfer(JOHN, JANE, 40, "play", "k2", ledger=sandbox))
    await refused(
        engine, Withdraw(JANE, 500, "too much", "k3", ledger=sandbox), "insufficient_funds"
    )
    claimed = await store.apply(
        [ClaimKey(sandbox, "b1", "digest", covers=1), Deposit(JOHN, 1, "x", "b1:0", ledger=sandbox)]
    )
    assert isinstance(claimed[1], Operation)
    await applied(engine, Deposit(JOHN, 7, "real", "k1"))
    await applied(engine, Deposit(JOHN, 9, "named alike", "k1", ledger="sandbox"))

    assert await store.end_sandbox(sandbox)
    assert not await store.sandbox_is_open(sandbox)
    assert not await store.end_sandbox(sandbox)  # ended already
    assert not await store.drop_sandbox(sandbox)
    # A ledger no sandbox is never dropped, whatever its name.
    assert not await store.drop_sandbox("main")
    assert not await store.drop_sandbox("sandbox")
    assert await store.end_idle_sandboxes(now - timedelta(minutes=1)) == [idle]
    assert not await store.sandbox_is_open(idle)
    late = await store.apply(
        [
            Deposit(JOHN, 5, "late", "k4", ledger=sandbox),
            Deposit(JOHN, 5, "late", "k4", ledger=idle),
        ]
    )
    assert codes(late) == ["sandbox_not_found"] * 2
    # The memory store's rows went as they ended: none are left to take out.
    emptied = await store.empty_ended_sandboxes()
    assert sorted(emptied) == (sorted([idle, sandbox]) if backend.durable else [])
    assert await store.empty_ended_sandboxes() == []
    for ended in (sandbox, idle):
        assert await store.get_account(ended, JOHN) is None
        assert await engine.list_accounts(ended) == []
        if backend.path is not None:
            with contextlib.closing(sqlite3.connect(backend.path)) as db:
                for table in ("accounts", "operations", "refusals", "batch_requests"):
                    found = db.execute(f"SELECT count(*) FROM {table} WHERE ledger = ?", (ended,))
                    assert found.fetchone()[0] == 0, table
    assert await balance(engine, JOHN) == 7
    assert await balance(engine, JOHN, "sandbox") == 9
    # Opened again under that name, it is empty, its keys free.
    assert await store.open_sandbox(sandbox, now, sandboxes_max=5)
    fresh = await applied(engine, Deposit(JOHN, 1, "again", "k1", ledger=sandbox))
    assert not fresh.replayed and fresh.credit_balance_after_cents == 1


async def test_a_sandbox_owner_may_hold_only_its_share(engine: Engine) -> None:
    store = engine.store
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert await store.open_sandbox("sandbox-t1-a", now, 10, "sandbox-t1-", 2)
    assert await store.open_sandbox("sandbox-t1-b", now, 10, "sandbox-t1-", 2)
    assert not await store.open_sandbox("sandbox-t1-c", now, 10, "sandbox-t1-", 2)
    # Another owner, whose name the first one's begins like, is counted apart.
    assert await store.open_sandbox("sandbox-t10-a", now, 10, "sandbox-t10-", 2)
    await store.drop_sandbox("sandbox-t1-a")
    assert await store.open_sandbox("sandbox-t1-c", now, 10, "sandbox-t1-", 2)


async def test_sandboxes_opened_at_once_by_two_processes_keep_to_the_bounds(
    backend: Backend,
) -> None:
    """Each process counts before it opens one: two counting at once both found room."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    async with two_processes(backend) as (first, second):
        # An owner's share of 3; then the server's bound of 4, with those 3 open.
        for owner_max, sandboxes_max, room in ((3, 100, 3), (100, 4, 1)):
            owner = f"sandbox-t{owner_max}-"
            opened = await asyncio.gather(
                *(
                    engine.store.open_sandbox(f"{owner}{i}", now, sandboxes_max, owner, owner_max)
                    for i, engine in enumerate([first, second] * 6)
                )
            )
            assert opened.count(True) == room, opened


# -- tokens --------------------------------------------------------------------------------


async def test_a_claimed_key_keeps_the_first_digest(engine: Engine) -> None:
    store = engine.store
    first = ClaimKey("main", "b1", "first", covers=1)
    outcomes = await store.apply([first, Deposit(JOHN, 100, "pay", "b1:0")])
    assert outcomes[0] == first
    assert isinstance(outcomes[1], Operation) and not outcomes[1].replayed
    replay = await store.apply([first, Deposit(JOHN, 100, "pay", "b1:0")])
    assert replay[0] == first
    assert isinstance(replay[1], Operation) and replay[1].replayed

    # Another body under the key: the claim and what it covers are refused, the rest of
    # the batch is not.
    other = ClaimKey("main", "b1", "second", covers=2)
    outcomes = await store.apply(
        [
            other,
            Deposit(JOHN, 100, "pay", "b1:0"),
            Deposit(JOHN, 5, "more", "b1:1"),
            Deposit(JOHN, 7, "alone", "k-alone"),
        ]
    )
    assert codes(outcomes[:3]) == ["idempotency_key_reused"] * 3
    assert isinstance(outcomes[3], Operation)
    assert await balance(engine, JOHN) == 107
    # A covered command never ran: its own key is still free.
    assert isinstance(await engine.execute(Deposit(JOHN, 9, "later", "b1:1")), Operation)

    # Keys belong to a ledger, and go with it.
    other, now = "sandbox-keys", datetime(2030, 1, 1, tzinfo=UTC)
    assert await store.open_sandbox(other, now, sandboxes_max=5)
    assert await store.apply([ClaimKey(other, "b1", "second")]) == [ClaimKey(other, "b1", "second")]
    assert await store.drop_sandbox(other)
    assert await store.open_sandbox(other, now, sandboxes_max=5)
    assert await store.apply([ClaimKey(other, "b1", "third")]) == [ClaimKey(other, "b1", "third")]


async def test_one_key_names_one_request_whatever_its_kind(engine: Engine) -> None:
    """A money operation's key may not be claimed by an account write or a batch, nor a
    claimed key be a money operation's, in either order, in one batch or two."""
    store = engine.store
    reused = "idempotency_key_reused"

    def limits(key: str, cap: int) -> list[Command]:
        return [ClaimKey("main", key, f"cap {cap}", covers=1), SetLimits(JOHN, None, cap)]

    await applied(engine, Deposit(JOHN, 100, "pay", "k-money"))
    assert codes(await store.apply(limits("k-money", 1_000))) == [reused] * 2
    assert codes(await store.apply(limits("k-limits", 2_000))) == ["ok"] * 2
    assert codes(await store.apply([Deposit(JOHN, 5, "pay", "k-limits")])) == [reused]
    refusable = Withdraw(JOHN, 10**6, "too much", "k-limits")
    assert codes(await store.apply([refusable])) == [reused]
    together = [Deposit(JOHN, 1, "pay", "k-first"), *limits("k-first", 3_000)]
    assert codes(await store.apply(together)) == ["ok", reused, reused]
    together = [*limits("k-second", 4_000), Deposit(JOHN, 1, "pay", "k-second")]
    assert codes(await store.apply(together)) == ["ok", "ok", reused]
    assert await balance(engine, JOHN) == 101
    account = await store.get_account("main", JOHN)
    assert account is not None and account.max_balance_cents == 4_000


async def test_two_claims_of_one_key_in_one_batch(engine: Engine) -> None:
    held = ClaimKey("main", "b2", "x", covers=1)
    outcomes = await engine.store.apply(
        [
            held,
            Deposit(JOHN, 1, "pay", "b2:0"),
            ClaimKey("main", "b2", "y", covers=1),
            Deposit(JOHN, 2, "pay", "b2:0"),
            held,
            OpenAccount(JOHN, 0, None, "main", 1, "b2"),
        ]
    )
    assert outcomes[0] == held
    assert codes(outcomes[1:4]) == ["ok", "idempotency_key_reused", "idempotency_key_reused"]
    # The third is a retry of the first: its opening answers as opened, with its id.
    assert outcomes[4] == held
    opened = outcomes[5]
    assert isinstance(opened, Account) and opened.balance_cents == 1
    assert opened == await engine.store.get_account("main", JOHN)


@pytest.mark.parametrize("batch_operations_max", [1, 3, 8_000])
async def test_a_claimed_request_longer_than_a_batch(
    backend: Backend, batch_operations_max: int
) -> None:
    engine = await backend.start_engine(Limits(batch_operations_max=batch_operations_max))
    try:
        deposits = [Deposit(JOHN, 10, f"d{n}", f"b3:{n}") for n in range(7)]
        claim = ClaimKey("main", "b3", "digest")
        outcomes = await engine.submit_many(deposits, claim)
        assert [type(outcome) for outcome in outcomes] == [Operation] * 7
        replayed = await engine.submit_many(deposits, claim)
        assert all(isinstance(o, Operation) and o.replayed for o in replayed)
        with pytest.raises(KopilkaError) as refused_request:
            await engine.submit_many(
                [*deposits, Deposit(JOHN, 10, "d7", "b3:7")], ClaimKey("main", "b3", "other")
            )
        assert refused_request.value.code == "idempotency_key_reused"
        assert await balance(engine, JOHN) == 70
    finally:
        await engine.close()


def open_then_empty() -> list[Command]:
    """Ten deposits that open John's account, then ten withdrawals that empty it."""
    deposits = [Deposit(JOHN, 10, f"d{n}", f"in-{n}", open_account=True) for n in range(10)]
    withdrawals = [Withdraw(JOHN, 10, f"w{n}", f"out-{n}") for n in range(10)]
    return [*deposits, *withdrawals]


async def test_a_long_request_applies_in_order(backend: Backend) -> None:
    # Pieces of ten: the second piece withdraws what the first deposited into an
    # account the first opened. On a store with two batches in flight, the second
    # piece must not be applied beside the first, before it committed.
    engine = await backend.start_engine(Limits(batch_operations_max=10))
    try:
        outcomes = await engine.submit_many(open_then_empty())
        assert [type(outcome) for outcome in outcomes] == [Operation] * 20, outcomes
        assert await balance(engine, JOHN) == 0
    finally:
        await engine.close()


async def test_a_long_request_whose_caller_gave_up_still_applies_in_order(
    backend: Backend,
) -> None:
    engine = await backend.start_engine(Limits(batch_operations_max=10))
    try:
        before = engine.stats.operations
        request = asyncio.ensure_future(engine.submit_many(open_then_empty()))
        for _ in range(5):
            await asyncio.sleep(0)  # the first piece is taken
        request.cancel()
        for _ in range(500):
            if engine.stats.operations - before >= 20:
                break
            await asyncio.sleep(0.01)
        # Both pieces applied, the second after the first: every withdrawal went through.
        assert engine.stats.operations - before == 20
        assert await balance(engine, JOHN) == 0
    finally:
        await engine.close()


async def test_a_long_claimed_request_holds_its_key_from_the_first_piece_that_applies(
    backend: Backend,
) -> None:
    # Pieces of two: the first takes no effect (every item refused as malformed, which
    # no key keeps), so its claim is let go; the second's deposit applies, and the key
    # stands for this body from then on. Another body under it applies nothing.
    engine = await backend.start_engine(Limits(batch_operations_max=2))
    try:
        first_body = [
            Transfer(JOHN, JOHN, 10, "to self", "bk:0"),
            Transfer(JOHN, JOHN, 10, "to self", "bk:1"),
            Deposit(JOHN, 10, "in", "bk:2", open_account=True),
        ]
        outcomes = await engine.submit_many(first_body, ClaimKey("main", "bk", "first"))
        assert [getattr(o, "code", "ok") for o in outcomes] == ["same_account"] * 2 + ["ok"]
        other_body = [Deposit(JOHN, 10, f"other {n}", f"bk-other:{n}") for n in range(3)]
        with pytest.raises(KopilkaError) as refused:
            await engine.submit_many(other_body, ClaimKey("main", "bk", "other"))
        assert refused.value.code == "idempotency_key_reused"
        again = await engine.submit_many(first_body, ClaimKey("main", "bk", "first"))
        assert isinstance(again[2], Operation) and again[2].replayed
        assert await balance(engine, JOHN) == 10
    finally:
        await engine.close()


async def test_a_claimed_account_opening_replays_as_opened(engine: Engine) -> None:
    store = engine.store
    claim = ClaimKey("main", "open-john", "d1", covers=1)
    opening = OpenAccount(JOHN, -100, 500, "main", 200, "open-john")
    first = await store.apply([claim, opening])
    assert isinstance(first[1], Account) and first[1].balance_cents == 200
    await applied(engine, Deposit(JOHN, 50, "pay", "d-later"))
    await engine.execute(SetLimits(JOHN, max_balance_cents=1_000))
    # The answer as it was, not the account as it is; and no second opening deposit.
    assert await store.apply([claim, opening]) == first
    assert await balance(engine, JOHN) == 250
    refused_claim = await store.apply([ClaimKey("main", "open-john", "d2", covers=1), opening])
    assert codes(refused_claim) == ["idempotency_key_reused"] * 2

    # Beside other commands, an opening the claim's key is held for may not be the one
    # that took effect: a retry answers it afresh.
    claim = ClaimKey("main", "mixed", "d1", covers=2)
    mixed = [claim, OpenAccount(JOHN), Deposit(JOHN, 1, "pay", "mixed:1")]
    assert codes((await store.apply(mixed))[1:]) == ["account_exists", "ok"]
    assert codes((await store.apply(mixed))[1:]) == ["account_exists", "ok"]
    assert await balance(engine, JOHN) == 251


async def test_a_claim_under_which_nothing_took_effect_is_let_go(engine: Engine) -> None:
    """A refused opening leaves the key free: its retry is planned afresh, not replayed."""
    await applied(engine, Deposit(JOHN, 10, "pay", "d1"))
    opening = OpenAccount(JOHN, 0, None, "main", 0, "open-again")
    outcomes = await engine.store.apply([ClaimKey("main", "open-again", "d1", 1), opening])
    assert codes(outcomes[1:]) == ["account_exists"]
    outcomes = await engine.store.apply([ClaimKey("main", "open-again", "d2", 1), opening])
    assert codes(outcomes[1:]) == ["account_exists"]  # not idempotency_key_reused
    # A claim covering nothing holds nothing either.
    await engine.store.apply([ClaimKey("main", "empty", "d1")])
    alone = await engine.store.apply([ClaimKey("main", "empty", "d2")])
    assert alone == [ClaimKey("main", "empty", "d2")]


async def test_claimed_limits_are_not_set_again_by_a_retry(engine: Engine) -> None:
    await applied(engine, Deposit(JOHN, 100, "pay", "d1"))
    claim = ClaimKey("main", "limits-1", "d1", covers=1)
    change = SetLimits(JOHN, max_balance_cents=1_000)
    first = await engine.store.apply([claim, change])
    assert isinstance(first[1], Account) and first[1].max_balance_cents == 1_000
    await engine.execute(SetLimits(JOHN, max_balance_cents=2_000))  # a later change
    retried = await engine.store.apply([claim, change])
    assert isinstance(retried[1], Account) and retried[1].max_balance_cents == 2_000
    account = await engine.get_account("main", JOHN)
    assert account.max_balance_cents == 2_000


async def test_one_key_claimed_by_two_processes_at_once(backend: Backend) -> None:
    """Two engines on one database (two server processes): one body stands per key."""
    async with two_processes(backend) as (first, second):
        await first.execute(Deposit(JOHN, 1, "open", "open"))
        for round_ in range(10):
            key = f"race{round_}"
            deposit = Deposit(JOHN, 10, "pay", f"{key}:0")
            results = await asyncio.gather(
                first.submit_many([deposit], ClaimKey("main", key, "one")),
                second.submit_many([deposit], ClaimKey("main", key, "two")),
                return_exceptions=True,
            )
            refused = [r for r in results if isinstance(r, KopilkaError)]
            assert len(refused) == 1, results
            assert refused[0].code == "idempotency_key_reused"
        assert await balance(first, JOHN) == 1 + 10 * 10


def _late_deposit(sandbox: str, index: int) -> Command:
    return Deposit(f"C{index}", 1, "late", f"{sandbox}-{index}", ledger=sandbox)


def _late_transfer(sandbox: str, index: int) -> Command:
    # Between accounts the writer has seen: PostgreSQL would write these on its own
    # view of them, without the locking read that checks the sandbox.
    return Transfer(JOHN, JANE, 1, "late", f"t{index}", sandbox)


@pytest.mark.parametrize("late", [_late_deposit, _late_transfer])
async def test_writes_racing_a_sandbox_drop_in_another_process_leave_nothing(
    backend: Backend, late: Callable[[str, int], Command]
) -> None:
    """One engine writes to a sandbox while another (another server process) ends it:
    each write lands before the drop, and goes with it, or is refused after it."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    async with two_processes(backend) as (writer, dropper):
        for round_ in range(8):
            sandbox = f"sandbox-t1-{late.__name__}-{round_}"
            assert await writer.store.open_sandbox(sandbox, now, sandboxes_max=20)
            for key, client in (("a", JOHN), ("b", JANE)):
                await applied(writer, Deposit(client, 1_000, "open", key, ledger=sandbox))
            await applied(writer, Transfer(JOHN, JANE, 1, "seen", "warm", ledger=sandbox))

            def writes(indexes: range, sandbox: str = sandbox) -> list[asyncio.Task[Outcome]]:
                return [asyncio.create_task(writer.execute(late(sandbox, i))) for i in indexes]

            # Some applied before the drop, some under way as it runs, some after it.
            before = await asyncio.gather(*writes(range(10)))
            assert not [o for o in before if isinstance(o, KopilkaError)], before
            racing = writes(range(10, 30))
            dropping = asyncio.create_task(dropper.store.drop_sandbox(sandbox))
            racing += writes(range(30, 40))
            assert await dropping
            after = await asyncio.gather(*writes(range(40, 44)))
            outcomes = [*await asyncio.gather(*racing), *after]
            assert {o.code for o in outcomes if isinstance(o, KopilkaError)} <= {
                "sandbox_not_found",
                "account_not_found",  # its account gone, before the sandbox was found ended
            }
            assert all(isinstance(o, KopilkaError) for o in after), after
            assert await writer.list_accounts(sandbox) == []
            assert await dropper.list_accounts(sandbox) == []


async def test_names_alike_but_for_case_opened_at_once_by_two_processes_open_one(
    backend: Backend,
) -> None:
    async with two_processes(backend) as (first, second):
        for round_ in range(10):
            spellings = [f"ann {round_}", f"ANN {round_}", f"Ann {round_}", f"aNN {round_}"]
            outcomes = await asyncio.gather(
                *(
                    engine.execute(Deposit(name, 100, "open", f"k-{name}"))
                    for engine, name in zip((first, second, first, second), spellings, strict=True)
                )
            )
            assert sorted(codes(outcomes)) == ["invalid_client"] * 3 + ["ok"], outcomes
        assert len(await second.list_accounts("main")) == 10


async def test_one_new_name_deposited_to_at_once_by_two_processes_opens_it_once(
    backend: Backend,
) -> None:
    """The deposits that lose the race to open the account go into it, planned again
    (for the moment between a batch's reads by name and by folded name, see
    test_a_name_found_its_own_namesake_is_planned_again)."""
    async with two_processes(backend) as (first, second):
        for round_ in range(30):
            client = f"Walk In {round_}"
            outcomes = await asyncio.gather(
                *(
                    engine.execute(Deposit(client, 100, "cash", f"k-{round_}-{index}"))
                    for index, engine in enumerate((first, second) * 3)
                )
            )
            assert codes(outcomes) == ["ok"] * 6, outcomes
            assert await balance(first, client) == 600


async def test_tokens_put_get_revoke_list(engine: Engine) -> None:
    store = engine.store
    base = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
    admin = TokenRecord("a1", hash_secret("s1"), "admin", None, "main", base)
    client = TokenRecord(
        "c1", hash_secret("s2"), "client", JOHN, "main", base + timedelta(seconds=1)
    )
    await store.put_token(client)
    await store.put_token(admin)
    assert await store.get_token("a1") == admin
    assert await store.get_token("missing") is None
    assert [t.id for t in await store.list_tokens()] == ["a1", "c1"]
    assert await store.revoke_token("c1") is True
    assert await store.revoke_token("c1") is False
    assert await store.revoke_token("missing") is False
    revoked = await store.get_token("c1")
    assert revoked is not None
    assert revoked.revoked
    assert revoked.client == JOHN
    assert (await store.get_token("a1")) == admin


# -- durability and the database's own guard ---------------------------------------------------


async def test_data_survives_close_and_reopen(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("the memory store keeps nothing after close")
    engine = await backend.start_engine()
    first = await applied(engine, Deposit(JOHN, 10_000, "pay", "k1"))
    await engine.execute(OpenAccount(JANE, max_balance_cents=50_000))
    await applied(engine, Transfer(JOHN, JANE, 2_500, "rent", "k2"))
    token = TokenRecord("t1", hash_secret("s"), "teller", None, "main", first.created_at)
    await engine.store.put_token(token)
    before = await lines_of(engine, JOHN)
    await engine.close()

    reopened = await backend.start_engine()
    try:
        assert await balance(reopened, JOHN) == 7_500
        assert (await reopened.get_account("main", JANE)).max_balance_cents == 50_000
        assert await lines_of(reopened, JOHN) == before
        replay = await applied(reopened, Deposit(JOHN, 10_000, "pay", "k1"))
        assert replay.replayed
        assert replay.id == first.id
        await refused(reopened, Deposit(JOHN, 1, "pay", "k1"), "idempotency_key_reused")
        assert await balance(reopened, JOHN) == 7_500
        assert await reopened.store.get_token("t1") == token
    finally:
        await reopened.close()


class _ClockAhead(MonotonicClock):
    """Another process's clock, an hour ahead of this one's (or this one stepped back)."""

    def now(self) -> datetime:
        return super().now() + timedelta(hours=1)


class _SteppedClock(MonotonicClock):
    """This process's clock, as NTP steps it back: `stepped_back` is taken off the wall."""

    stepped_back = timedelta(0)

    def wall(self) -> datetime:
        return super().wall() - self.stepped_back


@pytest.mark.parametrize("asked_till", ["now", "one second ago"])
async def test_a_period_shown_gains_no_line_when_the_clock_is_then_stepped_back(
    backend: Backend, asked_till: str
) -> None:
    """A statement once shown is final: a write after it, its clock stepped back by NTP,
    takes a time after the period, which the next period shows, opening where it closed."""
    clock = _SteppedClock()
    engine = await backend.start_engine(clock=clock)
    try:
        await applied(engine, Deposit(JOHN, 10_000, "before", "s1"))
        till = None
        if asked_till != "now":
            await asyncio.sleep(1.1)
            till = datetime.now(UTC) - timedelta(seconds=1)  # "before" lies in the period
        shown = await engine.statement("main", JOHN, None, till)
        clock.stepped_back = timedelta(seconds=30)
        after = await applied(engine, Deposit(JOHN, 5_000, "after", "s2"))
        assert after.created_at > shown.till
        again = await engine.statement("main", JOHN, None, shown.till)
        assert again.lines == shown.lines
        assert again.closing_balance_cents == shown.closing_balance_cents == 10_000
        next_one = await engine.statement(
            "main", JOHN, shown.till + timedelta(microseconds=1), None
        )
        assert [line.description for line in next_one.lines] == ["after"]
        assert next_one.opening_balance_cents == 10_000
    finally:
        await engine.close()


class _SetClock(MonotonicClock):
    """A clock that reads what it is set to."""

    at = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)

    def wall(self) -> datetime:
        return self.at


async def test_a_period_ending_in_the_hour_the_clocks_go_back_ends_at_its_moment(
    backend: Backend,
) -> None:
    """A period's end given in a zone with daylight saving, in the hour its clocks go
    back: a microsecond added to it on its wall clock moved it an hour, so a statement
    lost the lines of its last hour, or gained an hour's past its end."""
    clock = _SetClock()
    engine = await backend.start_engine(clock=clock)
    new_york = ZoneInfo("America/New_York")
    try:
        clock.at = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 in New York, EDT
        await applied(engine, Deposit(JOHN, 100, "summer time", "d1"))
        clock.at = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 again, EST
        await applied(engine, Deposit(JOHN, 200, "winter time", "d2"))
        # 01:45 the second time round: 06:45 UTC, after both.
        later = datetime(2026, 11, 1, 1, 45, tzinfo=new_york, fold=1)
        shown = await engine.statement("main", JOHN, None, later)
        assert [line.description for line in shown.lines] == ["summer time", "winter time"]
        assert shown.closing_balance_cents == 300
        # The last microsecond of summer time: 05:59:59.999999 UTC, before the second.
        earlier = datetime(2026, 11, 1, 1, 59, 59, 999_999, tzinfo=new_york)
        shown = await engine.statement("main", JOHN, None, earlier)
        assert [line.description for line in shown.lines] == ["summer time"]
        assert shown.closing_balance_cents == 100
    finally:
        await engine.close()


async def test_a_clock_behind_another_process_s_keeps_each_statement_in_order(
    backend: Backend,
) -> None:
    """A statement orders an account's entries by time: an operation written after
    another process's, by a process whose clock is behind, must not come before it."""
    if not backend.durable:
        pytest.skip("the memory store is one process: it has one clock")
    ahead = await backend.start_engine(clock=_ClockAhead())
    try:
        await applied(ahead, Deposit(JOHN, 10_000, "first", "c1"))
        await applied(ahead, Deposit(JANE, 1_000, "first", "c2"))
    finally:
        await ahead.close()
    behind = await backend.start_engine()
    try:
        later = await applied(behind, Transfer(JOHN, JANE, 3_000, "second", "c3"))
        statement = await behind.statement("main", JOHN, None, FAR_FUTURE)
        assert [line.description for line in statement.lines] == ["first", "second"]
        assert [line.balance_after_cents for line in statement.lines] == [10_000, 7_000]
        assert statement.closing_balance_cents == 7_000
        jane = await lines_of(behind, JANE)
        assert [line.description for line in jane] == ["first", "second"]
        assert later.created_at > statement.lines[0].created_at
    finally:
        await behind.close()


async def test_a_statement_up_to_now_holds_entries_stamped_past_this_clock(
    backend: Backend,
) -> None:
    """Written by a process whose clock was ahead, the latest entries lie past this
    one's now: a statement without a till still holds every operation, and ends at
    the balance."""
    if not backend.durable:
        pytest.skip("the memory store is one process: it has one clock")
    ahead = await backend.start_engine(clock=_ClockAhead())
    try:
        await applied(ahead, Deposit(JOHN, 10_000, "first", "f1"))
    finally:
        await ahead.close()
    behind = await backend.start_engine()
    try:
        await applied(behind, Withdraw(JOHN, 3_000, "second", "f2"))
        statement = await behind.statement("main", JOHN, None, None)
        assert [line.description for line in statement.lines] == ["first", "second"]
        assert statement.closing_balance_cents == 7_000 == await balance(behind, JOHN)
        assert statement.till == statement.lines[-1].created_at > datetime.now(UTC)
        since_first = await behind.statement("main", JOHN, statement.lines[0].created_at, None)
        assert len(since_first.lines) == 2
    finally:
        await behind.close()


async def test_a_request_a_constraint_of_the_databases_own_refuses_fails_alone(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """A constraint that kopilka's rules do not know (another program's: a CHECK, on
    SQLite a trigger's RAISE) refuses the request that breaks it, in one line that names
    it, logged once; the requests batched with it are applied, none told "try again". A
    request applied before it came, resent under its key, is answered as it was: the
    constraint, met before the key's uniqueness, refused it as "nothing was applied"."""
    if not backend.durable:
        pytest.skip("the memory store has no database constraints")
    engine = await backend.start_engine()
    try:
        await applied(engine, Deposit(JOHN, 1, "open", "k0"))
        paid = await applied(engine, Deposit(JOHN, 200_000, "pay", "p1"))
        if backend.kind == "sqlite":
            told = "amount over 1000 needs review"
            with contextlib.closing(sqlite3.connect(str(backend.path))) as connection:
                connection.execute(
                    "CREATE TRIGGER at_most_1000 BEFORE INSERT ON operations"
                    f" WHEN NEW.amount > 100000 BEGIN SELECT RAISE(ABORT, '{told}'); END"
                )
        else:
            import asyncpg

            told = 'new row for relation "operations" violates check constraint "at_most_1000"'
            connection = await asyncpg.connect(backend.url)
            try:
                await connection.execute(
                    "ALTER TABLE operations ADD CONSTRAINT at_most_1000"
                    " CHECK (amount <= 100000) NOT VALID"
                )
            finally:
                await connection.close()
        resent = await applied(engine, Deposit(JOHN, 200_000, "pay", "p1"))
        assert (resent.id, resent.replayed) == (paid.id, True)
        small = [Deposit(JOHN, 1, "small", f"s{n}") for n in range(20)]
        big = Deposit(JOHN, 500_000, "big", "b1")
        outcomes = await asyncio.gather(
            *(engine.execute(deposit) for deposit in [*small[:10], big, *small[10:]]),
            return_exceptions=True,
        )
        refused = outcomes.pop(10)
        assert all(isinstance(outcome, Operation) for outcome in outcomes), outcomes
        assert isinstance(refused, Rejected), refused
        assert (refused.code, refused.message) == (
            "database_refused",
            f"the database refused this ({told}); nothing was applied",
        )
        with pytest.raises(Rejected) as again:
            await engine.execute(big)
        assert again.value == refused
        # A batch request is one request: refused whole, nothing of it applied.
        batch = [Deposit(JOHN, 1, "small", "m1"), replace(big, idempotency_key="b2")]
        with pytest.raises(Rejected) as whole:
            await engine.submit_many(batch)
        assert whole.value.code == "database_refused"
        assert await balance(engine, JOHN) == 200_021
    finally:
        await engine.close()
    logged = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert [level for level, _ in logged] == ["WARNING"], logged
    assert logged[0][1].endswith(f"refused a write: {told}")


async def test_database_checks_floor_and_cap(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("the memory store has no database constraints")
    engine = await backend.start_engine()
    await engine.execute(OpenAccount(JOHN, min_balance_cents=-100, max_balance_cents=1_000))
    await engine.close()

    if backend.kind == "sqlite":
        _break_sqlite_bounds(backend)
    else:
        await _break_postgres_bounds(backend)

    reopened = await backend.start_engine()
    try:
        assert await balance(reopened, JOHN) == 0
    finally:
        await reopened.close()


def _break_sqlite_bounds(backend: Backend) -> None:
    assert backend.path is not None
    connection = sqlite3.connect(backend.path)
    try:
        for balance_sql in ("min_balance - 1", "max_balance + 1"):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
                connection.execute(
                    f"UPDATE balances SET balance = {balance_sql} WHERE account_id ="
                    " (SELECT id FROM accounts WHERE client = ?)",
                    (JOHN,),
                )
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            connection.execute(
                "INSERT INTO balances (account_id, balance, min_balance, max_balance)"
                " SELECT id + 1000, -1, 0, NULL FROM accounts WHERE client = ?",
                (JOHN,),
            )
        connection.commit()
    finally:
        connection.close()


async def _break_postgres_bounds(backend: Backend) -> None:
    import asyncpg

    connection = await asyncpg.connect(backend.url)
    try:
        for balance_sql in ("min_balance - 1", "max_balance + 1"):
            with pytest.raises(asyncpg.CheckViolationError):
                await connection.execute(
                    f"UPDATE accounts SET balance = {balance_sql} WHERE client = $1", JOHN
                )
    finally:
        await connection.close()
