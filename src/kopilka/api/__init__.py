"""The HTTP API: an ASGI app over one engine; see docs/api.md."""

from kopilka.api.app import KopilkaApp, create_app

__all__ = ["KopilkaApp", "create_app"]
