"""A refusal of the whole database's that passes (a read-only server, a full disk) is
logged when it begins and, once a batch's write commits again, when it ends: the operator
watching the log sees the trouble end, as for an outage."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from kopilka.domain.model import Deposit, Operation
from kopilka.engine import Engine
from kopilka.errors import Unavailable
from kopilka.store import initialize_schema
from kopilka.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres
# Logged once a batch's write commits after a spell of refused writes.
AGAIN_LINE = "takes kopilka's work again"


async def _set_read_only(url: str, read_only: bool) -> None:
    """For the database's new sessions; kopilka's own are ended, to be opened anew."""
    admin = await asyncpg.connect(url)
    try:
        await admin.execute("SET default_transaction_read_only = off")  # its own, too
        database = await admin.fetchval("SELECT current_database()")
        setting = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
        await admin.execute(f'ALTER DATABASE "{database}" {setting}')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name = 'kopilka'",
            database,
        )
    finally:
        await admin.close()


async def _set_disk_full(url: str, full: bool) -> None:
    """A full disk as kopilka meets it: each new operation's row refused with disk_full
    (53100, "could not extend file"), as a table that needs a new page is. Smaller rows
    (an account's balance rewritten in place) still go through, as they may then."""
    admin = await asyncpg.connect(url)
    try:
        if full:
            await admin.execute(
                "CREATE FUNCTION disk_is_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " RAISE EXCEPTION 'could not extend file: No space left on device'"
                " USING ERRCODE = 'disk_full'; END $$;"
                " CREATE TRIGGER disk_is_full AFTER INSERT ON operations"
                " FOR EACH ROW EXECUTE FUNCTION disk_is_full()"
            )
        else:
            await admin.execute("DROP FUNCTION disk_is_full() CASCADE")
    finally:
        await admin.close()


async def test_a_read_only_spell_is_logged_when_it_begins_and_when_it_ends(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await initialize_schema(postgres_url)
    refused_line = "refuses kopilka's work: cannot execute"
    async with Engine(PostgresStore(postgres_url)) as engine:
        opened = await engine.execute(Deposit("Ann", 100, "d", "k-0"))
        assert isinstance(opened, Operation)
        with caplog.at_level(logging.WARNING, logger="kopilka"):
            await _set_read_only(postgres_url, True)
            for attempt in range(1, 4):
                with pytest.raises(Unavailable) as refused:
                    await engine.execute(Deposit("Ann", 100, "d", f"k-{attempt}"))
                assert refused.value.code == "store_unavailable", refused.value
            assert caplog.text.count(refused_line) == 1, caplog.text
            assert AGAIN_LINE not in caplog.text
            # Reads go through all along: they end no spell of refused writes.
            assert (await engine.get_account("main", "Ann")).balance_cents == 100
            assert AGAIN_LINE not in caplog.text

            await _set_read_only(postgres_url, False)
            applied = await engine.execute(Deposit("Ann", 100, "d", "k-4"))
            assert isinstance(applied, Operation)
            assert caplog.text.count(AGAIN_LINE) == 1, caplog.text
            await engine.execute(Deposit("Ann", 100, "d", "k-5"))
            assert caplog.text.count(AGAIN_LINE) == 1, caplog.text

            # A second spell is told as the first was.
            await _set_read_only(postgres_url, True)
            with pytest.raises(Unavailable):
                await engine.execute(Deposit("Ann", 100, "d", "k-6"))
            assert caplog.text.count(refused_line) == 2, caplog.text
        assert (await engine.get_account("main", "Ann")).balance_cents == 300


async def test_replays_during_a_full_disk_end_no_spell(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A retried key is answered from the operation it names, reading and committing
    nothing new: the disk is as full as before. Clients retrying under their keys during
    the spell must not make the log say it ended (and then began again)."""
    await initialize_schema(postgres_url)
    refused_line = "refuses kopilka's work: could not extend file"
    async with Engine(PostgresStore(postgres_url)) as engine:
        first = await engine.execute(Deposit("Ann", 100, "d", "a-0"))
        assert isinstance(first, Operation)
        assert isinstance(await engine.execute(Deposit("Bob", 100, "d", "b-0")), Operation)
        with caplog.at_level(logging.WARNING, logger="kopilka"):
            await _set_disk_full(postgres_url, True)
            for key in ("b-1", "b-2"):
                with pytest.raises(Unavailable) as refused:
                    await engine.execute(Deposit("Bob", 100, "d", key))
                assert refused.value.code == "store_unavailable", refused.value
                assert "DiskFullError" in refused.value.message, refused.value
                again = await engine.execute(Deposit("Ann", 100, "d", "a-0"))
                assert isinstance(again, Operation), again
                assert again.replayed
                assert again.id == first.id
            assert caplog.text.count(refused_line) == 1, caplog.text
            assert AGAIN_LINE not in caplog.text

            await _set_disk_full(postgres_url, False)
            # Ann's account as last seen (her replay read it): written in one statement.
            assert isinstance(await engine.execute(Deposit("Ann", 100, "d", "a-1")), Operation)
            assert caplog.text.count(AGAIN_LINE) == 1, caplog.text
            assert isinstance(await engine.execute(Deposit("Bob", 100, "d", "b-3")), Operation)
            assert caplog.text.count(AGAIN_LINE) == 1, caplog.text
        assert (await engine.get_account("main", "Ann")).balance_cents == 200
        assert (await engine.get_account("main", "Bob")).balance_cents == 200
