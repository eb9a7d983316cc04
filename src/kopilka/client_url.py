"""The server's address as a user gives it ('8889', 'host:8889', a URL), read once, and
refused in one line where it is no address a server could be at (read as written: no
name is looked up, no connection tried)."""

from __future__ import annotations

import re

import httpx

from kopilka.errors import InvalidInput
from kopilka.redaction import redact_url
from kopilka.urls import split_url

_NUMBER = re.compile(r"[-+]?[0-9]+")  # 127.1 is a host


def normalize_url(url: str) -> str:
    """'8889' -> http://127.0.0.1:8889; 'host:8889' -> http://host:8889.

    Anything that is not an http(s) URL with a host and a valid port is refused here,
    in one line, before a token is looked for or a connection tried.
    """
    if not isinstance(url, str):  # a port as a number, say: refused, not an AttributeError
        raise InvalidInput("invalid_url", "the server URL is text: give http://HOST:PORT")
    url = url.strip()
    if not url:
        raise InvalidInput("invalid_url", "the server URL may not be empty: give http://HOST:PORT")
    if not url.isprintable():  # a tab or line break: no URL has one, and it would print raw
        # A lone surrogate is how Python hands over a byte of a command line not UTF-8.
        what = "bytes that are not UTF-8" if _not_utf8(url) else "a control character"
        raise InvalidInput("invalid_url", f"invalid server URL {redact_url(url)!r}: it has {what}")
    if _NUMBER.fullmatch(url):  # a port on this machine, or meant as one
        if not (url.isascii() and url.isdigit() and 0 < int(url) < 65536):
            raise InvalidInput(
                "invalid_url",
                f"invalid server URL {url!r}: a port is a whole number from 1 to 65535",
            )
        url = f"http://127.0.0.1:{url}"
    elif "://" not in url:
        url = f"http://{url}"
    parts = split_url(url, "invalid_url", "invalid server URL")
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(
            "invalid_url",
            f"invalid server URL {redact_url(url)!r}: only http:// and https:// are served",
        )
    try:
        port = parts.port  # raises for a port that is not a number in range
    except ValueError:
        port = 0
    if port == 0:  # no server listens on port 0: it means "any free port" to a listener
        raise InvalidInput(
            "invalid_url",
            f"invalid server URL {redact_url(url)!r}: a port is a whole number from 1 to 65535",
        ) from None
    # No host name holds a space: one after an address ("127.0.0.1 .example") passed
    # for this machine's, and was looked up as a name that may be anywhere.
    if not parts.hostname or " " in parts.hostname or parts.query or parts.fragment:
        raise InvalidInput(
            "invalid_url", f"invalid server URL {redact_url(url)!r}: give it as http://HOST:PORT"
        )
    if parts.username is not None or parts.password is not None:
        # The HTTP library would send them as Basic credentials in place of the token.
        raise InvalidInput(
            "invalid_url",
            f"invalid server URL {redact_url(url)!r}: it may carry no user or password;"
            " give the token with --token or KOPILKA_TOKEN",
        )
    path = parts.path.rstrip("/")
    if path.endswith("/v1") or "/v1/" in path:
        # The API's own paths begin with /v1: its requests would go to /v1/v1/...
        raise InvalidInput(
            "invalid_url",
            f"invalid server URL {redact_url(url)!r}: give the server's address without"
            " /v1 (the client adds the API's paths to it)",
        )
    try:
        host = httpx.URL(url).host  # what the HTTP library will not take (`10.0.0.01`)
    except httpx.InvalidURL as error:
        raise InvalidInput(
            "invalid_url", f"invalid server URL {redact_url(url)!r}: {error}"
        ) from None
    except UnicodeError:  # an international name that is none (`xn--a`), read as sent
        raise InvalidInput(
            "invalid_url", f"invalid server URL {redact_url(url)!r}: its host is no valid name"
        ) from None
    try:
        host.encode("idna")  # as the resolver will: no empty label, none over 63 characters
    except UnicodeError:
        raise InvalidInput(
            "invalid_url",
            f"invalid server URL {redact_url(url)!r}: its host has an empty part or one over"
            " 63 characters",
        ) from None
    return url.rstrip("/")


def _not_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False
