"""Fixtures shared by every test directory: a real PostgreSQL server on demand."""

pytest_plugins = ["tests.conftest_pg"]
