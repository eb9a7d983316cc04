"""Text cells of a CSV export that a spreadsheet will not run as a formula.

A description or a name is another client's text in a statement. A cell that begins
with = + - @ (or a tab, carriage return or line feed) is a formula to Excel and
LibreOffice; a leading apostrophe makes it text again, as OWASP advises. Amounts are not passed
through here: they are numbers, and "-5.00" must stay one.
"""

from __future__ import annotations

_FORMULA_STARTS = ("=", "+", "-", "@")
_CELL_BREAKS = ("\t", "\r", "\n")


def text_cell(text: str) -> str:
    # Blanks before a formula too: some spreadsheets trim them as they import a file.
    if text.startswith(_CELL_BREAKS) or text.lstrip().startswith(_FORMULA_STARTS):
        return "'" + text
    return text
