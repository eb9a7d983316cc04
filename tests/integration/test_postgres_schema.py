"""PostgreSQL schema: versioned migrations, refusal of unknown versions, CHECK guards,
and a password that never shows. Real server (tests/conftest_pg.py), no mocks."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from tests.case_upgrade import (
    ALIKE_ACCOUNTS,
    FOLDED_AFTER,
    FOLDED_BY_INIT,
    INIT_SAYS,
    LOOKALIKE_ACCOUNTS,
    LOOKALIKE_FOLDED_AFTER,
    OPENED_BY_AN_OLDER_KOPILKA,
    assert_a_name_alike_an_older_kopilkas_is_refused,
    assert_each_keeps_its_account_and_no_more_are_opened,
    assert_lookalikes_each_keep_their_account,
)
from tests.e2e.conftest import run_kopilka
from tests.kopilka_server import free_port, kopilka_command, running_server, server_env
from tests.nfc_ledger_upgrade import (
    BATCH_DIGEST,
    CAFE_NFC,
    CAFE_NFD,
    NAIVE_NFC,
    NAIVE_NFD,
    OLD_ACCOUNTS,
    OLD_BATCH_KEYS,
    SANDBOX,
    TEA_NFC,
    TEA_NFD,
    assert_cafe_is_one_ledger_again,
    assert_tokens_reach_the_ledgers_they_were_made_for,
    old_tokens,
)
from tests.nfc_upgrade import (
    JOSE_NFC,
    JOSE_NFD,
    REFUSED,
    TWIN_ACCOUNTS,
    assert_jose_is_one_client_again,
    assert_no_token_reaches_another_account,
    assert_twins_are_left_for_an_operator,
    old_client_token,
)
from tests.pgserver import PostgresTestServer

from kopilka.domain.model import ClaimKey, Command, Deposit, OpenAccount, Operation, SetLimits
from kopilka.engine import Engine
from kopilka.errors import InvalidInput, KopilkaError, Unavailable
from kopilka.limits import Limits
from kopilka.redaction import redact_url
from kopilka.store import initialize_schema, open_store, postgres_migrate
from kopilka.store.postgres import PostgresStore
from kopilka.store.postgres_schema import (
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    SCHEMA_MIGRATIONS_TABLE,
    SCHEMA_VERSION,
)
from kopilka.tokens import TokenRecord

pytestmark = pytest.mark.postgres


async def _versions(url: str) -> list[int]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [row[0] for row in rows]
    finally:
        await connection.close()


async def test_open_creates_the_schema_once_and_again_is_a_no_op(postgres_url: str) -> None:
    await initialize_schema(postgres_url)
    assert await _versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))
    async with Engine(PostgresStore(postgres_url)) as engine:
        assert isinstance(await engine.execute(Deposit("Ann", 100, "x", "k1")), Operation)
    await initialize_schema(postgres_url)
    async with Engine(PostgresStore(postgres_url)) as engine:
        assert (await engine.get_account("main", "Ann")).balance_cents == 100
    assert await _versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))


async def test_many_stores_opening_at_once_migrate_exactly_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(6)]
    await asyncio.gather(*(store.open() for store in stores))
    await asyncio.gather(*(store.close() for store in stores))
    assert await _versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))


def test_processes_starting_together_migrate_exactly_once(postgres_url: str) -> None:
    script = (
        "import asyncio, sys\n"
        "from kopilka.store import initialize_schema\n"
        "asyncio.run(initialize_schema(sys.argv[1]))\n"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, postgres_url], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr.decode()
    assert asyncio.run(_versions(postgres_url)) == list(range(1, SCHEMA_VERSION + 1))


async def test_a_store_opening_while_another_process_upgrades_waits_for_it(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An upgrade elsewhere (the migration lock held) longer than lock_timeout is waited
    for, not taken for the database away: that refused every start during a long one."""
    # Waited past lock_timeout several times over.
    store = PostgresStore(postgres_url, lock_timeout_seconds=0.2)
    await _opened_after_another_upgrade(postgres_url, store, 1.5)
    assert await _versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))
    assert "another process is upgrading the schema of the database at" in caplog.text


async def _opened_after_another_upgrade(
    url: str, store: PostgresStore, waited_seconds: float
) -> None:
    """`store` (of the database at `url`) opened while another session holds the
    migration lock: still waiting after `waited_seconds`, open once that one commits."""
    upgrading = await asyncpg.connect(url)
    try:
        await upgrading.execute("BEGIN")
        await upgrading.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        opening = asyncio.ensure_future(store.open())
        await asyncio.sleep(waited_seconds)
        assert not opening.done(), opening
        await upgrading.execute("COMMIT")
        await asyncio.wait_for(opening, 30)
        await store.close()
    finally:
        await upgrading.close()


async def test_an_upgrade_is_not_bound_by_a_statement_timeout_set_for_requests(
    postgres_url: str,
) -> None:
    """postgres.md advises a statement_timeout on the role: it bounds requests, not an
    upgrade nor the wait for another process's."""
    await _execute(
        postgres_url,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET statement_timeout = %L',"
        " current_database(), '300ms'); END $$",
    )
    # Waited past the statement_timeout several times over.
    await _opened_after_another_upgrade(postgres_url, PostgresStore(postgres_url), 1.0)
    assert await _versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))


async def test_a_newer_schema_is_refused_with_a_clear_message(postgres_url: str) -> None:
    await initialize_schema(postgres_url)
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)", SCHEMA_VERSION + 1
        )
    finally:
        await connection.close()
    store = PostgresStore(postgres_url)
    with pytest.raises(Unavailable) as refused:
        await store.open()
    assert refused.value.code == "unknown_schema"
    assert f"schema version {SCHEMA_VERSION + 1}" in refused.value.message
    assert "upgrade kopilka" in refused.value.message
    with pytest.raises(Unavailable, match="newer than this kopilka knows"):
        await initialize_schema(postgres_url)


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("UPDATE accounts SET balance = -1 WHERE client = 'Floor'", "balance_above_floor"),
        ("UPDATE accounts SET balance = -50001 WHERE client = 'Over'", "balance_above_floor"),
        ("UPDATE accounts SET balance = 10001 WHERE client = 'Cap'", "balance_below_cap"),
        ("UPDATE accounts SET max_balance = 10 WHERE client = 'Cap'", "balance_below_cap"),
        ("UPDATE accounts SET min_balance = 1 WHERE client = 'Floor'", "balance_above_floor"),
    ],
)
async def test_check_constraints_refuse_out_of_bounds_balances(
    postgres_url: str, statement: str, constraint: str
) -> None:
    async with Engine(PostgresStore(postgres_url)) as engine:
        await engine.submit_many(
            [
                OpenAccount("Floor"),
                OpenAccount("Over", min_balance_cents=-50_000),
                OpenAccount("Cap", max_balance_cents=10_000),
                Deposit("Cap", 10_000, "to the cap", "k-cap"),
            ]
        )
    connection = await asyncpg.connect(postgres_url)
    try:
        with pytest.raises(asyncpg.CheckViolationError) as violation:
            await connection.execute(statement)
        assert violation.value.constraint_name == constraint
        # What the ledger wrote is within bounds and untouched by the refused statement.
        rows = await connection.fetch("SELECT client, balance FROM accounts ORDER BY client")
        assert [tuple(row) for row in rows] == [("Cap", 10_000), ("Floor", 0), ("Over", 0)]
    finally:
        await connection.close()


async def test_operations_refuse_a_zero_amount_and_a_reused_key(postgres_url: str) -> None:
    async with Engine(PostgresStore(postgres_url)) as engine:
        await engine.execute(Deposit("Ann", 100, "x", "k1"))
    connection = await asyncpg.connect(postgres_url)
    try:
        insert = (
            "INSERT INTO operations (ledger, idempotency_key, kind, amount, credit_account_id,"
            " description, created_at) VALUES ('main', $1, 'deposit', $2, 1, '', now())"
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute(insert, "k2", 0)
        with pytest.raises(asyncpg.UniqueViolationError):
            await connection.execute(insert, "k1", 5)
    finally:
        await connection.close()


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def test_an_unreachable_database_is_unavailable_and_hides_the_password(
    postgres_url: str,
) -> None:
    # A port nothing listens on: refused at once, no waiting for a timeout.
    parts = urlsplit(_with_password(postgres_url, "s3cret-pw"))
    url = urlunsplit(parts._replace(netloc=parts.netloc.replace(str(parts.port), "1")))
    store = PostgresStore(url, connect_timeout_seconds=2.0)
    assert "s3cret-pw" not in repr(store)
    with pytest.raises(Unavailable) as unavailable:
        await store.open()
    assert unavailable.value.code == "store_unavailable"
    assert unavailable.value.http_status == 503
    assert "s3cret-pw" not in unavailable.value.message
    assert ":***@" in unavailable.value.message


async def test_the_servers_own_words_are_not_masked_where_the_password_is_one_of_them(
    postgres_url: str,
) -> None:
    """PostgreSQL never quotes a password; masked in its message, a password that is the
    database's name (or the user's, or "failed") was told by the '***' in its place."""
    if urlsplit(postgres_url).password:
        pytest.skip("the password is this server's own: a wrong one is refused before")
    parts = urlsplit(_with_password(postgres_url, "nosuchdb"))
    store = PostgresStore(urlunsplit(parts._replace(path="/nosuchdb")))
    with pytest.raises(Unavailable) as unavailable:
        await store.open()
    assert unavailable.value.message.endswith(
        f":***@{parts.hostname}:{parts.port}/nosuchdb: InvalidCatalogNameError:"
        ' database "nosuchdb" does not exist'
    )


async def test_a_server_that_never_answers_is_named_with_how_long_it_was_given() -> None:
    """A listener that accepts and stays silent: asyncpg's TimeoutError has no words of
    its own, so the reason is the wait."""
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        store = PostgresStore(
            f"postgresql://app:pw@127.0.0.1:{port}/db", connect_timeout_seconds=0.3
        )
        with pytest.raises(Unavailable) as unavailable:
            await store.open()
    finally:
        silent.close()
    assert unavailable.value.message == (
        f"cannot open the database at postgresql://app:***@127.0.0.1:{port}/db:"
        " no answer within 0.3 s"
    )


async def test_an_unknown_session_attribute_is_refused_with_the_known_ones() -> None:
    store = PostgresStore("postgresql://app:pw@127.0.0.1:1/db?target_session_attrs=bogus")
    with pytest.raises(Unavailable) as unavailable:
        await store.open()
    assert unavailable.value.message == (
        "cannot open the database at postgresql://app:***@127.0.0.1:1/db"
        "?target_session_attrs=bogus: ClientConfigurationError: target_session_attrs is"
        " expected to be one of 'any', 'primary', 'standby', 'prefer-standby',"
        " 'read-write', 'read-only', got 'bogus'"
    )


@pytest.mark.parametrize("ledger", ['we"ird\\ {led,ger}', "NULL", " spaced ", "main"])
async def test_names_and_texts_are_stored_exactly(postgres_url: str, ledger: str) -> None:
    client, description, key = 'Ann "A" \\ {x}, NULL', "caf\u00e9, {1,2} \\n", 'k"{1}\\'
    async with Engine(PostgresStore(postgres_url)) as engine:
        outcome = await engine.execute(Deposit(client, 100, description, key, ledger=ledger))
        assert isinstance(outcome, Operation), outcome
        replay = await engine.execute(Deposit(client, 100, description, key, ledger=ledger))
        assert isinstance(replay, Operation)
        assert replay.replayed
    connection = await asyncpg.connect(postgres_url)
    try:
        row = await connection.fetchrow(
            "SELECT o.ledger, o.idempotency_key, o.kind, o.description, a.client"
            " FROM operations o JOIN accounts a ON a.id = o.credit_account_id"
        )
    finally:
        await connection.close()
    assert tuple(row) == (ledger, key, "deposit", description, client)


async def test_limits_and_balances_changed_in_one_batch_pass_the_checks(
    postgres_url: str,
) -> None:
    """A cap raised then used, and a floor raised after a deposit, in the same batch:
    the database must never see the new balance beside the old limit."""
    async with Engine(PostgresStore(postgres_url)) as engine:
        await engine.submit_many(
            [OpenAccount("Cap", max_balance_cents=100), OpenAccount("Floor", -500)]
        )
        outcomes = await engine.submit_many(
            [
                SetLimits("Cap", max_balance_cents=1_000),
                Deposit("Cap", 900, "above the old cap", "k1"),
                Deposit("Floor", 300, "in", "k2"),
                SetLimits("Floor", min_balance_cents=200),
            ]
        )
        assert not [o for o in outcomes if isinstance(o, KopilkaError)], outcomes
        cap = await engine.get_account("main", "Cap")
        floor = await engine.get_account("main", "Floor")
    assert (cap.balance_cents, cap.max_balance_cents) == (900, 1_000)
    assert (floor.balance_cents, floor.min_balance_cents) == (300, 200)


# -- schema 5: client names written before they were kept in NFC -------------------------

EARLIER = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


async def _schema_4(url: str) -> asyncpg.Connection:
    """A database of schema 4, as the release before names were kept in NFC."""
    old = await asyncpg.connect(url)
    await _migrated_to(old, 4)
    return old


async def _migrated_to(old: asyncpg.Connection, version: int) -> None:
    """An empty database given the migrations up to `version`, as a release had them."""
    async with old.transaction():
        await old.execute(SCHEMA_MIGRATIONS_TABLE)
        for number, migration in enumerate(MIGRATIONS[:version], start=1):
            await old.execute(migration)
            await old.execute("INSERT INTO schema_migrations (version) VALUES ($1)", number)


async def _add_accounts(old: asyncpg.Connection, *accounts: tuple[int, str, str, int]) -> None:
    """Accounts (id, ledger, client, balance), each with the deposit that filled it."""
    for account_id, ledger, client, balance in accounts:
        await old.execute(
            "INSERT INTO accounts (id, ledger, client, balance, created_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            account_id,
            ledger,
            client,
            balance,
            EARLIER,
        )
        if balance:
            operation = await old.fetchval(
                "INSERT INTO operations (ledger, idempotency_key, kind, amount,"
                " credit_account_id, description, created_at)"
                " VALUES ($1, $2, 'deposit', $3, $4, 'opening', $5) RETURNING id",
                ledger,
                f"in-{account_id}",
                balance,
                account_id,
                EARLIER,
            )
            await old.execute(
                "INSERT INTO entries (operation_id, account_id, amount, balance_after,"
                " created_at) VALUES ($1, $2, $3, $3, $4)",
                operation,
                account_id,
                balance,
                EARLIER,
            )


async def _add_rent_paid(old: asyncpg.Connection, ledger: str) -> None:
    """Account 1 (of 500) paid account 2 (of 0) 100, operation 10 under 'k-rent'."""
    await old.execute(
        "INSERT INTO operations (id, ledger, idempotency_key, kind, amount,"
        " debit_account_id, credit_account_id, description, created_at)"
        " VALUES (10, $1, 'k-rent', 'transfer', 100, 1, 2, 'rent', $2)",
        ledger,
        LATER,
    )
    await old.executemany(
        "INSERT INTO entries (operation_id, account_id, amount, balance_after, created_at)"
        " VALUES (10, $1, $2, $3, $4)",
        [(1, -100, 400, LATER), (2, 100, 100, LATER)],
    )
    await old.execute("UPDATE accounts SET balance = balance - 100 WHERE id = 1")
    await old.execute("UPDATE accounts SET balance = balance + 100 WHERE id = 2")


async def _add_client_token_and_refusal(old: asyncpg.Connection, client: str) -> None:
    await old.execute(
        "INSERT INTO tokens (id, token_hash, role, client, ledger, created_at)"
        " VALUES ('t-jose', 'not-a-real-hash', 'client', $1, 'main', $2)",
        client,
        EARLIER,
    )
    await old.execute(
        "INSERT INTO refusals (ledger, idempotency_key, kind, amount, debit_client,"
        " credit_client, description, code, message, created_at)"
        " VALUES ('main', 'k-refused', 'withdrawal', 10000, $1, NULL, 'rent',"
        " 'insufficient_funds', $2, $3)",
        client,
        REFUSED,
        EARLIER,
    )


async def test_schema_4_names_in_another_normal_form_are_rewritten_in_nfc(
    postgres_url: str,
) -> None:
    old = await _schema_4(postgres_url)
    try:
        await _add_accounts(old, (1, "main", JOSE_NFD, 500), (2, "main", "Ann", 0))
        await _add_rent_paid(old, "main")  # José paid Ann 100 before the upgrade
        await _add_client_token_and_refusal(old, JOSE_NFD)
    finally:
        await old.close()

    async with Engine(open_store(postgres_url)) as engine:
        await assert_jose_is_one_client_again(engine)

    assert await _versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))
    connection = await asyncpg.connect(postgres_url)
    try:
        rows = await connection.fetch("SELECT debit_client, credit_client FROM refusals")
        assert [tuple(row) for row in rows] == [(JOSE_NFC, None)]
        assert await connection.fetchval("SELECT count(*) FROM accounts") == 2
    finally:
        await connection.close()


async def test_schema_4_twin_spellings_both_stay_and_the_rest_is_rewritten(
    postgres_url: str,
) -> None:
    """Where another account of the ledger has or would take the NFC name, no account
    is renamed: which client is which is for an operator to decide."""
    old = await _schema_4(postgres_url)
    try:
        await _add_accounts(old, *TWIN_ACCOUNTS)
        await _add_client_token_and_refusal(old, JOSE_NFD)
    finally:
        await old.close()

    async with Engine(open_store(postgres_url)) as engine:
        await assert_twins_are_left_for_an_operator(engine)

    assert await _versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))
    connection = await asyncpg.connect(postgres_url)
    try:
        accounts = await connection.fetch(
            "SELECT id, ledger, client, balance FROM accounts ORDER BY id"
        )
        operations = await connection.fetch(
            "SELECT credit_account_id, amount FROM operations ORDER BY id"
        )
    finally:
        await connection.close()
    assert [tuple(row) for row in accounts] == [
        (1, "main", JOSE_NFD, 300),
        (2, "main", JOSE_NFC, 200),
        (3, "side", JOSE_NFC, 50),
        (4, "main", "\u212b", 7),
        (5, "main", "A\u030a", 9),
    ]
    assert [tuple(row) for row in operations] == [(1, 300), (2, 200), (3, 50), (4, 7), (5, 9)]


async def test_schema_4_a_token_for_a_twin_spelling_is_revoked_and_no_other(
    postgres_url: str, tmp_path: Path
) -> None:
    """A token for the decomposed "José" beside a precomposed one must not become the
    other's token; one for a decomposed name alone in its ledger keeps its account."""
    twin, twin_secret = old_client_token(JOSE_NFD, "main")  # account 1
    side, side_secret = old_client_token(JOSE_NFD, "side")  # account 3
    old = await _schema_4(postgres_url)
    try:
        await _add_accounts(old, *TWIN_ACCOUNTS)
        await old.executemany(
            "INSERT INTO tokens (id, token_hash, role, client, ledger, created_at)"
            " VALUES ($1, $2, 'client', $3, $4, $5)",
            [(r.id, r.token_hash, r.client, r.ledger, EARLIER) for r in (twin, side)],
        )
    finally:
        await old.close()

    with running_server(tmp_path / "home", postgres_url) as server:
        assert_no_token_reaches_another_account(server, twin_secret, side_secret)

    connection = await asyncpg.connect(postgres_url)
    try:
        tokens = await connection.fetch("SELECT id, client, revoked FROM tokens")
    finally:
        await connection.close()
    assert (twin.id, JOSE_NFD, True) in [tuple(row) for row in tokens]
    assert (side.id, JOSE_NFC, False) in [tuple(row) for row in tokens]


async def test_a_database_not_in_utf8_upgrades_leaving_names_as_they_are(
    postgres_url: str,
) -> None:
    """PostgreSQL normalizes text only in a UTF8 database; in another encoding the
    names are left alone rather than the upgrade failing."""
    name = f"latin_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(
            f"CREATE DATABASE {name} ENCODING 'LATIN1' TEMPLATE template0"
            " LC_COLLATE 'C' LC_CTYPE 'C'"
        )
        url = urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
        old = await _schema_4(url)
        try:
            await _add_accounts(old, (1, "main", JOSE_NFC, 500))
        finally:
            await old.close()
        async with Engine(open_store(url)) as engine:
            assert (await engine.get_account("main", JOSE_NFC)).balance_cents == 500
        assert await _versions(url) == list(range(1, SCHEMA_VERSION + 1))
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


# -- a server role that may only read and write rows ----------------------------------


@contextlib.asynccontextmanager
async def _role(url: str, grants: str) -> AsyncIterator[str]:
    """A role with `grants` on every table in public, and no CREATE; yields its URL
    (the test server trusts local logins, the password is for show)."""
    role = f"app_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"  # the default before PostgreSQL 15
            f" CREATE ROLE {role} LOGIN PASSWORD 'x';"
            f" GRANT USAGE ON SCHEMA public TO {role};"
            f" GRANT {grants} ON ALL TABLES IN SCHEMA public TO {role};"
            f" GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}"
        )
        parts = urlsplit(url)
        yield urlunsplit(parts._replace(netloc=f"{role}:x@{parts.hostname}:{parts.port}"))
    finally:
        await admin.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
        await admin.close()


def _row_only_role(url: str) -> contextlib.AbstractAsyncContextManager[str]:
    """What docs/postgres.md asks for after `kopilka init`."""
    return _role(url, "SELECT, INSERT, UPDATE, DELETE")


async def test_a_role_without_create_opens_an_up_to_date_schema(
    postgres_url: str, tmp_path: Path
) -> None:
    await initialize_schema(postgres_url)
    async with _row_only_role(postgres_url) as app_url:
        async with Engine(PostgresStore(app_url)) as engine:
            assert isinstance(await engine.execute(Deposit("Ann", 100, "x", "k1")), Operation)
        with running_server(tmp_path / "home", app_url) as server, server.client() as admin:
            answer = admin.post(
                "/v1/deposits", json={"client": "Ann", "amount": "2", "description": "y"}
            )
            assert answer.status_code == 201, answer.text
            assert admin.get("/v1/accounts/Ann").json()["balance"] == "3.00"


async def test_a_role_with_a_schema_of_its_own_finds_the_ledger_through_its_search_path(
    postgres_url: str,
) -> None:
    """PostgreSQL's one-schema-per-user pattern: "$user" comes first in the search_path,
    and that schema, though empty, is the current one. The ledger's tables resolve
    through the path to public; looked for in the current schema alone, the ledger was
    said damaged, "restore it from a backup"."""
    await initialize_schema(postgres_url)
    async with _row_only_role(postgres_url) as app_url:
        role = urlsplit(app_url).username
        await _execute(postgres_url, f"CREATE SCHEMA {role} AUTHORIZATION {role}")
        async with Engine(PostgresStore(app_url)) as engine:
            assert isinstance(await engine.execute(Deposit("Ann", 100, "x", "k1")), Operation)


async def test_a_role_with_a_schema_of_its_own_does_not_upgrade_the_ledger_beside_it(
    postgres_url: str,
) -> None:
    """Its own schema first in its search_path, an upgrade made schema_migrations (and
    would make new tables) there: that role then saw the ledger as up to date, and every
    other role ran the migration again."""
    await initialize_schema(postgres_url)
    async with _role(postgres_url, "SELECT, INSERT, UPDATE, DELETE") as app_url:
        role = urlsplit(app_url).username
        await _execute(
            postgres_url,
            f"CREATE SCHEMA {role} AUTHORIZATION {role};"
            f" DELETE FROM schema_migrations WHERE version = {SCHEMA_VERSION}",
        )
        with pytest.raises(Unavailable) as refused:
            await PostgresStore(app_url).open()
        assert refused.value.message == (
            f"the kopilka ledger at {redact_url(app_url)} is in the schema public, and this"
            f" user's first schema is {role}, where an upgrade would make its tables: run"
            " `kopilka init` as a user whose search_path starts with public"
        )
        assert await _versions(postgres_url) == list(range(1, SCHEMA_VERSION))
        assert await _table_names_in(postgres_url, role) == []


async def test_a_role_without_create_is_told_to_run_init_on_an_old_schema(
    postgres_url: str,
) -> None:
    await initialize_schema(postgres_url)
    async with _row_only_role(postgres_url) as app_url:
        admin = await asyncpg.connect(postgres_url)
        try:  # as if the last migration were new in this kopilka
            await admin.execute("DELETE FROM schema_migrations WHERE version = $1", SCHEMA_VERSION)
        finally:
            await admin.close()
        with pytest.raises(Unavailable) as refused:
            await PostgresStore(app_url).open()
    assert refused.value.code == "store_unavailable"
    assert f"schema version {SCHEMA_VERSION - 1}" in refused.value.message
    # CREATE on the schema is not enough: an upgrade alters the tables, as their owner.
    assert refused.value.message.endswith(
        "run `kopilka init` as the owner of kopilka's tables (the role that made them)"
    )


async def test_a_role_without_create_is_told_an_empty_database_has_no_schema_yet(
    postgres_url: str,
) -> None:
    async with _row_only_role(postgres_url) as app_url:
        with pytest.raises(Unavailable) as refused:
            await PostgresStore(app_url).open()
    assert refused.value.message.startswith(
        f"the database at {redact_url(app_url)} has no kopilka schema yet, this kopilka needs"
        f" {SCHEMA_VERSION}, and this user may not change it"
    )
    assert "run `kopilka init`" in refused.value.message


# -- a database with tables kopilka did not create -------------------------------------


async def _execute(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _table_names(url: str) -> list[str]:
    return await _table_names_in(url, None)


async def _table_names_in(url: str, schema: str | None) -> list[str]:
    """The tables of `schema` (None: the current one)."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = coalesce($1, current_schema()) ORDER BY 1",
            schema,
        )
        return [row[0] for row in rows]
    finally:
        await connection.close()


def _serve_refused(home: Path, url: str) -> subprocess.CompletedProcess[str]:
    """`kopilka serve` on a database it refuses: it exits on its own, and what it said."""
    return subprocess.run(
        [*kopilka_command(), "serve", "--port", str(free_port()), "--db", url],
        env=server_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_tables_kopilka_did_not_create_are_refused_by_name(
    postgres_url: str, tmp_path: Path
) -> None:
    """Tables of kopilka's names (and one other) but no schema_migrations: made by
    something else. init and serve refuse, naming them and never the password, and
    change nothing; without the clashing names the same database initializes."""
    stranger = (
        "CREATE TABLE notes (text text); CREATE TABLE entries (line text);"
        " CREATE TABLE accounts (number text); INSERT INTO accounts VALUES ('40817')"
    )
    asyncio.run(_execute(postgres_url, stranger))
    # A password to hide: the URL's own, or one for show (the test server trusts local logins).
    url = (
        postgres_url
        if urlsplit(postgres_url).password
        else _with_password(postgres_url, "S3cret-pw")
    )
    password = urlsplit(url).password
    assert password
    refusal = (
        f"the database at {redact_url(url)} has tables that kopilka did not create"
        " (accounts, entries); use an empty database"
    )
    home = tmp_path / "home"
    init = run_kopilka(home, "init", "--db", url)
    assert (init.returncode, init.stdout, init.stderr) == (1, "", f"Error: {refusal}\n")
    serve = _serve_refused(home, url)
    assert serve.returncode != 0
    assert refusal in serve.stderr
    assert password not in init.stderr + serve.stdout + serve.stderr
    assert asyncio.run(_table_names(postgres_url)) == ["accounts", "entries", "notes"]
    asyncio.run(_execute(postgres_url, "DROP TABLE accounts, entries"))
    assert run_kopilka(home, "init", "--db", url).returncode == 0
    assert asyncio.run(_versions(postgres_url)) == list(range(1, SCHEMA_VERSION + 1))


def test_a_sequence_of_the_name_kopilka_draws_ids_from_is_refused(
    postgres_url: str, tmp_path: Path
) -> None:
    """Another's sequence named operations_id_seq: the operations table's own identity
    was made operations_id_seq1, and operations took their ids from the other one (its
    end reached, every write failed)."""
    asyncio.run(_execute(postgres_url, "CREATE SEQUENCE operations_id_seq MAXVALUE 1002"))
    init = run_kopilka(tmp_path / "home", "init", "--db", postgres_url)
    assert (init.returncode, init.stdout, init.stderr) == (
        1,
        "",
        f"Error: the database at {redact_url(postgres_url)} has tables that kopilka did not"
        " create (operations_id_seq); use an empty database\n",
    )
    assert asyncio.run(_table_names(postgres_url)) == []


@pytest.mark.parametrize(
    "table",
    [
        "version bigint PRIMARY KEY, dirty boolean NOT NULL DEFAULT false",  # golang-migrate
        "version text PRIMARY KEY",  # Rails
    ],
)
def test_a_schema_migrations_table_of_another_tool_is_refused(
    postgres_url: str, tmp_path: Path, table: str
) -> None:
    """Its numbers are not kopilka's: read as such, version 6 had said a schema that is
    not there was up to date, and every command then failed with a traceback."""
    asyncio.run(
        _execute(
            postgres_url,
            f"CREATE TABLE schema_migrations ({table}); INSERT INTO schema_migrations VALUES (6)",
        )
    )
    refusal = (
        f"Error: the database at {redact_url(postgres_url)} has tables that kopilka did not"
        " create (schema_migrations); use an empty database\n"
    )
    home = tmp_path / "home"
    for command in (("init",), ("get",), ("add-user", "-n", "Ann", "--max", "10")):
        result = run_kopilka(home, *command, "--db", postgres_url)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", refusal), command
    assert asyncio.run(_table_names(postgres_url)) == ["schema_migrations"]


async def test_a_role_without_a_grant_gets_one_line_and_no_traceback(
    postgres_url: str, tmp_path: Path
) -> None:
    await initialize_schema(postgres_url)
    home = tmp_path / "home"
    async with _role(postgres_url, "SELECT") as reader_url:  # an operator's slip
        for command, table in (
            (("add-user", "-n", "Ann", "--max", "10"), "accounts"),
            (("token", "create", "--role=teller"), "tokens"),
        ):
            result = run_kopilka(home, *command, "--db", reader_url)
            assert (result.returncode, result.stdout, result.stderr) == (
                1,
                "",
                f"Error: the database refused this: permission denied for table {table}"
                " (InsufficientPrivilegeError)\n",
            ), command
        listed = run_kopilka(home, "get", "--db", reader_url)
        assert (listed.returncode, listed.stdout) == (0, "No accounts yet.\n")
        serve = _serve_refused(home, reader_url)
        assert serve.returncode == 1
        assert "Error: the database refused this: permission denied for table tokens" in (
            serve.stderr
        )
        # Where, for the operator: in the server's log, its password hidden.
        assert f"the database at {redact_url(reader_url)} refuses kopilka's work" in serve.stderr
        assert "Traceback" not in serve.stderr


async def test_a_role_without_usage_on_the_schema_is_told_so_not_that_there_is_no_ledger(
    postgres_url: str, tmp_path: Path
) -> None:
    await initialize_schema(postgres_url)
    home = tmp_path / "home"
    admin = await asyncpg.connect(postgres_url)
    try:
        async with _role(postgres_url, "SELECT") as outsider_url:
            role = urlsplit(outsider_url).username
            await admin.execute(f"REVOKE USAGE ON SCHEMA public FROM {role}, PUBLIC")
            try:
                refusal = (
                    'Error: no schema of this user\'s search_path ("$user", public) in the'
                    f" database at {redact_url(outsider_url)} is there for it to use: the"
                    " schemas named do not exist, or it lacks USAGE on them (grant it, or set"
                    " search_path)\n"
                )
                for command in (("get", "-n", "Ann"), ("init",), ("get",)):
                    result = run_kopilka(home, *command, "--db", outsider_url)
                    assert (result.returncode, result.stdout, result.stderr) == (
                        1,
                        "",
                        refusal,
                    ), command
            finally:
                await admin.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
    finally:
        await admin.close()


async def _a_ledger_with_one_deposit(postgres_url: str, tmp_path: Path) -> Path:
    """A schema made at `postgres_url`, client pp's account opened in it: the home used."""
    await initialize_schema(postgres_url)
    home = tmp_path / "home"
    opened = run_kopilka(
        home, "deposit", "--client=pp", "--amount=1", "--description=x", "--db", postgres_url
    )
    assert opened.returncode == 0, opened.stderr
    return home


async def test_a_schema_damaged_by_hand_is_one_line_for_every_command(
    postgres_url: str, tmp_path: Path
) -> None:
    """A column renamed by hand: a write, a statement and a read each say the
    database's own reason in one line, as on SQLite (they printed tracebacks)."""
    home = await _a_ledger_with_one_deposit(postgres_url, tmp_path)
    await _execute(postgres_url, "ALTER TABLE entries RENAME COLUMN balance_after TO ba")
    for command in (
        ("deposit", "--client=pp", "--amount=1", "--description=again"),
        ("show_bank_statement", "--client=pp"),
    ):
        result = run_kopilka(home, *command, "--db", postgres_url)
        assert (result.returncode, result.stdout) == (1, ""), command
        assert result.stderr.startswith("Error: the database refused this: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "does not exist" in result.stderr


@pytest.mark.parametrize(
    ("statement", "said"),
    [
        ("RAISE EXCEPTION 'audit log is full'", "audit log is full (RaiseError)"),
        ("ASSERT false, 'audit log is full'", "audit log is full (AssertError)"),
    ],
    ids=["RAISE", "ASSERT"],
)
async def test_an_operators_trigger_that_raises_is_said_in_its_own_words(
    postgres_url: str, tmp_path: Path, statement: str, said: str
) -> None:
    """An audit trigger of the operator's refusing every operation: the write was told
    the exception's type alone, after a traceback."""
    home = await _a_ledger_with_one_deposit(postgres_url, tmp_path)
    await _execute(
        postgres_url,
        "CREATE FUNCTION audit_full() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN {statement}; END $$;"
        " CREATE TRIGGER audit BEFORE INSERT ON operations"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_full()",
    )
    result = run_kopilka(
        home, "deposit", "--client=pp", "--amount=1", "--description=x", "--db", postgres_url
    )
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert result.stderr.startswith(
        f"Error: the database refused this: {said} (to retry it safely:"
    ), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


async def test_a_ledger_missing_a_table_is_said_damaged_not_up_to_date(
    postgres_url: str, tmp_path: Path
) -> None:
    """init called it up to date, and a refused withdrawal then failed with 'relation
    "refusals" does not exist', as SQLite's ledger has long been told damaged."""
    home = await _a_ledger_with_one_deposit(postgres_url, tmp_path)
    await _execute(postgres_url, "DROP TABLE refusals; DROP TABLE sandboxes")
    location = redact_url(postgres_url)
    for command in (("init",), ("withdraw", "--client=pp", "--amount=5", "--description=x")):
        result = run_kopilka(home, *command, "--db", postgres_url)
        assert (result.returncode, result.stdout) == (1, ""), command
        assert result.stderr == (
            f"Error: the kopilka ledger in {location} is damaged: its tables refusals and"
            " sandboxes are missing; restore it from a backup\n"
        )


# -- the password never shows -----------------------------------------------------------


def _in_url(url: str, netloc: str = "", query: str = "") -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=netloc or parts.netloc, query=query))


def test_a_query_password_never_shows_in_init_or_serve(postgres_url: str, tmp_path: Path) -> None:
    url = _in_url(postgres_url, query="password=S3cret-pw")
    init = run_kopilka(tmp_path / "home", "init", "--db", url)
    assert init.returncode == 0, init.stderr
    assert "password=***" in init.stdout
    assert "S3cret" not in init.stdout + init.stderr
    serve = subprocess.Popen(
        [*kopilka_command(), "serve", "--port", str(free_port()), "--db", url],
        env=server_env(tmp_path / "home"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stdout is not None
        listening = serve.stdout.readline()
    finally:
        serve.kill()
        _, errors = serve.communicate(timeout=30)
    assert "listening" in listening, errors
    assert "password=***" in listening
    assert "S3cret" not in listening + errors


def test_a_password_with_a_slash_never_shows_when_the_url_is_refused(
    postgres_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(postgres_url)
    url = _in_url(postgres_url, netloc=f"postgres:S3cret/Pw@{parts.hostname}:{parts.port}")
    init = run_kopilka(tmp_path / "home", "init", "--db", url)
    assert init.returncode == 1
    assert init.stderr.startswith("Error: cannot open the database")
    assert len(init.stderr.splitlines()) == 1
    assert "S3cret" not in init.stdout + init.stderr


def test_a_missing_password_file_is_one_line_not_a_traceback(
    postgres_url: str, tmp_path: Path
) -> None:
    env = {"KOPILKA_DB_PASSWORD_FILE": str(tmp_path / "nonexistent")}
    init = run_kopilka(tmp_path / "home", "init", "--db", postgres_url, env=env)
    assert init.returncode == 1
    assert init.stderr == (
        f"Error: cannot read KOPILKA_DB_PASSWORD_FILE {tmp_path / 'nonexistent'}:"
        " No such file or directory\n"
    )


def test_a_password_file_works_with_an_ipv6_host(postgres_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("S3cret-pw\n")
    env = {"KOPILKA_DB_PASSWORD_FILE": str(secret)}
    parts = urlsplit(postgres_url)
    assert parts.hostname == "127.0.0.1"  # the test server listens on IPv4 only
    run = run_kopilka(tmp_path / "home", "init", "--db", postgres_url, env=env)
    assert run.returncode == 0, run.stderr
    assert f"postgres:***@127.0.0.1:{parts.port}" in run.stdout
    # On [::1] nothing listens: refused, but the URL itself was read right.
    url = _in_url(postgres_url, netloc=f"postgres@[::1]:{parts.port}")
    run = run_kopilka(tmp_path / "home", "init", "--db", url, env=env)
    assert run.returncode == 1
    assert f"postgres:***@[::1]:{parts.port}" in run.stderr
    assert "invalid literal" not in run.stderr
    assert "S3cret" not in run.stdout + run.stderr


def test_no_worker_finds_the_password_in_its_environment(postgres_url: str, tmp_path: Path) -> None:
    """The password of KOPILKA_DB_PASSWORD_FILE is handed to the workers with their
    settings, never through their environment (which other processes of the user may
    read)."""
    secret = tmp_path / "password"
    secret.write_text("S3cret-pw\n")
    env = {"KOPILKA_DB_PASSWORD_FILE": str(secret)}
    with running_server(tmp_path / "home", postgres_url, workers=2, **env) as server:
        with server.client() as admin:
            assert admin.get("/v1/health").status_code == 200
        assert server.process is not None
        workers = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        pids = [server.process.pid, *map(int, workers.read_text().split())]
        assert len(pids) >= 3  # the parent and its two workers
        for pid in pids:
            environment = Path(f"/proc/{pid}/environ").read_bytes()
            assert b"S3cret" not in environment, pid
        assert server.stop() == 0


@pytest.fixture
async def latin1_url(postgres_server: PostgresTestServer) -> AsyncIterator[str]:
    """A database in LATIN1, which lacks most characters; dropped after the test."""
    name = f"kopilka_latin1_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_server.url())
    try:
        await admin.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'LATIN1'"
            " LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    finally:
        await admin.close()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


async def test_text_a_latin1_database_cannot_store_is_refused_for_its_request_alone(
    latin1_url: str,
) -> None:
    """A database in another encoding than UTF8 lacks most characters: a name or a
    description it cannot store refuses its own request (invalid_text), never the
    others batched with it, and never as an internal error."""
    async with Engine(PostgresStore(latin1_url)) as engine:
        outcomes = await asyncio.gather(
            engine.execute(Deposit("Ёжик", 100, "pay", "k-cyrillic")),
            engine.execute(Deposit("Jose", 100, "café ☕", "k-cup")),
            engine.execute(Deposit("José", 100, "café", "k-latin")),
            return_exceptions=True,
        )
        assert [getattr(o, "code", "ok") for o in outcomes] == [
            "invalid_text",
            "invalid_text",
            "ok",
        ]
        account = await engine.store.get_account("main", "José")
        assert account is not None and account.balance_cents == 100
        # Looked up, such a name has no account, as on SQLite: no row can hold it.
        assert await engine.store.get_account("main", "Ёжик") is None
        with pytest.raises(KopilkaError) as refused:
            await engine.get_account("main", "Ёжик")
        assert refused.value.code == "account_not_found"
        # A page after it has no place in the database's order: refused as the text it is.
        with pytest.raises(KopilkaError) as refused:
            await engine.store.list_accounts("main", after_client="Ёжик", limit=5)
        assert refused.value.code == "invalid_text"


async def test_a_long_request_s_items_the_database_cannot_store_are_refused_alone(
    latin1_url: str,
) -> None:
    """Items of one request, applied in pieces, each succeed or fail on their own: one
    whose text a LATIN1 database cannot store is refused (its place named by the API),
    and the others in its piece and after it are applied. It had failed its piece whole,
    and every piece after it."""
    unstorable_at = {0, 3, 4, 11}
    commands: list[Command] = [
        Deposit("Ann", 100, "cup ☕" if n in unstorable_at else "pay", f"request-{n}")
        for n in range(12)
    ]
    commands[7] = Deposit("Ёжик", 100, "pay", "request-7")  # a name, not a description
    unstorable_at.add(7)
    limits = Limits(batch_operations_max=2)
    store = PostgresStore(latin1_url)
    async with Engine(store, limits) as engine:
        outcomes = await engine.submit_many(commands)
        refused = {n for n, o in enumerate(outcomes) if isinstance(o, KopilkaError)}
        assert refused == unstorable_at
        # Pieces planned on Ann as last seen met the text, not a view gone stale: the
        # view stays worth trying, for every caller's batches.
        assert store.stale_views.written > 0
        assert store.stale_views.stale == 0
        for n in refused:
            outcome = outcomes[n]
            assert isinstance(outcome, InvalidInput) and outcome.code == "invalid_text"
            assert not outcome.of_the_batch
        account = await engine.store.get_account("main", "Ann")
        assert account is not None and account.balance_cents == 100 * (12 - len(refused))
        # Sent again, the request answers as it did: the applied replay, the rest refused.
        again = await engine.submit_many(commands)
        assert [getattr(o, "id", None) for o in again] == [getattr(o, "id", None) for o in outcomes]
        account = await engine.store.get_account("main", "Ann")
        assert account is not None and account.balance_cents == 100 * (12 - len(refused))


async def test_a_request_refused_for_its_text_leaves_its_key_free_and_others_untouched(
    latin1_url: str,
) -> None:
    """A request whose one command the database cannot store is refused before its key
    is looked at, and its key stays free; its claim never reaches the commands of the
    requests batched after it (their keys are their own, their limits are set)."""
    async with Engine(PostgresStore(latin1_url)) as engine:
        await engine.submit_many([OpenAccount("Bob")], ClaimKey("main", "k-bob", "bob"))
        await engine.execute(Deposit("Ann", 100, "pay", "dep-1", open_account=True))

        async def both(first: Command, key: str, digest: str, second: Command) -> list[object]:
            return await asyncio.gather(
                engine.submit_many([first], ClaimKey("main", key, digest)),
                engine.submit_many([second]),
                return_exceptions=True,
            )

        # Under a key another request holds, and beside a deposit of the caller's own.
        [refused], [deposited] = await both(
            OpenAccount("Ёжик"), "k-bob", "other", Deposit("Ann", 100, "pay", "dep-2")
        )
        assert isinstance(refused, InvalidInput) and refused.code == "invalid_text", refused
        assert isinstance(deposited, Operation), deposited
        # Beside a change of limits, which no retried claim may pass over.
        [refused], [limited] = await both(
            OpenAccount("Ёжик"), "k-new", "first", SetLimits("Ann", -5_000, None)
        )
        assert isinstance(refused, InvalidInput) and refused.code == "invalid_text", refused
        assert getattr(limited, "min_balance_cents", None) == -5_000, limited
        account = await engine.store.get_account("main", "Ann")
        assert account is not None and account.min_balance_cents == -5_000
        assert account.balance_cents == 200
        # The key is free: the request, mended, is applied under it.
        [opened] = await engine.submit_many(
            [OpenAccount("Yozhik")], ClaimKey("main", "k-new", "mended")
        )
        assert getattr(opened, "client", None) == "Yozhik", opened
        # A keyed request in pieces whose first piece holds nothing storable: that piece's
        # items are refused, and the pieces after it applied, as items of any request.
        deposits = [
            Deposit("Ann", 100, text, f"piece-{n}") for n, text in enumerate(["€", "漢", "a", "b"])
        ]
        pieces = Engine(PostgresStore(latin1_url), Limits(batch_operations_max=2))
        async with pieces:
            outcomes = await pieces.submit_many(deposits, ClaimKey("main", "k-pieces", "p"))
        assert [getattr(o, "code", "ok") for o in outcomes] == ["invalid_text"] * 2 + ["ok"] * 2


def test_a_batch_over_http_refuses_an_item_the_database_cannot_store_alone(
    latin1_url: str, tmp_path: Path
) -> None:
    """POST /v1/batch: "each succeeds or fails on its own", on a LATIN1 database too;
    and an account no row of it can name is not there, as on SQLite."""
    items = [
        {
            "type": "deposit",
            "client": "Ann",
            "amount": "1",
            "description": "ok",
            "open_account": True,
        },
        {
            "type": "deposit",
            "client": "Ёжик",
            "amount": "1",
            "description": "ok",
            "open_account": True,
        },
        {"type": "deposit", "client": "Ann", "amount": "2", "description": "€"},
        {"type": "deposit", "client": "Ann", "amount": "3", "description": "ok"},
    ]
    with running_server(tmp_path / "home", latin1_url) as server, server.client() as admin:
        answer = admin.post("/v1/batch", json={"operations": items})
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [result["status"] for result in results] == [201, 422, 422, 201]
        for place in (1, 2):
            error = results[place]["error"]
            assert error["code"] == "invalid_text", error
            assert error["message"].endswith(f"- at `$.operations[{place}]`"), error
        # A batch of nothing else, keyed or not: its items refused in its answer, 200.
        for headers in ({}, {"Idempotency-Key": "all-refused"}):
            answer = admin.post("/v1/batch", json={"operations": items[1:3]}, headers=headers)
            assert answer.status_code == 200, answer.text
            assert [r["status"] for r in answer.json()["results"]] == [422, 422]
        assert admin.get("/v1/accounts/Ann").json()["balance"] == "4.00"
        unknown = admin.get("/v1/accounts/Ёжик")
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error"]["code"] == "account_not_found"


# -- migration 8: ledger names written before they were kept in NFC ----------------------


async def _schema_7_with_cafe_ledgers(url: str) -> dict[str, tuple[TokenRecord, str]]:
    """A database of schema 7, the release before ledger names were kept in NFC, holding
    OLD_ACCOUNTS and the rest of tests/nfc_ledger_upgrade.py's rows; its tokens."""
    tokens = old_tokens()
    old = await asyncpg.connect(url)
    try:
        await _migrated_to(old, 7)
        await _add_accounts(old, *OLD_ACCOUNTS)
        await _add_rent_paid(old, CAFE_NFD)  # Ann paid Bob 100 before the upgrade
        await old.execute(
            "INSERT INTO refusals (ledger, idempotency_key, kind, amount, debit_client,"
            " credit_client, description, code, message, created_at)"
            " VALUES ($1, 'k-refused', 'withdrawal', 10000, 'Ann', NULL, 'rent',"
            " 'insufficient_funds', $2, $3)",
            CAFE_NFD,
            REFUSED,
            LATER,
        )
        await old.executemany(
            "INSERT INTO batch_requests (ledger, idempotency_key, digest, created_at)"
            " VALUES ($1, $2, $3, $4)",
            [(ledger, key, BATCH_DIGEST, LATER) for ledger, key in OLD_BATCH_KEYS],
        )
        await old.execute("INSERT INTO sandboxes (ledger, last_used) VALUES ($1, now())", SANDBOX)
        await old.executemany(
            "INSERT INTO tokens (id, token_hash, role, client, ledger, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            [(r.id, r.token_hash, r.role, r.client, r.ledger, EARLIER) for r, _ in tokens.values()],
        )
    finally:
        await old.close()
    return tokens


async def test_migration_8_ledger_names_in_another_normal_form_are_rewritten_in_nfc(
    postgres_url: str,
) -> None:
    tokens = await _schema_7_with_cafe_ledgers(postgres_url)

    async with Engine(open_store(postgres_url)) as engine:
        await assert_cafe_is_one_ledger_again(engine)

    assert await _versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))
    connection = await asyncpg.connect(postgres_url)
    try:
        ledgers = {
            table: {row[0] for row in await connection.fetch(f"SELECT ledger FROM {table}")}
            for table in ("accounts", "operations", "refusals", "batch_requests", "sandboxes")
        }
        revoked = {
            tuple(row) for row in await connection.fetch("SELECT id, ledger, revoked FROM tokens")
        }
    finally:
        await connection.close()
    # The TEA twins keep their rows, each under its own spelling.
    assert ledgers == {
        "accounts": {CAFE_NFC, TEA_NFD, TEA_NFC, NAIVE_NFC},
        "operations": {CAFE_NFC, TEA_NFD, TEA_NFC, NAIVE_NFC},
        "refusals": {CAFE_NFC},
        "batch_requests": {CAFE_NFC, TEA_NFD},
        "sandboxes": {SANDBOX},
    }
    token_id = {purpose: record.id for purpose, (record, _) in tokens.items()}
    assert revoked == {
        (token_id["cafe"], CAFE_NFC, False),
        (token_id["ann"], CAFE_NFC, False),
        (token_id["tea twin"], TEA_NFD, True),  # revoked, its spelling kept
        (token_id["tea"], TEA_NFC, False),
        (token_id["admin"], TEA_NFC, False),
        (token_id["naive stray"], NAIVE_NFD, True),  # its NFC is another's: revoked
        (token_id["cafe nfc"], CAFE_NFC, True),  # another's renamed into it: revoked
    }


async def test_migration_8_each_token_reaches_the_ledger_it_was_made_for(
    postgres_url: str, tmp_path: Path
) -> None:
    tokens = await _schema_7_with_cafe_ledgers(postgres_url)
    with running_server(tmp_path / "home", postgres_url) as server:
        assert_tokens_reach_the_ledgers_they_were_made_for(server, tokens)


# -- migration 9: names alike but for case ------------------------------------------------


async def _schema_8_with_accounts(url: str, *accounts: tuple[int, str, str, int]) -> None:
    old = await asyncpg.connect(url)
    try:
        await _migrated_to(old, 8)
        await _add_accounts(old, *accounts)
    finally:
        await old.close()


async def _folded_names(url: str) -> list[tuple[int, str | None]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT id, folded FROM accounts ORDER BY id")
    finally:
        await connection.close()
    return [(row[0], None if row[1] is None else row[1].decode()) for row in rows]


async def test_migration_9_names_alike_but_for_case_each_keep_their_account(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name a chunk, as a big ledger's fall in many: a pair is folded in two.
    monkeypatch.setattr(postgres_migrate, "_BACKFILL_CHUNK", 1)
    await _schema_8_with_accounts(postgres_url, *ALIKE_ACCOUNTS)
    async with Engine(open_store(postgres_url)) as engine:
        await assert_each_keeps_its_account_and_no_more_are_opened(engine)
    assert await _versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))
    assert await _folded_names(postgres_url) == FOLDED_AFTER


async def test_migration_10_names_in_lookalike_letters_each_keep_their_account(
    postgres_url: str,
) -> None:
    """A ledger at migration 9 as its release left it: each name folded for case alone,
    under the unique index."""
    old = await asyncpg.connect(postgres_url)
    try:
        await _migrated_to(old, 9)
        for account, folded in LOOKALIKE_ACCOUNTS:
            await _add_accounts(old, account)
            await old.execute(
                "UPDATE accounts SET folded = $1 WHERE id = $2", folded.encode(), account[0]
            )
        await old.execute(
            "CREATE UNIQUE INDEX accounts_by_folded_name ON accounts (ledger, folded)"
        )
    finally:
        await old.close()
    async with Engine(open_store(postgres_url)) as engine:
        await assert_lookalikes_each_keep_their_account(engine)
    assert await _versions(postgres_url) == list(range(1, SCHEMA_VERSION + 1))
    assert await _folded_names(postgres_url) == LOOKALIKE_FOLDED_AFTER


async def test_init_folds_the_names_an_older_kopilka_opened_after_migration_9(
    postgres_url: str, tmp_path: Path
) -> None:
    await _schema_8_with_accounts(postgres_url, *ALIKE_ACCOUNTS)
    async with Engine(open_store(postgres_url)):
        pass  # upgraded: "John Jones" holds the fold
    older = await asyncpg.connect(postgres_url)
    try:
        await _add_accounts(older, *OPENED_BY_AN_OLDER_KOPILKA)
    finally:
        await older.close()

    folded = run_kopilka(tmp_path / "home", "init", "--db", postgres_url)
    assert folded.returncode == 0, folded.stderr
    up_to_date, said = folded.stdout.split("\n", 1)
    assert (up_to_date.startswith("Schema is up to date in "), said) == (True, INIT_SAYS)
    again = run_kopilka(tmp_path / "home", "init", "--db", postgres_url)
    assert (again.returncode, again.stdout) == (0, f"{up_to_date}\n")  # nothing left

    assert await _folded_names(postgres_url) == FOLDED_AFTER + FOLDED_BY_INIT
    async with Engine(open_store(postgres_url)) as engine:
        await assert_a_name_alike_an_older_kopilkas_is_refused(engine)


async def test_a_name_a_latin1_database_stores_is_compared_as_any_other(
    latin1_url: str,
) -> None:
    """ "µ" (MICRO SIGN) folds to Greek mu, which LATIN1 lacks, and that is drawn as the
    capital "Μ", like "M": the name is stored, and compared, all the same, upgraded or
    new."""
    await _schema_8_with_accounts(latin1_url, (1, "main", "µ Fund", 100))
    async with Engine(open_store(latin1_url)) as engine:
        assert isinstance(await engine.execute(Deposit("µ Fund", 5, "pay", "k1")), Operation)
        for client, key in (("µ FUND", "k2"), ("Straße", "k3"), ("STRASSE", "k4")):
            await engine.execute(Deposit(client, 5, "pay", key))
        names = [a.client for a in await engine.list_accounts("main")]
        assert names == ["Straße", "µ Fund"]
        # A name with "µ" anew, and its namesake but for case.
        assert isinstance(await engine.execute(Deposit("Ann µ", 5, "pay", "k5")), Operation)
        refused = await engine.execute(Deposit("ANN µ", 5, "pay", "k6"))
        assert isinstance(refused, KopilkaError) and refused.code == "invalid_client", refused
    folded = [name for _, name in await _folded_names(latin1_url)]
    assert folded == ["m fund", "strasse", "ann m"]
