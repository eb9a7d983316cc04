"""`kopilka token create|revoke|list`: manage API tokens, on a server or in the local store.

With a server's URL (--url, KOPILKA_URL or `url` in kopilka.toml) the commands use
its token API, as an admin: the token comes from --token, KOPILKA_TOKEN or the
admin.token file, as for `kopilka shell --url`. That is the only way to reach a
server whose store this machine cannot open (`kopilka serve --db memory:`, another
host). Otherwise (no URL, or --db without --url) they write to the local store named
by the settings, and print the same.

A running server keeps verified tokens in memory for about a second
(kopilka.api.auth.TOKEN_CACHE_TTL_SECONDS), so a revocation made in the store reaches
every running worker within that time; the process that answers a revocation through
the API refuses the token at once. Secrets are printed once, at creation, and stored
only as a hash.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import sys
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from kopilka.api.auth import make_token
from kopilka.arguments import ArgumentParser
from kopilka.domain.model import client_name
from kopilka.domain.rules import quoted_name, validate_chosen_ledger, validate_client
from kopilka.errors import InvalidInput, KopilkaError, NotFound
from kopilka.redaction import hide_secrets, redact_url
from kopilka.settings import CONFIG_HELP, chosen_ledger, load_settings
from kopilka.shell.connect import (
    local_store,
    refuse_a_home_never_written,
    refuse_token_without_server,
)
from kopilka.shell.output import AnswerNotWritten, answer, exit_status
from kopilka.shell.repl import SessionEnded, SignalEnding
from kopilka.store import keeps_nothing
from kopilka.store.protocol import Store
from kopilka.tokens import ROLES, TOKEN_PREFIX, is_token_id, no_token_named


class _Token(Protocol):
    """What is shown of a token: a store's TokenRecord and the client's TokenInfo both fit."""

    @property
    def id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def ledger(self) -> str: ...
    @property
    def client(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def revoked(self) -> bool: ...


def _parser() -> argparse.ArgumentParser:
    # These options may stand before or after the subcommand.
    where = ArgumentParser(add_help=False)
    where.add_argument(
        "--db", default=argparse.SUPPRESS, help="a SQLite path or a postgresql:// URL"
    )
    where.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help="a server (URL, host:port or port): manage its tokens through its API",
    )
    where.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="an admin token for --url (default: KOPILKA_TOKEN, else KOPILKA_HOME/admin.token)",
    )
    where.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE", help=CONFIG_HELP)
    parser = ArgumentParser(
        prog="kopilka token",
        description=(
            "Manage API tokens: on a server with --url (or KOPILKA_URL),"
            " else in the local database."
        ),
        parents=[where],
    )
    # `kopilka token --ledger NAME create`: `kopilka --help` says a global option may stand
    # before the command too. It is create's alone, taken as if given after `create`.
    parser.add_argument(
        "--ledger",
        dest="ledger_before_command",
        default=argparse.SUPPRESS,
        metavar="LEDGER",
        help="for create: the token's ledger (also given after create)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser(
        "create",
        parents=[where],
        help="create a token and print its secret once",
        description='Example: kopilka token create --role client --client "John Jones"',
    )
    create.add_argument("--role", choices=ROLES, required=True)
    create.add_argument("--client", help="the one account a client token may use")
    create.add_argument(
        "--ledger",
        help="the token's ledger (default: the ledger setting, else main, or over --url the"
        " asking token's own)",
    )
    revoke = commands.add_parser("revoke", help="revoke a token by its id", parents=[where])
    revoke.add_argument("token_id", metavar="ID")
    commands.add_parser("list", help="list tokens (ids and roles, never secrets)", parents=[where])
    return parser


def _show_created(token: _Token, secret: str, arguments: argparse.Namespace) -> None:
    try:
        answer(f"token {token.id} ({token.role}) created; its secret, shown only once:\n{secret}")
    except (AnswerNotWritten, BrokenPipeError) as lost:
        # A token that works and that no one holds: which one, so that it can go (said
        # even when the reader left, which other answers let pass in silence).
        cause = lost if isinstance(lost, OSError) else lost.__cause__
        reason = cause.strerror if isinstance(cause, OSError) else "lost"
        revoke = f"kopilka token revoke {token.id}{_reached_with(arguments)}"
        raise AnswerNotWritten(
            "answer_not_written",
            f"token {token.id} was made, but its secret could not be written ({reason}):"
            f" no one has it; revoke it ({revoke})",
        ) from cause


def _reached_with(arguments: argparse.Namespace) -> str:
    """The options that named where the tokens are, to repeat in a command suggested to
    the user (a token only by name: its secret is not written out again)."""
    given = []
    for name in ("db", "url", "config"):
        value = getattr(arguments, name, None)
        if value is not None:
            shown = redact_url(value) if name == "db" else value
            given.append(" " + shlex.quote(f"--{name}={shown}"))
    if getattr(arguments, "token", None) is not None:
        given.append(" --token=TOKEN")
    return "".join(given)


# A client's token for a name no account has (mistyped, say) does nothing until an
# account is opened under that name, and then speaks for that one, whoever's it is: so
# the account is looked for first (a look that fails, or is cut short, has made nothing),
# and its absence said once the token is shown. A look that cannot tell warns of nothing.
# Over a server, it waits this long, not a call's 30 s.
_LOOK_SECONDS = 5.0


async def _no_account_here(store: Store, arguments: argparse.Namespace) -> bool:
    if arguments.role != "client" or arguments.client is None:
        return False
    try:
        ledger = validate_chosen_ledger(arguments.ledger)
        # Checked before any store reads it: bytes that are not UTF-8 (a Latin-1 terminal's
        # "José") reached the database's driver, and a traceback.
        validate_client(arguments.client)
        return await store.get_account(ledger, client_name(arguments.client)) is None
    except KopilkaError:  # a name or ledger refused: make_token says why
        return False


def _no_account_there(url: str, token: str | None, arguments: argparse.Namespace) -> bool:
    """As _no_account_here, asked of the server, in the ledger the token will have."""
    from kopilka.client import connect_bank

    if arguments.role != "client" or arguments.client is None:
        return False
    try:
        with connect_bank(
            url, token=token, ledger=arguments.ledger, timeout_seconds=_LOOK_SECONDS
        ) as bank:
            bank.account(arguments.client)
    except NotFound:
        return True
    except KopilkaError:
        return False
    return False


def _warn_of_no_account(ledger: str, client: str) -> None:
    with contextlib.suppress(OSError):  # the token is made and shown: that stands
        print(
            f"Warning: no account for client {quoted_name(client)} in ledger {ledger!r} yet:"
            " the token speaks for the one opened under that name; revoke it if the name"
            " is not the one meant",
            file=sys.stderr,
        )


def _show_list(tokens: Iterable[_Token]) -> None:
    lines = []
    for token in tokens:
        state = "revoked" if token.revoked else "active"
        client = f" client={_spelt(token.client)}" if token.client else ""
        lines.append(
            f"{token.id}  {token.role:<6} ledger={_spelt(token.ledger)}{client}  {state}"
            f"  created {token.created_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    # As `kopilka accounts` says it has none: an empty answer reads as one not written.
    answer("\n".join(lines) if lines else "No tokens yet.")


def _spelt(name: str) -> str:
    """A name as the list shows it: one an upgrade left spelt otherwise than NFC (a
    twin's) said so, or it shows just as the NFC one it is not."""
    if unicodedata.is_normalized("NFC", name):
        return name
    return f"{name} (spelt otherwise: {name!a})"


def _not_revoked(token_id: str, known: bool) -> int:
    if token_id.startswith(TOKEN_PREFIX):  # the secret itself: never quoted back
        print(f"Error: {no_token_named(token_id)}", file=sys.stderr)
        return 1
    reason = "was already revoked" if known else "does not exist"
    # repr: an id as typed may hold a line break or an escape sequence.
    print(hide_secrets(f"Error: token {token_id!r} {reason}"), file=sys.stderr)
    return 1


async def _run_local(store: Store, arguments: argparse.Namespace) -> int:
    await store.open()
    try:
        if arguments.command == "create":
            no_account = await _no_account_here(store, arguments)
            arguments.asked = True
            record, secret = await make_token(
                store, arguments.role, arguments.client, arguments.ledger
            )
            _show_created(record, secret, arguments)
            if no_account and record.client is not None:
                _warn_of_no_account(record.ledger, record.client)
            return 0
        if arguments.command == "revoke":
            if not is_token_id(arguments.token_id):  # none other was made (nor can be read)
                return _not_revoked(arguments.token_id, known=False)
            arguments.asked = True
            if await store.revoke_token(arguments.token_id):
                answer(f"token {arguments.token_id} revoked")
                return 0
            known = await store.get_token(arguments.token_id) is not None
            return _not_revoked(arguments.token_id, known)
        _show_list(await store.list_tokens())
        return 0
    finally:
        await store.close()


def _run_remote(url: str, token: str | None, arguments: argparse.Namespace) -> int:
    from kopilka.client import connect_bank  # loaded only here: the store needs no HTTP

    with connect_bank(url, token=token) as server:
        if arguments.command == "create":
            no_account = _no_account_there(url, token, arguments)
            arguments.asked = True
            info, secret = server.create_token(arguments.role, arguments.client, arguments.ledger)
            _show_created(info, secret, arguments)
            if no_account and info.client is not None:
                _warn_of_no_account(info.ledger, info.client)
            return 0
        if arguments.command == "revoke":
            # The API answers 204 for a token revoked before too: look first, to say
            # what the store's path says.
            found = [info for info in server.list_tokens() if info.id == arguments.token_id]
            if not found or found[0].revoked:
                return _not_revoked(arguments.token_id, bool(found))
            arguments.asked = True
            server.revoke_token(arguments.token_id)
            answer(f"token {arguments.token_id} revoked")
            return 0
        _show_list(server.list_tokens())
        return 0


def _interrupted(arguments: argparse.Namespace) -> str:
    """Interrupted once the change was asked for: it may have been made, its answer lost."""
    listing = f"kopilka token list{_reached_with(arguments)}"
    if arguments.command == "create":
        return (
            f"interrupted; it may still have been done: look with `{listing}` before"
            " running it again (and revoke a token made whose secret never came)"
        )
    return (
        f"interrupted; the token may have been revoked already: `{listing}` tells, and"
        " revoking it again changes nothing"
    )


def _look_at_the_tokens(arguments: argparse.Namespace) -> str:
    listing = f"kopilka token list{_reached_with(arguments)}"
    return f": look with `{listing}`, and revoke a token made whose secret never came"


def token_main(argv: list[str]) -> int:
    with SignalEnding():  # SIGTERM and SIGHUP as Ctrl-C
        return _token_main(argv)


def _nothing_in_memory(command: str) -> str:
    """Why a database in memory is refused: it begins and ends with this one command."""
    if command == "create":
        return (
            "a token in memory would end with this command, honoured by no server:"
            " give the server's --url, or its --db"
        )
    return (
        f"a database in memory holds no tokens to {command}: give the server's --url, or its --db"
    )


def _token_main(argv: list[str]) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    ledger = getattr(arguments, "ledger_before_command", None)
    if ledger is not None:
        if arguments.command != "create":
            parser.error(f"only `kopilka token create` takes --ledger, not {arguments.command}")
        if arguments.ledger is not None:
            parser.error("kopilka token got --ledger twice")
        arguments.ledger = ledger
    db = getattr(arguments, "db", None)
    arguments.asked = False  # whether the token's creation or revocation was asked for
    try:
        if arguments.command == "create" and arguments.ledger is not None:
            chosen_ledger(arguments.ledger, "--ledger")  # before any database is looked for
        settings = load_settings({"db": db}, config_path=getattr(arguments, "config", None))
        # A --url given here wins; else the settings' (None when a database was given
        # at a stronger place, a --db flag among them).
        url = getattr(arguments, "url", None) or settings.url
        # The ledger every other command works in (KOPILKA_LEDGER, kopilka.toml): a
        # client's token bound to main instead would be for another account. Over the
        # network with none chosen, the asking token's own, as other commands' (None:
        # the server takes the request's ledger).
        chosen = url is None or settings.ledger_chosen
        if arguments.command == "create" and arguments.ledger is None and chosen:
            arguments.ledger = settings.ledger
        if url is not None:
            return _run_remote(url, getattr(arguments, "token", None), arguments)
        refuse_token_without_server(getattr(arguments, "token", None), settings)
        # As for every other command: the home's rules, and a token in a --db that is not
        # there, or holds no ledger, is refused rather than made (a mistyped path made a
        # ledger there, and an admin token that no server honours).
        if keeps_nothing(settings.db):
            raise InvalidInput("invalid_option", _nothing_in_memory(arguments.command))
        refuse_a_home_never_written(settings)
        store = local_store(settings, makes_none=True)
        return asyncio.run(_run_local(store, arguments))
    except AnswerNotWritten:
        raise  # it ran: the command line says so, with its own exit status
    except KopilkaError as error:
        message = hide_secrets(error.message)
        if error.code == "outcome_unknown" and arguments.command == "create":
            message += _look_at_the_tokens(arguments)  # "check" how: its secret is lost
        print(f"Error: {message}", file=sys.stderr)
        return exit_status(error)
    except (KeyboardInterrupt, SessionEnded):
        if arguments.asked:  # a token made, or revoked, may be so already
            print(f"Error: {_interrupted(arguments)}", file=sys.stderr)
        elif arguments.command != "list":  # still looking, say at the tokens there are
            print("Error: interrupted; nothing was done", file=sys.stderr)
        raise
