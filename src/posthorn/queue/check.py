"""Read-only verification of the queue (``posthorn check``): ``queue.sqlite3`` against ``spool/``.

Why: a queued message whose spool file is gone or short cannot be delivered, and the runner
finds out only when it tries; after a 250 that is mail lost, so the operator must hear of it
by queue id and path. The schema's invariant (`posthorn.queue.schema`): a ``messages`` row
exists only while its spool file does, and the file holds exactly ``size`` bytes.

Like `posthorn.store.sqlite.check`, nothing here writes, and a missing file is confirmed
against a fresh snapshot (the runner may have finished the message and removed its file while
we looked). Spool files without a row are notes: a commit in flight makes one for a moment,
and the server sweeps the rest when it starts.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from posthorn.queue.ids import is_queue_id
from posthorn.queue.schema import QUEUE_DB_NAME
from posthorn.queue.spool import SPOOL_DIR, TMP_SUFFIX
from posthorn.store.sqlite.check import NOTE, PROBLEM, Finding, open_readonly


@dataclass(slots=True)
class QueueReport:
    findings: list[Finding]
    queued: int = 0


def check_queue(data_dir: Path) -> QueueReport:
    path = data_dir / QUEUE_DB_NAME
    spool = data_dir / SPOOL_DIR
    report = QueueReport([])
    if not path.exists():
        return report
    try:
        with open_readonly(path) as conn:
            rows = [
                (str(q), str(n), int(s))
                for q, n, s in conn.execute(
                    "SELECT queue_id, spool_name, size FROM messages ORDER BY queue_id"
                )
            ]
            report.queued = len(rows)
            report.findings += _files(conn, spool, rows)
            names = {n for _, n, _ in rows}
            report.findings += _strays(conn, spool, names)
    except sqlite3.DatabaseError as e:
        report.findings.append(Finding(PROBLEM, QUEUE_DB_NAME, f"cannot be read: {e}", str(path)))
    return report


def _files(
    conn: sqlite3.Connection, spool: Path, rows: list[tuple[str, str, int]]
) -> list[Finding]:
    found: list[Finding] = []
    missing: list[tuple[str, str]] = []
    for queue_id, name, size in rows:
        file = spool / name
        try:
            actual = file.stat().st_size
        except FileNotFoundError:
            missing.append((queue_id, name))
            continue
        except OSError as e:
            found.append(Finding(PROBLEM, f"queue {queue_id}", f"spool file unreadable: {e}"))
            continue
        if actual != size:
            what = "truncated" if actual < size else "too long"
            found.append(
                Finding(
                    PROBLEM,
                    f"queue {queue_id}",
                    f"spool file {what}: {actual} bytes, recorded {size}",
                    str(file),
                )
            )
    if missing:
        still = _queued_names(conn)
        for queue_id, name in missing:
            if name in still and not (spool / name).exists():
                found.append(
                    Finding(PROBLEM, f"queue {queue_id}", "spool file missing", str(spool / name))
                )
    return sorted(found, key=lambda f: f.where)  # in queue id order, as `queue list` prints


def _strays(conn: sqlite3.Connection, spool: Path, names: set[str]) -> list[Finding]:
    try:
        present = sorted(os.listdir(spool))
    except FileNotFoundError:
        return []
    candidates = [
        n for n in present if n not in names and (is_queue_id(n) or n.endswith(TMP_SUFFIX))
    ]
    if not candidates:
        return []
    still = _queued_names(conn)  # committed since our first look: not strays
    return [
        Finding(
            NOTE,
            "spool",
            "file no queued message refers to (harmless; swept when the server starts)",
            str(spool / n),
        )
        for n in candidates
        if n not in still
    ]


def _queued_names(conn: sqlite3.Connection) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT spool_name FROM messages")}
