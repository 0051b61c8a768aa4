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
- `apply_changes` logs every try (a row whose ``attempts`` went up) in ``attempts``, in its own
  transaction, so the runner writes the attempt log without knowing about it.
- A message deleted (``posthorn queue delete``) or finished by the operator while a delivery
  pass was running is gone for good: `apply_changes` on a message without its row writes
  nothing, so the pass can neither resurrect rows nor leave orphans.
- The operator's functions (`hold`, `release`, `retry`, `delete`, `bounce`) raise
  `UnknownMessage` for a queue id that is not queued, and return what they changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from posthorn.queue.envelope import Envelope, EnvelopeRecipient, Notify
from posthorn.queue.records import (
    DSN_PENDING,
    LoggedAttempt,
    MessageState,
    QueuedMessage,
    QueuedRecipient,
    Route,
    Status,
)
from posthorn.queue.schedule import owes_bounce
from posthorn.queue.schema import MIGRATIONS
from posthorn.store.sqlite.db import SQLiteThread, apply_migrations

_MESSAGE_COLUMNS: Final = (
    "queue_id, mail_from, received, ret, envid, body, smtputf8, auth, client_ip, helo,"
    " protocol, size, spool_name, created, state"
)
_RECIPIENT_COLUMNS: Final = (
    "id, address, route, status, notify, orcpt, parent, account, tag, attempts, next_try,"
    " last_error, dsn, updated, remote, delay_dsn"
)
_UNFINISHED: Final = "(status IN ('pending', 'deferred', 'held') OR dsn = 'pending')"

BOUNCED_BY_ADMIN: Final = "5.0.0 bounced by the administrator"
"""The reply `bounce` records: RFC 3463 §3.1 X.0.0, other undefined status (permanent)."""


class UnknownMessage(LookupError):
    """No message with this queue id is queued (never was, or is finished or deleted)."""

    def __init__(self, queue_id: str) -> None:
        super().__init__(f"no queued message {queue_id}")
        self.queue_id = queue_id


@dataclass(frozen=True, slots=True)
class Retried:
    """What `retry` changed: ``recipients`` waiting rows made due now, in ``messages``
    messages, ``held`` of which are held (their rows are due, but wait for ``release``)."""

    messages: int
    recipients: int
    held: int


@dataclass(frozen=True, slots=True)
class Bounced:
    """What `bounce` changed: the rows it failed (as written), and the spool file name to
    delete when that finished the message (no row left waiting, no DSN owed)."""

    rows: tuple[QueuedRecipient, ...]
    removed: str | None


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
        remote=row[14],
        delay_dsn=row[15],
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
        " account, tag, attempts, next_try, last_error, dsn, updated, remote, delay_dsn)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
            r.remote,
            r.delay_dsn,
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
    """Write the rows' new states and the expansion rows, and log every try (a changed row
    whose ``attempts`` went up, an added row tried in the same pass); if the message is then
    finished (no row waiting, no bounce owed) delete it and return its spool file name.

    A message no longer queued (deleted by the operator meanwhile) is left alone: None."""
    if not _exists(conn, queue_id):
        return None
    for r in changed:
        # Before the UPDATE, while the row still has its old count: one statement decides
        # and logs, so the runner need not know the attempt log exists.
        conn.execute(
            "INSERT INTO attempts (recipient_id, queue_id, at, status, reply, remote)"
            " SELECT id, queue_id, ?, ?, ?, ? FROM recipients"
            " WHERE id = ? AND queue_id = ? AND attempts < ?",
            (r.updated, r.status.value, r.last_error, r.remote, r.id, queue_id, r.attempts),
        )
        conn.execute(
            "UPDATE recipients SET route = ?, status = ?, account = ?, tag = ?, attempts = ?,"
            " next_try = ?, last_error = ?, dsn = ?, updated = ?, remote = ?, delay_dsn = ?"
            " WHERE id = ? AND queue_id = ?",
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
                r.remote,
                r.delay_dsn,
                r.id,
                queue_id,
            ),
        )
    for r in added:
        rid = _insert_recipient(conn, queue_id, r)
        if r.attempts > 0:
            _log_attempt(conn, queue_id, replace(r, id=rid))
    return delete_if_finished(conn, queue_id)


def _log_attempt(conn: sqlite3.Connection, queue_id: str, r: QueuedRecipient) -> None:
    conn.execute(
        "INSERT INTO attempts (recipient_id, queue_id, at, status, reply, remote)"
        " VALUES (?,?,?,?,?,?)",
        (r.id, queue_id, r.updated, r.status.value, r.last_error, r.remote),
    )


def _exists(conn: sqlite3.Connection, queue_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM messages WHERE queue_id = ?", (queue_id,)).fetchone()
    return row is not None


def delete_if_finished(conn: sqlite3.Connection, queue_id: str) -> str | None:
    left = conn.execute(
        f"SELECT 1 FROM recipients WHERE queue_id = ? AND {_UNFINISHED} LIMIT 1", (queue_id,)
    ).fetchone()
    if left is not None:
        return None
    return _delete(conn, queue_id)


def _delete(conn: sqlite3.Connection, queue_id: str) -> str | None:
    """Delete the message with its rows and attempt log; returns its spool file name."""
    row = conn.execute(
        "DELETE FROM messages WHERE queue_id = ? RETURNING spool_name", (queue_id,)
    ).fetchone()
    conn.execute("DELETE FROM recipients WHERE queue_id = ?", (queue_id,))
    conn.execute("DELETE FROM attempts WHERE queue_id = ?", (queue_id,))
    return None if row is None else str(row[0])


def mark_notified(
    conn: sqlite3.Connection,
    queue_id: str,
    dsn_ids: Iterable[int],
    delay_ids: Iterable[int],
) -> str | None:
    """Record notices that went out (the bouncer, after committing the DSN message): rows
    ``dsn_ids`` get ``dsn = 'sent'``, rows ``delay_ids`` ``delay_dsn = 'sent'``. If the message
    is then finished, delete it and return its spool file name (as `apply_changes`)."""
    if not _exists(conn, queue_id):
        return None
    conn.executemany(
        "UPDATE recipients SET dsn = 'sent' WHERE id = ? AND queue_id = ?",
        [(rid, queue_id) for rid in dsn_ids],
    )
    conn.executemany(
        "UPDATE recipients SET delay_dsn = 'sent' WHERE id = ? AND queue_id = ?",
        [(rid, queue_id) for rid in delay_ids],
    )
    return delete_if_finished(conn, queue_id)


# the operator's functions (``posthorn queue ...``) ------------------------------------


def _state(conn: sqlite3.Connection, queue_id: str) -> MessageState:
    row = conn.execute("SELECT state FROM messages WHERE queue_id = ?", (queue_id,)).fetchone()
    if row is None:
        raise UnknownMessage(queue_id)
    return MessageState(row[0])


def _set_state(conn: sqlite3.Connection, queue_id: str, state: MessageState) -> bool:
    """Set the message's state; True if that changed it."""
    if _state(conn, queue_id) is state:
        return False
    conn.execute("UPDATE messages SET state = ? WHERE queue_id = ?", (state.value, queue_id))
    return True


def hold(conn: sqlite3.Connection, queue_id: str) -> bool:
    """Hold the message: no delivery pass takes it (`due_messages` skips it) until `release`.
    A pass already running finishes. Returns False if it was held already."""
    return _set_state(conn, queue_id, MessageState.HELD)


def release(conn: sqlite3.Connection, queue_id: str) -> bool:
    """Undo `hold`; the rows keep their retry times. Returns False if it was not held."""
    return _set_state(conn, queue_id, MessageState.ACTIVE)


def retry(conn: sqlite3.Connection, queue_id: str | None, now: float) -> Retried:
    """Make the waiting (pending or deferred) rows of one message, or of every message
    (``queue_id`` None), due at ``now``: the next scan tries them. Attempt counts and the
    lifetime are unchanged. A held message stays held: retry is about *when*, hold about
    *whether*; its rows are due as soon as it is released."""
    scope, args = ("", ()) if queue_id is None else (" AND queue_id = ?", (queue_id,))
    if queue_id is not None:
        _state(conn, queue_id)
    rows = conn.execute(
        # Rows already due are written too: the commit is what tells a running server (its
        # runners watch data_version) to drop a pause it keeps only in memory.
        "UPDATE recipients SET next_try = MIN(next_try, ?)"
        f" WHERE status IN ('pending', 'deferred'){scope} RETURNING queue_id",
        (now, *args),
    ).fetchall()
    touched = {r[0] for r in rows}
    held = sum(
        1
        for q in touched
        if conn.execute(
            "SELECT 1 FROM messages WHERE queue_id = ? AND state = 'held'", (q,)
        ).fetchone()
    )
    return Retried(messages=len(touched), recipients=len(rows), held=held)


def delete(conn: sqlite3.Connection, queue_id: str) -> str:
    """Delete the message, its rows and attempt log, sending nothing (no DSN: the operator
    decided). Returns the spool file name, which the caller deletes after the commit."""
    name = _delete(conn, queue_id)
    if name is None:
        raise UnknownMessage(queue_id)
    return name


def bounce(conn: sqlite3.Connection, spool_dir: Path, queue_id: str, now: float) -> Bounced:
    """Fail every waiting row (pending, deferred, held) for good with `BOUNCED_BY_ADMIN`; a
    row owes the sender a DSN by the usual rule (`schedule.owes_bounce`: not to the null
    reverse path, only if NOTIFY allows). A held message is released, so the bouncer sends
    the DSN. A message left with nothing to do is deleted (``removed``, as `apply_changes`)."""
    message = load_message(conn, spool_dir, queue_id)
    if message is None:
        raise UnknownMessage(queue_id)
    failed = tuple(
        replace(
            r,
            status=Status.FAILED,
            last_error=BOUNCED_BY_ADMIN,
            dsn=DSN_PENDING if owes_bounce(message, r.notify) else None,
            next_try=now,
            updated=now,
        )
        for r in message.recipients
        if r.waiting
    )
    for r in failed:
        conn.execute(
            "UPDATE recipients SET status = ?, last_error = ?, dsn = ?, next_try = ?,"
            " updated = ? WHERE id = ? AND queue_id = ?",
            (r.status.value, r.last_error, r.dsn, r.next_try, r.updated, r.id, queue_id),
        )
    if failed:
        _set_state(conn, queue_id, MessageState.ACTIVE)
    return Bounced(failed, delete_if_finished(conn, queue_id))


def attempt_log(conn: sqlite3.Connection, queue_id: str) -> list[LoggedAttempt]:
    """The message's attempt log, oldest first."""
    _state(conn, queue_id)
    rows = conn.execute(
        "SELECT a.recipient_id, r.address, a.at, a.status, a.reply, a.remote"
        " FROM attempts a LEFT JOIN recipients r ON r.id = a.recipient_id"
        " WHERE a.queue_id = ? ORDER BY a.at, a.id",
        (queue_id,),
    )
    return [
        LoggedAttempt(int(r[0]), r[1] or "?", float(r[2]), Status(r[3]), r[4], r[5]) for r in rows
    ]


def data_version(conn: sqlite3.Connection) -> int:
    """SQLite's ``PRAGMA data_version``: changes whenever *another* connection (the
    ``posthorn queue`` CLI) committed to the database since this one last looked. Lets the
    runner notice the operator's changes with one cheap call instead of a scan."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


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

    async def mark_notified(
        self, queue_id: str, dsn_ids: Sequence[int], delay_ids: Sequence[int]
    ) -> str | None:
        """Returns a spool file name for the caller to delete, as `apply`."""
        return await self._thread.run(mark_notified, queue_id, dsn_ids, delay_ids)

    # the operator's side (also what ``posthorn queue`` runs on a connection of its own);
    # each raises `UnknownMessage` for a queue id that is not queued.
    async def hold(self, queue_id: str) -> bool:
        return await self._thread.run(hold, queue_id)

    async def release(self, queue_id: str) -> bool:
        return await self._thread.run(release, queue_id)

    async def retry(self, queue_id: str | None, now: float) -> Retried:
        return await self._thread.run(retry, queue_id, now)

    async def delete(self, queue_id: str) -> str:
        """Returns the spool file name: the caller deletes the file (`Spool.remove_file`)."""
        return await self._thread.run(delete, queue_id)

    async def bounce(self, queue_id: str, now: float) -> Bounced:
        """``removed``, when set, is a spool file name for the caller to delete."""
        return await self._thread.run(bounce, self.spool_dir, queue_id, now)

    async def attempt_log(self, queue_id: str) -> list[LoggedAttempt]:
        return await self._thread.run(attempt_log, queue_id)

    async def data_version(self) -> int:
        """See `data_version`: compare two results to learn whether another process (the
        CLI) changed the queue in between."""
        return await self._thread.run(data_version)
