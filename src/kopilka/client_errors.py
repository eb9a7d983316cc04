"""What a call of the Python client ends with, where not its answer: a server's error
answer read back into the error it stands for, and the client's own errors, where no
answer says (a write maybe applied, a server not reached, every connection busy, a
timeout spent before the call was sent)."""

from __future__ import annotations

import os
import re
from typing import Any, TypeVar

import httpx

from kopilka.errors import (
    NOT_KNOWN,
    RETRY_UNDER_THE_KEY,
    Busy,
    Conflict,
    Forbidden,
    InvalidInput,
    KopilkaError,
    NotFound,
    Rejected,
    Unauthorized,
    Unavailable,
)
from kopilka.redaction import hide_secrets

_REJECTION_CODES = frozenset(
    {
        "insufficient_funds",
        "cap_exceeded",
        "floor_above_balance",
        "cap_below_balance",
        "database_refused",
    }
)
# kopilka's error codes, all of them: anything else came from another server.
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]*")
_ERRORS_BY_STATUS: dict[int, type[KopilkaError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: Busy,
    503: Unavailable,
}


def error_from(status: int, payload: Any, url: str) -> KopilkaError:
    """The KopilkaError a server answer stands for, with its code and message as sent.
    `url`: the server's, as shown (no password), named in an answer not kopilka's: the
    status alone left someone who typed the wrong port to guess what answered."""
    try:
        code, message = payload["error"]["code"], str(payload["error"]["message"])
    except (KeyError, TypeError):
        return Unavailable(
            "bad_response",
            f"the server at {url} answered {status} without an error body:"
            " the answer is not kopilka's",
        )
    # Not kopilka's (a gateway's number, say): the code is what programs branch on.
    if not isinstance(code, str) or not _ERROR_CODE.fullmatch(code):
        return Unavailable(
            "bad_response",
            f"the server at {url} answered {status} with an error code not kopilka's",
        )
    # Printed to a terminal as it came: no escape sequence of whatever answered goes with it.
    message = "".join(c if c.isprintable() else "\ufffd" for c in message)
    if status == 422 and code in _REJECTION_CODES:
        return Rejected(code, message)
    # A 5xx other than 503 is a fault of the server or of what stands before it, never
    # of the request.
    return _ERRORS_BY_STATUS.get(status, Unavailable if status >= 500 else InvalidInput)(
        code, message
    )


def maybe_applied(response: httpx.Response, error: KopilkaError, keyed: bool) -> KopilkaError:
    """A write answered by something other than kopilka (a proxy's 502 or 504, a page of
    its own) may have been applied behind it: whether is not known. A read's stays."""
    if response.request.method == "GET":
        return error
    return not_known(error.message, keyed, response.request.method)


def outcome_unknown(url: str, keyed: bool, error: Exception, method: str) -> Unavailable:
    what = (
        no_answer_in_time(url)
        if isinstance(error, httpx.ReadTimeout)
        else f"the connection to the server at {url} broke before its answer came"
    )
    return not_known(what, keyed, method)


def not_known(cause: str, keyed: bool, method: str) -> Unavailable:
    """A write that `cause` left maybe applied; settled under the caller's key, if any.
    A DELETE (a token revoked, a sandbox dropped) done twice is done once."""
    if method == "DELETE":
        then = "repeating it is safe, done twice it is done once"
    else:
        then = RETRY_UNDER_THE_KEY if keyed else "check before repeating it"
    return Unavailable("outcome_unknown", f"{cause}{NOT_KNOWN}{then}")


def ledger_not_told(url: str, error: KopilkaError) -> KopilkaError:
    """`error`, of the question which ledger the token is for, said of it: its answer
    (status and reason) kept, the server named once, and that the call after it was not
    sent. Its code stays, for a program that branches on it."""
    said = error.message
    for subject in (f"the server at {url} ", "the server "):  # this one: "it" below
        if said.startswith(subject):
            said = "it " + said.removeprefix(subject)
            break
    return type(error)(
        error.code,
        f"the server at {url} did not say which ledger the token is for ({said});"
        " nothing was sent: try again",
    )


def empty_token() -> Unauthorized:
    return Unauthorized(
        "unauthorized", "the token is empty: give a token, or none for the admin token"
    )


def client_closed() -> InvalidInput:
    return InvalidInput("client_closed", "this client is closed: connect_bank() again")


def pool_busy(connections: int, waited_seconds: float | None) -> Busy:
    """A call that waited for one of this client's connections until too little of its
    timeout was left for an answer."""
    # A short timeout's wait is milliseconds (in tenths of a second it read "0.0 s"), or
    # less, not worth saying.
    if waited_seconds is None or waited_seconds < 0.0005:
        waited = ""
    elif waited_seconds < 0.1:
        waited = f" for {round(waited_seconds * 1000)} ms"
    else:
        waited = f" for {waited_seconds:.1f} s"
    which = (
        "the one connection of this client was"
        if connections == 1
        else (f"all {connections} connections of this client were")
    )
    return _not_sent(
        Busy("client_busy", f"{which} busy{waited} with other calls; nothing was sent: try again")
    )


def out_of_time(timeout_seconds: float) -> Busy:
    """A call whose timeout was spent before it took a connection, one being free: its
    time ran out, not the connections. Not sent, it is safe to retry, as a busy one is."""
    return _not_sent(
        Busy(
            "client_busy",
            f"the call's timeout of {timeout_seconds:.10g} s ran out before it was sent, too"
            " little of it left to wait for an answer; nothing was sent: try again with a"
            " longer timeout",
        )
    )


_Error = TypeVar("_Error", bound=KopilkaError)


def _not_sent(error: _Error) -> _Error:
    """`error`, said of a call that never left this client: of a write, nothing of it was
    sent (errors.KopilkaError.before_the_write), as its message says."""
    error.before_the_write = True
    return error


def unreachable(url: str, error: Exception) -> Unavailable:
    if isinstance(error, httpx.RemoteProtocolError):
        # It was reached, and closed the connection mid-answer: a statement whose
        # database went away, or that does not add up, ends so (api/statement_stream.py).
        return Unavailable(
            "answer_broken_off",
            f"the server at {url} closed the connection before its answer was complete; try again",
        )
    if isinstance(error, httpx.ReadTimeout):
        return Unavailable("server_unreachable", f"{no_answer_in_time(url)}; try again")
    unreachable = Unavailable("server_unreachable", f"cannot reach the server at {url}: {error}")
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return _not_sent(unreachable)  # no connection, so nothing was sent on one
    return unreachable


# What httpx reads from the environment to make a connection, NO_PROXY aside.
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
_CERTIFICATE_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")


def environment_unusable(error: Exception) -> InvalidInput:
    """A proxy or a certificate the environment names that no connection can be made
    with (a SOCKS proxy, a proxy URL of another scheme, a certificate file missing):
    one line naming the variable, as a setting refused is, and not a traceback."""
    if isinstance(error, OSError):  # the certificates': httpx reads the file, else the dir
        named = next((name for name in _CERTIFICATE_VARIABLES if os.environ.get(name)), "")
        values = {named: os.environ[named]} if named else {}
        # ssl's error names no file: the variable's value does.
        reason = f"{error.strerror or error}: {error.filename or values.get(named, '')}"
    else:  # a proxy's: its scheme (ValueError), or SOCKS, which needs socksio (ImportError)
        values = {
            name: os.environ[spelled]
            for name in _PROXY_VARIABLES
            for spelled in (name, name.lower())
            if os.environ.get(spelled)
        }
        reason = str(error).partition("\n")[0] or type(error).__name__
    named = " or ".join(values) or "a proxy or certificate variable"
    return InvalidInput(
        "invalid_setting",
        hide_secrets(f"{named} in the environment cannot be used: {reason}", values.values()),
    )


def no_answer_in_time(url: str) -> str:
    return f"the server at {url} took the request but did not answer in time"
