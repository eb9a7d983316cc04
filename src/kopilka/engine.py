"""The ledger engine: callers queue commands, a writer applies them in batches.

One writer per process drains whatever is waiting (up to a bound) and hands it
to the store as ONE transaction, so the cost of a commit (an fsync) is shared
by every operation in it. Each caller is answered only after the commit, with
its own outcome. At low load a batch is one command and nothing waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from kopilka.domain.model import Account, ClaimKey, Command, Outcome, client_name
from kopilka.domain.rules import account_not_found, validate_client
from kopilka.domain.statement import (
    Statement,
    StatementHeader,
    StatementLine,
    build_statement,
)
from kopilka.errors import (
    Busy,
    InvalidInput,
    KopilkaError,
    RetryableStoreError,
    Unavailable,
    UnstorableInput,
    unapplied,
)
from kopilka.fair_queue import FairQueue
from kopilka.limits import Limits
from kopilka.periods import check_order, period_end, since_in_the_future
from kopilka.store.protocol import Store

logger = logging.getLogger(__name__)

# Steps of the event loop a batch may wait while more requests keep joining it:
# a bound, so that a steady trickle cannot hold a batch back for long.
GATHER_STEPS_MAX = 8
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


class EngineState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(slots=True)
class _Request:
    commands: Sequence[Command]
    future: asyncio.Future[list[Outcome]]
    # A long request's piece before this one: this one is applied in the same batch as
    # it, or in one begun after it is done, so the request applies in order.
    after: _Request | None = None
    done: bool = False  # its batch was applied (or failed)
    # Why its batch failed, nothing of it applied: the pieces after it are not applied
    # either, so a request that was told of a failure is never applied behind its back.
    error: KopilkaError | None = None


def _operations_of(request: _Request) -> int:
    return len(request.commands)


def _is_ready(request: _Request) -> bool:
    # Not the caller's future: a caller that gave up must not let the next piece go
    # beside this one. The drain that applied it takes the next one itself.
    return request.after is None or request.after.done


def _taken(future: asyncio.Future[list[Outcome]]) -> None:
    """A piece's outcome that no caller awaits any more: its error, if any, is taken."""
    if not future.cancelled():
        future.exception()


@dataclass(slots=True)
class BatchStats:
    """Counters for metrics: how big batches are is how well group commit works."""

    batches: int = 0
    operations: int = 0
    size_histogram: dict[int, int] = field(default_factory=dict)  # power-of-two bucket -> count

    def record(self, size: int) -> None:
        self.batches += 1
        self.operations += size
        bucket = 1 << (size - 1).bit_length()
        self.size_histogram[bucket] = self.size_histogram.get(bucket, 0) + 1


class Engine:
    def __init__(self, store: Store, limits: Limits | None = None) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.state = EngineState.CREATED
        self.stats = BatchStats()
        # Each caller's requests in order, callers in turn (see fair_queue).
        self._pending: FairQueue[_Request] = FairQueue(_operations_of, _is_ready)
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max(1, store.concurrent_batches_max))
        # Taken once at start: asyncio.get_running_loop() is a system call on Python 3.11
        # (it checks the process id), and every request made a future through it.
        self._loop: asyncio.AbstractEventLoop | None = None
        # Until this moment (time.monotonic()), batches keep the shared bound.
        self._shared_until = 0.0

    async def start(self) -> None:
        assert self.state is EngineState.CREATED
        await self.store.open()
        self._loop = asyncio.get_running_loop()
        self.state = EngineState.RUNNING
        self._writer = asyncio.create_task(self._run(), name="kopilka-writer")

    async def close(self) -> None:
        """Stop taking work, finish and answer everything queued, close the store."""
        if self.state in (EngineState.CLOSING, EngineState.CLOSED):
            return
        self.state = EngineState.CLOSING
        self._wakeup.set()
        if self._writer is not None:
            await self._writer
        if self._in_flight:
            await asyncio.gather(*self._in_flight)
        await self.store.close()
        self.state = EngineState.CLOSED

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- writes ---------------------------------------------------------------

    async def execute(self, command: Command, caller: Hashable = None) -> Outcome:
        """One command; its outcome is an Operation, an Account, or a KopilkaError.

        Requests of one `caller` (the API passes the token) are applied in the order
        they came; different callers take turns in each batch.
        """
        (outcome,) = await self.queue(command, caller)
        return outcome

    def queue(self, command: Command, caller: Hashable = None) -> asyncio.Future[list[Outcome]]:
        """`execute` with no coroutine: the future of the command's outcome (a list of one),
        for the API's money path, which awaits it itself. Every request over HTTP comes
        this way, and each coroutine between it and the queue is made and resumed once
        per request."""
        self._check_accepting(1, caller)
        assert self._loop is not None  # running, as checked
        request = _Request((command,), self._loop.create_future())
        self._pending.push(caller, request)
        self._wakeup.set()
        return request.future

    async def submit_many(
        self,
        commands: Sequence[Command],
        claim: ClaimKey | None = None,
        caller: Hashable = None,
    ) -> list[Outcome]:
        """Many commands at once, one outcome each, in order (each succeeds or fails alone).

        A long request is applied in pieces, in order (see `Limits`). Should a piece
        fail whole (the store busy or away), the pieces after it are not applied: if
        that is the first piece, its error is raised and nothing of the request
        applied; otherwise the commands of the failed pieces have that error as their
        outcome, beside the outcomes of the pieces that were applied.

        With a `claim`, the request's key is held for its body's digest in the same
        transaction as its first piece of commands, and checked in that of every
        later piece: whichever piece first takes effect keeps it. A key that stands for
        another body raises its Conflict, and nothing of the request applies.
        """
        self._check_accepting(len(commands), caller)
        if claim is None:
            return await self._submit(commands, caller)
        head = self._piece_operations
        first = await self._enqueue(
            [replace(claim, covers=min(head, len(commands))), *commands[:head]], caller
        )
        if isinstance(first[0], KopilkaError):
            raise first[0]
        rest = commands[head:]
        if not rest:
            return first[1:]
        try:
            # Accepted even when the queue filled up meanwhile: the request was let in
            # whole. But once closing, the writer may have stopped taking work.
            self._check_running()
            return first[1:] + await self._submit(rest, caller, claim)
        except KopilkaError as error:  # the first piece applied: the rest fail item by item
            return first[1:] + [error] * len(rest)

    def _check_accepting(self, operations: int, caller: Hashable) -> None:
        self._check_running()
        if operations > self.limits.request_operations_max:
            raise InvalidInput(
                "too_many_operations",
                f"at most {self.limits.request_operations_max} operations per request",
            )
        queued = self._pending.operations + operations
        if queued > self.limits.queue_depth_max:
            raise Busy("busy", "the ledger is busy; try again shortly")
        # Past half full, no caller may hold over half of what waits while others wait
        # too, nor over half of the queue alone with requests of its own waiting: one
        # token's flood leaves the others room, those too who send a request at a time
        # and so wait for nothing as it comes (they found the queue full, the flood alone
        # in it). One request alone may be as large as any.
        if queued > self.limits.queue_depth_max // 2:
            earlier = self._pending.operations_of(caller)
            mine = earlier + operations
            if queued > mine:  # others wait too
                flooding = 2 * mine > queued
            else:
                flooding = earlier > 0 and 2 * mine > self.limits.queue_depth_max
            if flooding:
                raise Busy("busy", "the ledger is busy with your earlier requests; try again")

    def _check_running(self) -> None:
        if self.state is not EngineState.RUNNING:
            raise Unavailable("shutting_down", "the ledger is shutting down; try again")

    async def _submit(
        self, commands: Sequence[Command], caller: Hashable, claim: ClaimKey | None = None
    ) -> list[Outcome]:
        """Pieces in order, each with its own check of the `claim`, if any. Raises the
        first piece's error, when it failed whole: then nothing was applied."""
        if not commands:
            return []
        piece = self._piece_operations
        if len(commands) <= piece and claim is None:
            return await self._enqueue(commands, caller)
        requests: list[_Request] = []
        for start in range(0, len(commands), piece):
            part = commands[start : start + piece]
            if claim is not None:
                part = [replace(claim, covers=len(part)), *part]
            after = requests[-1] if requests else None
            requests.append(_Request(part, self._new_future(), after))
        for request in requests:
            self._pending.push(caller, request)
        self._wakeup.set()
        outcomes: list[Outcome] = []
        try:
            for index, request in enumerate(requests):
                try:
                    answered = await request.future
                except KopilkaError as error:
                    if index == 0:
                        for later in requests[1:]:  # failed unapplied too, no one to tell
                            later.future.cancel()
                        raise
                    answered = [error] * len(request.commands)
                # A claim's own outcome is no command's: a refused claim's covered
                # commands are refused with it, so the claim's place is dropped either way.
                outcomes.extend(answered if claim is None else answered[1:])
        except asyncio.CancelledError:
            # The caller is gone: the pieces it will not await may still fail, and their
            # errors are taken, not kept with their tracebacks and logged as never
            # retrieved.
            for request in requests:
                request.future.add_done_callback(_taken)
            raise
        return outcomes

    @property
    def _piece_operations(self) -> int:
        """A long request is queued in pieces no bigger than a shared batch."""
        return min(self.limits.batch_operations_max, self.limits.shared_batch_operations_max)

    def _new_future(self) -> asyncio.Future[list[Outcome]]:
        assert self._loop is not None, "the engine is not started"
        return self._loop.create_future()

    async def _enqueue(self, commands: Sequence[Command], caller: Hashable) -> list[Outcome]:
        """One request, applied in one transaction whatever its length."""
        request = _Request(commands, self._new_future())
        self._pending.push(caller, request)
        self._wakeup.set()
        return await request.future

    async def _run(self) -> None:
        while True:
            if not self._pending.any_ready():
                # Empty, or only pieces behind a batch in flight (whose drain takes them).
                if not self._pending and self.state is not EngineState.RUNNING:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._slots.acquire()
            if not self._pending.any_ready():  # taken meanwhile by a drain still running
                self._slots.release()
                continue
            task = asyncio.create_task(self._drain())
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _drain(self) -> None:
        """Apply batches while work is waiting, each as soon as the one before committed.

        The next batch starts in the same step that answers the last one: the answers
        are only scheduled, and go out while the next batch works. Waking the writer
        through the event loop put every answer, and every request read meanwhile,
        between one commit and the next batch (a median 2.4 ms under 64 clients).
        """
        try:
            await self._gather()
            while self._pending.any_ready():
                await self._apply(self._pending.take(self._batch_bound()))
        finally:
            self._slots.release()
            # The writer may be waiting on pieces this drain has taken since: let it
            # look again, or a close() waiting for the writer would wait for ever.
            self._wakeup.set()

    def _batch_bound(self) -> int:
        """The operations the next batch may hold: all a lone caller's batch may, but
        only a shared batch's while another caller writes too. A caller whose requests
        come one after another (a teller's, each sent once the last was answered) is
        not always waiting at the moment a batch is taken, hence the time."""
        now = time.monotonic()
        if self._pending.callers > 1:
            self._shared_until = now + self.limits.shared_batch_seconds
        elif now >= self._shared_until:
            return self.limits.batch_operations_max
        return self._piece_operations

    async def _gather(self) -> None:
        """Let the requests the event loop is still bringing in join this batch.

        A request takes several steps of the loop from its bytes to the queue (read,
        parsed, its task started, its command queued), and the batch was taken two
        steps after the first one arrived: under 64 clients, half of those read in the
        same moment missed it and waited a whole COMMIT for the next batch. Each pass
        here lets the loop take one more step, as long as the queue grows by it, so an
        idle server loses one step and a busy one forms a batch of everyone in reach.
        """
        for _ in range(GATHER_STEPS_MAX):
            waiting = self._pending.operations
            if waiting >= self.limits.batch_operations_max:
                return
            await asyncio.sleep(0)
            if self._pending.operations <= waiting:
                return

    async def _apply(self, batch: list[_Request]) -> None:
        for request in batch:  # in order: a piece's piece before it comes first
            if request.after is not None and request.after.error is not None:
                self._fail([request], request.after.error)
        batch = [request for request in batch if request.error is None]
        if not batch:
            return
        commands = [command for request in batch for command in request.commands]
        try:
            outcomes = await self._apply_with_retries(commands)
        except KopilkaError as error:
            self._fail(batch, error)
            return
        except Exception as error:  # a bug or an unexpected store failure
            if len(batch) > 1:
                # Nothing of it applied (the store rolled back). One request's data may
                # have failed the rest, say a text the database cannot store that the
                # store could not put down to a command: each is applied again on its
                # own, so that only such a request fails.
                for request in batch:
                    await self._apply([request])
                return
            if isinstance(error, UnstorableInput):
                self._fail(batch, error.refusal)
                return
            logger.exception("batch of %d operations failed", len(commands))
            self._fail(
                batch,
                Unavailable(
                    "internal_error", f"the ledger could not apply this: {type(error).__name__}"
                ),
            )
            return
        assert len(outcomes) == len(commands)
        # A batch request's key claim rides in the transaction, but is no operation.
        operations = sum(1 for command in commands if not isinstance(command, ClaimKey))
        if operations:
            self.stats.record(operations)
        start = 0
        for request in batch:
            end = start + len(request.commands)
            request.done = True
            if not request.future.done():  # a caller may have been cancelled
                request.future.set_result(outcomes[start:end])
            start = end

    @staticmethod
    def _fail(batch: list[_Request], error: KopilkaError) -> None:
        error.of_the_batch = True
        for request in batch:
            request.done = True
            request.error = error
            if not request.future.done():
                request.future.set_exception(error)

    async def _apply_with_retries(self, commands: list[Command]) -> list[Outcome]:
        try:
            # Nearly every batch commits at its first try, made bare: a retrying, made
            # and run, costs about what a small batch's rules do, and leaves a few
            # objects in reference cycles (tenacity's own) for the collector.
            return await self.store.apply(commands)
        except RetryableStoreError:
            tries_left = self.limits.batch_attempts_max - 1
        # Rolled back whole (a deadlock, an account another process opened at once):
        # tried again after 1, 2, 4 ... 100 ms.
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryableStoreError),
            stop=stop_after_attempt(tries_left),
            wait=wait_exponential(multiplier=0.002, max=0.1),  # after the first 1 ms
            reraise=True,
        )
        with contextlib.suppress(RetryableStoreError):
            if tries_left:
                await asyncio.sleep(0.001)
                return await retrying(self.store.apply, commands)
        raise unapplied("store_busy", "the ledger is busy; nothing was applied, try again")

    # -- reads ----------------------------------------------------------------

    async def get_account(
        self, ledger: str, client: str, *, sees_every_account: bool = True
    ) -> Account:
        """The account of `client`. One with no account is told of the account whose name
        folds alike, if any ("john jones" of "John Jones", Cyrillic "Јое" of "Joe"), where
        the caller `sees_every_account`: not a client token's, whose own name may be such
        a one."""
        client = client_name(client)
        validate_client(client)  # a name no account may have is said to be one, as a server does
        account = await self.store.get_account(ledger, client)
        if account is None:
            namesake = await self.store.namesake(ledger, client) if sees_every_account else None
            raise account_not_found(client, namesake)
        return account

    async def list_accounts(
        self, ledger: str, *, after_client: str | None = None, limit: int = 1_000
    ) -> list[Account]:
        return await self.store.list_accounts(ledger, after_client=after_client, limit=limit)

    async def statement(
        self, ledger: str, client: str, since: datetime | None, till: datetime | None
    ) -> Statement:
        """The whole statement of a period, up to now when `till` is None (for long
        periods, see statement_lines)."""
        since = None if since is None else period_end(since, "since")
        header = await self.statement_header(ledger, client, since, till)
        lines = [line async for line in self.statement_lines(header, since)]
        return build_statement(
            header.account.client, since, header.till, header.opening_cents, lines
        )

    async def statement_header(
        self,
        ledger: str,
        client: str,
        since: datetime | None,
        till: datetime | None,
        *,
        sees_every_account: bool = True,
    ) -> StatementHeader:
        """The account, its balance as the period opens, and the period's last entry as
        the statement is asked for: its lines end there and come to its balance. Without
        `till`, the period runs to now as the ledger has it."""
        # A time without an offset is UTC, as the API reads one: the embedded bank's
        # caller and a server's get the same statement for the same arguments.
        since = None if since is None else period_end(since, "since")
        # Now, before the history is settled: what commits after that takes a later time.
        now = datetime.now(UTC)
        if till is not None:
            till = period_end(till, "till")
            check_order(since, till)
        account = await self.get_account(ledger, client, sees_every_account=sees_every_account)
        # Up to now the account's history is final, so a period that has ended reads the
        # same every time it is asked for, and the next one starts where it ended: a
        # write after this takes a later time, though the wall clock be stepped back.
        await self.store.settle_history(account, now if till is None else min(till, now))
        if till is None:
            last = await self.store.last_entry(account.id, _END_OF_TIME)
            # An entry's time is never before the one written last, so after this clock
            # was set back (or one ahead wrote) the latest may lie past its now: a period
            # up to now still holds every operation acknowledged.
            till = now if last is None or last.created_at <= now else last.created_at
            if since is not None and since > till:  # as the shell and the API say it
                raise since_in_the_future()
        else:
            # Before the next microsecond: the lines at `till` itself are the period's too.
            # Added in UTC: on the wall clock of a zone with daylight saving, a moment in
            # the hour its clocks go back would move an hour.
            try:
                after_till = till.astimezone(UTC) + timedelta(microseconds=1)
            except OverflowError:  # the calendar's last moment: no line comes after it
                after_till = till
            # A period reaching past now would otherwise gain the lines written while it
            # streams, and end at a balance other than the one it was asked at.
            last = await self.store.last_entry(account.id, after_till)
        if since is None:
            before_since = None
        elif since > now and (last is None or last.created_at < since):
            # A period that opens after now: writes go on landing before it opens, so a
            # read of its own for the opening could see one the last entry's missed (or
            # the reverse), and the statement came out as not adding up. Nothing is in
            # it yet: it opens and ends at that same last entry.
            before_since = last
        else:  # settled: no write takes a time before `since` any more
            before_since = await self.store.last_entry(account.id, since)
        opening = 0 if before_since is None else before_since.balance_after_cents
        return StatementHeader(account, till, opening, last)

    async def statement_lines(
        self, header: StatementHeader, since: datetime | None
    ) -> AsyncIterator[StatementLine]:
        """Lines page by page from the store, so a long period never sits in memory
        whole, up to the header's last entry."""
        last = header.last
        if last is None:
            return
        after = 0
        page_rows = self.limits.statement_page_rows
        account_id = header.account.id
        while True:
            page = await self.store.statement_page(
                account_id, since, last.created_at, after, page_rows
            )
            for line in page:
                if last.precedes(line):
                    return
                yield line
            if len(page) < page_rows:
                return
            # The next page from the last line's place in (time, id) order: the index
            # seeks there, where from `since` it would pass every page before again.
            since, after = page[-1].created_at, page[-1].entry_id
