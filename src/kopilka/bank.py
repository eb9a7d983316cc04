"""The calls the shell and the one-shot commands make, the same embedded or over HTTP.

`Bank` is the protocol; `EmbeddedBank` runs the engine in this process on a
background event loop; `kopilka.client.Client` speaks to a server. Refusals are
raised as KopilkaError.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import threading
import weakref
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import CancelledError
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from kopilka.calls_under_way import CallsUnderWay
from kopilka.client_keys import given_key
from kopilka.client_wire import opening_body
from kopilka.clock import positive_seconds
from kopilka.domain.model import (
    DEFAULT_LEDGER,
    MONEY_COMMAND_TYPES,
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
    client_name,
)
from kopilka.domain.rules import (
    name_beginning,
    not_batched,
    refuse_what_no_store_reads,
    validate_chosen_ledger,
    validate_client,
    validate_command_list,
    validate_money_command,
    validate_opening,
)
from kopilka.domain.statement import Statement
from kopilka.engine import Engine
from kopilka.errors import (
    Busy,
    Conflict,
    Interrupted,
    InvalidInput,
    KopilkaError,
    NotFound,
    Rejected,
    Unavailable,
    mark_settled,
    not_begun,
    settled,
    without_key_advice,
)
from kopilka.handover import Handover
from kopilka.idempotency import new_key
from kopilka.inherited import keep_for_good, of_another_process, tell_when_forked
from kopilka.store import open_store
from kopilka.store.protocol import Store

T = TypeVar("T")
# A coroutine to run on the engine's loop, made there (see kopilka.handover).
_Call = Callable[[], Coroutine[Any, Any, T]]


class Bank(Protocol):
    def deposit(
        self, client: str, amount_cents: int, description: str, idempotency_key: str | None = None
    ) -> Operation: ...

    def withdraw(
        self, client: str, amount_cents: int, description: str, idempotency_key: str | None = None
    ) -> Operation: ...

    def transfer(
        self,
        from_client: str,
        to_client: str,
        amount_cents: int,
        description: str,
        idempotency_key: str | None = None,
    ) -> Operation: ...

    def open_account(
        self,
        client: str,
        min_balance_cents: int = 0,
        max_balance_cents: int | None = None,
        opening_balance_cents: int = 0,
        idempotency_key: str = "",
    ) -> Account:
        """Open an account; an opening balance is deposited in the same transaction."""

    def set_limits(
        self,
        client: str,
        min_balance_cents: int | None = None,
        max_balance_cents: int | None = None,
        clear_max: bool = False,
    ) -> Account: ...

    def account(self, client: str) -> Account: ...

    def accounts(self, wait_seconds: float | None = None, starting_with: str = "") -> list[Account]:
        """Every account of the ledger (whose client's name starts with `starting_with`,
        given one); given `wait_seconds`, refused (Unavailable) past it, for what must
        not hold a person up (completing a name as they type)."""

    def statement(self, client: str, since: datetime | None, till: datetime | None) -> Statement:
        """The statement of a period; up to now, as the bank has it, when `till` is None.
        A `datetime` without a time zone is read as UTC, as the HTTP API reads a time
        without an offset."""

    def execute_many(self, commands: Sequence[Command]) -> list[Outcome]:
        """Money commands at once, one outcome each, in order (a refusal as its error,
        returned, not raised)."""

    def close(self, *, waiting_for_writes: bool = True) -> None:
        """`waiting_for_writes` False: a write whose end its caller gave up waiting for
        (a second Ctrl-C, its outcome said to be unknown) is not waited for here either."""

    def __enter__(self) -> Bank: ...

    def __exit__(self, *exc_info: object) -> None: ...


_STOP_SECONDS_MAX = 10.0


async def _cancel_the_rest() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    # What is still running (a start interrupted with Ctrl-C while the database was
    # being reached) is cancelled and let finish first, as asyncio.run does: a task
    # left pending would be thrown away with the loop, half done, in a traceback.
    finished = asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop)
    with contextlib.suppress(Exception):
        finished.result(timeout=_STOP_SECONDS_MAX)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


def _close(loop: asyncio.AbstractEventLoop, thread: threading.Thread, engine: Engine) -> None:
    if loop.is_closed() or threading.current_thread() is thread:  # it cannot wait for itself
        return
    try:
        asyncio.run_coroutine_threadsafe(engine.close(), loop).result()
    except RuntimeError:
        # At exit, after the thread pools have stopped, the store cannot be closed in its
        # thread: what was asked of it is committed already, and the process ends.
        if not _exiting():
            raise
    finally:
        _stop_loop(loop, thread)


def _key(idempotency_key: str | None) -> str:
    """The caller's key, or a new one: with no answer to lose in this process, no retry
    needs the caller to have known it."""
    return new_key() if idempotency_key is None else given_key(idempotency_key)


# What a server's digest of an opening's key begins with: the request's route.
_OPENING_ROUTE = b"POST /v1/accounts\n"


def _opening_digest(command: OpenAccount) -> str:
    """The digest a server keeps POST /v1/accounts's Idempotency-Key under for the same
    opening: of its route and its JSON body (as the Python client sends it), the name
    as the ledger keeps it, encoded by msgspec as the server encodes what it decoded."""
    import msgspec  # loaded only here, for a keyed opening: the bank needs it nowhere else

    body = opening_body(
        command.client,
        command.min_balance_cents,
        command.max_balance_cents,
        command.opening_balance_cents,
    )
    return hashlib.sha256(_OPENING_ROUTE + msgspec.json.encode(body)).hexdigest()


# Refusals that come before anything is written: a write that ended in one applied
# nothing (a store's own failure may come after the commit, and is no such word).
_NOTHING_APPLIED = (Interrupted, InvalidInput, NotFound, Rejected, Conflict, Busy)
# After Ctrl-C, how long a write under way is waited for before `when_waiting` is told.
_QUIET_WAIT_SECONDS = 2.0


def _bank_closed() -> InvalidInput:
    return InvalidInput("client_closed", "this bank is closed: open it again")


def _exiting() -> bool:
    """Whether the program is ending: its main thread is done once the interpreter has
    begun to shut down, before the exit handlers run."""
    return not threading.main_thread().is_alive()


def _new_loop() -> asyncio.AbstractEventLoop:
    """An event loop made whole: Ctrl-C in the middle of its making left a half-made one,
    whose finalizer printed a traceback as the command ended. The signal waits the few
    microseconds until it is made, and then interrupts as it would have."""
    if not hasattr(signal, "pthread_sigmask"):
        return asyncio.new_event_loop()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return asyncio.new_event_loop()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


class EmbeddedBank:
    """The engine and a store in this process; calls block until committed."""

    def __init__(self, store: Store | str | os.PathLike[str], ledger: str = DEFAULT_LEDGER) -> None:
        if type(ledger) is not str:
            raise InvalidInput("invalid_ledger", "a ledger's name is text")
        # Checked as --ledger and the Kopilka-Ledger header are, and kept in NFC as every
        # ledger name is: "café" decomposed is the same ledger.
        self.ledger = validate_chosen_ledger(ledger)
        if isinstance(store, os.PathLike):  # a pathlib.Path, as for open()
            store = os.fspath(store)
        if not isinstance(store, str) and not callable(getattr(store, "open", None)):
            # Its type only: the repr of a URL object shows its password.
            raise InvalidInput(
                "invalid_option",
                f"a database is a path, a URL or a Store (given: {type(store).__name__})",
            )
        self._calls = CallsUnderWay()
        # The last call each thread handed to the engine, and how many it has handed.
        self._handed = threading.local()
        self._loop = _new_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kopilka-engine", daemon=True
        )
        self._thread.start()
        self.engine = Engine(open_store(store, embedded=True) if isinstance(store, str) else store)
        try:
            # Not a call whose end is waited for (and told) after Ctrl-C, as a write's is:
            # the start is cancelled, so a database that does not answer is not waited
            # for to the end of its connect timeout.
            asyncio.run_coroutine_threadsafe(self.engine.start(), self._loop).result()
        except BaseException:
            self._stop_loop()
            raise
        # Closed by close(), or else when dropped or at exit: one left open printed
        # "Task was destroyed but it is pending!" as the program ended.
        self._closing = weakref.finalize(self, _close, self._loop, self._thread, self.engine)
        self._opened_in = os.getpid()
        self._in_another_process = False
        # Told once a write under way at Ctrl-C has been waited for a while (PostgreSQL
        # waits for a row's lock up to 20 s): a shell says why it has not ended yet.
        self.when_waiting: Callable[[], None] | None = None
        tell_when_forked(self)

    def _run(self, call: _Call[T], wait_seconds: float | None = None) -> T:
        """`call`'s coroutine, run on the engine's loop, waited for here."""
        if not self._calls.begin(shut=self._loop.is_closed()):
            raise self._refusal()
        try:
            return self._wait_for(call, wait_seconds)
        finally:
            self._calls.end()

    def _wait_for(self, call: _Call[T], wait_seconds: float | None) -> T:
        handover: Handover[T] = Handover(call)
        try:
            # Counted before it goes: from here on a signal is told what became of it.
            self._handed.latest = (self.calls_handed + 1, handover)
            return handover.send(self._loop).result(wait_seconds)
        except TimeoutError:
            future = handover.future
            if future.done():  # the coroutine's own
                raise
            future.cancel()
            raise Unavailable(
                "store_busy", f"the ledger did not answer within {wait_seconds:g} s"
            ) from None
        except CancelledError:  # closed, a call under way past the close's wait
            raise _bank_closed() from None
        except Exception:  # the coroutine's own
            raise
        except BaseException as interruption:  # Ctrl-C, or a signal ending the program
            self._settle(interruption, handover)
            raise

    @property
    def calls_handed(self) -> int:
        """How many calls this thread has handed to the engine: taken before a write, a
        mark for `settle_interrupted` to find that write's own by."""
        latest: tuple[int, Handover[Any]] | None = getattr(self._handed, "latest", None)
        return 0 if latest is None else latest[0]

    def settle_interrupted(self, interruption: BaseException, since: int) -> None:
        """Mark `interruption` (Ctrl-C, a signal ending the program) with what became of
        the call this thread handed to the engine after `since` (`calls_handed` then),
        wherever it landed: before the call was handed over, nothing was applied; once it
        had ended, on its way back, its outcome is known."""
        if settled(interruption) is not None:  # told already, where it landed in the wait
            return
        latest: tuple[int, Handover[Any]] | None = getattr(self._handed, "latest", None)
        count, handover = (0, None) if latest is None else latest
        if count == since:
            mark_settled(interruption, not_begun())
        elif count == since + 1 and handover is not None:
            self._settle(interruption, handover)
        # More than one call since: no one write's, and not known here.

    def _settle(self, interruption: BaseException, handover: Handover[Any]) -> None:
        """After Ctrl-C: a call not taken by the engine yet never will be, nothing applied.
        A write still waiting for another process's write lock stops waiting, nothing
        applied, rather than be applied once the lock is free, its caller gone. One under
        way is let end (a second Ctrl-C stops the wait for it). Whether it was applied,
        then: it was said only that it may have been, though it was seen to its end (on
        PostgreSQL a write waits for a row's lock to the end)."""
        if handover.withdraw():
            mark_settled(interruption, not_begun())
            return
        if not handover.ended:
            if handover.abandoned:  # its wait stopped by a second Ctrl-C: not waited again
                return
            store = self.engine.store
            store.stop_waiting()
            try:
                if not handover.wait(_QUIET_WAIT_SECONDS) and self.when_waiting is not None:
                    self.when_waiting()  # the shell says why Ctrl-C has not ended it yet
                handover.wait()
            except BaseException:
                handover.abandoned = True
                raise
            finally:
                store.wait_again()
        outcome = handover.outcome
        if isinstance(outcome, list) and len(outcome) == 1:  # a batch of the one command
            outcome = outcome[0]
        # A refusal comes back as the outcome, not raised: the rules' is the call's.
        if isinstance(outcome, _NOTHING_APPLIED) or (
            isinstance(outcome, Unavailable) and outcome.code == "store_busy"
        ):
            mark_settled(interruption, outcome)
        elif not isinstance(outcome, BaseException | list):
            # A fault may come after the commit (unknown); a batch's outcomes are each their own.
            mark_settled(interruption, True, outcome)

    def execute_many(self, commands: Sequence[Command]) -> list[Outcome]:
        """Money commands at once, one outcome each (errors are returned, not raised; a
        failure of the whole, the database busy, away or refusing it, is raised), in
        this bank's ledger whatever ledger a command names, as over the network. A
        command that is no money command, or whose key breaks the rule for given keys,
        is refused alone; a `commands` that is no list or tuple, whole."""
        validate_command_list(commands)
        outcomes: list[Outcome | None] = [None] * len(commands)
        taken: list[tuple[int, Command]] = []
        for index, command in enumerate(commands):
            if not isinstance(command, MONEY_COMMAND_TYPES):  # as no batch of a server's
                outcomes[index] = not_batched()
                continue
            if command.ledger != self.ledger:
                command = replace(command, ledger=self.ledger)
            try:  # the rules first: a key or description of another type is refused
                validate_money_command(command)
                given_key(command.idempotency_key)
            except KopilkaError as error:
                outcomes[index] = error
                continue
            taken.append((index, command))
        applied = self._run(lambda: self.engine.submit_many([c for _, c in taken])) if taken else []
        for (index, _), outcome in zip(taken, applied, strict=True):
            outcomes[index] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    def _execute(self, command: Command) -> Outcome:
        # As the API does before the engine has a request: a name no store can look up (a
        # lone surrogate, a NUL on PostgreSQL) failed the store's read, an internal error.
        refuse_what_no_store_reads(command)
        outcome = self._run(lambda: self.engine.execute(command))
        if isinstance(outcome, KopilkaError):
            raise outcome
        return outcome

    def _operation(self, command: Command, callers_key: bool) -> Operation:
        outcome = self._advised(command, callers_key)
        assert isinstance(outcome, Operation)
        return outcome

    def _account(self, command: Command) -> Account:
        outcome = self._advised(command, callers_key=False)
        assert isinstance(outcome, Account)
        return outcome

    def _advised(self, command: Command, callers_key: bool) -> Outcome:
        """A command under no key of the caller's (an opening, limits, a money call given
        none): one lost on its way is not to be retried under a key the caller never had."""
        try:
            return self._execute(command)
        except KopilkaError as error:
            advised = error if callers_key else without_key_advice(error)
            if advised is error:
                raise
            raise advised from error

    def deposit(
        self, client: str, amount_cents: int, description: str, idempotency_key: str | None = None
    ) -> Operation:
        return self._operation(
            Deposit(client, amount_cents, description, _key(idempotency_key), self.ledger),
            callers_key=idempotency_key is not None,
        )

    def withdraw(
        self, client: str, amount_cents: int, description: str, idempotency_key: str | None = None
    ) -> Operation:
        return self._operation(
            Withdraw(client, amount_cents, description, _key(idempotency_key), self.ledger),
            callers_key=idempotency_key is not None,
        )

    def transfer(
        self,
        from_client: str,
        to_client: str,
        amount_cents: int,
        description: str,
        idempotency_key: str | None = None,
    ) -> Operation:
        return self._operation(
            Transfer(
                from_client,
                to_client,
                amount_cents,
                description,
                _key(idempotency_key),
                self.ledger,
            ),
            callers_key=idempotency_key is not None,
        )

    def open_account(
        self,
        client: str,
        min_balance_cents: int = 0,
        max_balance_cents: int | None = None,
        opening_balance_cents: int = 0,
        idempotency_key: str = "",
    ) -> Account:
        keyed = idempotency_key not in ("", None)  # 0 or b"": refused as no text
        command = OpenAccount(
            client,
            min_balance_cents,
            max_balance_cents,
            self.ledger,
            opening_balance_cents,
            # None given: one is made, as a server makes one for a request without it,
            # so that the opening deposit has its key.
            given_key(idempotency_key) if keyed else new_key(),
        )
        if not keyed:
            return self._account(command)
        # Checked as _execute and the rules check the call without a key, before the
        # digest is made of what may be no sum at all (an int of 5,000 digits).
        refuse_what_no_store_reads(command)
        validate_opening(command)
        # The key is held for this call, as a server holds a request's Idempotency-Key:
        # the same call again answers the account as it opened it, another is refused.
        # Its digest is the server's of the same opening, so that either way answers the
        # other's; one kept under the digest this bank made before still replays.
        call = ("open_account", command.client, min_balance_cents, max_balance_cents)
        earlier = hashlib.sha256(repr((*call, opening_balance_cents)).encode()).hexdigest()
        digest = _opening_digest(command)
        claim = ClaimKey(
            self.ledger,
            idempotency_key,
            digest,
            earlier_digests=(earlier,),
            opening_of=client_name(command.client),
            opening_cents=command.opening_balance_cents,
        )
        (outcome,) = self._run(lambda: self.engine.submit_many([command], claim))
        if isinstance(outcome, KopilkaError):
            raise outcome
        assert isinstance(outcome, Account)
        return outcome

    def set_limits(
        self,
        client: str,
        min_balance_cents: int | None = None,
        max_balance_cents: int | None = None,
        clear_max: bool = False,
    ) -> Account:
        command = SetLimits(client, min_balance_cents, max_balance_cents, clear_max, self.ledger)
        # The name first, as a server checks one in its path (and account() checks it):
        # one no account may have is refused as such, not looked for and not found.
        validate_client(client_name(client))
        return self._account(command)

    def account(self, client: str) -> Account:
        return self._run(lambda: self.engine.get_account(self.ledger, client))

    def accounts(self, wait_seconds: float | None = None, starting_with: str = "") -> list[Account]:
        if wait_seconds is not None:
            wait_seconds = positive_seconds(wait_seconds, "wait_seconds")
        if starting_with != "":  # every name is read in under a second here, 100,000 too
            beginning = name_beginning(starting_with)
            if beginning is None:
                return []
            every = self.accounts(wait_seconds)
            return [account for account in every if account.client.startswith(beginning)]

        async def every_page() -> list[Account]:
            found: list[Account] = []
            while True:
                after = found[-1].client if found else None
                page = await self.engine.list_accounts(self.ledger, after_client=after)
                found.extend(page)
                if not page:
                    return found

        return self._run(every_page, wait_seconds)

    def statement(self, client: str, since: datetime | None, till: datetime | None) -> Statement:
        return self._run(lambda: self.engine.statement(self.ledger, client, since, till))

    def close(self, *, waiting_for_writes: bool = True) -> None:
        if waiting_for_writes:
            self._calls.close(_STOP_SECONDS_MAX)
            self._closing()
            return
        # Its tasks cancelled as the loop stops, a batch waiting for a PostgreSQL row's
        # lock (up to 20 s) with them. The store is not closed by kopilka: its connections
        # end with the process (a PostgreSQL transaction rolled back).
        self._calls.close(0)
        if self._closing.detach() is not None:
            self._stop_loop()

    def _stop_loop(self) -> None:
        _stop_loop(self._loop, self._thread)

    def _refusal(self) -> KopilkaError:
        if self._in_another_process:
            return of_another_process(self._opened_in)
        return _bank_closed()

    def forked(self) -> None:
        """In a process forked from the one that opened it, where its loop thread is not
        and its database connections are never to be used (SQLite's rule): every call is
        refused, and closing it, or its end, does nothing here. It is the parent's."""
        self._in_another_process = not self._loop.is_closed()  # else it was closed before
        self._closing.detach()
        # Nor is any of it finalized here, at the child's end either: a PostgreSQL
        # connection's would take its socket out of the event loop's epoll, which is the
        # parent's too, and the parent's bank then waited for ever.
        keep_for_good((self.engine, self._loop))
        # Nor does it keep the parent's write lock held after the parent died.
        self.engine.store.forget_in_child()
        # A count of its own: the parent's may be locked by one of its threads, not here.
        self._calls = CallsUnderWay()
        self._calls.close(0)

    def __enter__(self) -> EmbeddedBank:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
