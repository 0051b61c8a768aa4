"""Changes committed by *other processes* to the same store, turned into `Change`s for this
process's subscribers (the CLI appending while the server runs; ``serve --workers N``).

Owns: `poll` (a read job: the mailboxes of the watched accounts, if the database moved) and
`ForeignWatch` (on the event loop: what this process has already published, and what is new).

How it works. While some account has subscribers, the store runs `poll` on a reader thread every
few hundred milliseconds. ``PRAGMA data_version`` tells, per connection, whether any other
connection committed since that connection last asked; if not, the poll costs one pragma. If it
moved, the poll reads (UIDNEXT, HIGHESTMODSEQ, name) of every mailbox of the watched accounts
and `ForeignWatch.apply` compares them with what it last saw:
- A mailbox whose HIGHESTMODSEQ went up by a MODSEQ this process did not publish itself gets
  ``Change(account, mailbox_id, kind, uids=(), modseq=HIGHESTMODSEQ)``: empty ``uids`` mean
  "changed in ways not itemised: resync" (see `Change`). ``kind`` is a hint: EXPUNGE when the
  mailbox has expunges above the last seen MODSEQ, else NEW when UIDNEXT grew, else FLAGS.
- Mailboxes created, deleted or renamed give one MAILBOXES change for the account.

Invariants:
- Own writes are not published twice. Every operation takes exactly one MODSEQ per mailbox it
  changes and publishes it in a `Change` (`posthorn.store.sqlite.messages`), so the MODSEQs
  between the last seen HIGHESTMODSEQ and the new one that this process did not publish are
  exactly the foreign ones. `apply` runs only once every write submitted before the poll's
  snapshot has been published (the store waits for that), so a commit of ours that is in the
  snapshot is always known as ours by then.
- An own MAILBOXES change (create, delete, rename, subscribe) covers a foreign one made in the
  same poll interval: the reader re-lists for ours and sees both. Foreign subscription changes
  alone are not detected.
- An account's baseline is taken at its first poll after it is watched (the store polls at
  once on subscribe); foreign commits before that baseline are not reported.
- Not thread-safe: `ForeignWatch` lives on the event loop; `poll` runs on a reader thread
  with one poll at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from posthorn.store.base import Change, ChangeKind


@dataclass(frozen=True, slots=True)
class BoxState:
    """One mailbox as a poll saw it. ``expunged``: it has expunges above the MODSEQ the watch
    knew when the poll was submitted (only looked up for mailboxes whose MODSEQ moved)."""

    account: str
    mailbox_id: int
    name: str
    uidnext: int
    highestmodseq: int
    expunged: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The watched accounts' mailboxes at one instant. ``bound``: every write of this process
    committed in the snapshot was submitted with a sequence number at most ``bound``."""

    accounts: tuple[str, ...]
    boxes: list[BoxState]
    bound: int


class Poller:
    """The read side: remembers ``data_version`` per reader connection."""

    def __init__(self, write_seq: Callable[[], int]) -> None:
        self._write_seq = write_seq
        self._versions: dict[int, int] = {}

    def poll(
        self,
        conn: sqlite3.Connection,
        accounts: tuple[str, ...],
        known: dict[int, int],
        force: bool,
    ) -> Snapshot | None:
        """A read job: None when nothing was committed since this connection's last poll
        (and ``force`` is false), else the accounts' mailboxes."""
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        moved = self._versions.get(id(conn)) != version
        self._versions[id(conn)] = version
        if not (moved or force) or not accounts:
            return None
        marks = ",".join("?" * len(accounts))
        rows = conn.execute(
            "SELECT a.name, m.id, m.name, m.uidnext, m.highestmodseq FROM mailboxes m"
            f" JOIN accounts a ON a.id = m.account_id WHERE a.name IN ({marks})",
            accounts,
        ).fetchall()
        # Read after the snapshot is fixed: a write submitted later committed after it.
        bound = self._write_seq()
        boxes: list[BoxState] = []
        for account, box_id, name, uidnext, modseq in rows:
            seen = known.get(box_id)
            expunged = False
            if seen is not None and modseq > seen:
                expunged = (
                    conn.execute(
                        "SELECT 1 FROM expunged WHERE mailbox_id = ? AND modseq > ? LIMIT 1",
                        (box_id, seen),
                    ).fetchone()
                    is not None
                )
            boxes.append(BoxState(account, box_id, name, uidnext, modseq, expunged))
        return Snapshot(accounts, boxes, bound)


@dataclass(slots=True)
class _Mark:
    account: str
    name: str
    uidnext: int
    modseq: int


@dataclass(slots=True)
class _Account:
    """``own``: per mailbox, the MODSEQs this process published above the last seen one, each
    with the UIDNEXT after it (0 when it did not add messages)."""

    baseline: bool = False
    own_layout: int | None = None  # write sequence of our last unconfirmed MAILBOXES change
    boxes: set[int] = field(default_factory=set)
    own: dict[int, dict[int, int]] = field(default_factory=dict)


class ForeignWatch:
    """The event-loop side: the last seen state of each watched mailbox, and what this process
    published above it."""

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}
        self._marks: dict[int, _Mark] = {}

    # which accounts ------------------------------------------------------------
    def watch(self, accounts: Iterable[str]) -> bool:
        """Watch exactly ``accounts``; True if some of them still need a baseline."""
        wanted = set(accounts)
        for gone in set(self._accounts) - wanted:
            for box_id in self._accounts.pop(gone).boxes:
                self._marks.pop(box_id, None)
        for account in wanted - set(self._accounts):
            self._accounts[account] = _Account()
        return any(not a.baseline for a in self._accounts.values())

    def accounts(self) -> tuple[str, ...]:
        return tuple(sorted(self._accounts))

    def known(self) -> dict[int, int]:
        return {box_id: mark.modseq for box_id, mark in self._marks.items()}

    # our own commits -----------------------------------------------------------
    def own(self, changes: Iterable[Change], seq: int) -> None:
        """Record changes this process published (write ``seq``), so polls skip them."""
        for change in changes:
            acc = self._accounts.get(change.account)
            if acc is None:
                continue
            if change.kind is ChangeKind.MAILBOXES:
                acc.own_layout = seq
                continue
            mark = self._marks.get(change.mailbox_id)
            if mark is not None and change.modseq <= mark.modseq:
                continue
            uidnext = max(change.uids) + 1 if change.kind is ChangeKind.NEW and change.uids else 0
            acc.own.setdefault(change.mailbox_id, {})[change.modseq] = uidnext
            if mark is not None:
                self._absorb(acc, change.mailbox_id, mark)

    @staticmethod
    def _absorb(acc: _Account, box_id: int, mark: _Mark) -> None:
        """Advance the mark over our own MODSEQs that directly follow it."""
        own = acc.own.get(box_id)
        if not own:
            return
        for modseq in [m for m in own if m <= mark.modseq]:
            del own[modseq]
        while (uidnext := own.pop(mark.modseq + 1, None)) is not None:
            mark.modseq += 1
            mark.uidnext = max(mark.uidnext, uidnext)
        if not own:
            del acc.own[box_id]

    # polls -----------------------------------------------------------------------
    def apply(self, snap: Snapshot) -> list[Change]:
        """The foreign changes in ``snap``; call only once every write up to ``snap.bound``
        has been passed to `own`."""
        by_account: dict[str, list[BoxState]] = {a: [] for a in snap.accounts}
        for box in snap.boxes:
            by_account[box.account].append(box)
        changes: list[Change] = []
        for account, boxes in by_account.items():
            acc = self._accounts.get(account)
            if acc is not None:
                changes += self._apply_account(account, acc, boxes, snap.bound)
        return changes

    def _apply_account(
        self, account: str, acc: _Account, boxes: list[BoxState], bound: int
    ) -> list[Change]:
        before = {i: self._marks[i].name for i in acc.boxes}
        after = {b.mailbox_id: b.name for b in boxes}
        changes: list[Change] = []
        for gone in set(before) - set(after):
            self._marks.pop(gone, None)
        for stale in set(acc.own) - set(after):
            # Deleted, or created after the snapshot: a new mailbox's mark starts at what the
            # poll that first sees it reads, which includes our changes.
            del acc.own[stale]
        for box in boxes:
            mark = self._marks.get(box.mailbox_id)
            if mark is None:  # a new mailbox (or the baseline): nothing to report inside
                mark = _Mark(account, box.name, box.uidnext, box.highestmodseq)
                self._marks[box.mailbox_id] = mark
                self._absorb(acc, box.mailbox_id, mark)
                continue
            mark.name = box.name
            if box.highestmodseq <= mark.modseq:
                continue
            own = acc.own.get(box.mailbox_id, {})
            span = range(mark.modseq + 1, box.highestmodseq + 1)
            if any(m not in own for m in span):
                if box.expunged:
                    kind = ChangeKind.EXPUNGE
                elif box.uidnext > mark.uidnext:
                    kind = ChangeKind.NEW
                else:
                    kind = ChangeKind.FLAGS
                changes.append(Change(account, box.mailbox_id, kind, (), box.highestmodseq))
            mark.modseq = box.highestmodseq
            mark.uidnext = max(mark.uidnext, box.uidnext)
            self._absorb(acc, box.mailbox_id, mark)
        acc.boxes = set(after)
        ours = acc.own_layout is not None and acc.own_layout <= bound
        if ours:
            acc.own_layout = None
        if acc.baseline and before != after and not ours:
            changes.insert(0, Change(account, 0, ChangeKind.MAILBOXES, (), 0))
        acc.baseline = True
        return changes
