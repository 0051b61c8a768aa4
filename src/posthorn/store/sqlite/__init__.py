"""The embedded message store: SQLite (WAL) for metadata, files for message bytes.

`SQLiteMailStore` is the `MailStore`; `SQLiteThread` is the one-thread SQLite runner it is
built on, reusable by other embedded databases (the account directory).
"""

from __future__ import annotations

from posthorn.store.sqlite.db import Migration, SQLiteThread, apply_migrations
from posthorn.store.sqlite.store import SQLiteMailStore

__all__ = ["Migration", "SQLiteMailStore", "SQLiteThread", "apply_migrations"]
