"""Reading the other end of a connection in Linux's tables of TCP sockets, as the home's
admin token waits for it to be seen this user's (client_home_token), from tables as a
little-endian machine writes them."""

from __future__ import annotations

import sys

import pytest

from kopilka.client_home_token import Socket, endpoint, other_end_in

pytestmark = pytest.mark.skipif(
    sys.byteorder != "little", reason="tables of a little-endian machine"
)

HEAD = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
TCP = HEAD + (
    # The server's listener, 127.0.0.1:8888, uid 1000; the client's end of a connection
    # from port 5000 (uid 0); the server's end of it (uid 1000); another connection's end.
    "   0: 0100007F:22B8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 11 1\n"
    "   1: 0100007F:1388 0100007F:22B8 01 00000000:00000000 00:00000000 00000000     0 0 12 1\n"
    "   2: 0100007F:22B8 0100007F:1388 01 00000000:00000000 00:00000000 00000000  1000 0 13 1\n"
    "   3: 0100007F:22B8 0100007F:1389 06 00000000:00000000 03:00000000 00000000     0 0 0 3\n"
)
TCP6 = HEAD + (
    # [::1]:8888 from [::1]:5000, uid 1001; a dual-stack listener's end of an IPv4
    # connection from 127.0.0.1:6000 (written as ::ffff:127.0.0.1), uid 1002.
    "   0: 00000000000000000000000001000000:22B8 00000000000000000000000001000000:1388 01"
    " 00000000:00000000 00:00000000 00000000  1001 0 21 1\n"
    "   1: 0000000000000000FFFF00000100007F:22B8 0000000000000000FFFF00000100007F:1770 01"
    " 00000000:00000000 00:00000000 00000000  1002 0 22 1\n"
)


@pytest.mark.parametrize(
    ("here", "there", "found"),
    [
        (("127.0.0.1", 5000), ("127.0.0.1", 8888), Socket("01", 1000)),
        (("127.0.0.1", 5001), ("127.0.0.1", 8888), Socket("06", 0)),  # closing, root's
        (("::1", 5000, 0, 0), ("::1", 8888, 0, 0), Socket("01", 1001)),
        (("127.0.0.1", 6000), ("127.0.0.1", 8888), Socket("01", 1002)),
        (("127.0.0.1", 7000), ("127.0.0.1", 8888), None),  # in no table: gone
    ],
)
def test_the_other_end_of_a_connection_is_found_in_the_tables(
    here: tuple[object, ...], there: tuple[object, ...], found: Socket | None
) -> None:
    assert other_end_in([TCP, TCP6], endpoint(here), endpoint(there)) == found
