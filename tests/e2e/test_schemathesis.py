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
from tests.kopilka_server import ServerProcess, running_server_with_accounts

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
    home = tmp_path_factory.mktemp("schema") / "home"
    with running_server_with_accounts(home, {"Ann": "100", "Bob": "100"}) as server:
        yield server


# The token the run uses can be revoked by the run itself (the stateful phase lists the
# tokens and revokes what it finds): revoking goes last, in a run of its own, so that
# every other operation is tested with a token that still stands.
REVOKE = "DELETE /v1/tokens/{token_id}"


def _schemathesis(server: ServerProcess, cwd: Path, *selection: str) -> str:
    result = subprocess.run(
        [
            *schemathesis_command(),
            "run",
            f"{server.url}/openapi.json",
            *selection,
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
        cwd=cwd,
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "Authentication failed" not in result.stdout, report  # the cases really got in
    return result.stdout


def test_api_matches_its_own_document(server: ServerProcess, tmp_path: Path) -> None:
    documented = sum(len(methods) for methods in openapi.document()["paths"].values())
    others = _schemathesis(server, tmp_path, "--exclude-name", REVOKE)
    assert f"Tested: {documented - 1}" in others, others  # every operation, none skipped
    revoking = _schemathesis(server, tmp_path, "--include-name", REVOKE)
    assert "Tested: 1" in revoking, revoking
    with server.client() as admin:
        assert admin.get("/v1/health").status_code == 200


def test_every_refusal_of_the_http_layer_is_documented_on_every_route() -> None:
    """The server's protocol refuses any route's request (a method the path does not
    take, headers too slow or too large, a target too long): schemathesis found a 414
    the document did not list."""
    layer = {"400", "405", "408", "413", "414", "431", "503"}
    for path, methods in openapi.document()["paths"].items():
        for method, operation in methods.items():
            missing = layer - operation["responses"].keys()
            assert not missing, (method, path, missing)


def test_a_query_parameter_given_empty_is_refused_as_the_document_says(
    server: ServerProcess,
) -> None:
    """`?after=` and `?since=` are refused (422): a client built from the document sent
    them, since it allowed an empty string."""
    checked = 0
    with server.client() as admin:
        for path, methods in openapi.document()["paths"].items():
            for parameter in methods.get("get", {}).get("parameters", []):
                schema = parameter["schema"]
                if parameter["in"] != "query" or schema["type"] != "string" or "enum" in schema:
                    continue
                url = path.replace("{client}", "Ann") + f"?{parameter['name']}="
                if admin.get(url).status_code == 422:
                    assert schema.get("minLength", 0) >= 1, (path, parameter)
                    checked += 1
    assert checked == 3  # after; since and till


def test_a_writes_answers_declare_the_headers_a_retry_reads() -> None:
    """A replayed answer says so, and a 503 names the key that settles it: both are in the
    document, where a client's author looks for them."""
    paths = openapi.document()["paths"]
    for path in ("/v1/deposits", "/v1/withdrawals", "/v1/transfers"):
        responses = paths[path]["post"]["responses"]
        for status in ("201", "404", "422"):  # an operation, a kept refusal, given again
            assert "Idempotent-Replayed" in responses[status]["headers"], (path, status)
        assert "Idempotency-Key" in responses["503"]["headers"], path
    assert "headers" not in paths["/v1/health"]["get"]["responses"]["503"]  # a read's: none
    # An opening given again says so too: nothing was opened anew; and a change of limits,
    # answered with the account as it now stands: nothing was set again.
    assert "Idempotent-Replayed" in paths["/v1/accounts"]["post"]["responses"]["201"]["headers"]
    patch = paths["/v1/accounts/{client}"]["patch"]["responses"]
    assert "Idempotent-Replayed" in patch["200"]["headers"]
    # A batch answers each item again as it stands, with no mark of a replay on the whole.
    for path, method in [("/v1/batch", "post")]:
        for status, response in paths[path][method]["responses"].items():
            assert "Idempotent-Replayed" not in response.get("headers", {}), (path, status)
