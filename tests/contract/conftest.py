"""Every store behind one suite: memory, a SQLite file, and a real PostgreSQL database.

The PostgreSQL parameter needs the store module and the test server helper; until
both exist it is skipped with the reason, and from then on it runs.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.sqlite_references import assert_references_whole

from kopilka.clock import MonotonicClock
from kopilka.engine import Engine
from kopilka.limits import Limits
from kopilka.store import open_store
from kopilka.store.protocol import Store


@dataclass(frozen=True, slots=True)
class Backend:
    """A store under test: how to open it, and whether its data outlives a close."""

    kind: str
    url: str
    path: Path | None = None  # the SQLite file, for raw access

    @property
    def durable(self) -> bool:
        return self.kind != "memory"

    def open(self, clock: MonotonicClock | None = None) -> Store:
        return open_store(self.url, clock)

    async def start_engine(
        self, limits: Limits | None = None, clock: MonotonicClock | None = None
    ) -> Engine:
        engine = Engine(self.open(clock), limits)
        await engine.start()
        return engine


def _postgres_url(request: pytest.FixtureRequest) -> str:
    if importlib.util.find_spec("kopilka.store.postgres") is None:
        pytest.skip("the PostgreSQL store (src/kopilka/store/postgres.py) does not exist yet")
    try:
        importlib.import_module("tests.pgserver")
    except ImportError as error:
        pytest.skip(f"the PostgreSQL test server (tests/pgserver.py) is unavailable: {error}")
    try:
        return str(request.getfixturevalue("postgres_url"))
    except pytest.FixtureLookupError:
        pytest.skip("the postgres_url fixture (tests/conftest_pg.py) is not registered")


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    kind: str = request.param
    if kind == "memory":
        return Backend(kind, "memory:")
    if kind == "sqlite":
        path = tmp_path / "kopilka.db"
        return Backend(kind, "sqlite:///" + str(path).lstrip("/"), path)
    return Backend(kind, _postgres_url(request))


@pytest.fixture
async def engine(backend: Backend) -> AsyncIterator[Engine]:
    engine = await backend.start_engine()
    try:
        yield engine
    finally:
        await engine.close()
    if backend.path is not None and backend.path.exists():
        assert_references_whole(backend.path)
