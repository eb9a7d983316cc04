"""A PostgreSQL connection service (`?service=NAME`) checked before the driver reads it.

libpq refuses a service it cannot find. The driver (asyncpg) looks for one only in
PGSERVICEFILE or ~/.pg_service.conf, never in PGSYSCONFDIR's, never reads PGSERVICE, and
silently skips a name it does not find there: the ledger would then be opened, or made,
in whatever database the defaults name. It also reads the file with configparser's
interpolation, whose error at a stray "%" quotes the rest of the value: a password. So a
service is found here first, as the driver will find it, or refused in one line that
quotes no value.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from kopilka.errors import InvalidInput
from kopilka.redaction import quoted

# What the driver reads of a service (asyncpg.connect_utils): a value of another key is
# never read, and a % in it does no harm.
_READ = frozenset(
    {
        "host",
        "port",
        "dbname",
        "database",
        "user",
        "password",
        "passfile",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslnegotiation",
        "sslcrl",
        "sslpassword",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
    }
)


def refuse_a_service_not_found(url: str, environ: Mapping[str, str] = os.environ) -> None:
    try:
        named = parse_qs(urlsplit(url).query).get("service")
    except ValueError:  # a URL the driver refuses on its own terms
        return
    if not named or not named[-1]:
        if environ.get("PGSERVICE"):
            raise InvalidInput(
                "invalid_setting",
                "PGSERVICE is set, which kopilka does not read: name the service in the"
                " database URL (postgresql://?service=NAME), or unset PGSERVICE",
            )
        return
    name = named[-1]
    file = _service_file(environ)
    if file is None:
        raise InvalidInput(
            "invalid_setting",
            f"no service {quoted(name)}: PGSERVICEFILE is not set, and this user has no home"
            " to hold a ~/.pg_service.conf",
        )
    where = f"PGSERVICEFILE ({file})" if "PGSERVICEFILE" in environ else str(file)
    plain = configparser.ConfigParser(interpolation=None)
    try:
        plain.read(file, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError):
        raise InvalidInput(
            "invalid_setting",
            f"cannot read the service file {where}: it is not in the form of one",
        ) from None
    if name not in plain.sections():
        raise InvalidInput(
            "invalid_setting",
            f"no service {quoted(name)} in {where} (kopilka reads a service from PGSERVICEFILE"
            " or ~/.pg_service.conf only, not from PGSYSCONFDIR)",
        )
    as_the_driver_reads = configparser.ConfigParser()
    as_the_driver_reads.read(file, encoding="utf-8")
    for key in _READ.intersection(plain[name]):
        try:
            as_the_driver_reads[name][key]
        except configparser.InterpolationError:
            raise InvalidInput(
                "invalid_setting",
                f"the {key} of service {quoted(name)} in {where} holds a % the PostgreSQL"
                " driver cannot read there: give it another way (a password: in"
                " KOPILKA_DB_PASSWORD_FILE or PGPASSFILE)",
            ) from None


def _service_file(environ: Mapping[str, str]) -> Path | None:
    named = environ.get("PGSERVICEFILE")
    if named is not None:  # set, even empty: the driver reads that (empty: ".", nothing)
        return Path(named)
    try:
        return Path.home() / ".pg_service.conf"
    except (RuntimeError, KeyError):  # no home: the driver reads no service file
        return None
