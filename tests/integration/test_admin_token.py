"""The home's admin.token: what the server keeps there, and what it replaces."""

from __future__ import annotations

import asyncio
import contextlib
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kopilka.api.admin_token import ensure_admin_token
from kopilka.api.auth import new_token_record
from kopilka.errors import InvalidInput
from kopilka.store import open_store
from kopilka.tokens import token_id_of


async def _held_role(path: Path, db: Path) -> str:
    store = open_store(str(db))
    await store.open()
    try:
        token_id = token_id_of(path.read_text().strip())
        assert token_id is not None
        record = await store.get_token(token_id)
        assert record is not None and not record.revoked
        return record.role
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["bytes that are no text", "a client token"])
async def test_what_is_no_admin_token_is_replaced(tmp_path: Path, kind: str) -> None:
    """A client token copied over the file was kept as "the admin token", and bytes that
    are no text stopped the server with a traceback: both are replaced by a new one."""
    db, path = tmp_path / "kopilka.db", tmp_path / "admin.token"
    store = open_store(str(db))
    await store.open()
    try:
        if kind == "a client token":
            record, secret = new_token_record("client", "Ann")
            await store.put_token(record)
            path.write_text(secret + "\n")
        else:
            path.write_bytes(b"kop_\xff\n")
        assert await ensure_admin_token(store, path)  # a new token was written
        assert not await ensure_admin_token(store, path)  # and is kept from then on
    finally:
        await store.close()
    assert await _held_role(path, db) == "admin"


async def test_a_token_whose_file_cannot_be_put_in_place_is_revoked(tmp_path: Path) -> None:
    """A directory put where the file goes after the start looked (a race): the token
    made is revoked, and no copy of it is left on disk."""
    db, path = tmp_path / "kopilka.db", tmp_path / "admin.token"
    path.mkdir()
    store = open_store(str(db))
    await store.open()
    try:
        with pytest.raises(InvalidInput) as refused:
            await ensure_admin_token(store, path)
        assert refused.value.message == (
            f"cannot write the admin token {path}: a directory is in the way"
        )
        assert [(t.role, t.revoked) for t in await store.list_tokens()] == [("admin", True)]
    finally:
        await store.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".admin")) == [
        ".admin.token.lock"
    ]


async def test_a_home_the_token_cannot_be_kept_in_is_one_line(tmp_path: Path) -> None:
    """A read-only home (a mount, say) was told as the OS's error on a hidden lock file."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / ".admin.token.lock").mkdir()  # in the way of the lock file, even for root
    store = open_store(str(tmp_path / "kopilka.db"))
    await store.open()
    try:
        with pytest.raises(InvalidInput) as refused:
            await ensure_admin_token(store, home / "admin.token")
    finally:
        await store.close()
    assert refused.value.message == f"cannot keep the admin token in {home}: Is a directory"


_STARTING_SERVER = """
import asyncio, sys
from pathlib import Path
from kopilka.api.admin_token import ensure_admin_token, prepare_admin_token
from kopilka.errors import KopilkaError
from kopilka.store import open_store

path, db = Path(sys.argv[1]), sys.argv[2]
try:
    prepare_admin_token(path, db=db)  # as `kopilka serve` prepares
except KopilkaError as refused:
    print(refused.code, flush=True)
    sys.exit(0)
print("prepared", flush=True)
sys.stdin.readline()  # held here, its store not yet opened, until told to go on


async def main() -> str:
    store = open_store(db)
    await store.open()
    try:
        return "written" if await ensure_admin_token(store, path) else "kept"
    except KopilkaError as refused:
        return refused.code
    finally:
        await store.close()


print(asyncio.run(main()), flush=True)
sys.stdin.readline()  # running, as a server runs, until told to stop
"""
# Long enough for a server started to have prepared (imports and all), unless it waits.
_STARTED_SECONDS = 1.5


def _server(path: Path, db: Path | str) -> subprocess.Popen[str]:
    """A server's start: it prepares the home, says "prepared" and waits for a line to
    go on (its store opened, then the token kept or written: it says which), then for
    another to stop."""
    return subprocess.Popen(
        [sys.executable, "-c", _STARTING_SERVER, str(path), str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _prepared(server: subprocess.Popen[str]) -> subprocess.Popen[str]:
    assert server.stdout is not None
    assert server.stdout.readline() == "prepared\n"
    return server


def _let_go(server: subprocess.Popen[str]) -> None:
    """Told to go on, and then to stop, as soon as it reads them."""
    assert server.stdin is not None
    server.stdin.write("go\nstop\n")
    server.stdin.flush()


def _said(server: subprocess.Popen[str]) -> list[str]:
    out, errors = server.communicate(timeout=120)
    assert server.returncode == 0, errors
    return out.split()


@contextlib.contextmanager
def _running(path: Path, db: Path) -> Iterator[None]:
    """A server of `db` started in the home, its token written, running till the end."""
    running = _prepared(_server(path, db))
    assert running.stdin is not None and running.stdout is not None
    running.stdin.write("go\n")  # and runs on, till told to stop
    running.stdin.flush()
    try:
        assert running.stdout.readline() == "written\n"
        yield
    finally:
        running.communicate("stop\n", timeout=60)


async def _made(db: Path) -> None:
    store = open_store(str(db))
    await store.open()
    await store.close()


def _run_through(server: subprocess.Popen[str]) -> list[str]:
    """What a server said, told to go on and then to stop."""
    _let_go(server)
    return _said(server)


def _started_together(path: Path, db: Path, count: int) -> list[list[str]]:
    """`count` servers of one database, the first prepared, the others started while it
    waits to open its store, then all let go on."""
    first = _prepared(_server(path, db))
    others = [_server(path, db) for _ in range(count - 1)]
    time.sleep(_STARTED_SECONDS)
    servers = [first, *others]
    for server in servers:  # each reads it in its turn, in whatever order they come
        _let_go(server)
    return [_said(server) for server in servers]


@pytest.mark.parametrize("home", ["fresh", "another database's token in it"])
def test_servers_of_one_database_started_together_all_start(tmp_path: Path, home: str) -> None:
    """Started at the same moment, on a fresh home or on one that holds another
    database's token (its server stopped: the operator moved to a new database), each
    held its lock on the token while it found none it could keep, and those that could
    not take that lock alone were refused (`home_in_use`, "another kopilka server uses
    HOME"), though all served one database."""
    path, ours, theirs = tmp_path / "home" / "admin.token", tmp_path / "a.db", tmp_path / "b.db"
    if home != "fresh":
        assert _run_through(_prepared(_server(path, theirs))) == ["written"]
    said = _started_together(path, ours, 3)
    assert sorted(words[-1] for words in said) == ["kept", "kept", "written"], said
    assert asyncio.run(_held_role(path, ours)) == "admin"


def test_a_server_still_starting_keeps_its_token_from_another_database_s(
    tmp_path: Path,
) -> None:
    """A server of the token's database, its store still opening (a slow PostgreSQL,
    say), holds the home from its start: one of another database started meanwhile is
    refused, and the token is kept for the first."""
    path, ours, theirs = tmp_path / "home" / "admin.token", tmp_path / "a.db", tmp_path / "b.db"
    asyncio.run(_made(theirs))  # there already: only opening it tells it is another's
    assert _run_through(_prepared(_server(path, ours))) == ["written"]
    token = path.read_text()
    starting = _prepared(_server(path, ours))
    other = _server(path, theirs)
    time.sleep(_STARTED_SECONDS)
    assert other.stdout is not None
    # Not prepared: it waits for its turn while the first, its store not yet opened, holds it.
    assert select.select([other.stdout], [], [], 0)[0] == []
    _let_go(other)
    assert starting.stdin is not None and starting.stdout is not None
    starting.stdin.write("go\n")  # and runs on, till the other is done
    starting.stdin.flush()
    try:
        assert starting.stdout.readline() == "kept\n"
        assert _said(other) == ["prepared", "home_in_use"]
    finally:
        starting.communicate("stop\n", timeout=60)
    assert path.read_text() == token


def test_a_deleted_token_is_not_written_anew_for_another_database_beside_a_server(
    tmp_path: Path,
) -> None:
    """Its file deleted while a server runs: a server of another database is refused
    rather than write its own token there, where the running server's shells look."""
    path, ours, theirs = tmp_path / "home" / "admin.token", tmp_path / "a.db", tmp_path / "b.db"
    asyncio.run(_made(theirs))
    with _running(path, ours):
        path.unlink()
        assert _run_through(_prepared(_server(path, theirs))) == ["home_in_use"]
        assert not path.exists()


@pytest.mark.parametrize("theirs", ["b.db", "memory:"])
def test_a_new_database_of_a_server_beside_a_running_one_is_not_made(
    tmp_path: Path, theirs: str
) -> None:
    """Refused once its store was open, a server of a database not there yet (a mistyped
    path, say) left it made, empty: it is refused before, with nothing made."""
    path, ours = tmp_path / "home" / "admin.token", tmp_path / "a.db"
    with _running(path, ours):
        new = theirs if theirs == "memory:" else tmp_path / theirs
        assert _said(_server(path, new)) == ["home_in_use"]  # not even prepared
        assert not list(tmp_path.glob("b.db*"))
