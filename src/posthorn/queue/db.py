"""The queue database: transaction functions, and `QueueDB`, their asyncio face.

The functions take a ``sqlite3.Connection`` and run inside the caller's transaction: in the
server on the queue's own `SQLiteThread` (one hop per call, group commit across concurrent
callers), in the ``posthorn queue`` CLI on a connection of its own (WAL lets it read while the
server writes).

Invariants:
- `insert_message` writes the message row and every RCPT TO row in one transaction: a message
  is in the queue with all its recipients, or not at all.
- `apply_changes` updates rows, adds expansion rows, and — when nothing is left to do — deletes
  the message, all in one transaction; the caller deletes the spool file only after that
  commit (a crash in between leaves an orphan file, swept by `posthorn.queue.spool`).
- Every update is scoped by ``queue_id`` as well as row id: a stale row id can never touch
  another message.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from posthorn.queue.envelope import Envelope, EnvelopeRecipient, Notify
from posthorn.queue.records import (
    MessageState,
    QueuedMessage,
    QueuedRecipient,
    Route,
    Status,
)
from posthorn.queue.schema import MIGRATIONS
from posthorn.store.sqlite.db import SQLiteThread, apply_migrations

_MESSAGE_COLUMNS: Final = (
    "queue_id, mail_from, received, ret, envid, body, smtputf8, auth, client_ip, helo,"
    " protocol, size, spool_name, created, state"
)
_RECIPIENT_COLUMNS: Final = (
    "id, address, route, status, notify, orcpt, parent, account, tag, attempts, next_try,"
    " last_error, dsn, updated"
)
_UNFINISHED: Final = "(status IN ('pending', 'deferred', 'held') OR dsn = 'pending')"


# encodings -------------------------------------------------------------------------


def encode_notify(notify: frozenset[Notify] | None) -> str | None:
    if notify is None:
        return None
    return ",".join(sorted(n.value for n in notify))


def decode_notify(text: str | None) -> frozenset[Notify] | None:
    if text is None:
        return None
    return frozenset(Notify(v) for v in text.split(",") if v)


def _recipient(row: Sequence[Any]) -> QueuedRecipient:
    return QueuedRecipient(
        id=int(row[0]),
        address=row[1],
        route=Route(row[2]),
        status=Status(row[3]),
        notify=decode_notify(row[4]),
        orcpt=row[5],
        parent=row[6],
        account=row[7],
        tag=row[8],
        attempts=int(row[9]),
        next_try=float(row[10]),
        last_error=row[11],
        dsn=row[12],
        updated=float(row[13]),
    )


def _message(
    row: Sequence[Any], recipients: tuple[QueuedRecipient, ...], spool_dir: Path
) -> QueuedMessage:
    envelope = Envelope(
        mail_from=row[1],
        recipients=tuple(
            EnvelopeRecipient(r.address, r.notify, r.orcpt) for r in recipients if r.parent is None
        ),
        received=bytes(row[2]),
        ret=row[3],
        envid=row[4],
        body=row[5],
        smtputf8=bool(row[6]),
        auth=row[7],
        client_ip=row[8],
        helo=row[9],
        protocol=row[10],
    )
    return QueuedMessage(
        queue_id=row[0],
        envelope=envelope,
        size=int(row[11]),
        spool_path=spool_dir / row[12],
        created=float(row[13]),
        state=MessageState(row[14]),
        recipients=recipients,
    )


# transaction functions -------------------------------------------------------------


def insert_message(
    conn: sqlite3.Connection,
    spool_dir: Path,
    queue_id: str,
    envelope: Envelope,
    size: int,
    spool_name: str,
    now: float,
) -> QueuedMessage:
    """Queue a message whose spool file is already durable; every RCPT TO is a pending
    local row (local delivery resolves it first; see `posthorn.queue.records`)."""
    conn.execute(
        f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            queue_id,
            envelope.mail_from,
            envelope.received,
            envelope.ret,
            envelope.envid,
            envelope.body,
            int(envelope.smtputf8),
            envelope.auth,
            envelope.client_ip,
            envelope.helo,
            envelope.protocol,
            size,
            spool_name,
            now,
            MessageState.ACTIVE.value,
        ),
    )
    rows = []
    for rcpt in envelope.recipients:
        row = QueuedRecipient(
            id=0,
            address=rcpt.address,
            route=Route.LOCAL,
            status=Status.PENDING,
            notify=rcpt.notify,
            orcpt=rcpt.orcpt,
            next_try=now,
            updated=now,
        )
        rows.append(replace(row, id=_insert_recipient(conn, queue_id, row)))
    # What `load_message` would read back, built from what was just written (saves the
    # queries on the hot path; the row ids come from the inserts).
    return QueuedMessage(
        queue_id=queue_id,
        envelope=envelope,
        size=size,
        spool_path=spool_dir / spool_name,
        created=now,
        state=MessageState.ACTIVE,
        recipients=tuple(rows),
    )


def _insert_recipient(conn: sqlite3.Connection, queue_id: str, r: QueuedRecipient) -> int:
    """Insert a recipient row; returns its id."""
    cur = conn.execute(
        "INSERT INTO recipients (queue_id, parent, address, notify, orcpt, route, status,"
        " account, tag, attempts, next_try, last_error, dsn, updated)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            queue_id,
            r.parent,
            r.address,
            encode_notify(r.notify),
            r.orcpt,
            r.route.value,
            r.status.value,
            r.account,
            r.tag,
            r.attempts,
            r.next_try,
            r.last_error,
            r.dsn,
            r.updated,
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def load_message(conn: sqlite3.Connection, spool_dir: Path, queue_id: str) -> QueuedMessage | None:
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE queue_id = ?", (queue_id,)
    ).fetchone()
    if row is None:
        return None
    rcpts = conn.execute(
        f"SELECT {_RECIPIENT_COLUMNS} FROM recipients WHERE queue_id = ? ORDER BY id",
        (queue_id,),
    ).fetchall()
    return _message(row, tuple(_recipient(r) for r in rcpts), spool_dir)


def list_messages(conn: sqlite3.Connection, spool_dir: Path) -> list[QueuedMessage]:
    """Every queued message with its rows, oldest first (for ``posthorn queue list``)."""
    rows = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages ORDER BY created, queue_id")
    messages = rows.fetchall()
    by_id: dict[str, list[QueuedRecipient]] = {m[0]: [] for m in messages}
    for r in conn.execute(f"SELECT queue_id, {_RECIPIENT_COLUMNS} FROM recipients ORDER BY id"):
        found = by_id.get(r[0])
        if found is not None:
            found.append(_recipient(r[1:]))
    return [_message(m, tuple(by_id[m[0]]), spool_dir) for m in messages]


def due_messages(
    conn: sqlite3.Connection, route: Route, now: float, limit: int
) -> tuple[list[str], float | None]:
    """Messages (not held) with a ``route`` row due at ``now``, most overdue first, at most
    ``limit``; and the earliest ``next_try`` after ``now`` (None if nothing waits)."""
    waiting = (
        "FROM recipients r JOIN messages m ON m.queue_id = r.queue_id"
        " WHERE r.route = ? AND r.status IN ('pending', 'deferred') AND m.state = 'active'"
    )
    due = conn.execute(
        f"SELECT r.queue_id, MIN(r.next_try) AS t {waiting} AND r.next_try <= ?"
        " GROUP BY r.queue_id ORDER BY t LIMIT ?",
        (route.value, now, limit),
    ).fetchall()
    later = conn.execute(
        f"SELECT MIN(r.next_try) {waiting} AND r.next_try > ?", (route.value, now)
    ).fetchone()
    return [r[0] for r in due], (None if later[0] is None else float(later[0]))


def apply_changes(
    conn: sqlite3.Connection,
    queue_id: str,
    changed: Iterable[QueuedRecipient],
    added: Iterable[QueuedRecipient],
) -> str | None:
    """Write the rows' new states and the expansion rows; if the message is then finished
    (no row waiting, no bounce owed) delete it and return its spool file name."""
    for r in changed:
        conn.execute(
            "UPDATE recipients SET route = ?, status = ?, account = ?, tag = ?, attempts = ?,"
            " next_try = ?, last_error = ?, dsn = ?, updated = ? WHERE id = ? AND queue_id = ?",
            (
                r.route.value,
                r.status.value,
                r.account,
                r.tag,
                r.attempts,
                r.next_try,
                r.last_error,
                r.dsn,
                r.updated,
                r.id,
                queue_id,
            ),
        )
    for r in added:
        _insert_recipient(conn, queue_id, r)
    return delete_if_finished(conn, queue_id)


def delete_if_finished(conn: sqlite3.Connection, queue_id: str) -> str | None:
    left = conn.execute(
        f"SELECT 1 FROM recipients WHERE queue_id = ? AND {_UNFINISHED} LIMIT 1", (queue_id,)
    ).fetchone()
    if left is not None:
        return None
    row = conn.execute(
        "DELETE FROM messages WHERE queue_id = ? RETURNING spool_name", (queue_id,)
    ).fetchone()
    conn.execute("DELETE FROM recipients WHERE queue_id = ?", (queue_id,))
    return None if row is None else str(row[0])


def spool_names(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT spool_name FROM messages")}


def migrate(conn: sqlite3.Connection) -> int:
    return apply_migrations(conn, MIGRATIONS)


# the asyncio face ------------------------------------------------------------------


class QueueDB:
    """The queue database on its own `SQLiteThread`. ``spool_dir`` makes `QueuedMessage`
    ``spool_path`` values. ``max_batch`` bounds group commit (1 turns it off)."""

    def __init__(
        self, path: Path, spool_dir: Path, *, busy_timeout: float = 10.0, max_batch: int = 64
    ) -> None:
        self.path = path
        self.spool_dir = spool_dir
        self._thread = SQLiteThread(
            path, name="queue", busy_timeout=busy_timeout, max_batch=max_batch, setup=migrate
        )

    async def open(self) -> None:
        await self._thread.start()

    async def close(self) -> None:
        await self._thread.close()

    async def insert(
        self, queue_id: str, envelope: Envelope, size: int, spool_name: str, now: float
    ) -> QueuedMessage:
        return await self._thread.run(
            insert_message, self.spool_dir, queue_id, envelope, size, spool_name, now
        )

    async def load(self, queue_id: str) -> QueuedMessage | None:
        return await self._thread.run(load_message, self.spool_dir, queue_id)

    async def list_all(self) -> list[QueuedMessage]:
        return await self._thread.run(list_messages, self.spool_dir)

    async def due(self, route: Route, now: float, limit: int) -> tuple[list[str], float | None]:
        return await self._thread.run(due_messages, route, now, limit)

    async def apply(
        self,
        queue_id: str,
        changed: Sequence[QueuedRecipient],
        added: Sequence[QueuedRecipient],
    ) -> str | None:
        return await self._thread.run(apply_changes, queue_id, changed, added)

    async def spool_names(self) -> set[str]:
        return await self._thread.run(spool_names)
