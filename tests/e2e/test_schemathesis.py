"""Property-based requests generated from our own /openapi.json against a real server:
never a 500, and every answer matches the documented status codes, types and schemas.

schemathesis runs as its own command (`st run`), bounded in examples per operation,
so the test stays well under a minute.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.kopilka_server import ServerProcess, running_server

from kopilka.api import openapi

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


def schemathesis_command() -> list[str]:
    beside = Path(sys.executable).with_name("st")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("st")
    if found is None:
        pytest.fail("schemathesis (the `st` command) is not installed")
    return [found]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("schema") / "home") as server:
        with server.client() as admin:
            for name in ("Ann", "Bob"):
                admin.post(
                    "/v1/deposits", json={"client": name, "amount": "100", "open_account": True}
                )
        yield server


def test_api_matches_its_own_document(server: ServerProcess, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *schemathesis_command(),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "12",
            "--seed",
            "1",
            "--generation-deterministic",
            "--request-timeout",
            "10",
            "-H",
            f"Authorization: Bearer {server.token}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=tmp_path,
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "Authentication failed" not in result.stdout, report  # the cases really got in
    documented = sum(len(methods) for methods in openapi.document()["paths"].values())
    assert f"Tested: {documented}" in result.stdout, report  # every operation, none skipped
    with server.client() as admin:
        assert admin.get("/v1/health").status_code == 200
