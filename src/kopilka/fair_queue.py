"""The engine's queue: first come, first served for each caller, callers in turn.

One queue, first come first served for all, let a caller who sends many big batches
(each up to a batch of 8,000 operations) hold back everyone else's writes for as many
batches: a teller's single transfer waited behind all of an import. Here each caller
has a lane of its own. A batch takes one request from each lane in turn, as long as
it fits, and a lane that was served goes to the back of the turn, so a request waits
for at most one batch per other caller ahead of it, however much those callers sent.
A caller's own requests keep their order.

The queue also counts each caller's operations, so that the engine can keep a caller
from taking all of its room while others wait (see Engine._check_accepting).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    def __init__(self, size: Callable[[T], int]) -> None:
        self._size = size  # an item's operations, which a batch bounds
        # The lanes in their turn: the first is served first; only non-empty ones.
        self._lanes: dict[Hashable, deque[T]] = {}
        self._operations_by_caller: dict[Hashable, int] = {}
        self.operations = 0

    def __bool__(self) -> bool:
        return bool(self._lanes)

    def push(self, caller: Hashable, item: T) -> None:
        lane = self._lanes.get(caller)
        if lane is None:
            lane = self._lanes[caller] = deque()
        lane.append(item)
        size = self._size(item)
        self.operations += size
        self._operations_by_caller[caller] = self._operations_by_caller.get(caller, 0) + size

    def operations_of(self, caller: Hashable) -> int:
        """The operations waiting in `caller`'s lane."""
        return self._operations_by_caller.get(caller, 0)

    def take(self, operations_max: int) -> list[T]:
        """Items of at most `operations_max` operations (one item at least, however big),
        taken from the lanes in turn."""
        lanes = self._lanes
        if len(lanes) == 1:  # one caller (the embedded bank, most of the time): its order
            taken, size = self._take_from_one(operations_max)
        else:
            taken, size = self._take_in_turn(operations_max)
        self.operations -= size
        return taken

    def _take_from_one(self, operations_max: int) -> tuple[list[T], int]:
        ((caller, lane),) = self._lanes.items()
        taken: list[T] = []
        size = 0
        while lane:
            item_size = self._size(lane[0])
            if taken and size + item_size > operations_max:
                break
            taken.append(lane.popleft())
            size += item_size
        self._taken(caller, size)
        if not lane:
            del self._lanes[caller]
        return taken, size

    def _take_in_turn(self, operations_max: int) -> tuple[list[T], int]:
        lanes = self._lanes
        taken: list[T] = []
        size = 0
        while lanes:
            served = False
            for caller in list(lanes):
                lane = lanes[caller]
                item_size = self._size(lane[0])
                if taken and size + item_size > operations_max:
                    continue  # keeps its place in the turn; a smaller one may still fit
                taken.append(lane.popleft())
                size += item_size
                self._taken(caller, item_size)
                served = True
                del lanes[caller]  # to the back of the turn
                if lane:
                    lanes[caller] = lane
            if not served:
                break
        return taken, size

    def _taken(self, caller: Hashable, size: int) -> None:
        left = self._operations_by_caller[caller] - size
        if left:
            self._operations_by_caller[caller] = left
        else:
            del self._operations_by_caller[caller]
