"""A batch's writes and the reads that settle its keys, on PostgreSQL: bulk statements
over arrays (unnest), a few round trips however many operations a batch holds.

The store (postgres.py) runs them inside its transactions and owns connections,
retries and failures; here is only what goes over the wire, and in what shape.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import asyncpg

from kopilka.domain.model import Account, ClaimKey, Command, Operation, Refusal
from kopilka.domain.names import folded_name
from kopilka.domain.rules import (
    AccountKey,
    BatchPlan,
    FoldedKey,
    KnownClaims,
    KnownKeys,
    OperationKey,
    refused_money_keys,
)
from kopilka.errors import RetryableStoreError
from kopilka.store.postgres_schema import OPENINGS_LOCK_KEY
from kopilka.store.refusal_rows import REFUSAL_COLUMNS, refusal_values

Connection = Any  # asyncpg ships no type hints

# From the keys to the unique index: a probe per key, however big the table grows.
_KNOWN_OPERATIONS = """
SELECT o.id, o.ledger, o.idempotency_key, o.kind, o.amount, d.client, c.client,
       o.description, o.created_at,
       (SELECT balance_after FROM entries WHERE account_id = o.debit_account_id
          AND created_at = o.created_at AND operation_id = o.id),
       (SELECT balance_after FROM entries WHERE account_id = o.credit_account_id
          AND created_at = o.created_at AND operation_id = o.id)
FROM unnest($1::text[], $2::text[]) AS k(ledger, idempotency_key)
JOIN operations o ON o.ledger = k.ledger AND o.idempotency_key = k.idempotency_key
LEFT JOIN accounts d ON d.id = o.debit_account_id
LEFT JOIN accounts c ON c.id = o.credit_account_id
"""

# Another process may open the same client, or one alike but for case, at the same
# moment: DO NOTHING waits for it, and a missing row sends the batch back to be planned
# again with that account (then found, or refused as a namesake).
_INSERT_ACCOUNTS = """
INSERT INTO accounts (ledger, client, balance, min_balance, max_balance, folded, created_at)
SELECT t.*, $7
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bytea[]) AS t
ON CONFLICT DO NOTHING
RETURNING id, ledger, client
"""

# All writes of a batch in one statement, from one array per operation column: the
# operations take their ids from the sequence; the entries (debit before credit, in
# operation order, so their ids keep the order a statement shows within one instant)
# are derived in the database rather than sent; each changed account gets its new
# balance and a new revision. It answers the transaction id that settles a COMMIT
# whose answer is lost, and the operation ids in order.
# An idempotency key that is already taken fails the statement with a unique
# violation (after waiting for a concurrent holder of the key), and the batch is
# redone with its keys read first: a plain insert costs a third less than ON
# CONFLICT DO NOTHING, and a retried key is rare. So is a kept refusal's key, which
# may not become an operation's: counted in this same round trip.
_BATCH_ROWS = """
WITH batch AS MATERIALIZED (
    SELECT nextval('operations_id_seq') AS id, t.*
    FROM unnest($1::text::text[], $2::text[], $3::text::text[], $4::text::bigint[],
                $5::text::bigint[], $6::text::bigint[], $7::text[], $8::text::bigint[],
                $9::text::bigint[])
        WITH ORDINALITY AS t(ledger, idempotency_key, kind, amount, debit_account_id,
                             credit_account_id, description, debit_balance_after,
                             credit_balance_after, position)
), new_operations AS (
    INSERT INTO operations (id, ledger, idempotency_key, kind, amount,
                            debit_account_id, credit_account_id, description, created_at)
    SELECT id, ledger, idempotency_key, kind, amount,
           debit_account_id, credit_account_id, description, $10
    FROM batch
), new_entries AS (
    INSERT INTO entries (operation_id, account_id, amount, balance_after, created_at)
    SELECT operation_id, account_id, amount, balance_after, $10 FROM (
        SELECT position, 0 AS side, id AS operation_id, debit_account_id AS account_id,
               -amount AS amount, debit_balance_after AS balance_after
        FROM batch WHERE debit_account_id IS NOT NULL
        UNION ALL
        SELECT position, 1, id, credit_account_id, amount, credit_balance_after
        FROM batch WHERE credit_account_id IS NOT NULL
    ) AS e
    ORDER BY position, side
), refused_keys AS (
    SELECT (SELECT count(*) FROM batch b JOIN refusals r
                ON r.ledger = b.ledger AND r.idempotency_key = b.idempotency_key)
         + (SELECT count(*) FROM batch b JOIN batch_requests q
                ON q.ledger = b.ledger AND q.idempotency_key = b.idempotency_key) AS n
)"""

# In a transaction that has locked the accounts: the caller rolls back on refused keys.
_WRITE_BATCH = (
    _BATCH_ROWS
    + """, changed_balances AS (
    UPDATE accounts AS a SET balance = t.balance, revision = t.revision
    FROM unnest($11::text::bigint[], $12::text::bigint[], $13::text::bigint[])
        AS t(id, balance, revision)
    WHERE a.id = t.id
)
SELECT pg_current_xact_id()::text, array_agg(id ORDER BY position),
       (SELECT n FROM refused_keys)
FROM batch
"""
)

# On its own, in the transaction of this one statement: a batch planned on the
# accounts as this process last saw them. An account that is not at the revision
# and balance the batch was planned on, or gone, or a refused key, fails it whole.
_PLANNED_BALANCES = """, changed_balances AS (
    UPDATE accounts AS a SET balance = t.balance, revision = t.revision
    FROM unnest($11::text::bigint[], $12::text::bigint[], $13::text::bigint[],
                $14::text::bigint[], $15::text::bigint[])
        AS t(id, balance, revision, planned_balance, planned_revision)
    WHERE a.id = t.id AND a.revision = t.planned_revision AND a.balance = t.planned_balance
    RETURNING 1
)"""

_WRITE_PLANNED_BATCH = (
    _BATCH_ROWS
    + _PLANNED_BALANCES
    + """
SELECT CASE WHEN (SELECT count(*) FROM changed_balances) = cardinality($11::text::bigint[])
            AND (SELECT n FROM refused_keys) = 0
       THEN pg_current_xact_id()::text ELSE kopilka_replan() END,
       array_agg(id ORDER BY position)
FROM batch
"""
)

# The same with the batch requests' claims on their keys (POST /v1/batch). A key
# claimed already fails the insert (after waiting for a concurrent claimer); a key
# that names an operation or a kept refusal fails the statement: either way the batch
# is planned again from locked rows, with its claims read.
_WRITE_PLANNED_CLAIMED_BATCH = (
    _BATCH_ROWS
    + _PLANNED_BALANCES
    + """, new_claims AS (
    INSERT INTO batch_requests (ledger, idempotency_key, digest, created_at)
    SELECT t.*, now() FROM unnest($16::text[], $17::text[], $18::text[]) AS t
), taken_claims AS (
    SELECT (SELECT count(*) FROM unnest($16::text[], $17::text[]) AS k(ledger, key)
                JOIN operations o ON o.ledger = k.ledger AND o.idempotency_key = k.key)
         + (SELECT count(*) FROM unnest($16::text[], $17::text[]) AS k(ledger, key)
                JOIN refusals r ON r.ledger = k.ledger AND r.idempotency_key = k.key) AS n
)
SELECT CASE WHEN (SELECT count(*) FROM changed_balances) = cardinality($11::text::bigint[])
            AND (SELECT n FROM refused_keys) = 0 AND (SELECT n FROM taken_claims) = 0
       THEN pg_current_xact_id()::text ELSE kopilka_replan() END,
       array_agg(id ORDER BY position)
FROM batch
"""
)

_IDEMPOTENCY_KEY_CONSTRAINT = "operations_ledger_idempotency_key_key"

_UPDATE_ACCOUNTS = """
UPDATE accounts AS a
SET balance = t.balance, min_balance = t.min_balance, max_balance = t.max_balance,
    revision = t.revision
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
     AS t(id, balance, min_balance, max_balance, revision)
WHERE a.id = t.id
"""


@dataclass(slots=True)
class PlannedBatch:
    """A batch planned on the accounts as this process last saw them."""

    plan: BatchPlan
    keys: set[AccountKey]
    before: dict[int, tuple[int, int]]  # by account id: the balance and revision planned on
    revisions: dict[int, int]  # by account id: the new revision of each changed account
    after: set[asyncio.Future[bool]]  # the batches still being written it was planned on
    written: asyncio.Future[bool]  # done when this one is written (True) or not (False)


def new_revisions(accounts: list[Account]) -> dict[int, int]:
    """A random revision for each account to be written, by id: unlike a counter, two
    writers (one of them failing) never make the same one for the same account.
    The module's generator: it is seeded anew in a forked worker."""
    return {account.id: random.getrandbits(63) for account in accounts}


class KeyAlreadyUsed(Exception):
    """A batch met an idempotency key that is already in the database."""


async def load_operations(
    connection: Connection, keys: set[OperationKey]
) -> dict[OperationKey, Operation]:
    if not keys:
        return {}
    rows = await connection.fetch(
        _KNOWN_OPERATIONS, [ledger for ledger, _ in keys], [key for _, key in keys]
    )
    return {
        (row[1], row[2]): Operation(
            ledger=row[1],
            idempotency_key=row[2],
            kind=row[3],
            amount_cents=row[4],
            debit_client=row[5],
            credit_client=row[6],
            description=row[7],
            created_at=row[8],
            debit_balance_after_cents=row[9],
            credit_balance_after_cents=row[10],
            id=row[0],
        )
        for row in rows
    }


async def load_refusals(connection: Connection, keys: set[OperationKey]) -> KnownKeys:
    if not keys:
        return {}
    rows = await connection.fetch(
        f"SELECT {REFUSAL_COLUMNS} FROM refusals"
        " JOIN unnest($1::text[], $2::text[]) AS wanted(wanted_ledger, wanted_key)"
        " ON ledger = wanted_ledger AND idempotency_key = wanted_key",
        [ledger for ledger, _ in keys],
        [key for _, key in keys],
    )
    return {(row[0], row[1]): Refusal(*row) for row in rows}


async def load_namesakes(connection: Connection, folded: set[FoldedKey]) -> dict[FoldedKey, str]:
    """By folded name, the name of the account that has it (plan_batch's namesakes)."""
    rows = await connection.fetch(
        "SELECT a.ledger, a.folded, a.client FROM accounts AS a"
        " JOIN unnest($1::text[], $2::bytea[]) AS wanted(ledger, folded)"
        " ON a.ledger = wanted.ledger AND a.folded = wanted.folded",
        [ledger for ledger, _ in folded],
        [name.encode() for _, name in folded],  # as kept: see migration 9
    )
    return {(ledger, name.decode()): client for ledger, name, client in rows}


async def load_claims(connection: Connection, keys: set[OperationKey]) -> KnownClaims:
    rows = await connection.fetch(
        "SELECT ledger, idempotency_key, digest FROM batch_requests"
        " JOIN unnest($1::text[], $2::text[]) AS wanted(wanted_ledger, wanted_key)"
        " ON ledger = wanted_ledger AND idempotency_key = wanted_key",
        [ledger for ledger, _ in keys],
        [key for _, key in keys],
    )
    return {(row[0], row[1]): row[2] for row in rows}


async def _insert_claims(connection: Connection, claims: list[ClaimKey]) -> None:
    # A plain insert: should another process claim the same key at the same moment, it
    # waits for that one, fails with a unique violation, and the batch is planned again
    # (retried by the engine) reading the digest that now stands.
    await connection.execute(
        "INSERT INTO batch_requests (ledger, idempotency_key, digest, created_at)"
        " SELECT t.*, now() FROM unnest($1::text[], $2::text[], $3::text[]) AS t",
        [c.ledger for c in claims],
        [c.idempotency_key for c in claims],
        [c.digest for c in claims],
    )


async def _insert_refusals(connection: Connection, refusals: list[Refusal]) -> None:
    # Another process may have kept the same key's refusal a moment ago: the same answer.
    await connection.executemany(
        f"INSERT INTO refusals ({REFUSAL_COLUMNS})"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (ledger, idempotency_key) DO NOTHING",
        [refusal_values(r, r.created_at) for r in refusals],
    )


async def refusal_may_be_a_retry(
    connection: Connection, commands: Sequence[Command], plan: BatchPlan
) -> bool:
    """Whether a key the plan refuses was used before (rules.refused_money_keys)."""
    refused = refused_money_keys(commands, plan)
    if not refused:
        return False
    found = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[]) AS k(ledger, key)"
        " JOIN operations o ON o.ledger = k.ledger AND o.idempotency_key = k.key)"
        " OR EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[]) AS k(ledger, key)"
        " JOIN refusals r ON r.ledger = k.ledger AND r.idempotency_key = k.key)"
        " OR EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[]) AS k(ledger, key)"
        " JOIN batch_requests q ON q.ledger = k.ledger AND q.idempotency_key = k.key)",
        [ledger for ledger, _ in refused],
        [key for _, key in refused],
    )
    return bool(found)


async def closed_sandboxes(connection: Connection, sandboxes: set[str]) -> set[str]:
    """Of these sandbox ledgers, the ones not open. The rows found are held (FOR KEY
    SHARE) until this batch commits: a sandbox's end waits for it (PostgresStore's
    end_sandbox and end_idle_sandboxes)."""
    rows = await connection.fetch(
        "SELECT ledger FROM sandboxes WHERE ledger = ANY($1::text[]) FOR KEY SHARE",
        list(sandboxes),
    )
    return sandboxes - {row[0] for row in rows}


async def write_plan(
    connection: Connection, plan: BatchPlan, limits: dict[int, tuple[int, int | None]] | None
) -> tuple[str | None, dict[int, int]]:
    """Write what the plan says. Returns the transaction id, or None when there was
    nothing to write, and the new revision of each existing account written.

    `limits` are the accounts' floors and caps as read (None: no command in the
    batch changes any): an account whose limits changed is written whole in its own
    statement, so no CHECK ever sees a new balance beside an old limit.
    """
    if not (
        plan.new_accounts
        or plan.operations
        or plan.changed_accounts
        or plan.refusals
        or plan.claims
    ):
        return None, {}
    if plan.refusals:
        await _insert_refusals(connection, plan.refusals)
    if plan.new_accounts:
        await _insert_accounts(connection, plan.new_accounts)
    balances_only: list[Account] = []
    whole: list[Account] = []
    for account in plan.changed_accounts:
        same = limits is None or limits[account.id] == (
            account.min_balance_cents,
            account.max_balance_cents,
        )
        (balances_only if same else whole).append(account)
    revisions = new_revisions(whole)
    if whole:
        await connection.execute(
            _UPDATE_ACCOUNTS, *_account_columns(whole), [revisions[a.id] for a in whole]
        )
    if not plan.operations:
        # Without operations no balance changed: `balances_only` holds unchanged accounts.
        if plan.claims:
            await _insert_claims(connection, plan.claims)
        plan.resolve_ids()
        return str(await connection.fetchval("SELECT pg_current_xact_id()::text")), revisions
    written = new_revisions(balances_only)
    balances = [
        _int_array([a.id for a in balances_only]),
        _int_array([a.balance_cents for a in balances_only]),
        _int_array(list(written.values())),
    ]
    try:
        transaction_id, operation_ids, refused_keys = await connection.fetchrow(
            _WRITE_BATCH, *_operation_columns(plan), *balances
        )
    except asyncpg.exceptions.UniqueViolationError as error:
        if error.constraint_name == _IDEMPOTENCY_KEY_CONSTRAINT:
            raise KeyAlreadyUsed from error
        raise
    if refused_keys:
        raise KeyAlreadyUsed
    # After the operations, whose keys the write checks against those of claims: an
    # account opened with money keeps its claim under the key of its opening deposit.
    if plan.claims:
        await _insert_claims(connection, plan.claims)
    for operation, operation_id in zip(plan.operations, operation_ids, strict=True):
        operation.id = operation_id
    plan.resolve_ids()
    revisions.update(written)
    return str(transaction_id), revisions


async def write_planned_batch(connection: Connection, planned: PlannedBatch) -> list[int]:
    """Write a plan made on known accounts: one statement, its own transaction.
    Returns the operation ids in order."""
    # In id order, as the locking way locks them, for a plan that joins from this list
    # (a hash join locks in the table's order instead; see docs/postgres.md).
    changed = sorted(planned.plan.changed_accounts, key=attrgetter("id"))
    before = [planned.before[a.id] for a in changed]
    # fetch, not fetchrow: the reply then ends in the tag "SELECT 1", as a test's
    # relay that cuts the connection at that moment looks for.
    columns = [
        *_operation_columns(planned.plan),
        _int_array([a.id for a in changed]),
        _int_array([a.balance_cents for a in changed]),
        _int_array([planned.revisions[a.id] for a in changed]),
        _int_array([balance for balance, _ in before]),
        _int_array([revision for _, revision in before]),
    ]
    claims = planned.plan.claims
    if claims:
        statement = _WRITE_PLANNED_CLAIMED_BATCH
        columns += [
            [c.ledger for c in claims],
            [c.idempotency_key for c in claims],
            [c.digest for c in claims],
        ]
    else:
        statement = _WRITE_PLANNED_BATCH
    [(_, operation_ids)] = await connection.fetch(statement, *columns)
    return list(operation_ids)


async def hold_refused_accounts(
    connection: Connection, plan: BatchPlan, accounts: dict[AccountKey, Account]
) -> dict[int, int]:
    """Inside the transaction that keeps the plan's refusals: make them final. A refused
    key must never be applied by another process (the same request sent to two, which
    decides on other accounts, or on the same ones with other commands before it).

    Whoever applies the key changes every account it names. Each one found gets a new
    revision here: a process that planned the key on it, and writes in one statement
    that read the kept refusals before this commits, finds it not as planned once it
    has the row, and plans again, reading the refusal. An account not found may not
    open until this commits: openings share a lock this takes alone, and a name that
    opened since it was looked for has the batch planned again. Returns the new
    revisions of the accounts found.
    """
    names = {
        (refusal.ledger, client)
        for refusal in plan.refusals
        for client in (refusal.debit_client, refusal.credit_client)
        if client is not None
    }
    missing = sorted(names.difference(accounts))
    if missing:
        await connection.execute("SELECT pg_advisory_xact_lock($1)", OPENINGS_LOCK_KEY)
        opened = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[]) AS t(ledger, client)"
            " JOIN accounts a ON a.ledger = t.ledger AND a.client = t.client)",
            [ledger for ledger, _ in missing],
            [client for _, client in missing],
        )
        if opened:
            raise RetryableStoreError("an account this batch refused for was opened meanwhile")
    # Given one by the write: every account it changes when it writes operations; without
    # them it writes only limits that changed (a floor set to the one it was is not).
    changed = {account.id for account in plan.changed_accounts} if plan.operations else set()
    found = [accounts[name] for name in sorted(names) if name in accounts]
    revisions = new_revisions([account for account in found if account.id not in changed])
    if revisions:
        await connection.execute(
            "UPDATE accounts AS a SET revision = t.revision"
            " FROM unnest($1::bigint[], $2::bigint[]) AS t(id, revision) WHERE a.id = t.id",
            list(revisions),
            list(revisions.values()),
        )
    return revisions


async def _insert_accounts(connection: Connection, accounts: list[Account]) -> None:
    # Not while a batch keeps a refusal for want of an account (hold_refused_accounts).
    await connection.execute("SELECT pg_advisory_xact_lock_shared($1)", OPENINGS_LOCK_KEY)
    # In the order of their folded names (kept as UTF-8: see migration 9): two batches
    # opening the same names, or names alike, in opposite orders would each wait for the
    # other's row, a deadlock PostgreSQL breaks only after deadlock_timeout.
    folded = sorted(
        (((a.ledger, folded_name(a.client).encode()), a) for a in accounts),
        key=lambda pair: pair[0],
    )
    rows = await connection.fetch(
        _INSERT_ACCOUNTS,
        [a.ledger for _, a in folded],
        [a.client for _, a in folded],
        [a.balance_cents for _, a in folded],
        [a.min_balance_cents for _, a in folded],
        [a.max_balance_cents for _, a in folded],
        [name for (_, name), _ in folded],
        accounts[0].created_at,  # one time per batch
    )
    if len(rows) != len(accounts):
        raise RetryableStoreError("another process opened one of these accounts at once")
    ids = {(row[1], row[2]): row[0] for row in rows}
    for account in accounts:
        account.id = ids[(account.ledger, account.client)]


def _operation_columns(plan: BatchPlan) -> list[Any]:
    """The operations as column arrays for unnest, then the batch's one time."""
    rows = [(debit_id, credit_id) for _, debit_id, credit_id in plan.operation_sides()]
    operations = plan.operations
    return [
        _label_array([o.ledger for o in operations]),
        [o.idempotency_key for o in operations],
        _label_array([o.kind for o in operations]),
        _int_array([o.amount_cents for o in operations]),
        _int_array([debit_id for debit_id, _ in rows]),
        _int_array([credit_id for _, credit_id in rows]),
        [o.description for o in operations],
        _int_array([o.debit_balance_after_cents for o in operations]),
        _int_array([o.credit_balance_after_cents for o in operations]),
        operations[0].created_at,
    ]


# Big arrays go in PostgreSQL's text form: asyncpg's binary encoder checks every
# element against collections.abc, which costs twice as much as writing the text.
# Free text (keys, descriptions, client names) stays in binary arrays: no quoting.


def _int_array(values: Sequence[int | None]) -> str:
    """A bigint[] literal, such as '{1,NULL,3}'."""
    return "{" + ",".join(["NULL" if value is None else str(value) for value in values]) + "}"


def _label_array(values: Sequence[str]) -> str:
    """A text[] literal of few distinct values (ledgers, kinds), each quoted once."""
    quoted = {
        value: '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in set(values)
    }
    return "{" + ",".join([quoted[value] for value in values]) + "}"


def _account_columns(accounts: list[Account]) -> list[list[Any]]:
    return [
        [a.id for a in accounts],
        [a.balance_cents for a in accounts],
        [a.min_balance_cents for a in accounts],
        [a.max_balance_cents for a in accounts],
    ]
