"""kopilka: a bank ledger with exact money, batched atomic operations, a shell and an HTTP API."""

from kopilka.errors import KopilkaError

__version__ = "0.1.0"
__all__ = ["KopilkaError", "__version__"]
