"""The queue database schema (``data_dir/queue.sqlite3``), as versioned migrations.

Three tables: ``messages`` (one row per queued message: the envelope, the spool file's name,
its size, when it was accepted, and an operator state), ``recipients`` (one row per recipient,
including the rows alias expansion adds; see `posthorn.queue.records` for how they move) and
``attempts`` (the attempt log ``posthorn queue show`` prints: one row per try of a recipient,
written by `posthorn.queue.db.apply_changes` in the transaction that records the try).

Invariants:
- Never edit a released step; add one. `apply_migrations` records the version in
  ``PRAGMA user_version``.
- A ``messages`` row exists only while its spool file does (the file is made durable before
  the row commits, and deleted only after the row's deletion committed).
- Times are Unix seconds (REAL). Status, route and state values are the `records` enums'.
- ``recipients_due`` serves the scheduler's only hot query: due rows of one route.
- ``recipients`` and ``attempts`` rows live exactly as long as their ``messages`` row: every
  deletion of a message deletes them in the same transaction.
"""

from __future__ import annotations

from typing import Final

from posthorn.store.sqlite.db import Migration

QUEUE_DB_NAME: Final = "queue.sqlite3"

MIGRATIONS: Final = (
    Migration(
        1,
        (
            """
            CREATE TABLE messages (
                queue_id   TEXT PRIMARY KEY,
                mail_from  TEXT NOT NULL,
                received   BLOB NOT NULL,
                ret        TEXT,
                envid      TEXT,
                body       TEXT NOT NULL,
                smtputf8   INTEGER NOT NULL,
                auth       TEXT,
                client_ip  TEXT NOT NULL,
                helo       TEXT NOT NULL,
                protocol   TEXT NOT NULL,
                size       INTEGER NOT NULL,
                spool_name TEXT NOT NULL UNIQUE,
                created    REAL NOT NULL,
                state      TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'held'))
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE recipients (
                id         INTEGER PRIMARY KEY,
                queue_id   TEXT NOT NULL,
                parent     INTEGER,
                address    TEXT NOT NULL,
                notify     TEXT,
                orcpt      TEXT,
                route      TEXT NOT NULL CHECK (route IN ('local', 'remote')),
                status     TEXT NOT NULL CHECK (status IN
                               ('pending', 'delivered', 'deferred', 'failed', 'held', 'expanded')),
                account    TEXT,
                tag        TEXT,
                attempts   INTEGER NOT NULL DEFAULT 0,
                next_try   REAL NOT NULL,
                last_error TEXT,
                dsn        TEXT CHECK (dsn IS NULL OR dsn IN ('pending', 'sent')),
                updated    REAL NOT NULL
            )
            """,
            "CREATE INDEX recipients_message ON recipients (queue_id)",
            "CREATE INDEX recipients_due ON recipients (route, status, next_try)",
        ),
    ),
    Migration(
        2,
        (
            # The outbound queue's per-recipient facts: the remote MTA tried last
            # ("mx.b.test [192.0.2.7]", RFC 3464 §2.3.5 Remote-MTA) and whether the delay
            # notice (RFC 3464 action "delayed") went out, so it goes out once.
            "ALTER TABLE recipients ADD COLUMN remote TEXT",
            "ALTER TABLE recipients ADD COLUMN delay_dsn TEXT"
            " CHECK (delay_dsn IS NULL OR delay_dsn IN ('sent'))",
            """
            CREATE TABLE attempts (
                id           INTEGER PRIMARY KEY,
                recipient_id INTEGER NOT NULL,
                queue_id     TEXT NOT NULL,
                at           REAL NOT NULL,
                status       TEXT NOT NULL,
                reply        TEXT,
                remote       TEXT
            )
            """,
            "CREATE INDEX attempts_message ON attempts (queue_id)",
        ),
    ),
)
