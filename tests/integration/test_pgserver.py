"""Tests of the test PostgreSQL server helper (tests/pgserver.py, tests/conftest_pg.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from tests.pgserver import (
    PostgresServerError,
    PostgresTestServer,
    StopMode,
    find_bin_dir,
)

# Registers the postgres_server / postgres_url fixtures (a no-op if a conftest already did).
pytest_plugins = ["tests.conftest_pg"]

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresTestServer]:
    """A private managed server (ignores KOPILKA_TEST_POSTGRES_URL): these tests stop it."""
    server = PostgresTestServer(use_env=False)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def own_url(own_server: PostgresTestServer) -> Iterator[str]:
    own_server.start()
    url = own_server.create_database()
    yield url
    own_server.start()
    own_server.drop_database(url.rsplit("/", 1)[1])


async def _fetch_values(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT v FROM t ORDER BY v")
        return [int(r["v"]) for r in rows]
    finally:
        await conn.close()


# --------------------------------------------------------------------------- shared fixtures


async def test_postgres_url_gives_usable_database(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://")
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT current_setting('fsync')") == "on"
        assert await conn.fetchval("SELECT current_setting('synchronous_commit')") == "on"
        assert await conn.fetchval("SELECT current_setting('server_encoding')") == "UTF8"
        # Fresh database: no user tables.
        n = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
            "('pg_catalog', 'information_schema')"
        )
        assert n == 0
        await conn.execute("CREATE TABLE t (v int PRIMARY KEY)")
        await conn.execute("INSERT INTO t VALUES (1), (2)")
        assert await conn.fetchval("SELECT sum(v) FROM t") == 3
    finally:
        await conn.close()


async def test_create_database_isolation(
    postgres_server: PostgresTestServer, postgres_url: str
) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("CREATE TABLE t (v int)")
        await conn.execute("INSERT INTO t VALUES (42)")
    finally:
        await conn.close()

    other_url = postgres_server.create_database()
    try:
        assert other_url != postgres_url
        other = await asyncpg.connect(other_url)
        try:
            assert await other.fetchval("SELECT to_regclass('public.t')") is None
        finally:
            await other.close()
        assert await _fetch_values(postgres_url) == [42]
    finally:
        postgres_server.drop_database(other_url.rsplit("/", 1)[1])

    with pytest.raises(ValueError):
        postgres_server.create_database("bad name; DROP")


def test_shared_server_properties(postgres_server: PostgresTestServer) -> None:
    assert postgres_server.is_running
    assert postgres_server.url("abc").endswith("/abc")
    if postgres_server.is_managed:
        assert (
            postgres_server.url()
            == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
        )
        assert postgres_server.psql("SHOW max_connections").strip() == "200"
        assert postgres_server.psql("SHOW shared_buffers").strip() == "128MB"
        assert postgres_server.psql("SELECT current_user").strip() == "postgres"
    out = subprocess.run(
        [str(postgres_server.pgbench_path), "--version"], capture_output=True, text=True, check=True
    )
    assert "pgbench" in out.stdout


# --------------------------------------------------------------------------- managed lifecycle


async def test_restart_keeps_data_and_port(own_server: PostgresTestServer, own_url: str) -> None:
    conn = await asyncpg.connect(own_url)
    try:
        await conn.execute("CREATE TABLE t (v int)")
        await conn.execute("INSERT INTO t VALUES (1)")
    finally:
        await conn.close()

    port, data_dir, old_pid = own_server.port, own_server.data_dir, own_server.pid
    own_server.restart()
    assert own_server.is_running
    assert (own_server.port, own_server.data_dir) == (port, data_dir)
    assert own_server.pid != old_pid
    assert await _fetch_values(own_url) == [1]


@pytest.mark.parametrize("mode", ["immediate", "kill"])
async def test_crash_keeps_committed_loses_uncommitted(
    own_server: PostgresTestServer, own_url: str, mode: StopMode
) -> None:
    conn = await asyncpg.connect(own_url)
    await conn.execute("CREATE TABLE t (v int)")
    await conn.execute("INSERT INTO t VALUES (1)")  # committed (autocommit)
    async with conn.transaction():
        await conn.execute("INSERT INTO t VALUES (2)")  # committed
    tx = conn.transaction()
    await tx.start()
    await conn.execute("INSERT INTO t VALUES (3)")  # never committed

    own_server.stop(mode)  # crash with the connection and transaction open
    assert not own_server.is_running
    conn.terminate()
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await asyncpg.connect(own_url, timeout=2)

    own_server.start()
    assert await _fetch_values(own_url) == [1, 2]
    assert "automatic recovery in progress" in own_server.log_tail(200)


def test_stop_is_idempotent(own_server: PostgresTestServer) -> None:
    own_server.stop()
    own_server.stop("immediate")
    assert own_server.pid is None
    url = own_server.url()  # the URL stays known while stopped
    own_server.start()
    own_server.start()
    assert own_server.url() == url
    assert own_server.psql("SELECT 1").strip() == "1"


def test_external_server_mode(own_server: PostgresTestServer) -> None:
    base = own_server.url() + "?sslmode=disable"
    ext = PostgresTestServer(external_url=base)
    ext.start()  # only waits for readiness
    assert not ext.is_managed
    assert ext.is_running
    assert ext.url("foo") == own_server.url("foo") + "?sslmode=disable"
    with pytest.raises(PostgresServerError):
        ext.stop()
    with pytest.raises(PostgresServerError):
        ext.restart()
    url = ext.create_database()
    name = url.split("/")[-1].split("?")[0]
    assert (
        own_server.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'").strip() == "1"
    )
    ext.close()  # drops the databases it created, leaves the server alone
    assert own_server.is_running
    assert (
        own_server.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'").strip() == "0"
    )


def test_env_url_selects_external(
    own_server: PostgresTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOPILKA_TEST_POSTGRES_URL", own_server.url())
    assert not PostgresTestServer().is_managed
    assert PostgresTestServer(use_env=False).is_managed


def test_durability_settings_cannot_be_weakened() -> None:
    for key in ("fsync", "synchronous_commit", "full_page_writes"):
        with pytest.raises(ValueError, match=key):
            PostgresTestServer(use_env=False, settings={key: "off"})


def test_startup_failure_reports_log_and_close_cleans_up() -> None:
    server = PostgresTestServer(use_env=False, settings={"shared_buffers": "nonsense"})
    with pytest.raises(PostgresServerError) as info:
        server.start()
    message = str(info.value)
    assert "exited during startup" in message
    assert "shared_buffers" in message  # the log tail explains why
    assert not server.is_running
    tmp = server.socket_dir
    assert (tmp / "data" / "PG_VERSION").exists()
    server.close()
    assert not tmp.exists()


def test_base_dir_must_be_traversable_by_server_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only relevant when the server runs as another user")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    server = PostgresTestServer(use_env=False, base_dir=private)
    with pytest.raises(PostgresServerError, match="traverse"):
        server.start()
    server.close()
    assert list(private.iterdir()) == []


def test_bin_dir_has_tools() -> None:
    bin_dir = find_bin_dir()
    for tool in ("postgres", "initdb", "pg_isready", "pgbench", "psql"):
        assert (bin_dir / tool).exists(), tool
