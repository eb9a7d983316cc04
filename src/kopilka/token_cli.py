"""`kopilka token create|revoke|list`: manage API tokens directly in the local store.

A running server keeps verified tokens in memory for about a second
(kopilka.api.auth.TOKEN_CACHE_TTL_SECONDS), so a revocation made here reaches
every running worker within that time. Secrets are printed once, at creation,
and stored only as a hash.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from kopilka.api.auth import new_token_record
from kopilka.errors import KopilkaError
from kopilka.settings import load_settings
from kopilka.store import open_store
from kopilka.store.protocol import Store
from kopilka.tokens import ROLES


def _parser() -> argparse.ArgumentParser:
    # --db may stand before or after the subcommand.
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--db", default=argparse.SUPPRESS, help="'memory:', a SQLite path or a postgresql:// URL"
    )
    database.add_argument(
        "--config", default=argparse.SUPPRESS, metavar="FILE", help="settings file (kopilka.toml)"
    )
    parser = argparse.ArgumentParser(
        prog="kopilka token", description="Manage API tokens.", parents=[database]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser(
        "create",
        parents=[database],
        help="create a token and print its secret once",
        description='Example: kopilka token create --role client --client "John Jones"',
    )
    create.add_argument("--role", choices=ROLES, required=True)
    create.add_argument("--client", help="the one account a client token may use")
    create.add_argument("--ledger", default="main", help="the token's ledger (default main)")
    revoke = commands.add_parser("revoke", help="revoke a token by its id", parents=[database])
    revoke.add_argument("token_id", metavar="ID")
    commands.add_parser(
        "list", help="list tokens (ids and roles, never secrets)", parents=[database]
    )
    return parser


async def _run(store: Store, arguments: argparse.Namespace) -> int:
    await store.open()
    try:
        if arguments.command == "create":
            record, secret = new_token_record(arguments.role, arguments.client, arguments.ledger)
            await store.put_token(record)
            print(f"token {record.id} ({record.role}) created; its secret, shown only once:")
            print(secret)
            return 0
        if arguments.command == "revoke":
            if await store.revoke_token(arguments.token_id):
                print(f"token {arguments.token_id} revoked")
                return 0
            known = await store.get_token(arguments.token_id)
            print(
                f"Error: token {arguments.token_id} "
                + ("was already revoked" if known else "does not exist"),
                file=sys.stderr,
            )
            return 1
        for record in await store.list_tokens():
            state = "revoked" if record.revoked else "active"
            client = f" client={record.client}" if record.client else ""
            print(
                f"{record.id}  {record.role:<6} ledger={record.ledger}{client}  {state}"
                f"  created {record.created_at:%Y-%m-%d %H:%M:%S} UTC"
            )
        return 0
    finally:
        await store.close()


def token_main(argv: list[str]) -> int:
    arguments = _parser().parse_args(argv)
    try:
        settings = load_settings(
            {"db": getattr(arguments, "db", None)},
            config_path=getattr(arguments, "config", None),
        )
        return asyncio.run(_run(open_store(settings.db), arguments))
    except KopilkaError as error:
        print(f"Error: {error.message}", file=sys.stderr)
        return 1
