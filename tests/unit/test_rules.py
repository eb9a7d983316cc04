"""The ledger's rules, through plan_batch alone: no store, no engine, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from fractions import Fraction

import pytest

from kopilka.domain.model import (
    Account,
    ClaimKey,
    Command,
    Deposit,
    OpenAccount,
    Operation,
    SetLimits,
    Transfer,
    Withdraw,
    client_name,
)
from kopilka.domain.names import differ_in_case_alone, folded_name, new_name_refusal
from kopilka.domain.rules import (
    CLIENT_NAME_LENGTH_MAX,
    DESCRIPTION_LENGTH_MAX,
    IDEMPOTENCY_KEY_LENGTH_MAX,
    AccountKey,
    BatchPlan,
    OperationKey,
    accounts_touched,
    check_whole_cents,
    namesake_keys,
    operation_keys,
    plan_batch,
    quoted_name,
)
from kopilka.errors import (
    Conflict,
    InvalidInput,
    KopilkaError,
    NotFound,
    Rejected,
    RetryableStoreError,
)
from kopilka.money import AMOUNT_CENTS_MAX, BALANCE_CENTS_MAX

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


class Ledger:
    """The state a store would load for a batch: accounts and known operations."""

    def __init__(self) -> None:
        self.accounts: dict[AccountKey, Account] = {}
        self.known: dict[OperationKey, Operation] = {}
        self._next_id = 1

    def add(self, client: str, balance: int = 0, floor: int = 0, cap: int | None = None) -> Account:
        account = Account("main", client, balance, floor, cap, NOW, id=self._next_id)
        self._next_id += 1
        self.accounts[("main", client)] = account
        return account

    def plan(self, *commands: Command) -> BatchPlan:
        return plan_batch(commands, self.accounts, self.known, NOW)

    def balance(self, client: str) -> int:
        return self.accounts[("main", client)].balance_cents


@pytest.mark.parametrize(
    "claim",
    [
        pytest.param(ClaimKey("main", "", "digest"), id="empty"),
        pytest.param(ClaimKey("main", "k" * (IDEMPOTENCY_KEY_LENGTH_MAX + 1), "d"), id="long"),
        pytest.param(ClaimKey("main", "k\x00", "digest"), id="control"),
        pytest.param(ClaimKey("main", "k", ""), id="no-digest"),
    ],
)
def test_a_claim_is_held_to_the_rule_of_every_key(claim: ClaimKey) -> None:
    ledger = Ledger()
    (outcome,) = ledger.plan(claim).outcomes
    assert code_of(outcome) == "invalid_idempotency_key"


def code_of(outcome: object) -> str:
    assert isinstance(outcome, KopilkaError), outcome
    return outcome.code


def codes(outcomes: Sequence[object]) -> list[str]:
    return ["ok" if not isinstance(o, KopilkaError) else o.code for o in outcomes]


def deposit(client: str, cents: int, key: str, description: str = "cash") -> Deposit:
    return Deposit(client, cents, description, key)


def withdraw(client: str, cents: int, key: str, description: str = "cash") -> Withdraw:
    return Withdraw(client, cents, description, key)


def transfer(source: str, target: str, cents: int, key: str, description: str = "rent") -> Transfer:
    return Transfer(source, target, cents, description, key)


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger()
    ledger.add("John Jones", balance=10_000)
    ledger.add("Jane Doe", balance=0, cap=20_000)
    return ledger


# -- successes ------------------------------------------------------------------


class _Cents(int):
    """An int of a caller's own type: refused, as True is, and named."""


@pytest.mark.parametrize(
    ("cents", "named"),
    [
        (1.5, "1.5"),
        ("5", "'5'"),
        (None, "None"),
        (True, "True"),
        (_Cents(5), "a _Cents"),
        # More digits than Python turns into text (nor will pytest, for the test's name).
        pytest.param(_Cents(10**5000), "a _Cents", id="huge"),
        pytest.param(Fraction(10**5000), "a Fraction", id="huge-fraction"),
    ],
)
def test_money_that_is_no_plain_int_is_refused_by_its_type(cents: object, named: str) -> None:
    """An int subclass read "not 5", which is what it looked like it was."""
    with pytest.raises(InvalidInput) as refused:
        check_whole_cents(cents)
    assert refused.value.message == f"an amount is whole cents (an int), not {named}"


def test_deposit_opens_account(ledger: Ledger) -> None:
    plan = ledger.plan(deposit("Ann", 500, "k1"))
    (operation,) = plan.outcomes
    assert isinstance(operation, Operation)
    assert operation.kind == "deposit"
    assert operation.credit_client == "Ann"
    assert operation.debit_client is None
    assert operation.credit_balance_after_cents == 500
    assert [a.client for a in plan.new_accounts] == ["Ann"]
    assert plan.new_accounts[0].min_balance_cents == 0
    assert plan.new_accounts[0].max_balance_cents is None
    assert ledger.balance("Ann") == 500


def test_transfer_moves_money_and_records_both_sides(ledger: Ledger) -> None:
    plan = ledger.plan(transfer("John Jones", "Jane Doe", 2_500, "t1"))
    (operation,) = plan.outcomes
    assert isinstance(operation, Operation)
    assert (operation.debit_balance_after_cents, operation.credit_balance_after_cents) == (
        7_500,
        2_500,
    )
    assert [(e.account.client, e.amount_cents, e.balance_after_cents) for e in plan.entries()] == [
        ("John Jones", -2_500, 7_500),
        ("Jane Doe", 2_500, 2_500),
    ]
    assert sorted(a.client for a in plan.changed_accounts) == ["Jane Doe", "John Jones"]
    assert plan.operations == [operation]


def test_later_commands_see_earlier_effects(ledger: Ledger) -> None:
    plan = ledger.plan(
        deposit("Ann", 1_000, "a"),
        transfer("Ann", "Jane Doe", 1_000, "b"),
        withdraw("Jane Doe", 400, "c"),
        withdraw("Ann", 1, "d"),
    )
    assert codes(plan.outcomes) == ["ok", "ok", "ok", "insufficient_funds"]
    assert ledger.balance("Ann") == 0
    assert ledger.balance("Jane Doe") == 600


def test_rejected_command_does_not_spoil_its_batch(ledger: Ledger) -> None:
    plan = ledger.plan(
        deposit("John Jones", 100, "a"),
        withdraw("John Jones", 1_000_000, "b"),
        transfer("John Jones", "Nobody", 5, "c"),
        deposit("John Jones", 100, "d"),
    )
    assert codes(plan.outcomes) == ["ok", "insufficient_funds", "account_not_found", "ok"]
    assert ledger.balance("John Jones") == 10_200
    assert [o.idempotency_key for o in plan.operations] == ["a", "d"]
    assert len(plan.entries()) == 2


def test_rejection_changes_nothing(ledger: Ledger) -> None:
    ledger.accounts[("main", "Jane Doe")].max_balance_cents = 5_000
    plan = ledger.plan(
        transfer("John Jones", "Jane Doe", 30_000, "a"),
        transfer("John Jones", "Jane Doe", 10_000, "b"),
        withdraw("Jane Doe", 10_000, "c"),
    )
    assert codes(plan.outcomes) == ["insufficient_funds", "cap_exceeded", "insufficient_funds"]
    assert (ledger.balance("John Jones"), ledger.balance("Jane Doe")) == (10_000, 0)
    assert plan.operations == []
    assert plan.entries() == []
    assert plan.changed_accounts == []
    # Only the refusals are kept, each under its key, with the answer it got.
    assert [(r.idempotency_key, r.code) for r in plan.refusals] == [
        ("a", "insufficient_funds"),
        ("b", "cap_exceeded"),
        ("c", "insufficient_funds"),
    ]
    assert set(ledger.known) == {("main", "a"), ("main", "b"), ("main", "c")}


def test_a_refused_key_repeats_its_refusal(ledger: Ledger) -> None:
    first = ledger.plan(withdraw("John Jones", 50_000, "same-key"))
    assert codes(first.outcomes) == ["insufficient_funds"]
    # Later, with money enough: the same request under the same key is refused again,
    # word for word; another request under it is a reused key.
    plan = ledger.plan(
        deposit("John Jones", 100_000, "pay"),
        withdraw("John Jones", 50_000, "same-key"),
        deposit("John Jones", 5, "same-key"),
    )
    assert codes(plan.outcomes) == ["ok", "insufficient_funds", "idempotency_key_reused"]
    assert str(plan.outcomes[1]) == str(first.outcomes[0])
    assert plan.refusals == []  # kept once, the first time
    assert ledger.balance("John Jones") == 110_000


def test_a_malformed_command_is_not_kept(ledger: Ledger) -> None:
    plan = ledger.plan(
        transfer("John Jones", "John Jones", 5, "self"),
        withdraw("John Jones", 0, "zero"),
    )
    assert codes(plan.outcomes) == ["same_account", "invalid_amount"]
    assert plan.refusals == []
    assert codes(ledger.plan(withdraw("John Jones", 5, "self")).outcomes) == ["ok"]


def test_overdraft_floor_allows_negative_balance() -> None:
    ledger = Ledger()
    ledger.add("Ann", balance=2_000, floor=-5_000)
    plan = ledger.plan(withdraw("Ann", 7_000, "a"), withdraw("Ann", 1, "b"))
    assert codes(plan.outcomes) == ["ok", "insufficient_funds"]
    assert ledger.balance("Ann") == -5_000
    error = plan.outcomes[1]
    assert isinstance(error, Rejected)
    assert "Ann has $0.00 available" in error.message


def test_overdraft_transfer_available_counts_the_floor() -> None:
    ledger = Ledger()
    ledger.add("Ann", balance=2_000, floor=-5_000)
    ledger.add("Bob")
    (error,) = ledger.plan(transfer("Ann", "Bob", 7_001, "a")).outcomes
    assert code_of(error) == "insufficient_funds"
    assert isinstance(error, Rejected)
    assert "Ann has $70.00 available" in error.message


def test_deposit_up_to_cap_exactly(ledger: Ledger) -> None:
    plan = ledger.plan(deposit("Jane Doe", 20_000, "a"), deposit("Jane Doe", 1, "b"))
    assert codes(plan.outcomes) == ["ok", "cap_exceeded"]
    assert ledger.balance("Jane Doe") == 20_000


# -- idempotency -------------------------------------------------------------------


def test_replay_from_earlier_batch_returns_first_result(ledger: Ledger) -> None:
    first = ledger.plan(withdraw("John Jones", 10_000, "w"))
    (original,) = first.outcomes
    assert isinstance(original, Operation)
    original.id = 41  # as a store would after writing it
    second = ledger.plan(withdraw("John Jones", 10_000, "w"))
    (replayed,) = second.outcomes
    assert isinstance(replayed, Operation)
    assert replayed.replayed is True
    assert replayed.id == 41
    assert replayed.debit_balance_after_cents == 0
    assert second.operations == []
    assert second.entries() == []
    assert ledger.balance("John Jones") == 0


def test_replay_wins_over_insufficient_funds(ledger: Ledger) -> None:
    ledger.plan(withdraw("John Jones", 10_000, "w"))
    (outcome,) = ledger.plan(withdraw("John Jones", 10_000, "w")).outcomes
    assert isinstance(outcome, Operation)
    assert outcome.replayed


def test_in_batch_replay_applies_once(ledger: Ledger) -> None:
    command = transfer("John Jones", "Jane Doe", 1_000, "t")
    plan = ledger.plan(command, command, command)
    first, second, third = plan.outcomes
    assert isinstance(first, Operation)
    assert isinstance(second, Operation)
    assert isinstance(third, Operation)
    assert not first.replayed
    assert second.replayed
    assert third.replayed
    assert len(plan.operations) == 1
    assert ledger.balance("Jane Doe") == 1_000
    plan.operations[0].id = 7
    plan.resolve_ids()
    assert [o.id for o in plan.outcomes] == [7, 7, 7]  # type: ignore[union-attr]
    assert [o.replayed for o in plan.outcomes] == [False, True, True]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "different",
    [
        deposit("John Jones", 101, "k"),
        deposit("John Jones", 100, "k", description="other"),
        deposit("Jane Doe", 100, "k"),
        withdraw("John Jones", 100, "k"),
        transfer("John Jones", "Jane Doe", 100, "k"),
    ],
)
def test_key_reused_with_different_params(ledger: Ledger, different: Command) -> None:
    plan = ledger.plan(deposit("John Jones", 100, "k"), different)
    assert codes(plan.outcomes) == ["ok", "idempotency_key_reused"]
    assert isinstance(plan.outcomes[1], Conflict)
    assert ledger.balance("John Jones") == 10_100


@pytest.mark.parametrize(
    ("first", "different"),
    [
        (withdraw("John Jones", 100, "k"), withdraw("Bob", 100, "k")),
        (transfer("John Jones", "Jane Doe", 100, "k"), transfer("Bob", "Jane Doe", 100, "k")),
        (transfer("John Jones", "Jane Doe", 100, "k"), transfer("John Jones", "Bob", 100, "k")),
    ],
    ids=["a withdrawal's payer", "a transfer's payer", "a transfer's payee"],
)
def test_key_reused_by_another_account_conflicts(
    ledger: Ledger, first: Command, different: Command
) -> None:
    """Only an account differs: answered as the first, Bob's request would be told done
    with his money never moved."""
    ledger.add("Bob", balance=10_000)
    plan = ledger.plan(first, different)
    assert codes(plan.outcomes) == ["ok", "idempotency_key_reused"]
    assert (ledger.balance("John Jones"), ledger.balance("Bob")) == (9_900, 10_000)


def test_keys_are_per_ledger(ledger: Ledger) -> None:
    plan = ledger.plan(
        Deposit("Ann", 100, "x", "k", ledger="main"),
        Deposit("Ann", 100, "x", "k", ledger="sandbox"),
    )
    assert codes(plan.outcomes) == ["ok", "ok"]
    assert not any(o.replayed for o in plan.outcomes)  # type: ignore[union-attr]
    assert {a.ledger for a in plan.new_accounts} == {"main", "sandbox"}


# -- one negative test per rejection code --------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        deposit("John Jones", 0, "k"),
        deposit("John Jones", -1, "k"),
        deposit("John Jones", AMOUNT_CENTS_MAX + 1, "k"),
        Deposit("John Jones", 1.5, "x", "k"),  # type: ignore[arg-type]
        Deposit("John Jones", True, "x", "k"),
        withdraw("John Jones", 0, "k"),
        transfer("John Jones", "Jane Doe", 0, "k"),
    ],
)
def test_invalid_amount(ledger: Ledger, command: Command) -> None:
    (error,) = ledger.plan(command).outcomes
    assert code_of(error) == "invalid_amount"
    assert isinstance(error, InvalidInput)


def test_maximum_amount_accepted(ledger: Ledger) -> None:
    (outcome,) = ledger.plan(deposit("Rich", AMOUNT_CENTS_MAX, "k")).outcomes
    assert isinstance(outcome, Operation)


@pytest.mark.parametrize(
    "command",
    [
        deposit("", 100, "k"),
        deposit("   ", 100, "k"),
        deposit("x" * (CLIENT_NAME_LENGTH_MAX + 1), 100, "k"),
        deposit("John\nJones", 100, "k"),
        withdraw("", 100, "k"),
        transfer("John Jones", "", 100, "k"),
        transfer("", "Jane Doe", 100, "k"),
        OpenAccount(""),
        SetLimits(" "),
    ],
)
def test_invalid_client(ledger: Ledger, command: Command) -> None:
    (error,) = ledger.plan(command).outcomes
    assert code_of(error) == "invalid_client"


@pytest.mark.parametrize(
    "name",
    # A name of such spaces alone too: it had been called empty.
    ["Ann\u00a0", "Ann\u2003Lee", "Ann\u0007", "Ann\u200cLee", "A\ue000b", "\u00a0", "\u2003\t"],
)
def test_a_name_with_another_kind_of_space_says_so(ledger: Ledger, name: str) -> None:
    (error,) = ledger.plan(deposit(name, 100, "k")).outcomes
    assert isinstance(error, InvalidInput)
    assert error.message == (
        "client name has control or invisible formatting characters, spaces other"
        " than a plain space, characters Unicode keeps for private use, or bytes that"
        " are not UTF-8"
    )


def test_a_character_unassigned_here_is_refused_in_a_new_name_alone(ledger: Ledger) -> None:
    """Unassigned in this Python's Unicode, perhaps not in the one that opened an account:
    refused for a new account, and no account of such a name is said to be malformed."""
    opened, withdrawn = ledger.plan(
        deposit("A\ufdd0b", 100, "k"), Withdraw("A\U000e0fffb", 100, "", "k2")
    ).outcomes
    assert isinstance(opened, InvalidInput) and opened.code == "invalid_client"
    assert opened.message.startswith(
        "a new client's name may not hold a character Unicode has not assigned (U+FDD0)"
    )
    assert code_of(withdrawn) == "account_not_found"


def test_unicode_names_accepted(ledger: Ledger) -> None:
    plan = ledger.plan(deposit("Jürgen Øster 王", 100, "k"), OpenAccount("Ёжик"))
    assert codes(plan.outcomes) == ["ok", "ok"]


def test_a_new_name_may_not_start_or_end_with_a_space(ledger: Ledger) -> None:
    ledger.add(" Old ", balance=500)  # made before the rule: still usable
    plan = ledger.plan(
        deposit(" Ann", 100, "a"),
        deposit("Ann ", 100, "b"),
        OpenAccount("Bob "),
        deposit("Ann", 100, "c"),
        withdraw(" Old ", 100, "d"),
    )
    assert codes(plan.outcomes) == ["invalid_client"] * 3 + ["ok", "ok"]
    assert plan.refusals == []  # malformed, not kept
    assert [account.client for account in plan.new_accounts] == ["Ann"]


def test_a_new_name_may_not_hold_two_spaces_in_a_row(ledger: Ledger) -> None:
    """ "Ann  Lee" lists like "Ann Lee": a double space mistyped in a deposit, which
    opens the account, opened a second one."""
    ledger.add("Old  Lee", balance=500)  # made before the rule: still usable
    plan = ledger.plan(
        deposit("Ann  Lee", 100, "a"),
        OpenAccount("Bob   Lee"),
        deposit("Ann Lee", 100, "b"),
        deposit("Old  Lee", 100, "c"),
        withdraw("Old  Lee", 100, "d"),
        transfer("Old  Lee", "Ann Lee", 100, "e"),
        transfer("Ann Lee", "Old  Lee", 100, "f"),
        SetLimits("Old  Lee", -100, 1_000),
    )
    assert codes(plan.outcomes) == ["invalid_client"] * 2 + ["ok"] * 6
    refused = plan.outcomes[0]
    assert isinstance(refused, InvalidInput)
    assert refused.message == "a new client's name may not hold two spaces in a row: 'Ann  Lee'"
    assert plan.refusals == []  # malformed, not kept
    assert [account.client for account in plan.new_accounts] == ["Ann Lee"]
    assert ledger.balance("Old  Lee") == 500


def test_a_new_name_may_not_be_wrapped_in_quotes(ledger: Ledger) -> None:
    """kopilka deposit '--client="John Jones"' opened a second John Jones, quotes kept."""
    ledger.add('"Old"', balance=500)  # made before the rule: still usable
    plan = ledger.plan(
        deposit('"John Jones"', 100, "a"),
        deposit("'Ann'", 100, "b"),
        # Quotes an editor curled, in a command copied from a text
        deposit("\u201cAnn\u201d", 100, "g"),
        deposit("\u201eAnn\u201c", 100, "h"),
        deposit("\u2018Bo\u2019", 100, "i"),
        deposit("`Ann`", 100, "j"),
        deposit("\u2019Ann\u2019", 100, "l"),  # as Swedish writes them
        deposit("\u00bbAnn\u00ab", 100, "m"),  # as German may
        deposit('"Ann\u201d', 100, "n"),  # one end curled
        deposit("\"Ann'", 100, "d"),
        deposit("\u00abRomashka\u00bb", 100, "k"),  # a firm's name, so written in Russian
        deposit("'", 100, "c"),
        deposit("O'Neil", 100, "e"),
        withdraw('"Old"', 100, "f"),
    )
    assert codes(plan.outcomes) == ["invalid_client"] * 10 + ["ok"] * 4
    refused = plan.outcomes[0]
    assert isinstance(refused, InvalidInput)
    assert refused.message == (
        "a new client's name may not be wrapped in quotes, which were meant to quote it:"
        " '\"John Jones\"'"
    )


def test_a_new_name_may_not_be_a_dot_segment_of_a_url(ledger: Ledger) -> None:
    """/v1/accounts/.. is /v1 to any caller that tidies a URL's path."""
    ledger.add("..", balance=500)  # made before the rule: still usable
    plan = ledger.plan(
        deposit(".", 100, "a"),
        OpenAccount(".."),  # there already: what it would be told anyway
        deposit("...", 100, "b"),
        withdraw("..", 100, "c"),
    )
    assert codes(plan.outcomes) == ["invalid_client", "account_exists", "ok", "ok"]
    refused = plan.outcomes[0]
    assert isinstance(refused, InvalidInput)
    assert refused.message == (
        "a new client's name may not be '.' or '..', which a URL's path reads as folders: '.'"
    )
    assert [account.client for account in plan.new_accounts] == ["..."]
    assert ledger.balance("..") == 400


@pytest.mark.parametrize(
    "blank", ["\u034f", "\u115f", "\u3164", "\uffa0", "\u17b4", "\u17b5", "\u2800", "\ufe0f"]
)
def test_a_new_name_may_not_hold_a_character_that_shows_nothing(ledger: Ledger, blank: str) -> None:
    """ "Ann" and "Ann" + a Hangul filler list alike: the second would be another account."""
    ledger.add(f"Old{blank}", balance=500)  # made before the rule: still usable
    plan = ledger.plan(
        deposit(f"Ann{blank}", 100, "a"),
        OpenAccount(f"B{blank}ob"),
        withdraw(f"Old{blank}", 100, "b"),
    )
    assert codes(plan.outcomes) == ["invalid_client", "invalid_client", "ok"]
    refused = plan.outcomes[0]
    assert isinstance(refused, InvalidInput)
    assert f"(U+{ord(blank):04X})" in refused.message
    assert plan.new_accounts == []


def test_a_new_name_may_not_mix_alphabets_that_look_alike_in_one_word(ledger: Ledger) -> None:
    """ "Аnn" (a Cyrillic A, a keyboard switched mid-word) lists as "Ann" and opened
    another account beside hers."""
    ledger.add("Ann", balance=500)
    ledger.add("Аnn", balance=500)  # made before the rule: still usable
    plan = ledger.plan(
        deposit("Аnn Lee", 100, "a"),
        OpenAccount("Olγa"),  # a Greek gamma
        deposit("Иван Smith", 100, "b"),  # each word in one alphabet
        deposit("山田さくら", 100, "c"),  # kanji and kana mix as written
        deposit("Zoë Brontë", 100, "d"),
        withdraw("Аnn", 100, "e"),
        # Words are runs of letters: a double surname, an initial with no space after it.
        deposit("Smith-Иванова", 100, "f"),
        deposit("J.Παπας", 100, "g"),
        # A stress mark goes on with its word: the Latin "c" after it is in it too.
        deposit("Бори́c", 100, "h"),
        deposit("Iva²н", 100, "i"),  # a superscript two goes on with its word too
    )
    assert codes(plan.outcomes) == ["invalid_client"] * 2 + ["ok"] * 6 + ["invalid_client"] * 2
    refused = plan.outcomes[0]
    assert isinstance(refused, InvalidInput)
    assert refused.message == (
        "a new client's name may not mix Latin and Cyrillic letters in one word: the"
        " 'А' (U+0410) in 'Аnn' is Cyrillic: 'Аnn Lee'"
    )
    assert [account.client for account in plan.new_accounts] == [
        "Иван Smith",
        "山田さくら",
        "Zoë Brontë",
        "Smith-Иванова",
        "J.Παπας",
    ]
    assert ledger.balance("Аnn") == 400


@pytest.mark.parametrize(
    ("name", "alphabet", "letter"),
    [
        ("J\u0585hn Smith", "Armenian", "'օ' (U+0585)"),
        ("\u13aaBC", "Cherokee", "'Ꭺ' (U+13AA)"),
        ("\ua4eenn", "Lisu", "'ꓮ' (U+A4EE)"),
        ("J\u2c9fhn", "Coptic", "'ⲟ' (U+2C9F)"),
    ],
)
def test_a_letter_of_another_alphabet_drawn_like_a_latin_one_is_named(
    name: str, alphabet: str, letter: str
) -> None:
    """Only Cyrillic and Greek letters were looked for: "Jօhn Smith" lists like "John
    Smith", and was another client's account."""
    refusal = new_name_refusal(name)
    assert refusal is not None
    assert refusal.startswith(f"may not mix Latin and {alphabet} letters in one word: the {letter}")


@pytest.mark.parametrize("name", ["Ϣενουτε", "Μαρκοϥ", "Ⲡⲁⲩⲗⲟⲥ Ꭺ"])
def test_coptic_written_with_greek_letters_is_a_name(name: str) -> None:
    """Coptic is written with Greek letters beside its own (and older text keeps those in
    the Greek block): only Latin letters beside them are refused."""
    assert new_name_refusal(name) is None


def test_of_three_alphabets_in_a_word_the_one_of_fewest_letters_is_named() -> None:
    refusal = new_name_refusal("Ωmegaбб")  # a Greek Omega, two Cyrillic b
    assert refusal == (
        "may not mix Latin and Greek letters in one word: the 'Ω' (U+03A9) in 'Ωmegaбб' is Greek"
    )


@pytest.mark.parametrize(
    ("name", "refusal"),
    [
        ("Ｂｏｂ", "may not hold 'Ｂ' (U+FF22), a fullwidth form of 'B' that lists like it"),
        # A Cyrillic "А" beside fullwidth Latin letters, which name no alphabet of their own.
        ("Аｎｎ", "may not hold 'ｎ' (U+FF4E), a fullwidth form of 'n' that lists like it"),
        ("𝖡𝗈𝖻", "may not hold '𝖡' (U+1D5A1), a styled form of 'B' that lists like it"),
        ("Room １２", "may not hold '１' (U+FF11), a fullwidth form of '1' that lists like it"),
        ("Ⅾavid", "may not hold 'Ⅾ' (U+216E), a numeral form of 'D' that lists like it"),
        ("ﺍحمد", "may not hold 'ﺍ' (U+FE8D), a presentation form of 'ا' that lists like it"),
        # Forms drawn unlike their letters are names as written, and so are halfwidth
        # katakana (Japanese banks' account names) and fullwidth punctuation.
        ("Mª José", None),
        ("ﬁona", None),
        ("ﾔﾏﾀﾞ ﾀﾛｳ", None),
        ("山田商事（株）", None),
    ],
)
def test_a_new_name_may_not_hold_a_form_of_a_letter_drawn_like_it(
    name: str, refusal: str | None
) -> None:
    assert new_name_refusal(name) == refusal


@pytest.mark.parametrize(
    ("name", "folded"),
    [
        ("John Jones", "john jones"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),  # full folding: "ß" is "ss"
        ("ǅ", "dž"),  # a titlecase letter, and a ligature read as its letters
        ("Ğ", "ğ"),  # composed again after folding
    ],
)
def test_a_name_is_folded_in_full_for_case(name: str, folded: str) -> None:
    assert folded_name(name) == folded


@pytest.mark.parametrize(
    ("name", "alike"),
    [
        ("ΟΔΟΣ", "οδοσ"),
        ("οδός", "ΟΔΌΣ"),  # a final sigma folds as any sigma
        ("µ", "μ"),  # MICRO SIGN folds to Greek mu
        ("Ἀθηνᾷ", "ἈΘΗΝᾼ\u0342"),  # canonically alike: the iota beside, an accent after
        # Letters of other alphabets drawn like Latin ones, small or capital, in a name
        # written all in them (a word mixing alphabets is refused on its own)
        ("Јое", "Joe"),  # Cyrillic
        ("НОРЕ", "Hope"),  # the capitals are drawn like Latin ones, the small ones not all
        ("һоре", "hope"),
        ("Ꭻoe Ꭺdams", "joe adams"),  # Cherokee
        ("Ρέα", "Péa"),  # Greek, an accent kept on its Latin lookalike
        # Latin ligatures of two letters, as those
        ("Ĳsbrand", "IJsbrand"),
        ("ǅemal", "Džemal"),
        ("ǈiljana", "Ljiljana"),
    ],
)
def test_names_alike_but_for_case_or_lookalike_letters_fold_alike(name: str, alike: str) -> None:
    assert folded_name(client_name(name)) == folded_name(client_name(alike))


@pytest.mark.parametrize(
    ("name", "other"),
    [
        ("Анна", "Anna"),  # "н" is drawn like no Latin small letter
        ("Иван", "Ivan"),
        ("Ivan", "lvan"),  # Latin letters are not read as one another
        ("Olga", "0lga"),  # nor digits as letters
        ("Straße", "Strase"),
        # A word with a letter drawn like no Latin one is its alphabet's, read as
        # written: its letters drawn like the same Latin one are not confused
        ("עידו לוי", "עידן לוי"),  # Ido and Idan: vav and final nun
        ("Ագրյան", "Ազրյան"),
    ],
)
def test_names_that_look_otherwise_fold_otherwise(name: str, other: str) -> None:
    assert folded_name(name) != folded_name(other)


def test_names_alike_are_told_apart_by_case_and_by_lookalikes() -> None:
    assert differ_in_case_alone("STRASSE", "Straße")
    assert not differ_in_case_alone("Јое", "Joe")


def test_a_name_found_its_own_namesake_is_planned_again() -> None:
    """The account was committed between the store's reads by name and by folded name
    (PostgreSQL reads each as it stands): the batch is planned again, and finds it."""
    with pytest.raises(RetryableStoreError):
        plan_batch(
            [deposit("Walk In", 100, "k1")], {}, {}, NOW, namesakes={("main", "walk in"): "Walk In"}
        )


def test_names_no_account_may_have_are_not_folded() -> None:
    """The store looks up the folded names of names it found no account for; one the
    rules refuse first is not worth folding (a 10,000-mark run would cost)."""
    keys = {
        ("main", "Ann"),
        ("main", "Bob"),
        ("main", "x" * (CLIENT_NAME_LENGTH_MAX + 1)),
        ("main", "a" + "\u0301" * 10_000),
    }
    assert namesake_keys(keys, {("main", "Bob")}) == {("main", "ann")}


def test_invalid_description(ledger: Ledger) -> None:
    longest = "d" * DESCRIPTION_LENGTH_MAX
    plan = ledger.plan(
        deposit("John Jones", 1, "a", description=longest),
        deposit("John Jones", 1, "b", description=longest + "d"),
    )
    assert codes(plan.outcomes) == ["ok", "invalid_description"]


@pytest.mark.parametrize(
    "description", ["a\x1b[2Jb", "bell\x07", "nul\x00", "line\nbreak", "\udce9t\udce9", "\x9b"]
)
def test_a_description_with_control_characters_or_undecodable_bytes(
    ledger: Ledger, description: str
) -> None:
    (error,) = ledger.plan(deposit("John Jones", 1, "k", description=description)).outcomes
    assert code_of(error) == "invalid_description"
    assert ledger.balance("John Jones") == 10_000


def test_a_description_in_any_script_is_fine(ledger: Ledger) -> None:
    plan = ledger.plan(deposit("John Jones", 1, "k", description="Зарплата · 給料 · café ☕"))
    assert codes(plan.outcomes) == ["ok"]


@pytest.mark.parametrize("key", ["", "k" * (IDEMPOTENCY_KEY_LENGTH_MAX + 1)])
def test_invalid_idempotency_key(ledger: Ledger, key: str) -> None:
    (error,) = ledger.plan(deposit("John Jones", 1, key)).outcomes
    assert code_of(error) == "invalid_idempotency_key"


def test_same_account(ledger: Ledger) -> None:
    (error,) = ledger.plan(transfer("John Jones", "John Jones", 1, "k")).outcomes
    assert code_of(error) == "same_account"
    assert ledger.balance("John Jones") == 10_000


@pytest.mark.parametrize(
    "command",
    [
        withdraw("Nobody", 1, "k"),
        transfer("Nobody", "Jane Doe", 1, "k"),
        transfer("John Jones", "Nobody", 1, "k"),
        Deposit("Nobody", 1, "x", "k", open_account=False),
        SetLimits("Nobody", min_balance_cents=0),
    ],
)
def test_account_not_found(ledger: Ledger, command: Command) -> None:
    (error,) = ledger.plan(command).outcomes
    assert code_of(error) == "account_not_found"
    assert isinstance(error, NotFound)
    assert "Nobody" in error.message
    assert ("main", "Nobody") not in ledger.accounts


def test_insufficient_funds_says_how_much_is_available(ledger: Ledger) -> None:
    (error,) = ledger.plan(withdraw("John Jones", 10_001, "k")).outcomes
    assert code_of(error) == "insufficient_funds"
    assert isinstance(error, Rejected)
    assert "John Jones has $100.00 available" in error.message


def test_cap_exceeded_names_the_cap(ledger: Ledger) -> None:
    plan = ledger.plan(
        transfer("John Jones", "Jane Doe", 10_000, "a"),
        deposit("Jane Doe", 10_001, "b"),
    )
    assert codes(plan.outcomes) == ["ok", "cap_exceeded"]
    error = plan.outcomes[1]
    assert isinstance(error, Rejected)
    assert "cap of $200.00" in error.message
    assert ledger.balance("Jane Doe") == 10_000


def test_an_account_without_a_cap_stops_at_the_banks_largest_balance(ledger: Ledger) -> None:
    rich = ledger.add("Rich", balance=BALANCE_CENTS_MAX - AMOUNT_CENTS_MAX)
    plan = ledger.plan(
        deposit("Rich", AMOUNT_CENTS_MAX, "to-the-top"),
        deposit("Rich", 1, "one-cent-over"),
        transfer("John Jones", "Rich", 1, "transfer-over"),
    )
    assert codes(plan.outcomes) == ["ok", "cap_exceeded", "cap_exceeded"]
    error = plan.outcomes[1]
    assert isinstance(error, Rejected)
    assert "largest balance the bank holds" in error.message
    assert rich.balance_cents == BALANCE_CENTS_MAX
    assert ledger.balance("John Jones") == 10_000


def test_account_exists(ledger: Ledger) -> None:
    plan = ledger.plan(OpenAccount("Ann"), OpenAccount("Ann"), OpenAccount("John Jones"))
    assert codes(plan.outcomes) == ["ok", "account_exists", "account_exists"]
    assert isinstance(plan.outcomes[1], Conflict)
    assert len(plan.new_accounts) == 1


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("x\\y", "'x\\y'"),  # as typed, the backslash not doubled
        ("It's", '"It\'s"'),
        ('"It\'s" x', "'\"It\\'s\" x'"),  # both quotes: escaped, as Python writes it
    ],
)
def test_names_in_refusals_are_shown_as_written(ledger: Ledger, name: str, shown: str) -> None:
    _, exists = ledger.plan(OpenAccount(name), OpenAccount(name)).outcomes
    (missing,) = ledger.plan(withdraw(name + "!", 1, "k")).outcomes
    assert isinstance(exists, Conflict) and isinstance(missing, NotFound)
    assert exists.message == f"client {shown} already has an account"
    assert missing.message == f"no account for client {shown[:-1]}!{shown[-1]}"


def test_a_name_that_is_not_printable_is_shown_escaped() -> None:
    assert quoted_name("a\x1b[2Jb") == "'a\\x1b[2Jb'"


def test_open_account_with_limits(ledger: Ledger) -> None:
    (account,) = ledger.plan(
        OpenAccount("Ann", min_balance_cents=-1_000, max_balance_cents=5_000)
    ).outcomes
    assert isinstance(account, Account)
    assert (account.balance_cents, account.min_balance_cents, account.max_balance_cents) == (
        0,
        -1_000,
        5_000,
    )


def test_open_account_snapshot_keeps_its_state(ledger: Ledger) -> None:
    plan = ledger.plan(OpenAccount("Ann"), deposit("Ann", 300, "k"))
    account, _ = plan.outcomes
    assert isinstance(account, Account)
    assert account.balance_cents == 0
    plan.new_accounts[0].id = 99
    plan.resolve_ids()
    assert account.id == 99


def test_floor_above_balance(ledger: Ledger) -> None:
    plan = ledger.plan(
        OpenAccount("Ann", min_balance_cents=1),
        SetLimits("John Jones", min_balance_cents=10_001),
        SetLimits("John Jones", min_balance_cents=10_000),
    )
    assert codes(plan.outcomes) == ["floor_above_balance", "floor_above_balance", "ok"]
    assert ledger.accounts[("main", "John Jones")].min_balance_cents == 10_000
    assert ("main", "Ann") not in ledger.accounts


def test_an_opening_balance_may_fill_the_cap_exactly(ledger: Ledger) -> None:
    plan = ledger.plan(
        OpenAccount("Ann", 0, 10_000, opening_balance_cents=10_000, opening_key="k1"),
        OpenAccount("Bob", 0, 9_999, opening_balance_cents=10_000, opening_key="k2"),
    )
    assert codes(plan.outcomes) == ["ok", "cap_below_balance"]
    assert ledger.balance("Ann") == 10_000


def test_an_opening_balance_may_be_the_largest_amount_and_no_more(ledger: Ledger) -> None:
    plan = ledger.plan(
        OpenAccount("Ann", opening_balance_cents=AMOUNT_CENTS_MAX, opening_key="k1"),
        OpenAccount("Bob", opening_balance_cents=AMOUNT_CENTS_MAX + 1, opening_key="k2"),
    )
    assert codes(plan.outcomes) == ["ok", "invalid_amount"]
    assert ledger.balance("Ann") == AMOUNT_CENTS_MAX


def test_cap_below_balance(ledger: Ledger) -> None:
    plan = ledger.plan(
        OpenAccount("Ann", min_balance_cents=-100, max_balance_cents=-1),
        SetLimits("John Jones", max_balance_cents=9_999),
        SetLimits("John Jones", max_balance_cents=10_000),
    )
    assert codes(plan.outcomes) == ["cap_below_balance", "cap_below_balance", "ok"]
    assert ledger.accounts[("main", "John Jones")].max_balance_cents == 10_000


@pytest.mark.parametrize(
    "command",
    [
        OpenAccount("Ann", min_balance_cents=-100, max_balance_cents=-200),
        OpenAccount("Ann", min_balance_cents=-(BALANCE_CENTS_MAX + 1)),
        OpenAccount("Ann", max_balance_cents=BALANCE_CENTS_MAX + 1),
        SetLimits("John Jones", min_balance_cents=-(BALANCE_CENTS_MAX + 1)),
        SetLimits("John Jones", min_balance_cents=-500, max_balance_cents=-600),
        SetLimits("Jane Doe", min_balance_cents=-100, max_balance_cents=-200),
    ],
)
def test_invalid_limit(ledger: Ledger, command: Command) -> None:
    (error,) = ledger.plan(command).outcomes
    assert code_of(error) == "invalid_limit"


def test_set_limits_keeps_unnamed_bound_and_clears_cap(ledger: Ledger) -> None:
    plan = ledger.plan(
        SetLimits("Jane Doe", min_balance_cents=-500),
        SetLimits("Jane Doe", clear_max=True),
        deposit("Jane Doe", 1_000_000, "k"),
    )
    first, second, _ = plan.outcomes
    assert isinstance(first, Account)
    assert isinstance(second, Account)
    assert (first.min_balance_cents, first.max_balance_cents) == (-500, 20_000)
    assert (second.min_balance_cents, second.max_balance_cents) == (-500, None)
    assert codes(plan.outcomes) == ["ok", "ok", "ok"]


def test_lowered_floor_lets_later_withdrawal_through(ledger: Ledger) -> None:
    plan = ledger.plan(
        withdraw("John Jones", 12_000, "a"),
        SetLimits("John Jones", min_balance_cents=-2_000),
        withdraw("John Jones", 12_000, "b"),
        SetLimits("John Jones", min_balance_cents=0),
    )
    assert codes(plan.outcomes) == ["insufficient_funds", "ok", "ok", "floor_above_balance"]
    assert ledger.balance("John Jones") == -2_000


# -- precedence: the first applicable code wins ------------------------------------


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (deposit("", 0, "k"), "invalid_amount"),
        (deposit("", 1, "k", description="d" * 501), "invalid_client"),
        (deposit("John Jones", 1, "", description="d" * 501), "invalid_description"),
        (transfer("John Jones", "John Jones", 1, ""), "invalid_idempotency_key"),
        (transfer("Nobody", "Nobody", 1, "k"), "same_account"),
        (transfer("John Jones", "Nobody", 1, "used"), "idempotency_key_reused"),
        (transfer("Jane Doe", "Nobody", 1, "k"), "account_not_found"),
        (transfer("Jane Doe", "John Jones", 1, "k"), "insufficient_funds"),
        (transfer("John Jones", "Capped", 20_000, "k"), "insufficient_funds"),
        (transfer("John Jones", "Capped", 600, "k"), "cap_exceeded"),
    ],
)
def test_precedence(ledger: Ledger, command: Command, code: str) -> None:
    ledger.add("Capped", balance=0, cap=500)
    first = ledger.plan(deposit("John Jones", 1, "used"))
    assert codes(first.outcomes) == ["ok"]
    (error,) = ledger.plan(command).outcomes
    assert code_of(error) == code


def test_open_account_precedence(ledger: Ledger) -> None:
    plan = ledger.plan(
        OpenAccount("", min_balance_cents=1),
        OpenAccount("John Jones", min_balance_cents=5, max_balance_cents=1),
        OpenAccount("John Jones", min_balance_cents=5),
    )
    assert codes(plan.outcomes) == ["invalid_client", "invalid_limit", "account_exists"]


# -- what a store must load ---------------------------------------------------------------


def test_accounts_touched_and_operation_keys() -> None:
    commands: list[Command] = [
        deposit("A", 1, "k1"),
        transfer("B", "C", 1, "k2"),
        OpenAccount("D", ledger="other"),
        SetLimits("E"),
    ]
    assert accounts_touched(commands) == {
        ("main", "A"),
        ("main", "B"),
        ("main", "C"),
        ("other", "D"),
        ("main", "E"),
    }
    assert operation_keys(commands) == {("main", "k1"), ("main", "k2")}


def test_outcome_per_command_in_order(ledger: Ledger) -> None:
    commands: list[Command] = [
        deposit("X", 1, f"k{i}") if i % 3 else withdraw("X", 5, f"k{i}") for i in range(30)
    ]
    plan = ledger.plan(*commands)
    assert len(plan.outcomes) == 30
    for command, outcome in zip(commands, plan.outcomes, strict=True):
        if isinstance(outcome, Operation):
            assert outcome.idempotency_key == command.idempotency_key  # type: ignore[union-attr]
