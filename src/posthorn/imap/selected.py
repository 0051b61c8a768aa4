"""One session's view of its selected mailbox: message numbers, and what it has been told.

IMAP message sequence numbers are per session (RFC 9051 §2.3.1.2): they change only when this
session is told of an expunge. So the view keeps its own ascending UID list and learns about
other writers' changes only at the points the session chooses to sync (`sync`), which returns
the untagged responses to send. Expunges found while a FETCH, STORE or SEARCH is running are
held back (RFC 9051 §7.5.1) and the expunged messages stay numbered until then.

Memory: 4 octets per message (an ``array('I')`` of UIDs) plus small sets for pending news.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from posthorn.imap import response
from posthorn.imap.sequence import SequenceSet, format_sequence
from posthorn.store.base import Mailbox, MailStore, MessageMeta


class SelectedView:
    def __init__(
        self,
        store: MailStore,
        account: str,
        mailbox: Mailbox,
        *,
        readonly: bool,
        metas: Sequence[MessageMeta],
        modseq: int,
        uidnext: int,
    ) -> None:
        self.store = store
        self.account = account
        self.mailbox = mailbox
        self.readonly = readonly
        self.uids = array("I", (m.uid for m in metas))
        self.modseq = modseq
        self.uidnext = uidnext
        self.recent: set[int] = set()
        self.keywords: set[str] = set()
        for m in metas:
            self.keywords.update(f for f in m.flags if not f.startswith("\\"))
        self.pending_expunge: set[int] = set()
        # (uid -> modseq) of flag changes this session already reported, so the sync that the
        # change feed triggers for them does not report them again.
        self.reported: dict[int, int] = {}
        self.dirty = False  # the change feed said something changed since the last sync

    @property
    def id(self) -> int:
        return self.mailbox.id

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def largest_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def seq_of(self, uid: int) -> int | None:
        i = bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def uid_at(self, seq: int) -> int:
        return self.uids[seq - 1]

    # --- resolving sequence sets --------------------------------------------------------------

    def by_seq(self, seqset: SequenceSet) -> list[tuple[int, int]]:
        """(seq, uid) pairs a message-number set names, ascending. Numbers beyond the view
        are dropped; the caller decides whether that is an error (RFC 9051 §6.4.5)."""
        n = len(self.uids)
        out: list[tuple[int, int]] = []
        for a, b in seqset.ranges(n):
            for seq in range(a, min(b, n) + 1):
                out.append((seq, self.uids[seq - 1]))
        return out

    def by_uid(self, seqset: SequenceSet) -> list[tuple[int, int]]:
        """(seq, uid) pairs for the UIDs of a UID set that are in the view, ascending.
        ``*`` is the largest UID in the view (RFC 9051 §6.4.9: ``n:*`` always includes it)."""
        out: list[tuple[int, int]] = []
        uids = self.uids
        for a, b in seqset.ranges(self.largest_uid):
            i = bisect_left(uids, a)
            while i < len(uids) and uids[i] <= b:
                out.append((i + 1, uids[i]))
                i += 1
        return out

    def uids_beyond(self, seqset: SequenceSet) -> bool:
        """True when a message-number set names a number larger than the view holds."""
        n = len(self.uids)
        return any(
            (a is not None and a > n) or (b is not None and b > n) for a, b in seqset.elements
        )

    # --- keeping up with the store ---------------------------------------------------------

    async def sync(
        self,
        *,
        expunges_allowed: bool,
        condstore: bool,
        qresync: bool,
        rev2: bool,
    ) -> list[bytes]:
        """Learn what other writers did since the last sync; return the untagged lines.

        Order: EXPUNGE (or VANISHED) first, so the numbers in the FETCH and EXISTS lines that
        follow are the new ones; then flag changes; then EXISTS (RFC 9051 §7.4)."""
        lines: list[bytes] = []
        self.dirty = False
        status = await self.store.counters(self.account, self.id)
        if status.highestmodseq != self.modseq or status.uidnext != self.uidnext:
            changed = await self.store.fetch(self.account, self.id, changed_since=self.modseq)
            gone = await self.store.expunged_since(self.account, self.id, self.modseq)
            largest = self.largest_uid
            self.pending_expunge.update(u for u in gone if self.seq_of(u) is not None)
            new: list[int] = []
            flag_lines: list[tuple[int, MessageMeta]] = []
            for meta in changed:
                if meta.uid > largest:
                    new.append(meta.uid)
                    self.keywords.update(f for f in meta.flags if not f.startswith("\\"))
                elif (
                    self.reported.get(meta.uid) != meta.modseq and self.seq_of(meta.uid) is not None
                ):
                    flag_lines.append((meta.uid, meta))
                    self.keywords.update(f for f in meta.flags if not f.startswith("\\"))
            self.reported.clear()
            self.modseq = status.highestmodseq
            self.uidnext = status.uidnext
            if expunges_allowed:
                lines += self.flush_expunges(qresync=qresync)
            for uid, meta in flag_lines:
                if uid in self.pending_expunge:
                    continue
                seq = self.seq_of(uid)
                if seq is not None:
                    lines.append(self.flags_line(seq, meta, uid=qresync, modseq=condstore))
            if new:
                self.uids.extend(new)
                if not rev2:
                    self.recent.update(new)
                lines.append(b"* %d EXISTS\r\n" % len(self.uids))
                if not rev2:
                    lines.append(b"* %d RECENT\r\n" % len(self.recent))
        elif expunges_allowed and self.pending_expunge:
            lines += self.flush_expunges(qresync=qresync)
        return lines

    def flush_expunges(self, *, qresync: bool) -> list[bytes]:
        """EXPUNGE lines (highest number first, so each number is still valid when read), or
        one VANISHED line once QRESYNC is enabled (RFC 7162 §3.2.10)."""
        if not self.pending_expunge:
            return []
        gone = sorted(self.pending_expunge)
        self.pending_expunge.clear()
        return self.remove(gone, qresync=qresync)

    def remove(self, uids: Iterable[int], *, qresync: bool) -> list[bytes]:
        seqs = sorted((s for u in uids if (s := self.seq_of(u)) is not None), reverse=True)
        removed = sorted(self.uids[s - 1] for s in seqs)
        for s in seqs:
            del self.uids[s - 1]
        for u in removed:
            self.recent.discard(u)
            self.pending_expunge.discard(u)
        if not seqs:
            return []
        if qresync:
            return [b"* VANISHED " + format_sequence(removed).encode() + b"\r\n"]
        return [b"* %d EXPUNGE\r\n" % s for s in seqs]

    def flags_line(self, seq: int, meta: MessageMeta, *, uid: bool, modseq: bool) -> bytes:
        items = [b"FLAGS " + response.flag_list(self.flags_of(meta))]
        if uid:
            items.insert(0, b"UID %d" % meta.uid)
        if modseq:
            items.append(b"MODSEQ (%d)" % meta.modseq)
        return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items))

    def flags_of(self, meta: MessageMeta) -> list[str]:
        flags = sorted(meta.flags)
        if meta.uid in self.recent:
            flags.append("\\Recent")
        return flags
