"""pytest fixtures giving tests a real PostgreSQL server (see ``tests/pgserver.py``).

Use from a conftest (preferred: once, in the root ``tests/conftest.py``)::

    pytest_plugins = ["tests.conftest_pg"]

or import the fixtures into a conftest/test module::

    from tests.conftest_pg import postgres_server, postgres_url  # noqa: F401

Importing into several modules is safe: pytest then sees several fixture definitions,
but they all share one reference-counted server per process, closed when the last
user is torn down.  Set ``KOPILKA_TEST_POSTGRES_URL`` to use an existing server.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from tests.pgserver import (
    PostgresServerError,
    PostgresTestServer,
    acquire_shared_server,
    release_shared_server,
)

__all__ = ["postgres_module_url", "postgres_server", "postgres_url"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresTestServer]:
    """The session's PostgreSQL server (started on first use, closed at the end)."""
    server = acquire_shared_server()
    try:
        yield server
    finally:
        release_shared_server()


@pytest.fixture
def postgres_url(postgres_server: PostgresTestServer) -> Iterator[str]:
    """URL of a fresh, empty database (random name), dropped after the test."""
    yield from _fresh_database(postgres_server)


@pytest.fixture(scope="module")
def postgres_module_url(postgres_server: PostgresTestServer) -> Iterator[str]:
    """URL of a fresh, empty database shared by the tests of one module, dropped after
    them: for tests that can share a ledger or empty it between them themselves."""
    yield from _fresh_database(postgres_server)


def _fresh_database(postgres_server: PostgresTestServer) -> Iterator[str]:
    # A previous test may have stopped the shared server; bring it back.
    postgres_server.start()
    url = postgres_server.create_database()
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    yield url
    if not postgres_server.is_running:
        postgres_server.start()
    try:
        postgres_server.drop_database(name)
    except PostgresServerError as exc:
        warnings.warn(f"could not drop test database {name}: {exc}", stacklevel=1)
