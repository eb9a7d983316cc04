"""URLs and hosts as kopilka is given them: read without showing a password, and
told to be this machine's without a name lookup; and a name as a URL's path carries it."""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import SplitResult, quote, urlsplit

from kopilka.errors import InvalidInput
from kopilka.redaction import redact_url


def split_url(url: str, code: str, what: str) -> SplitResult:
    """urlsplit, with a URL it cannot read (an unbalanced bracket) refused in one line."""
    try:
        return urlsplit(url)
    except ValueError as error:  # "Invalid IPv6 URL"
        raise InvalidInput(code, f"{what} {redact_url(url)!r}: {error}") from None


# Up to four parts, decimal, octal (0...) or hex (0x...), separated by dots.
_IPV4_PART = r"(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_IPV4_SHORT_FORM = re.compile(rf"{_IPV4_PART}(?:\.{_IPV4_PART}){{0,3}}")


def on_this_machine(host: str) -> bool:
    """A host that names this machine (loopback), read without a name lookup."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # a zone on ::1 means nothing there, and any text passes for one
        if getattr(address, "scope_id", None) is not None:
            return False
        # ::ffff:127.0.0.1 is 127.0.0.1 as an IPv6 socket writes it.
        mapped = getattr(address, "ipv4_mapped", None)
        return (mapped or address).is_loopback
    # The short IPv4 forms the resolver takes as they are ("127.1", "0x7f.1"), as the
    # connection will: no name lookup. Those alone: inet_aton also takes "127.0.0.1 .x",
    # whatever follows a space, where the lookup reads a name that may be anywhere.
    if not _IPV4_SHORT_FORM.fullmatch(host):
        return False
    try:
        return ipaddress.ip_address(socket.inet_aton(host)).is_loopback
    except OSError:  # a name: it may resolve anywhere
        return False


def path_segment(text: str) -> str:
    """`text` as one path segment. Dots too are encoded: a client named '.' or '..' would
    otherwise be taken out of the path as a dot segment (the server decodes them). A
    byte that is not UTF-8 (a lone surrogate) is sent as that byte, for the server to
    answer as it answers any such path."""
    return quote(text.encode("utf-8", "surrogateescape"), safe="").replace(".", "%2E")
