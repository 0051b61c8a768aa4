"""Local delivery (the MDA): due recipient rows of one queued message → copies in INBOXes.

Per row (DESIGN.md "Delivery semantics"):

1. An unresolved row (a RCPT TO) is resolved by the directory (`posthorn.directory.resolve`:
   aliases, nested, loops detected; catch-all; plus-addressing). Outside our domains it is
   re-routed to the outbound queue; unknown fails with 5.1.1 and an alias loop with 5.4.6
   (RFC 3463); a single account settles the row in place; anything else expands the row into
   one child row per target (local accounts, remote addresses, unknown members).
2. Each account a row (or child) reaches gets one copy in its INBOX (plus tags go to INBOX
   until Sieve files them), with `trace.prefix` before it, unless the message already carries
   ``Delivered-To: account`` (RFC 9228): then it has looped, and fails with 5.4.6 — never
   delivered. Two rows reaching the same account share the one copy.
3. All copies of the message go into ONE `MailStore.deliver` call with the spool file as the
   source (the store stores — or hard-links — the bytes once, and a prefix per copy). The
   account's quota comes from the directory; `QuotaExceeded` is a temporary failure (4.2.2)
   and the row is retried until the message expires.

Invariants:
- The result is one `Attempt` per due row, always: a failure of one account (quota, a missing
  account, an exception) affects the rows reaching that account only.
- Errors are temporary unless known to be permanent: anything unexpected (a directory or store
  exception, an unreadable spool file) defers, with the traceback logged, and never fails.
- Nothing here writes the queue: the runner records the attempts after this returns. Which
  means a copy can be stored and the crash come before its row says so: the retry delivers
  it again. Better twice than lost (see `posthorn.queue.runner`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from posthorn.delivery import trace
from posthorn.directory.records import Account
from posthorn.directory.resolve import Resolution, ResolveStatus
from posthorn.log import get_logger
from posthorn.queue.records import Attempt, QueuedMessage, QueuedRecipient, Route, Status, Target
from posthorn.store.base import (
    AppendResult,
    Delivery,
    MailStore,
    NoSuchMailbox,
    QuotaExceeded,
    StoreError,
)

log = get_logger(__name__)

INBOX: Final = "INBOX"

# RFC 3463 enhanced status codes, with the text that goes into the queue and DSNs.
NO_SUCH_USER: Final = "5.1.1 no such mailbox here"
ALIAS_LOOP: Final = "5.4.6 alias loop"
DELIVERED_TO_LOOP: Final = "5.4.6 mail loop: already delivered to this mailbox (Delivered-To)"
MAILBOX_FULL: Final = "4.2.2 mailbox full"
TEMPORARY: Final = "4.3.0 temporary local delivery failure"


class RecipientDirectory(Protocol):
    """What delivery asks the directory (`posthorn.directory.Directory` provides it)."""

    async def resolve(self, address: str) -> Resolution: ...

    async def find_account(self, address: str) -> Account | None: ...


@dataclass(slots=True)
class _Copy:
    """One account's copy. In-place rows find it by account; expansion children are listed."""

    account: str
    children: list[tuple[int, int]] = field(default_factory=list)  # (row id, child index)
    status: Status = Status.DEFERRED
    reply: str | None = TEMPORARY


@dataclass(slots=True)
class _Row:
    """What becomes of one due row while the pass is being worked out."""

    row: QueuedRecipient
    attempt: Attempt | None = None  # decided without a copy
    account: str | None = None
    tag: str | None = None
    children: list[Target] = field(default_factory=list)
    expanded: bool = False


class LocalDelivery:
    """Delivers queued messages' local recipients into ``store`` (see the module docstring)."""

    def __init__(self, store: MailStore, directory: RecipientDirectory) -> None:
        self.store = store
        self.directory = directory
        self._inbox_ids: dict[str, int] = {}

    async def deliver(
        self, message: QueuedMessage, due: Sequence[QueuedRecipient]
    ) -> list[Attempt]:
        """Try every row of ``due`` (local, pending or deferred) once; one `Attempt` each."""
        rows = [_Row(r) for r in due]
        await asyncio.gather(*(self._route(r) for r in rows if r.row.account is None))
        copies: dict[str, _Copy] = {}
        for r in rows:
            if r.row.account is not None:
                r.account, r.tag = r.row.account, r.row.tag
            if r.attempt is not None:
                continue
            if r.expanded:
                for index, child in enumerate(r.children):
                    if child.route is Route.LOCAL and child.account is not None:
                        copy = copies.setdefault(child.account, _Copy(child.account))
                        copy.children.append((r.row.id, index))
            elif r.account is not None:
                copies.setdefault(r.account, _Copy(r.account))
        if copies:
            await self._store_copies(message, list(copies.values()))
        return [self._attempt(r, copies) for r in rows]

    # step 1: resolution --------------------------------------------------------
    async def _route(self, r: _Row) -> None:
        address = r.row.address
        try:
            resolution = await self.directory.resolve(address)
        except Exception:
            log.exception("delivery.resolve_failed", rcpt=address)
            r.attempt = Attempt(r.row.id, Status.DEFERRED, TEMPORARY)
            return
        status = resolution.status
        if status is ResolveStatus.FOREIGN:
            r.attempt = Attempt(r.row.id, Status.PENDING, route=Route.REMOTE)
        elif status is ResolveStatus.UNKNOWN:
            r.attempt = Attempt(r.row.id, Status.FAILED, NO_SUCH_USER)
        elif status in (ResolveStatus.LOOP, ResolveStatus.TOO_DEEP):
            # The chain names our aliases: the log gets it, the sender's DSN does not.
            log.warning("delivery.alias_loop", rcpt=address, chain=resolution.detail)
            r.attempt = Attempt(r.row.id, Status.FAILED, ALIAS_LOOP)
        elif len(resolution.local) == 1 and not resolution.remote and not resolution.unknown:
            r.account, r.tag = resolution.local[0].account, resolution.local[0].tag
        else:
            r.expanded = True
            r.children = [
                *(
                    Target(t.account, Route.LOCAL, Status.DEFERRED, t.account, t.tag)
                    for t in resolution.local
                ),
                *(Target(a, Route.REMOTE, Status.PENDING) for a in resolution.remote),
                *(
                    Target(a, Route.LOCAL, Status.FAILED, reply=NO_SUCH_USER)
                    for a in resolution.unknown
                ),
            ]

    # steps 2 and 3: the copies -------------------------------------------------
    async def _store_copies(self, message: QueuedMessage, copies: list[_Copy]) -> None:
        try:
            if message.head is not None:  # known from the commit: no file read needed
                header = trace.header_block(message.head)
            else:
                header = await asyncio.to_thread(trace.read_header_block, message.spool_path)
        except OSError:
            log.exception("delivery.spool_unreadable", file=str(message.spool_path))
            return  # every copy stays deferred (TEMPORARY)
        seen = trace.delivered_to(header)
        prepared = await asyncio.gather(*(self._prepare(message, c, seen) for c in copies))
        ready = [(c, d) for c, d in zip(copies, prepared, strict=True) if d is not None]
        if not ready:
            return
        try:
            results = await self.store.deliver(message.spool_path, [d for _, d in ready])
        except Exception:
            log.exception("delivery.store_failed")
            return
        for (copy, _), result in zip(ready, results, strict=True):
            self._settle(copy, result)

    async def _prepare(
        self, message: QueuedMessage, copy: _Copy, seen: frozenset[str]
    ) -> Delivery | None:
        """The copy's `Delivery`, or None with the copy's status set (failed or deferred)."""
        account = copy.account
        if account in seen:
            # RFC 9228: this mailbox already received the message: it has come back around.
            log.warning("delivery.delivered_to_loop", account=account)
            copy.status, copy.reply = Status.FAILED, DELIVERED_TO_LOOP
            return None
        try:
            found = await self.directory.find_account(account)
            if found is None:  # deleted since the message was resolved
                copy.status, copy.reply = Status.FAILED, NO_SUCH_USER
                return None
            mailbox_id = await self._inbox(found.address)
        except Exception:
            log.exception("delivery.prepare_failed", account=account)
            return None
        return Delivery(
            account=found.address,
            mailbox_id=mailbox_id,
            prefix=trace.prefix(
                message.envelope.mail_from, found.address, message.envelope.received
            ),
            quota=found.quota_bytes,
        )

    async def _inbox(self, account: str) -> int:
        # INBOX keeps its id for the account's life (it can be neither deleted nor renamed
        # away, RFC 9051 §6.3.5), so the id is remembered; a store refusal forgets it.
        if account in self._inbox_ids:
            return self._inbox_ids[account]
        try:
            mailbox_id = (await self.store.get_mailbox(account, INBOX)).id
        except NoSuchMailbox:
            await self.store.ensure_account(account)  # first mail for this account
            mailbox_id = (await self.store.get_mailbox(account, INBOX)).id
        self._inbox_ids[account] = mailbox_id
        return mailbox_id

    def _settle(self, copy: _Copy, result: AppendResult | StoreError) -> None:
        if isinstance(result, AppendResult):
            copy.status, copy.reply = Status.DELIVERED, None
            log.info("delivery.stored", account=copy.account, uid=result.uid)
        elif isinstance(result, QuotaExceeded):
            copy.status, copy.reply = Status.DEFERRED, MAILBOX_FULL
        else:
            self._inbox_ids.pop(copy.account, None)
            log.error("delivery.store_refused", account=copy.account, error=type(result).__name__)
            copy.status, copy.reply = Status.DEFERRED, TEMPORARY

    # the answer ----------------------------------------------------------------
    def _attempt(self, r: _Row, copies: dict[str, _Copy]) -> Attempt:
        if r.attempt is not None:
            return r.attempt
        rid = r.row.id
        if r.expanded:
            children = list(r.children)
            for copy in copies.values():
                for row_id, index in copy.children:
                    if row_id == rid:
                        children[index] = _with(children[index], copy.status, copy.reply)
            return Attempt(rid, Status.EXPANDED, children=tuple(children))
        assert r.account is not None
        copy = copies[r.account]
        return Attempt(rid, copy.status, copy.reply, account=r.account, tag=r.tag)


def _with(target: Target, status: Status, reply: str | None) -> Target:
    return Target(target.address, target.route, status, target.account, target.tag, reply)
