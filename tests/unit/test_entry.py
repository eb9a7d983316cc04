"""The `kopilka` command's first module runs no import as it loads: a Ctrl-C there was a
traceback of kopilka's own, before entry.main could take it in its words. (The package's
__init__ runs none either; its one import is for type checkers alone.)"""

from __future__ import annotations

import dis
from pathlib import Path

import kopilka

PACKAGE_ROOT = Path(kopilka.__file__).parent


def test_the_module_the_command_loads_first_imports_nothing_as_it_loads() -> None:
    source = (PACKAGE_ROOT / "entry.py").read_text(encoding="utf-8")
    # Its top level only: a function's imports run once main runs, inside its handler.
    code = compile(source, "entry.py", "exec")
    imports = [i.argval for i in dis.get_instructions(code) if i.opname == "IMPORT_NAME"]
    assert imports == []
