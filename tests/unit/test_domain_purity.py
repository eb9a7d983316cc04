"""The domain, money and errors stay pure: standard library and each other, nothing else."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import kopilka

PACKAGE_ROOT = Path(kopilka.__file__).parent
PURE_MODULES = {"kopilka.money", "kopilka.errors", "kopilka.domain"}
# Standard-library modules that mean I/O, concurrency or a clock: not for pure code.
IMPURE_STDLIB = {
    "asyncio",
    "socket",
    "sqlite3",
    "subprocess",
    "threading",
    "multiprocessing",
    "concurrent",
    "http",
    "urllib",
    "os",
    "shutil",
    "time",
}
PURE_FILES = sorted(
    [PACKAGE_ROOT / "money.py", PACKAGE_ROOT / "errors.py", *(PACKAGE_ROOT / "domain").glob("*.py")]
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, package: str) -> list[str]:
    """Absolute names of every module `path` imports; relative ones resolved in `package`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                found.append(".".join([*base, node.module] if node.module else base))
            else:
                assert node.module is not None
                found.append(node.module)
    return found


def _package_of(path: Path) -> str:
    module = _module_name(path)
    return module if path.name == "__init__.py" else module.rsplit(".", 1)[0]


def _is_pure(module: str) -> bool:
    return any(module == pure or module.startswith(pure + ".") for pure in PURE_MODULES)


def test_pure_files_found() -> None:
    names = {path.name for path in PURE_FILES}
    assert {"money.py", "errors.py", "model.py", "rules.py", "statement.py"} <= names


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda path: _module_name(path))
def test_imports_only_stdlib_and_pure_modules(path: Path) -> None:
    for module in _imports(path, _package_of(path)):
        top = module.split(".")[0]
        if top == "kopilka":
            assert _is_pure(module), f"{_module_name(path)} imports {module}"
        else:
            assert top in sys.stdlib_module_names or top == "__future__", (
                f"{_module_name(path)} imports third-party {module}"
            )
            assert top not in IMPURE_STDLIB, f"{_module_name(path)} imports {module}: I/O"


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncpg\nfrom kopilka.store import open_store\nfrom ..engine import x\n")
    assert _imports(bad, "kopilka.domain") == ["asyncpg", "kopilka.store", "kopilka.engine"]
    assert not _is_pure("kopilka.engine")
    assert not _is_pure("kopilka.store")
    assert "asyncpg" not in sys.stdlib_module_names
