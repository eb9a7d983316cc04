"""The client library: the `Bank` calls over HTTP, so the shell works the same remotely.

Refusals come back as the very KopilkaError the engine raised (same code, same
message), rebuilt from the error JSON. One httpx connection pool is kept per
client, so calls reuse a keep-alive connection. A money write is retried after
a network failure or a 429/503 only with its own Idempotency-Key, so a retry
can never apply it twice. The JSON's shapes are client_wire.py's.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from unicodedata import normalize
from urllib.parse import urlsplit

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    wait_exponential,
)

from kopilka.calls_under_way import CallsUnderWay
from kopilka.client_errors import (
    client_closed,
    empty_token,
    environment_unusable,
    error_from,
    ledger_not_told,
    maybe_applied,
    no_answer_in_time,
    out_of_time,
    outcome_unknown,
    pool_busy,
    unreachable,
)
from kopilka.client_home_token import (
    HOME_TOKEN_HEADERS,
    HomeTokenGuard,
    home_admin_token,
    replaced_since,
)
from kopilka.client_sandbox import SANDBOX_DROP_SECONDS, SandboxKeeper, left_there
from kopilka.client_slots import ConnectionSlots
from kopilka.client_url import normalize_url
from kopilka.client_wire import (
    TokenInfo,
    account_from,
    amount_text,
    batch_item,
    cents_from,
    limit_text,
    opening_body,
    operation_from,
    statement_line_from,
    text_from,
    token_from,
)
from kopilka.clock import positive_seconds
from kopilka.domain.model import (
    Account,
    Command,
    Deposit,
    MoneyCommand,
    Operation,
    Outcome,
    SetLimits,
    Transfer,
    Withdraw,
)
from kopilka.domain.rules import (
    BATCH_REQUEST_OPERATIONS_MAX,
    CLIENT_NAME_LENGTH_MAX,
    DESCRIPTION_LENGTH_MAX,
    ledger_name,
    name_beginning,
    too_many_operations,
    validate_client,
    validate_command_list,
    validate_limits_change,
    validate_money_command,
)
from kopilka.domain.statement import Statement, StatementLine, build_statement
from kopilka.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KopilkaError,
    NotFound,
    Rejected,
    Unauthorized,
    Unavailable,
    mark_settled,
    not_begun,
    not_sent,
    sandbox_and,
    settled,
    unknown_cause,
    without_key_advice,
)
from kopilka.home import ADMIN_TOKEN_FILE, home
from kopilka.idempotency import new_key, sendable_key
from kopilka.inherited import tell_when_forked
from kopilka.periods import period_end
from kopilka.redaction import quoted, redact_url
from kopilka.tokens import no_token_named
from kopilka.urls import on_this_machine, path_segment

T = TypeVar("T")

ATTEMPTS_MAX = 4
# The waits between attempts, of a request and of a batch's resends alike: 0.05 s,
# then twice as long each time (0.05, 0.1, 0.2 s).
_FIRST_RETRY_DELAY_SECONDS = 0.05
# 503s that no retry mends: the ledger's data, not its availability, is at fault.
_NOT_PASSING = frozenset({"statement_inconsistent", "database_damaged"})
# What a write names is not there: its answer, however often it is asked (a route not
# found, or a sandbox dropped, is not of what the write names).
_NOTHING_OF_THAT_NAME = frozenset({"account_not_found", "token_not_found"})
TIMEOUT_SECONDS = 30.0
# Of a call's time, what its first attempt is to have left for the answer once it has a
# connection; waiting longer for one, it is not sent (`client_busy`).
_FIRST_ANSWER_SHARE = 0.25
# A client's connections, shared by the threads that call it at once, unless it is
# given another number, up to the connections a server takes from one address by default.
CONNECTIONS_MAX = 8
CONNECTIONS_ALLOWED_MAX = 256
# How long a look whether a server is there at all may take (with no token to use).
_PROBE_SECONDS = 2.0


@dataclass
class _SentAt:
    """When an attempt went out, once it had a connection (the wait for one is not the
    server's): how long it took tells how long a retry needs."""

    at: float | None = None
    # An attempt before it that may have applied, its answer lost: "nothing was applied"
    # in this one's answer speaks only of this one.
    after_uncertain: KopilkaError | None = None


@dataclass
class _Tries:
    """What a call's attempts have learned, for the next attempt and for the answer."""

    # The least time an attempt is to have for its answer, once it has a connection.
    answer_seconds: float
    called: float
    keyed: bool  # under a key of the caller's, who may retry with it
    # Set once an attempt of a write may have been applied: a later attempt's "nothing
    # was applied" speaks only of itself, and must not be the answer to the call.
    uncertain: KopilkaError | None = None
    # Attempts that may have gone out: none, when a Ctrl-C cuts the call short, is a
    # write of which nothing was sent (every connection refused, say).
    out: int = 0
    failure: Exception | None = None  # the last attempt's, when there is to be another


class _TryAgain(Exception):
    """An attempt failed in a way another attempt may mend (see _Tries.failure)."""


class _TimeRanOut(httpx.PoolTimeout):
    """A call that took a free connection with too little of its time left for an
    answer: not sent, as one kept waiting by busy connections, but none was."""


def _as_is(answer: Any) -> Any:
    return answer


def _json_object(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise TypeError("not a JSON object")
    return answer


_ITEM_PLACE = re.compile(r" - at `\$\.operations\[\d+\]")  # the path, as the server ends with it


def _in_the_callers_list(outcome: Outcome, position: int) -> Outcome:
    """An item's refusal naming its place in the list the caller gave, not in the body
    sent (which leaves out what was refused before sending)."""
    if not isinstance(outcome, KopilkaError):
        return outcome
    places = list(_ITEM_PLACE.finditer(outcome.message))
    if places:
        # The last: the path the server puts at the end; a name quoted before it stays.
        start, end = places[-1].span()
        message = outcome.message
        moved = type(outcome)(
            outcome.code, f"{message[:start]} - at `$.operations[{position}]{message[end:]}"
        )
        moved.replayed, moved.of_the_batch = outcome.replayed, outcome.of_the_batch
        return moved
    return outcome


def _ledger_of(caller: Any) -> str:
    """The ledger a whoami answer names."""
    ledger = _json_object(caller)["ledger"]
    if not isinstance(ledger, str):
        raise TypeError("no ledger named")
    return ledger


class Client:
    """A `Bank` over HTTP. Use as a context manager, or call close()."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        ledger: str | None = None,
        timeout_seconds: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
        token_file: Path | None = None,
        connections: int = CONNECTIONS_MAX,
    ) -> None:
        """`token_file`: where the token was read (a home's admin.token), named when the
        server refuses it. `connections`: how many the threads calling it at once share."""
        self.url = normalize_url(url)
        self._token_file = token_file
        self.shown_url = redact_url(self.url)  # for messages: a password in it is hidden
        if token == "":  # else taken, and every call refused as a header not sendable
            raise empty_token()
        # Tokens are ASCII (kop_<id>_<secret>); anything else cannot even be sent, and
        # the refusal never repeats the secret.
        if not (
            isinstance(token, str)
            and token.isascii()
            and token.isprintable()
            and token == token.strip()
        ):
            raise Unauthorized(
                "unauthorized",
                "invalid token: a token is printable ASCII text without spaces at its ends",
            )
        headers = {"Authorization": f"Bearer {token}"}
        if ledger is not None:
            if not isinstance(ledger, str):
                raise InvalidInput("invalid_ledger", "a ledger's name is text")
            # In the words of the embedded bank and the server, and in NFC as they keep it.
            ledger = ledger_name(ledger)
            if not ledger.isascii():
                raise InvalidInput(
                    "invalid_ledger",
                    "a ledger named to a server is printable ASCII text (an HTTP header"
                    " carries it); a token bound to a ledger named otherwise reaches it"
                    " without naming it",
                )
            headers["Kopilka-Ledger"] = ledger
        self.ledger_named = ledger  # in every request; None: the token's own ledger
        self._ledger = ledger
        timeout_seconds = positive_seconds(timeout_seconds, "timeout_seconds")
        self._connections = _connections(connections)
        self._slots = ConnectionSlots(self._connections)  # taken before the pool's
        # The last call this thread made, and how many it has made: see settle_interrupted.
        self._handed = threading.local()
        self._transport = transport
        self._http = _http_client(
            self.url, headers, httpx.Timeout(timeout_seconds), transport, self._connections
        )
        self._sandbox: SandboxKeeper | None = None
        # Why this client's sandbox may be left on the server, when a Ctrl-C stopped its
        # drop: a KeyboardInterrupt carries no message, and the shell says this instead.
        self.sandbox_left: str | None = None
        # Requests under way in other threads end before close() closes the connections,
        # for up to one call's wait.
        self._calls = CallsUnderWay()
        self._close_wait_seconds = self._timeout_seconds = timeout_seconds
        # Set in a process forked from the one that made it, until it has connections of
        # its own there: taken as the first call begins, not in the fork's hook.
        self._inherited: threading.Lock | None = None
        self._closed_inherited = False  # close() came there first: nothing is built
        tell_when_forked(self)

    @property
    def ledger(self) -> str:
        """The ledger this client's requests go to: the one it names, or else its token's
        own, asked of the server once (before a write, so never after one applied)."""
        if self._ledger is None:
            try:
                self._ledger = self._told_ledger()
            except KopilkaError as error:
                if isinstance(error.__cause__, httpx.ReadTimeout):
                    # "took the request": the question, which a caller of a write would
                    # take for the write
                    error = Unavailable(
                        "server_unreachable",
                        f"the server at {self.shown_url} did not say in time which ledger"
                        " the token is for; nothing was sent: try again",
                    )
                elif error.code == "answer_broken_off":  # as if said of the write
                    error = Unavailable(
                        error.code,
                        f"the server at {self.shown_url} closed the connection before it said"
                        " which ledger the token is for; nothing was sent: try again",
                    )
                error.before_the_write = True  # asked before a write is sent, if any
                raise error from None
        return self._ledger

    def _told_ledger(self) -> str:
        """The token's ledger, as the server tells. A 5xx to the question (a defect's 500,
        a gateway's 502 or 504, a 503 after the retries) is said of it: in the words said
        of any call ("the server answered 500"), its caller took it for the write's, which
        after a 5xx may have been applied. An answer of another kind of server (a 404
        page) or kopilka's refusal of the token is said as to any request."""
        try:
            response = self._send("GET", "/v1/whoami")
        except Unavailable as error:
            # A 503 (or a 429 not kopilka's) after the retries; a connection that failed
            # is said of the question as it is, in the property's words.
            if error.code in ("server_unreachable", "answer_broken_off"):
                raise
            raise ledger_not_told(self.shown_url, error) from None
        try:
            return self._answer(response, _ledger_of)
        except KopilkaError as error:
            if response.status_code < 500:
                raise
            raise ledger_not_told(self.shown_url, error) from None

    # -- plumbing -------------------------------------------------------------

    def _send(
        self, method: str, path: str, *, closing: bool = False, **options: Any
    ) -> httpx.Response:
        """A request and its retries, counted while under way: close() lets them end
        before it closes the connections. `closing`: close()'s own, sent after it has
        refused everyone else's."""
        if self._inherited is not None:
            self._take_own_connections()
        if not self._calls.begin(shut=self._http.is_closed, closing=closing):
            raise client_closed()  # and not httpx's RuntimeError
        try:
            return self._attempts(method, path, **options)
        finally:
            self._calls.end()

    def _attempts(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        retry: bool = True,
        key_is_callers: bool = True,
        wait_seconds: float | None = None,
        answer_seconds: float | None = None,
        went_out: _SentAt | None = None,
    ) -> httpx.Response:
        """`key_is_callers` False: the key was made here, unknown to the caller, who is
        then not told to retry with it. `wait_seconds`: the call's timeout, if not the
        client's. Retries are made within it, each waiting only for the time left, and
        only while that is as long as the longest attempt so far took, and never under
        the first's reserve: a server's 503 after its own long wait (a ledger busy for
        10 s) would come as late again, and a retry cut short by the deadline would
        leave a write not known to be applied or not.
        `answer_seconds`: what the first attempt is to have left for its answer once it
        has a connection, if not a share of the call's time (a batch's resend: as long
        as the send before it took). `went_out`: when the attempt answered went out."""
        call_seconds = self._timeout_seconds if wait_seconds is None else wait_seconds
        called = time.monotonic()
        deadline = called + call_seconds
        headers = (
            {} if idempotency_key is None else {"Idempotency-Key": sendable_key(idempotency_key)}
        )
        # The least time an attempt is to have for its answer, once it has a connection: a
        # share of the call's (a call that waited most of it for one is not sent, nothing
        # to be unsure of), then as long as the attempt before it took.
        tries = _Tries(
            call_seconds * _FIRST_ANSWER_SHARE if answer_seconds is None else answer_seconds,
            called,
            # The key helps only where the caller has it to retry with.
            keyed=idempotency_key is not None and key_is_callers,
        )
        self._handed.latest = (self.calls_handed + 1, tries)

        def no_more(state: RetryCallState) -> bool:
            # The last attempt made, or the next, after its wait, without the time its
            # answer needs before the deadline.
            late = time.monotonic() + state.upcoming_sleep + tries.answer_seconds > deadline
            return state.attempt_number >= ATTEMPTS_MAX or late

        retrying = Retrying(
            retry=retry_if_exception_type(_TryAgain),
            wait=wait_exponential(multiplier=_FIRST_RETRY_DELAY_SECONDS),
            stop=no_more,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(
                        tries,
                        deadline,
                        call_seconds,
                        method,
                        path,
                        json=json,
                        params=params,
                        headers=headers,
                        retry=retry,
                        key_is_callers=key_is_callers,
                        went_out=went_out,
                    )
        except _TryAgain:
            failure = tries.failure
            assert failure is not None  # set by every way here
            raise tries.uncertain or self._as_error(failure) from failure
        raise AssertionError("unreachable")

    def _attempt(
        self,
        tries: _Tries,
        deadline: float,
        call_seconds: float,
        method: str,
        path: str,
        *,
        json: Any,
        params: dict[str, str] | None,
        headers: dict[str, str],
        retry: bool,
        key_is_callers: bool,
        went_out: _SentAt | None,
    ) -> httpx.Response:
        """One attempt of a call: its answer, the call's error, or _TryAgain, with what
        it learned kept in `tries`."""
        sent = _SentAt()
        tries.out += 1  # it may go out: known not to once refused before it is sent
        try:
            response = self._request(
                deadline,
                tries.answer_seconds,
                sent,
                method,
                path,
                json=json,
                params=params,
                headers=headers,
            )
        except RuntimeError:
            if not self._http.is_closed:
                raise
            # Closed by another thread meanwhile, done waiting for this call: an
            # attempt before this one may have been applied, and that is what the
            # caller must hear.
            raise tries.uncertain or client_closed() from None
        except UnicodeEncodeError:  # a lone surrogate, from undecodable bytes
            tries.out -= 1  # refused before it was sent
            raise InvalidInput(
                "invalid_text",
                "this request cannot be sent: it holds text that is not UTF-8",
            ) from None
        except httpx.LocalProtocolError as error:
            tries.out -= 1  # refused before it was sent
            # Refused here before sending (a header HTTP cannot carry): its text would
            # quote the header, and a header may be the token.
            raise InvalidInput(
                "invalid_request", "this request cannot be sent: a header HTTP cannot carry"
            ) from error
        except httpx.PoolTimeout as error:
            tries.out -= 1  # refused before it was sent
            # Every connection stayed busy with other threads' calls, or the call's
            # time ran out with one free: this one never left, and is not the
            # server's fault (it may be healthy, just slow). A retry's: what the
            # attempt before it was told is the answer.
            if tries.failure is not None:
                raise tries.uncertain or self._as_error(tries.failure) from error
            if isinstance(error, _TimeRanOut):
                raise tries.uncertain or out_of_time(call_seconds) from error
            waited = time.monotonic() - tries.called
            raise tries.uncertain or pool_busy(self._connections, waited) from error
        except httpx.ConnectTimeout as error:
            tries.out -= 1  # refused before it was sent
            # Never reached the server, but waited the whole timeout for it (a frozen
            # server whose queue of connections is full, a host that drops packets):
            # each retry waited as long again, four times the time the call is said
            # to take. A lost packet is sent again within the one wait.
            raise tries.uncertain or unreachable(self.shown_url, error) from error
        except httpx.ConnectError as error:
            tries.out -= 1  # refused before it was sent
            # Never reached the server (refused: down, restarting): safe to retry any
            # request, and quick to fail.
            tries.failure = error
        except httpx.TransportError as error:
            if method != "GET" and tries.uncertain is None:  # it may have been applied
                tries.uncertain = outcome_unknown(self.shown_url, tries.keyed, error, method)
            # A server that took the request and said nothing for the whole timeout
            # (frozen, stopped), or did not read it, would keep a retry waiting as
            # long: one wait is enough.
            if not retry or isinstance(error, httpx.TimeoutException):
                raise tries.uncertain or unreachable(self.shown_url, error) from error
            tries.failure = error
        else:
            uncertain = tries.uncertain
            if went_out is not None:
                went_out.at, went_out.after_uncertain = sent.at, uncertain
            if response.status_code not in (429, 503) or not retry:
                if uncertain is not None and not _speaks_of_the_write(response, self.shown_url):
                    raise uncertain  # of this attempt alone, not of the earlier one
                return response
            failure = error_from(response.status_code, _json(response), self.shown_url)
            if failure.code in _NOT_PASSING:
                if uncertain is not None:  # an earlier attempt may have applied
                    raise uncertain
                return response
            if failure.code == "outcome_unknown":
                tries.uncertain = failure if key_is_callers else without_key_advice(failure)
            elif failure.code == "bad_response" and method != "GET" and uncertain is None:
                # Not kopilka's 503 (a load balancer's, say, after passing the write
                # on): it may have been applied behind it, as after any other 5xx.
                tries.uncertain = maybe_applied(response, failure, tries.keyed)
            tries.failure = failure
        if sent.at is not None:
            # A retry is answered in about as long as this one took, if longer than
            # the reserve: one answered at once (a 429, a refused connection) says
            # nothing of how long an answer takes, and the reserve stands.
            tries.answer_seconds = max(tries.answer_seconds, time.monotonic() - sent.at)
        raise _TryAgain

    def _as_error(self, failure: Exception) -> KopilkaError:
        """An attempt's failure, as the call's answer."""
        if isinstance(failure, KopilkaError):
            return failure
        return unreachable(self.shown_url, failure)

    def _request(
        self,
        deadline: float,
        answer_seconds: float,
        sent: _SentAt,
        method: str,
        path: str,
        **options: Any,
    ) -> httpx.Response:
        """One attempt, on a connection free for it in time to leave `answer_seconds`
        before `deadline` for the answer (the wait for a connection counted in the call's
        time), waiting for the answer until then. `sent`: when it went out, set here."""
        # A slot free at once: no other call kept this one waiting, whatever its time.
        free = self._slots.take_free()
        if not free and not self._slots.take(deadline - answer_seconds - time.monotonic()):
            raise httpx.PoolTimeout("every connection of this client is busy")
        try:
            sent.at = time.monotonic()
            left = deadline - sent.at
            if left < answer_seconds:  # sent now, a write cut short would be left unknown
                if free:
                    raise _TimeRanOut("the call's time ran out before it was sent")
                raise httpx.PoolTimeout("every connection of this client was busy too long")
            return self._http.request(method, path, timeout=left, **options)
        finally:
            self._slots.give_back()

    def _call(self, method: str, path: str, read: Callable[[Any], T] = _as_is, **options: Any) -> T:
        return self._answer(self._send(method, path, **options), read)

    def _money(self, path: str, body: dict[str, Any], idempotency_key: str | None) -> Operation:
        """Without a key, one is made here: a retry of this call (after a lost answer)
        carries it, so the write applies once."""
        key = new_key() if idempotency_key is None else idempotency_key
        ledger = self.ledger
        response = self._send(
            "POST", path, json=body, idempotency_key=key, key_is_callers=idempotency_key is not None
        )
        # A key made here is new: a replay under it is of this call's own first attempt,
        # whose answer was lost, and the call applied the write once, not again.
        replayed = (
            idempotency_key is not None and response.headers.get("idempotent-replayed") == "true"
        )
        return self._answer(
            response,
            lambda answer: operation_from(answer, ledger, replayed),
            keyed=idempotency_key is not None,
        )

    def _answer(
        self, response: httpx.Response, read: Callable[[Any], T], *, keyed: bool = False
    ) -> T:
        """The answer as `read` makes it of its JSON. One it cannot read (another
        server's, say) is bad_response, never a KeyError from deep in the client.
        `keyed`: a write's key is the caller's, to retry it under."""
        status = response.status_code
        if 300 <= status < 400:
            # What stands before the server sends the client elsewhere (http to https):
            # nothing went on to kopilka, which never redirects, so nothing was applied.
            where = redact_url(response.headers.get("location", ""))[:200] or "elsewhere"
            raise Unavailable(
                "bad_response",
                f"the server at {self.shown_url} answered {status}, a redirect (to {where!r})"
                " that kopilka never sends: check the URL; nothing was applied",
            )
        if status >= 400:
            error = error_from(status, _json(response), self.shown_url)
            refused_token = error.message in ("invalid token", "this token has been revoked")
            sent = response.request.headers.get("authorization", "")
            if (
                refused_token
                and self._token_file is not None
                and replaced_since(self._token_file, sent)
            ):
                # A server on `--db memory:` started again (its tokens anew), or any that
                # revoked the token it wrote before: not another home's.
                error = Unauthorized(
                    error.code,
                    f"{error.message} (the admin token in {self._token_file} was read before"
                    " the server started again and wrote a new one there: start again to"
                    " read it)",
                )
            elif error.message == "invalid token" and self._token_file is not None:
                # Read from a home whose server is not this one, most often: 'invalid
                # token' alone left the user to find which token was sent, and whence.
                error = Unauthorized(
                    error.code,
                    f"{error.message} (the admin token in {self._token_file}: is the server"
                    f" at {self.shown_url} another home's?)",
                )
            elif error.message == "this token has been revoked" and self._token_file is not None:
                error = Unauthorized(
                    error.code,
                    f"{error.message} (the admin token in {self._token_file}: the server"
                    " writes a new one there when it starts again)",
                )
            if error.code == "bad_response" and status >= 500:
                error = maybe_applied(response, error, keyed)
            elif status >= 500 and status != 503:
                # A defect's 500 may come after the commit: kopilka's own 503s say
                # what they know, any other 5xx knows nothing of the write.
                error = maybe_applied(
                    response,
                    type(error)(error.code, f"the server answered {status}: {error.message}"),
                    keyed,
                )
            # A refusal given again under the caller's key, as the embedded bank says.
            error.replayed = keyed and response.headers.get("idempotent-replayed") == "true"
            raise error
        answer = None if status == 204 else _json(response)
        try:
            return read(answer)
        # KopilkaError too: an amount in the answer that is no amount is the server's
        # fault, not one to lay at the user's door as if it were their input.
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, KopilkaError) as error:
            unread = Unavailable(
                "bad_response",
                f"the server at {self.shown_url} answered {status} with something"
                f" other than kopilka's answer ({type(error).__name__})",
            )
            raise maybe_applied(response, unread, keyed) from error

    # -- the Bank calls -------------------------------------------------------

    def deposit(
        self,
        client: str,
        amount_cents: int,
        description: str,
        idempotency_key: str | None = None,
    ) -> Operation:
        # Like the embedded shell, the first deposit opens the account.
        body = {
            "client": client,
            "amount": amount_text(amount_cents),
            "description": description,
            "open_account": True,
        }
        _sendable((client,), description, lambda k: Deposit(client, amount_cents, description, k))
        return self._money("/v1/deposits", body, idempotency_key)

    def withdraw(
        self,
        client: str,
        amount_cents: int,
        description: str,
        idempotency_key: str | None = None,
    ) -> Operation:
        body = {"client": client, "amount": amount_text(amount_cents), "description": description}
        _sendable((client,), description, lambda k: Withdraw(client, amount_cents, description, k))
        return self._money("/v1/withdrawals", body, idempotency_key)

    def transfer(
        self,
        from_client: str,
        to_client: str,
        amount_cents: int,
        description: str,
        idempotency_key: str | None = None,
    ) -> Operation:
        body = {
            "from": from_client,
            "to": to_client,
            "amount": amount_text(amount_cents),
            "description": description,
        }
        _sendable(
            (from_client, to_client),
            description,
            lambda key: Transfer(from_client, to_client, amount_cents, description, key),
        )
        return self._money("/v1/transfers", body, idempotency_key)

    def open_account(
        self,
        client: str,
        min_balance_cents: int = 0,
        max_balance_cents: int | None = None,
        opening_balance_cents: int = 0,
        idempotency_key: str = "",
    ) -> Account:
        _a_name(client)  # checked in the embedded rules' order: the name, then the rest
        body = opening_body(client, min_balance_cents, max_balance_cents, opening_balance_cents)
        # Without a key, under one made here, which its retries carry: a retry after an
        # answer lost is answered as the first try was (the account, and its opening
        # deposit, made once), not refused as account_exists with its outcome unknown.
        keyed = idempotency_key not in ("", None)
        read = self._account_reader()  # asks the token's ledger, if not known, before
        response = self._send(
            "POST",
            "/v1/accounts",
            json=body,
            idempotency_key=idempotency_key if keyed else new_key(),
            key_is_callers=keyed,
        )
        account = self._answer(response, read, keyed=keyed)
        # Opened before under the key given, as the embedded bank says it; a replay under
        # a key made here is of this call's own first try.
        account.replayed = keyed and response.headers.get("idempotent-replayed") == "true"
        return account

    def set_limits(
        self,
        client: str,
        min_balance_cents: int | None = None,
        max_balance_cents: int | None = None,
        clear_max: bool = False,
    ) -> Account:
        path = _account_path(client)  # the name first, as the rules take it
        change = SetLimits(client, min_balance_cents, max_balance_cents, clear_max)
        validate_client(change.client)
        validate_limits_change(change)
        body: dict[str, Any] = {}
        if min_balance_cents is not None:
            body["min_balance"] = limit_text(min_balance_cents, "floor")
        if clear_max:
            body["max_balance"] = None
        elif max_balance_cents is not None:
            body["max_balance"] = limit_text(max_balance_cents, "cap")
        # Under a key of its own, which its retries carry: a resend of a change that was
        # applied while its answer was lost then sets nothing again, where it would undo
        # a change made by someone else in between.
        return self._call(
            "PATCH",
            path,
            self._account_reader(),
            json=body,
            idempotency_key=new_key(),
            key_is_callers=False,
        )

    def account(self, client: str) -> Account:
        return self._call("GET", _account_path(client), self._account_reader())

    def _account_reader(self) -> Callable[[Any], Account]:
        ledger = self.ledger
        return lambda answer: account_from(answer, ledger)

    def accounts(self, wait_seconds: float | None = None, starting_with: str = "") -> list[Account]:
        # The wait is for every page together: each page given the whole of it, a bank of
        # 100,000 clients held a Tab of the shell over 2 s where it meant 1.
        deadline = None
        if wait_seconds is not None:
            deadline = time.monotonic() + positive_seconds(wait_seconds, "wait_seconds")
        account_reader = self._account_reader()

        def read(page: Any) -> tuple[list[Account], str | None]:
            next_after = page["next_after"]
            if not (next_after is None or isinstance(next_after, str)):
                raise TypeError("next_after is no name")
            return [account_reader(item) for item in page["accounts"]], next_after

        found: list[Account] = []
        after: str | None = None
        pages_read = 0
        beginning = "" if starting_with == "" else name_beginning(starting_with)
        if beginning is None:
            return found  # no name begins so
        if beginning:
            # Names come in order of code points: those that begin so are the beginning
            # itself, if a name, then the ones after it, up to the first that does not. A
            # page or two where every page was read (a Tab in a bank of 100,000 clients
            # got none). The page's `after` is a name: "Ann" for "Ann " ("Ann Lee").
            after = beginning.rstrip(" ")
            if after == beginning:
                left = None if deadline is None else deadline - time.monotonic()
                with contextlib.suppress(NotFound):
                    found.append(
                        self._call(
                            "GET",
                            _account_path(beginning),
                            self._account_reader(),
                            wait_seconds=left,
                        )
                    )
        while True:
            params = {"limit": "1000"} if after is None else {"limit": "1000", "after": after}
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                assert wait_seconds is not None  # the deadline's
                if not pages_read:  # not one page asked for: the wait was too short
                    raise out_of_time(wait_seconds)
                raise Unavailable(
                    "server_unreachable",
                    f"{no_answer_in_time(self.shown_url)}: not every account within"
                    f" {wait_seconds:g} s",
                )
            accounts, next_after = self._call(
                "GET", "/v1/accounts", read, params=params, wait_seconds=left
            )
            pages_read += 1
            if beginning:
                kept = [account for account in accounts if account.client.startswith(beginning)]
                found.extend(kept)
                if len(kept) < len(accounts):  # past the names it starts
                    return found
            else:
                found.extend(accounts)
            if next_after is None:
                return found
            # Names come in order (of code points, as kopilka's stores sort them): a page
            # that sends back for the same ones again would be asked for for ever.
            if after is not None and next_after <= after:
                raise Unavailable(
                    "bad_response",
                    f"the server at {self.shown_url} answered a page of accounts that does"
                    " not go past the one before it",
                )
            after = next_after

    def statement(self, client: str, since: datetime | None, till: datetime | None) -> Statement:
        # A time without an offset is UTC, as the server reads it and the embedded bank
        # takes it: the Statement says the moments it covers, offset and all. Without a
        # till, the server's now: this machine's clock may be behind the ledger's.
        since = None if since is None else period_end(since, "since")
        params = {"format": "json"}
        if till is not None:
            till = period_end(till, "till")
            params["till"] = till.isoformat(timespec="microseconds")
        if since is not None:
            params["since"] = since.isoformat(timespec="microseconds")

        def read(answer: Any) -> tuple[str, datetime, int, list[StatementLine]]:
            lines = [statement_line_from(line) for line in answer["lines"]]
            # The account's name as kept (in NFC), as the embedded bank gives it.
            return (
                text_from(answer["client"]),
                datetime.fromisoformat(answer["till"]),
                cents_from(answer["opening_balance"]),
                lines,
            )

        path = _account_path(client) + "/statement"
        kept_name, until, opening, lines = self._call("GET", path, read, params=params)
        return build_statement(kept_name, since, till or until, opening, lines)

    def execute_many(
        self, commands: Sequence[Command], idempotency_key: str | None = None
    ) -> list[Outcome]:
        """Money commands in one request (one engine batch); one outcome each, in order,
        a refusal as its error. Without a key, one is made here, as for one write.

        Items the server could not apply then (503: a piece of a long request failed
        with the database away) are sent again, the whole body under the same key, as a
        single write is retried: what was applied answers as it did, the rest applies.
        A command no batch can carry (an amount that is no whole cents, an account
        opening, limits) is refused in its place, as the embedded bank refuses it; the
        rest go. A `commands` that is no list or tuple is refused whole, nothing sent.
        """
        validate_command_list(commands)
        items: list[dict[str, Any]] = []
        outcomes: list[Outcome | None] = []  # None: sent, answered below
        for command in commands:
            try:
                items.append(batch_item(command))
                outcomes.append(None)
            except KopilkaError as error:
                outcomes.append(error)
        if len(items) > BATCH_REQUEST_OPERATIONS_MAX:  # the server would refuse it whole
            raise too_many_operations(len(items))
        sent = [position for position, outcome in enumerate(outcomes) if outcome is None]
        answered = self._send_batch(items, idempotency_key) if items else []
        for position, outcome in zip(sent, answered, strict=True):
            outcomes[position] = _in_the_callers_list(outcome, position)
        return [outcome for outcome in outcomes if outcome is not None]

    def _send_batch(
        self, items: list[dict[str, Any]], idempotency_key: str | None
    ) -> list[Outcome]:
        key = new_key() if idempotency_key is None else idempotency_key
        ledger = self.ledger

        def read(answer: Any) -> list[Outcome]:
            if len(answer["results"]) != len(items):  # bad_response, by _answer
                raise ValueError("not one result per operation")
            outcomes: list[Outcome] = []
            for result in answer["results"]:
                if "error" in result:
                    outcomes.append(error_from(result["status"], result, self.shown_url))
                else:
                    # A resent batch answers as it did, with no mark of a replay.
                    outcomes.append(operation_from(result["operation"], ledger, False))
            return outcomes

        body = {"operations": items}
        # Resends within the call's time, as a call's own retries are, each waiting for a
        # connection only while as much time is left as the send before took, from when
        # it went out (its wait for a connection is not the server's).
        deadline = time.monotonic() + self._timeout_seconds

        def send(
            sent: _SentAt, wait_seconds: float | None = None, answer_seconds: float | None = None
        ) -> list[Outcome]:
            response = self._send(
                "POST",
                "/v1/batch",
                json=body,
                # Every item is under a key of the caller's: sent again, under this key or
                # a new one, each answers as it did, so it is the key to retry under.
                idempotency_key=key,
                went_out=sent,
                wait_seconds=wait_seconds,
                answer_seconds=answer_seconds,
            )
            return self._answer(response, read, keyed=True)

        outcomes: list[Outcome] = []
        uncertain: KopilkaError | None = None
        needed = 0.0  # the time a resend's answer needs: as long as the last send took

        def unsettled() -> list[int]:
            return [i for i, o in enumerate(outcomes) if isinstance(o, Unavailable)]

        def sending() -> list[int]:
            """The batch sent, or its unsettled items sent again: those still unsettled."""
            nonlocal outcomes, uncertain, needed
            sent, first = _SentAt(), not outcomes  # a batch holds an item at least
            waiting = unsettled()
            try:
                answered = (
                    send(sent)
                    if first
                    else send(sent, wait_seconds=deadline - time.monotonic(), answer_seconds=needed)
                )
            except KopilkaError as error:
                if first:
                    raise
                if error.code == "outcome_unknown":  # the resend itself may have applied
                    for i in waiting:
                        outcomes[i] = error
                return []  # else the answers so far stand: what they applied, applied
            now = time.monotonic()
            # As a call's retry needs: a 503 answered at once says nothing of how long.
            needed = max(now - (sent.at or now), self._timeout_seconds * _FIRST_ANSWER_SHARE)
            uncertain = uncertain or sent.after_uncertain
            if first:
                outcomes = answered
            for i in waiting:
                # An item's "outcome unknown" is not undone by a later "nothing applied".
                if not (isinstance(answered[i], Unavailable) and _unknown(outcomes[i])):
                    outcomes[i] = answered[i]
            return unsettled()

        def no_more(state: RetryCallState) -> bool:
            # A resend answered as late as the last send would be cut short: the answers
            # so far stand.
            left = deadline - time.monotonic() - state.upcoming_sleep
            return state.attempt_number >= ATTEMPTS_MAX or left < needed

        Retrying(
            retry=retry_if_result(bool),  # items left unsettled
            wait=wait_exponential(multiplier=_FIRST_RETRY_DELAY_SECONDS),
            stop=no_more,
            retry_error_callback=lambda state: None,  # the answers so far stand
        )(sending)
        if uncertain is not None:
            # A send whose answer was lost may have applied them: an item later answered
            # "nothing was applied" is not known to be unapplied.
            for i, outcome in enumerate(outcomes):
                if isinstance(outcome, Unavailable) and not _unknown(outcome):
                    outcomes[i] = uncertain
        return outcomes

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/v1/health", _json_object)

    def whoami(self, wait_seconds: float | None = None) -> dict[str, Any]:
        """The caller as the server knows its token; Unauthorized for a bad one.
        `wait_seconds`: at most so long for the answer (the client's timeout otherwise)."""
        if wait_seconds is not None:
            wait_seconds = positive_seconds(wait_seconds, "wait_seconds")

        def read(answer: Any) -> dict[str, Any]:
            caller = _json_object(answer)
            if self._ledger is None:  # learnt by the way: the ledger unnamed requests go to
                self._ledger = _ledger_of(caller)
            return caller

        return self._call("GET", "/v1/whoami", read, wait_seconds=wait_seconds)

    # -- tokens (an admin token only) -----------------------------------------

    def create_token(
        self, role: str, client: str | None = None, ledger: str | None = None
    ) -> tuple[TokenInfo, str]:
        """A new token and its secret, which the server shows in this answer only. Its
        ledger, when None, is this client's: the one it names, else its token's."""
        _name_as_the_rules_take(client)
        if ledger is None and self._sandbox is not None:
            # Only an admin may make tokens at all: a teller or client is told so, as the
            # server would tell it, not sent to name a ledger first.
            own_role: object = "admin"  # not learnt (the server away): the advice stands
            with contextlib.suppress(KopilkaError):
                own_role = self.whoami().get("role")
            if own_role != "admin":
                raise Forbidden("forbidden", "only an admin token may manage tokens")
            # The request's ledger is the sandbox, to which no token is bound: said in
            # this call's words, not the header's and the body's the server would name.
            raise InvalidInput(
                "invalid_ledger",
                "a token is not bound to a sandbox, which lasts one session: give"
                " create_token its ledger (ledger=...)",
            )
        body = {"role": role, "client": client}
        if ledger is not None:  # else not sent: the server takes the request's ledger
            body["ledger"] = ledger
        # Not retried once sent: a second try would make a second token.

        def read(answer: Any) -> tuple[TokenInfo, str]:
            return token_from(answer), str(answer["secret"])

        return self._call("POST", "/v1/tokens", read, json=body, retry=False)

    def list_tokens(self) -> list[TokenInfo]:
        return self._call("GET", "/v1/tokens", lambda answer: [token_from(i) for i in answer])

    def revoke_token(self, token_id: str) -> None:
        """Revoke it (again, if it was already); NotFound when there is no such token."""
        if not isinstance(token_id, str):  # None, a number: it was an AttributeError
            raise NotFound("token_not_found", f"no token has the id {token_id!r}: an id is text")
        if token_id == "":  # an empty segment is no endpoint: the server's answer to no id
            raise NotFound("token_not_found", no_token_named(token_id))
        self._call("DELETE", "/v1/tokens/" + path_segment(token_id))

    def drop_sandbox(self) -> None:
        """Drop this client's sandbox, if it has one and it is not dropped yet (close()
        does it too, silently). Unavailable, in one line that says when the server drops
        it by itself, when it could not be dropped (the server down, say)."""
        self._drop_sandbox(closing=False)

    def _drop_sandbox(self, *, closing: bool) -> None:
        keeper, self._sandbox = self._sandbox, None
        if keeper is None:
            return
        try:
            keeper.stop()  # up to a while, its read under way on a server that hangs
            # Once, briefly: a server that does not answer drops it by itself when its
            # idle time is up, and leaving must not wait on it.
            self._call(
                "DELETE",
                "/v1/sandboxes/" + path_segment(keeper.ledger),
                retry=False,
                wait_seconds=SANDBOX_DROP_SECONDS,
                closing=closing,
            )
        except KeyboardInterrupt:
            self.sandbox_left = left_there(keeper, "may not have been dropped", "interrupted")
            raise
        except KopilkaError as error:
            if error.code == "sandbox_not_found":  # dropped already (idle too long)
                return
            unknown = error.code == "outcome_unknown"  # the DELETE may have been done
            cause = unknown_cause(error) if unknown else error.message
            dropped = "may not have been dropped" if unknown else "could not be dropped"
            raise Unavailable(error.code, left_there(keeper, dropped, cause)) from error

    @property
    def calls_handed(self) -> int:
        """How many calls this thread has made: taken before a write, a mark for
        `settle_interrupted` to find that write's own by."""
        latest: tuple[int, _Tries] | None = getattr(self._handed, "latest", None)
        return 0 if latest is None else latest[0]

    def settle_interrupted(self, interruption: BaseException, since: int) -> None:
        """Mark `interruption` (Ctrl-C) with what became of the call this thread made after
        `since` (`calls_handed` then), where that is known: none made, or none of its
        attempts sent (each connection refused, or none free), nothing was applied. One
        that may have gone out is not known until the server answers."""
        if settled(interruption) is not None:
            return
        latest: tuple[int, _Tries] | None = getattr(self._handed, "latest", None)
        count, tries = (0, None) if latest is None else latest
        if count == since:
            mark_settled(interruption, not_begun())
        elif count == since + 1 and tries is not None and tries.out == 0:
            mark_settled(interruption, not_sent())
        # More than one call since, or one that may have gone out: not known here.

    def close(self, *, waiting_for_writes: bool = True) -> None:
        """As the embedded bank closes: calls under way in other threads end first (up to
        the client's timeout), later ones are refused (client_closed); then the sandbox,
        if any, is dropped, and the connections closed. (A write given up is the server's,
        whatever `waiting_for_writes` says: nothing of it is waited for here.)"""
        if self._inherited is not None:
            self._close_inherited()
            return
        self._calls.close(self._close_wait_seconds)
        try:
            self._drop_sandbox(closing=True)
        except KopilkaError:
            pass  # the server drops an idle sandbox by itself; drop_sandbox() says so
        finally:
            self._http.close()

    def forked(self) -> None:
        """In a process forked from the one that made it, whose keep-alive connections
        it shares: requests of the two went out on the same sockets, and each process
        read answers to the other's. It is only marked here; its first call there takes
        connections of its own (`_take_own_connections`). Nothing is built in the fork's
        hook, which runs before a child's exec too (subprocess's preexec_fn): an SSL
        context made in a child of a process with threads may wait for ever on a lock
        one of them held, and an error there is only printed, the parent's pool kept.
        A sandbox stays the parent's session's, to keep and drop."""
        self._inherited = threading.Lock()  # its own: the parent's threads hold none
        if self._sandbox is not None:
            self._sandbox.forked()
            self._sandbox = None

    def _close_inherited(self) -> None:
        """close() in a forked child that made no call: nothing is built only to close it
        (an SSL context made there may wait for ever), and the inherited connections are
        the parent's to close; dropped, only this process's copies of their sockets close.
        Its sandbox is the parent's session's (`forked`)."""
        inherited = self._inherited
        if inherited is None:
            return
        with inherited:
            calls = CallsUnderWay()
            calls.close(0)
            self._calls = calls
            self._slots = ConnectionSlots(self._connections)
            # Left marked: a later call is refused (closed), and builds nothing either.
            self._closed_inherited = True

    def _take_own_connections(self) -> None:
        """In a forked child, once, before its first call: connections of its own. Those
        it inherited are not closed here, which would touch the parent's pool (its lock
        may have been held by one of its threads); dropped, only this process's copies
        of their sockets close."""
        inherited = self._inherited
        if inherited is None:
            return
        with inherited:
            if self._inherited is None or self._closed_inherited:  # taken, or closed here
                return
            old = self._http
            # Counts and locks of its own: the parent's may be held by threads not here.
            calls = CallsUnderWay()
            if old.is_closed:
                calls.close(0)
            else:
                self._http = _http_client(
                    self.url, old.headers, old.timeout, self._transport, self._connections
                )
            self._slots = ConnectionSlots(self._connections)
            self._calls = calls
            self._inherited = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def connect_bank(
    url: str,
    *,
    token: str | None = None,
    sandbox: bool = False,
    ledger: str | None = None,
    timeout_seconds: float = TIMEOUT_SECONDS,
    connections: int = CONNECTIONS_MAX,
) -> Client:
    """A Client for `url`; the token comes from the argument, KOPILKA_TOKEN, or admin.token
    (for a server on this machine). A token given empty is refused.

    `ledger` selects a ledger (Kopilka-Ledger); a sandbox is a fresh one, so the two are
    not given together.
    `timeout_seconds`: how long a call waits for the server, its retries included.
    `connections`: how many the client keeps for the threads that call it at once.
    """
    url = normalize_url(url)
    if type(sandbox) is not bool:  # "no" read from a file would open one
        raise InvalidInput("invalid_option", "sandbox is True or False")
    if sandbox and ledger is not None:  # as the shell refuses --sandbox with --ledger
        raise sandbox_and("ledger", python=True)
    if token is None:
        token = os.environ.get("KOPILKA_TOKEN")
    if token == "":
        # A token meant to be given (a variable left unset, say) is not the home's admin
        # token taken in its stead, with every right the narrower one lacked.
        raise empty_token()
    secret = _admin_token(url) if token is None else token
    options: dict[str, Any] = {
        "timeout_seconds": timeout_seconds,
        "connections": connections,
        "token_file": home() / ADMIN_TOKEN_FILE if token is None else None,  # as read
    }
    if not sandbox:
        return Client(url, secret, ledger=ledger, **options)
    with Client(url, secret, **options) as probe:
        try:
            ledger, idle_seconds = probe._call(
                "POST",
                "/v1/sandboxes",
                lambda answer: (str(answer["ledger"]), float(answer["idle_timeout_seconds"])),
                retry=False,
            )
        except Unavailable as error:
            if error.code != "outcome_unknown":
                raise
            # A sandbox made with its answer lost is one no one uses: the server drops
            # it when idle. Nothing is there to look at, and starting again is safe.
            cause = unknown_cause(error)
            raise Unavailable(
                "server_unreachable", f"{cause}; no sandbox session began: try again"
            ) from None
    client = Client(url, secret, ledger=ledger, **options)
    client._sandbox = SandboxKeeper(
        client,
        _http_client(client.url, client._http.headers, client._http.timeout),
        ledger,
        idle_seconds,
    )
    return client


def _http_client(
    url: str,
    headers: Mapping[str, str],
    timeout: httpx.Timeout,
    transport: httpx.BaseTransport | None = None,
    connections: int = CONNECTIONS_MAX,
) -> httpx.Client:
    # Every connection kept between calls: one closed after each call once more threads
    # than it kept were calling was opened again for the next (and each such opening of
    # a home's admin token reads the machine's table of sockets).
    limits = httpx.Limits(max_keepalive_connections=connections, max_connections=connections)
    try:
        if transport is None and on_this_machine(urlsplit(url).hostname or ""):
            # A server on this machine is reached directly, never through a proxy from
            # the environment (HTTP_PROXY): the token, the home's admin token perhaps,
            # would be handed to that proxy. A transport of its own reads no proxy
            # variables, and still the certificate ones (SSL_CERT_FILE).
            carries = headers.get("Authorization") in HOME_TOKEN_HEADERS
            transport = HomeTokenGuard(url if carries else None, limits=limits, trust_env=True)
        return httpx.Client(
            base_url=url, headers=headers, timeout=timeout, transport=transport, limits=limits
        )
    except (ImportError, ValueError, OSError) as error:  # made at once, from the variables
        raise environment_unusable(error) from None


def _admin_token(url: str) -> str:
    """The home's admin token, where it may go (client_home_token). Where the home holds
    none, no server there is said first: starting it writes one."""
    token = home_admin_token(url)
    if token is None:
        _refuse_if_unreachable(url)
        raise Unauthorized(
            "no_token",
            "no token: set KOPILKA_TOKEN, or start the server (again, if it runs) to write"
            f" {home() / ADMIN_TOKEN_FILE}",
        )
    return token


def _refuse_if_unreachable(url: str) -> None:
    """No server there is said before no token: starting it comes first (and writes the
    admin token a server on this machine is reached with)."""
    try:
        with _http_client(url, {}, httpx.Timeout(_PROBE_SECONDS)) as probe:
            probe.get("/v1/health")
    except httpx.ConnectError as error:
        raise unreachable(redact_url(url), error) from error
    except httpx.HTTPError:
        return  # something answers there, or may: the token is what is missing


def _unknown(outcome: Outcome) -> bool:
    return isinstance(outcome, KopilkaError) and outcome.code == "outcome_unknown"


def _connections(value: object) -> int:
    """How many connections a program asked its client to keep, or refused in one line."""
    if type(value) is int and 1 <= value <= CONNECTIONS_ALLOWED_MAX:
        return value
    raise InvalidInput(
        "invalid_option",
        f"connections is a whole number from 1 to {CONNECTIONS_ALLOWED_MAX}, not {quoted(value)}",
    )


def _speaks_of_the_write(response: httpx.Response, url: str) -> bool:
    """Whether an answer to a retry is the call's, after an attempt that may have applied:
    one that looked up the write's key or what it names (applied, given again, refused
    by the ledger's rules, which keep a refusal under its key, or nothing there to
    change: no such account or token). A refusal given before that (its token revoked or
    its sandbox dropped since, a body that came too slowly) says nothing of the earlier
    attempt."""
    if response.status_code < 400 or response.headers.get("idempotent-replayed") == "true":
        return True
    error = error_from(response.status_code, _json(response), url)
    return isinstance(error, (Rejected, Conflict)) or error.code in _NOTHING_OF_THAT_NAME


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _account_path(client: str) -> str:
    _a_name(client)
    if client == "":  # an empty segment is no endpoint: the rules' refusal, as embedded
        validate_client(client)
    return "/v1/accounts/" + path_segment(client)


def _sendable(
    names: tuple[object, ...], description: object, make: Callable[[str], MoneyCommand]
) -> None:
    """A command whose texts are no text at all (None), or that a request cannot carry (a
    lone surrogate, from undecodable bytes), or the rules refuse for their length,
    refused by the rules as the embedded bank refuses it; not the server's decoding
    error, an encoding error, nor a request refused for its size. The key is checked as
    a header's is, when sent (the command is made with a stand-in)."""
    names_fit = all(isinstance(name, str) and _fits(name, CLIENT_NAME_LENGTH_MAX) for name in names)
    description_fits = isinstance(description, str) and _fits(description, DESCRIPTION_LENGTH_MAX)
    if not (names_fit and description_fits):
        validate_money_command(make("key"))


def _a_name(client: object) -> None:
    """A client's name, before it goes into a path or a body: one that is no text at all
    (None, a number) refused as the embedded rules refuse it ("a client name is text"),
    not an AttributeError building the path; then as _name_as_the_rules_take."""
    if not isinstance(client, str):
        validate_client(client)
    _name_as_the_rules_take(client)


def _name_as_the_rules_take(client: object) -> None:
    """A name that is no printable text, or too long, refused here as the embedded bank
    refuses it: not sent (a lone surrogate cannot be; a long one would be refused for
    the length of its request)."""
    if isinstance(client, str) and not _fits(client, CLIENT_NAME_LENGTH_MAX):
        validate_client(normalize("NFC", client))


def _fits(text: str, length_max: int) -> bool:
    """Printable and, in NFC (as names are kept), not over `length_max`: text a request
    carries to the rules as they would take it."""
    return text.isprintable() and (
        len(text) <= length_max or len(normalize("NFC", text)) <= length_max
    )
