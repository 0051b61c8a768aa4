"""The message store contract: `MailStore` and the values it speaks in.

Every implementation (embedded SQLite + files, PostgreSQL) passes the same conformance suite in
tests/conformance/, which is the executable form of these docstrings.

Conventions shared by every method:
- ``account`` is the account's canonical address (the directory normalises it, lower case);
  the store never normalises it again and never lets one account see another's mailboxes: a
  ``mailbox_id`` that does not belong to ``account`` raises `NoSuchMailbox`.
- Mailbox names are Unicode ``str`` with ``/`` as hierarchy delimiter. ``INBOX`` is matched
  case-insensitively and always stored as ``INBOX`` (RFC 9051 §5.1); other names are exact.
- UIDs are strictly ascending per mailbox and never reused while UIDVALIDITY stays the same
  (RFC 9051 §2.3.1.1). Every change to a message or mailbox content takes a new MODSEQ from the
  mailbox's counter, strictly ascending (RFC 7162 §3.1).
- Flags: system flags are canonicalised (``\\seen`` -> ``\\Seen``); keywords are kept as given
  and compared exactly. ``\\Recent`` is per-session state and never stored.
- Every method is a coroutine and is atomic: it commits wholly or not at all.
- Read-your-writes: a call started after another returned sees its effects; reads may run
  concurrently with writes and never wait for them.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from posthorn.mail.info import MessageInfo

# Inclusive (first, last) UID ranges; ``None`` where a method accepts it means "every message".
UIDRanges = Sequence[tuple[int, int]]

DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)
"""Mailboxes every new account gets, with their RFC 6154 special-use attribute."""

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
_CANONICAL = {f.lower(): f for f in SYSTEM_FLAGS}


def canonical_flag(flag: str) -> str:
    """System flags in their canonical spelling; keywords unchanged."""
    return _CANONICAL.get(flag.lower(), flag)


class StoreError(Exception):
    """Base of the errors a store raises on purpose (anything else is a bug)."""


class NoSuchMailbox(StoreError):
    pass


class MailboxExists(StoreError):
    pass


class MailboxNotAllowed(StoreError):
    """The operation is not allowed on this mailbox (deleting INBOX, renaming onto itself)."""


class NoSuchMessage(StoreError):
    pass


class QuotaExceeded(StoreError):
    """Appending would take the account past the quota the caller passed (RFC 9208)."""


class FlagMode(enum.Enum):
    ADD = "add"
    REMOVE = "remove"
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: int
    name: str
    uidvalidity: int
    special_use: str | None
    subscribed: bool


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """The numbers STATUS / SELECT report (RFC 9051 §6.3.11, RFC 7162 §3.1.2.1)."""

    mailbox_id: int
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    unseen: int
    deleted: int
    size: int


@dataclass(frozen=True, slots=True)
class MailboxCounters:
    """What a reader polls to learn whether a mailbox changed, without counting messages."""

    mailbox_id: int
    uidvalidity: int
    uidnext: int
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """One message's metadata. ``info`` is loaded only when asked for (it is the big part)."""

    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: datetime
    size: int
    prefix_size: int = 0
    info: MessageInfo | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    uidvalidity: int
    uid: int
    modseq: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """One copy of a message for one mailbox: the unit of `MailStore.deliver`.

    ``prefix`` is prepended to the shared message bytes for this copy only (Return-Path,
    Delivered-To, Received): the bytes themselves are stored once however many copies there are.
    ``quota`` is the account's limit in bytes (None = unlimited), checked atomically.
    """

    account: str
    mailbox_id: int
    flags: frozenset[str] = frozenset()
    internal_date: datetime | None = None
    prefix: bytes = b""
    quota: int | None = None


@dataclass(frozen=True, slots=True)
class FlagUpdate:
    uid: int
    modseq: int
    flags: frozenset[str]


@dataclass(frozen=True, slots=True)
class StoreFlagsResult:
    """``updated``: messages whose flags changed; ``failed``: UIDs refused by UNCHANGEDSINCE
    (RFC 7162 §3.1.3: their MODSEQ is greater than the one given)."""

    updated: list[FlagUpdate]
    failed: list[int]


@dataclass(frozen=True, slots=True)
class CopyResult:
    """``mapping`` pairs each source UID with its new UID in the destination (RFC 4315 COPYUID)."""

    dest_uidvalidity: int
    mapping: list[tuple[int, int]]
    expunged: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    bytes: int
    messages: int


class ChangeKind(enum.Enum):
    NEW = "new"
    FLAGS = "flags"
    EXPUNGE = "expunge"
    MAILBOXES = "mailboxes"


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change, published after the commit. ``uids`` are the messages concerned;
    ``modseq`` is the mailbox's HIGHESTMODSEQ after it (0 for MAILBOXES).

    Empty ``uids`` on a NEW, FLAGS or EXPUNGE change mean "this mailbox changed in ways not
    itemised" (typically by another process writing the same store): the reader resyncs the
    mailbox with ``fetch(changed_since=<its last MODSEQ>)`` and ``expunged_since(<same>)``
    (plus UIDNEXT from `MailStore.status`). ``kind`` is then only a hint of what happened
    (EXPUNGE if anything was expunged, else NEW if messages arrived, else FLAGS), and
    ``modseq`` is the HIGHESTMODSEQ the reader is brought up to by that resync. MAILBOXES
    changes never itemise: the reader re-lists."""

    account: str
    mailbox_id: int
    kind: ChangeKind
    uids: tuple[int, ...]
    modseq: int


class ChangeSubscription(Protocol):
    """A reader's view of one account's changes. Missed changes are never silently dropped:
    if the reader falls too far behind, `get` raises `ChangesLost` and the reader resyncs."""

    async def get(self) -> Change: ...

    def get_nowait(self) -> Change | None: ...

    def close(self) -> None: ...


class ChangesLost(StoreError):
    pass


MessageSource = bytes | Path
"""Message bytes, or a file holding them (the store may link or copy it; it never deletes it)."""


class MailStore(Protocol):
    """Mailboxes, messages, flags, quotas and a change feed for every account."""

    # lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        """Create or migrate the schema. Called once before anything else."""
        ...

    async def close(self) -> None: ...

    # accounts ----------------------------------------------------------------
    async def ensure_account(self, account: str) -> None:
        """Idempotent: give the account its `DEFAULT_MAILBOXES` if it has none yet."""
        ...

    async def delete_account(self, account: str) -> None:
        """Remove every mailbox and message of the account. Idempotent."""
        ...

    async def quota_usage(self, account: str) -> QuotaUsage: ...

    # mailboxes ---------------------------------------------------------------
    async def list_mailboxes(self, account: str) -> list[Mailbox]:
        """Every mailbox of the account, sorted by name (INBOX first)."""
        ...

    async def get_mailbox(self, account: str, name: str) -> Mailbox:
        """Raises `NoSuchMailbox`."""
        ...

    async def create_mailbox(
        self, account: str, name: str, special_use: str | None = None
    ) -> Mailbox:
        """Creates missing parents too (RFC 9051 §6.3.4). A new UIDVALIDITY is never one used
        before for the same name. Raises `MailboxExists`."""
        ...

    async def rename_mailbox(self, account: str, old: str, new: str) -> None:
        """Renames children along (``a/b`` follows ``a``). Renaming INBOX moves its messages
        to a new mailbox and leaves INBOX empty (RFC 9051 §6.3.6). Raises `NoSuchMailbox`,
        `MailboxExists`."""
        ...

    async def delete_mailbox(self, account: str, name: str) -> None:
        """Deletes the mailbox and its messages; children stay. INBOX: `MailboxNotAllowed`."""
        ...

    async def set_subscribed(self, account: str, name: str, subscribed: bool) -> None:
        """Subscriptions are names: a name may be subscribed without existing (RFC 9051 §6.3.7)."""
        ...

    async def list_subscriptions(self, account: str) -> list[str]: ...

    async def status(self, account: str, mailbox_id: int) -> MailboxStatus: ...

    async def counters(self, account: str, mailbox_id: int) -> MailboxCounters:
        """UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ: constant time whatever the mailbox size
        (an IMAP session checks them after every command that may have missed a change)."""
        ...

    # messages ----------------------------------------------------------------
    async def append(
        self,
        account: str,
        mailbox_id: int,
        source: MessageSource,
        *,
        flags: frozenset[str] = frozenset(),
        internal_date: datetime | None = None,
        quota: int | None = None,
    ) -> AppendResult:
        """Store one message (parsed once here). Durable when it returns."""
        ...

    async def deliver(
        self, source: MessageSource, deliveries: Sequence[Delivery]
    ) -> list[AppendResult | StoreError]:
        """Store one message into many mailboxes: its bytes once, a copy per `Delivery`.

        Results are per delivery, in order: one copy's error (`QuotaExceeded`,
        `NoSuchMailbox`) never prevents another. Durable when it returns."""
        ...

    async def fetch(
        self,
        account: str,
        mailbox_id: int,
        uids: UIDRanges | None = None,
        *,
        changed_since: int | None = None,
        with_info: bool = False,
    ) -> list[MessageMeta]:
        """Metadata in ascending UID order; ``changed_since`` keeps MODSEQ > it (RFC 7162)."""
        ...

    async def read(
        self, account: str, mailbox_id: int, uid: int, start: int = 0, length: int | None = None
    ) -> bytes:
        """Bytes ``start`` .. ``start+length`` of the message as a reader sees it (prefix then
        stored bytes), without loading the rest. Raises `NoSuchMessage`."""
        ...

    async def read_headers(
        self, account: str, mailbox_id: int, uids: Sequence[int]
    ) -> dict[int, bytes]:
        """The header section of each message (RFC 9051 §6.4.5 BODY[HEADER]) as a reader sees
        it: its prefix, then the stored header through the blank line that ends it (the whole
        message when there is none). One call for many messages; UIDs that do not exist are
        simply absent from the result. Raises `NoSuchMailbox`."""
        ...

    async def store_flags(
        self,
        account: str,
        mailbox_id: int,
        uids: UIDRanges,
        flags: frozenset[str],
        mode: FlagMode,
        *,
        unchanged_since: int | None = None,
    ) -> StoreFlagsResult:
        """Messages whose flags do not actually change keep their MODSEQ."""
        ...

    async def expunge(
        self,
        account: str,
        mailbox_id: int,
        uids: UIDRanges | None = None,
        *,
        only_deleted: bool = True,
    ) -> list[int]:
        """Remove messages (by default only those flagged ``\\Deleted``; RFC 4315 UID EXPUNGE
        limits to ``uids``). Returns the expunged UIDs, ascending."""
        ...

    async def expunged_since(self, account: str, mailbox_id: int, modseq: int) -> list[int]:
        """UIDs expunged with a MODSEQ above ``modseq`` (RFC 7162 QRESYNC VANISHED)."""
        ...

    async def copy(
        self,
        account: str,
        mailbox_id: int,
        uids: UIDRanges,
        dest_mailbox_id: int,
        *,
        quota: int | None = None,
    ) -> CopyResult:
        """Copies flags and internal date; bytes are shared, not duplicated."""
        ...

    async def move(
        self, account: str, mailbox_id: int, uids: UIDRanges, dest_mailbox_id: int
    ) -> CopyResult:
        """Atomic COPY + EXPUNGE of the sources (RFC 6851)."""
        ...

    # change feed -------------------------------------------------------------
    def subscribe(self, account: str) -> ChangeSubscription:
        """Changes committed after this call, for this account, in commit order. Changes
        committed by other processes (another store on the same data) arrive too, within
        about a second, not itemised (see `Change`)."""
        ...


async def iter_changes(sub: ChangeSubscription) -> AsyncIterator[Change]:
    """Convenience: the subscription as an async iterator."""
    while True:
        yield await sub.get()
