"""A PostgreSQL store plans a batch that only moves money between accounts it knows on
its own last view of them, and writes it in one statement that checks each account
first. Two stores on one database stand for two processes: whatever one of them
changes, the other's view of it never decides an outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from tests.integration.test_postgres_load import check_ledger

from kopilka.clock import MonotonicClock
from kopilka.domain.model import (
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
from kopilka.engine import Engine
from kopilka.errors import KopilkaError, RetryableStoreError
from kopilka.limits import Limits
from kopilka.store.postgres import PostgresStore
from kopilka.store.postgres_accounts import StaleViews

pytestmark = pytest.mark.postgres


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database, both knowing Ann (cap 1,000) and Bob."""
    first, second = PostgresStore(postgres_url), PostgresStore(postgres_url)
    await first.open()
    await second.open()
    try:
        await apply(first, OpenAccount("Ann", 0, 100_000), Deposit("Ann", 10_000, "", "open-a"))
        await apply(first, OpenAccount("Bob", 0, None))
        await apply(second, Deposit("Ann", 1, "", "seen-a"), Deposit("Bob", 1, "", "seen-b"))
        await apply(first, Deposit("Ann", 1, "", "seen-a2"), Deposit("Bob", 1, "", "seen-b2"))
        yield first, second
    finally:
        await first.close()
        await second.close()


async def apply(store: PostgresStore, *commands: Command) -> list[Outcome]:
    outcomes = await store.apply(commands)
    assert not [o for o in outcomes if isinstance(o, KopilkaError)], outcomes
    return outcomes


async def balance(url: str, client: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        found = await connection.fetchval("SELECT balance FROM accounts WHERE client = $1", client)
        return int(found)
    finally:
        await connection.close()


def codes(outcomes: Sequence[Outcome]) -> list[str]:
    """An operation's kind, or a refusal's code."""
    return [o.kind if isinstance(o, Operation) else getattr(o, "code", "?") for o in outcomes]


async def test_a_cap_lowered_by_another_process_refuses_what_the_old_view_allowed(
    stores: tuple[PostgresStore, PostgresStore], postgres_url: str
) -> None:
    """The deposit fits the cap this store last saw, not the new one; the withdrawal
    after it brings the balance back under both, so no CHECK would notice."""
    first, second = stores
    await apply(second, SetLimits("Ann", max_balance_cents=10_500))
    outcomes = await first.apply(
        [Deposit("Ann", 1_000, "", "over-cap"), Withdraw("Ann", 1_000, "", "back")]
    )
    assert codes(outcomes) == ["cap_exceeded", "withdrawal"]
    assert await balance(postgres_url, "Ann") == 10_002 - 1_000
    await check_ledger(postgres_url)


async def test_a_balance_moved_and_moved_back_is_still_not_the_one_planned_on(
    stores: tuple[PostgresStore, PostgresStore], postgres_url: str
) -> None:
    """Another process moves Ann's money out and back between this store's plan and
    its write: same balance, later entries. Written as planned, the batch's entries
    would come before those in time and their running balances would not add up."""
    first, second = stores
    commands = [Deposit("Ann", 500, "", "planned")]
    planned = first._plan_on_known_accounts(commands)
    assert planned is not None
    await apply(second, Withdraw("Ann", 300, "", "out"))
    await apply(second, Deposit("Ann", 300, "", "back"))
    assert await first._write_planned(commands, planned) is None  # nothing written
    outcomes = await first.apply(commands)
    assert codes(outcomes) == ["deposit"]
    assert isinstance(outcomes[0], Operation)
    assert outcomes[0].credit_balance_after_cents == 10_002 + 500
    await check_ledger(postgres_url)


async def test_a_batch_planned_on_a_failed_one_fails_with_it(
    stores: tuple[PostgresStore, PostgresStore], postgres_url: str
) -> None:
    """Batches are planned one on another's outcome before either is written. When the
    first cannot be written, the second, planned on it, is not written either."""
    first, second = stores
    one = [Transfer("Ann", "Bob", 2_000, "", "one")]
    two = [Transfer("Bob", "Ann", 1_500, "", "two")]
    planned_one = first._plan_on_known_accounts(one)
    planned_two = first._plan_on_known_accounts(two)  # Bob's 1,500 come from `one`
    assert planned_one is not None and planned_two is not None
    await apply(second, Withdraw("Ann", 9_000, "", "elsewhere"))
    assert await first._write_planned(one, planned_one) is None
    assert await first._write_planned(two, planned_two) is None
    assert codes(await first.apply(one)) == ["insufficient_funds"]
    assert codes(await first.apply(two)) == ["insufficient_funds"]  # Bob has 2 cents
    assert await balance(postgres_url, "Ann") == 10_002 - 9_000
    await check_ledger(postgres_url)


async def test_batches_planned_one_on_another_are_written_in_order(
    stores: tuple[PostgresStore, PostgresStore], postgres_url: str
) -> None:
    first, _ = stores
    batches = [[Transfer("Ann", "Bob", 100 * n, "", f"t{n}")] for n in range(1, 6)]
    planned = [first._plan_on_known_accounts(batch) for batch in batches]
    for batch, plan in zip(batches, planned, strict=True):
        assert plan is not None
        outcomes = await first._write_planned(batch, plan)
        assert outcomes is not None and codes(outcomes) == ["transfer"]
    assert await balance(postgres_url, "Bob") == 2 + 1_500
    await check_ledger(postgres_url)


async def test_two_batches_waiting_behind_a_sandboxs_end_are_each_refused(
    postgres_url: str,
) -> None:
    """Both batches of one process find the accounts they knew gone once the drop
    commits; the second had failed with a KeyError where the first forgot them."""
    store = PostgresStore(postgres_url)
    await store.open()
    sandbox = "sandbox-t1-two-waiting"
    try:
        assert await store.open_sandbox(sandbox, datetime(2030, 1, 1, tzinfo=UTC), 10)
        await apply(
            store,
            Deposit("Ann", 100, "", "a", ledger=sandbox),
            Deposit("Bob", 100, "", "b", ledger=sandbox),
        )
        dropping = await asyncpg.connect(postgres_url)
        try:
            transaction = dropping.transaction()
            await transaction.start()
            # Another process's drop, held open: its row first, then the ledger's.
            await dropping.execute("DELETE FROM sandboxes WHERE ledger = $1", sandbox)
            for delete in (
                "DELETE FROM entries WHERE account_id IN"
                " (SELECT id FROM accounts WHERE ledger = $1)",
                "DELETE FROM operations WHERE ledger = $1",
                "DELETE FROM accounts WHERE ledger = $1",
            ):
                await dropping.execute(delete, sandbox)
            waiting = [
                asyncio.create_task(store.apply([Transfer("Ann", "Bob", 1, "", key, sandbox)]))
                for key in ("t1", "t2")
            ]
            await asyncio.sleep(0.3)  # both wait for the sandbox's row
            await transaction.commit()
        finally:
            await dropping.close()
        for outcome in await asyncio.gather(*waiting, return_exceptions=True):
            # The batch is planned again by the engine on a retryable error; either way
            # no KeyError, and once planned again the sandbox is found ended.
            if isinstance(outcome, list):
                assert [getattr(o, "code", None) for o in outcome] == ["sandbox_not_found"]
            else:
                assert isinstance(outcome, RetryableStoreError), outcome
        (again,) = await store.apply([Transfer("Ann", "Bob", 1, "", "t3", sandbox)])
        assert getattr(again, "code", None) == "sandbox_not_found"
    finally:
        await store.close()


class _ClockAhead(MonotonicClock):
    """Another process's clock, an hour ahead of this one's."""

    def now(self) -> datetime:
        return super().now() + timedelta(hours=1)


async def _waiting_for_a_lock(url: str, count: int) -> None:
    """Until `count` sessions wait for a row lock."""
    connection = await asyncpg.connect(url)
    try:
        for _ in range(500):
            waiting = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            )
            if waiting >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"fewer than {count} sessions came to wait for the lock")
    finally:
        await connection.close()


async def test_a_batch_that_waited_for_another_process_s_is_timed_after_it(
    postgres_url: str,
) -> None:
    """The locking way reads its accounts' latest entry time after it holds their
    locks: had it read it in the statement that waited, it would not have seen the
    entries of the batch it waited for, written by a process whose clock is ahead."""
    ahead, behind = PostgresStore(postgres_url, _ClockAhead()), PostgresStore(postgres_url)
    await ahead.open()
    await behind.open()
    holder = await asyncpg.connect(postgres_url)
    try:
        await apply(ahead, Deposit("Ann", 1_000, "open", "open"))
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT 1 FROM accounts WHERE client = 'Ann' FOR UPDATE")
        first = asyncio.ensure_future(ahead.apply([Deposit("Ann", 100, "ahead", "k-ahead")]))
        await _waiting_for_a_lock(postgres_url, 1)
        second = asyncio.ensure_future(behind.apply([Deposit("Ann", 200, "behind", "k-behind")]))
        await _waiting_for_a_lock(postgres_url, 2)
        await holding.commit()
        (written_first,), (written_second,) = await first, await second
        assert isinstance(written_first, Operation) and isinstance(written_second, Operation)
        assert written_first.credit_balance_after_cents == 1_100
        assert written_second.credit_balance_after_cents == 1_300
        assert written_second.created_at > written_first.created_at
        lines = await holder.fetch(
            "SELECT e.balance_after FROM entries e JOIN accounts a ON a.id = e.account_id"
            " WHERE a.client = 'Ann' ORDER BY e.created_at, e.id"
        )
        assert [row[0] for row in lines] == [1_000, 1_100, 1_300]
    finally:
        await holder.close()
        await ahead.close()
        await behind.close()


async def test_a_batch_requests_claim_rides_in_the_planned_statement(
    stores: tuple[PostgresStore, PostgresStore], postgres_url: str
) -> None:
    """A keyed batch on known accounts is written in one statement with its claim; a
    retry, another body under the key, and a key that names an operation each fail
    that statement and are answered from locked rows, as on the locking way."""
    first, second = stores

    async def planned(store: PostgresStore, commands: list[Command]) -> tuple[list[Outcome], str]:
        """The outcomes, and how the one statement went: it wrote the batch, found an
        account moved, met a key taken, or was not needed (the process knew the key's
        claim and refused the batch)."""
        store.stale_views = views = StaleViews()  # every case tries the statement
        outcomes = await store.apply(commands)
        counts = {"written": views.written, "stale": views.stale, "key_taken": views.key_taken}
        assert sum(counts.values()) <= 1
        return outcomes, next((way for way, count in counts.items() if count), "none")

    claim = ClaimKey("main", "batch-1", "body one", covers=1)
    body: list[Command] = [claim, Deposit("Ann", 5, "", "batch-1:0")]
    outcomes, way = await planned(first, body)
    assert way == "written"
    assert outcomes[0] == claim
    assert isinstance(outcomes[1], Operation) and not outcomes[1].replayed

    # The same body again, from either process: replayed, not applied again. The first
    # meets its key taken; the second, whose view of Ann the first has moved, a stale one.
    for store, way_expected in ((first, "key_taken"), (second, "stale")):
        again, way = await planned(store, body)
        assert way == way_expected
        assert again[0] == claim
        assert isinstance(again[1], Operation) and again[1].replayed
    # Another body under the key: refused whole.
    other: list[Command] = [
        ClaimKey("main", "batch-1", "body two", covers=1),
        Deposit("Ann", 7, "", "b:0"),
    ]
    # Both processes have seen the key's claim stand: no statement is needed. A third,
    # which has not, meets it in the statement.
    third = PostgresStore(postgres_url)
    await third.open()
    try:
        await apply(third, Deposit("Ann", 1, "", "seen-a3"))
        for store, way_expected in ((first, "none"), (second, "none"), (third, "key_taken")):
            outcomes, way = await planned(store, other)
            assert (codes(outcomes), way) == (["idempotency_key_reused"] * 2, way_expected)
    finally:
        await third.close()
    # A batch key that names a money operation ("open-a" opened Ann's account): met by
    # the statement itself, on a view of Ann made fresh (the third's deposit left it stale,
    # and a stale view fails the statement whatever the key).
    for key, way_expected in (("fresh-a1", "stale"), ("fresh-a2", "written")):
        fresh, way = await planned(first, [Deposit("Ann", 1, "", key)])
        assert (codes(fresh), way) == (["deposit"], way_expected)
    taken: list[Command] = [
        ClaimKey("main", "open-a", "body", covers=1),
        Deposit("Ann", 9, "", "c:0"),
    ]
    outcomes, way = await planned(first, taken)
    assert codes(outcomes) == ["idempotency_key_reused"] * 2
    assert await balance(postgres_url, "Ann") == 10_002 + 5 + 1 + 2
    connection = await asyncpg.connect(postgres_url)
    try:
        digests = await connection.fetch("SELECT idempotency_key, digest FROM batch_requests")
    finally:
        await connection.close()
    assert [tuple(row) for row in digests] == [("batch-1", "body one")]
    await check_ledger(postgres_url)


async def test_a_long_claimed_requests_later_pieces_meet_their_claim_standing(
    postgres_url: str,
) -> None:
    """Each piece of a long keyed request carries its claim. The pieces after the first
    are planned as the claim's retries, since this process saw it stand: none fails its
    statement on the key. A retry of the whole request replays every piece."""
    store = PostgresStore(postgres_url)
    async with Engine(store, Limits(batch_operations_max=3)) as engine:
        await apply(store, OpenAccount("Ann", 0, None), Deposit("Ann", 1, "", "seen-a"))
        await apply(store, Deposit("Ann", 1, "", "seen-a2"))  # the view now holds Ann
        store.stale_views = StaleViews()
        body = [Deposit("Ann", 10 + index, "", f"long:{index}") for index in range(10)]
        claim = ClaimKey("main", "long", "the body")
        outcomes = await engine.submit_many(body, claim)
        assert [o.kind for o in outcomes if isinstance(o, Operation)] == ["deposit"] * 10
        assert (store.stale_views.written, store.stale_views.stale) == (4, 0)
        again = await engine.submit_many(body, claim)
        assert [o.replayed for o in again if isinstance(o, Operation)] == [True] * 10
        # A retry meets its keys taken: not a stale view, so the view stays in use.
        views = store.stale_views
        assert (views.written, views.stale, views.key_taken) == (4, 0, 4)
        assert views.worth_trying()
        with pytest.raises(KopilkaError) as refused:
            await engine.submit_many(body[:2], ClaimKey("main", "long", "another body"))
        assert refused.value.code == "idempotency_key_reused"
    assert await balance(postgres_url, "Ann") == 2 + sum(range(10, 20))
    await check_ledger(postgres_url)
