"""The client's connection slots, taken by real threads."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import pytest

from kopilka.client_slots import ConnectionSlots


def _wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not check() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert check(), "never came"


@pytest.mark.timeout(30)
def test_a_freed_slot_goes_to_the_call_that_asked_first() -> None:
    """threading's Semaphore let the thread that freed a slot take it back at once, ahead
    of threads that had waited: among many, one could wait out its whole timeout."""
    slots = ConnectionSlots(1)
    assert slots.take(0)
    served: list[int] = []

    def caller(number: int) -> None:
        assert slots.take(10)
        served.append(number)

    threads = []
    for number in range(5):  # each asks once the one before it waits
        thread = threading.Thread(target=caller, args=(number,))
        thread.start()
        threads.append(thread)
        _wait_until(lambda number=number: slots.waiting == number + 1)
    slots.give_back()
    assert not slots.take(0)  # the freed slot is the first waiter's, not the freer's
    for number in range(5):
        _wait_until(lambda number=number: len(served) == number + 1)
        slots.give_back()
    for thread in threads:
        thread.join()
    assert served == [0, 1, 2, 3, 4]
    assert slots.take(0)  # the last one freed is free again, and it alone
    assert not slots.take(0)


@pytest.mark.timeout(30)
def test_a_call_that_gives_up_waiting_takes_no_slot_with_it() -> None:
    slots = ConnectionSlots(2)
    assert slots.take(0) and slots.take(0)
    started = time.monotonic()
    assert not slots.take(0.05)
    assert time.monotonic() - started >= 0.05
    assert slots.waiting == 0
    slots.give_back()
    slots.give_back()
    assert slots.take(0) and slots.take(0)
    assert not slots.take(0)


@pytest.mark.timeout(30)
def test_a_free_slot_is_taken_at_once_and_none_ahead_of_a_waiting_call() -> None:
    """What tells a call whose time ran out from one kept waiting by the others."""
    slots = ConnectionSlots(1)
    assert slots.take_free()
    assert not slots.take_free()
    waiter = threading.Thread(target=lambda: slots.take(10))
    waiter.start()
    _wait_until(lambda: slots.waiting == 1)
    slots.give_back()  # the waiting call's
    waiter.join()
    assert not slots.take_free()
    slots.give_back()
    assert slots.take_free()


class _Stopped(Exception):
    pass


def _stop(signum: int, frame: object) -> None:
    raise _Stopped


@pytest.mark.timeout(30)
def test_a_call_stopped_while_it_waits_leaves_no_slot_behind() -> None:
    """A call stopped in its wait (Ctrl-C: a signal's exception, raised in the waiting
    main thread) kept its place in the queue: the next slot freed went to a call that no
    longer wanted it, and was lost for good."""
    slots = ConnectionSlots(1)
    assert slots.take(0)
    previous = signal.signal(signal.SIGALRM, _stop)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(_Stopped):
            slots.take(10)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert slots.waiting == 0
    slots.give_back()
    assert slots.take(0)
