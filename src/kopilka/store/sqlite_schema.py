"""SQLite schema as numbered migrations, tracked in PRAGMA user_version.

Amounts are INTEGER cents (64-bit); times are INTEGER microseconds since the
epoch, UTC, so range scans compare integers. The CHECK constraints repeat the
floor and cap rules as the database's own last guard.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

# The tables with a ledger column as migration 7 found them (fixed: a later table is no
# part of that migration).
_LEDGER_TABLES_AT_7 = ("accounts", "operations", "refusals", "batch_requests", "sandboxes")

# Run statement by statement (`statements`): a comment inside must not hold a ";".
MIGRATIONS: tuple[str, ...] = (
    # 1: accounts, operations, entries, tokens
    """
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        ledger TEXT NOT NULL,
        client TEXT NOT NULL,
        balance INTEGER NOT NULL,
        min_balance INTEGER NOT NULL DEFAULT 0,
        max_balance INTEGER,
        created_at INTEGER NOT NULL,
        UNIQUE (ledger, client),
        CHECK (balance >= min_balance),
        CHECK (max_balance IS NULL OR balance <= max_balance)
    );
    CREATE TABLE operations (
        id INTEGER PRIMARY KEY,
        ledger TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        -- Spelled with OR: SQLite evaluates an IN list in a CHECK through a temporary
        -- structure on every row, which made this check cost more than the insert.
        kind TEXT NOT NULL CHECK (kind = 'transfer' OR kind = 'deposit' OR kind = 'withdrawal'),
        amount INTEGER NOT NULL CHECK (amount > 0),
        debit_account_id INTEGER REFERENCES accounts (id),
        credit_account_id INTEGER REFERENCES accounts (id),
        description TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (ledger, idempotency_key),
        CHECK (debit_account_id IS NOT NULL OR credit_account_id IS NOT NULL)
    );
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY,
        operation_id INTEGER NOT NULL REFERENCES operations (id),
        account_id INTEGER NOT NULL REFERENCES accounts (id),
        amount INTEGER NOT NULL CHECK (amount <> 0),
        balance_after INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    -- A statement is one range scan, its opening balance one lookup just before it.
    CREATE INDEX entries_by_account_time ON entries (account_id, created_at, id);
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'teller', 'client')),
        client TEXT,
        ledger TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 2: sandbox ledgers and when each was last used, seen by every process
    """
    CREATE TABLE sandboxes (
        ledger TEXT PRIMARY KEY,
        last_used INTEGER NOT NULL
    );
    """,
    # 3: money commands the ledger refused, kept under their idempotency keys
    """
    CREATE TABLE refusals (
        id INTEGER PRIMARY KEY,
        ledger TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        amount INTEGER NOT NULL,
        debit_client TEXT,
        credit_client TEXT,
        description TEXT NOT NULL,
        code TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (ledger, idempotency_key)
    );
    """,
    # 4: the key of each POST /v1/batch with the digest of its body
    """
    CREATE TABLE batch_requests (
        ledger TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        digest TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (ledger, idempotency_key)
    ) WITHOUT ROWID;
    """,
    # 5: an account's balance and bounds move to a narrow table of their own. Every
    # batch rewrites the page of each account it touches; narrow rows put about three
    # times as many accounts on a page, so a commit writes far fewer pages. The
    # accounts table is rebuilt without those columns (migrate() runs with foreign
    # keys off and checks them all before it commits).
    """
    CREATE TABLE balances (
        account_id INTEGER PRIMARY KEY REFERENCES accounts (id),
        balance INTEGER NOT NULL,
        min_balance INTEGER NOT NULL DEFAULT 0,
        max_balance INTEGER,
        CHECK (balance >= min_balance),
        CHECK (max_balance IS NULL OR balance <= max_balance)
    );
    INSERT INTO balances (account_id, balance, min_balance, max_balance)
        SELECT id, balance, min_balance, max_balance FROM accounts;
    CREATE TABLE accounts_rebuilt (
        id INTEGER PRIMARY KEY,
        ledger TEXT NOT NULL,
        client TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (ledger, client)
    );
    INSERT INTO accounts_rebuilt (id, ledger, client, created_at)
        SELECT id, ledger, client, created_at FROM accounts;
    DROP TABLE accounts;
    ALTER TABLE accounts_rebuilt RENAME TO accounts;
    """,
    # 6: client names written before names were kept in Unicode NFC (a decomposed
    # "Jose" + U+0301 typed on macOS) are rewritten in NFC, or the commands and
    # lookups, which normalize every name, could no longer reach their accounts.
    # nfc() is the ledger's own client_name(), registered by migrate(). An account is
    # renamed only when no other account of its ledger has or would take the same NFC
    # name: a pair like that is left as it is, for an operator to decide
    # (docs/operations.md). A client token spelt otherwise than NFC is revoked first
    # where its ledger has an account of another spelling of the same name: read in
    # NFC it would speak for that account, someone else's money, not the one it was
    # made for (which stays under its old name). The revoked keep their spelling, a
    # record of what they were made for. The other token bindings and the names of
    # kept refusals are only ever compared with normalized names, so they are
    # rewritten. batch_requests keeps the digest of a body as it was sent, and a retry
    # sends the same body: nothing there to rewrite.
    """
    UPDATE tokens SET revoked = 1
        WHERE role = 'client' AND client <> nfc(client)
        AND EXISTS (
            SELECT 1 FROM accounts AS other
            WHERE other.ledger = tokens.ledger AND other.client <> tokens.client
            AND nfc(other.client) = nfc(tokens.client)
        );
    UPDATE accounts SET client = nfc(client)
        WHERE id IN (
            SELECT min(id) FROM accounts WHERE client <> nfc(client)
            GROUP BY ledger, nfc(client) HAVING count(*) = 1
        )
        AND NOT EXISTS (
            SELECT 1 FROM accounts AS twin
            WHERE twin.ledger = accounts.ledger AND twin.client = nfc(accounts.client)
        );
    UPDATE tokens SET client = nfc(client) WHERE client <> nfc(client) AND revoked = 0;
    UPDATE refusals SET debit_client = nfc(debit_client) WHERE debit_client <> nfc(debit_client);
    UPDATE refusals SET credit_client = nfc(credit_client)
        WHERE credit_client <> nfc(credit_client);
    """,
    # 7: ledger names, as 6 did client names: every name a ledger is reached by is kept in
    # NFC now, so a ledger first named "café" decomposed is renamed in NFC in each table
    # with a ledger column, unless another spelling of that name has rows of its own
    # (the twins are left as they are, for an operator). The spellings are read once
    # each, not per row: operations may hold millions. A token bound to another
    # spelling than NFC is revoked where another spelling has rows: in NFC it would
    # reach that ledger, not the one it was made for. So is one bound to the NFC
    # spelling of a ledger renamed into it: made for a ledger with no rows, it would
    # reach the renamed one's. An admin token reaches every
    # ledger anyway, its own only its default: it is rewritten, as the others are.
    """
    CREATE TEMP TABLE ledger_spellings AS
        SELECT ledger, nfc(ledger) AS named FROM ("""
    + " UNION ".join(f"SELECT ledger FROM {table}" for table in _LEDGER_TABLES_AT_7)
    + """);
    CREATE TEMP TABLE ledger_renamed AS
        SELECT min(ledger) AS ledger, named FROM temp.ledger_spellings
        GROUP BY named HAVING count(*) = 1 AND min(ledger) <> named;
    UPDATE tokens SET revoked = 1
        WHERE role <> 'admin' AND ledger <> nfc(ledger)
        AND EXISTS (
            SELECT 1 FROM temp.ledger_spellings AS other
            WHERE other.named = nfc(tokens.ledger) AND other.ledger <> tokens.ledger
        );
    UPDATE tokens SET revoked = 1
        WHERE role <> 'admin' AND ledger IN (SELECT named FROM temp.ledger_renamed);
    UPDATE tokens SET ledger = nfc(ledger) WHERE ledger <> nfc(ledger) AND revoked = 0;
    """
    + "".join(
        f"""
    UPDATE {table} SET ledger = (
            SELECT named FROM temp.ledger_renamed AS renamed WHERE renamed.ledger = {table}.ledger
        )
        WHERE ledger IN (SELECT ledger FROM temp.ledger_renamed);"""
        for table in _LEDGER_TABLES_AT_7
    )
    + """
    DROP TABLE temp.ledger_renamed;
    DROP TABLE temp.ledger_spellings;
    """,
    # 8: the statement index is kept by kopilka, in bulk. As an index of entries, each new
    # entry landed on the leaf of its account's newest entries, in the middle of the tree:
    # a batch of 50 transfers among 100 accounts dirtied 87 leaves, over half the pages
    # its commit wrote. Now the entries after `statement_index_upto` (the last few
    # batches') are in no index, and a statement reads them by id from the table's end;
    # once there are enough, one batch puts them all in the index, where each account's
    # new entries then share its leaf. Derived from entries, so no reference is declared.
    # An entry deleted leaves the index by a trigger, and the index's end comes back to
    # the last entry left (new entries take the ids of the newest deleted next): an older
    # kopilka still running, which knows nothing of the index, keeps it whole too.
    """
    CREATE TABLE statement_index (
        account_id INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        entry_id INTEGER NOT NULL,
        PRIMARY KEY (account_id, created_at, entry_id)
    ) WITHOUT ROWID;
    INSERT INTO statement_index (account_id, created_at, entry_id)
        SELECT account_id, created_at, id FROM entries ORDER BY account_id, created_at, id;
    CREATE TABLE statement_index_upto (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        entry_id INTEGER NOT NULL
    );
    INSERT INTO statement_index_upto (id, entry_id) SELECT 1, coalesce(max(id), 0) FROM entries;
    CREATE TRIGGER entries_deleted_from_the_statement_index AFTER DELETE ON entries BEGIN
        DELETE FROM statement_index
            WHERE account_id = old.account_id AND created_at = old.created_at
            AND entry_id = old.id;
        UPDATE statement_index_upto
            SET entry_id = min(entry_id, (SELECT coalesce(max(id), 0) FROM entries));
    END;
    DROP INDEX entries_by_account_time;
    """,
    # 9: an id is never given twice. SQLite gives a new row the highest id there plus
    # one, so the newest rows of a dropped sandbox lent their ids again, to operations
    # of other ledgers too, and callers told of one operation then found another under
    # its id. Dropping a ledger now notes the highest ids there were, and new rows take
    # ids past them (PostgreSQL's sequences never go back anyway).
    """
    CREATE TABLE ids_given (
        name TEXT PRIMARY KEY CHECK (name = 'accounts' OR name = 'operations' OR name = 'entries'),
        last_id INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 10: each account's name folded for case (folded_name, registered by migrate() as
    # fold()), under a unique index: a new account may not be named as another is but
    # for case, and the index is the last guard of that. Accounts opened before under
    # names alike but for case stay as they are, each used by its own name: the oldest
    # of them keeps the folded name, the others none (docs/operations.md).
    """
    ALTER TABLE accounts ADD COLUMN folded TEXT;
    UPDATE accounts SET folded = fold(client)
        WHERE id IN (SELECT min(id) FROM accounts GROUP BY ledger, fold(client));
    CREATE UNIQUE INDEX accounts_by_folded_name ON accounts (ledger, folded);
    """,
    # 11: the names folded again, with lookalike letters of other alphabets read as the
    # Latin ones they look like (folded_name): Cyrillic "Јое" beside "Joe" would list as
    # the same client. As in 10, the oldest of names now alike (the lowest id) keeps the
    # fold, the others none.
    """
    DROP INDEX accounts_by_folded_name;
    UPDATE accounts SET folded = CASE
        WHEN id IN (SELECT min(id) FROM accounts GROUP BY ledger, fold(client))
        THEN fold(client) END;
    CREATE UNIQUE INDEX accounts_by_folded_name ON accounts (ledger, folded);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def tables_at(version: int) -> frozenset[str]:
    """The tables a ledger of schema `version` has: those its migrations create, as
    renamed or dropped by later ones (migration 5 rebuilds accounts under another name)."""
    assert 0 <= version <= SCHEMA_VERSION, version
    tables: set[str] = set()
    for migration in MIGRATIONS[:version]:
        for statement in statements(migration):
            lines = (line for line in statement.splitlines() if not line.strip().startswith("--"))
            words = " ".join(lines).split()
            if words[:2] == ["CREATE", "TABLE"]:
                tables.add(words[2])
            elif words[:2] == ["DROP", "TABLE"]:
                tables.discard(words[2])
            elif words[:2] == ["ALTER", "TABLE"] and words[3:5] == ["RENAME", "TO"]:
                tables.discard(words[2])
                tables.add(words[5])
    return frozenset(tables)


def statements(script: str) -> Iterator[str]:
    """The statements of a migration, one by one: split at each ";" that ends one (a
    trigger's body holds several)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending[:-1]  # the ";" that ends it
            pending = ""
    assert not pending.strip(" \n;"), pending
