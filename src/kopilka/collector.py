"""The garbage collector of a long-running server process.

Reference counting frees nearly everything a request makes; the cyclic collector
only has to look now and then. CPython's default runs a young collection every 700
net allocations, which under load was 160-214 times in 8 s, each holding the
interpreter (and so the event loop and the COMMIT's thread) for 0.3-1.2 ms.
"""

from __future__ import annotations

import gc

# Net allocations between young collections (CPython's default: 700). Under one transfer
# per request, 64 clients: none in 8 s (~190 at the default). A batch of a few thousand
# transfers keeps tens of thousands of objects alive until it is answered: at 20,000 a
# collection came in the middle of nearly every batch and scanned them all, then a
# middle one scanned them again (PostgreSQL, batches of 4,000: ~8% of the server's CPU).
# At 100,000 most die before the count is reached; a collection, when one comes, scans
# at most that many objects (~10-40 ms).
YOUNG_ALLOCATIONS_PER_COLLECTION = 100_000


def settle_for_serving() -> None:
    """Once a server process has started: what it has loaded lives as long as the
    process and is kept out of every collection's sight (scanning it in full collections
    stopped the event loop for ~27 ms a few times a minute under load), and young
    collections run less often."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_ALLOCATIONS_PER_COLLECTION, middle, old)
