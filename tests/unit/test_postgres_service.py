"""A connection service is found as the PostgreSQL driver will find it, or refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from kopilka.errors import InvalidInput
from kopilka.store.postgres_service import refuse_a_service_not_found

URL = "postgresql://?service=books"


def test_a_percent_in_a_value_the_driver_never_reads_is_no_concern(tmp_path: Path) -> None:
    services = tmp_path / "services.conf"
    services.write_text("[books]\nhost=db.internal\noptions=-c search_path=%s\n")
    refuse_a_service_not_found(URL, {"PGSERVICEFILE": str(services)})


def test_an_empty_pgservicefile_is_read_as_the_driver_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set but empty, the driver reads "." (nothing, the service skipped), not the home's
    file, which the check read in its place and found the service in."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".pg_service.conf").write_text("[books]\nhost=db.internal\n")
    refuse_a_service_not_found(URL, {})  # found in the home's
    with pytest.raises(InvalidInput) as refused:
        refuse_a_service_not_found(URL, {"PGSERVICEFILE": ""})
    assert refused.value.message.startswith("no service 'books' in PGSERVICEFILE (.)")


def test_a_url_that_names_no_service_is_left_alone_unless_pgservice_is_set() -> None:
    refuse_a_service_not_found("postgresql://app@db.internal/bank", {})
    with pytest.raises(InvalidInput):
        refuse_a_service_not_found("postgresql://app@db.internal/bank", {"PGSERVICE": "books"})
