"""CSV text cells that a spreadsheet would run as formulas are made text."""

from __future__ import annotations

import pytest

from kopilka.spreadsheet import text_cell


@pytest.mark.parametrize(
    "text",
    [
        *["=1+1", '=HYPERLINK("http://x")', "+1", "-1", "@SUM(A1)", "\tx", "\nx"],
        *[" =1+2", "  +1", "\u00a0=1+2", "\u3000@SUM(A1)"],  # blanks a spreadsheet may trim
    ],
)
def test_a_formula_becomes_text(text: str) -> None:
    assert text_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["rent", "", "1+1", "a=b", "'quoted", " rent", "   "])
def test_ordinary_text_is_kept(text: str) -> None:
    assert text_cell(text) == text
