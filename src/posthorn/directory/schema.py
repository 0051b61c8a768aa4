"""The directory database schema: versioned migrations recorded in ``PRAGMA user_version``.

Applied with the shared `posthorn.store.sqlite.db.apply_migrations` (each step in its own
``BEGIN IMMEDIATE`` transaction together with the version bump, so a CLI and a server starting
at the same moment apply each step exactly once, and a crash leaves a step boundary). Released
migrations are never edited, only appended to.

Stored forms (the directory writes them, readers may rely on them):

- ``domains.name``: lower-case A-labels (`posthorn.mail.address.normalize_domain`).
- ``accounts.address``: `Address.canonical` (lower-case local part, A-label domain).
- ``aliases.source``: `Address.canonical`, or ``"@" + domain`` for a catch-all.
- ``aliases.target``: `Address.canonical` for targets in our domains, else ``str(Address)``
  (local-part case kept for remote targets, RFC 5321 §2.4).
- ``*.domain``: the row's domain, so a domain's use is one indexed count.
- ``created``: Unix seconds (UTC). ``enabled``: 0 or 1. ``quota_bytes``: NULL = unlimited.
- ``accounts.admin`` (version 2): 0 or 1; 1 lets the account use the web admin pages.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from posthorn.directory import errors
from posthorn.store.sqlite.db import Migration, SchemaTooNew, apply_migrations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        (
            """
            CREATE TABLE domains (
                name    TEXT PRIMARY KEY,
                created INTEGER NOT NULL
            ) STRICT
            """,
            """
            CREATE TABLE accounts (
                address       TEXT PRIMARY KEY,
                domain        TEXT NOT NULL REFERENCES domains(name) ON DELETE RESTRICT,
                password_hash TEXT NOT NULL,
                quota_bytes   INTEGER CHECK (quota_bytes IS NULL OR quota_bytes >= 0),
                enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
                created       INTEGER NOT NULL
            ) STRICT
            """,
            "CREATE INDEX accounts_by_domain ON accounts(domain)",
            """
            CREATE TABLE aliases (
                source  TEXT NOT NULL,
                target  TEXT NOT NULL,
                domain  TEXT NOT NULL REFERENCES domains(name) ON DELETE RESTRICT,
                created INTEGER NOT NULL,
                PRIMARY KEY (source, target)
            ) STRICT
            """,
            "CREATE INDEX aliases_by_domain ON aliases(domain)",
        ),
    ),
    # The admin flag (issue 7): a column with a default, so existing accounts stay plain users
    # and the step is one cheap ALTER (SQLite adds such a column without rewriting the table).
    Migration(
        2,
        (
            "ALTER TABLE accounts ADD COLUMN"
            " admin INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1))",
        ),
    ),
)

SCHEMA_VERSION: Final = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn``'s database to `SCHEMA_VERSION` and switch foreign keys on.

    ``conn`` must be in autocommit mode (``isolation_level=None``) and outside a transaction.
    Raises `posthorn.directory.errors.SchemaTooNew` when the file comes from a newer posthorn,
    rather than guessing at a schema we do not know.
    """
    try:
        version = apply_migrations(conn, MIGRATIONS)
    except SchemaTooNew as exc:
        raise errors.SchemaTooNew(
            f"the directory database {exc}; this posthorn is too old for it — upgrade posthorn"
        ) from None
    # The FOREIGN KEY clauses back up the checks in `DirectoryDB`; the pragma is per connection
    # and a no-op inside a transaction, hence here.
    conn.execute("PRAGMA foreign_keys = ON")
    return version
