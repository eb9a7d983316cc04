"""What every command accepts: its options, which are required, and its help.

One table serves the parser, the help text, tab completion and the one-shot
commands, so they cannot disagree about a command's grammar.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Option:
    name: str  # canonical, without dashes: "client", "min-balance"
    metavar: str
    help: str
    required: bool = False
    aliases: tuple[str, ...] = ()  # other spellings with their dashes: "-f", "--from"
    names_client: bool = False  # its value is a client name (for completion)

    @property
    def spellings(self) -> tuple[str, ...]:
        return (f"--{self.name}", *self.aliases)


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    summary: str
    usage: str
    options: tuple[Option, ...] = ()
    # The option a bare word fills ("transfer A B 100" style), if any.
    positional: str | None = None
    examples: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    shell: bool = True  # offered inside the shell
    oneshot: bool = True  # offered from the OS shell

    def option(self, spelling: str) -> Option | None:
        for option in self.options:
            if spelling in option.spellings:
                return option
        return None


_CLIENT = Option("client", "NAME", "the client's name", required=True, names_client=True)
_DESCRIPTION_HELP = "what the operation is for (up to 500 characters)"
_DESCRIPTION = Option("description", "TEXT", _DESCRIPTION_HELP, required=True)
_KEY = Option(
    "idempotency-key",
    "KEY",
    "repeating a key applies the operation once (default: a new key per command)",
)
_AMOUNT = Option("amount", "AMOUNT", "like 100, 100.50 or 1,000.25", required=True)

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "deposit",
        "put money into a client's account (the first deposit opens it)",
        "deposit --client=NAME --amount=AMOUNT --description=TEXT",
        (_CLIENT, _AMOUNT, _DESCRIPTION, _KEY),
        examples=('deposit --client="John Jones" --amount=100 --description="ATM Deposit"',),
    ),
    CommandSpec(
        "withdraw",
        "take money out of a client's account, down to its floor",
        "withdraw --client=NAME --amount=AMOUNT --description=TEXT",
        (_CLIENT, _AMOUNT, _DESCRIPTION, _KEY),
        examples=('withdraw --client="John Jones" --amount=100 --description="ATM Withdrawal"',),
    ),
    CommandSpec(
        "transfer",
        "move money from one client to another",
        "transfer --from=NAME --to=NAME --amount=AMOUNT [--description=TEXT]",
        (
            Option("from", "NAME", "who pays", True, ("-f",), names_client=True),
            Option("to", "NAME", "who receives", True, ("-t",), names_client=True),
            _AMOUNT,
            Option("description", "TEXT", _DESCRIPTION_HELP, aliases=("-d",)),
            _KEY,
        ),
        positional="amount",
        examples=(
            'transfer --from="John Jones" --to="Jane Doe" --amount=50 --description=rent',
            'transfer -f "John Jones" -t "Jane Doe" 50 -d rent',
        ),
    ),
    CommandSpec(
        "show_bank_statement",
        "a client's operations in a period, with running balance and totals",
        "show_bank_statement --client=NAME [--since=WHEN] [--till=WHEN] [--format=table|csv|json]",
        (
            _CLIENT,
            Option("since", "WHEN", "from this moment or day (default: the beginning)"),
            Option("till", "WHEN", "up to this moment or day, inclusive (default: now)"),
            Option("format", "FORMAT", "table (default), csv or json"),
        ),
        examples=(
            'show_bank_statement --client="John Jones" --since=2024-01-01 --till=2024-01-31',
            'statement --client="John Jones" --format=csv',
        ),
        aliases=("statement",),
    ),
    CommandSpec(
        "open_account",
        "open an account with a floor (overdraft if negative) and an optional cap",
        "open_account --client=NAME [--min-balance=AMOUNT] [--max-balance=AMOUNT]",
        (
            _CLIENT,
            Option("min-balance", "AMOUNT", "the floor (default 0; negative = overdraft)"),
            Option("max-balance", "AMOUNT", "the cap (default: none)"),
        ),
        examples=('open_account --client="Jane Doe" --min-balance=-100 --max-balance=5000',),
    ),
    CommandSpec(
        "set_limits",
        "change a client's floor or cap",
        "set_limits --client=NAME [--min-balance=AMOUNT] [--max-balance=AMOUNT|none]",
        (
            _CLIENT,
            Option("min-balance", "AMOUNT", "the new floor"),
            Option("max-balance", "AMOUNT", "the new cap, or none to remove it"),
        ),
        examples=('set_limits --client="Jane Doe" --max-balance=none',),
    ),
    CommandSpec(
        "balance",
        "a client's balance",
        "balance --client=NAME",
        (_CLIENT,),
        examples=('balance --client="John Jones"',),
    ),
    CommandSpec(
        "accounts",
        "every client with balance, floor and cap",
        "accounts",
        examples=("accounts",),
    ),
    CommandSpec(
        "add-user",
        "open an account with floor, cap and an opening balance",
        "add-user -n NAME [--min AMOUNT] --max AMOUNT|none [-c AMOUNT]",
        (
            Option("name", "NAME", "the client's name", True, ("-n",)),
            Option("min", "AMOUNT", "the floor (default 0)"),
            Option("max", "AMOUNT", "the cap, or none", True),
            Option("credit", "AMOUNT", "opening balance (default 0)", aliases=("-c",)),
        ),
        examples=('add-user -n "Jane Doe" --max 1000 -c 100',),
    ),
    CommandSpec(
        "get",
        "one client's name, balance, floor and cap; everyone without -n",
        "get [-n NAME]",
        (Option("name", "NAME", "the client's name", aliases=("-n",), names_client=True),),
        examples=('get -n "Jane Doe"', "get"),
    ),
    CommandSpec(
        "init",
        "create or upgrade the database schema",
        "init",
        examples=("kopilka init",),
        shell=False,
    ),
    CommandSpec(
        "help",
        "list the commands, or explain one",
        "help [COMMAND]",
        (Option("command", "COMMAND", "the command to explain"),),
        positional="command",
        examples=("help", "help transfer"),
    ),
    CommandSpec(
        "exit", "leave the shell (also: quit, Ctrl-D)", "exit", aliases=("quit",), oneshot=False
    ),
)


# The options of `kopilka` itself that take a value, given before or after a one-shot
# command's name: where its ledger is, and who asks.
GLOBAL_VALUES = ("db", "url", "token", "ledger", "config")


def find_command(name: str, *, oneshot: bool = False) -> CommandSpec | None:
    """The command called `name` (or one of its aliases) where it is offered."""
    for spec in COMMANDS:
        if name == spec.name or name in spec.aliases:
            return spec if (spec.oneshot if oneshot else spec.shell) else None
    return None


def command_names(*, oneshot: bool = False) -> list[str]:
    """Every name and alias offered in the shell, or from the OS shell."""
    names: list[str] = []
    for spec in COMMANDS:
        if spec.oneshot if oneshot else spec.shell:
            names.extend((spec.name, *spec.aliases))
    return names
