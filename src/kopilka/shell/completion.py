"""Tab completion of command names, their options and known client names."""

from __future__ import annotations

import bisect
import itertools
import shlex
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator

from prompt_toolkit.buffer import Buffer, CompletionState
from prompt_toolkit.completion import (
    CompleteEvent,
    Completer,
    Completion,
    get_common_complete_suffix,
)
from prompt_toolkit.document import Document
from prompt_toolkit.filters import emacs_insert_mode, vi_insert_mode
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from kopilka.shell.parser import looks_like_an_option
from kopilka.shell.specs import CommandSpec, command_names, find_command

# Another session may open accounts: the names are read again when they are this old,
# and sooner when a name is typed that none of them starts with (at most this often).
_NAMES_RELOAD_SECONDS = 5.0
_UNKNOWN_NAME_RELOAD_SECONDS = 1.0
# The longest Tab waits for the names: a bank that does not answer (a server frozen)
# held the prompt, keys and Ctrl-C and all, for the client's whole timeout.
NAMES_WAIT_SECONDS = 1.0


class KnownClients:
    """Client names from the bank, read again after a command of this session may have
    added one, every few seconds, and when one is typed that none of them starts with
    (another session's).

    `load_starting_with`, if given, reads only the names that start with what is typed:
    asked at each Tab, for the rest of the session, once every name could not be read in
    time (a server's bank of some tens of thousands of clients, listed a page at a time,
    or one that did not answer, which answers those too once it is back)."""

    def __init__(
        self,
        load: Callable[[], list[str]],
        load_starting_with: Callable[[str], list[str]] | None = None,
        wait_seconds: float = NAMES_WAIT_SECONDS,
    ) -> None:
        """`wait_seconds`: how long the loads wait, at most."""
        self._load = load
        self._load_starting_with = load_starting_with
        self._wait_seconds = wait_seconds
        self._by_what_is_typed = False
        self._names: list[str] | None = None
        self._loaded_at = 0.0

    def invalidate(self) -> None:
        self._names = None

    def names(self, typed: str = "") -> list[str]:
        if self._by_what_is_typed:
            return self._starting_with(typed)
        # The Tab that found every name was not to be had in time waits no more: the next
        # one asks for those that begin as typed.
        return self._every_name(typed)

    def _every_name(self, typed: str) -> list[str]:
        if self._age_seconds() >= _NAMES_RELOAD_SECONDS:
            self.invalidate()
        names = self._known()
        if (
            typed
            and self._age_seconds() >= _UNKNOWN_NAME_RELOAD_SECONDS
            and not any(name.startswith(typed) for name in names)
        ):
            self.invalidate()
            names = self._known()
        return names

    def _age_seconds(self) -> float:
        return time.monotonic() - self._loaded_at

    def _known(self) -> list[str]:
        if self._names is None:
            started = time.monotonic()
            try:
                self._names = sorted(self._load())
            except Exception:  # completion must never break the prompt, whatever the bank says
                self._names = []  # and is not held up again until it is time to read them
                # Out of time (too many names, a bank that did not answer, or one busy
                # till a retry had no time left, given up on before the end): not refused
                # at once (a server down, a file locked), which reading again mends.
                timed_out = time.monotonic() - started >= self._wait_seconds / 2
                self._by_what_is_typed = timed_out and self._load_starting_with is not None
            self._loaded_at = time.monotonic()
        return self._names

    def _starting_with(self, typed: str) -> list[str]:
        assert self._load_starting_with is not None
        if not typed:  # every name: not to be had in time
            return []
        try:
            return sorted(self._load_starting_with(typed))
        except Exception:  # as _known: never the prompt's failure
            return []


def quote_word(word: str) -> str:
    """A word as the parser reads it back: bare when safe, else in double quotes."""
    if word and shlex.quote(word) == word:
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


# What separates words for shlex (its `whitespace`), which the parser splits lines with.
_WORD_BREAKS = " \t\r\n"


def current_word_start(text: str) -> int:
    """Where the word under the cursor starts, read as the parser reads the line."""
    return _read_last_word(text)[0]


def _unquote(raw: str) -> str:
    """What a half-typed word means so far ('"Jo' -> 'Jo', 'John\\ J' -> 'John J')."""
    return _read_last_word(raw)[1]


def _read_last_word(text: str) -> tuple[int, str]:
    """The last word of `text`: where it starts, and what it says so far, as shlex reads
    it in POSIX mode (quotes; a backslash escapes any character outside quotes, and only
    `"` and `\\` inside double quotes). An open quote or a trailing backslash is read as
    if closed: the word is still being typed."""
    start, meaning, quote, index = 0, "", "", 0
    while index < len(text):
        char, following = text[index], text[index + 1 : index + 2]
        index += 1
        if quote == "'":
            quote, meaning = ("", meaning) if char == "'" else (quote, meaning + char)
        elif char == "\\" and (not quote or following in ('"', "\\", "")):
            meaning += following  # the escaped character, taken as it is
            index += 1
        elif quote:
            quote, meaning = ("", meaning) if char == quote else (quote, meaning + char)
        elif char in "\"'":
            quote = char
        elif char in _WORD_BREAKS:
            start, meaning = index, ""
        else:
            meaning += char
    return start, meaning


class ShellCompleter(Completer):
    def __init__(self, clients: KnownClients) -> None:
        self._clients = clients

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        text = document.text_before_cursor
        start = current_word_start(text)
        raw = text[start:]
        earlier = _unquote_all(text[:start])
        if not earlier:
            yield from _matching(command_names(), raw, raw)
            return
        spec = find_command(earlier[0])
        if spec is None:
            return
        if _names_a_command(spec, earlier) and not raw.startswith("-"):
            yield from _matching(command_names(), raw, raw)  # `help dep` -> `help deposit`
            return
        spelling, has_equals, value = raw.partition("=")
        if has_equals and len(earlier) == 1 and _names_a_command(spec, [*earlier, spelling]):
            # `help --command=dep` -> `help --command=deposit`
            yield from _matching((f"{spelling}={c}" for c in command_names()), raw, raw)
        elif has_equals and _names_client(spec, spelling):
            typed = _in_nfc(_unquote(value))
            for name in _starting_with(self._clients.names(typed), typed):
                yield Completion(f"{spelling}={quote_word(name)}", start_position=-len(raw))
        elif len(earlier) > 1 and _names_client(spec, earlier[-1]):
            names = self._clients.names(_in_nfc(_unquote(raw)))
            yield from _names_after_option(names, text, start, earlier[-1])
        elif spec.name == "help" and len(earlier) > 1:
            return  # its command given (`help deposit --`): it takes nothing more
        elif raw.startswith("-") or not raw:
            options = [
                s + "=" if s.startswith("--") else s for o in spec.options for s in o.spellings
            ]
            yield from _matching(options, raw, raw)


def _names_after_option(
    names: Iterable[str], text: str, start: int, spelling: str
) -> Iterable[Completion]:
    """Names for the word at `start`, after a client option (`--client Jo`). One the
    parser would take for an option (`-dash`) is joined to the option instead
    (`--client=-dash`), as the parser reads such a value: bare after it, the line was
    refused for the option's missing value."""
    raw = text[start:]
    typed = _in_nfc(_unquote(raw))
    option_start = current_word_start(text[:start].rstrip(_WORD_BREAKS))
    for name in names:
        if not name.startswith(typed):
            continue
        if looks_like_an_option(name):
            joined = f"{spelling}={quote_word(name)}"
            yield Completion(joined, start_position=option_start - len(text))
        else:
            yield Completion(quote_word(name), start_position=-len(raw))


def _in_nfc(typed: str) -> str:
    """What was typed as the bank keeps names: a decomposed "José" (as macOS terminals
    may send it) is the name kept precomposed, and is completed to it."""
    return unicodedata.normalize("NFC", typed)


def _unquote_all(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _names_a_command(spec: CommandSpec, earlier: list[str]) -> bool:
    """The word under the cursor is `help`'s COMMAND: bare after it, or `--command`'s."""
    if spec.name != "help":
        return False
    return len(earlier) == 1 or (len(earlier) == 2 and spec.option(earlier[1]) is not None)


def _names_client(spec: CommandSpec, spelling: str) -> bool:
    option = spec.option(spelling)
    return option is not None and option.names_client


def _matching(candidates: Iterable[str], typed: str, raw: str) -> Iterable[Completion]:
    """Candidates extending what was typed; they replace the raw word under the cursor."""
    for candidate in candidates:
        if candidate.startswith(typed):
            yield Completion(candidate, start_position=-len(raw))


def _starting_with(names: list[str], typed: str) -> Iterator[str]:
    """The names (sorted) that begin with `typed`: found by bisection, as a bank of
    100,000 clients took 0.6 s a Tab when each name was quoted and read back."""
    for name in itertools.islice(names, bisect.bisect_left(names, typed), None):
        if not name.startswith(typed):
            return
        yield name


def completion_keys(completer: Completer) -> KeyBindings:
    """Tab (and Esc /) complete as the key is read, before the keys after it.

    prompt_toolkit's own bindings start a background task that completes later: keys
    that came in the same read (Tab and Enter typed fast, pasted, or over a slow link)
    ran first, so Enter ran the line as it was before Tab while the screen showed it
    completed. That task ran the completer on the prompt's own thread too (there is no
    complete_in_thread), so completing here holds the prompt no longer than it did.
    """
    keys = KeyBindings()

    @keys.add("c-i", filter=emacs_insert_mode | vi_insert_mode)
    def _tab(event: KeyPressEvent) -> None:
        complete_now(event.current_buffer, completer)

    @keys.add("escape", "/", filter=emacs_insert_mode)
    def _first(event: KeyPressEvent) -> None:
        complete_now(event.current_buffer, completer, select_first=True)

    return keys


def complete_now(buffer: Buffer, completer: Completer, *, select_first: bool = False) -> None:
    """What prompt_toolkit's Tab does, done at once: the next choice of an open menu;
    else a single completion put in, or the part common to every completion inserted and
    a menu of them; `select_first`: the first completion put in instead."""
    if buffer.complete_state is not None:
        buffer.complete_next()
        return
    document = buffer.document
    found = completer.get_completions(document, CompleteEvent(completion_requested=True))
    completions = list(itertools.islice(found, buffer.max_number_of_completions))
    if not completions or (len(completions) == 1 and _adds_nothing(document, completions[0])):
        return
    if len(completions) == 1:
        # Put in as bash does, with no menu: one left open (for a name put in quotes,
        # which changes the text before the cursor) let the next Tab cycle back to the
        # text as typed, and Enter ran that.
        buffer.apply_completion(completions[0])
        return
    common = "" if select_first else get_common_complete_suffix(document, completions)
    if common:
        buffer.insert_text(common)  # this also closes the menu, if any
        completions = [c.new_completion_from_position(len(common)) for c in completions]
    buffer.complete_state = CompletionState(buffer.document, completions)
    buffer.on_completions_changed.fire()
    if select_first:
        buffer.go_to_completion(0)


def _adds_nothing(document: Document, completion: Completion) -> bool:
    before = document.text_before_cursor
    return before[len(before) + completion.start_position :] == completion.text
