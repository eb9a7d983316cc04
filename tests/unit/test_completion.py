"""Tab completion reads the line as the parser does: quotes and backslash escapes."""

from __future__ import annotations

import time

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from kopilka.errors import Unavailable
from kopilka.shell.completion import KnownClients, ShellCompleter, current_word_start
from kopilka.shell.parser import split_line

NAMES = ["John Jones", "Jon Smith", 'O"Brien']


def _completions(text: str) -> list[tuple[str, str]]:
    """Each completion as the line it makes and the word it replaces."""
    completer = ShellCompleter(KnownClients(lambda: list(NAMES)))
    found = completer.get_completions(Document(text), CompleteEvent(completion_requested=True))
    return [
        (
            text[: len(text) + completion.start_position] + completion.text,
            text[completion.start_position :],
        )
        for completion in found
    ]


@pytest.mark.parametrize(
    "typed",
    [
        "deposit --client=John\\ J",
        "deposit --client=John\\ ",
        'deposit --client="John J',
        "deposit --client='John J",
    ],
)
def test_a_name_with_an_escaped_space_completes_as_a_quoted_one(typed: str) -> None:
    """`John\\ J` is the parser's `John J`: completed, not started over at `J`."""
    assert _completions(typed) == [
        ('deposit --client="John Jones"', typed.removeprefix("deposit "))
    ]


def test_a_bare_name_after_its_option_with_an_escaped_space_completes() -> None:
    assert _completions("transfer --from John\\ Jones --to John\\ ") == [
        ('transfer --from John\\ Jones --to "John Jones"', "John\\ ")
    ]


def test_a_completed_name_reads_back_as_the_name() -> None:
    [(line, _)] = _completions("balance --client=O\\")
    assert split_line(line) == ["balance", '--client=O"Brien']


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("deposit --client=John\\ J", 8),
        ("deposit --client=John\\ ", 8),
        ("deposit --client=John ", 22),
        ('deposit --client="a \\" b', 8),  # an escaped quote does not close the quote
        ("deposit --client='a \\' b", 23),  # in single quotes a backslash escapes nothing
    ],
)
def test_the_word_under_the_cursor_starts_where_the_parser_starts_it(text: str, start: int) -> None:
    assert current_word_start(text) == start


def test_help_completes_the_command_it_is_to_explain() -> None:
    assert _completions("help dep") == [("help deposit", "dep")]
    assert _completions("help --command with") == [("help --command withdraw", "with")]
    assert _completions("help --command=with") == [("help --command=withdraw", "--command=with")]
    assert _completions("help -") == [("help --command=", "-")]
    # Its command given, it takes nothing more: `--command=` put in was refused as twice.
    assert _completions("help deposit --") == []
    assert _completions("help --command=deposit ") == []


@pytest.mark.parametrize(
    "typed",
    [
        'balance --client="Jose\u0301 G',
        'balance --client "Jose\u0301 G',
        "balance --client=Jose\u0301",
    ],
)
def test_a_name_typed_decomposed_completes_to_the_name_kept(typed: str) -> None:
    """As macOS terminals may send "José": the bank keeps it precomposed (NFC)."""
    completer = ShellCompleter(KnownClients(lambda: ["Jos\u00e9 Garc\u00eda", "Joseph"]))
    found = completer.get_completions(Document(typed), CompleteEvent(completion_requested=True))
    assert [completion.text for completion in found] in (
        ['--client="Jos\u00e9 Garc\u00eda"'],
        ['"Jos\u00e9 Garc\u00eda"'],
    )


def test_names_not_all_read_in_time_are_asked_for_by_what_is_typed() -> None:
    """A server's bank of 100,000 clients could not list them all within Tab's second:
    no name was ever completed. Those starting with what is typed are asked for then."""
    asked: list[str] = []

    def every_name() -> list[str]:
        time.sleep(0.05)  # the whole wait, as a listing that ran out of it takes
        raise Unavailable("server_unreachable", "not every account within 0.05 s")

    def starting_with(typed: str) -> list[str]:
        asked.append(typed)
        return [name for name in NAMES if name.startswith(typed)]

    completer = ShellCompleter(KnownClients(every_name, starting_with, wait_seconds=0.05))

    def completed(text: str) -> list[str]:
        event = CompleteEvent(completion_requested=True)
        return [c.text for c in completer.get_completions(Document(text), event)]

    assert completed("balance --client=Jon") == []  # the Tab that waited, no longer
    assert completed("balance --client=Jon") == ['--client="Jon Smith"']
    assert completed("balance --client=Jo") == ['--client="John Jones"', '--client="Jon Smith"']
    assert completed("balance --client=") == []  # every name: not to be had
    assert asked == ["Jon", "Jo"]
    # Without a way to ask by what is typed, nothing, as before.
    alone = ShellCompleter(KnownClients(every_name, wait_seconds=0.05))
    event = CompleteEvent(completion_requested=True)
    assert list(alone.get_completions(Document("balance --client=Jon"), event)) == []


def test_names_refused_at_once_are_read_again_later_not_asked_for_by_what_is_typed() -> None:
    """A server down, a file locked: reading every name again soon mends it."""
    asked: list[str] = []

    def every_name() -> list[str]:
        raise Unavailable("server_unreachable", "connection refused")

    def starting_with(typed: str) -> list[str]:
        asked.append(typed)
        return []

    clients = KnownClients(every_name, starting_with, wait_seconds=5)
    assert clients.names("Jon") == []
    assert clients.names("Jon") == []
    assert asked == []
    # And read again, once a name none of them begins is typed a second later.
    loads = 0

    def every_name_once_back() -> list[str]:
        nonlocal loads
        loads += 1
        if loads == 1:
            raise Unavailable("server_unreachable", "connection refused")
        return list(NAMES)

    back = KnownClients(every_name_once_back, starting_with, wait_seconds=5)
    assert back.names("Jon") == []
    time.sleep(1.05)
    assert "Jon Smith" in back.names("Jon")
    assert asked == []
