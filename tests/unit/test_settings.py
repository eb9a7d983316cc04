"""Settings: flags over environment over file over defaults; passwords never shown."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
from tests.file_modes import (
    a_directory_anyone_may_enter,
    a_user_with_a_group_of_their_own,
    run_python_as,
)

import kopilka
from kopilka.errors import InvalidInput
from kopilka.home import home
from kopilka.redaction import hide_secrets, quoted, redact_text, redact_url
from kopilka.settings import DEFAULT_HOST, DEFAULT_PORT, load_settings, unread_variable_warnings
from kopilka.store import open_store, sqlite_path
from kopilka.urls import on_this_machine


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A kopilka.toml in the working directory would be read: work somewhere empty.
    monkeypatch.chdir(tmp_path)


def test_defaults_live_under_home(tmp_path: Path) -> None:
    settings = load_settings(environ={"KOPILKA_HOME": str(tmp_path / "home")})
    assert settings.home == tmp_path / "home"
    assert settings.db == str(tmp_path / "home" / "kopilka.db")
    assert (settings.host, settings.port, settings.workers) == (DEFAULT_HOST, DEFAULT_PORT, 1)
    assert settings.ledger == "main"
    assert settings.url is None


def test_the_settings_repr_shows_no_database_password(tmp_path: Path) -> None:
    """Handed to every worker whole, the settings may meet a traceback or a log line."""
    url = "postgresql://app:S3cret-pw@db.example:5432/bank"
    settings = load_settings(flags={"db": url}, environ={"KOPILKA_HOME": str(tmp_path)})
    assert settings.db == url
    assert "S3cret" not in repr(settings)


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "kopilka.toml"
    config.write_text('port = 7000\nhost = "0.0.0.0"\nledger = "from-file"\nworkers = 3\n')
    environ = {"KOPILKA_HOME": str(tmp_path), "KOPILKA_PORT": "7100", "KOPILKA_LEDGER": "env"}
    settings = load_settings(flags={"port": 7200, "host": None}, environ=environ, serving=True)
    assert settings.port == 7200  # flag
    assert settings.host == "0.0.0.0"  # file, since the flag was not given
    assert settings.workers == 3
    assert load_settings(environ=environ).ledger == "env"  # environment


def test_config_file_in_home_and_explicit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "kopilka.toml").write_text('ledger = "home-ledger"\n')
    other = tmp_path / "other.toml"
    other.write_text('ledger = "explicit"\n')
    assert load_settings(environ={"KOPILKA_HOME": str(home)}).ledger == "home-ledger"
    explicit = load_settings(environ={"KOPILKA_HOME": str(home)}, config_path=other)
    assert explicit.ledger == "explicit"


def test_a_config_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Some editors begin a UTF-8 file with U+FEFF; it had been refused as an invalid
    statement at line 1, column 1, in a file that looked right."""
    config = tmp_path / "kopilka.toml"
    config.write_bytes(b'\xef\xbb\xbfledger = "bom"\n')
    assert load_settings(environ={"KOPILKA_HOME": str(tmp_path)}).ledger == "bom"


def test_the_working_directory_s_file_adds_to_the_home_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project's file that names only its ledger keeps the home's database: it had
    been read alone, and a deposit went into a new ledger at the home's default path."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "kopilka.toml").write_text('db = "books.db"\nledger = "home-ledger"\n')
    project = tmp_path / "project"
    project.mkdir()
    (project / "kopilka.toml").write_text('ledger = "project"\nworkers = 99\n')
    environ = {"KOPILKA_HOME": str(home)}
    monkeypatch.chdir(project)
    settings = load_settings(environ=environ)
    assert (settings.db, settings.ledger) == (str(home / "books.db"), "project")
    with pytest.raises(InvalidInput) as caught:  # a bad value names the file it is in
        load_settings(environ=environ, serving=True)
    assert caught.value.message == f"workers must be 1 to 64, not 99 ({project / 'kopilka.toml'})"
    # The nearer file's db or url wins over the home's; given in the home, url is beaten.
    (project / "kopilka.toml").write_text('db = "mine.db"\n')
    assert load_settings(environ=environ).db == str(project / "mine.db")
    (project / "kopilka.toml").write_text('url = "http://127.0.0.1:9"\n')
    assert load_settings(environ=environ).url == "http://127.0.0.1:9"
    (home / "kopilka.toml").write_text('url = "http://127.0.0.1:9"\n')
    (project / "kopilka.toml").write_text('db = "mine.db"\n')
    beaten = load_settings(environ=environ)
    assert beaten.url is None
    assert beaten.url_overridden == (
        f"the db in {project / 'kopilka.toml'} overrides the url in {home / 'kopilka.toml'}"
    )
    # Run in the home itself, its file is read once.
    monkeypatch.chdir(home)
    assert load_settings(environ=environ).url == "http://127.0.0.1:9"


def test_a_config_file_others_may_write_is_refused(tmp_path: Path) -> None:
    """It says which server gets the token: in a shared directory, someone else's."""
    config = tmp_path / "kopilka.toml"
    config.write_text('url = "http://127.0.0.1:1"\n')
    config.chmod(0o646)
    environ = {"KOPILKA_HOME": str(tmp_path / "home")}
    for read in (lambda: load_settings(environ=environ), lambda: load_settings(config_path=config)):
        with pytest.raises(InvalidInput) as refused:
            read()
        assert refused.value.message == (
            f"{config} may be written by other users (mode 646): `chmod go-w` it"
        )
    config.chmod(0o644)
    assert load_settings(environ=environ).url == "http://127.0.0.1:1"
    if os.geteuid() == 0:  # only root may give a file to a group it is not in
        config.chmod(0o664)
        os.chown(config, 0, 65534)  # a group of others
        with pytest.raises(InvalidInput, match="may be written by other users"):
            load_settings(environ=environ)
        os.chown(config, 0, os.getegid())  # the owner's own group, as umask 002 leaves it
        if not _others_in_group(os.getegid()):
            assert load_settings(environ=environ).url == "http://127.0.0.1:1"


def _others_in_group(gid: int) -> bool:
    import grp
    import pwd

    owner = pwd.getpwuid(os.geteuid()).pw_name
    listed = set(grp.getgrgid(gid).gr_mem) - {owner}
    return bool(listed) or any(
        user.pw_gid == gid and user.pw_uid != os.geteuid() for user in pwd.getpwall()
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_config_file_of_another_user_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "kopilka.toml"
    config.write_text('url = "http://127.0.0.1:1"\n')
    os.chown(config, 65534, 65534)  # nobody's
    with pytest.raises(InvalidInput) as refused:
        load_settings(environ={"KOPILKA_HOME": str(tmp_path / "home")})
    assert refused.value.message == (
        f"{config} belongs to another user, who would choose where your commands and token"
        " go: remove it, or run elsewhere"
    )


# The settings as the user running it reads them: the ledger, or the refusal's words.
_READ_SETTINGS = """
import sys
from pathlib import Path
from kopilka.errors import KopilkaError
from kopilka.home import make_home
from kopilka.settings import load_settings
try:
    make_home(Path(sys.argv[1]))
    print(load_settings(environ={"KOPILKA_HOME": sys.argv[1]}, config_path=sys.argv[2]).ledger)
except KopilkaError as error:
    print(error.message)
"""


def test_a_config_file_of_roots_for_the_users_own_group_is_read() -> None:
    """`install -o root -g kopilka -m 0660 kopilka.toml`, kopilka the service user's own
    group: root and that user alone may write it. It was refused as one others may write,
    the group being no group of the file's owner's (root's) own. A home of the user's in
    their own group was taken, and still is."""
    user = a_user_with_a_group_of_their_own()
    with a_directory_anyone_may_enter() as etc:
        config = etc / "kopilka.toml"
        config.write_text('ledger = "from-file"\n')
        os.chown(config, 0, user.pw_gid)
        config.chmod(0o660)
        home = etc / "home"
        home.mkdir()
        os.chown(home, user.pw_uid, user.pw_gid)
        home.chmod(0o770)
        read = run_python_as(user, _READ_SETTINGS, str(home), str(config), cwd=etc)
        assert (read.returncode, read.stdout, read.stderr) == (0, "from-file\n", "")
        config.chmod(0o662)  # anyone may write it
        read = run_python_as(user, _READ_SETTINGS, str(home), str(config), cwd=etc)
        assert (
            read.stdout == f"{config} may be written by other users (mode 662): `chmod go-w` it\n"
        )


def test_missing_or_broken_config_file_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_settings(environ={"KOPILKA_HOME": str(tmp_path)}, config_path=tmp_path / "no.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("port = \n")
    with pytest.raises(InvalidInput) as info:
        load_settings(environ={"KOPILKA_HOME": str(tmp_path)}, config_path=broken)
    assert info.value.code == "invalid_setting"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("db = 5", "db must be a string, not 5"),
        ("ledger = 7", "ledger must be a string, not 7"),
        ('port = "8889"', "port must be a whole number, not the text '8889'"),
        ('port = "x"', "port must be a whole number, not 'x'"),
        ("port = 8889.0", "port must be a whole number, not 8889.0"),
        # As the file writes it, not as Python does (True, datetime.date(...)).
        ("workers = true", "workers must be a whole number, not true"),
        ("db = [false, 1979-05-27]", "db must be a string, not [false, 1979-05-27]"),
        ("port = 07:32:00", "port must be a whole number, not 07:32:00"),
        ("body_seconds = [1]", "body_seconds must be a number, not [1]"),
        # A value is quoted masked, as everywhere.
        (
            'db = ["postgresql://kop:Secret@db/x"]',
            "db must be a string, not ['postgresql://kop:***@db/x']",
        ),
        # A table's keys may say which of its values is a secret: it is not shown.
        ('db = {password = "Hunter2"}', "db must be a string, not a table"),
        ('db = [[{password = "Hunter2"}]]', "db must be a string, not a list holding a table"),
        ("prot = 8889", "unknown setting 'prot'"),
        ("[server]\nport = 1", "unknown setting 'server'"),
    ],
)
def test_a_setting_of_the_wrong_kind_in_the_file_is_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    """A slip in kopilka.toml is an error, not a silent default (nor a database named 5)."""
    config = tmp_path / "kopilka.toml"
    config.write_text(text + "\n")
    with pytest.raises(InvalidInput) as info:
        load_settings(environ={"KOPILKA_HOME": str(tmp_path)}, config_path=config)
    assert info.value.code == "invalid_setting"
    if message.startswith("unknown setting"):
        assert info.value.message.startswith(f"{config}: {message} (known: db, url, host, port")
    else:  # as a value out of range is told: the file named after it, whole
        assert info.value.message == f"{message} ({config})"


def test_a_value_of_the_wrong_kind_names_its_file_as_one_out_of_range_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The working directory's file had been named as found (`kopilka.toml: workers
    must be ...`), before the value, where a value out of range names its whole path
    after it."""
    monkeypatch.chdir(tmp_path)
    environ = {"KOPILKA_HOME": str(tmp_path / "home")}
    (tmp_path / "kopilka.toml").write_text('workers = "2"\n')
    with pytest.raises(InvalidInput) as kind:
        load_settings(environ=environ, serving=True)
    (tmp_path / "kopilka.toml").write_text("workers = 0\n")
    with pytest.raises(InvalidInput) as out_of_range:
        load_settings(environ=environ, serving=True)
    named = f" ({tmp_path / 'kopilka.toml'})"
    assert kind.value.message == "workers must be a whole number, not the text '2'" + named
    assert out_of_range.value.message == "workers must be 1 to 64, not 0" + named
    # An unknown setting, or a file that is no TOML, names it whole too.
    for text, said in (("wrokers = 2\n", "unknown setting 'wrokers'"), ("workers =\n", "")):
        (tmp_path / "kopilka.toml").write_text(text)
        with pytest.raises(InvalidInput) as refused:
            load_settings(environ=environ, serving=True)
        assert refused.value.message.startswith(f"{tmp_path / 'kopilka.toml'}: {said}")


def test_every_setting_of_the_right_kind_in_the_file_is_taken(tmp_path: Path) -> None:
    config = tmp_path / "kopilka.toml"
    config.write_text(
        'db = "books.db"\nurl = "http://127.0.0.1:9000"\nhost = "0.0.0.0"\nport = 9000\n'
        'workers = 2\nledger = "side"\nconnections_per_client = 8\nheader_seconds = 5\n'
        "body_seconds = 2.5\nwrite_seconds = 60\nsandbox_idle_seconds = 30\n"
    )
    settings = load_settings(environ={"KOPILKA_HOME": str(tmp_path)}, config_path=config)
    assert settings.ledger == "side"
    settings = load_settings(
        environ={"KOPILKA_HOME": str(tmp_path)}, config_path=config, serving=True
    )
    assert (settings.port, settings.workers) == (9000, 2)
    assert (settings.header_seconds, settings.body_seconds, settings.write_seconds) == (
        5,
        2.5,
        60,
    )
    assert settings.sandbox_idle_seconds == 30


@pytest.mark.parametrize(
    "environ",
    [
        {"KOPILKA_PORT": "0"},
        {"KOPILKA_PORT": "70000"},
        {"KOPILKA_PORT": "http"},
        {"KOPILKA_WORKERS": "0"},
        {"KOPILKA_CONNECTIONS_PER_CLIENT": "0"},
        {"KOPILKA_CONNECTIONS_PER_CLIENT": "many"},
        {"KOPILKA_HEADER_SECONDS": "0"},
        {"KOPILKA_HEADER_SECONDS": "nan"},
        {"KOPILKA_BODY_SECONDS": "0"},
        {"KOPILKA_BODY_SECONDS": "soon"},
        {"KOPILKA_WRITE_SECONDS": "0"},
        {"KOPILKA_WRITE_SECONDS": "3601"},
        {"KOPILKA_WRITE_SECONDS": "later"},
        {"KOPILKA_SANDBOX_IDLE_SECONDS": "abc"},
        {"KOPILKA_SANDBOX_IDLE_SECONDS": "-5"},
        {"KOPILKA_SANDBOX_IDLE_SECONDS": "0"},
        {"KOPILKA_SANDBOX_IDLE_SECONDS": "0.5"},
        {"KOPILKA_SANDBOX_IDLE_SECONDS": "nan"},
        {"KOPILKA_SANDBOX_IDLE_SECONDS": "inf"},
    ],
)
def test_bad_numbers_refused(tmp_path: Path, environ: dict[str, str]) -> None:
    with pytest.raises(InvalidInput) as info:
        load_settings(environ={"KOPILKA_HOME": str(tmp_path), **environ}, serving=True)
    assert info.value.code == "invalid_setting"
    # Only a server reads them: Kubernetes sets KOPILKA_PORT=tcp://... for a Service named
    # kopilka, beside every program, a client's too.
    settings = load_settings(environ={"KOPILKA_HOME": str(tmp_path), **environ})
    assert (settings.port, settings.workers) == (DEFAULT_PORT, 1)


def test_a_bad_number_is_masked_before_it_is_cut_short(tmp_path: Path) -> None:
    url = "postgresql://kop:VeryLongSecretPassword123@127.0.0.1/x"
    with pytest.raises(InvalidInput) as info:
        load_settings(environ={"KOPILKA_HOME": str(tmp_path), "KOPILKA_WORKERS": url}, serving=True)
    assert (
        info.value.message
        == "workers must be a whole number, not 'postgresql://kop:***@127.0.0.1/x'"
        " (KOPILKA_WORKERS)"
    )
    assert "Very" not in info.value.message


@pytest.mark.parametrize("url", ["postgresql://app:S3cret!@db:5432/ledger", "file://x/y"])
def test_a_home_given_as_a_url_is_refused_unquoted(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made into directories, the password was a path that messages and logs showed."""
    monkeypatch.chdir(tmp_path)
    for call in (lambda: load_settings(environ={"KOPILKA_HOME": url}), home):
        monkeypatch.setenv("KOPILKA_HOME", url)
        with pytest.raises(InvalidInput) as info:
            call()
        assert info.value.message == (
            "KOPILKA_HOME is a URL; it names a directory (a database's URL goes in KOPILKA_DB)"
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spaced", ["{home} ", " {home}", "{home}\t"])
def test_a_home_with_a_space_at_an_end_is_refused(
    tmp_path: Path, spaced: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken as given, it made a directory beside the home holding a new, empty ledger."""
    given = spaced.format(home=tmp_path / "home")
    for call in (lambda: load_settings(environ={"KOPILKA_HOME": given}), home):
        monkeypatch.setenv("KOPILKA_HOME", given)
        with pytest.raises(InvalidInput) as info:
            call()
        assert info.value.message == (
            f"KOPILKA_HOME {given!r} begins or ends with a space: give it without"
        )
    assert list(tmp_path.iterdir()) == []


def test_password_file_joins_postgres_url(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("p@ss:w/rd\n# rotated 2026-11-01\n")
    settings = load_settings(
        flags={"db": "postgresql://kopilka@db.example:5433/bank"},
        environ={"KOPILKA_HOME": str(tmp_path), "KOPILKA_DB_PASSWORD_FILE": str(secret)},
    )
    assert settings.db == "postgresql://kopilka:p%40ss%3Aw%2Frd@db.example:5433/bank"
    assert "p%40ss" not in redact_url(settings.db)


def test_a_config_and_a_password_file_may_begin_with_a_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a database's path and the home may: no shell expands `--config=~/k.toml`, nor
    a unit's Environment= line."""
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setenv("HOME", str(user))
    (user / "k.toml").write_text('ledger = "from-tilde"\n')
    (user / "pw").write_text("s3cret\n")
    environ = {"KOPILKA_HOME": str(tmp_path), "KOPILKA_DB_PASSWORD_FILE": "~/pw"}
    flags = {"db": "postgresql://kopilka@db.example/bank"}
    for settings in (
        load_settings(flags=flags, environ=environ, config_path="~/k.toml"),
        load_settings(flags=flags, environ={**environ, "KOPILKA_CONFIG": "~/k.toml"}),
    ):
        assert (settings.ledger, settings.db) == (
            "from-tilde",
            "postgresql://kopilka:s3cret@db.example/bank",
        )


def test_dev_null_for_a_config_reads_no_file(tmp_path: Path) -> None:
    """The way to read neither kopilka.toml: /dev/null may be written by anyone, but what
    is written there is never read."""
    (tmp_path / "kopilka.toml").write_text('ledger = "home"\n')
    settings = load_settings(environ={"KOPILKA_HOME": str(tmp_path)}, config_path="/dev/null")
    assert settings.ledger == "main"


def test_password_file_touches_a_postgresql_url_only(tmp_path: Path) -> None:
    """A SQLite file whose name begins with "postgres" took the password into its path
    (and the path, password and all, was shown back as the database)."""
    secret = tmp_path / "password"
    secret.write_text(" hunter2 \n")
    environ = {"KOPILKA_HOME": str(tmp_path), "KOPILKA_DB_PASSWORD_FILE": str(secret)}
    for db in ("postgres_books.db", str(tmp_path / "postgresql.db")):
        settings = load_settings(flags={"db": db}, environ=environ)
        assert "hunter2" not in settings.db and settings.db.endswith(Path(db).name)
    # The line as it is: spaces at its ends are the password's own.
    url = load_settings(flags={"db": "postgresql://kop@h/db"}, environ=environ).db
    assert url == "postgresql://kop:%20hunter2%20@h/db"


def test_redact_url() -> None:
    assert redact_url("postgresql://u:secret@host/db") == "postgresql://u:***@host/db"
    assert redact_url("postgresql://u@host/db") == "postgresql://u@host/db"
    assert redact_url("/var/lib/kopilka.db") == "/var/lib/kopilka.db"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # A password given as a query parameter, any case, among other parameters.
        (
            "postgresql://kop@127.0.0.1:5432/db?password=S3cret",
            "postgresql://kop@127.0.0.1:5432/db?password=***",
        ),
        (
            "postgresql://kop@h/db?sslmode=require&PassWord=S3cret&application_name=x",
            "postgresql://kop@h/db?sslmode=require&PassWord=***&application_name=x",
        ),
        (
            "postgres://kop@h/db?sslpassword=S3cret&passfile=/home/S3cret",
            "postgres://kop@h/db?sslpassword=***&passfile=***",
        ),
        # Unescaped '&' or '#' inside a query password: its tail is hidden too.
        ("postgresql://kop@h/db?password=S3&cret#x", "postgresql://kop@h/db?password=***"),
        # Unescaped '/', '#', '?' or '@' inside the userinfo password.
        ("postgresql://kop:S3cret/Pw@127.0.0.1:5432/l", "postgresql://kop:***@127.0.0.1:5432/l"),
        ("postgresql://kop:S3#cret@h/l", "postgresql://kop:***@h/l"),
        (
            "postgresql://kop:S3?cret@h/l?sslmode=disable",
            "postgresql://kop:***@h/l?sslmode=disable",
        ),
        ("postgresql://kop:S3@cret@[::1]:5432/l", "postgresql://kop:***@[::1]:5432/l"),
        ("postgresql://kop@h1:5432,h2:5433/db", "postgresql://kop@h1:5432,h2:5433/db"),
        ("memory:", "memory:"),
        # A name with percent-escaped letters, which the driver reads as the name.
        (
            "postgresql://kop@h/db?pass%77ord=S3cr%23t&x=1&%70ASSWORD=S3x",
            "postgresql://kop@h/db?pass%77ord=***&x=1&%70ASSWORD=***",
        ),
        # A secret runs to the next name that begins with a letter, not "&9=".
        ("postgresql://kop@h/db?password=Xk&9=aQ7zS3", "postgresql://kop@h/db?password=***"),
    ],
)
def test_redact_url_hides_every_written_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "S3" not in redact_url(url)


def test_redact_text_hides_a_password_a_driver_echoes() -> None:
    url = "postgresql://kop:S3cret/Pw@127.0.0.1:5432/l?password=Qu%26ery"
    # asyncpg read 'S3cret' as the port: its error quotes that piece only.
    echoed = "invalid literal for int() with base 10: 'S3cret'; S3cret/Pw; Qu&ery; Qu%26ery"
    assert (
        redact_text(echoed, url) == "invalid literal for int() with base 10: '***'; ***; ***; ***"
    )
    assert redact_text("nothing secret", "postgresql://kop@h/db") == "nothing secret"


def test_a_missing_password_file_is_a_clear_setting_error(tmp_path: Path) -> None:
    for path in (tmp_path / "nonexistent", tmp_path):  # missing, and a directory
        with pytest.raises(InvalidInput) as info:
            load_settings(
                flags={"db": "postgresql://kop@db.example:5432/bank"},
                environ={"KOPILKA_HOME": str(tmp_path), "KOPILKA_DB_PASSWORD_FILE": str(path)},
            )
        assert info.value.code == "invalid_setting"
        assert f"KOPILKA_DB_PASSWORD_FILE {path}" in info.value.message


@pytest.mark.parametrize(
    ("written", "said"), [("", "is empty"), ("\nsecond\n", "has an empty first line")]
)
def test_a_password_file_with_no_password_on_its_first_line_is_refused(
    tmp_path: Path, written: str, said: str
) -> None:
    """Read as an empty password, it was sent, and the refusal that came back said the
    password was wrong."""
    path = tmp_path / "password"
    path.write_text(written)
    with pytest.raises(InvalidInput) as info:
        load_settings(
            flags={"db": "postgresql://kop@db.example:5432/bank"},
            environ={"KOPILKA_HOME": str(tmp_path), "KOPILKA_DB_PASSWORD_FILE": str(path)},
        )
    assert info.value.message == (
        f"KOPILKA_DB_PASSWORD_FILE {path} {said}: the password is its first line"
    )


@pytest.mark.parametrize(
    ("url", "joined"),
    [
        ("postgresql://kop@[::1]:5432/db", "postgresql://kop:p%40ss@[::1]:5432/db"),
        ("postgresql://kop@[::1]/db", "postgresql://kop:p%40ss@[::1]/db"),
        (
            "postgresql://k%40p:old@h1:5432,h2:5433/db",
            "postgresql://k%40p:p%40ss@h1:5432,h2:5433/db",
        ),
        ("postgresql://h/db?sslmode=disable", "postgresql://:p%40ss@h/db?sslmode=disable"),
    ],
)
def test_password_file_keeps_the_host_as_written(tmp_path: Path, url: str, joined: str) -> None:
    secret = tmp_path / "password"
    secret.write_text("p@ss\n")
    settings = load_settings(
        flags={"db": url},
        environ={"KOPILKA_HOME": str(tmp_path), "KOPILKA_DB_PASSWORD_FILE": str(secret)},
    )
    assert settings.db == joined


def test_connection_bounds_come_from_settings(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"KOPILKA_HOME": str(tmp_path), "KOPILKA_CONNECTIONS_PER_CLIENT": "8"},
        serving=True,
    )
    assert (settings.connections_per_client, settings.header_seconds) == (8, 10.0)
    assert (settings.body_seconds, settings.write_seconds) == (10.0, 30.0)
    flagged = load_settings(
        {"connections_per_client": 16, "header_seconds": 2.5, "body_seconds": 4},
        environ={"KOPILKA_HOME": str(tmp_path), "KOPILKA_CONNECTIONS_PER_CLIENT": "8"},
        serving=True,
    )
    assert (flagged.connections_per_client, flagged.header_seconds) == (16, 2.5)
    assert flagged.body_seconds == 4.0
    (tmp_path / "kopilka.toml").write_text("write_seconds = 5\n")
    from_file = load_settings(environ={"KOPILKA_HOME": str(tmp_path)}, serving=True)
    assert from_file.write_seconds == 5.0
    from_environment = load_settings(
        environ={"KOPILKA_HOME": str(tmp_path), "KOPILKA_WRITE_SECONDS": "2.5"},
        serving=True,
    )
    assert from_environment.write_seconds == 2.5
    flagged = load_settings(
        {"write_seconds": 1}, environ={"KOPILKA_HOME": str(tmp_path)}, serving=True
    )
    assert flagged.write_seconds == 1.0


def test_a_database_given_at_a_stronger_place_than_a_server_url_wins(tmp_path: Path) -> None:
    (tmp_path / "kopilka.toml").write_text('url = "http://127.0.0.1:1"\n')
    base = {"KOPILKA_HOME": str(tmp_path)}
    assert load_settings(environ=base).url == "http://127.0.0.1:1"  # the file alone
    from_environment = load_settings(environ={**base, "KOPILKA_DB": "memory:"})
    assert (from_environment.db, from_environment.url) == ("memory:", None)
    from_flag = load_settings(flags={"db": "memory:"}, environ=base)
    assert (from_flag.db, from_flag.url) == ("memory:", None)
    # Both at one place: the server, as before.
    both = load_settings(environ={**base, "KOPILKA_DB": "memory:", "KOPILKA_URL": "http://h:2"})
    assert both.url == "http://h:2"
    assert load_settings(flags={"url": "http://h:3"}, environ={**base, "KOPILKA_DB": "x"}).url == (
        "http://h:3"
    )


def test_a_piece_of_a_password_the_driver_took_for_a_port_of_several_hosts_is_masked() -> None:
    # asyncpg splits the host part at a "," and reads the piece before it as a port.
    url = "postgresql://app:Kx9,mq/7Lp@127.0.0.1:5432/l2"
    echoed = "ValueError: invalid literal for int() with base 10: 'Kx9'"
    assert redact_text(echoed, url) == "ValueError: invalid literal for int() with base 10: '***'"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://owner:pa@SECRET.example@127.0.0.1:5432/ledger",
        "postgresql://owner:pa@SECRET/x@127.0.0.1:5432/ledger",
        "postgres://@@h/db",
    ],
)
def test_a_database_url_with_an_at_in_its_user_part_is_refused_before_any_lookup(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        open_store(url)
    assert refused.value.code == "unsupported_database"
    assert "%40" in refused.value.message and "SECRET" not in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://owner:pa%40SECRET@127.0.0.1:5432/ledger",
        "postgresql://owner@h/db?application_name=me@work",
        "postgresql://h/db",
    ],
)
def test_an_at_written_as_the_url_allows_is_taken(url: str) -> None:
    assert open_store(url) is not None


def test_a_piece_of_a_password_is_masked_only_where_it_stands_alone() -> None:
    url = "postgresql://kop:S3cr3t%2Fp%40ss%23word@h/db"
    text = "InvalidPasswordError: password authentication failed; echoed: ss, word"
    assert redact_text(text, url) == (
        "InvalidPasswordError: password authentication failed; echoed: ***, ***"
    )
    assert redact_text("S3cr3t/p@ss#word", url) == "***"


def test_a_sqlite_path_is_read_as_a_person_means_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`~` is the user's home wherever it is written, and a relative path in a
    kopilka.toml is relative to that file: run from any directory, one book."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "kopilka.toml").write_text('db = "books.db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    environ = {"KOPILKA_HOME": str(home)}
    assert load_settings(environ=environ).db == str(home / "books.db")
    tilde = load_settings(flags={"db": "~/mine.db"}, environ=environ).db
    assert tilde == str(tmp_path / "user" / "mine.db")
    from_env = load_settings(environ={**environ, "KOPILKA_DB": "~/env.db"}).db
    assert from_env == str(tmp_path / "user" / "env.db")
    # Given on the command line or in the environment, a relative path is the shell's.
    assert load_settings(flags={"db": "here.db"}, environ=environ).db == "here.db"
    for url in ("memory:", ":memory:", "postgresql://u@h/db", "sqlite:rel.db"):
        assert load_settings(flags={"db": url}, environ=environ).db == url
    # In the file: no file for memory, and a sqlite: path is the file's too.
    for written, meant in (
        (":memory:", ":memory:"),
        ("sqlite:books2.db", f"sqlite:{home / 'books2.db'}"),
        ("sqlite:~/t.db", f"sqlite:{tmp_path / 'user' / 't.db'}"),
    ):
        (home / "kopilka.toml").write_text(f'db = "{written}"\n')
        assert load_settings(environ=environ).db == meant
    with pytest.raises(InvalidInput) as unknown_user:
        load_settings(flags={"db": "~no_such_user_here/b.db"}, environ=environ)
    assert "no home directory" in unknown_user.value.message
    kopilka_home = load_settings(environ={"KOPILKA_HOME": "~/kh"}).home
    assert kopilka_home == tmp_path / "user" / "kh"


def test_a_config_file_given_empty_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        load_settings(environ={"KOPILKA_HOME": str(tmp_path)}, config_path="")
    assert refused.value.message == "the config file may not be empty: give a path"


def test_a_setting_that_is_no_number_is_named_in_its_refusal(tmp_path: Path) -> None:
    environ = {"KOPILKA_HOME": str(tmp_path)}
    for name, value, said in (
        ("WORKERS", "abc", "workers must be a whole number, not 'abc'"),
        ("WORKERS", "1.9", "workers must be a whole number, not '1.9'"),
        ("PORT", "\uff12\uff10", "port must be a whole number, not '\uff12\uff10'"),
        ("SANDBOX_IDLE_SECONDS", "x", "sandbox_idle_seconds must be a number of seconds, not 'x'"),
        # int() and float() read these; no one types them for a port or a count.
        ("PORT", "+19_921 ", "port must be a whole number, not '+19_921 '"),
        ("WORKERS", " 0_1", "workers must be a whole number, not ' 0_1'"),
        ("WORKERS", "1_6", "workers must be a whole number, not '1_6'"),
        ("HEADER_SECONDS", "nan", "header_seconds must be a number of seconds, not 'nan'"),
        ("BODY_SECONDS", "1e3", "body_seconds must be a number of seconds, not '1e3'"),
        ("WRITE_SECONDS", "1_0", "write_seconds must be a number of seconds, not '1_0'"),
    ):
        with pytest.raises(InvalidInput) as refused:
            load_settings(environ={**environ, f"KOPILKA_{name}": value}, serving=True)
        assert refused.value.message == f"{said} (KOPILKA_{name})"


def test_a_number_typed_plainly_is_read(tmp_path: Path) -> None:
    environ = {
        "KOPILKA_HOME": str(tmp_path),
        "KOPILKA_PORT": "08889",
        "KOPILKA_HEADER_SECONDS": ".5",
        "KOPILKA_BODY_SECONDS": "7.",
    }
    settings = load_settings(environ=environ, serving=True)
    assert (settings.port, settings.header_seconds, settings.body_seconds) == (8889, 0.5, 7.0)


@pytest.mark.parametrize(
    ("written", "name", "said"),
    [
        ("port = 70000", "port", "port must be 1 to 65535, not 70000"),
        ("workers = 0", "workers", "workers must be 1 to 64, not 0"),
        (
            "connections_per_client = 0",
            "connections_per_client",
            "connections_per_client must be 1 to 1048576, not 0",
        ),
        (
            "header_seconds = nan",
            "header_seconds",
            "header_seconds must be above 0 and at most 3600, not nan",
        ),
        (
            "write_seconds = 3600.5",
            "write_seconds",
            "write_seconds must be above 0 and at most 3600, not 3600.5",
        ),
        (
            "sandbox_idle_seconds = 0.5",
            "sandbox_idle_seconds",
            "sandbox_idle_seconds must be 1 to 604800, not 0.5",
        ),
        # As written, not rounded to six digits ("1e+08", "1.23457e+06").
        (
            "body_seconds = 99999999",
            "body_seconds",
            "body_seconds must be above 0 and at most 3600, not 99999999",
        ),
        (
            "header_seconds = 1234567.0",
            "header_seconds",
            "header_seconds must be above 0 and at most 3600, not 1234567.0",
        ),
    ],
)
def test_a_setting_out_of_its_range_is_named_with_its_value_and_where_it_was_given(
    tmp_path: Path, written: str, name: str, said: str
) -> None:
    config = tmp_path / "kopilka.toml"
    config.write_text(written + "\n")
    environ = {"KOPILKA_HOME": str(tmp_path)}
    with pytest.raises(InvalidInput) as in_file:
        load_settings(environ=environ, serving=True)
    assert in_file.value.message == f"{said} ({config})"
    # The environment's value wins over the file's, and is the one named.
    value = written.split(" = ")[1]
    variable = f"KOPILKA_{name.upper()}"
    if value != "nan":
        with pytest.raises(InvalidInput) as in_environment:
            load_settings(environ={**environ, variable: value}, serving=True)
        assert in_environment.value.message == f"{said} ({variable})"


def test_a_database_in_the_file_meets_the_checks_a_flag_does(tmp_path: Path) -> None:
    environ = {"KOPILKA_HOME": str(tmp_path)}
    for written in ("host=localhost dbname=bank password=s3cret", "postgresql//u:pw@db/ledger"):
        (tmp_path / "kopilka.toml").write_text(f'db = "{written}"\n')
        with pytest.raises(InvalidInput) as refused:
            load_settings(environ=environ)
        assert refused.value.code == "unsupported_database"
        assert "s3cret" not in refused.value.message and "pw@" not in refused.value.message


def test_a_number_too_big_for_its_setting_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "kopilka.toml").write_text("header_seconds = 1" + "0" * 400 + "\n")
    with pytest.raises(InvalidInput) as refused:
        load_settings(environ={"KOPILKA_HOME": str(tmp_path)}, serving=True)
    assert refused.value.message.startswith("header_seconds must be a number of seconds, not ")
    assert len(refused.value.message) < 120 + len(str(tmp_path / "kopilka.toml"))


@pytest.mark.parametrize(
    "name",
    [
        "KOPILKA_HOME",
        "KOPILKA_CONFIG",
        "KOPILKA_DB",
        "KOPILKA_URL",
        "KOPILKA_LEDGER",
        "KOPILKA_DB_PASSWORD_FILE",
    ],
)
@pytest.mark.parametrize("blank", ["", " "])
def test_a_variable_that_says_where_the_ledger_is_set_empty_is_refused(
    tmp_path: Path, name: str, blank: str
) -> None:
    """`KOPILKA_DB=$PG_URL` with PG_URL unset wrote to the home's SQLite file instead, and
    an empty KOPILKA_LEDGER to the file's ledger or main."""
    environ = {"KOPILKA_HOME": str(tmp_path), name: blank}
    if name == "KOPILKA_HOME":
        environ = {name: blank}
    with pytest.raises(InvalidInput) as refused:
        load_settings(environ=environ)
    assert refused.value.message == f"{name} is set but empty: give it, or unset it"


@pytest.mark.parametrize("name", ["KOPILKA_HOST", "KOPILKA_PORT", "KOPILKA_WORKERS"])
@pytest.mark.parametrize("blank", ["", " "])
def test_a_server_setting_set_empty_is_refused_too(tmp_path: Path, name: str, blank: str) -> None:
    """An empty KOPILKA_PORT served on the default port, as if none were given, where a
    padded one was refused."""
    with pytest.raises(InvalidInput) as refused:
        load_settings(environ={"KOPILKA_HOME": str(tmp_path), name: blank}, serving=True)
    assert refused.value.message == f"{name} is set but empty: give it, or unset it"
    # A command that serves nothing reads none of them.
    assert load_settings(environ={"KOPILKA_HOME": str(tmp_path), name: blank}).ledger == "main"


@pytest.mark.parametrize(
    "db", ["/tmp/ledger.db\n", "postgresql://u@h/db\n", "a\tb.db", "a\u2028b.db", "a\x85b.db"]
)
def test_a_database_with_a_control_character_is_refused(tmp_path: Path, db: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        load_settings({"db": db}, environ={"KOPILKA_HOME": str(tmp_path)})
    assert "line break or another control character" in refused.value.message
    assert "\n" not in refused.value.message


def test_a_config_file_that_is_a_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        load_settings(environ={"KOPILKA_HOME": str(tmp_path)}, config_path=str(tmp_path))
    assert refused.value.message == f"config file {tmp_path} is a directory"


def test_a_password_file_beside_a_url_it_cannot_read_is_one_line(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("S3cret\n")
    environ = {"KOPILKA_HOME": str(tmp_path), "KOPILKA_DB_PASSWORD_FILE": str(password)}
    with pytest.raises(InvalidInput) as refused:
        load_settings({"db": "postgresql://app@[::1/ledger"}, environ=environ)
    assert refused.value.code == "invalid_setting"
    assert "Invalid IPv6 URL" in refused.value.message


@pytest.mark.parametrize(
    "folder", ["家族\u3000帳簿", "Mes\u00a0comptes", "\U0001f468\u200d\U0001f469\u200d\U0001f467"]
)
def test_a_database_in_a_folder_of_any_printed_name_is_taken(tmp_path: Path, folder: str) -> None:
    """Wide and no-break spaces and joiners are part of names people give folders."""
    db = str(tmp_path / folder / "kopilka.db")
    assert load_settings({"db": db}, environ={"KOPILKA_HOME": str(tmp_path)}).db == db


def test_serve_reads_no_server_url_so_an_empty_one_is_not_its_concern(tmp_path: Path) -> None:
    environ = {"KOPILKA_HOME": str(tmp_path), "KOPILKA_URL": ""}
    assert load_settings(environ=environ, serving=True).url is None


@pytest.mark.parametrize("ledger", ["", " ", " x", "books"])
def test_serve_reads_no_ledger_so_no_ledger_setting_stops_it(tmp_path: Path, ledger: str) -> None:
    environ = {"KOPILKA_HOME": str(tmp_path), "KOPILKA_LEDGER": ledger}
    assert load_settings(environ=environ, serving=True).ledger == "main"


def test_the_python_clients_home_refuses_an_empty_kopilka_home_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KOPILKA_HOME", "")
    with pytest.raises(InvalidInput) as refused:
        home()
    assert refused.value.message == "KOPILKA_HOME is set but empty: give it, or unset it"


@pytest.mark.parametrize(
    "message",
    [
        "invalid int value: 'postgresql://al:S3cret@h:1/db'",
        "config file postgresql:/al:S3cret@h/db does not exist",  # a path keeps one slash
        "x postgresql://al@h/db?password=S3cret&sslmode=require",
        # The colon that ends the URL's part of the message stays the message's.
        "at postgresql://al@h/db?password=S3cret: InvalidPasswordError: failed",
        "at postgresql://al@h/db?password=S3cret:",
    ],
)
def test_a_message_quotes_no_password_of_a_url_it_names(message: str) -> None:
    assert hide_secrets(message) == message.replace("S3cret", "***")


def test_a_password_ending_in_a_colon_is_hidden_whole_before_the_messages_own() -> None:
    message = "at postgresql://al@h/db?password=S3cret:: failed"
    assert hide_secrets(message, given=[]) == "at postgresql://al@h/db?password=***: failed"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("host=db password=Se\\cr3t", "'host=db password=***'"),
        ("postgresql://al:" + "S" * 60 + "@h/db", "'postgresql://al:***@h/db'"),
        ("x" * 50, "'" + "x" * 39 + "...'"),
        ("postgresql+psycopg://al:S3cret@h/db", "'postgresql+psycopg://al:***@h/db'"),
        ("host=db sslpassword=S3cret", "'host=db sslpassword=***'"),
        (["host=db password=S3cret"], "['host=db password=***']"),
    ],
)
def test_a_value_quoted_is_masked_as_written_then_cut(value: object, shown: str) -> None:
    assert quoted(value) == shown


@pytest.mark.timeout(10)
@pytest.mark.parametrize("quote", ["'", '"'])
def test_a_path_of_many_quoted_pairs_is_read_once_for_keyword_settings(quote: str) -> None:
    """A quoted value could be read as quoted or as plain text: each pair doubled the
    work of a match that failed, and 30 pairs held a command for minutes."""
    path = f"a={quote}b{quote} " * 40 + "c"
    assert sqlite_path(path) == path


@pytest.mark.timeout(10)
@pytest.mark.parametrize("word", ["a." * 50_000, "a-" * 50_000, "a+" * 50_000])
def test_a_long_word_of_short_pieces_is_read_once_for_urls(word: str) -> None:
    """Each letter after a '.' may begin a scheme: a scheme of any length was looked for
    from every one of them, and a name of 100,000 such characters held a command for a
    minute. Ten seconds is far above the time it takes, and far below that minute."""
    message = f"no account for client {word!r}"
    assert hide_secrets(message, [word]) == message


def test_a_libpq_password_with_a_backslash_is_masked_as_a_message_quotes_it() -> None:
    """repr doubles the backslash: the message no longer holds the word as given."""
    value = "host=db password=S3cr\\et"
    message = f"host {value!r} is no host name or address"
    assert (
        hide_secrets(message, [value]) == "host 'host=db password=***' is no host name or address"
    )


def test_a_message_without_a_password_in_a_url_is_left_as_it_is() -> None:
    for message in ("the server at http://127.0.0.1:8888/v1 said no", "no URL: S3cret"):
        assert hide_secrets(message) == message


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("a\nb", "'a\\nb'"),
        ("", "''"),
        ("two words", "'two words'"),
        ("http://h", "'http://h'"),
        ("[127.0.0.1]", "'[127.0.0.1]'"),
        ("[localhost]", "'[localhost]'"),
        ("[]", "'[]'"),
        ("al@h", "'al@h'"),
        # A user and password before an '@', as a URL gives them: the password not shown.
        ("kop:S3cret@db.example.com", "'kop:***@db.example.com'"),
    ],
)
def test_a_host_that_names_nothing_is_refused_in_one_line(
    tmp_path: Path, host: str, shown: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        load_settings({"host": host}, environ={"KOPILKA_HOME": str(tmp_path)}, serving=True)
    assert refused.value.message == f"host {shown} (--host) is no host name or address"


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        (
            'ledger = ""',
            "ledger '' ({where}): a ledger name is 1 to 100 printable characters, without"
            " spaces at its ends",
        ),
        (
            'ledger = "sandbox-1"',
            "ledger 'sandbox-1' ({where}): a ledger named sandbox-... is a sandbox",
        ),
        ('host = ""', "host '' ({where}) is no host name or address"),
        ('host = "a b"', "host 'a b' ({where}) is no host name or address"),
        ('db = ""', "the database may not be empty ({where}): give a path or URL"),
        ('db = "books.db "', "the database 'books.db ' ({where}) begins or ends with a space"),
        ('db = "a\\tb.db"', "the database 'a\\tb.db' ({where}) has a line break"),
    ],
)
def test_a_text_setting_refused_names_where_it_was_given(
    tmp_path: Path, text: str, refused: str
) -> None:
    """As a number's refusal does: `ledger = ""` in a file was refused without naming it,
    and with many files read, or a variable set long ago, no one could tell which."""
    config = tmp_path / "t.toml"
    config.write_text(text + "\n")
    environ = {"KOPILKA_HOME": str(tmp_path)}
    name, _, value = text.partition(" = ")
    with pytest.raises(InvalidInput) as from_file:
        load_settings(environ=environ, config_path=config, serving=name == "host")
    assert from_file.value.message.startswith(refused.format(where=config))
    if value != '""':  # a variable set to nothing is refused as such
        variable = {f"KOPILKA_{name.upper()}": tomllib.loads(text)[name]}
        with pytest.raises(InvalidInput) as from_variable:
            load_settings(environ={**environ, **variable}, serving=name == "host")
        where = f"KOPILKA_{name.upper()}"
        assert from_variable.value.message.startswith(refused.format(where=where))
    with pytest.raises(InvalidInput) as from_flag:
        flags = {name: tomllib.loads(text)[name]}
        load_settings(flags, environ=environ, serving=name == "host")
    assert from_flag.value.message.startswith(refused.format(where=f"--{name}"))


def test_an_ipv6_host_may_be_written_as_a_url_writes_it(tmp_path: Path) -> None:
    """As the server says where it listens: `listening on http://[::1]:8888`."""
    for host in ("[::1]", "::1"):
        settings = load_settings(
            {"host": host}, environ={"KOPILKA_HOME": str(tmp_path)}, serving=True
        )
        assert settings.host == "::1"


def test_a_config_path_with_a_line_break_is_shown_escaped(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as refused:
        load_settings(environ={"KOPILKA_HOME": str(tmp_path)}, config_path="a\nb")
    assert refused.value.message == "config file 'a\\nb' does not exist"


@pytest.mark.parametrize(
    "url", ['postgresql://u:pa"ss@h/db', "postgresql://u:pa'ss@h/db", "postgresql://u:pa ss@h/db"]
)
def test_a_password_with_a_quote_or_a_space_is_hidden_where_its_url_is_quoted(url: str) -> None:
    message = f"get takes no bare argument {url!r}"
    assert hide_secrets(message, ["get", url]) == message.replace(url[15:20], "***")


@pytest.mark.parametrize(
    ("password", "shown"),
    [
        ("S3cret", "***"),
        ("S3&cret", "***"),  # no separator in libpq's keyword form, unlike a URL's query
        ('S3"cret', "***"),
        ('"S3 cret"', "***"),
        ("'S3 cret'", "***"),
    ],
)
def test_a_keyword_password_is_hidden(password: str, shown: str) -> None:
    given = f"host=h dbname=bank password={password} port=5432"
    message = f"get takes no bare argument {given!r}; options"
    assert hide_secrets(message, ["get", given]) == message.replace(password, shown)


@pytest.mark.parametrize("quote", ["'", '"'])
def test_a_keyword_password_whose_quote_is_left_open_is_hidden_to_the_end(quote: str) -> None:
    given = f"host=h password={quote}S3 cret"
    message = f"no database at {given}"
    assert hide_secrets(message, [given]) == "no database at host=h password=***"


@pytest.mark.parametrize(
    ("message", "url"),
    [
        ("no account for client 'Bob1234'", "postgresql://postgres:1234@h/db"),
        ("insufficient funds: Ann has $1.00 available", "postgresql://app:Ann@h/db"),
        (
            "cannot open the database at postgresql://postgres:***@h:1/postgres: refused",
            "postgresql://postgres:postgres@h:1/postgres",
        ),
        ("insufficient funds: password=abc has $1.00 available", "postgresql://u:abc@h/db"),
    ],
)
def test_only_a_url_quoted_in_a_message_is_changed(message: str, url: str) -> None:
    """Not the same letters elsewhere: a name, a URL already shown redacted, text typed."""
    assert hide_secrets(message, ["--db", url]) == message


def test_a_url_quoted_escaped_is_hidden_and_other_schemes_are_left_alone() -> None:
    url = "postgresql://u:p\u00a0w x@h/db"
    message = f"get takes no bare argument {url!r}"
    assert (
        hide_secrets(message, ["get", url])
        == "get takes no bare argument 'postgresql://u:***@h/db'"
    )
    name = "no account for client 'mail:/ann:home@work'"
    assert hide_secrets(name, ["balance", "--client=mail:/ann:home@work"]) == name


# libpq's keyword form is no database kopilka reads, with a space at its end or not.
_KEYWORD_FORM = "a PostgreSQL database is named by a URL (postgresql://user@host/db), not by"


@pytest.mark.parametrize(
    ("db", "why"),
    [
        ("books.db ", "begins or ends with a space: give it without"),
        (" books.db", "begins or ends with a space: give it without"),
        ("postgresql://u:pw@h/db ", "begins or ends with a space: give it without"),
        ("host=h password=pw ", _KEYWORD_FORM),
    ],
)
def test_a_database_with_a_space_at_either_end_is_refused(
    tmp_path: Path, db: str, why: str
) -> None:
    """A lookalike file (`books.db `) beside the one meant, made without a word; the
    password of libpq's keyword form masked as a URL's is."""
    for given in ({"flags": {"db": db}}, {"environ": {"KOPILKA_DB": db}}):
        environ = {"KOPILKA_HOME": str(tmp_path), **given.get("environ", {})}
        with pytest.raises(InvalidInput) as refused:
            load_settings(given.get("flags"), environ=environ)
        assert why in refused.value.message
        assert "pw" not in refused.value.message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("db", "why"),
    [
        ("postgresql://u:pw@h/db\n", "(KOPILKA_DB) has a line break or another control character"),
        ("host=h password=pw\n", _KEYWORD_FORM),
    ],
)
def test_a_database_with_a_line_break_is_refused_its_password_masked(
    tmp_path: Path, db: str, why: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        load_settings(environ={"KOPILKA_HOME": str(tmp_path), "KOPILKA_DB": db})
    assert why in refused.value.message
    assert "pw" not in refused.value.message


def test_a_config_given_through_a_pipe_is_read(tmp_path: Path) -> None:
    """`kopilka serve --config <(...)`: the shell gives a pipe's path, /dev/fd/N."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b'ledger = "piped"\ndb = "books.db"\n')
        os.close(write_end)
        settings = load_settings(
            environ={"KOPILKA_HOME": str(tmp_path)}, config_path=f"/dev/fd/{read_end}"
        )
    finally:
        os.close(read_end)
    assert settings.ledger == "piped"
    # Its relative path is from the working directory: /dev/fd/books.db could not be.
    assert settings.db == "books.db"
    # A file given as a descriptor (`--config /dev/stdin < conf/kopilka.toml`): the
    # file's own directory, as when it is named.
    written = tmp_path / "conf" / "kopilka.toml"
    written.parent.mkdir()
    written.write_text('db = "books.db"\n')
    with written.open() as handle:
        given = load_settings(
            environ={"KOPILKA_HOME": str(tmp_path)}, config_path=f"/dev/fd/{handle.fileno()}"
        )
    assert given.db == str(written.parent / "books.db")


@pytest.mark.parametrize(
    ("host", "here"),
    [
        ("127.0.0.1", True),
        ("127.1", True),
        ("0x7f.1", True),
        ("2130706433", True),
        ("localhost", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # 127.0.0.1 as an IPv6 socket writes it
        ("::ffff:10.0.0.1", False),
        ("::ffff:127.0.0.1%eth0", False),
        ("10.0.0.1", False),
        ("example.com", False),
        # inet_aton reads these up to the space, and the lookup reads them as a name.
        ("127.0.0.1 .attacker.example", False),
        ("127.0.0.1\t.attacker.example", False),
        ("::1%eth0", False),  # a zone means nothing on loopback: any text passes for one
        ("::1%zz.attacker.example", False),
        ("127.0.0.1.", False),
        ("0.0.0.0", False),
    ],
)
def test_on_this_machine_is_an_address_never_a_name_that_begins_as_one(
    host: str, here: bool
) -> None:
    assert on_this_machine(host) is here


def test_every_variable_kopilka_reads_is_known_to_the_warning_of_unread_ones() -> None:
    """A variable the code reads but the warning does not know would be warned of as a
    typing slip while it is read."""
    source = Path(kopilka.__file__).parent
    named = {
        name
        for path in source.rglob("*.py")
        for name in re.findall(r"\bKOPILKA_[A-Z0-9_]*[A-Z0-9]\b", path.read_text())
    }
    assert len(named) > 10
    # Valued as Kubernetes values a Service's link (the source names some, as examples).
    assert unread_variable_warnings(dict.fromkeys(named, "tcp://10.0.0.11:8888")) == []


@pytest.mark.parametrize(
    ("name", "value", "warned"),
    [
        ("KOPILKA_HOM", "secret-value", True),
        ("KOPILKA_db", "secret-value", True),
        # The test suite's, which kopilka never reads.
        ("KOPILKA_TEST_POSTGRES_URL", "secret-value", True),
        # Kubernetes' links to a Service named kopilka, or kopilka-db, say.
        ("KOPILKA_SERVICE_PORT_HTTP", "8888", False),
        ("KOPILKA_SERVICE_PORT", "8888", False),
        ("KOPILKA_DB_SERVICE_PORT", "5432", False),
        ("KOPILKA_PORT_8888_TCP_PROTO", "tcp", False),
        ("KOPILKA_DB_SERVICE_HOST", "10.0.0.11", False),
        ("KOPILKA_DB_PORT", "tcp://10.0.0.11:5432", False),
        # A port for kopilka under a name it does not read: Kubernetes' holds a URL.
        ("KOPILKA_LISTEN_PORT", "9000", True),
        ("PGPASSWORD", "secret-value", False),
    ],
)
def test_unread_variables_are_warned_of_by_name(name: str, value: str, warned: bool) -> None:
    warnings = unread_variable_warnings({name: value})
    assert len(warnings) == warned
    assert not any(value in warning for warning in warnings)


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("KOPILKA_HOM", "; did you mean KOPILKA_HOME?"),
        ("KOPILKA_db", "; did you mean KOPILKA_DB?"),
        ("KOPILKA_DB_PASSWORD", "; did you mean KOPILKA_DB_PASSWORD_FILE?"),
        ("KOPILKA_DEBUG", ""),  # the prefix all share makes no name near
    ],
)
def test_an_unread_variable_s_warning_names_the_one_meant(name: str, meant: str) -> None:
    (warning,) = unread_variable_warnings({name: "1"})
    assert warning == f"{name!r} is no variable kopilka reads: it is ignored{meant}"


@pytest.mark.parametrize("what", ["a link to nothing", "a directory", "a pipe"])
def test_a_kopilka_toml_in_the_home_that_is_no_file_is_refused_not_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    """A link to a config not mounted yet was taken for no config at all: the commands
    went to the home's own ledger, where the file would have sent them elsewhere."""
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    config = home / "kopilka.toml"
    if what == "a link to nothing":
        config.symlink_to(tmp_path / "not-mounted" / "kopilka.toml")
        said = f"is a link to '{tmp_path / 'not-mounted' / 'kopilka.toml'}', which does not exist"
    elif what == "a directory":
        config.mkdir()
        said = "is not a file"
    else:
        os.mkfifo(config)
        said = "is not a file"
    with pytest.raises(InvalidInput) as refused:
        load_settings(environ={"KOPILKA_HOME": str(home)})
    assert refused.value.message == f"{config} {said}"


def test_a_kopilka_toml_linked_to_dev_null_is_an_empty_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "kopilka.toml").symlink_to(os.devnull)
    assert load_settings(environ={"KOPILKA_HOME": str(home)}).db == str(home / "kopilka.db")


def test_a_password_file_whose_first_line_never_ends_is_refused_unread(tmp_path: Path) -> None:
    """/dev/zero given as the password file was read whole, memory and all; a line is
    ended by its line break alone (a form feed is a password's character)."""
    environ = {"KOPILKA_HOME": str(tmp_path), "KOPILKA_DB_PASSWORD_FILE": "/dev/zero"}
    with pytest.raises(InvalidInput) as info:
        load_settings(flags={"db": "postgresql://kop@db.example:5432/bank"}, environ=environ)
    assert info.value.message == (
        "cannot read KOPILKA_DB_PASSWORD_FILE /dev/zero: its first line is over 4096 bytes"
    )
    secret = tmp_path / "pw"
    secret.write_bytes(b"se\x0ccret\r\nold\n")
    environ["KOPILKA_DB_PASSWORD_FILE"] = str(secret)
    settings = load_settings(flags={"db": "postgresql://kop@db.example:5432/bank"}, environ=environ)
    assert settings.db == "postgresql://kop:se%0Ccret@db.example:5432/bank"
    for ending in (b"\n", b"\r\n", b""):  # the longest a password may be, its end apart
        secret.write_bytes(b"a" * 4096 + ending)
        load_settings(flags={"db": "postgresql://kop@db.example:5432/bank"}, environ=environ)
    secret.write_bytes(b"a" * 4097 + b"\n")
    with pytest.raises(InvalidInput):
        load_settings(flags={"db": "postgresql://kop@db.example:5432/bank"}, environ=environ)
