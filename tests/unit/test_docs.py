"""Every error code a user can meet is documented in docs/reference.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ERROR_CLASSES = (
    "KopilkaError|InvalidInput|NotFound|Rejected|Conflict|Unauthorized|Forbidden|Busy|Unavailable"
)
RAISED_CODE = re.compile(rf"\b(?:{ERROR_CLASSES})\(\s*\"([a-z_]+)\"")
HTTP_CODE = re.compile(r"\b(?:ApiError|_refusal|_refused_as_sent)\(\s*\d+,\s*\"([a-z_]+)\"")


def codes_in_source() -> set[str]:
    codes: set[str] = set()
    for path in (ROOT / "src" / "kopilka").rglob("*.py"):
        text = path.read_text()
        codes.update(RAISED_CODE.findall(text))
        codes.update(HTTP_CODE.findall(text))
    return codes


def test_the_source_raises_codes() -> None:
    # Guards the scan itself: if the pattern stopped matching, the test below would pass empty.
    assert {"insufficient_funds", "cap_exceeded", "body_too_large"} <= codes_in_source()


def test_every_error_code_is_documented() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", reference))
    missing = sorted(codes_in_source() - documented)
    assert not missing, f"error codes missing from docs/reference.md: {missing}"
