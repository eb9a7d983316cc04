"""Errors travel: raised in another process, or copied, they come back as they were."""

from __future__ import annotations

import copy
from concurrent.futures import ProcessPoolExecutor

import pytest

from kopilka.api.errors import ApiError
from kopilka.errors import InvalidInput, KopilkaError, NotFound


def _refuse(error: KopilkaError) -> None:
    raise error


def _replayed_refusal() -> NotFound:
    error = NotFound("account_not_found", "no account for client 'Ann'")
    error.replayed = True
    return error


@pytest.mark.parametrize(
    "error",
    [
        InvalidInput("invalid_amount", "amount '1.001' has more than two decimals"),
        _replayed_refusal(),
        ApiError(405, "method_not_allowed", "PUT is not allowed on /v1/health", ("GET",)),
    ],
    ids=type,
)
def test_an_error_raised_in_a_process_pool_arrives_whole(error: KopilkaError) -> None:
    """It could not be rebuilt there: the pool was reported broken instead."""
    with ProcessPoolExecutor(max_workers=1) as pool, pytest.raises(KopilkaError) as raised:
        pool.submit(_refuse, error).result(timeout=60)
    arrived = raised.value
    assert arrived == error and type(arrived) is type(error)
    assert (arrived.http_status, arrived.replayed, str(arrived)) == (
        error.http_status,
        error.replayed,
        error.message,
    )
    assert copy.copy(error) == error and copy.deepcopy(error) == error
