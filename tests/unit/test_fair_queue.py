"""The engine's queue: each caller's order kept, callers in turn, batches bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kopilka.fair_queue import FairQueue

Item = tuple[str, int, int]  # caller, number among the caller's items, operations


def make_queue() -> FairQueue[Item]:
    return FairQueue(lambda item: item[2])


def push(queue: FairQueue[Item], caller: str, number: int, size: int) -> None:
    queue.push(caller, (caller, number, size))


def test_one_caller_keeps_its_order_within_the_bound() -> None:
    queue = make_queue()
    for number in range(5):
        push(queue, "ann", number, 3)
    assert [item[1] for item in queue.take(7)] == [0, 1]
    assert queue.operations == 9
    assert [item[1] for item in queue.take(100)] == [2, 3, 4]
    assert not queue
    assert queue.operations == 0


def test_an_item_over_the_bound_goes_alone() -> None:
    queue = make_queue()
    push(queue, "ann", 0, 50)
    push(queue, "ann", 1, 1)
    assert [item[1] for item in queue.take(10)] == [0]
    assert [item[1] for item in queue.take(10)] == [1]


def test_an_item_that_is_not_ready_only_follows_the_one_before_it() -> None:
    done: set[tuple[str, int]] = set()  # items whose batch is done
    # Each of ann's items waits for the one before it; bob's are always ready.
    queue: FairQueue[Item] = FairQueue(
        lambda item: item[2],
        lambda item: item[0] != "ann" or item[1] == 0 or ("ann", item[1] - 1) in done,
    )
    for number in range(3):
        push(queue, "ann", number, 4)
    push(queue, "bob", 0, 1)
    first = queue.take(9)  # ann's second goes right behind her first
    assert [item[:2] for item in first] == [("ann", 0), ("bob", 0), ("ann", 1)]
    assert queue.any_ready() is False
    assert queue.take(8) == []  # ann's third waits for that batch, not beside it
    push(queue, "bob", 1, 1)
    assert queue.any_ready() is True
    assert [item[:2] for item in queue.take(8)] == [("bob", 1)]
    done.update(item[:2] for item in first)
    assert [item[:2] for item in queue.take(8)] == [("ann", 2)]
    assert not queue and queue.operations == 0


def test_callers_take_turns() -> None:
    queue = make_queue()
    for number in range(3):
        push(queue, "ann", number, 1)
    push(queue, "bob", 0, 1)
    push(queue, "cid", 0, 1)
    taken = queue.take(4)
    assert [(item[0], item[1]) for item in taken] == [
        ("ann", 0),
        ("bob", 0),
        ("cid", 0),
        ("ann", 1),
    ]


def test_a_small_request_waits_one_batch_behind_a_flood() -> None:
    queue = make_queue()
    for number in range(10):  # an import: ten full batches
        push(queue, "importer", number, 8_000)
    push(queue, "teller", 0, 1)
    assert queue.take(8_000) == [("importer", 0, 8_000)]
    assert queue.take(8_000) == [("teller", 0, 1)]
    assert queue.take(8_000) == [("importer", 1, 8_000)]


def test_a_lane_that_did_not_fit_goes_first_next_time() -> None:
    queue = make_queue()
    push(queue, "ann", 0, 2)
    push(queue, "bob", 0, 9)
    push(queue, "cid", 0, 2)
    assert [item[0] for item in queue.take(10)] == ["ann", "cid"]
    push(queue, "ann", 1, 2)
    assert [item[0] for item in queue.take(10)] == ["bob"]


@given(
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from("abcd"), st.integers(1, 12)),  # a push
            st.integers(1, 20),  # a take, with its bound
        ),
        max_size=60,
    )
)
def test_every_item_comes_out_once_in_its_callers_order(steps: list[tuple[str, int] | int]) -> None:
    queue = make_queue()
    pushed: dict[str, int] = {}
    waiting: dict[str, int] = {}  # operations per caller, counted here
    taken: list[Item] = []
    for step in [*steps, 1_000_000]:  # a last take empties the queue
        if isinstance(step, tuple):
            caller, size = step
            push(queue, caller, pushed.get(caller, 0), size)
            pushed[caller] = pushed.get(caller, 0) + 1
            waiting[caller] = waiting.get(caller, 0) + size
        else:
            before = queue.operations
            batch = queue.take(step)
            size = sum(item[2] for item in batch)
            assert queue.operations == before - size
            assert bool(batch) == (before > 0)
            assert len(batch) <= 1 or size <= step
            taken.extend(batch)
            for caller, _, item_size in batch:
                waiting[caller] -= item_size
        for caller in "abcd":
            assert queue.operations_of(caller) == waiting.get(caller, 0)
        assert queue.callers == sum(1 for count in waiting.values() if count)
    assert not queue
    for caller, count in pushed.items():
        assert [item[1] for item in taken if item[0] == caller] == list(range(count))


@given(
    st.lists(
        st.one_of(
            # a push; True: the item is a piece that must follow the caller's one before
            st.tuples(st.sampled_from("abc"), st.integers(1, 12), st.booleans()),
            st.integers(1, 20),  # a take, with its bound: a batch now in flight
            st.just("done"),  # the oldest batch in flight is done
        ),
        max_size=60,
    )
)
def test_a_piece_never_goes_beside_a_batch_in_flight_before_it(
    steps: list[tuple[str, int, bool] | int | str],
) -> None:
    done: set[tuple[str, int]] = set()
    follows: set[tuple[str, int]] = set()
    queue: FairQueue[Item] = FairQueue(
        lambda item: item[2],
        lambda item: item[:2] not in follows or (item[0], item[1] - 1) in done,
    )
    pushed: dict[str, int] = {}
    in_flight: list[list[Item]] = []
    taken: list[Item] = []

    def take(bound: int) -> None:
        ready = queue.any_ready()
        batch = queue.take(bound)
        assert bool(batch) == ready
        assert len(batch) <= 1 or sum(item[2] for item in batch) <= bound
        keys = {item[:2] for item in batch}
        for caller, number, _ in batch:
            if (caller, number) in follows:
                assert (caller, number - 1) in keys | done
        in_flight.append(batch)
        taken.extend(batch)

    for step in steps:
        if isinstance(step, tuple):
            caller, size, piece = step
            number = pushed.get(caller, 0)
            if piece and number > 0:
                follows.add((caller, number))
            push(queue, caller, number, size)
            pushed[caller] = number + 1
        elif isinstance(step, int):
            take(step)
        elif in_flight:
            done.update(item[:2] for item in in_flight.pop(0))
    while queue:  # every batch done, then the rest taken
        while in_flight:
            done.update(item[:2] for item in in_flight.pop(0))
        assert queue.any_ready()  # with nothing in flight, some item can always go
        take(1_000_000)
    for caller, count in pushed.items():
        assert [item[1] for item in taken if item[0] == caller] == list(range(count))
