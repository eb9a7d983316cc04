"""argparse for the subcommands that use it, refusing as every kopilka command does."""

from __future__ import annotations

import argparse
from typing import NoReturn

from kopilka.settings import hide_secrets


class ArgumentParser(argparse.ArgumentParser):
    """A usage mistake is one line on stderr and exit 1, not argparse's usage dump and 2."""

    def error(self, message: str) -> NoReturn:
        # An argument in the wrong place is quoted back: a database URL's password is not.
        self.exit(1, f"Error: {hide_secrets(message)} (see {self.prog} --help)\n")
