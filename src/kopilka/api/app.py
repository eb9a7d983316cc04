"""The ASGI application: one Engine behind every endpoint, started in the lifespan.

Money writes (deposits, withdrawals, transfers) take a lean path straight from
the ASGI scope: no middleware, one header scan, one msgspec decode, one engine
call, one encode. Everything else is routed in `handlers.py` with Starlette's
request and response helpers. No request is logged: a log line per request
would cost more than the request, and headers carry bearer tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Literal

import msgspec
from starlette.types import Receive, Scope, Send
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_fixed

from kopilka.api import handlers
from kopilka.api.admin_token import ensure_admin_token
from kopilka.api.auth import (
    TOKEN_CACHE_TTL_SECONDS,
    Principal,
    TokenCache,
    check_ledger,
    effective_role,
)
from kopilka.api.body_budget import BodyBudget
from kopilka.api.commands import command_from
from kopilka.api.errors import (
    DECODE_ERRORS,
    INTERNAL_ERROR,
    decode_error,
    error_body,
    error_headers,
    let_go,
)
from kopilka.api.json_keys import refuse_repeats
from kopilka.api.metrics import Metrics, result_of
from kopilka.api.metrics_share import DIRECTORY_VARIABLE as METRICS_DIRECTORY_VARIABLE
from kopilka.api.privacy import hide_payee, refusal_for_client
from kopilka.api.readiness import Readiness
from kopilka.api.request import (
    BODY_BYTES_MAX,
    BODY_SECONDS_MAX,
    RequestHeaders,
    key_to_settle,
    read_body,
)
from kopilka.api.sandbox import SANDBOX_IDLE_SECONDS, Sandboxes
from kopilka.api.schemas import DepositIn, TransferIn, WithdrawalIn, operation_out
from kopilka.client_keys import CLIENT_KEY_LENGTH_MAX
from kopilka.collector import settle_for_serving
from kopilka.domain.model import SANDBOX_PREFIX, MoneyCommand, Operation
from kopilka.domain.rules import validate_ledger_name
from kopilka.engine import Engine, EngineState
from kopilka.errors import (
    InvalidInput,
    KopilkaError,
    Unauthorized,
    Unavailable,
    database_away,
    stopped_before_answer,
)
from kopilka.limits import Limits
from kopilka.redaction import hide_secrets
from kopilka.settings import Settings
from kopilka.store import open_store
from kopilka.store.protocol import Store
from kopilka.supervision import end_with_supervisor

logger = logging.getLogger(__name__)

MoneyKind = Literal["deposit", "withdrawal", "transfer"]
_MONEY_PATHS: dict[str, MoneyKind] = {
    "/v1/deposits": "deposit",
    "/v1/withdrawals": "withdrawal",
    "/v1/transfers": "transfer",
}
# The money paths as clients send them, nothing percent-encoded: sent so, a path holds no
# encoded "/" (handlers.encodes_a_slash), and costs no count of its slashes.
_MONEY_PATHS_SENT = frozenset(path.encode() for path in _MONEY_PATHS)
# A worker started while the database is away tries to open it this often meanwhile.
DATABASE_RETRY_SECONDS = 1.0
# What a worker of `kopilka serve` meets while the database its supervisor opened is away
# (PostgreSQL down) or its SQLite file gone (restored soon, the operator told): it waits.
_AWAY = ("store_unavailable", "database_not_found")
_JSON = (b"content-type", b"application/json")
_REPLAYED = (b"idempotent-replayed", b"true")

_encoder = msgspec.json.Encoder()
_transfer_decoder = msgspec.json.Decoder(TransferIn)
_deposit_decoder = msgspec.json.Decoder(DepositIn)
_withdrawal_decoder = msgspec.json.Decoder(WithdrawalIn)


class KopilkaApp:
    def __init__(
        self,
        store: Store,
        *,
        limits: Limits | None = None,
        token_ttl_seconds: float = TOKEN_CACHE_TTL_SECONDS,
        sandbox_idle_seconds: float = SANDBOX_IDLE_SECONDS,
        admin_token_path: Path | None = None,
        body_seconds: float = BODY_SECONDS_MAX,
    ) -> None:
        self.store = store
        self.body_seconds = body_seconds
        self.admin_token_path = admin_token_path
        self.admin_token_created = False
        # A worker of `kopilka serve --workers`, whose supervisor found the database there:
        # one started again while it is away serves, answering 503 until it is back.
        # uvicorn's supervisor would stop every worker for a failed start-up; started
        # again and again, no worker would accept, and requests would hang in the
        # listening socket's queue.
        self.waits_for_database = False
        self._opening: asyncio.Task[None] | None = None  # meanwhile, tries to open it
        self.engine = Engine(store, limits)
        self.tokens = TokenCache(store, token_ttl_seconds)
        self.sandboxes = Sandboxes(store, sandbox_idle_seconds)
        self.metrics = Metrics(self.engine)
        self.large_bodies = BodyBudget()  # batch bodies being read, all together
        self.readiness = Readiness(self.engine)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["method"] == "POST":
                kind = _MONEY_PATHS.get(scope["path"])
                if kind is not None and (
                    scope.get("raw_path") in _MONEY_PATHS_SENT
                    or not handlers.encodes_a_slash(scope)
                ):
                    await self._money(scope, receive, send, kind)
                    return
            await handlers.dispatch(self, scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def start(self) -> None:
        """Open the store and start serving it; nothing is left open if this fails.

        `kopilka serve` calls it before the server's own start-up, to say in one line why
        it could not start; the lifespan start-up calls it otherwise (in each worker)."""
        if self.engine.state is not EngineState.CREATED:
            return
        await self.engine.start()
        try:
            if self.admin_token_path is not None:
                self.admin_token_created = await ensure_admin_token(
                    self.store, self.admin_token_path
                )
            self.sandboxes.start()
        except BaseException:
            await self.engine.close()
            raise

    async def stop(self) -> None:
        """Answer whatever is still queued, then close the store."""
        await self.sandboxes.close()
        await self.engine.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            try:
                message = await receive()
            except asyncio.CancelledError:
                # A second stop signal: uvicorn exits at once, sending no shutdown
                # message, and the loop's end cancels this wait. The requests in flight
                # were answered as stopped before their outcome was known; a traceback
                # would say nothing more.
                return
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except KopilkaError as error:
                    if not (self.waits_for_database and error.code in _AWAY):
                        await send({"type": "lifespan.startup.failed", "message": str(error)})
                        return
                    logger.warning(
                        "a worker started while the database is away (%s) answers 503"
                        " until it is back",
                        hide_secrets(error.message),
                    )
                    self._opening = asyncio.create_task(self._open_once_back())
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                self.metrics.start_sharing()  # a worker of several: its snapshots
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # uvicorn has stopped accepting and let requests in flight finish;
                # the engine now answers whatever is still queued, then closes the store.
                if self._opening is not None:  # a try cancelled leaves nothing open
                    self._opening.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._opening
                await self.stop()
                await self.metrics.stop_sharing()  # after the last batch is counted
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _open_once_back(self) -> None:
        """The store opened again every DATABASE_RETRY_SECONDS until it opens, whatever
        fails it: a task that ended would 503 for ever."""
        refused = ""

        def tell(state: RetryCallState) -> None:
            nonlocal refused
            assert state.outcome is not None
            error = state.outcome.exception()
            away = isinstance(error, KopilkaError) and error.code in _AWAY
            message = error.message if isinstance(error, KopilkaError) else repr(error)
            if not away and message != refused:
                refused = message  # back, and refused (a schema newer): said once
                logger.error("a worker cannot start: %s", hide_secrets(refused))

        await asyncio.sleep(DATABASE_RETRY_SECONDS)
        await AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_fixed(DATABASE_RETRY_SECONDS),
            before_sleep=tell,
        )(self.start)
        self._opening = None
        logger.warning("the database is available again: the worker serves")

    async def authorize(self, headers: RequestHeaders, *, writing: bool) -> tuple[Principal, str]:
        """The caller and the ledger it works in (Kopilka-Ledger, else its own).
        `writing`: the request would write, if authorized (not a GET). The store read
        for it (its token, its sandbox) failing, a write is told that nothing of it was
        applied, as the store tells a write of its own failure."""
        if self._opening is not None:  # every route with a token reads the store
            raise _as_told_to(database_away(), writing)
        try:
            principal = await self.tokens.authenticate(headers.authorization)
        except Unauthorized as refused:  # guessed tokens show, on every route
            self.metrics.refused_request(refused.code)
            raise
        except Unavailable as error:
            raise _as_told_to(error, writing) from None
        named = headers.ledger
        ledger = principal.ledger if named is None else ledger_of_header(named)
        check_ledger(principal, ledger)
        if ledger.startswith(SANDBOX_PREFIX):  # checked here: no coroutine per request
            try:
                await self.sandboxes.touch(ledger)
            except Unavailable as error:
                raise _as_told_to(error, writing) from None
        return principal, ledger

    async def confirm(self, principal: Principal) -> None:
        """The token still stands once the body is in (tokens.confirm); one revoked
        meanwhile is counted as a refused token, as at the headers, not as an operation.
        Only a write has a body: the store failing to say, it is told as a write."""
        try:
            await self.tokens.confirm(principal)
        except Unauthorized as refused:
            self.metrics.refused_request(refused.code)
            raise
        except Unavailable as error:
            raise _as_told_to(error, writing=True) from None

    async def _money(self, scope: Scope, receive: Receive, send: Send, kind: MoneyKind) -> None:
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = [_JSON]
        key = ""
        replayed = False  # a refusal given again, counted apart
        sandbox = False  # a sandbox's money is no business of the bank's: counted apart
        request_headers: RequestHeaders | None = None
        counted = True  # as an operation of its kind; a token refused is counted apart
        try:
            request_headers = RequestHeaders(scope)
            principal, ledger = await self.authorize(request_headers, writing=True)
            sandbox = ledger.startswith(SANDBOX_PREFIX)
            if scope["query_string"]:
                handlers.query_of(scope)  # a write takes no parameters: one given is refused
            body = await read_body(
                receive, request_headers.content_length, BODY_BYTES_MAX, self.body_seconds
            )
            if not self.tokens.standing(principal):  # revoked while the body came?
                await self.confirm(principal)
            # Tellers and admins first: only a client token needs its ledger looked at.
            client_caller = (
                principal.role == "client" and effective_role(principal, ledger) == "client"
            )
            # A client's key is refused, empty or too long, naming its own limit.
            key = (
                request_headers.key_or_new(CLIENT_KEY_LENGTH_MAX, client=True)
                if client_caller
                else request_headers.key_or_new()
            )
            command = money_command(kind, body, key, ledger, principal)
            (outcome,) = await self.engine.queue(command, principal.token_id)
            if isinstance(outcome, KopilkaError):
                if outcome.replayed:
                    headers.append(_REPLAYED)
                    replayed = True
                if client_caller:
                    assert principal.client is not None  # a client token names its client
                    raise refusal_for_client(outcome, principal.client)
                raise outcome
            assert isinstance(outcome, Operation)
            out = operation_out(outcome)
            if client_caller:
                hide_payee(out)
            status, payload, result = 201, _encoder.encode(out), result_of(outcome)
            if outcome.replayed:
                headers.append(_REPLAYED)
        except (KopilkaError, asyncio.CancelledError) as caught:
            # Cancelled: the server stopped and its drain ran out while this waited. It is
            # answered all the same (not a bare 500), with the key that settles it.
            error = caught if isinstance(caught, KopilkaError) else stopped_before_answer()
            status, payload = error.http_status, error_body(error)
            result = "replayed" if replayed else error.code
            if not sandbox and request_headers is not None:
                # Refused before the ledger was taken (a dropped sandbox, another's): the
                # sandbox it names is still where it was sent, not the bank's books.
                sandbox = request_headers.names_a_sandbox()
            # Refused for how it was sent, or for its token (at the headers, or revoked
            # while the body came): counted among the refused requests (where anyone
            # without a token could raise an operation's counts). Nor a body that never
            # came: the protocol counted its own refusal (a 408), or the client left.
            counted = (
                request_headers is not None
                and not isinstance(error, Unauthorized)
                and error.code != "disconnected"
            )
            headers.extend((name.encode(), value.encode()) for name, value in error_headers(error))
            if status == 503:  # applied or not may be unknown: a retry under this key settles it
                headers.append((b"idempotency-key", key_to_settle(key, request_headers)))
            let_go(error)
        except Exception:
            # A bug, answered in the API's form as on every other route (not the server's
            # bare text), with the key that settles it: it may have come after the commit.
            logger.exception("unexpected error on %s", scope["path"])
            status, payload, result = 500, INTERNAL_ERROR, "internal_error"
            headers.append((b"idempotency-key", key_to_settle(key, request_headers)))
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        if counted:
            self.metrics.operation(kind, result, sandbox=sandbox)
        self.metrics.latency(kind, time.perf_counter() - started)


def ledger_of_header(value: bytes) -> str:
    """The ledger a Kopilka-Ledger header names, checked (its schema in openapi.py)."""
    if not value.isascii():  # read as Latin-1, UTF-8 would name another
        raise InvalidInput(
            "invalid_ledger",
            "the Kopilka-Ledger header is printable ASCII text (a token bound to a"
            " ledger named otherwise reaches it without the header)",
        )
    ledger = value.decode("ascii")
    validate_ledger_name(ledger)
    return ledger


def _as_told_to(error: Unavailable, writing: bool) -> Unavailable:
    """The store's failure as the request is told it: a write, nothing of it applied."""
    if writing and error.to_a_write is not None:
        return error.to_a_write
    return error


def money_command(
    kind: MoneyKind, body: bytes, key: str, ledger: str, principal: Principal
) -> MoneyCommand:
    """Decode a body into a command, and check this caller may make it."""
    request: TransferIn | WithdrawalIn | DepositIn
    try:
        if kind == "transfer":
            request = _transfer_decoder.decode(body)
        elif kind == "withdrawal":
            request = _withdrawal_decoder.decode(body)
        else:
            request = _deposit_decoder.decode(body)
    except DECODE_ERRORS as error:
        raise decode_error(error, body) from None
    refuse_repeats(body, request)
    return command_from(request, key, ledger, principal)


def create_app(
    source: Settings | Store | str,
    *,
    limits: Limits | None = None,
    token_ttl_seconds: float = TOKEN_CACHE_TTL_SECONDS,
    sandbox_idle_seconds: float | None = None,
    admin_token_path: Path | None = None,
    creates_the_ledger: bool = True,
) -> KopilkaApp:
    """The app over settings (their db and body time), a store URL, or a store object.
    `creates_the_ledger` False: settings that name no ledger yet are refused when opened."""
    body_seconds = BODY_SECONDS_MAX
    idle_seconds = SANDBOX_IDLE_SECONDS
    if isinstance(source, Settings):
        store = open_store(source.db, create=creates_the_ledger)
        body_seconds = source.body_seconds
        idle_seconds = source.sandbox_idle_seconds
    elif isinstance(source, str):
        store = open_store(source)
    else:
        store = source
    if sandbox_idle_seconds is None:
        sandbox_idle_seconds = idle_seconds
    return KopilkaApp(
        store,
        limits=limits,
        token_ttl_seconds=token_ttl_seconds,
        sandbox_idle_seconds=sandbox_idle_seconds,
        admin_token_path=admin_token_path,
        body_seconds=body_seconds,
    )


def create_worker_app(settings: Settings, *, waits_for_database: bool = False) -> KopilkaApp:
    """The factory uvicorn calls in each worker process (`--workers N`), bound to the
    settings the supervisor merged at its start (functools.partial, handed to the worker
    with uvicorn's config through multiprocessing's pipe, never the environment, which
    any process of the user may read): no worker reads the config file or
    KOPILKA_DB_PASSWORD_FILE again, which may be a pipe read once (`--config <(...)`),
    or changed or gone by the time a worker is started again. `waits_for_database`: see
    KopilkaApp; for the supervisor's workers only (elsewhere no one has opened the
    database yet, and a mistyped one must fail the start, not serve 503 for ever)."""
    from uvicorn.config import STARTUP_FAILURE

    try:
        # The supervisor wrote the admin token and holds its lock for the server's life: a
        # worker started again after the token was revoked (its leak answered) would
        # otherwise find it not honoured, and stop the whole server.
        # The supervisor's workers open the ledger it opened: one whose file is gone
        # since is waited for (a restore), not made anew, empty, and called ready.
        app = create_app(settings, creates_the_ledger=not waits_for_database)
        app.waits_for_database = waits_for_database
        metrics_directory = os.environ.get(METRICS_DIRECTORY_VARIABLE)
        if metrics_directory:  # the supervisor's: /metrics answers every worker's counts
            app.metrics.share(Path(metrics_directory))
    except KopilkaError as error:
        # A store this worker cannot open: one line, and the status that has the
        # supervisor stop the server, not start this worker again and again, a traceback
        # each time.
        logger.error("a worker cannot start: %s", hide_secrets(error.message))
        raise SystemExit(STARTUP_FAILURE) from None
    settle_for_serving()  # the worker process is the server's own
    end_with_supervisor()
    return app


def create_app_from_environment() -> KopilkaApp:
    """A factory for another ASGI server (`granian --factory
    kopilka.api.app:create_app_from_environment`): the settings of the environment and
    config file, read in each of its processes."""
    from uvicorn.config import STARTUP_FAILURE

    from kopilka.settings import load_settings

    try:
        settings = load_settings({"db": os.environ.get("KOPILKA_DB")}, serving=True)
    except KopilkaError as error:
        logger.error("a worker cannot start: %s", hide_secrets(error.message))
        raise SystemExit(STARTUP_FAILURE) from None
    return create_worker_app(settings)


__all__ = ["KopilkaApp", "create_app", "create_app_from_environment", "create_worker_app"]
