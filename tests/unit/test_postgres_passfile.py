"""Which password file the driver skipped, by the driver's own rules for when it reads
one (asyncpg.connect_utils): real files, their modes as set here."""

from __future__ import annotations

from pathlib import Path

import pytest

from kopilka.store.postgres_passfile import skipped_password_file

OTHERS_MAY_READ = (
    "the password file named by ~/.pgpass was not read: others may read or write it"
    " (chmod 600 makes it the owner's alone)"
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    pgpass = tmp_path / ".pgpass"
    pgpass.write_text("*:*:*:app:pw\n")
    pgpass.chmod(0o644)
    return tmp_path


@pytest.mark.usefixtures("home")
def test_the_file_is_named_only_where_the_driver_would_have_read_it() -> None:
    url = "postgresql://app@127.0.0.1:1/db"
    assert skipped_password_file(url, {}) == OTHERS_MAY_READ
    # An empty password in the URL is none: the driver reads the file.
    assert skipped_password_file("postgresql://app:@127.0.0.1:1/db", {}) == OTHERS_MAY_READ
    # A password given otherwise: no file read, none skipped.
    assert skipped_password_file("postgresql://app:pw@127.0.0.1:1/db", {}) is None
    assert skipped_password_file(url + "?password=pw", {}) is None
    # PGPASSWORD set, even empty, is the password the driver takes.
    assert skipped_password_file(url, {"PGPASSWORD": ""}) is None


def test_a_private_file_or_none_at_all_is_no_skipped_file(home: Path) -> None:
    url = "postgresql://app@127.0.0.1:1/db"
    (home / ".pgpass").chmod(0o600)
    assert skipped_password_file(url, {}) is None
    (home / ".pgpass").unlink()
    assert skipped_password_file(url, {}) is None
    (home / ".pgpass").mkdir()
    assert skipped_password_file(url, {}) == (
        "the password file named by ~/.pgpass was not read: it is not a plain file"
    )


@pytest.mark.usefixtures("home")
def test_the_url_s_passfile_comes_before_pgpassfile_and_pgpassfile_before_the_home(
    tmp_path: Path,
) -> None:
    url = "postgresql://app@127.0.0.1:1/db"
    private = tmp_path / "private"
    private.write_text("*:*:*:app:pw\n")
    private.chmod(0o600)
    assert skipped_password_file(url, {"PGPASSFILE": str(private)}) is None
    assert skipped_password_file(f"{url}?passfile={private}", {}) is None
    shared = tmp_path / ".pgpass"
    told = skipped_password_file(f"{url}?passfile={shared}", {"PGPASSFILE": str(private)})
    assert told is not None and told.startswith("the password file named by the URL's passfile")
    # Set empty, PGPASSFILE names "" (the working directory, no plain file): ~/.pgpass,
    # shared as it is, is not the one the driver skipped.
    assert skipped_password_file(url, {"PGPASSFILE": ""}) == (
        "the password file named by PGPASSFILE was not read: it is not a plain file"
    )


def test_a_user_without_a_home_has_no_pgpass_to_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HOME and a user id the system does not name (a container's): Path.home()
    raises, and the note is asked for while an error is being told."""

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert skipped_password_file("postgresql://app@127.0.0.1:1/db", {}) is None
