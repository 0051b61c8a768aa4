"""Transaction functions for messages: append/deliver, fetch, locate, flags, expunge, copy/move.

Each public function here is one store operation: it runs on the database thread inside one
transaction (`posthorn.store.sqlite.db.SQLiteThread`) and returns an `Outcome` whose changes
the store publishes, and whose dead blobs it deletes, after the commit.

Invariants kept here:
- UIDs come from the mailbox's UIDNEXT and only go up (RFC 9051 §2.3.1.1). Every operation that
  changes a mailbox's messages takes one new MODSEQ for it (RFC 7162 §3.1): append, a flag
  change that really changes something, expunge, copy/move into it, move out of it.
- ``blobs.refs`` equals the number of ``messages`` rows pointing at the blob; the row whose refs
  reach zero is deleted in the same transaction and its file name returned as dead.
- ``accounts.used_bytes``/``used_messages`` equal the sums over the account's messages (each
  copy counts its full size, as RFC 9208 STORAGE is seen by the user).
- Errors a caller may see (`NoSuchMailbox`, `NoSuchMessage`, `QuotaExceeded`) are raised before
  the operation writes anything, so a per-delivery error needs no rollback of its own.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from posthorn.mail.info import MessageInfo
from posthorn.store.base import (
    AppendResult,
    Change,
    ChangeKind,
    CopyResult,
    FlagMode,
    FlagUpdate,
    MessageMeta,
    NoSuchMessage,
    QuotaExceeded,
    StoreError,
    StoreFlagsResult,
    UIDRanges,
)
from posthorn.store.sqlite.blobs import StagedBlob
from posthorn.store.sqlite.common import (
    DELETED,
    FlagDecoder,
    Outcome,
    decode_date,
    decode_keywords,
    encode_flags,
    encode_keywords,
    in_ranges,
    next_modseq,
    normalise_ranges,
    owned_mailbox,
    take_uids,
    uid_filter,
)


@dataclass(frozen=True, slots=True)
class NewCopy:
    """One copy of a staged blob to add to a mailbox (already encoded for SQL)."""

    account: str
    mailbox_id: int
    flags: frozenset[str]
    date: tuple[int, int]
    prefix: bytes
    quota: int | None


# adding ------------------------------------------------------------------------------


def store_new(
    conn: sqlite3.Connection, staged: StagedBlob, copies: Sequence[NewCopy]
) -> Outcome[list[AppendResult | StoreError]]:
    """Reference a freshly staged blob from each of ``copies``; results per copy, in order.
    A blob no copy took is dropped again (its file returned as dead)."""
    cur = conn.execute(
        "INSERT INTO blobs (name, size, info, header_size, refs) VALUES (?, ?, ?, ?, 0)",
        (staged.name, staged.size, staged.info_json, staged.header_size),
    )
    assert cur.lastrowid is not None
    blob_id = cur.lastrowid
    out: Outcome[list[AppendResult | StoreError]] = Outcome([])
    taken = 0
    for copy in copies:
        try:
            result = _add_copy(conn, blob_id, staged.size, copy)
        except StoreError as exc:
            out.value.append(exc)
            continue
        taken += 1
        out.value.append(result)
        out.changes.append(
            Change(copy.account, copy.mailbox_id, ChangeKind.NEW, (result.uid,), result.modseq)
        )
    if taken:
        conn.execute("UPDATE blobs SET refs = ? WHERE id = ?", (taken, blob_id))
    else:
        conn.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))
        out.dead_blobs.append(staged.name)
    return out


def _add_copy(
    conn: sqlite3.Connection, blob_id: int, blob_size: int, copy: NewCopy
) -> AppendResult:
    box = owned_mailbox(conn, copy.account, copy.mailbox_id)
    size = len(copy.prefix) + blob_size
    _check_quota(conn, box.account_id, size, copy.quota)
    uid = take_uids(conn, box.id, 1)
    modseq = next_modseq(conn, box.id)
    prefix_id = _insert_prefix(conn, copy.prefix)
    bits, keywords = encode_flags(copy.flags)
    row = (box.id, uid, modseq, bits, keywords, *copy.date, size, blob_id, prefix_id)
    _insert_rows(conn, [(*row, len(copy.prefix))])
    _add_usage(conn, box.account_id, size, 1)
    return AppendResult(box.uidvalidity, uid, modseq)


def _insert_prefix(conn: sqlite3.Connection, prefix: bytes) -> int | None:
    if not prefix:
        return None
    cur = conn.execute("INSERT INTO prefixes (data) VALUES (?)", (prefix,))
    return cur.lastrowid


def _check_quota(conn: sqlite3.Connection, account_id: int, size: int, quota: int | None) -> None:
    """RFC 9208 §5.1 STORAGE: refuse what would take the account past ``quota`` bytes."""
    if quota is None:
        return
    row = conn.execute("SELECT used_bytes FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if int(row[0]) + size > quota:
        raise QuotaExceeded(f"quota of {quota} bytes exceeded")


def _add_usage(conn: sqlite3.Connection, account_id: int, size: int, count: int) -> None:
    conn.execute(
        "UPDATE accounts SET used_bytes = used_bytes + ?, used_messages = used_messages + ?"
        " WHERE id = ?",
        (size, count, account_id),
    )


# reading -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetched:
    """`fetch`'s rows: metadata without info, and (only when asked for) each row's info JSON,
    decoded later by `attach_info` off the database thread."""

    metas: list[MessageMeta]
    infos: list[str] | None


def fetch(
    conn: sqlite3.Connection,
    account: str,
    mailbox_id: int,
    uids: UIDRanges | None,
    changed_since: int | None,
    with_info: bool,
) -> Outcome[Fetched]:
    """Metadata in UID order; the info JSON is read only ``with_info``, and never decoded
    here: decoding 10,000 of them takes long enough to hold up every other store call."""
    box = owned_mailbox(conn, account, mailbox_id)
    cond, params, post = uid_filter(uids, "m.uid")
    columns = "m.uid, m.modseq, m.flags, m.keywords, m.internal_date, m.tz_offset, m.size"
    if with_info:
        tables = ", m.prefix_size, b.info FROM messages m JOIN blobs b ON b.id = m.blob_id"
    else:
        tables = ", m.prefix_size FROM messages m"
    sql = f"SELECT {columns}{tables} WHERE m.mailbox_id = ? AND {cond}"
    args: list[int] = [box.id, *params]
    if changed_since is not None:
        # RFC 7162 §3.1.4.1 CHANGEDSINCE: only messages with a greater MODSEQ.
        sql += " AND m.modseq > ?"
        args.append(changed_since)
    sql += " ORDER BY m.uid"
    spans = normalise_ranges(uids) if post and uids is not None else []
    flags = FlagDecoder()
    metas: list[MessageMeta] = []
    infos: list[str] = []
    for row in conn.execute(sql, args):
        if post and not in_ranges(row[0], spans):
            continue
        metas.append(
            MessageMeta(
                uid=row[0],
                modseq=row[1],
                flags=flags(row[2], row[3]),
                internal_date=decode_date(row[4], row[5]),
                size=row[6],
                prefix_size=row[7],
            )
        )
        if with_info:
            infos.append(row[8])
    return Outcome(Fetched(metas, infos if with_info else None))


def attach_info(fetched: Fetched) -> list[MessageMeta]:
    """The metadata with its parse-once info decoded (blocking: run it on a worker thread).
    Copies of one blob share one decoded `MessageInfo`."""
    if fetched.infos is None:
        return fetched.metas
    decoded: dict[str, MessageInfo] = {}
    out: list[MessageMeta] = []
    for meta, text in zip(fetched.metas, fetched.infos, strict=True):
        info = decoded.get(text)
        if info is None:
            info = decoded[text] = MessageInfo.from_json(text)
        out.append(replace(meta, info=info))
    return out


@dataclass(frozen=True, slots=True)
class Located:
    """Where a message's bytes are: its prefix (in the database) and its blob file."""

    prefix: bytes
    blob_name: str
    blob_size: int


def locate(conn: sqlite3.Connection, account: str, mailbox_id: int, uid: int) -> Outcome[Located]:
    box = owned_mailbox(conn, account, mailbox_id)
    row = conn.execute(
        "SELECT b.name, b.size, p.data FROM messages m JOIN blobs b ON b.id = m.blob_id"
        " LEFT JOIN prefixes p ON p.id = m.prefix_id WHERE m.mailbox_id = ? AND m.uid = ?",
        (box.id, uid),
    ).fetchone()
    if row is None:
        raise NoSuchMessage(f"no message with UID {uid}")
    return Outcome(Located(bytes(row[2] or b""), row[0], row[1]))


@dataclass(frozen=True, slots=True)
class HeaderSpot:
    """Where one message's header section is: its prefix, then the blob's first bytes."""

    uid: int
    prefix: bytes
    blob_name: str
    header_size: int


def locate_headers(
    conn: sqlite3.Connection, account: str, mailbox_id: int, uids: Sequence[int]
) -> Outcome[list[HeaderSpot]]:
    """One query for the header locations of ``uids`` (missing ones are left out)."""
    box = owned_mailbox(conn, account, mailbox_id)
    spans = normalise_ranges(_as_ranges(uids))
    cond, params, post = uid_filter(spans, "m.uid")
    rows = conn.execute(
        "SELECT m.uid, p.data, b.name, b.header_size FROM messages m"
        " JOIN blobs b ON b.id = m.blob_id LEFT JOIN prefixes p ON p.id = m.prefix_id"
        f" WHERE m.mailbox_id = ? AND {cond} ORDER BY m.uid",
        [box.id, *params],
    )
    return Outcome(
        [
            HeaderSpot(r[0], bytes(r[1] or b""), r[2], r[3])
            for r in rows
            if not post or in_ranges(r[0], spans)
        ]
    )


def _as_ranges(uids: Sequence[int]) -> list[tuple[int, int]]:
    """Ascending UIDs as merged inclusive ranges (so a whole mailbox is one BETWEEN)."""
    spans: list[tuple[int, int]] = []
    for uid in sorted(set(uids)):
        if spans and uid == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], uid)
        else:
            spans.append((uid, uid))
    return spans


# flags -------------------------------------------------------------------------------


def store_flags(
    conn: sqlite3.Connection,
    account: str,
    mailbox_id: int,
    uids: UIDRanges,
    flags: frozenset[str],
    mode: FlagMode,
    unchanged_since: int | None,
) -> Outcome[StoreFlagsResult]:
    box = owned_mailbox(conn, account, mailbox_id)
    cond, params, post = uid_filter(uids)
    spans = normalise_ranges(uids) if post else []
    bits, kw_json = encode_flags(flags)
    keywords = decode_keywords(kw_json)
    failed: list[int] = []
    changed: list[tuple[int, int, str | None]] = []
    rows = conn.execute(
        "SELECT uid, modseq, flags, keywords FROM messages"
        f" WHERE mailbox_id = ? AND {cond} ORDER BY uid",
        [box.id, *params],
    ).fetchall()
    for uid, modseq, old_bits, old_kw_json in rows:
        if post and not in_ranges(uid, spans):
            continue
        # RFC 7162 §3.1.3: a message whose MODSEQ is above UNCHANGEDSINCE is not touched and
        # is reported as failed, whether or not the store would have changed it.
        if unchanged_since is not None and modseq > unchanged_since:
            failed.append(uid)
            continue
        old_kw = decode_keywords(old_kw_json)
        if mode is FlagMode.ADD:
            new_bits, new_kw = old_bits | bits, old_kw | keywords
        elif mode is FlagMode.REMOVE:
            new_bits, new_kw = old_bits & ~bits, old_kw - keywords
        else:
            new_bits, new_kw = bits, keywords
        if new_bits != old_bits or new_kw != old_kw:
            changed.append((uid, new_bits, encode_keywords(new_kw)))
    updated: list[FlagUpdate] = []
    out = Outcome(StoreFlagsResult(updated, failed))
    if not changed:
        return out
    modseq = next_modseq(conn, box.id)
    conn.executemany(
        "UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
        [(b, k, modseq, box.id, uid) for uid, b, k in changed],
    )
    decode = FlagDecoder()
    updated.extend(FlagUpdate(uid, modseq, decode(b, k)) for uid, b, k in changed)
    out.changes.append(
        Change(account, box.id, ChangeKind.FLAGS, tuple(u for u, _, _ in changed), modseq)
    )
    return out


# removing ----------------------------------------------------------------------------


def release_messages(
    conn: sqlite3.Connection, account_id: int, mailbox_id: int, uids: Sequence[int] | None
) -> list[str]:
    """Delete message rows (``uids``, or all of the mailbox's when None) with their prefixes,
    give back their quota and blob references; returns the blob files whose last reference
    went."""
    if uids is None:
        gone = conn.execute(
            "DELETE FROM messages WHERE mailbox_id = ? RETURNING size, blob_id, prefix_id",
            (mailbox_id,),
        ).fetchall()
    else:
        found = (
            conn.execute(
                "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?"
                " RETURNING size, blob_id, prefix_id",
                (mailbox_id, uid),
            ).fetchone()
            for uid in uids
        )
        gone = [r for r in found if r is not None]
    if not gone:
        return []
    conn.executemany(
        "DELETE FROM prefixes WHERE id = ?", [(r[2],) for r in gone if r[2] is not None]
    )
    _add_usage(conn, account_id, -sum(r[0] for r in gone), -len(gone))
    return _drop_refs(conn, Counter(r[1] for r in gone))


def _drop_refs(conn: sqlite3.Connection, counts: Counter[int]) -> list[str]:
    dead: list[str] = []
    for blob_id, n in counts.items():
        row = conn.execute(
            "UPDATE blobs SET refs = refs - ? WHERE id = ? RETURNING refs, name", (n, blob_id)
        ).fetchone()
        if row is not None and row[0] <= 0:
            conn.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))
            dead.append(row[1])
    return dead


def _record_expunged(
    conn: sqlite3.Connection, mailbox_id: int, uids: Sequence[int], modseq: int
) -> None:
    """RFC 7162 §3.2.10 (VANISHED): remember what went, and at which MODSEQ."""
    conn.executemany(
        "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
        [(mailbox_id, uid, modseq) for uid in uids],
    )


def expunge(
    conn: sqlite3.Connection,
    account: str,
    mailbox_id: int,
    uids: UIDRanges | None,
    only_deleted: bool,
) -> Outcome[list[int]]:
    """RFC 9051 §6.4.3 EXPUNGE (``\\Deleted`` only), RFC 4315 §2.1 UID EXPUNGE (``uids``)."""
    box = owned_mailbox(conn, account, mailbox_id)
    cond, params, post = uid_filter(uids)
    sql = f"SELECT uid FROM messages WHERE mailbox_id = ? AND {cond}"
    if only_deleted:
        sql += f" AND (flags & {DELETED}) != 0"
    gone = [r[0] for r in conn.execute(sql + " ORDER BY uid", [box.id, *params])]
    if post and uids is not None:
        spans = normalise_ranges(uids)
        gone = [u for u in gone if in_ranges(u, spans)]
    if not gone:
        return Outcome([])
    modseq = next_modseq(conn, box.id)
    dead = release_messages(conn, box.account_id, box.id, gone)
    _record_expunged(conn, box.id, gone, modseq)
    change = Change(account, box.id, ChangeKind.EXPUNGE, tuple(gone), modseq)
    return Outcome(gone, [change], dead)


def expunged_since(
    conn: sqlite3.Connection, account: str, mailbox_id: int, modseq: int
) -> Outcome[list[int]]:
    box = owned_mailbox(conn, account, mailbox_id)
    rows = conn.execute(
        "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
        (box.id, modseq),
    )
    return Outcome([r[0] for r in rows])


# copy and move -----------------------------------------------------------------------


def copy_messages(
    conn: sqlite3.Connection,
    account: str,
    mailbox_id: int,
    uids: UIDRanges,
    dest_mailbox_id: int,
    quota: int | None,
    move: bool,
) -> Outcome[CopyResult]:
    """RFC 9051 §6.4.7 COPY (flags and internal date kept, COPYUID mapping per RFC 4315 §3)
    and RFC 6851 MOVE (the same, then the sources expunged, atomically)."""
    src = owned_mailbox(conn, account, mailbox_id)
    dst = owned_mailbox(conn, account, dest_mailbox_id)
    cond, params, post = uid_filter(uids)
    rows = conn.execute(
        "SELECT uid, flags, keywords, internal_date, tz_offset, size, blob_id, prefix_id,"
        f" prefix_size FROM messages WHERE mailbox_id = ? AND {cond} ORDER BY uid",
        [src.id, *params],
    ).fetchall()
    if post:
        spans = normalise_ranges(uids)
        rows = [r for r in rows if in_ranges(r[0], spans)]
    if not rows:
        return Outcome(CopyResult(dst.uidvalidity, []))
    total = sum(r[5] for r in rows)
    if not move:
        _check_quota(conn, src.account_id, total, quota)
    first = take_uids(conn, dst.id, len(rows))
    dest_modseq = next_modseq(conn, dst.id)
    mapping = [(r[0], first + i) for i, r in enumerate(rows)]
    src_uids = [r[0] for r in rows]
    changes = [Change(account, dst.id, ChangeKind.NEW, tuple(u for _, u in mapping), dest_modseq)]
    if move:
        # The rows change mailbox and UID; their blob references, prefixes and the account's
        # usage stay as they are.
        conn.executemany(
            "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?",
            [(src.id, u) for u in src_uids],
        )
    else:
        _add_usage(conn, src.account_id, total, len(rows))
        _add_refs(conn, Counter(r[6] for r in rows))
    new_rows = []
    for (_, new_uid), r in zip(mapping, rows, strict=True):
        prefix_id = r[7] if move or r[7] is None else _copy_prefix(conn, r[7])
        new_rows.append((dst.id, new_uid, dest_modseq, *r[1:7], prefix_id, r[8]))
    _insert_rows(conn, new_rows)
    if not move:
        return Outcome(CopyResult(dst.uidvalidity, mapping), changes)
    src_modseq = next_modseq(conn, src.id)
    _record_expunged(conn, src.id, src_uids, src_modseq)
    changes.append(Change(account, src.id, ChangeKind.EXPUNGE, tuple(src_uids), src_modseq))
    return Outcome(CopyResult(dst.uidvalidity, mapping, src_uids), changes)


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    conn.executemany(
        "INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date,"
        " tz_offset, size, blob_id, prefix_id, prefix_size) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )


def _copy_prefix(conn: sqlite3.Connection, prefix_id: int) -> int:
    row = conn.execute(
        "INSERT INTO prefixes (data) SELECT data FROM prefixes WHERE id = ? RETURNING id",
        (prefix_id,),
    ).fetchone()
    return int(row[0])


def _add_refs(conn: sqlite3.Connection, counts: Counter[int]) -> None:
    conn.executemany(
        "UPDATE blobs SET refs = refs + ? WHERE id = ?", [(n, b) for b, n in counts.items()]
    )
