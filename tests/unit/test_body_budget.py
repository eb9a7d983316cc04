"""The budget of large bodies held at once: to its last byte, and not one more."""

from __future__ import annotations

import pytest

from kopilka.api.body_budget import BodyBudget
from kopilka.api.errors import ApiError


def test_bodies_may_fill_the_budget_exactly_and_no_more() -> None:
    budget = BodyBudget(bytes_max=100)
    budget.take(60)
    budget.take(40)  # held: exactly the bound
    with pytest.raises(ApiError) as refused:
        budget.take(1)
    assert (refused.value.http_status, refused.value.code) == (503, "busy_bodies")
    assert budget.held == 100  # the refused byte was never held
    budget.give_back(40)
    budget.take(40)
