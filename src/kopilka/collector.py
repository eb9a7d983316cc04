"""The garbage collector of a long-running server process.

Reference counting frees nearly everything a request makes; the cyclic collector
only has to look now and then. CPython's default runs a young collection every 700
net allocations, which under load was 160-214 times in 8 s, each holding the
interpreter (and so the event loop and the COMMIT's thread) for 0.3-1.2 ms.
"""

from __future__ import annotations

import gc

# Net allocations between young collections (CPython's default: 700). Under one transfer
# per request, 64 clients: ~2 young collections in 8 s instead of ~190, 0.3-0.5 instead
# of 2-4 us of collection per request; each is longer (5-8 ms), and rare.
YOUNG_ALLOCATIONS_PER_COLLECTION = 20_000


def settle_for_serving() -> None:
    """Once a server process has started: what it has loaded lives as long as the
    process and is kept out of every collection's sight (scanning it in full collections
    stopped the event loop for ~27 ms a few times a minute under load), and young
    collections run less often."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_ALLOCATIONS_PER_COLLECTION, middle, old)
