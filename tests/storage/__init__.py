"""Storage tests. Their databases come from the fixtures in ``tests/storage/conftest.py`` and
``tests/conftest.py``; the helpers behind them live in ``tests/databases.py`` (re-exported here
for test modules that import them from ``tests.storage``)."""

from tests.databases import BACKENDS, Databases, postgres_admin_url, temporary_database

__all__ = ["BACKENDS", "Databases", "postgres_admin_url", "temporary_database"]
