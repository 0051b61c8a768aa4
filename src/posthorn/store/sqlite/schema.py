"""The message store's SQLite schema, as versioned migration steps applied on open.

Owns: `MIGRATIONS` (append a `Migration` to change the schema; never edit a released step) and
`SCHEMA_VERSION`. Applied by `posthorn.store.sqlite.db.apply_migrations`, which records the
version in ``PRAGMA user_version``.

Tables (version 1):
- ``counters``: named store-wide counters; ``uidvalidity`` is the last UIDVALIDITY issued, so a
  new one is always greater than every earlier one (RFC 9051 §2.3.1.1).
- ``accounts``: one row per account, with its quota usage (bytes, messages) kept up to date in
  the same transaction as every change to its messages (RFC 9208 STORAGE and MESSAGE).
- ``mailboxes``: per-account names (unique), RFC 6154 special-use, UIDVALIDITY, UIDNEXT and
  HIGHESTMODSEQ. Ids come from AUTOINCREMENT, so an id is never reused for another mailbox.
- ``subscriptions``: names, not ids: a name may be subscribed without existing (RFC 9051 §6.3.7).
- ``blobs``: one row per stored message body (a file under ``blobs/``), with its size, its
  parse-once `MessageInfo` JSON and ``refs``, the number of ``messages`` rows pointing to it.
  The row goes (and then its file) when ``refs`` drops to zero.
- ``prefixes``: the per-copy bytes put before a blob (Return-Path, Delivered-To, Received).
  Kept out of ``messages`` so a message row stays small and a FETCH FLAGS scan stays cheap.
- ``messages``: one row per message in a mailbox, clustered by (mailbox_id, uid). System flags
  are bits (``flags``), keywords a JSON array (NULL when none); ``size`` is prefix + blob.
- ``expunged``: (mailbox, uid, modseq) of each expunged message, for QRESYNC VANISHED
  (RFC 7162 §3.2.10). Grows with expunges; pruning it is a later concern.

Version 2:
- ``blobs.header_size``: the length of the stored header section (through the blank line), so
  a batch header read (FETCH BODY.PEEK[HEADER] of a whole mailbox) needs neither the info JSON
  nor a scan of the file. Filled from the info JSON for existing rows.
"""

from __future__ import annotations

from posthorn.store.sqlite.db import Migration

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        (
            """CREATE TABLE counters (
                name TEXT PRIMARY KEY,
                value INTEGER NOT NULL
            ) WITHOUT ROWID""",
            """CREATE TABLE accounts (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL UNIQUE,
                used_bytes INTEGER NOT NULL DEFAULT 0,
                used_messages INTEGER NOT NULL DEFAULT 0
            )""",
            """CREATE TABLE mailboxes (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                account_id INTEGER NOT NULL,
                name TEXT NOT NULL,
                special_use TEXT,
                uidvalidity INTEGER NOT NULL,
                uidnext INTEGER NOT NULL DEFAULT 1,
                highestmodseq INTEGER NOT NULL DEFAULT 1,
                UNIQUE (account_id, name)
            )""",
            """CREATE TABLE subscriptions (
                account_id INTEGER NOT NULL,
                name TEXT NOT NULL,
                PRIMARY KEY (account_id, name)
            ) WITHOUT ROWID""",
            """CREATE TABLE blobs (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                size INTEGER NOT NULL,
                info TEXT NOT NULL,
                refs INTEGER NOT NULL
            )""",
            """CREATE TABLE prefixes (
                id INTEGER PRIMARY KEY,
                data BLOB NOT NULL
            )""",
            """CREATE TABLE messages (
                mailbox_id INTEGER NOT NULL,
                uid INTEGER NOT NULL,
                modseq INTEGER NOT NULL,
                flags INTEGER NOT NULL,
                keywords TEXT,
                internal_date INTEGER NOT NULL,
                tz_offset INTEGER NOT NULL,
                size INTEGER NOT NULL,
                blob_id INTEGER NOT NULL,
                prefix_id INTEGER,
                prefix_size INTEGER NOT NULL,
                PRIMARY KEY (mailbox_id, uid)
            ) WITHOUT ROWID""",
            "CREATE INDEX messages_modseq ON messages (mailbox_id, modseq)",
            """CREATE TABLE expunged (
                mailbox_id INTEGER NOT NULL,
                uid INTEGER NOT NULL,
                modseq INTEGER NOT NULL,
                PRIMARY KEY (mailbox_id, uid)
            ) WITHOUT ROWID""",
            "CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq)",
        ),
    ),
    Migration(
        2,
        (
            "ALTER TABLE blobs ADD COLUMN header_size INTEGER NOT NULL DEFAULT 0",
            # MessageInfo JSON format 1: [1, size, header_size, ...]
            "UPDATE blobs SET header_size = json_extract(info, '$[2]')",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version
