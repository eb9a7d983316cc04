"""One hierarchy of errors a user can see: a machine code, a human message, an HTTP status.

Operating errors (a refusal, bad input, a busy store) are KopilkaError and are
answered; programmer errors are anything else and crash loudly.
"""

from __future__ import annotations

from typing import Literal


class KopilkaError(Exception):
    """Base of every error a user may see. `code` is stable; `message` is for people."""

    http_status = 400
    # A refusal answered again from its key's first request, not decided anew.
    replayed = False
    # The failure of a whole batch (the store's), given to each of its commands: about
    # none of them in particular.
    of_the_batch = False
    # Nothing of the write it ended was applied: raised before the write was sent (the
    # server asked something first), or the write was rolled back whole (`unapplied`).
    before_the_write = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its attributes, whatever a subclass's __init__ takes: the default
        # calls __init__ with the message alone, so an error raised in another process
        # (a process pool) or copied failed to come back, and broke the pool.
        return _rebuilt, (type(self), self.args), self.__dict__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, KopilkaError)
            and (other.code, other.message) == (self.code, self.message)
        )

    def __hash__(self) -> int:
        return hash((type(self), self.code, self.message))


def _rebuilt(kind: type[KopilkaError], args: tuple[object, ...]) -> KopilkaError:
    error = kind.__new__(kind)
    Exception.__init__(error, *args)
    return error


class InvalidInput(KopilkaError):
    """The request itself is malformed: bad amount, empty name, unknown option."""

    http_status = 422


class NotFound(KopilkaError):
    http_status = 404


class Rejected(KopilkaError):
    """Well-formed, but the ledger's rules refuse it: funds, caps, limits."""

    http_status = 422


class Conflict(KopilkaError):
    """Clashes with existing state: account exists, idempotency key reused differently."""

    http_status = 409


class Unauthorized(KopilkaError):
    http_status = 401


class Forbidden(KopilkaError):
    http_status = 403


class Busy(KopilkaError):
    """Too much work queued; the caller should retry later."""

    http_status = 429


class Interrupted(KopilkaError):
    """A write its caller stopped (Ctrl-C) while it waited for another's write lock:
    nothing was applied. Only a local caller stops one; no server answers with it."""

    http_status = 503


def not_begun() -> Interrupted:
    """A write interrupted before the engine took it: it never will."""
    return Interrupted("interrupted", "interrupted before it began; nothing was applied")


def not_sent() -> Interrupted:
    """A write to a server interrupted before any of its attempts went out."""
    return Interrupted(
        "interrupted", "interrupted before it reached the server; nothing was applied"
    )


# Set on a Ctrl-C (or a signal that ends the program) whose write was seen to its end:
# True when it was applied, else the refusal it ended in, nothing applied.
_SETTLED = "kopilka_settled"
# With True: what the write returned (an Operation, an Account), to answer it with.
_ANSWER = "kopilka_answer"


def mark_settled(
    interruption: BaseException, outcome: Literal[True] | KopilkaError, answer: object = None
) -> None:
    """The write `interruption` cut short ended all the same: applied (True), returning
    `answer`, or refused (stopped waiting for another's write lock, or never begun,
    among the refusals)."""
    setattr(interruption, _SETTLED, outcome)
    setattr(interruption, _ANSWER, answer if outcome is True else None)


def settled(interruption: BaseException) -> Literal[True] | KopilkaError | None:
    """How the write `interruption` cut short ended; None: not known."""
    outcome = getattr(interruption, _SETTLED, None)
    return outcome if outcome is True or isinstance(outcome, KopilkaError) else None


def applied_answer(interruption: BaseException) -> object:
    """What the write `interruption` cut short returned, settled as applied; else None."""
    return getattr(interruption, _ANSWER, None) if settled(interruption) is True else None


class Unavailable(KopilkaError):
    """The store cannot be reached right now; nothing was applied, or it is settled later."""

    http_status = 503
    # A read's failure in the words a write is told it, where they differ (a write is told
    # that nothing of it was applied): a token read before a write is checked, say.
    to_a_write: Unavailable | None = None


def database_away(why: str = "") -> Unavailable:
    """The database not reached, told to a read; to a write (`to_a_write`), that nothing
    of it was applied. `why`: " (reason)", for a caller who may learn it."""
    told = Unavailable("store_unavailable", f"the database is unavailable{why}; try again")
    told.to_a_write = Unavailable(
        "store_unavailable", f"the database is unavailable{why}; nothing was applied, try again"
    )
    return told


def unapplied(code: str, message: str) -> Unavailable:
    """The store's refusal of a write it rolled back whole, as its message says: the shell
    offers no key to retry it "safely" with, as if it might have been applied."""
    error = Unavailable(code, message)
    error.before_the_write = True
    return error


def database_refused(reason: str) -> Rejected:
    """A request a constraint of the database's own (another program's) refused, in the
    words both stores say it."""
    return Rejected(
        "database_refused", f"the database refused this ({reason}); nothing was applied"
    )


class UnstorableInput(Exception):
    """A request the database will not keep: a text with a character its encoding lacks,
    or data a constraint of its own refuses (another program's CHECK or trigger). The
    engine finds which request of the batch it is, and refuses only that one."""

    def __init__(self, refusal: KopilkaError) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class RetryableStoreError(Exception):
    """A transient store failure (deadlock, serialization, SQLite busy): retried inside."""


def sandbox_and(option: str, *, python: bool = False) -> InvalidInput:
    """A sandbox asked for with a ledger or database named too (`--ledger`, `ledger=`):
    the one named went unused, without a word, and what was done was dropped at the end.
    `python`: named as a Python caller gives them (connect_bank's arguments)."""
    given = f"sandbox=True or {option}=" if python else f"--sandbox or --{option}"
    return InvalidInput("invalid_option", f"give either {given}: a sandbox is a ledger of its own")


def no_sandbox(ledger: str) -> NotFound:
    """A sandbox the store does not hold: one it dropped and one never made look alike.
    Said so wherever it is found gone (a request's start, its batch, its statement)."""
    return NotFound(
        "sandbox_not_found",
        f"no sandbox {ledger!r}: it has ended (closed, or idle too long) or never was;"
        " start a new session",
    )


# How a write whose outcome is not known is settled: under its idempotency key, where the
# caller has it; otherwise by looking first.
RETRY_UNDER_THE_KEY = "retry with the same idempotency key, it is never applied twice"
LOOK_FIRST = "look before repeating it"
# Between what made a write's outcome unknown and how to settle it.
NOT_KNOWN = "; whether this was applied is not known: "


def unknown_cause(error: KopilkaError) -> str:
    """What made an outcome_unknown so, without how to settle it (to say that anew)."""
    return error.message.partition(NOT_KNOWN)[0]


def without_key_advice(error: KopilkaError) -> KopilkaError:
    """An outcome_unknown for a request whose key the caller never saw (made for it by
    the client or the server): it says to look, not to retry under that key."""
    if not error.message.endswith(RETRY_UNDER_THE_KEY):
        return error
    return Unavailable(error.code, error.message.removesuffix(RETRY_UNDER_THE_KEY) + LOOK_FIRST)


def stopped_before_answer(*, reads_only: bool = False, keyed: bool = True) -> Unavailable:
    """For a request the server gave up waiting for while it stopped (its drain time ran
    out, the database silent): for a write, whether it was applied is not known. One
    under an idempotency key is settled by retrying under it; another (a token made, a
    sandbox, limits) by looking before repeating it."""
    if reads_only:
        return Unavailable(
            "shutting_down", "the server stopped before this was answered; try again"
        )
    settle = RETRY_UNDER_THE_KEY if keyed else LOOK_FIRST
    return Unavailable(
        "outcome_unknown",
        f"the server stopped before this was answered{NOT_KNOWN}{settle}",
    )
