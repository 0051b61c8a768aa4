"""The values the queue keeps and passes around: queued messages, recipient rows, attempts.

A queued message is its `Envelope` (as the SMTP side handed it over), the spool file with its
bytes, and one `QueuedRecipient` row per recipient. Status lives on the rows, never on the
message (DESIGN.md "Delivery semantics": status is per recipient).

Rows and how they move (``route`` / ``status``):

- Every RCPT TO enters as ``route=local``, ``status=pending``, ``account=None``: local delivery
  resolves it first (`posthorn.directory.resolve`). Resolution either settles the row *in
  place* (exactly one local account: ``account`` is set; or outside our domains:
  ``route=remote``), fails it (unknown, alias loop), or *expands* it: the row becomes
  ``expanded`` (final, RFC 3464 §2.3.3 action "expanded") and one child row per target is
  added, with ``parent`` naming it and the parent's NOTIFY and ORCPT inherited.
- ``route=local`` rows with an ``account`` are delivered to that account's INBOX; a temporary
  failure makes them ``deferred`` with a later ``next_try``; success ``delivered``; a permanent
  failure, or the message's lifetime running out, ``failed``.
- ``route=remote`` rows are the outbound runner's (`posthorn.delivery.outbound`): ``pending``
  until first tried, then like local rows.
- ``held`` rows are never tried until released. (``posthorn queue hold`` holds the whole
  message instead: `MessageState.HELD`, which the scheduler's scan skips.)
- ``last_error`` always starts with an RFC 3463 enhanced status code (``4.2.2 ...``), so a DSN
  can be built from it.
- ``dsn`` is ``"pending"`` on a failed row that owes the sender a bounce (RFC 3461 §4.1: NOTIFY
  absent or including FAILURE, and the reverse path not null, RFC 5321 §4.5.5). A message
  stays queued, file and all, while any row is unfinished or owes a bounce: the bounce needs
  the envelope and (RET=FULL, RFC 3461 §4.3) the content. The bouncer
  (`posthorn.delivery.bounce`) queues the DSN and sets ``dsn="sent"``. A delivered row whose
  NOTIFY asked for SUCCESS is ``dsn="pending"`` too, until its success notice is queued.
- ``remote`` is the remote MTA the outbound queue tried last (``"mx.b.test [192.0.2.7]"``, the
  DSN's Remote-MTA); ``delay_dsn`` is ``"sent"`` once the sender was told the row is delayed.
- Every try that raises a row's ``attempts`` is also logged (`LoggedAttempt`), in the same
  transaction, for ``posthorn queue show``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from posthorn.queue.envelope import Envelope, Notify


class Route(enum.Enum):
    LOCAL = "local"
    REMOTE = "remote"


class Status(enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    FAILED = "failed"
    HELD = "held"
    EXPANDED = "expanded"

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({Status.DELIVERED, Status.FAILED, Status.EXPANDED})


class MessageState(enum.Enum):
    ACTIVE = "active"
    HELD = "held"  # the whole message, by the operator (``posthorn queue hold``)


DSN_PENDING = "pending"
DSN_SENT = "sent"


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    """One recipient row. ``address`` is as given (RCPT TO, or an alias target); ``account``
    the canonical account address once resolved; ``tag`` the plus tag that reached it; times
    are Unix seconds."""

    id: int
    address: str
    route: Route
    status: Status
    notify: frozenset[Notify] | None = None
    orcpt: str | None = None
    parent: int | None = None
    account: str | None = None
    tag: str | None = None
    attempts: int = 0
    next_try: float = 0.0
    last_error: str | None = None
    dsn: str | None = None
    updated: float = 0.0
    remote: str | None = None
    delay_dsn: str | None = None

    @property
    def waiting(self) -> bool:
        """Not finished yet (pending, deferred or held)."""
        return not self.status.final

    def due(self, route: Route, now: float) -> bool:
        """The agent of ``route`` should try this row now."""
        return (
            self.route is route
            and self.status in (Status.PENDING, Status.DEFERRED)
            and self.next_try <= now
        )


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message in the queue. ``spool_path`` is its file (never modified once committed);
    ``envelope.recipients`` are the RCPT TOs, ``recipients`` every row including expansions."""

    queue_id: str
    envelope: Envelope
    size: int
    spool_path: Path
    created: float
    state: MessageState
    recipients: tuple[QueuedRecipient, ...]
    head: bytes | None = field(default=None, compare=False, repr=False)
    """The message's first bytes through the empty line ending its header block, when the
    spool still had them in memory at commit (saves delivery a file read); else None."""


@dataclass(frozen=True, slots=True)
class LoggedAttempt:
    """One entry of a message's attempt log: recipient row ``recipient_id`` (``address``) was
    tried at ``at`` (Unix seconds) and left with ``status``; ``reply`` is its ``last_error``
    then (None on success), ``remote`` the remote MTA tried (None for local delivery)."""

    recipient_id: int
    address: str
    at: float
    status: Status
    reply: str | None = None
    remote: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A recipient row that alias expansion adds (see `Attempt.children`).

    ``status`` is what happened to it in the same pass: ``delivered``, ``deferred`` or
    ``failed`` for local targets, ``pending`` for remote ones."""

    address: str
    route: Route
    status: Status
    account: str | None = None
    tag: str | None = None
    reply: str | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """What local delivery did with one due row; the runner turns it into the row's update.

    - ``delivered`` / ``deferred`` / ``failed``: the row itself was tried (``reply`` is the
      RFC 3463 ``X.Y.Z text`` for the latter two); ``account`` / ``tag`` record an in-place
      resolution so a retry does not resolve again.
    - ``pending`` with ``route=remote``: the row is outside our domains (re-routed).
    - ``expanded``: the row became ``children``.
    """

    recipient_id: int
    status: Status
    reply: str | None = None
    route: Route | None = None
    account: str | None = None
    tag: str | None = None
    children: tuple[Target, ...] = ()
    remote: str | None = None  # outbound: the remote MTA that gave ``reply``
    dsn_relayed: bool = False  # outbound: the next hop took NOTIFY along (RFC 3461 §4.2)
