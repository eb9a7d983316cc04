"""What every store must show after upgrading a ledger that opened accounts under names
alike but for case: shared by the SQLite and PostgreSQL schema tests, which each build
the old database."""

from __future__ import annotations

from kopilka.domain.model import Deposit, Operation
from kopilka.engine import Engine
from kopilka.errors import KopilkaError

# Accounts (id, ledger, client, balance) of a ledger from before names were compared for
# case, and the folded name each has after the upgrade (the oldest of those alike only).
ALIKE_ACCOUNTS = (
    (1, "main", "John Jones", 100),
    (2, "main", "john jones", 200),
    (3, "main", "Straße", 0),
    (4, "side", "JOHN JONES", 0),
    (-(2**63), "main", "Minimal", 0),  # the least id there may be: the oldest
    (5, "main", "MINIMAL", 0),
)
FOLDED_AFTER = [
    (-(2**63), "minimal"),
    (1, "john jones"),
    (2, None),
    (3, "strasse"),
    (4, "john jones"),
    (5, None),
]


# Accounts an older kopilka left running opened after the upgrade (no folded name), and
# what `kopilka init` then gives them: the oldest of names alike that no account holds.
OPENED_BY_AN_OLDER_KOPILKA = (
    (10, "main", "Zoe", 0),
    (11, "main", "ZOE", 0),  # alike Zoe, newer
    (12, "main", "JOHN  JONES", 0),  # not alike: two spaces
    (13, "main", "JOHN JONES", 0),  # alike John Jones, which holds the fold
    (14, "side", "zoe", 0),  # another ledger's
)
FOLDED_BY_INIT = [(10, "zoe"), (11, None), (12, "john  jones"), (13, None), (14, "zoe")]
INIT_SAYS = (
    "Folded the names of 3 accounts opened without one (by an older kopilka): a new name"
    " alike theirs (but for case, or drawn alike) is now refused.\n"
)

# Accounts (id, ledger, client, balance) of a ledger from before letters drawn like Latin
# ones were read as those (SQLite schema 10, PostgreSQL migration 9), each with the fold
# it had then, for case alone; and the fold each has after the upgrade: the oldest of
# names now alike keeps it, the others none.
LOOKALIKE_ACCOUNTS = (
    ((1, "main", "Joe", 100), "joe"),
    ((2, "main", "Јое", 200), "јое"),  # Cyrillic
    ((3, "main", "Иван", 0), "иван"),
    ((4, "side", "ЈОЕ", 0), "јое"),  # another ledger's, alone there
)
LOOKALIKE_FOLDED_AFTER = [(1, "joe"), (2, None), (3, "иван"), (4, "joe")]


async def assert_lookalikes_each_keep_their_account(engine: Engine) -> None:
    deposit = await engine.execute(Deposit("Јое", 5, "pay", "k-cyrillic"))
    assert isinstance(deposit, Operation), deposit
    assert (await engine.get_account("main", "Јое")).balance_cents == 205
    assert (await engine.get_account("main", "Joe")).balance_cents == 100
    for ledger, client, namesake in (
        ("main", "JOE", "Joe"),
        ("main", "ЈОЕ", "Joe"),  # the oldest of the two alike stands for both
        ("side", "joe", "ЈОЕ"),
    ):
        refused = await engine.execute(Deposit(client, 5, "pay", f"k-{client}", ledger=ledger))
        assert isinstance(refused, KopilkaError), refused
        assert f"another client's, {namesake!r}" in refused.message, refused


async def assert_a_name_alike_an_older_kopilkas_is_refused(engine: Engine) -> None:
    for ledger, client, namesake in (("main", "zOE", "Zoe"), ("side", "ZOE", "zoe")):
        refused = await engine.execute(Deposit(client, 5, "pay", f"k-{client}", ledger=ledger))
        assert isinstance(refused, KopilkaError), refused
        assert f"another client's, {namesake!r}," in refused.message, refused


async def assert_each_keeps_its_account_and_no_more_are_opened(engine: Engine) -> None:
    for client, cents in (("John Jones", 100), ("john jones", 200)):
        assert (await engine.get_account("main", client)).balance_cents == cents
    deposit = await engine.execute(Deposit("john jones", 5, "pay", "k-later"))
    assert isinstance(deposit, Operation), deposit
    assert (await engine.get_account("main", "john jones")).balance_cents == 205
    for ledger, client, namesake in (
        ("main", "JOHN JONES", "John Jones"),  # the oldest of the two
        ("main", "STRASSE", "Straße"),
        ("side", "John Jones", "JOHN JONES"),
        ("main", "minimal", "Minimal"),
    ):
        refused = await engine.execute(Deposit(client, 5, "pay", f"k-{client}", ledger=ledger))
        assert isinstance(refused, KopilkaError), refused
        assert (refused.code, f"another client's, {namesake!r}," in refused.message) == (
            "invalid_client",
            True,
        ), refused
    assert [a.client for a in await engine.list_accounts("main")] == [
        "John Jones",
        "MINIMAL",
        "Minimal",
        "Straße",
        "john jones",
    ]
