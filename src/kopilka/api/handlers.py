"""Every endpoint but the three money writes: accounts, statements, batch, tokens, sandboxes.

Routing reads the raw path and unquotes each segment on its own, so a client
name may hold any character, "/" included (sent as %2F).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote_to_bytes

import msgspec
from starlette.datastructures import QueryParams
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from kopilka.api import openapi
from kopilka.api.auth import (
    Principal,
    check_client,
    check_ledger,
    effective_role,
    make_token,
    require_role,
)
from kopilka.api.batch_items import (
    Malformed,
    decode_batch,
    item_error,
    item_kind,
    key_made_for,
    made_key_reused,
)
from kopilka.api.commands import command_from
from kopilka.api.errors import (
    DECODE_ERRORS,
    INTERNAL_ERROR,
    ApiError,
    decode_error,
    error_body,
    error_detail,
    error_headers,
    let_go,
    method_not_allowed,
    not_found_route,
)
from kopilka.api.json_keys import refuse_repeats
from kopilka.api.metrics import CONTENT_TYPE, result_of
from kopilka.api.privacy import hide_payee, refusal_for_client
from kopilka.api.request import (
    BATCH_BODY_BYTES_MAX,
    BODY_BYTES_MAX,
    RequestHeaders,
    key_to_settle,
    read_body,
)
from kopilka.api.schemas import (
    AccountPage,
    BatchIn,
    BatchItem,
    BatchOut,
    BatchResult,
    HealthOut,
    OpenAccountIn,
    SandboxIn,
    SandboxOut,
    SetLimitsDigest,
    SetLimitsIn,
    TokenIn,
    TokenOut,
    WhoAmIOut,
    account_out,
    operation_out,
)
from kopilka.api.statement_stream import (
    Totals,
    adding_up,
    csv_statement,
    json_statement,
    read_ahead,
)
from kopilka.client_keys import CLIENT_KEY_LENGTH_MAX, client_key
from kopilka.clock import iso_text
from kopilka.domain.model import (
    SANDBOX_PREFIX,
    Account,
    ClaimKey,
    Command,
    OpenAccount,
    Operation,
    SetLimits,
    client_name,
)
from kopilka.domain.rules import (
    IDEMPOTENCY_KEY_LENGTH_MAX,
    refuse_what_no_store_reads,
    validate_client,
    validate_ledger_name,
)
from kopilka.errors import (
    Forbidden,
    InvalidInput,
    KopilkaError,
    NotFound,
    Unauthorized,
    stopped_before_answer,
    without_key_advice,
)
from kopilka.idempotency import sendable_key
from kopilka.money import parse_cents, parse_limit
from kopilka.periods import parse_period
from kopilka.tokens import Role, TokenRecord, is_token_id, no_token_named, without_secrets

if TYPE_CHECKING:
    from kopilka.api.app import KopilkaApp

logger = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
# A request body's shape: a flat Struct, as refuse_repeats reads it.
RequestBody = TypeVar("RequestBody", bound=msgspec.Struct)
ACCOUNTS_PAGE_MAX = 1_000


# "...T10:00:00 01:00": an offset whose "+" was sent as is, which a query reads as a space.
_OFFSET_SENT_UNESCAPED = re.compile(r"\d \d{2}(?::?\d{2})?$", re.ASCII)
# A "%" that begins no escape (URIs allow it only before two hex digits): read as itself,
# one account had two paths ("%zz" and "%25zz"), which a proxy in front may read apart.
_BROKEN_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def decoded(body: bytes, kind: type[RequestBody]) -> RequestBody:
    """A request body as `kind`, or the refusal of it (unknown fields, wrong types)."""
    try:
        request = msgspec.json.decode(body, type=kind)
    except DECODE_ERRORS as error:
        raise decode_error(error, body) from None
    refuse_repeats(body, request)
    return request


def json_response(value: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status_code=status, media_type="application/json")


def error_response(error: KopilkaError) -> Response:
    return Response(
        error_body(error),
        status_code=error.http_status,
        media_type="application/json",
        headers=dict(error_headers(error)),
    )


def _keyed(scope: Scope) -> bool:
    """Whether the caller holds the request's key: its own, or a batch's, whose answer
    names the one made for it."""
    return scope["path"] == "/v1/batch" or any(
        name == b"idempotency-key" for name, _ in scope["headers"]
    )


def _an_account_write(scope: Scope) -> bool:
    """An account's opening (POST /v1/accounts) or limits change (PATCH of one)."""
    method, path = scope["method"], str(scope["path"])
    return (method == "POST" and path.rstrip("/") == "/v1/accounts") or (
        method == "PATCH" and path.startswith("/v1/accounts/")
    )


def path_segments(scope: Scope) -> list[str]:
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    if _BROKEN_ESCAPE.search(raw):
        raise ApiError(400, "invalid_path", _broken_escape("path"))
    try:
        return [unquote_to_bytes(part).decode() for part in raw.split(b"/")[1:]]
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_path", "the path is not valid UTF-8") from None


def _broken_escape(where: str) -> str:
    return f"a '%' in the {where} begins an escape of two hex digits: a '%' itself is %25"


def encodes_a_slash(scope: Scope) -> bool:
    """Whether the path sent a "/" percent-encoded (%2F): inside a segment, as routing
    reads it, where the decoded path would show another route."""
    raw: bytes | None = scope.get("raw_path")
    return raw is not None and raw.count(b"/") != scope["path"].count("/")


def _as_sent(scope: Scope) -> str:
    """The path as the client sent it, percent-encoding and all (decoded, /v1%2Fbatch
    would read as an endpoint that exists)."""
    raw: bytes | None = scope.get("raw_path")
    return scope["path"] if raw is None else raw.decode("ascii", "replace")


async def _no_body() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing


def _latency_kind(path: str) -> str:
    """A batch and a statement take their time by their size: kept apart from the rest
    (probes, reads, scrapes), whose latency theirs would hide."""
    if path == "/v1/batch":
        return "batch"
    return "statement" if path.endswith("/statement") else "other"


async def dispatch(app: KopilkaApp, scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    try:
        response = await _route(app, scope, receive)
    except KopilkaError as error:
        # PostgreSQL lost while a write committed: a key made here is no key to retry by.
        response = error_response(error if _keyed(scope) else without_key_advice(error))
        let_go(error)
    except asyncio.CancelledError:  # the server's drain ran out: answered all the same
        reads_only = scope["method"] in ("GET", "HEAD")  # nothing a read could have applied
        stopped = stopped_before_answer(reads_only=reads_only, keyed=_keyed(scope))
        response = error_response(stopped)
    except Exception:  # a bug: answer 500 without echoing anything of the request
        # %r: a path is the client's text, and may hold line breaks or escape sequences.
        logger.exception("unexpected error on %r", without_secrets(scope["path"])[:200])
        response = Response(INTERNAL_ERROR, 500, media_type="application/json")  # a bug
    if response.status_code == 503 and scope["path"] == "/v1/batch":
        # Applied or not may be unknown, as for a single write: the key that settles it.
        made = scope.get(_BATCH_KEY, "")  # the one its items' keys were made of, if any
        key = key_to_settle(made, RequestHeaders(scope))
        response.headers["idempotency-key"] = key.decode("latin-1")
    elif response.status_code == 503 and _an_account_write(scope):
        # An opening or a limits change under a key of the caller's: that key settles it.
        own = RequestHeaders(scope).idempotency_key
        if own is not None:
            response.headers["idempotency-key"] = own.decode("latin-1")
    if scope["method"] == "HEAD" and isinstance(response, StreamingResponse):
        # Answered as the GET, whose status a stream settles before its first chunk (a
        # statement reads ahead for it). The rest no one receives, and with nothing
        # written a caller gone is never noticed: the stream is not run at all.
        response.body_iterator = _no_body()
    try:
        await response(scope, receive, send)
    except KopilkaError:
        # A streamed answer (a statement) whose store went away after its 200 went out.
        # Returning without its last chunk makes the server close the connection, so
        # the client sees it cut short, never a shorter answer that looks whole; the
        # store has logged the outage, once.
        return
    except asyncio.CancelledError:
        # The server stopped, and its drain time ran out while an answer was still
        # being sent (a client that does not read it): cut short the same way, and
        # said by the server in its one line, not in a traceback of this task.
        return
    app.metrics.latency(_latency_kind(scope["path"]), time.perf_counter() - started)


# Where a batch leaves its key in the request's scope, for its answer's 503.
_BATCH_KEY = "kopilka.batch_key"


async def _route(app: KopilkaApp, scope: Scope, receive: Receive) -> Response:
    # HEAD is GET without the body (HTTP requires a server to take both); the server
    # protocol leaves the body out.
    method: str = "GET" if scope["method"] == "HEAD" else scope["method"]
    segments = path_segments(scope)
    headers = RequestHeaders(scope)  # bounds header size on every route
    public = await _public(app, method, segments)
    if public is not None:
        return public
    # An empty segment (a slash at the end, or two) names no account, token or sandbox:
    # `/v1/accounts/` is most likely the listing mistyped, not a nameless client's.
    if not segments or segments[0] != "v1" or len(segments) < 2 or "" in segments:
        raise not_found_route(_as_sent(scope))
    call = Call(app, scope, receive, headers)
    match segments[1:]:
        # A name in the path is checked once the method is known to be taken.
        case ["accounts"]:
            return await call.on(
                method, reads_query=True, GET=call.list_accounts, POST=call.open_account
            )
        case ["accounts", name]:
            return await call.on(
                method,
                GET=lambda: call.account(_path_client(name)),
                PATCH=lambda: call.set_limits(_path_client(name)),
            )
        case ["accounts", name, "statement"]:
            return await call.on(
                method, reads_query=True, GET=lambda: call.statement(_path_client(name))
            )
        case ["batch"]:
            return await call.on(method, POST=call.batch, refused=call.count_refused_whole)
        case ["sandboxes"]:
            return await call.on(method, POST=call.create_sandbox)
        case ["sandboxes", ledger]:
            return await call.on(method, DELETE=lambda: call.drop_sandbox(ledger))
        case ["tokens"]:
            return await call.on(method, GET=call.list_tokens, POST=call.create_token)
        case ["whoami"]:
            return await call.on(method, GET=call.whoami)
        case ["tokens", token_id]:
            return await call.on(method, DELETE=lambda: call.revoke_token(token_id))
        case ["deposits"] | ["withdrawals"] | ["transfers"]:
            raise method_not_allowed(scope["method"], scope["path"], ("POST",))
    raise not_found_route(_as_sent(scope))


def _path_client(segment: str) -> str:
    """A client named in a path, checked as any name is before it reaches the store."""
    client = client_name(segment)
    validate_client(client)
    return client


_PUBLIC_PATHS = (["v1", "health"], ["v1", "ready"], ["metrics"], ["openapi.json"], ["docs"])


async def _public(app: KopilkaApp, method: str, segments: list[str]) -> Response | None:
    """Endpoints without a token: health, readiness, metrics, the API description."""
    if method != "GET":
        if segments in _PUBLIC_PATHS:
            raise method_not_allowed(method, "/" + "/".join(segments), ("GET",))
        return None
    if segments == ["v1", "health"]:
        return json_response(HealthOut(status="ok", engine=app.engine.state.value))
    if segments == ["v1", "ready"]:
        await app.readiness.check()
        return json_response(HealthOut(status="ready", engine=app.engine.state.value))
    if segments == ["metrics"]:
        return Response(app.metrics.render(), media_type=CONTENT_TYPE)
    if segments == ["openapi.json"]:
        return Response(openapi.document_bytes(), media_type="application/json")
    if segments == ["docs"]:
        return HTMLResponse(openapi.docs_html())
    return None


def query_of(scope: Scope, *known: str) -> QueryParams:
    """The query's parameters, each of `known` at most once. An unknown one (a typo such
    as `sinse`, or a `dry_run` given to a write) or one given twice is refused, as an
    unknown body field or a header given twice is: it would pass silently, or count by
    chance."""
    if _BROKEN_ESCAPE.search(scope["query_string"]):
        raise ApiError(400, "invalid_request", _broken_escape("query"))
    try:  # strictly: bytes that are no UTF-8 are refused, as in the path, not replaced
        pairs = parse_qsl(
            scope["query_string"].decode("latin-1"), keep_blank_values=True, errors="strict"
        )
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_request", "the query is not valid UTF-8") from None
    query = QueryParams(pairs)
    names = query.keys()
    for name in names:
        if name not in known:
            takes = f"known: {', '.join(known)}" if known else "this request takes none"
            raise InvalidInput(
                "invalid_request",
                f"unknown query parameter {without_secrets(name)[:50]!r} ({takes})",
            )
    if len(names) != len(query.multi_items()):
        twice = next(name for name in names if len(query.getlist(name)) > 1)
        raise InvalidInput("invalid_request", f"query parameter {twice!r} given twice")
    return query


class Call:
    """One authenticated request to a non-hot endpoint."""

    def __init__(
        self, app: KopilkaApp, scope: Scope, receive: Receive, headers: RequestHeaders
    ) -> None:
        self.app = app
        self.scope = scope
        self.receive = receive
        self.headers = headers
        self.principal: Principal
        self.ledger: str

    async def on(
        self,
        method: str,
        *,
        reads_query: bool = False,
        refused: Callable[[KopilkaError], None] | None = None,
        **handlers: Callable[[], Awaitable[Response]],
    ) -> Response:
        """The handler of `method`; `reads_query`: its GET's handler takes parameters (and
        checks them itself). Any other request takes none: one given is refused.
        `refused`: told of a refusal before the handler runs (its ledger, its query)."""
        handler = handlers.get(method)
        if handler is None:
            raise method_not_allowed(self.scope["method"], self.scope["path"], tuple(handlers))
        try:
            self.principal, self.ledger = await self.app.authorize(
                self.headers, writing=method != "GET"
            )
            if self.scope["query_string"] and not (reads_query and method == "GET"):
                query_of(self.scope)
        except KopilkaError as error:
            if refused is not None:
                refused(error)
            raise
        response: Response = await handler()
        return response

    async def body(self, bytes_max: int | None = None) -> bytes:
        bytes_max = bytes_max or BODY_BYTES_MAX
        body = await read_body(
            self.receive,
            self.headers.content_length,
            bytes_max,
            self.app.body_seconds,
            # A single write's small body needs none: 2,048 connections hold 128 MiB of them.
            self.app.large_bodies if bytes_max > BODY_BYTES_MAX else None,
        )
        await self.app.confirm(self.principal)
        return body

    async def decode(self, kind: type[RequestBody], bytes_max: int | None = None) -> RequestBody:
        return decoded(await self.body(bytes_max), kind)

    def query(self, *known: str) -> QueryParams:
        return query_of(self.scope, *known)

    async def outcome(self, command: Command, claim: ClaimKey | None) -> Account:
        # A name no store can look up (a NUL) is the rules' to refuse, as a money write's
        # is: a store's refusal of its text ("invalid_text", PostgreSQL's) came first.
        refuse_what_no_store_reads(command)
        (outcome,) = await self.app.engine.submit_many([command], claim, self.principal.token_id)
        if isinstance(outcome, KopilkaError):
            raise outcome
        assert isinstance(outcome, Account)
        return outcome

    # -- accounts -------------------------------------------------------------

    async def open_account(self) -> Response:
        require_role(
            self.principal,
            self.ledger,
            "admin",
            "teller",
            who="tellers and admins open accounts",
        )
        request: OpenAccountIn = await self.decode(OpenAccountIn)
        # Named as the shell names them in its refusals.
        floor = parse_limit(request.min_balance, "floor")
        if floor < 0 and effective_role(self.principal, self.ledger) != "admin":
            # An overdraft is credit the bank gives: a limit, which only an admin sets.
            # A teller who could open one could also pay it out at once.
            raise Forbidden(
                "forbidden",
                "a teller token may not open an account with a floor below zero:"
                " an admin sets an overdraft",
            )
        cap = None if request.max_balance is None else _cap_given(request.max_balance)
        # A negative one is the rules' to refuse, in the words the shell gets.
        opening = parse_cents(
            request.opening_balance, allow_negative=True, allow_zero=True, what="opening balance"
        )
        key = self.headers.key_or_new()
        # The name in its digest as the ledger keeps it (NFC): spelt decomposed, it is
        # the same opening, as it is to the embedded bank, and as the route of limits is.
        named = msgspec.structs.replace(request, client=client_name(request.client))
        # Kept before under the name as it was sent: still the same request.
        earlier = (request,) if named != request else ()
        account = await self.outcome(
            OpenAccount(request.client, floor, cap, self.ledger, opening, key),
            self._claim(
                key,
                named,
                b"POST /v1/accounts\n",
                earlier=earlier,
                opening_of=named.client,
                opening_cents=opening,
            ),
        )
        if opening > 0:  # posted as a deposit: counted as one, a replay apart
            result = "replayed" if account.replayed else "ok"
            sandbox = self.ledger.startswith(SANDBOX_PREFIX)
            self.app.metrics.operation("deposit", result, sandbox=sandbox)
        response = json_response(account_out(account), 201)
        if account.replayed:  # said as a money write's replay says it: nothing opened anew
            response.headers["idempotent-replayed"] = "true"
        return response

    async def set_limits(self, client: str) -> Response:
        require_role(self.principal, self.ledger, "admin", who="an admin changes limits")
        request: SetLimitsIn = await self.decode(SetLimitsIn)
        given_floor = request.min_balance if isinstance(request.min_balance, str) else None
        floor = None if given_floor is None else parse_limit(given_floor, "floor")
        clear_max = request.max_balance is None
        cap = None
        if isinstance(request.max_balance, str):
            cap = _cap_given(request.max_balance)
        route = f"PATCH /v1/accounts/{client_name(client)}\n".encode()
        account = await self.outcome(
            SetLimits(client, floor, cap, clear_max, self.ledger),
            self._claim(
                self.headers.key_or_new(),
                SetLimitsDigest(given_floor, request.max_balance),
                route,
            ),
        )
        response = json_response(account_out(account))
        if account.replayed:  # nothing set again, said as a money write's replay says it
            response.headers["idempotent-replayed"] = "true"
        return response

    async def account(self, client: str) -> Response:
        check_client(self.principal, self.ledger, client)
        account = await self.app.engine.get_account(
            self.ledger, client, sees_every_account=self._sees_every_account()
        )
        return json_response(account_out(account))

    async def list_accounts(self) -> Response:
        require_role(
            self.principal,
            self.ledger,
            "admin",
            "teller",
            who="tellers and admins list accounts",
        )
        query = self.query("limit", "after")
        text = query.get("limit", "100")
        # Plain ASCII digits only: int() would also take " 5", "1_0" and other scripts' digits.
        digits = text.lstrip("0") or "0"  # "0000001" is 1, not a number too long to read
        if not (text.isascii() and text.isdigit() and len(digits) <= 6):
            raise InvalidInput(
                "invalid_limit", f"limit must be a whole number 1 to {ACCOUNTS_PAGE_MAX}"
            )
        limit = int(digits)
        if not 1 <= limit <= ACCOUNTS_PAGE_MAX:
            raise InvalidInput("invalid_limit", f"limit must be 1 to {ACCOUNTS_PAGE_MAX}")
        after = query.get("after")
        if after is not None:  # given empty, it is refused as an empty name, as ` ` is
            # Compared with the names as kept, not made NFC: a page ending on a name kept
            # in another form (an upgrade's twin) went on from the NFC form, past names
            # between the two. Measured in NFC all the same, as every name is.
            validate_client(client_name(after))
        # One more than the page: a last page that is full says so (no next_after), not
        # sends the caller for a page with nothing on it.
        accounts = await self.app.engine.list_accounts(
            self.ledger, after_client=after, limit=limit + 1
        )
        accounts, more = accounts[:limit], len(accounts) > limit
        next_after = accounts[-1].client if more else None
        return json_response(AccountPage([account_out(a) for a in accounts], next_after))

    def _sees_every_account(self) -> bool:
        """Not a client token: its own name may differ from another's only in case."""
        return effective_role(self.principal, self.ledger) != "client"

    async def statement(self, client: str) -> Response:
        check_client(self.principal, self.ledger, client)
        query = self.query("since", "till", "format")
        form = query.get("format", "json").lower()  # as the shell takes it: CSV too
        if form not in ("json", "csv"):
            raise InvalidInput("invalid_format", "format must be json or csv")
        # A server has no "user's zone": a time without an offset is UTC here.
        try:
            since, till = parse_period(query.get("since"), query.get("till"), zone=UTC)
        except InvalidInput as refused:
            given = (query.get("since") or "", query.get("till") or "")
            if any(_OFFSET_SENT_UNESCAPED.search(text) for text in given):
                raise InvalidInput(
                    refused.code,
                    f"{refused.message} (a '+' in a URL's query reads as a space: send it as %2B)",
                ) from None
            raise
        engine = self.app.engine
        up_to_now = query.get("till") is None  # now as the ledger has it: the engine's
        header = await engine.statement_header(
            self.ledger,
            client,
            since,
            None if up_to_now else till,
            sees_every_account=self._sees_every_account(),
        )
        account = header.account
        totals = Totals(header.opening_cents)
        ledger, store = self.ledger, engine.store

        async def dropped() -> bool:
            return not await store.sandbox_is_open(ledger)

        lines = await read_ahead(
            adding_up(
                engine.statement_lines(header, since),
                account,
                totals,
                header.closing_cents,
                dropped if ledger.startswith(SANDBOX_PREFIX) else None,
            ),
            engine.limits.statement_page_rows,
        )
        if form == "csv":
            return StreamingResponse(csv_statement(lines), media_type="text/csv")
        return StreamingResponse(
            json_statement(lines, account, totals, since, header.till),
            media_type="application/json",
        )

    # -- batch ----------------------------------------------------------------

    async def batch(self) -> Response:
        role = effective_role(self.principal, self.ledger)  # every item is the same caller's
        try:
            items, as_decoded = decode_batch(await self.body(BATCH_BODY_BYTES_MAX))
            # Each item's key is KEY:INDEX, and must itself fit the length of a key.
            suffix_length = len(f":{max(len(items) - 1, 0)}")  # empty: as one of one
            client = role == "client"
            length_max = CLIENT_KEY_LENGTH_MAX if client else IDEMPOTENCY_KEY_LENGTH_MAX
            prefix = self.headers.key_or_new(length_max - suffix_length, client=client)
        except KopilkaError as refused:  # whole: counted nowhere, its importer unseen
            self.count_refused_whole(refused)
            raise
        self.scope[_BATCH_KEY] = prefix
        # Every item counted by kind and result, as a single request is: here, and handed
        # to the metrics once per batch, not once per item.
        counts: Counter[tuple[str, str]] = Counter()
        try:
            return await self._batch_items(items, as_decoded, prefix, role, counts)
        finally:
            sandbox = self.ledger.startswith(SANDBOX_PREFIX)
            for (kind, result), count in counts.items():
                self.app.metrics.operation(kind, result, count, sandbox=sandbox)

    def count_refused_whole(self, refused: KopilkaError) -> None:
        """A batch refused before any item was read, once: not a token's refusal or a
        connection the protocol refused and closed (each counted already, the app then
        told only that the client went); a sandbox's apart from the bank's, that named in
        the header where the batch was refused before its ledger was taken."""
        if isinstance(refused, Unauthorized) or refused.code == "disconnected":
            return
        ledger: str | None = getattr(self, "ledger", None)  # set once the token is read
        if self.headers.names_a_sandbox() if ledger is None else ledger.startswith(SANDBOX_PREFIX):
            self.app.metrics.operation("batch", refused.code, sandbox=True)
        else:
            self.app.metrics.refused_request(refused.code)

    async def _batch_items(
        self,
        items: list[BatchItem | Malformed],
        as_decoded: BatchIn | bytes,
        prefix: str,
        role: Role,
        counts: Counter[tuple[str, str]],
    ) -> Response:
        ledger, principal = self.ledger, self.principal
        results: list[BatchResult | None] = [None] * len(items)
        commands: list[Command] = []
        positions: list[int] = []
        # A key made for an item (KEY:INDEX) that another item gives as its own: the item
        # with the same body would be answered as that one, applied once and told twice.
        given_keys = {
            item.idempotency_key
            for item in items
            if not isinstance(item, Malformed) and item.idempotency_key is not None
        }
        for index, item in enumerate(items):
            if isinstance(item, Malformed):
                counts[item.kind, item.error.code] += 1
                results[index] = BatchResult(item.error.http_status, error=error_detail(item.error))
                continue
            try:
                # Each item goes through the very checks of its single-operation endpoint,
                # its key those of a header's. An empty key is one gone missing, not "no
                # key": the rules refuse it (command_from, before any store sees it).
                given = item.idempotency_key
                key = f"{prefix}:{index}" if given is None else sendable_key(given)
                if given is None and key in given_keys:
                    raise made_key_reused(key)
                commands.append(command_from(item, key, ledger, principal, role))
                positions.append(index)
            except KopilkaError as error:
                counts[item_kind(item), error.code] += 1
                if isinstance(error, InvalidInput):  # bad input: which item, and where
                    error = item_error(error, index)
                results[index] = BatchResult(error.http_status, error=error_detail(error))
        # A client caller's: its claim is kept under its own mark, as its items' keys are.
        client = principal.client if role == "client" else None
        claimed = prefix if client is None else client_key(client, prefix)
        try:
            outcomes = await self.app.engine.submit_many(
                commands, self._claim(claimed, as_decoded, made_too=True), principal.token_id
            )
        except KopilkaError as error:  # the whole batch (the database away, its key reused)
            for index in positions:
                counts[item_kind(items[index]), error.code] += 1
            if client is not None:
                error = refusal_for_client(error, client)  # its key as the client sent it
            raise error
        client_caller = client is not None
        for index, outcome in zip(positions, outcomes, strict=True):
            if isinstance(outcome, KopilkaError):
                counts[item_kind(items[index]), result_of(outcome)] += 1
                if client is not None:
                    outcome = refusal_for_client(outcome, client)
                if outcome.code == "idempotency_key_reused" and key_made_for(items[index]):
                    outcome = made_key_reused(f"{prefix}:{index}")
                if isinstance(outcome, InvalidInput) and not outcome.of_the_batch:
                    outcome = item_error(outcome, index)  # bad input the rules found: where
                results[index] = BatchResult(outcome.http_status, error=error_detail(outcome))
            else:
                assert isinstance(outcome, Operation)
                out = operation_out(outcome)
                results[index] = BatchResult(
                    201, operation=hide_payee(out) if client_caller else out
                )
                counts[outcome.kind, result_of(outcome)] += 1
        response = json_response(BatchOut([r for r in results if r is not None]))
        if any(r is not None and r.status == 503 for r in results):
            # Pieces after one that failed whole were not applied: resent under this
            # key, the batch applies them, and the rest answer as they did.
            response.headers["idempotency-key"] = prefix
        return response

    def _claim(
        self,
        key: str,
        request: msgspec.Struct | bytes,
        route: bytes = b"",
        *,
        made_too: bool = False,
        earlier: tuple[msgspec.Struct, ...] = (),
        opening_of: str = "",
        opening_cents: int = 0,
    ) -> ClaimKey | None:
        """The claim of a write's Idempotency-Key for its body (as decoded) and route: the
        same key then replays the first answer, and with another body is refused whole.
        A batch's items replay by their own keys; a batch has no route in its digest, as
        digests kept before other writes took claims had none. A key the server made is
        new, and is claimed only `made_too`: a batch's, which an answer with a 503 among
        its items hands back to resend the same body under. `earlier`: the same request
        as earlier versions digested it, whose kept keys it replays too. `opening_of`: the
        client an opening's claim opens, with its opening balance (ClaimKey.opening_of)."""
        if self.headers.idempotency_key is None and not made_too:
            return None

        def digest(body: msgspec.Struct | bytes) -> str:
            decoded = body if isinstance(body, bytes) else _encoder.encode(body)
            return hashlib.sha256(route + decoded).hexdigest()

        return ClaimKey(
            self.ledger,
            key,
            digest(request),
            earlier_digests=tuple(map(digest, earlier)),
            opening_of=opening_of,
            opening_cents=opening_cents,
        )

    # -- sandboxes ------------------------------------------------------------

    async def create_sandbox(self) -> Response:
        self._refuse_key("a sandbox no one uses is dropped after its idle time")
        body = await self.body()
        if body.strip():  # none is the usual: one given is held to an empty object
            decoded(body, SandboxIn)
        ledger = await self.app.sandboxes.create(self.principal)
        idle = self.app.sandboxes.idle_seconds
        return json_response(SandboxOut(ledger, int(idle) if idle.is_integer() else idle), 201)

    async def drop_sandbox(self, ledger: str) -> Response:
        validate_ledger_name(ledger)
        if not ledger.startswith(SANDBOX_PREFIX):
            raise NotFound(
                "sandbox_not_found",
                f"{ledger!r} is no sandbox: only a ledger made by POST /v1/sandboxes"
                f" (its name begins {SANDBOX_PREFIX!r}) is dropped this way",
            )
        check_ledger(self.principal, ledger)
        await self.app.sandboxes.drop(ledger)
        return Response(status_code=204)

    # -- tokens ---------------------------------------------------------------

    async def create_token(self) -> Response:
        self._require_admin()
        self._refuse_key(
            "a token's secret is shown once and kept nowhere, so its answer cannot be given"
            " again; look with GET /v1/tokens before making another"
        )
        request: TokenIn = await self.decode(TokenIn)
        ledger = request.ledger
        if not isinstance(ledger, str):  # not given: the request's, as every endpoint's
            ledger = self.ledger
            # Named by the header (no token is bound to a sandbox), told as such.
            if ledger.startswith(SANDBOX_PREFIX):
                raise InvalidInput(
                    "invalid_ledger",
                    "a token is not bound to a sandbox, which lasts one session: this"
                    f" request works in {ledger!r} (its Kopilka-Ledger header); name the"
                    ' token\'s ledger in the body ("ledger")',
                )
        record, secret = await make_token(self.app.store, request.role, request.client, ledger)
        out = token_out(record)
        out.secret = secret
        return json_response(out, 201)

    async def list_tokens(self) -> Response:
        self._require_admin()
        return json_response([token_out(r) for r in await self.app.store.list_tokens()])

    async def revoke_token(self, token_id: str) -> Response:
        self._require_admin()
        if not is_token_id(token_id):  # nothing else was ever made: no store need look
            raise NotFound("token_not_found", no_token_named(token_id))
        revoked = await self.app.store.revoke_token(token_id)
        self.app.tokens.forget(token_id)  # this process stops honouring it right now
        if not revoked and await self.app.store.get_token(token_id) is None:
            raise NotFound("token_not_found", f"no token {token_id!r}")
        return Response(status_code=204)

    async def whoami(self) -> Response:
        principal = self.principal
        return json_response(
            WhoAmIOut(principal.token_id, principal.role, principal.ledger, principal.client)
        )

    def _refuse_key(self, why: str) -> None:
        """A write that cannot replay its answer refuses a key rather than ignore it: a
        retry under it would make a second one, the caller sure it would not."""
        if self.headers.idempotency_key is not None:
            path = self.scope["path"]
            raise ApiError(
                422, "invalid_idempotency_key", f"POST {path} takes no Idempotency-Key: {why}"
            )

    def _require_admin(self) -> None:
        if self.principal.role != "admin":
            raise Forbidden("forbidden", "only an admin token may manage tokens")


def token_out(record: TokenRecord) -> TokenOut:
    return TokenOut(
        id=record.id,
        role=record.role,
        ledger=record.ledger,
        created_at=iso_text(record.created_at),
        client=record.client,
        revoked=record.revoked,
    )


def _cap_given(text: str) -> int:
    """A cap's text; "none" (the shell's word for no cap) is told JSON's."""
    try:
        return parse_limit(text, "cap")
    except InvalidInput as refused:
        if text.strip(" ").lower() in ("none", "null"):
            raise InvalidInput(refused.code, f"{refused.message}; no cap is JSON's null") from None
        raise


__all__ = ["dispatch", "error_response", "json_response"]
