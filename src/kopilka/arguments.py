"""argparse for the subcommands that use it, refusing as every kopilka command does."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from kopilka.redaction import hide_secrets
from kopilka.shell.output import answer

if TYPE_CHECKING:
    from _typeshed import SupportsWrite


class _StoreOnce(argparse._StoreAction):
    """An option given twice is refused, as every kopilka command refuses one: argparse
    keeps the last, so `--role client --role admin` would make an admin token."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        given: set[str] = namespace.__dict__.setdefault("_options_given", set())
        if option_string is not None:
            if self.dest in given:
                parser.error(f"{parser.prog} got {option_string} twice")
            given.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


class ArgumentParser(argparse.ArgumentParser):
    """A usage mistake is one line on stderr and exit 1, not argparse's usage dump and 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # An option cut short is refused, as the other commands refuse one they do not
        # know: `serve --por 1` was taken for --port, and served on port 1.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        """Help on standard output is an answer like any other: one that cannot be
        written is said, with the exit status of an answer not written."""
        if file is None or file is sys.stdout:
            answer(self.format_help().rstrip("\n"))
        else:
            super().print_help(file)

    def error(self, message: str) -> NoReturn:
        # An argument in the wrong place is quoted back: a database URL's password is not.
        self.exit(1, f"Error: {hide_secrets(message)} (see {self.prog} --help)\n")
