"""Read-only verification of the embedded store (``posthorn check``): database and files agree.

Owns `Finding` (one line of the report), `open_readonly`, `check_database` (SQLite's own
``integrity_check``) and `check_store` (``mail.sqlite3`` against ``blobs/``). The queue's half
is `posthorn.queue.check`; the CLI (`posthorn.cli.check`) runs both and prints.

Why a checker at all: the server trusts its invariants (a message row has its blob file, of the
recorded size; counters only go up; quota usage is the sum of sizes), so a damaged disk or a
hand-deleted file shows up only when a client touches the message. This says, ahead of time
and precisely, which account, mailbox, UID and file are affected.

Invariants:
- Nothing here writes: databases are opened ``mode=ro`` and ``query_only``, files only read.
  It is safe while the server runs (WAL: a reader sees one committed snapshot, never waits).
- The server changes the store while we look. Rows are read in one snapshot; a file found
  missing is confirmed against a *fresh* snapshot before it is called a problem (an expunge
  may have committed and deleted it meanwhile). Orphan files are only notes: the server makes
  them on purpose (file before row) and sweeps them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from posthorn.store.sqlite.blobs import BlobFiles, is_blob_name

PROBLEM: Final = "problem"
NOTE: Final = "note"

BUSY_TIMEOUT_MS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong (``problem``: exit status 1) or worth knowing (``note``: harmless).

    ``where`` names the object (``alice@example.test INBOX UID 7``, ``queue 7QXK2M``,
    ``mail.sqlite3``); ``path`` the file involved, when there is one."""

    severity: Literal["problem", "note"]
    where: str
    text: str
    path: str | None = None

    def line(self) -> str:
        at = f" ({self.path})" if self.path else ""
        return f"{self.severity}: {self.where}: {self.text}{at}"

    def to_json(self) -> dict[str, str | None]:
        return {
            "severity": self.severity,
            "where": self.where,
            "text": self.text,
            "path": self.path,
        }


@contextmanager
def open_readonly(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that cannot change ``path`` (URI ``mode=ro`` plus ``query_only``)."""
    uri = "file:" + os.fspath(path.resolve()) + "?mode=ro"
    with closing(
        sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    ) as conn:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA query_only = ON")
        yield conn


def check_database(path: Path, *, quick: bool = False) -> list[Finding]:
    """SQLite's own page-level check: ``integrity_check`` (``quick_check`` skips the index
    contents, much faster on a big store). A missing file is not a problem: the server makes
    each database on first use."""
    name = path.name
    if not path.exists():
        return [Finding(NOTE, name, "does not exist yet", str(path))]
    pragma = "quick_check" if quick else "integrity_check"
    try:
        with open_readonly(path) as conn:
            rows = [str(r[0]) for r in conn.execute(f"PRAGMA {pragma}(100)")]
    except sqlite3.DatabaseError as e:
        return [Finding(PROBLEM, name, f"cannot be read: {e}", str(path))]
    if rows == ["ok"]:
        return []
    return [Finding(PROBLEM, name, f"{pragma}: {row}", str(path)) for row in rows]


@dataclass(frozen=True, slots=True)
class _Row:
    account: str
    mailbox: str
    uid: int
    size: int
    prefix_size: int
    blob_name: str | None
    blob_size: int | None

    @property
    def where(self) -> str:
        return f"{self.account} {self.mailbox} UID {self.uid}"


@dataclass(slots=True)
class StoreReport:
    """What `check_store` found, and how much it looked at (for the summary line)."""

    findings: list[Finding]
    messages: int = 0
    blobs: int = 0


def check_store(
    data_dir: Path,
    db_name: str,
    blob_dir: str,
    *,
    deep: bool = False,
    parse: Callable[[bytes], object] | None = None,
) -> StoreReport:
    """``mail.sqlite3`` against ``blobs/``: every message row's blob exists with its size
    (``deep``: and parses with ``parse``), counters and quota usage agree with the rows, and
    files no row names are noted."""
    path = data_dir / db_name
    report = StoreReport([])
    if not path.exists():
        return report
    blobs = BlobFiles(data_dir / blob_dir)
    try:
        with open_readonly(path) as conn:
            conn.execute("BEGIN")  # one snapshot for every query below
            rows = _message_rows(conn)
            known = {str(r[0]): int(r[1]) for r in conn.execute("SELECT name, size FROM blobs")}
            report.findings += _counters(conn) + _quota(conn) + _refs(conn)
            conn.execute("COMMIT")
            report.messages, report.blobs = len(rows), len(known)
            report.findings += _files(conn, rows, blobs, deep, parse)
    except sqlite3.DatabaseError as e:
        report.findings.append(Finding(PROBLEM, db_name, f"cannot be read: {e}", str(path)))
        return report
    report.findings += _orphans(blobs, known)
    return report


def _message_rows(conn: sqlite3.Connection) -> list[_Row]:
    cur = conn.execute(
        "SELECT a.name, b.name, m.uid, m.size, m.prefix_size, bl.name, bl.size"
        " FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
        " JOIN accounts a ON a.id = b.account_id"
        " LEFT JOIN blobs bl ON bl.id = m.blob_id ORDER BY a.name, b.name, m.uid"
    )
    return [_Row(*r) for r in cur]


def _files(
    conn: sqlite3.Connection,
    rows: list[_Row],
    blobs: BlobFiles,
    deep: bool,
    parse: Callable[[bytes], object] | None,
) -> list[Finding]:
    found: list[tuple[int, Finding]] = []  # by the row's place, so output follows UIDs
    missing: list[tuple[int, _Row]] = []
    for i, row in enumerate(rows):
        if row.blob_name is None or row.blob_size is None:
            found.append((i, Finding(PROBLEM, row.where, "its blob row is missing")))
            continue
        path = blobs.path(row.blob_name)
        if row.size != row.prefix_size + row.blob_size:
            found.append(
                (
                    i,
                    Finding(
                        PROBLEM,
                        row.where,
                        f"recorded size {row.size} is not prefix {row.prefix_size}"
                        f" + blob {row.blob_size}",
                        str(path),
                    ),
                )
            )
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            missing.append((i, row))
            continue
        except OSError as e:
            found.append((i, Finding(PROBLEM, row.where, f"blob file unreadable: {e}", str(path))))
            continue
        if actual != row.blob_size:
            what = "truncated" if actual < row.blob_size else "too long"
            found.append(
                (
                    i,
                    Finding(
                        PROBLEM,
                        row.where,
                        f"blob file {what}: {actual} bytes, recorded {row.blob_size}",
                        str(path),
                    ),
                )
            )
        elif deep and parse is not None:
            found += [(i, f) for f in _parse(row, path, parse)]
    # Confirm in a fresh snapshot: an expunge may have deleted the file after our read.
    still = {str(r[0]) for r in conn.execute("SELECT name FROM blobs")}
    for i, row in missing:
        assert row.blob_name is not None
        path = blobs.path(row.blob_name)
        if row.blob_name in still and not path.exists():
            found.append((i, Finding(PROBLEM, row.where, "blob file missing", str(path))))
    return [f for _, f in sorted(found, key=lambda pair: pair[0])]


def _parse(row: _Row, path: Path, parse: Callable[[bytes], object]) -> list[Finding]:
    try:
        parse(path.read_bytes())
    except Exception as e:  # what the parser might raise on garbage is open-ended
        return [Finding(PROBLEM, row.where, f"blob does not parse: {type(e).__name__}", str(path))]
    return []


def _counters(conn: sqlite3.Connection) -> list[Finding]:
    """RFC 9051 §2.3.1.1: UIDNEXT exceeds every UID ever given (live or expunged); RFC 7162
    §3.1: HIGHESTMODSEQ is at least every message's MODSEQ."""
    cur = conn.execute(
        "SELECT a.name, b.name, b.uidnext, b.highestmodseq,"
        " (SELECT max(uid) FROM messages WHERE mailbox_id = b.id),"
        " (SELECT max(uid) FROM expunged WHERE mailbox_id = b.id),"
        " (SELECT max(modseq) FROM messages WHERE mailbox_id = b.id),"
        " (SELECT max(modseq) FROM expunged WHERE mailbox_id = b.id)"
        " FROM mailboxes b JOIN accounts a ON a.id = b.account_id ORDER BY a.name, b.name"
    )
    found: list[Finding] = []
    for account, name, uidnext, highest, uid1, uid2, mod1, mod2 in cur:
        where = f"{account} {name}"
        top_uid = max(uid1 or 0, uid2 or 0)
        top_mod = max(mod1 or 0, mod2 or 0)
        if uidnext <= top_uid:
            found.append(Finding(PROBLEM, where, f"UIDNEXT {uidnext} is not above UID {top_uid}"))
        if highest < top_mod:
            found.append(
                Finding(PROBLEM, where, f"HIGHESTMODSEQ {highest} is below MODSEQ {top_mod}")
            )
    return found


def _quota(conn: sqlite3.Connection) -> list[Finding]:
    cur = conn.execute(
        "SELECT a.name, a.used_bytes, a.used_messages, coalesce(sum(m.size), 0), count(m.uid)"
        " FROM accounts a LEFT JOIN mailboxes b ON b.account_id = a.id"
        " LEFT JOIN messages m ON m.mailbox_id = b.id GROUP BY a.id ORDER BY a.name"
    )
    found: list[Finding] = []
    for account, used_bytes, used_messages, total, count in cur:
        if used_bytes != total or used_messages != count:
            found.append(
                Finding(
                    PROBLEM,
                    account,
                    f"quota usage says {used_bytes} bytes in {used_messages} messages,"
                    f" the messages add up to {total} bytes in {count}",
                )
            )
    return found


def _refs(conn: sqlite3.Connection) -> list[Finding]:
    """``blobs.refs`` counts the message rows pointing at the blob: a wrong count deletes a
    file too early (or never)."""
    cur = conn.execute(
        "SELECT bl.name, bl.refs, (SELECT count(*) FROM messages m WHERE m.blob_id = bl.id)"
        " FROM blobs bl WHERE bl.refs != (SELECT count(*) FROM messages m WHERE m.blob_id = bl.id)"
    )
    return [
        Finding(PROBLEM, f"blob {name}", f"reference count {refs}, but {real} messages use it")
        for name, refs, real in cur
    ]


def _orphans(blobs: BlobFiles, known: dict[str, int]) -> list[Finding]:
    found: list[Finding] = []
    for directory in blobs.fanout_dirs():
        for name in sorted(blobs.candidates(directory)):
            if is_blob_name(name) and name in known:
                continue
            found.append(
                Finding(
                    NOTE,
                    "blobs",
                    "file no message refers to (harmless; the server sweeps it)",
                    str(directory / name),
                )
            )
    return found
