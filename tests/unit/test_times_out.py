"""Every time kopilka writes out carries all six digits of its microseconds, those of a
moment on a whole second too: a reader parsing a fixed format must never meet a time
without them (isoformat() alone drops ".000000")."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from kopilka.api.schemas import operation_out, statement_line_out
from kopilka.domain.model import Operation
from kopilka.domain.statement import StatementLine, build_statement
from kopilka.shell.render import statement_csv, statement_json

WHOLE_SECOND = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
SIX_DIGITS = re.compile(r"T\d{2}:\d{2}:\d{2}\.\d{6}[+-]\d{2}:\d{2}")


def _line() -> StatementLine:
    return StatementLine(1, WHOLE_SECOND, "deposit", "x", 100, 100, None, 1)


def test_an_operation_and_a_statement_line_on_a_whole_second_keep_their_microseconds() -> None:
    operation = Operation("main", "k", "deposit", 100, None, "Ann", "x", WHOLE_SECOND, None, 100)
    assert operation_out(operation).created_at == "2026-12-03T14:00:00.000000+00:00"
    assert statement_line_out(_line()).created_at == "2026-12-03T14:00:00.000000+00:00"


def test_the_shells_statement_as_json_and_csv_keeps_them() -> None:
    statement = build_statement("Ann", WHOLE_SECOND, WHOLE_SECOND, 0, [_line()])
    document = statement_json(statement)
    assert document.count('00.000000+00:00"') == 3, document  # since, till, the line
    row = statement_csv(statement).splitlines()[2]
    assert SIX_DIGITS.search(row), row
