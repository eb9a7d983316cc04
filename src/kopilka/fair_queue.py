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

An item may have to wait for the one before it in its lane (a long request's next
piece, on a store with two batches in flight: applied beside the piece before it, it
could lock an account first). Such an item is not `ready`: it goes in a batch right
behind the item before it, or once that item's batch is done, never in a batch of its
own while that one is still in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Lane(Generic[T]):
    items: deque[T] = field(default_factory=deque)
    operations: int = 0


class FairQueue(Generic[T]):
    def __init__(
        self, size: Callable[[T], int], ready: Callable[[T], bool] = lambda item: True
    ) -> None:
        self._size = size  # an item's operations, which a batch bounds
        self._ready = ready  # False: only right behind the item before it (see above)
        # The lanes in their turn: the first is served first; only non-empty ones.
        self._lanes: dict[Hashable, _Lane[T]] = {}
        self.operations = 0

    def __bool__(self) -> bool:
        return bool(self._lanes)

    def push(self, caller: Hashable, item: T) -> None:
        lane = self._lanes.get(caller)
        if lane is None:
            lane = self._lanes[caller] = _Lane()
        lane.items.append(item)
        size = self._size(item)
        lane.operations += size
        self.operations += size

    def any_ready(self) -> bool:
        """Whether a batch could be taken now: some lane's first item is ready."""
        ready = self._ready
        return any(ready(lane.items[0]) for lane in self._lanes.values())

    @property
    def callers(self) -> int:
        """How many callers have items waiting."""
        return len(self._lanes)

    def operations_of(self, caller: Hashable) -> int:
        """The operations waiting in `caller`'s lane."""
        lane = self._lanes.get(caller)
        return 0 if lane is None else lane.operations

    def take(self, operations_max: int) -> list[T]:
        """Items of at most `operations_max` operations (one item at least, however big,
        if any is ready), taken from the lanes in turn."""
        lanes, ready = self._lanes, self._ready
        taken: list[T] = []
        size = 0
        served: set[Hashable] = set()  # lanes with an item in this batch
        while lanes:
            if len(lanes) == 1:
                # The only lane left in the turn (the one caller, most of the time): its
                # items in order, as long as they fit.
                ((caller, lane),) = lanes.items()
                if caller not in served and not ready(lane.items[0]):
                    break
                while caller in lanes:
                    item_size = self._size(lane.items[0])
                    if taken and size + item_size > operations_max:
                        break
                    size += self._pop(caller, lane, item_size, taken)
                break
            served_now = False
            for caller in list(lanes):
                lane = lanes[caller]
                head = lane.items[0]
                if caller not in served and not ready(head):
                    continue  # keeps its place in the turn
                item_size = self._size(head)
                if taken and size + item_size > operations_max:
                    continue  # keeps its place in the turn; a smaller one may still fit
                size += self._pop(caller, lane, item_size, taken)
                served.add(caller)
                served_now = True
                if caller in lanes:
                    lanes[caller] = lanes.pop(caller)  # to the back of the turn
            if not served_now:
                break
        self.operations -= size
        return taken

    def _pop(self, caller: Hashable, lane: _Lane[T], size: int, taken: list[T]) -> int:
        """Move the head of `caller`'s lane to `taken`; a lane left empty leaves the turn."""
        taken.append(lane.items.popleft())
        lane.operations -= size
        if not lane.items:
            del self._lanes[caller]
        return size
