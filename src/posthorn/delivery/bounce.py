"""The bouncer: delivery status notifications (RFC 3464) back to the envelope sender.

Called by the queue runners after every pass (`posthorn.queue.runner.AfterPass`) and once at
start (`sweep`, for rows a crash left owing a notice). It sends, per message and pass, at most
one DSN per kind:

- **failed**: rows that failed for good and owe one (``dsn = pending``, set by the schedule:
  NOTIFY absent or with FAILURE, and never to the null sender: a bounce is never bounced,
  RFC 5321 §4.5.5);
- **delayed**: remote rows still deferred ``delay_warning`` after acceptance, once per row,
  when NOTIFY is absent (our discretion, RFC 3461 §4.1) or has DELAY;
- **delivered / relayed**: rows whose NOTIFY has SUCCESS, delivered here (``delivered``) or
  handed to a next hop that took the DSN request along (nothing to do then) or did not
  (``relayed``).

A notice is a new queued message from the null reverse path to the sender, committed through
the spool like any other, so it is durable before the rows are marked. A crash between the two
sends it again: a duplicate notice, never a lost one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from posthorn.delivery.outbound import split_reply
from posthorn.log import get_logger
from posthorn.mail.dsn import DSNRecipient, build_dsn
from posthorn.queue.envelope import Envelope, EnvelopeRecipient, Notify
from posthorn.queue.records import (
    DSN_PENDING,
    QueuedMessage,
    QueuedRecipient,
    Route,
    Status,
)
from posthorn.queue.schedule import Plan
from posthorn.queue.spool import Spool

log = get_logger(__name__)

_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
HEADERS_LIMIT = 64 * 1024  # octets of the original read for a headers-only report


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Bouncer:
    def __init__(
        self,
        spool: Spool,
        *,
        hostname: str,
        delay_warning: float,
        lifetime: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool = spool
        self.hostname = hostname
        self.delay_warning = delay_warning
        self.lifetime = lifetime
        self.clock = clock

    async def after_pass(self, message: QueuedMessage, steps: Plan) -> None:
        await self.notify(message, steps.rows)

    async def sweep(self) -> None:
        """Notices owed by messages already in the queue (after a crash or an upgrade)."""
        for message in await self.spool.db.list_all():
            if any(r.dsn == DSN_PENDING for r in message.recipients):
                await self.notify(message, list(message.recipients))

    async def notify(self, message: QueuedMessage, rows: Sequence[QueuedRecipient]) -> None:
        if message.envelope.mail_from == "":
            return
        now = self.clock()
        failed = [r for r in rows if r.status is Status.FAILED and r.dsn == DSN_PENDING]
        delayed = [r for r in rows if self._owes_delay(message, r, now)]
        success = [r for r in rows if r.status is Status.DELIVERED and r.dsn == DSN_PENDING]
        if failed:
            await self._send(message, failed, "failed")
        if success:
            await self._send(message, success, "delivered")
        if delayed:
            await self._send(message, delayed, "delayed")
        marked_dsn = [r.id for r in (*failed, *success)]
        marked_delay = [r.id for r in delayed]
        if marked_dsn or marked_delay:
            finished = await self.spool.db.mark_notified(message.queue_id, marked_dsn, marked_delay)
            if finished is not None:
                await self.spool.remove_file(finished)

    def _owes_delay(self, message: QueuedMessage, row: QueuedRecipient, now: float) -> bool:
        return (
            row.route is Route.REMOTE
            and row.status is Status.DEFERRED
            and row.delay_dsn is None
            and now - message.created >= self.delay_warning
            and (row.notify is None or Notify.DELAY in row.notify)
        )

    async def _send(
        self, message: QueuedMessage, rows: Sequence[QueuedRecipient], action: str
    ) -> None:
        env = message.envelope
        original = await self._original(message, full=env.ret == "FULL" and action == "failed")
        recipients = [self._recipient(message, r, action) for r in rows]
        data = build_dsn(
            reporting_mta=self.hostname,
            sender=env.mail_from,
            recipients=recipients,
            original=original,
            arrival_date=_when(message.created),
            envelope_id=env.envid,
            return_content=env.ret == "FULL" and action == "failed",
            smtputf8=env.smtputf8,
        )
        writer = await self.spool.new_message()
        try:
            await writer.write(data)
            qid = await writer.commit(
                Envelope(
                    mail_from="",
                    recipients=(EnvelopeRecipient(env.mail_from),),
                    body="8BITMIME" if any(b > 127 for b in data) else "7BIT",
                    smtputf8=env.smtputf8,
                    protocol="local",
                    helo=self.hostname,
                )
            )
        except BaseException:
            await writer.abort()
            raise
        log.info(
            "dsn.queued",
            action=action,
            to=env.mail_from,
            about=message.queue_id,
            dsn=qid,
            recipients=len(rows),
        )

    def _recipient(self, message: QueuedMessage, row: QueuedRecipient, action: str) -> DSNRecipient:
        status, remote, diagnostic = split_reply(row.last_error)
        if not _STATUS.fullmatch(status):
            status = "4.0.0"  # made right for the action below
        if action == "delivered":
            status = "2.0.0"
            if row.route is Route.REMOTE:
                action = "relayed"  # the next hop did not take the DSN request along
        elif action == "failed" and not status.startswith("5"):
            status = "5" + status[1:] if status[:1] == "4" else "5.0.0"
        elif action == "delayed" and not status.startswith("4"):
            status = "4.0.0"
        orcpt = row.orcpt
        return DSNRecipient(
            final_recipient=f"rfc822; {row.address}",
            action=action,
            status=status,
            original_recipient=orcpt.replace(";", "; ", 1) if orcpt else None,
            remote_mta=f"dns; {remote.split(' ')[0]}" if remote else None,
            diagnostic=diagnostic or (f"x-posthorn; {row.last_error}" if row.last_error else None),
            last_attempt=_when(row.updated) if row.attempts else None,
            will_retry_until=_when(message.created + self.lifetime)
            if action == "delayed"
            else None,
        )

    async def _original(self, message: QueuedMessage, *, full: bool) -> bytes:
        """The message as accepted: our Received field and the spool file (all of it for
        RET=FULL, else its header block)."""
        path = message.spool_path
        limit = None if full else HEADERS_LIMIT

        def read() -> bytes:
            with path.open("rb") as f:
                return f.read() if limit is None else f.read(limit)

        data = await self.spool.io(read)
        if not full:
            end = data.find(b"\r\n\r\n")
            data = data[: end + 4] if end >= 0 else data
        return message.envelope.received + data
