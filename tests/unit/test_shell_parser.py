"""The shell's command grammar: quoting, option forms, aliases and one-line errors."""

from __future__ import annotations

import pytest

from kopilka.errors import InvalidInput
from kopilka.shell.parser import closest, parse_line, parse_words, split_line


def values(line: str) -> dict[str, str]:
    parsed = parse_line(line)
    assert parsed is not None
    return parsed.values


def refusal(line: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse_line(line)
    assert "\n" not in caught.value.message
    return caught.value.message


def test_the_sample_deposit_line() -> None:
    parsed = parse_line('deposit --client="John Jones" --amount=100 --description="ATM Deposit"')
    assert parsed is not None
    assert parsed.spec.name == "deposit"
    assert parsed.values == {"client": "John Jones", "amount": "100", "description": "ATM Deposit"}


def test_options_may_be_followed_by_their_value_as_the_next_word() -> None:
    assert values("deposit --client 'Jane Doe' --amount 5 --description rent") == {
        "client": "Jane Doe",
        "amount": "5",
        "description": "rent",
    }


def test_single_quotes_keep_double_quotes_and_escapes_work() -> None:
    line = """deposit --client='Jo "JJ" Jones' --amount=1 --description="a \\"b\\" c" """
    assert values(line)["client"] == 'Jo "JJ" Jones'
    assert values(line)["description"] == 'a "b" c'


def test_unicode_names() -> None:
    assert values("balance --client='Ёжик Иванов'") == {"client": "Ёжик Иванов"}
    assert values("balance --client=山田太郎") == {"client": "山田太郎"}


def test_an_empty_value_is_a_value() -> None:
    assert values('deposit --client=A --amount=1 --description=""')["description"] == ""


def test_negative_numbers_are_values_not_options() -> None:
    assert values("open_account --client A --min-balance -100")["min-balance"] == "-100"


def test_the_ewallet_transfer_form_with_short_aliases_and_a_bare_amount() -> None:
    assert values('transfer -f "John Jones" -t Jane 50.25 -d rent') == {
        "from": "John Jones",
        "to": "Jane",
        "amount": "50.25",
        "description": "rent",
    }


def test_blank_lines_and_comments_are_nothing_to_do() -> None:
    assert parse_line("") is None
    assert parse_line("   ") is None
    assert parse_line("  # deposit --client=A") is None


def test_statement_is_an_alias_of_show_bank_statement() -> None:
    parsed = parse_line("statement --client=A")
    assert parsed is not None
    assert parsed.spec.name == "show_bank_statement"


def test_unknown_command_suggests_the_closest() -> None:
    assert refusal("depost --client=A") == "unknown command 'depost'; did you mean 'deposit'?"
    assert refusal("withdrawl") == "unknown command 'withdrawl'; did you mean 'withdraw'?"


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("DEPOSIT", "deposit"),
        ("WITHDRAW", "withdraw"),
        ("Show_Bank_Statement", "show_bank_statement"),
        ("STATEMENT", "statement"),
        ("Add-User", "add-user"),
    ],
)
def test_unknown_command_in_another_case_suggests_the_command_without_running_it(
    typed: str, meant: str
) -> None:
    assert refusal(f"{typed} --client=A") == f"unknown command {typed!r}; did you mean {meant!r}?"
    with pytest.raises(InvalidInput, match=f"did you mean {meant!r}"):
        parse_words([typed, "--client=A"], oneshot=True)


def test_a_suggestion_is_never_the_word_given() -> None:
    """`help --command=serve` once answered "unknown command 'serve'; did you mean
    'serve'?": a name not taken where it stands is no correction of itself."""
    assert closest("serve", ["serve", "shell"]) is None
    assert closest("SERVE", ["serve", "shell"]) == "serve"  # in another case it is one


def test_unknown_command_with_nothing_close_points_to_help() -> None:
    assert refusal("xyzzy") == "unknown command 'xyzzy'; type 'help' to list the commands"


def test_unknown_option_suggests_the_closest() -> None:
    message = refusal("deposit --clent=A --amount=1 --description=x")
    assert message == "deposit has no option --clent; did you mean --client?"


@pytest.mark.parametrize(
    ("line", "meant"),
    [
        # Begun: nearest by spelling alone, --min was --client and --max was nothing.
        ("set_limits --client=A --min=5", "--min-balance"),
        ("set_limits --client=A --max=5", "--max-balance"),
        ("add-user -n A --max=5 --min-balance=1", "--min"),  # lengthened
        # The command's own word for the thing: --credit and --format were suggested.
        ("add-user --client=A --max=5", "--name"),
        ("get --client=A", "--name"),
        ("open_account --name=A", "--client"),
        ("statement --client=A --from=2024-01-01", "--since"),
        ("statement --client=A --to=2024-01-31", "--till"),
    ],
)
def test_an_unknown_option_suggests_the_one_it_begins_or_means(line: str, meant: str) -> None:
    assert refusal(line).endswith(f"; did you mean {meant}?")


def test_an_option_that_begins_two_is_matched_by_spelling_alone() -> None:
    message = refusal("set_limits --client=A --m=5")
    assert message.endswith("; it takes --client, --min-balance, --max-balance")


def test_a_double_dash_is_said_not_taken_not_taken_for_a_mistyped_option() -> None:
    """It was answered 'did you mean --to?', a transfer's option that it is not."""
    message = refusal("transfer -f A -t B -- 5")
    assert message == "transfer takes no --: give each value as it is"


def test_unknown_option_in_another_case_suggests_the_option() -> None:
    message = refusal("deposit --CLIENT=A --amount=1 --description=x")
    assert message == "deposit has no option --CLIENT; did you mean --client?"


def test_missing_required_options_are_named() -> None:
    message = refusal("deposit --client=A")
    assert message.startswith("deposit needs --amount, --description")


def test_a_missing_option_that_may_be_given_bare_is_named_so() -> None:
    """`transfer -f A -t B 50` is the e-wallet's form, which the usage line does not show."""
    message = refusal("transfer -f A -t B -d rent")
    assert message.startswith("transfer needs --amount or AMOUNT alone (usage: transfer --from")


def test_an_option_without_its_value() -> None:
    assert refusal("balance --client") == "option --client needs a value (NAME)"
    assert refusal("balance --client --amount=1").startswith("option --client needs a value")


def test_a_repeated_option_is_refused() -> None:
    assert refusal("balance --client=A --client=B") == "balance got --client twice"
    assert refusal("transfer -f A -t B --amount=5 --amount=6") == "transfer got --amount twice"
    # Once as an option and once bare: --amount was not typed twice.
    assert refusal("transfer -f A -t B 5 --amount=6") == (
        "transfer got AMOUNT twice: as --amount=6 and as '5'; a value with spaces in quotes"
    )
    assert refusal('transfer -f A -t B 5 "--amount=6\nError: forged"') == (
        "transfer got AMOUNT twice: as '--amount=6\\nError: forged' and as '5'; a value with"
        " spaces in quotes"
    )  # one line, a line break in a value shown as typed
    # An option's name left out, not a second amount: the options missing are named.
    assert refusal("transfer Alice Bob 1") == (
        "transfer takes one bare AMOUNT, and got 'Alice' and 'Bob': --from and --to are"
        " missing, given as --from=NAME --to=NAME (see transfer --help)"
    )
    assert refusal("transfer -f Ann Bob 5") == (
        "transfer takes one bare AMOUNT, and got 'Bob' and '5': --to is missing, given as"
        " --to=NAME (see transfer --help)"
    )
    assert refusal("transfer -f Ann -t Bob 5 6") == (
        "transfer takes one bare AMOUNT, and got '5' and '6'; a value with spaces in quotes"
        " (see transfer --help)"
    )
    # Options given after the bare words count; an amount given as an option is no bare one.
    assert refusal("transfer Bob 5 -f Ann -t Cy") == (
        "transfer takes one bare AMOUNT, and got 'Bob' and '5'; a value with spaces in quotes"
        " (see transfer --help)"
    )
    assert refusal("transfer --amount=5 Ann Bob") == (
        "transfer takes one bare AMOUNT, and got 'Ann' and 'Bob': --from and --to are"
        " missing, given as --from=NAME --to=NAME (see transfer --help)"
    )


def test_a_bare_word_where_none_is_taken() -> None:
    assert refusal("balance A").startswith("balance takes no bare argument 'A'")


def test_an_unclosed_quote_is_one_clear_line() -> None:
    assert refusal('deposit --client="John').startswith("cannot read the line:")


@pytest.mark.parametrize(
    "line", ["deposit -h", "deposit --client=A --help", "deposit --client A -h --amount=1"]
)
def test_help_standing_as_an_option_is_help(line: str) -> None:
    parsed = parse_line(line)
    assert parsed is not None
    assert (parsed.spec.name, parsed.values) == ("help", {"command": "deposit"})


def test_help_where_a_value_is_due_is_neither_help_nor_that_value() -> None:
    """A script passing user text must not be told "done" (help, exit 0) for nothing."""
    assert refusal("deposit --client=A --amount=1 --description -h") == (
        "option --description needs a value (TEXT); one that starts with '-' is written"
        " --description=-h"
    )
    parsed = parse_line("deposit --client=A --amount=1 --description=-h")
    assert parsed is not None
    assert (parsed.spec.name, parsed.values["description"]) == ("deposit", "-h")


def test_an_option_left_without_its_value_before_the_next_is_told_plainly() -> None:
    assert refusal('deposit --client "A" --amount --description=x') == (
        "option --amount needs a value (AMOUNT)"
    )
    assert refusal("deposit --client=A --amount=1 --description --ok--").endswith(
        "one that starts with '-' is written --description=--ok--"
    )


def test_a_value_that_looks_like_an_option_is_shown_on_one_line_without_its_escapes() -> None:
    """The hint wrote the value as it was: a newline in it made the error two lines, and
    an escape in it reached the terminal."""
    for value, shown in (
        ("--a\nInjected: x", "'--a\\nInjected: x'"),
        ("--\x1b]0;T\a", "'--\\x1b]0;T\\x07'"),
    ):
        words = ["deposit", "--client=A", "--amount=1", "--description", value]
        with pytest.raises(InvalidInput) as refused:
            parse_words(words, oneshot=True)
        assert refused.value.message == (
            "option --description needs a value (TEXT); one that starts with '-' is written"
            f" --description={shown}"
        )


def test_help_option_turns_into_help_for_the_command() -> None:
    parsed = parse_line("transfer --help")
    assert parsed is not None
    assert (parsed.spec.name, parsed.values) == ("help", {"command": "transfer"})


def test_oneshot_words_skip_shlex_and_know_init_but_not_exit() -> None:
    parsed = parse_words(["deposit", "--client=John Jones", "--amount", "1", "--description", ""])
    assert parsed.values["client"] == "John Jones"
    assert parse_words(["init"], oneshot=True).spec.name == "init"
    with pytest.raises(InvalidInput):
        parse_words(["exit"], oneshot=True)
    with pytest.raises(InvalidInput):
        parse_words(["init"])


def test_a_one_shot_value_with_a_newline_stays_the_options_value() -> None:
    words = ["deposit", "--client=A", "--amount=1", "--description=l1\nl2"]
    assert parse_words(words, oneshot=True).values["description"] == "l1\nl2"


def test_an_unknown_option_with_a_newline_is_still_one_line() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_words(["deposit", "--descr\niption=x"], oneshot=True)
    message = caught.value.message
    assert message == "deposit has no option '--descr\\niption'; did you mean --description?"


def test_an_absurdly_long_line_is_refused_before_splitting() -> None:
    with pytest.raises(InvalidInput):
        split_line("balance --client=" + "x" * 20_000)


def test_a_comment_line_of_any_length_is_a_comment() -> None:
    """A script's long comment (a pasted record, say) is skipped, not refused."""
    assert split_line("# " + "x" * 20_000) == []
    assert split_line("   #" + "'" * 20_000) == []


@pytest.mark.parametrize("quote", ["'", '"'])
def test_an_unclosed_quote_ending_with_a_backslash_is_said_to_be_unclosed(quote: str) -> None:
    """A Windows path in quotes left open was told it ended with a backslash."""
    with pytest.raises(InvalidInput) as refused:
        split_line(f"deposit --description={quote}C:\\dir\\")
    assert refused.value.message == "cannot read the line: No closing quotation"


def test_a_suggested_command_repeats_where_to_look_with_no_secret() -> None:
    """A password with a quote, once quoted for the shell, would escape the masking of
    the message it goes into: it is masked before."""
    from kopilka.cli import _reached_with, split_globals

    options, _ = split_globals(
        ["--db", "postgresql://u:s3c'ret@h/db", "--ledger", "my books", "--token", "kop_x_y"]
    )
    suggested = _reached_with(options)
    assert "s3c" not in suggested and "kop_x_y" not in suggested
    assert suggested == " '--db=postgresql://u:***@h/db' '--ledger=my books' --token=TOKEN"


def test_a_value_with_spaces_left_unquoted_is_told_to_be_quoted() -> None:
    """`--since=2026-12-06 10:22:48`: the time is a bare word of its own."""
    assert refusal("statement --client=Ann --since=2026-12-06 10:22:48") == (
        "show_bank_statement takes no bare argument '10:22:48'; options look like"
        " --name=value, a value with spaces in quotes"
    )


def test_a_name_left_unquoted_beside_an_amount_is_told_to_be_quoted() -> None:
    assert refusal('transfer --from=John Jones --to="Ann" --amount=5') == (
        "transfer got AMOUNT twice: as --amount=5 and as 'Jones'; a value with spaces in quotes"
    )


def test_a_value_left_unquoted_with_every_option_given_is_told_to_be_quoted() -> None:
    assert refusal('transfer --from=John Jones --to="Ann" 5 --description="rent"') == (
        "transfer takes one bare AMOUNT, and got 'Jones' and '5'; a value with spaces in"
        " quotes (see transfer --help)"
    )
    assert refusal('transfer --from="Ann" --to="Bob" --description=ATM Deposit 5') == (
        "transfer takes one bare AMOUNT, and got 'Deposit' and '5'; a value with spaces in"
        " quotes (see transfer --help)"
    )
