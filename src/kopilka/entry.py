"""The `kopilka` command's first step. Ctrl-C while the program is still loading ends it
as Ctrl-C does once it runs (status 130, nothing said), not in a traceback of an import."""

from __future__ import annotations


def main() -> None:
    try:
        from kopilka.cli import main as run
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(run())
