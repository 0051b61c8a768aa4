"""Encodings and lookups shared by the SQLite store's transaction functions.

Owns: how flags, dates and UID ranges are represented in SQL, the `Outcome` every transaction
function returns (its value plus what must happen after commit), and the account/mailbox
lookups that enforce per-account isolation.

Invariants:
- System flags are bits in ``messages.flags``; keywords a sorted JSON array in
  ``messages.keywords`` (NULL when none). ``\\Recent`` is never stored (RFC 9051 §2.3.2).
- Every ``mailbox_id`` a caller passes is looked up together with the account name
  (`owned_mailbox`): a mailbox of another account is indistinguishable from a missing one.
- Everything here runs on the database thread inside the caller's transaction.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Generic, TypeVar

from posthorn.store.base import (
    Change,
    NoSuchMailbox,
    UIDRanges,
    canonical_flag,
)

T = TypeVar("T")

FLAG_BITS: dict[str, int] = {
    "\\Seen": 1,
    "\\Answered": 2,
    "\\Flagged": 4,
    "\\Deleted": 8,
    "\\Draft": 16,
}
"""System flag bits as stored in ``messages.flags``: on disk, so never renumber them (a new
system flag in `SYSTEM_FLAGS` needs a new bit; a unit test checks they match)."""
SEEN = FLAG_BITS["\\Seen"]
DELETED = FLAG_BITS["\\Deleted"]
_RECENT = "\\recent"

MAX_UID = 2**32 - 1
"""UIDs are nz-number (RFC 9051 §9: 32-bit unsigned)."""

INBOX = "INBOX"


@dataclass(slots=True)
class Outcome(Generic[T]):
    """What a transaction function hands back: its value, the changes to publish after the
    commit, and blob files to delete after the commit (their last reference is gone, or they
    were staged and never referenced)."""

    value: T
    changes: list[Change] = field(default_factory=list)
    dead_blobs: list[str] = field(default_factory=list)


# flags -----------------------------------------------------------------------------


def encode_flags(flags: Iterable[str]) -> tuple[int, str | None]:
    """(system flag bits, keywords JSON or None). Canonicalises system flags, drops \\Recent."""
    bits = 0
    keywords: set[str] = set()
    for raw in flags:
        flag = canonical_flag(raw)
        bit = FLAG_BITS.get(flag)
        if bit is not None:
            bits |= bit
        elif flag.lower() != _RECENT:
            keywords.add(flag)
    return bits, encode_keywords(keywords)


def encode_keywords(keywords: Iterable[str]) -> str | None:
    ordered = sorted(keywords)
    return json.dumps(ordered, ensure_ascii=False) if ordered else None


def decode_keywords(text: str | None) -> frozenset[str]:
    if not text:
        return frozenset()
    return frozenset(json.loads(text))


class FlagDecoder:
    """Turns (bits, keywords JSON) into frozensets, sharing equal sets: FETCH FLAGS of 10,000
    messages usually has a handful of distinct flag combinations."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, str | None], frozenset[str]] = {}

    def __call__(self, bits: int, keywords: str | None) -> frozenset[str]:
        key = (bits, keywords)
        found = self._cache.get(key)
        if found is None:
            system = {f for f, b in FLAG_BITS.items() if bits & b}
            found = frozenset(system) | decode_keywords(keywords)
            self._cache[key] = found
        return found


# dates -----------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_date(when: datetime | None) -> tuple[int, int]:
    """(microseconds since the epoch, UTC offset in seconds). A naive datetime is taken as UTC;
    None means now (whole seconds, as IMAP INTERNALDATE has no fractions)."""
    if when is None:
        when = datetime.now(UTC).replace(microsecond=0)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    offset = when.utcoffset() or timedelta(0)
    delta = when - _EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros, int(offset.total_seconds())


@functools.lru_cache(maxsize=64)
def _epoch_in(offset: int) -> datetime:
    return _EPOCH.astimezone(timezone(timedelta(seconds=offset))) if offset else _EPOCH


def decode_date(micros: int, offset: int) -> datetime:
    return _epoch_in(offset) + timedelta(microseconds=micros)


# UID ranges ------------------------------------------------------------------------

_MAX_SQL_RANGES = 64


def normalise_ranges(uids: UIDRanges) -> list[tuple[int, int]]:
    """Sorted, merged, non-empty ranges; (5, 3) is read as (3, 5) like IMAP's ``5:3``."""
    spans = sorted((min(a, b), max(a, b)) for a, b in uids)
    merged: list[tuple[int, int]] = []
    for lo, hi in spans:
        if hi < 1:
            continue
        lo = max(lo, 1)
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def uid_filter(uids: UIDRanges | None, column: str = "uid") -> tuple[str, list[int], bool]:
    """An SQL condition on ``column`` for ``uids`` (None = all), its parameters, and whether
    the caller must still filter rows in Python (`in_ranges`) because the set was too
    fragmented for one SQL expression."""
    if uids is None:
        return "1", [], False
    spans = normalise_ranges(uids)
    if not spans:
        return "0", [], False
    if len(spans) <= _MAX_SQL_RANGES:
        terms = " OR ".join(f"{column} BETWEEN ? AND ?" for _ in spans)
        return f"({terms})", [v for span in spans for v in span], False
    return f"{column} BETWEEN ? AND ?", [spans[0][0], spans[-1][1]], True


def in_ranges(uid: int, spans: list[tuple[int, int]]) -> bool:
    """Whether ``uid`` lies in normalised ``spans`` (binary search)."""
    lo, hi = 0, len(spans)
    while lo < hi:
        mid = (lo + hi) // 2
        first, last = spans[mid]
        if uid < first:
            hi = mid
        elif uid > last:
            lo = mid + 1
        else:
            return True
    return False


# lookups ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailboxRow:
    id: int
    account_id: int
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int


_MAILBOX_COLUMNS = (
    "m.id, m.account_id, m.name, m.special_use, m.uidvalidity, m.uidnext, m.highestmodseq"
)


def owned_mailbox(conn: sqlite3.Connection, account: str, mailbox_id: int) -> MailboxRow:
    """The mailbox if it belongs to ``account``; otherwise `NoSuchMailbox` (isolation)."""
    row = conn.execute(
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
        " WHERE m.id = ? AND a.name = ?",
        (mailbox_id, account),
    ).fetchone()
    if row is None:
        raise NoSuchMailbox(f"no mailbox {mailbox_id} for this account")
    return MailboxRow(*row)


def mailbox_by_name(conn: sqlite3.Connection, account_id: int, name: str) -> MailboxRow | None:
    row = conn.execute(
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes m WHERE m.account_id = ? AND m.name = ?",
        (account_id, name),
    ).fetchone()
    return None if row is None else MailboxRow(*row)


def account_id(conn: sqlite3.Connection, account: str) -> int | None:
    row = conn.execute("SELECT id FROM accounts WHERE name = ?", (account,)).fetchone()
    return None if row is None else int(row[0])


def ensure_account_row(conn: sqlite3.Connection, account: str) -> int:
    found = account_id(conn, account)
    if found is not None:
        return found
    cur = conn.execute("INSERT INTO accounts (name) VALUES (?)", (account,))
    assert cur.lastrowid is not None
    return cur.lastrowid


def next_modseq(conn: sqlite3.Connection, mailbox_id: int) -> int:
    """Take the mailbox's next MODSEQ (RFC 7162 §3.1: strictly ascending per mailbox). One
    operation takes one MODSEQ for all the messages it changes in that mailbox."""
    row = conn.execute(
        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?"
        " RETURNING highestmodseq",
        (mailbox_id,),
    ).fetchone()
    return int(row[0])


def take_uids(conn: sqlite3.Connection, mailbox_id: int, count: int) -> int:
    """Reserve ``count`` consecutive UIDs (RFC 9051 §2.3.1.1: strictly ascending, never
    reused); returns the first."""
    row = conn.execute(
        "UPDATE mailboxes SET uidnext = uidnext + ? WHERE id = ? RETURNING uidnext",
        (count, mailbox_id),
    ).fetchone()
    first = int(row[0]) - count
    if int(row[0]) - 1 > MAX_UID:
        raise OverflowError("mailbox ran out of UIDs")
    return first
