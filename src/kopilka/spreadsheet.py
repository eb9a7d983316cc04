"""Text cells of a CSV export that a spreadsheet will not run as a formula.

A description or a name is another client's text in a statement. A cell that begins
with = + - @ (or a tab or carriage return) is a formula to Excel and LibreOffice; a
leading apostrophe makes it text again, as OWASP advises. Amounts are not passed
through here: they are numbers, and "-5.00" must stay one.
"""

from __future__ import annotations

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
