"""The headers' schemas in /openapi.json say what the server takes, no more: a client
made from the document does not send a value the server always refuses."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from kopilka.api import openapi
from kopilka.api.app import ledger_of_header
from kopilka.client_keys import not_marked
from kopilka.domain.rules import validate_idempotency_key
from kopilka.errors import InvalidInput
from kopilka.idempotency import sendable_key

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


def _taken_for_an_item(key: str) -> bool:
    try:
        validate_idempotency_key(not_marked(sendable_key(key)))
    except InvalidInput:
        return False
    return True


_LONG_ASCII = st.text(
    st.sampled_from([chr(c) for c in range(0x21, 0x7F)]), min_size=198, max_size=202
)


@given(st.one_of(_NEAR_ASCII, st.just("client/x"), _LONG_ASCII))
def test_a_batch_items_key_schema_takes_what_the_server_takes(key: str) -> None:
    """It said any string: a client made from the document sent keys refused item by item."""
    schemas = openapi.document()["components"]["schemas"]
    for item in ("BatchDeposit", "BatchWithdrawal", "BatchTransfer"):
        text, null = schemas[item]["properties"]["idempotency_key"]["anyOf"]
        assert null == {"type": "null"}
        allowed = (
            text["minLength"] <= len(key) <= text["maxLength"]
            and re.fullmatch(text["pattern"], key) is not None
        )
        assert allowed == _taken_for_an_item(key), key
