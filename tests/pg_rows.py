"""What a PostgreSQL ledger holds, read beside the store under test."""

from __future__ import annotations

import asyncpg


async def operations_under(url: str, key: str) -> int:
    """How many operations were applied under the idempotency key `key`."""
    connection = await asyncpg.connect(url)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM operations WHERE idempotency_key = $1", key
        )
        return count
    finally:
        await connection.close()
