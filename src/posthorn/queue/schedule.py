"""When to try again, when to give up, and how an attempt changes the queue's rows. Pure.

`RetryPolicy` is the backoff: the first retry after ``first`` seconds, each later one twice as
long, never longer than ``cap``, for ``lifetime`` seconds after the message was accepted
(DESIGN.md "Delivery semantics"; RFC 5321 §4.5.4.1: give up after at least 4-5 days). Its
30-minute minimum between tries concerns SMTP destinations; local retries start sooner and
default to a shorter cap (a full mailbox is usually emptied by a person who then expects their
mail). The outbound queue will pass its own policy.

`plan` turns local delivery's `Attempt`s into the rows to write: the updated rows and the rows
alias expansion adds. Expiry: a temporary failure at or after ``created + lifetime`` becomes a
permanent one, keeping the last reason (its 4.x.x code tells the DSN why, RFC 3463 §3.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from posthorn.queue.envelope import Notify
from posthorn.queue.records import (
    DSN_PENDING,
    Attempt,
    QueuedMessage,
    QueuedRecipient,
    Route,
    Status,
    Target,
)

MISSING_ATTEMPT = "4.3.0 internal error: recipient not attempted"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first: float = 60.0
    cap: float = 3600.0
    lifetime: float = 5 * 86400.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed try (1 = the first)."""
        exponent = min(max(attempts - 1, 0), 62)
        return float(min(self.cap, self.first * (2**exponent)))

    def expired(self, created: float, now: float) -> bool:
        return now >= created + self.lifetime


def owes_bounce(message: QueuedMessage, notify: frozenset[Notify] | None) -> bool:
    """A failed recipient owes the sender a DSN (RFC 3461 §4.1: NOTIFY absent means FAILURE;
    RFC 5321 §4.5.5: never to the null reverse path, so bounces are never bounced)."""
    if message.envelope.mail_from == "":
        return False
    return notify is None or Notify.FAILURE in notify


@dataclass(frozen=True, slots=True)
class Plan:
    changed: list[QueuedRecipient]
    added: list[QueuedRecipient]

    @property
    def rows(self) -> list[QueuedRecipient]:
        return [*self.changed, *self.added]


def plan(
    message: QueuedMessage,
    due: Sequence[QueuedRecipient],
    attempts: Sequence[Attempt],
    now: float,
    policy: RetryPolicy,
) -> Plan:
    """The rows to write after a pass over ``due``. A due row without an attempt (a broken
    delivery agent) is deferred, never dropped."""
    by_id = {a.recipient_id: a for a in attempts}
    changed: list[QueuedRecipient] = []
    added: list[QueuedRecipient] = []
    for row in due:
        attempt = by_id.get(row.id) or Attempt(row.id, Status.DEFERRED, MISSING_ATTEMPT)
        if attempt.status is Status.EXPANDED:
            changed.append(
                replace(row, status=Status.EXPANDED, attempts=row.attempts + 1, updated=now)
            )
            added.extend(_child(message, row, t, now, policy) for t in attempt.children)
            continue
        route = attempt.route or row.route
        tried = attempt.status is not Status.PENDING
        updated = replace(
            row,
            route=route,
            account=attempt.account if attempt.account is not None else row.account,
            tag=attempt.tag if attempt.account is not None else row.tag,
            attempts=row.attempts + (1 if tried else 0),
            updated=now,
        )
        if attempt.remote is not None:
            updated = replace(updated, remote=attempt.remote)
        row_out = _outcome(message, updated, attempt.status, attempt.reply, now, policy)
        if (
            row_out.status is Status.DELIVERED
            and row_out.notify is not None
            and Notify.SUCCESS in row_out.notify
            and message.envelope.mail_from != ""
            and not attempt.dsn_relayed
        ):
            # RFC 3461 §4.1: the sender asked to hear of success; the bouncer tells them.
            row_out = replace(row_out, dsn=DSN_PENDING)
        changed.append(row_out)
    return Plan(changed, added)


def _child(
    message: QueuedMessage, parent: QueuedRecipient, target: Target, now: float, p: RetryPolicy
) -> QueuedRecipient:
    row = QueuedRecipient(
        id=0,
        address=target.address,
        route=target.route,
        status=Status.PENDING,
        notify=parent.notify,  # RFC 3461: NOTIFY and ORCPT follow alias expansion
        orcpt=parent.orcpt,
        parent=parent.id,
        account=target.account,
        tag=target.tag,
        attempts=0 if target.route is Route.REMOTE else 1,
        next_try=now,
        updated=now,
    )
    return _outcome(message, row, target.status, target.reply, now, p)


def _outcome(
    message: QueuedMessage,
    row: QueuedRecipient,
    status: Status,
    reply: str | None,
    now: float,
    policy: RetryPolicy,
) -> QueuedRecipient:
    if status is Status.DEFERRED and policy.expired(message.created, now):
        status = Status.FAILED
        reply = f"{reply or MISSING_ATTEMPT} (gave up after {_days(policy.lifetime)})"
    if status is Status.DEFERRED:
        return replace(
            row,
            status=status,
            last_error=reply,
            next_try=now + policy.delay(row.attempts),
        )
    if status is Status.FAILED:
        dsn = DSN_PENDING if owes_bounce(message, row.notify) else None
        return replace(row, status=status, last_error=reply, dsn=dsn, next_try=now)
    # delivered, or pending (re-routed to the outbound queue, which tries it from now on)
    return replace(row, status=status, last_error=reply, next_try=now)


def _days(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)} days"
    return f"{int(seconds)} s"
