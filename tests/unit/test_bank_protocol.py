"""The `Bank` protocol as a program checked by mypy --strict uses it: every call docs/api.md
names, and `with`, on either bank."""

from __future__ import annotations

from pathlib import Path

import mypy.api

PROGRAM = """
from kopilka.bank import Bank, EmbeddedBank
from kopilka.client import connect_bank
from kopilka.domain.model import Deposit, Outcome


def open_bank(url: str | None) -> Bank:
    return connect_bank(url) if url else EmbeddedBank("ledger.db")


def pay(url: str | None) -> list[Outcome]:
    bank = open_bank(url)
    outcomes = bank.execute_many([Deposit("Ann", 100, "pay", "key-1")])
    bank.close()
    with open_bank(url) as same:
        same.deposit("Ann", 100, "pay")
    return outcomes
"""


def test_a_strictly_typed_program_uses_either_bank_through_the_protocol(tmp_path: Path) -> None:
    """`execute_many` and `with` were the banks' own, not the protocol's: mypy refused
    them on a `Bank`."""
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    cache = tmp_path / "mypy_cache"
    report, errors, status = mypy.api.run(["--strict", "--cache-dir", str(cache), str(program)])
    assert (status, errors) == (0, ""), report
