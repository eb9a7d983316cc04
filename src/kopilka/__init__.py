"""kopilka: a bank ledger with exact money, batched atomic operations, a shell and an HTTP API."""

# typing.TYPE_CHECKING, without importing typing (see __getattr__): mypy reads it so.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from kopilka.errors import KopilkaError

__version__ = "0.1.0"
__all__ = ["KopilkaError", "__version__"]


def __getattr__(name: str) -> object:
    # Imported when first asked for, not with the package: the `kopilka` command imports
    # the package before it can take Ctrl-C in its own words (kopilka/entry.py), so the
    # less it runs, the less a Ctrl-C at the start lands in a traceback of kopilka's.
    if name == "KopilkaError":
        from kopilka.errors import KopilkaError

        return KopilkaError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
