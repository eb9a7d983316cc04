"""The headers' schemas in /openapi.json say what the server takes, no more: a client
made from the document does not send a value the server always refuses."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from kopilka.api import openapi
from kopilka.api.app import ledger_of_header
from kopilka.errors import InvalidInput

# Printable ASCII and what lies next to it: spaces, a tab, a control, a non-ASCII letter.
_NEAR_ASCII = st.text(st.sampled_from([*map(chr, range(0x20, 0x7F)), "\t", "\x7f", "é"]))


def _taken_by_the_server(ledger: str) -> bool:
    try:
        ledger_of_header(ledger.encode())  # the header's bytes, as the server reads them
    except InvalidInput:
        return False
    return True


@given(_NEAR_ASCII)
def test_the_ledger_header_schema_takes_what_the_server_takes(ledger: str) -> None:
    schema = openapi._LEDGER_HEADER["schema"]
    assert isinstance(schema, dict)
    allowed = (
        schema["minLength"] <= len(ledger) <= schema["maxLength"]
        and re.fullmatch(schema["pattern"], ledger) is not None
    )
    assert allowed == _taken_by_the_server(ledger)
