"""Transaction functions for accounts, mailboxes, subscriptions, STATUS and quota usage.

Each public function is one store operation run on the database thread in one transaction; it
returns an `Outcome` (value, changes to publish, blob files to delete after commit).

Invariants kept here:
- Names: ``INBOX`` in any case is stored as ``INBOX`` (RFC 9051 §5.1); other names are exact;
  ``/`` is the hierarchy delimiter; a trailing ``/`` on CREATE is dropped (RFC 9051 §6.3.4);
  empty names and empty levels (``a//b``) are refused.
- An account exists (has a row) once anything was created for it; it is *provisioned* once it
  has an INBOX, which can be neither deleted nor renamed away (RFC 9051 §6.3.5, §6.3.6).
- Every new mailbox gets a UIDVALIDITY greater than any issued before in this store (the
  ``uidvalidity`` counter), so a name reused after DELETE or RENAME never repeats one
  (RFC 9051 §2.3.1.1).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from posthorn.store.base import (
    DEFAULT_MAILBOXES,
    Change,
    ChangeKind,
    Mailbox,
    MailboxCounters,
    MailboxExists,
    MailboxNotAllowed,
    MailboxStatus,
    NoSuchMailbox,
    QuotaUsage,
)
from posthorn.store.sqlite.common import (
    DELETED,
    INBOX,
    MAX_UID,
    SEEN,
    MailboxRow,
    Outcome,
    account_id,
    ensure_account_row,
    mailbox_by_name,
    next_modseq,
    owned_mailbox,
)
from posthorn.store.sqlite.messages import release_messages

Clock = Callable[[], float]
DELIMITER = "/"


def normalise_name(name: str) -> str:
    """The stored form of a mailbox name; raises `MailboxNotAllowed` for unusable names."""
    if name.endswith(DELIMITER):
        name = name.rstrip(DELIMITER)
    if name.upper() == INBOX:
        return INBOX
    if not name or "" in name.split(DELIMITER):
        raise MailboxNotAllowed(f"invalid mailbox name {name!r}")
    return name


def _lookup_name(name: str) -> str:
    """Like `normalise_name`, for lookups: an unusable name simply does not exist."""
    try:
        return normalise_name(name)
    except MailboxNotAllowed:
        raise NoSuchMailbox(f"no mailbox {name!r}") from None


def _mailbox_changed(account: str, mailbox_id: int = 0) -> Change:
    return Change(account, mailbox_id, ChangeKind.MAILBOXES, (), 0)


# accounts ----------------------------------------------------------------------------


def ensure_account(conn: sqlite3.Connection, account: str, clock: Clock) -> Outcome[None]:
    """Give an account without INBOX the missing `DEFAULT_MAILBOXES`, subscribed."""
    acc = ensure_account_row(conn, account)
    if mailbox_by_name(conn, acc, INBOX) is not None:
        return Outcome(None)
    for name, special_use in DEFAULT_MAILBOXES:
        if mailbox_by_name(conn, acc, name) is None:
            _insert_mailbox(conn, acc, name, special_use, clock)
        conn.execute(
            "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)", (acc, name)
        )
    return Outcome(None, [_mailbox_changed(account)])


def delete_account(conn: sqlite3.Connection, account: str) -> Outcome[None]:
    acc = account_id(conn, account)
    if acc is None:
        return Outcome(None)
    dead: list[str] = []
    boxes = [r[0] for r in conn.execute("SELECT id FROM mailboxes WHERE account_id = ?", (acc,))]
    for box in boxes:
        dead += release_messages(conn, acc, box, None)
        conn.execute("DELETE FROM expunged WHERE mailbox_id = ?", (box,))
    conn.execute("DELETE FROM mailboxes WHERE account_id = ?", (acc,))
    conn.execute("DELETE FROM subscriptions WHERE account_id = ?", (acc,))
    conn.execute("DELETE FROM accounts WHERE id = ?", (acc,))
    return Outcome(None, [_mailbox_changed(account)], dead)


def quota_usage(conn: sqlite3.Connection, account: str) -> Outcome[QuotaUsage]:
    row = conn.execute(
        "SELECT used_bytes, used_messages FROM accounts WHERE name = ?", (account,)
    ).fetchone()
    return Outcome(QuotaUsage(0, 0) if row is None else QuotaUsage(row[0], row[1]))


# mailboxes ---------------------------------------------------------------------------


def _new_uidvalidity(conn: sqlite3.Connection, clock: Clock) -> int:
    """Time-based, but always above the last one issued (RFC 9051 §2.3.1.1)."""
    row = conn.execute("SELECT value FROM counters WHERE name = 'uidvalidity'").fetchone()
    last = 0 if row is None else int(row[0])
    value = max(last + 1, int(clock()))
    if value > MAX_UID:
        raise OverflowError("UIDVALIDITY counter exhausted")
    conn.execute(
        "INSERT INTO counters (name, value) VALUES ('uidvalidity', ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (value,),
    )
    return value


def _insert_mailbox(
    conn: sqlite3.Connection, acc: int, name: str, special_use: str | None, clock: Clock
) -> int:
    cur = conn.execute(
        "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) VALUES (?, ?, ?, ?)",
        (acc, name, special_use, _new_uidvalidity(conn, clock)),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def _create_parents(conn: sqlite3.Connection, acc: int, name: str, clock: Clock) -> None:
    """RFC 9051 §6.3.4 / §6.3.6: superior names needed by CREATE or RENAME are created."""
    levels = name.split(DELIMITER)
    for depth in range(1, len(levels)):
        parent = normalise_name(DELIMITER.join(levels[:depth]))
        if mailbox_by_name(conn, acc, parent) is None:
            _insert_mailbox(conn, acc, parent, None, clock)


def _as_mailbox(conn: sqlite3.Connection, row: MailboxRow) -> Mailbox:
    subscribed = conn.execute(
        "SELECT 1 FROM subscriptions WHERE account_id = ? AND name = ?",
        (row.account_id, row.name),
    ).fetchone()
    return Mailbox(row.id, row.name, row.uidvalidity, row.special_use, subscribed is not None)


def list_mailboxes(conn: sqlite3.Connection, account: str) -> Outcome[list[Mailbox]]:
    rows = conn.execute(
        "SELECT m.id, m.name, m.uidvalidity, m.special_use, s.name IS NOT NULL"
        " FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
        " LEFT JOIN subscriptions s ON s.account_id = m.account_id AND s.name = m.name"
        " WHERE a.name = ?",
        (account,),
    ).fetchall()
    boxes = [Mailbox(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]
    boxes.sort(key=lambda b: (b.name != INBOX, b.name))
    return Outcome(boxes)


def get_mailbox(conn: sqlite3.Connection, account: str, name: str) -> Outcome[Mailbox]:
    wanted = _lookup_name(name)
    acc = account_id(conn, account)
    row = None if acc is None else mailbox_by_name(conn, acc, wanted)
    if row is None:
        raise NoSuchMailbox(f"no mailbox {name!r}")
    return Outcome(_as_mailbox(conn, row))


def create_mailbox(
    conn: sqlite3.Connection, account: str, name: str, special_use: str | None, clock: Clock
) -> Outcome[Mailbox]:
    wanted = normalise_name(name)
    acc = ensure_account_row(conn, account)
    if mailbox_by_name(conn, acc, wanted) is not None:
        raise MailboxExists(f"mailbox {wanted!r} exists")
    _create_parents(conn, acc, wanted, clock)
    box_id = _insert_mailbox(conn, acc, wanted, special_use, clock)
    row = mailbox_by_name(conn, acc, wanted)
    assert row is not None and row.id == box_id
    return Outcome(_as_mailbox(conn, row), [_mailbox_changed(account, box_id)])


def rename_mailbox(
    conn: sqlite3.Connection, account: str, old: str, new: str, clock: Clock
) -> Outcome[None]:
    """RFC 9051 §6.3.6 RENAME."""
    src_name = _lookup_name(old)
    dst_name = normalise_name(new)
    acc = account_id(conn, account)
    src = None if acc is None else mailbox_by_name(conn, acc, src_name)
    if acc is None or src is None:
        raise NoSuchMailbox(f"no mailbox {old!r}")
    if dst_name == src_name:
        raise MailboxNotAllowed("cannot rename a mailbox onto itself")
    if src_name == INBOX:
        return _rename_inbox(conn, account, src, dst_name, clock)
    if dst_name.startswith(src_name + DELIMITER):
        raise MailboxNotAllowed("cannot rename a mailbox into its own hierarchy")
    moves = [(src.id, src_name, dst_name)]
    children = conn.execute(
        "SELECT id, name FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ?",
        (acc, len(src_name) + 1, src_name + DELIMITER),
    ).fetchall()
    moves += [(cid, cname, dst_name + cname[len(src_name) :]) for cid, cname in children]
    for _, _, target in moves:
        if mailbox_by_name(conn, acc, target) is not None:
            raise MailboxExists(f"mailbox {target!r} exists")
    for box_id, _, target in moves:
        conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (target, box_id))
    _create_parents(conn, acc, dst_name, clock)
    for _, before, after in moves:
        _move_subscription(conn, acc, before, after)
    return Outcome(None, [_mailbox_changed(account, src.id)])


def _move_subscription(conn: sqlite3.Connection, acc: int, before: str, after: str) -> None:
    """A subscribed mailbox stays subscribed under its new name."""
    gone = conn.execute(
        "DELETE FROM subscriptions WHERE account_id = ? AND name = ? RETURNING name", (acc, before)
    ).fetchone()
    if gone is not None:
        conn.execute(
            "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)", (acc, after)
        )


def _rename_inbox(
    conn: sqlite3.Connection, account: str, inbox: MailboxRow, new: str, clock: Clock
) -> Outcome[None]:
    """RFC 9051 §6.3.6: renaming INBOX moves its messages to a new mailbox and leaves INBOX
    empty; INBOX keeps its identity (id, UIDVALIDITY) and its children stay where they are.
    The messages keep their UIDs and MODSEQs in the new mailbox (it has a new UIDVALIDITY);
    in INBOX they are expunged."""
    if mailbox_by_name(conn, inbox.account_id, new) is not None:
        raise MailboxExists(f"mailbox {new!r} exists")
    _create_parents(conn, inbox.account_id, new, clock)
    new_id = _insert_mailbox(conn, inbox.account_id, new, None, clock)
    moved = [
        r[0]
        for r in conn.execute(
            "UPDATE messages SET mailbox_id = ? WHERE mailbox_id = ? RETURNING uid",
            (new_id, inbox.id),
        )
    ]
    moved.sort()
    conn.execute(
        "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
        (inbox.uidnext, inbox.highestmodseq, new_id),
    )
    changes = [_mailbox_changed(account, new_id)]
    if moved:
        modseq = next_modseq(conn, inbox.id)
        conn.executemany(
            "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
            [(inbox.id, uid, modseq) for uid in moved],
        )
        changes.append(Change(account, inbox.id, ChangeKind.EXPUNGE, tuple(moved), modseq))
    return Outcome(None, changes)


def delete_mailbox(conn: sqlite3.Connection, account: str, name: str) -> Outcome[None]:
    """RFC 9051 §6.3.5 DELETE: messages go, children and subscriptions stay."""
    wanted = _lookup_name(name)
    if wanted == INBOX:
        raise MailboxNotAllowed("INBOX cannot be deleted")
    acc = account_id(conn, account)
    row = None if acc is None else mailbox_by_name(conn, acc, wanted)
    if acc is None or row is None:
        raise NoSuchMailbox(f"no mailbox {name!r}")
    dead = release_messages(conn, acc, row.id, None)
    conn.execute("DELETE FROM expunged WHERE mailbox_id = ?", (row.id,))
    conn.execute("DELETE FROM mailboxes WHERE id = ?", (row.id,))
    return Outcome(None, [_mailbox_changed(account, row.id)], dead)


# subscriptions -----------------------------------------------------------------------


def set_subscribed(
    conn: sqlite3.Connection, account: str, name: str, subscribed: bool
) -> Outcome[None]:
    """RFC 9051 §6.3.7/§6.3.8: names, whether or not such a mailbox exists."""
    wanted = normalise_name(name)
    acc = ensure_account_row(conn, account)
    if subscribed:
        conn.execute(
            "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)", (acc, wanted)
        )
    else:
        conn.execute("DELETE FROM subscriptions WHERE account_id = ? AND name = ?", (acc, wanted))
    return Outcome(None, [_mailbox_changed(account)])


def list_subscriptions(conn: sqlite3.Connection, account: str) -> Outcome[list[str]]:
    rows = conn.execute(
        "SELECT s.name FROM subscriptions s JOIN accounts a ON a.id = s.account_id"
        " WHERE a.name = ?",
        (account,),
    ).fetchall()
    return Outcome(sorted((r[0] for r in rows), key=lambda n: (n != INBOX, n)))


# status ------------------------------------------------------------------------------


def status(conn: sqlite3.Connection, account: str, mailbox_id: int) -> Outcome[MailboxStatus]:
    """RFC 9051 §6.3.11 STATUS (+ RFC 7162 §3.1.2.1 HIGHESTMODSEQ, RFC 9208 SIZE).

    The counts come from one scan of the mailbox's (small, clustered) message rows rather
    than from counters kept on every change: always right, ≈ 2 ms per 10,000 messages. Keep
    counters in ``mailboxes`` if STATUS of very large mailboxes ever shows up in profiles."""
    box = owned_mailbox(conn, account, mailbox_id)
    messages, unseen, deleted, size = conn.execute(
        f"SELECT count(*), total((flags & {SEEN}) = 0), total((flags & {DELETED}) != 0),"
        " total(size) FROM messages WHERE mailbox_id = ?",
        (box.id,),
    ).fetchone()
    return Outcome(
        MailboxStatus(
            mailbox_id=box.id,
            uidvalidity=box.uidvalidity,
            uidnext=box.uidnext,
            highestmodseq=box.highestmodseq,
            messages=int(messages),
            unseen=int(unseen),
            deleted=int(deleted),
            size=int(size),
        )
    )


def counters(conn: sqlite3.Connection, account: str, mailbox_id: int) -> Outcome[MailboxCounters]:
    box = owned_mailbox(conn, account, mailbox_id)
    return Outcome(MailboxCounters(box.id, box.uidvalidity, box.uidnext, box.highestmodseq))


def default_clock() -> float:
    return time.time()
