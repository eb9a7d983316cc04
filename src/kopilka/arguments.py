"""argparse for the subcommands that use it, refusing as every kopilka command does."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, NoReturn

from kopilka.settings import hide_secrets
from kopilka.shell.output import answer

if TYPE_CHECKING:
    from _typeshed import SupportsWrite


class ArgumentParser(argparse.ArgumentParser):
    """A usage mistake is one line on stderr and exit 1, not argparse's usage dump and 2."""

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
