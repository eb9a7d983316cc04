"""Secrets kept out of what kopilka shows: a database URL's password, a secret query
parameter, a token pasted in the wrong place. Anything shown to people or written to
logs that may quote a URL goes through `redact_url`, `redact_text` or `hide_secrets`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from urllib.parse import unquote

from kopilka.tokens import without_secrets

# Query parameters whose value is a secret or names where one is kept (libpq's names).
_SECRET_PARAMETERS = ("password", "sslpassword", "passfile", "sslkey")
# A secret value runs to the next "&name=" or the end: an unescaped '&' or '#' in a
# password must not let its tail show.


def _spelled_any_way(name: str) -> str:
    """A pattern for `name` with any of its letters percent-escaped, as a driver reads it."""
    return "".join(f"(?:{re.escape(c)}|%{ord(c.lower()):02x}|%{ord(c.upper()):02x})" for c in name)


_SECRET_QUERY = re.compile(
    r"([?&](?:" + "|".join(map(_spelled_any_way, _SECRET_PARAMETERS)) + r")=)(.*?)"
    r"(?=&[A-Za-z_]+=|$)",
    re.IGNORECASE | re.DOTALL,
)
# A "," too: the driver splits its hosts at one ("h1:5432,h2"), and quotes the piece
# before it as a port it cannot read.
_URL_DELIMITERS = re.compile(r"[:/?#@&,\[\]]")


def _split_userinfo(rest: str) -> tuple[str, str, str]:
    """(userinfo, '@', the rest) of what follows '//'; ('', '', rest) without userinfo.

    The userinfo ends at the LAST '@': a password with an unescaped '/', '?', '#'
    or '@' would otherwise be read as the host or the path and printed as such. An
    '@' later in the query only hides more than needed, never less.
    """
    userinfo, at, after = rest.rpartition("@")
    return (userinfo, at, after) if at else ("", "", rest)


def redact_url(url: str) -> str:
    """The URL with any password replaced by '***', safe to print and log.

    Hides the userinfo password (user:***@host) and the values of secret query
    parameters (?password=***), however oddly they are written.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url  # a file path or 'memory:'
    rest = _SECRET_QUERY.sub(r"\1***", rest)
    userinfo, at, after = _split_userinfo(rest)
    user, colon, _ = userinfo.partition(":")
    if colon:
        rest = f"{user}:***{at}{after}"
    return f"{scheme}://{rest}"


# A database's or a server's URL written anywhere in a message: the scheme, then one or
# more slashes (a path that went through Path() has one), up to a space or a quote; a
# colon just before the space is the message's ("URL: reason"), not the URL's.
# Any other scheme with its two slashes too: another program's spelling of a database's
# URL (`postgresql+psycopg://`, `mysql://`) given by mistake holds a password as well (a
# client's name such as 'mail:/ann:home@work' is no URL).
# A scheme is short: bounded, a long run of "a.a.a..." is not scanned again from each
# of its letters (a hundred thousand characters took a minute).
_SCHEME = r"(?:(?:postgres(?:ql)?|https?):/+|[A-Za-z][A-Za-z0-9+.-]{0,31}://+)"
_URL_IN_TEXT = re.compile(rf"\b{_SCHEME}[^\s'\"]+?(?=:\s|:$|[\s'\"]|$)", re.IGNORECASE)
# Where such a URL starts within a word (`--DB=postgresql://...`).
_URL_START = re.compile(rf"\b{_SCHEME}", re.IGNORECASE)
# libpq's keyword=value form: password=... or password='...' (sslpassword= too). An
# unquoted value runs to the next space, '&' and '"' and all (none is special to libpq);
# a double-quoted one is hidden whole, spaces and all, though libpq reads it otherwise;
# a quote left open hides all that follows it.
_KEYWORD_PASSWORD = re.compile(
    r"(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*(?:'|$)|\"[^\"]*(?:\"|$)|\S+)", re.IGNORECASE
)


def hide_secrets(message: str, given: Iterable[str] | None = None) -> str:
    """A message with the password of every URL it quotes replaced by '***', and the
    secret of every token: an argument given in the wrong place is echoed back as it was
    written (`kopilka get URL`, `kopilka TOKEN`).

    Only a URL (or libpq keyword settings) quoted in the message is changed, never other
    text that happens to hold the same letters. `given`: the words the message may quote
    (by default the command line's), whose URLs are found whole however they are
    written, a space or a quote in the password and all.
    """
    for word in sys.argv[1:] if given is None else given:
        start = _URL_START.search(word)
        if start is not None:
            url = word[start.start() :]
            quoted = repr(url)[1:-1]  # as a message quotes it with !r: escapes and all
            if url in message:
                message = message.replace(url, _redacted(url))
            elif quoted in message:
                message = message.replace(quoted, repr(_redacted(url))[1:-1])
        elif "password" in word.lower():
            masked = _KEYWORD_PASSWORD.sub(r"\1***", word)
            # As written, or as a message quotes it with !r (a backslash doubled).
            message = message.replace(word, masked).replace(repr(word)[1:-1], repr(masked)[1:-1])
    message = _URL_IN_TEXT.sub(lambda found: _redacted(found.group(0)), message)
    # A token pasted where a name, a command or an id belongs: its id is enough to say.
    return without_secrets(message)


# An int of more digits than Python turns into text (4,300) has no repr: one of more
# bits than these (some 1,200 digits) is described instead.
_SHOWN_BITS_MAX = 4096


def quoted(
    value: object,
    length_max: int = 40,
    *,
    mapping: str = "a dict",
    spell: Callable[[object], str] = repr,
) -> str:
    """A value as a refusal quotes it (repr): masked whole, before it is cut short (a
    URL's password cut from its '@' is not recognised as one, nor a token's secret).
    `mapping`: what a dict is called where it came from ("a table" in a TOML file);
    `spell`: how a value other than text is written there (TOML's true, not True)."""
    if isinstance(value, int) and value.bit_length() > _SHOWN_BITS_MAX:
        return "an int of over 1,200 digits"
    # A mapping (a TOML table) is no setting's value, and its keys may say what a value
    # is ({password = "..."}), which no mask can know: it is named, not shown.
    if _holds_mapping(value):
        return mapping if isinstance(value, dict) else f"a list holding {mapping}"
    # Masked as written, then escaped: repr doubles a backslash in a password, and the
    # escaped text is no longer the word that was given.
    if isinstance(value, str):
        text = repr(hide_secrets(value, [value]))
        # Cut inside its quotes: the quote that opens it is closed ('lll...').
        return text if len(text) <= length_max else f"{text[:length_max]}...{text[0]}"
    else:  # a list or a number from the file: its text as shown, each text in it masked
        text = hide_secrets(spell(value), _texts_in(value))
    return cut_short(text, length_max)


def cut_short(text: str, length_max: int = 40) -> str:
    return text if len(text) <= length_max else text[:length_max] + "..."


def _holds_mapping(value: object) -> bool:
    if isinstance(value, list | tuple):
        return any(_holds_mapping(item) for item in value)
    return isinstance(value, dict)


def _texts_in(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _texts_in(item)]
    return []


def _redacted(url: str) -> str:
    """A URL as redact_url shows it, with as many slashes after its scheme as it had."""
    scheme, _, rest = url.partition(":")
    slashes = rest[: len(rest) - len(rest.lstrip("/"))]
    shown = redact_url(f"{scheme}://{rest[len(slashes) :]}")
    return f"{scheme}:{slashes}{shown.partition('://')[2]}"


def redact_text(text: str, url: str) -> str:
    """`text` with every secret written in `url` replaced by '***'.

    For what may echo part of the URL, such as a driver's error about a URL it
    could not parse ("invalid literal for int(): 'S3cret'").
    """
    _, separator, rest = url.partition("://")
    if not separator:
        return text
    secrets = [match.group(2) for match in _SECRET_QUERY.finditer(rest)]
    userinfo, _, _ = _split_userinfo(_SECRET_QUERY.sub(r"\1***", rest))
    secrets.append(userinfo.partition(":")[2])
    secrets += [unquote(secret) for secret in secrets]
    for secret in sorted({secret for secret in secrets if len(secret) > 1}, key=len, reverse=True):
        text = text.replace(secret, "***")
    # A parser that split the URL at a '/' or ':' inside the password echoes a piece; a
    # piece is masked only where it stands alone, so that masking it inside an ordinary
    # word ("Pa***word") does not tell which letters the password holds.
    pieces = {piece for secret in secrets for piece in _URL_DELIMITERS.split(secret)}
    for piece in sorted((piece for piece in pieces if len(piece) > 1), key=len, reverse=True):
        text = re.sub(rf"(?<![^\W_]){re.escape(piece)}(?![^\W_])", "***", text)
    return text
