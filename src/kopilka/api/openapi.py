"""The OpenAPI 3.1 document (served at /openapi.json) and a readable page (/docs).

Schemas are generated from the very msgspec Structs the server decodes and
encodes with, so the document cannot drift from the code.
"""

from __future__ import annotations

import functools
import html
import json
from typing import Any

import msgspec

from kopilka import __version__
from kopilka.api import schemas

_REF = "#/components/schemas/{name}"
_ERROR_STATUSES = {
    "400": "Malformed request (bad JSON, bad path)",
    "401": "Missing, invalid or revoked token",
    "403": "This token may not do this",
    "404": "No such account, token or endpoint",
    "405": "The path does not take this method (the Allow header says which it takes)",
    "408": "The request's headers or body arrived too slowly; the connection is closed",
    "409": "Conflicts with existing state (account exists, idempotency key reused)",
    "413": "Request body too large",
    "414": "The request target is too long; the connection is closed",
    "415": "A Content-Encoding other than identity",
    "422": "Well-formed but invalid or refused (amount, funds, cap, unknown field)",
    "429": "The ledger is busy; retry later with the same Idempotency-Key",
    "431": "The request's headers are too large; the connection is closed",
    "503": "Shutting down or the store is unavailable",
}
_LEDGER_HEADER = {
    "name": "Kopilka-Ledger",
    "in": "header",
    "required": False,
    "description": "Ledger to work in (default: the token's ledger, normally 'main').",
    # As the server reads it: printable ASCII (a header's bytes), no space at either end.
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 100,
        "pattern": "^[!-~]([ -~]*[!-~])?$",
    },
}
_IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Same key and body: the first answer again. Send one, so a retry is safe.",
    # Printable ASCII, no space at either end, not beginning with the mark of a client's
    # own keys; a client token's at most 176 characters (its keys are kept under a mark).
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
        "pattern": "^(?!client/)[!-~]([ -~]*[!-~])?$",
    },
}
# A write's answers: the first one given again, and a 503 whose outcome a retry settles.
_REPLAYED_HEADER = {
    "description": "'true' where this is the first answer to this key, given again",
    "schema": {"type": "string", "enum": ["true"]},
}
_KEY_TO_SETTLE_HEADER = {
    "description": "The key to resend the same request under: it applies once",
    "schema": {"type": "string"},
}
_CLIENT_PATH = {
    "name": "client",
    "in": "path",
    "required": True,
    "description": "The client's name, compared in Unicode NFC (see the request bodies)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 800},
}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(name=name)}}}


def _operation(
    summary: str,
    ok: tuple[str, str | None],
    *,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    public: bool = False,
    replays: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`replays`: the statuses whose answer, given again under its key, says so."""
    status, schema = ok
    responses: dict[str, Any] = {
        status: {"description": "Success", **({"content": _json(schema)} if schema else {})}
    }
    for code, text in _ERROR_STATUSES.items():
        responses.setdefault(code, {"description": text, "content": _json("ErrorOut")})
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    operation["parameters"] = [*(parameters or []), *([] if public else [_LEDGER_HEADER])]
    operation["security"] = [] if public else [{"bearer": []}]
    for replayed in replays:
        responses[replayed]["headers"] = {"Idempotent-Replayed": _REPLAYED_HEADER}
    if _IDEMPOTENCY_HEADER in operation["parameters"]:
        responses["503"]["headers"] = {"Idempotency-Key": _KEY_TO_SETTLE_HEADER}
    return operation


def _query_text(name: str) -> dict[str, Any]:
    # Given at all, it is not empty: an empty one is refused, not taken as left out.
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string", "minLength": 1},
    }


def _paths() -> dict[str, Any]:
    page = [
        _query_text("after"),
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
    ]
    period = [
        _query_text("since"),
        _query_text("till"),
        {
            "name": "format",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["json", "csv"]},
        },
    ]
    statement = _operation(
        "Bank statement for a period (streamed)",
        ("200", "StatementOut"),
        parameters=[_CLIENT_PATH, *period],
    )
    statement["responses"]["200"]["content"]["text/csv"] = {"schema": {"type": "string"}}
    return {
        **_account_paths(page, statement),
        **_money_paths(),
        **_service_paths(),
    }


def _account_paths(page: list[dict[str, Any]], statement: dict[str, Any]) -> dict[str, Any]:
    return {
        "/v1/accounts": {
            "get": _operation(
                "List accounts (keyset pages)", ("200", "AccountPage"), parameters=page
            ),
            "post": _operation(
                "Open an account",
                ("201", "AccountOut"),
                body="OpenAccountIn",
                parameters=[_IDEMPOTENCY_HEADER],
                replays=("201",),
            ),
        },
        "/v1/accounts/{client}": {
            "get": _operation("One account", ("200", "AccountOut"), parameters=[_CLIENT_PATH]),
            "patch": _operation(
                "Change the floor and/or cap",
                ("200", "AccountOut"),
                body="SetLimitsIn",
                parameters=[_CLIENT_PATH, _IDEMPOTENCY_HEADER],
                replays=("200",),
            ),
        },
        "/v1/accounts/{client}/statement": {"get": statement},
    }


def _money_paths() -> dict[str, Any]:
    money = [_IDEMPOTENCY_HEADER]
    # An operation given again, and a refusal kept under its key (no such account, the
    # rules'), say they are, as an account's opening does; a resent batch's results and
    # an account's limits answer as they stand, with no such mark.
    kept = ("201", "404", "422")
    return {
        "/v1/deposits": {
            "post": _operation(
                "Deposit",
                ("201", "OperationOut"),
                body="DepositIn",
                parameters=money,
                replays=kept,
            )
        },
        "/v1/withdrawals": {
            "post": _operation(
                "Withdraw",
                ("201", "OperationOut"),
                body="WithdrawalIn",
                parameters=money,
                replays=kept,
            )
        },
        "/v1/transfers": {
            "post": _operation(
                "Transfer",
                ("201", "OperationOut"),
                body="TransferIn",
                parameters=money,
                replays=kept,
            )
        },
        "/v1/batch": {
            "post": _operation(
                "Many operations, one result each, in order",
                ("200", "BatchOut"),
                body="BatchIn",
                parameters=money,
            )
        },
    }


def _service_paths() -> dict[str, Any]:
    return {
        "/v1/sandboxes": {
            "post": _operation("A private ledger for one session", ("201", "SandboxOut"))
        },
        "/v1/sandboxes/{ledger}": {
            "delete": _operation(
                "Drop a sandbox ledger",
                ("204", None),
                parameters=[
                    {"name": "ledger", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            ),
        },
        "/v1/tokens": {
            "get": _operation("List tokens (admin)", ("200", "TokenList")),
            "post": _operation("Create a token (admin)", ("201", "TokenOut"), body="TokenIn"),
        },
        "/v1/tokens/{token_id}": {
            "delete": _operation(
                "Revoke a token (admin)",
                ("204", None),
                parameters=[
                    {
                        "name": "token_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
            ),
        },
        "/v1/whoami": {"get": _operation("The caller, as its token says", ("200", "WhoAmIOut"))},
        "/v1/health": {"get": _operation("Liveness", ("200", "HealthOut"), public=True)},
        "/v1/ready": {
            "get": _operation(
                "Readiness: 503 while the database does not answer",
                ("200", "HealthOut"),
                public=True,
            )
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    types = (
        schemas.OpenAccountIn,
        schemas.SetLimitsIn,
        schemas.DepositIn,
        schemas.WithdrawalIn,
        schemas.TransferIn,
        schemas.BatchIn,
        schemas.BatchOut,
        schemas.AccountOut,
        schemas.AccountPage,
        schemas.OperationOut,
        schemas.ErrorOut,
        schemas.StatementOut,
        schemas.SandboxOut,
        schemas.TokenIn,
        schemas.TokenOut,
        schemas.HealthOut,
        schemas.WhoAmIOut,
    )
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    components["TokenList"] = {"type": "array", "items": {"$ref": _REF.format(name="TokenOut")}}
    # A batch item's own key is held to the header's rules (the handler checks it as one):
    # said here, as the decoder is left to take any text so that the rules word a refusal.
    for item in ("BatchDeposit", "BatchWithdrawal", "BatchTransfer"):
        components[item]["properties"]["idempotency_key"] = {
            "anyOf": [_IDEMPOTENCY_HEADER["schema"], {"type": "null"}],
            "default": None,
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kopilka",
            "version": __version__,
            "description": "A bank ledger. Amounts are decimal strings; errors are "
            '{"error": {"code", "message"}}.',
        },
        "paths": _paths(),
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


@functools.cache
def document_bytes() -> bytes:
    return msgspec.json.encode(document())


@functools.cache
def docs_html() -> str:
    """A plain page listing every endpoint and schema; no scripts fetched from anywhere."""
    doc = document()
    rows = []
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}"
                f"</code></td><td>{html.escape(operation['summary'])}</td></tr>"
            )
    schemas_text = html.escape(json.dumps(doc["components"]["schemas"], indent=2))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>kopilka API</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "td{padding:.2em .8em}</style></head><body>"
        f"<h1>kopilka API {html.escape(doc['info']['version'])}</h1>"
        f"<p>{html.escape(doc['info']['description'])} "
        "Machine-readable: <a href='/openapi.json'>/openapi.json</a>.</p>"
        f"<table>{''.join(rows)}</table><h2>Schemas</h2><pre>{schemas_text}</pre>"
        "</body></html>"
    )
