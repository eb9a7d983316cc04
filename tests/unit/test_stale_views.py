"""When a PostgreSQL store plans batches on its own view of the accounts."""

from __future__ import annotations

from kopilka.store.postgres_accounts import StaleViews


def tries(views: StaleViews, batches: int) -> int:
    return sum(views.worth_trying() for _ in range(batches))


def test_a_view_that_holds_is_always_tried() -> None:
    views = StaleViews()
    for _ in range(100):
        assert views.worth_trying()
        views.record(failed=False)


def test_an_occasional_stale_view_is_still_tried() -> None:
    views = StaleViews()
    for n in range(200):
        assert views.worth_trying()
        views.record(failed=n % 10 == 0)


def test_views_that_keep_failing_are_tried_only_as_probes_until_they_hold_again() -> None:
    views = StaleViews()
    for _ in range(20):
        views.record(failed=True)
    assert tries(views, 10 * StaleViews.probe_every) == 10  # one probe in each stretch
    for _ in range(20):
        views.record(failed=False)  # the probes held
    assert tries(views, 20) == 20
