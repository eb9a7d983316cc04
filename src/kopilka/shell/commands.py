"""Run a parsed command against a Bank and say what happened.

The same code serves the shell and the one-shot commands, embedded or over
HTTP: it only turns text into cents, names and periods, calls the Bank, and
builds a reply. The ledger's rules live in the engine, not here.

A command is prepared first, its input checked, then run: a one-shot command may run
it on a trial ledger before the real one is made (cli.py).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from kopilka.bank import Bank
from kopilka.client_keys import given_key
from kopilka.domain.model import Account, Deposit, Operation, Transfer, Withdraw, client_name
from kopilka.domain.rules import (
    check_opening_balance,
    validate_client,
    validate_limits,
    validate_money_command,
)
from kopilka.errors import (
    NOT_KNOWN,
    Interrupted,
    InvalidInput,
    KopilkaError,
    Unavailable,
    applied_answer,
    settled,
    unknown_cause,
)
from kopilka.idempotency import new_key
from kopilka.money import format_money, parse_amount, parse_cents, parse_limit
from kopilka.periods import parse_period
from kopilka.shell.output import Block, Exit, Message, Reply
from kopilka.shell.parser import ParsedCommand, unknown_command
from kopilka.shell.render import (
    account_details,
    accounts_table,
    help_command,
    help_overview,
    limits_text,
    statement_csv,
    statement_json,
    statement_table,
)
from kopilka.shell.specs import find_command

STATEMENT_FORMATS = ("table", "csv", "json")

# A command whose input has passed: what it does with the bank.
Action = Callable[[Bank], Reply]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Write(Generic[T]):
    """An Action that writes: the bank's call, and the answer made of what it returned.
    Apart, so that a write a signal cut short once it was applied is answered as one
    left to end is (`applied_reply`)."""

    call: Callable[[Bank], T]
    answer: Callable[[T], Reply]

    def __call__(self, bank: Bank) -> Reply:
        return self.answer(self.call(bank))


# The commands that only read: one interrupted cannot have changed anything, and one
# given a database file that is not there says so rather than make one.
READS_ONLY = frozenset({"balance", "show_bank_statement", "accounts", "get"})
# Writes that act only on accounts open already: none could be done in a database not
# made yet, so a one-shot one makes none (a mistyped --db is said to be so).
ON_OPEN_ACCOUNTS = frozenset({"withdraw", "transfer", "set_limits"})
APPLIED_THEN_INTERRUPTED = "interrupted, but only once the command was applied: it is done"
INTERRUPTED_WRITE = (
    "interrupted; the command may still have been applied: look before running it again"
)
# On the interruption of a write under a key: the one to retry it with.
_RETRY_KEY = "kopilka_retry_key"
# On an interruption that came once the write's answer was written whole.
_ANSWERED = "kopilka_answered"


def mark_answered(interruption: BaseException) -> None:
    """`interruption` came once its write's answer was written whole: that said it all."""
    setattr(interruption, _ANSWERED, True)


def interrupted_write(interruption: BaseException) -> str | None:
    """What to say of a write Ctrl-C (or a signal) cut short; None when its answer had
    been written whole, and said it all."""
    if getattr(interruption, _ANSWERED, False):
        return None
    outcome = settled(interruption)
    if outcome is True:  # it ended before it could be stopped: done, and not to do again
        return APPLIED_THEN_INTERRUPTED
    if isinstance(outcome, Interrupted):  # never begun, or stopped waiting for another's
        return outcome.message
    if outcome is not None:
        return f"interrupted; nothing was applied: {outcome.message}"
    key = getattr(interruption, _RETRY_KEY, None)
    if isinstance(key, str):  # a key the user can give again: the retry applies once
        return f"interrupted; the command may still have been applied ({_retry_safely_with(key)})"
    return INTERRUPTED_WRITE


@runtime_checkable
class _SettlesInterruptions(Protocol):
    """A bank that can tell what became of a call a signal cut short, where it is known:
    the embedded bank, always; a server's client, before its request went out (one
    sent is not known to be applied or not until the server answers)."""

    @property
    def calls_handed(self) -> int: ...

    def settle_interrupted(self, interruption: BaseException, since: int) -> None: ...


def calls_handed(bank: Bank) -> int | None:
    """A mark taken before a command runs, for `settle_write`; None for a bank that
    cannot tell anything of a call a signal cut short."""
    return bank.calls_handed if isinstance(bank, _SettlesInterruptions) else None


def settle_write(interruption: BaseException, bank: Bank, since: int | None) -> None:
    """Tell `interruption` what became of the write it cut short, wherever it landed
    after `since` (`calls_handed` then): for `interrupted_write` and `applied_reply`."""
    if since is not None and isinstance(bank, _SettlesInterruptions):
        bank.settle_interrupted(interruption, since)


def applied_reply(action: Action, interruption: BaseException) -> Reply | None:
    """The answer of a write `interruption` cut short once it was applied; None if it
    was not, or is not known to have been."""
    if not isinstance(action, Write) or settled(interruption) is not True:
        return None
    write: Write[Any] = action
    return write.answer(applied_answer(interruption))


def needs_bank(parsed: ParsedCommand) -> bool:
    """help and exit answer without opening a database or a connection."""
    return parsed.spec.name not in ("help", "exit")


def execute(parsed: ParsedCommand, bank: Bank | None, *, oneshot: bool = False) -> Reply:
    """The reply to one command; a refusal is raised as KopilkaError."""
    if parsed.spec.name == "help":
        return _help(parsed, oneshot=oneshot)
    if parsed.spec.name == "exit":
        return Exit()
    assert bank is not None, f"{parsed.spec.name} needs a bank"
    return prepare(parsed)(bank)


def prepare(parsed: ParsedCommand) -> Action:
    """A command that needs a bank, its input checked (refused as KopilkaError) before
    any bank is opened."""
    return _PREPARERS[parsed.spec.name](parsed)


def _help(parsed: ParsedCommand, *, oneshot: bool) -> Reply:
    name = parsed.get("command")
    if name is None:
        return Block(help_overview(oneshot=oneshot))
    spec = find_command(name, oneshot=oneshot)
    if spec is None:
        raise unknown_command(name, oneshot=oneshot)
    return Block(help_command(spec, oneshot=oneshot))


# Requests are checked with the domain's own rules before they are sent, so a
# refusal reads the same whether the bank is in this process or behind HTTP.


# Failures that say nothing of the write was applied, and that no retry mends.
_NOT_APPLIED = frozenset({"server_unreachable", "database_damaged"})


@contextmanager
def _retry_names_the_key(key: str, given: bool) -> Iterator[None]:
    """A write the ledger could not answer may have applied or not: the same key settles
    it, once. The key of a command line is new each time, so the error names it.
    `given`: the key is the caller's (--idempotency-key), not one made for the line."""
    try:
        yield
    except Unavailable as error:
        if error.code in _NOT_APPLIED or error.before_the_write:
            # The write was never sent (refused, the server not asked at all, or its
            # ledger not learnt), or was refused whole: a key to retry it "safely" with
            # said it might have been.
            raise
        raise Unavailable(error.code, f"{error.message} ({_retry_safely_with(key)})") from None
    except KopilkaError as error:
        if error.replayed and given:
            # Its figures are of then ("A has $10.00 available" after a deposit since):
            # read as today's answer, they were wrong. A key made for this line is
            # answered again only to the client's own retry, of this very request.
            error.message = (
                f"{error.message} (the first answer under"
                f" --idempotency-key={shlex.quote(key)}, given again)"
            )
            error.args = (error.message,)
        raise
    except (KeyboardInterrupt, SystemExit) as interruption:  # Ctrl-C, a signal's ending
        setattr(interruption, _RETRY_KEY, key)  # for interrupted_write, if not settled
        raise


def _retry_safely_with(key: str) -> str:
    return f"to retry it safely: --idempotency-key={shlex.quote(key)}"


@contextmanager
def _look_before_repeating(client: str, parsed: ParsedCommand) -> Iterator[None]:
    """A write without a key of the caller's (an opening, limits) that may have applied
    or not is settled by looking at the account: its message says so, not to retry under
    the same key, which the command line cannot give."""
    try:
        yield
    except Unavailable as error:
        if error.code != "outcome_unknown":
            raise
        raise Unavailable(
            error.code,
            f"{unknown_cause(error)}{NOT_KNOWN}look with"
            f" `{'kopilka ' if parsed.oneshot else ''}get -n={shlex.quote(client)}"
            f"{parsed.reached_with}`"
            " before running it again",
        ) from None


def _key(parsed: ParsedCommand) -> str:
    # One fresh key per command line: a retried line is a new request, a replayed key is not.
    given = parsed.get("idempotency-key")
    # An empty key given is a key gone missing, not "no key": the rules refuse it.
    return new_key() if given is None else given_key(given)


def _key_given(parsed: ParsedCommand) -> bool:
    return parsed.get("idempotency-key") is not None


def _deposit(parsed: ParsedCommand) -> Action:
    return _on_one_account(parsed, Deposit, "Deposit operation was successful!")


def _withdraw(parsed: ParsedCommand) -> Action:
    return _on_one_account(parsed, Withdraw, "Withdrawal operation was successful!")


def _on_one_account(parsed: ParsedCommand, kind: type[Deposit | Withdraw], done: str) -> Action:
    command = kind(
        parsed.require("client"),
        parse_amount(parsed.require("amount")),
        parsed.require("description"),
        _key(parsed),
    )
    validate_money_command(command)
    given = _key_given(parsed)

    def run(bank: Bank) -> Operation:
        write = bank.deposit if isinstance(command, Deposit) else bank.withdraw
        with _retry_names_the_key(command.idempotency_key, given):
            return write(
                command.client, command.amount_cents, command.description, command.idempotency_key
            )

    return Write(run, lambda _: Message(done))


def _transfer(parsed: ParsedCommand) -> Action:
    command = Transfer(
        parsed.require("from"),
        parsed.require("to"),
        parse_amount(parsed.require("amount")),
        parsed.get("description") or "",
        _key(parsed),
    )
    validate_money_command(command)
    given = _key_given(parsed)

    def transfer(bank: Bank) -> Operation:
        with _retry_names_the_key(command.idempotency_key, given):
            return bank.transfer(
                command.from_client,
                command.to_client,
                command.amount_cents,
                command.description,
                command.idempotency_key,
            )

    return Write(transfer, lambda _: Message("Transfer operation was successful!"))


def _client(text: str) -> str:
    """A client's name as the ledger keeps it (NFC), refused here if it is malformed."""
    client = client_name(text)
    validate_client(client)
    return client


def _statement(parsed: ParsedCommand) -> Action:
    client = _client(parsed.require("client"))
    given = parsed.get("format")
    output_format = "table" if given is None else given.lower()
    if output_format not in STATEMENT_FORMATS:
        raise InvalidInput(
            "invalid_format",
            f"format {output_format!r} is not one of {', '.join(STATEMENT_FORMATS)}",
        )
    since, till = parse_period(parsed.get("since"), parsed.get("till"))
    # Without a till, up to now as the bank has it, not as this machine's clock does.
    up_to = None if parsed.get("till") is None else till

    def statement(bank: Bank) -> Reply:
        period = bank.statement(client, since, up_to)
        if output_format == "csv":
            return Block(statement_csv(period))
        if output_format == "json":
            return Block(statement_json(period))
        return statement_table(period)

    return statement


def _cap(text: str | None) -> int | None:
    """A cap: an amount, or None when not given or given as 'none' (spaces around it
    forgiven as an amount's are: a tab or a no-break space is no part of either)."""
    if text is None or text.strip(" ").lower() == "none":
        return None
    try:
        return parse_limit(text, "cap")
    except InvalidInput as refused:
        if text.strip(" ").lower() == "null":  # the API's word for it
            raise InvalidInput(refused.code, f"{refused.message}; no cap is written none") from None
        raise


def _open_account(parsed: ParsedCommand) -> Action:
    client = _client(parsed.require("client"))
    floor_text = parsed.get("min-balance")
    floor, cap = (
        0 if floor_text is None else parse_limit(floor_text, "floor"),
        _cap(parsed.get("max-balance")),
    )

    def open_account(bank: Bank) -> Account:
        with _look_before_repeating(client, parsed):
            return bank.open_account(client, floor, cap)

    return Write(
        open_account,
        lambda account: Message(f"Account opened for {account.client}: {limits_text(account)}."),
    )


def _set_limits(parsed: ParsedCommand) -> Action:
    floor_text, cap_text = parsed.get("min-balance"), parsed.get("max-balance")
    if floor_text is None and cap_text is None:
        raise InvalidInput("missing_option", "set_limits needs --min-balance or --max-balance")
    client = _client(parsed.require("client"))
    cap = _cap(cap_text)
    floor = None if floor_text is None else parse_limit(floor_text, "floor")

    def set_limits(bank: Bank) -> Account:
        with _look_before_repeating(client, parsed):
            return bank.set_limits(
                client,
                min_balance_cents=floor,
                max_balance_cents=cap,
                clear_max=cap_text is not None and cap is None,
            )

    return Write(
        set_limits, lambda account: Message(f"Limits of {account.client}: {limits_text(account)}.")
    )


def _balance(parsed: ParsedCommand) -> Action:
    client = _client(parsed.require("client"))

    def balance(bank: Bank) -> Reply:
        account = bank.account(client)
        return Message(f"Balance of {account.client}: {format_money(account.balance_cents)}")

    return balance


def _accounts(parsed: ParsedCommand) -> Action:
    return _every_account


def _every_account(bank: Bank) -> Reply:
    accounts = bank.accounts()
    return accounts_table(accounts) if accounts else Message("No accounts yet.")


def _opening_cents(text: str | None) -> int:
    """add-user -c: like an amount, but zero (the default) is allowed. Its range is checked
    after the limits, as the rules, the API and the Python client check it."""
    if text is None:
        return 0
    return parse_cents(text, allow_negative=True, allow_zero=True, what="opening balance")


def _add_user(parsed: ParsedCommand) -> Action:
    name = _client(parsed.require("name"))
    floor_text = parsed.get("min")
    floor = 0 if floor_text is None else parse_limit(floor_text, "floor")  # given empty: refused
    cap = _cap(parsed.require("max"))
    opening = _opening_cents(parsed.get("credit"))
    # Refused before any bank is opened, in the rules' order: the limits, then the opening.
    validate_limits(floor, cap)
    check_opening_balance(opening)

    def add_user(bank: Bank) -> Account:
        # One command, one transaction: the account, its opening deposit and its floor.
        with _look_before_repeating(name, parsed):
            return bank.open_account(name, floor, cap, opening, new_key())

    return Write(
        add_user,
        lambda account: Message(
            f"Added user {account.client}: balance {format_money(opening)}, {limits_text(account)}."
        ),
    )


def _get(parsed: ParsedCommand) -> Action:
    given = parsed.get("name")
    if given is None:
        return _every_account
    name = _client(given)

    def get(bank: Bank) -> Reply:
        return Block(account_details(bank.account(name)))

    return get


_PREPARERS: dict[str, Callable[[ParsedCommand], Action]] = {
    "deposit": _deposit,
    "withdraw": _withdraw,
    "transfer": _transfer,
    "show_bank_statement": _statement,
    "open_account": _open_account,
    "set_limits": _set_limits,
    "balance": _balance,
    "accounts": _accounts,
    "add-user": _add_user,
    "get": _get,
}
