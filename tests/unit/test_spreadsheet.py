"""CSV text cells that a spreadsheet would run as formulas are made text."""

from __future__ import annotations

import pytest

from kopilka.spreadsheet import text_cell


@pytest.mark.parametrize("text", ["=1+1", '=HYPERLINK("http://x")', "+1", "-1", "@SUM(A1)", "\tx"])
def test_a_formula_becomes_text(text: str) -> None:
    assert text_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["rent", "", "1+1", "a=b", "'quoted"])
def test_ordinary_text_is_kept(text: str) -> None:
    assert text_cell(text) == text
