"""Backoff, expiry and row planning (posthorn.queue.schedule): pure functions."""

from __future__ import annotations

from pathlib import Path

from posthorn.queue.envelope import Envelope, EnvelopeRecipient, Notify
from posthorn.queue.records import (
    DSN_PENDING,
    Attempt,
    MessageState,
    QueuedMessage,
    QueuedRecipient,
    Route,
    Status,
    Target,
)
from posthorn.queue.schedule import MISSING_ATTEMPT, RetryPolicy, owes_bounce, plan

T0 = 1_700_000_000.0
POLICY = RetryPolicy(first=60, cap=3600, lifetime=5 * 86400)


def row(rid: int, address: str, **kw: object) -> QueuedRecipient:
    base: dict[str, object] = {
        "id": rid,
        "address": address,
        "route": Route.LOCAL,
        "status": Status.PENDING,
        "next_try": T0,
        "updated": T0,
    }
    base.update(kw)
    return QueuedRecipient(**base)  # type: ignore[arg-type]


def message(*rows: QueuedRecipient, mail_from: str = "a@far.example") -> QueuedMessage:
    env = Envelope(mail_from, tuple(EnvelopeRecipient(r.address, r.notify) for r in rows))
    return QueuedMessage("0" * 12, env, 10, Path("/x"), T0, MessageState.ACTIVE, rows)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [POLICY.delay(n) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert POLICY.delay(10_000) == 3600
    assert not POLICY.expired(T0, T0 + 5 * 86400 - 1)
    assert POLICY.expired(T0, T0 + 5 * 86400)


def test_owes_bounce() -> None:
    m = message(row(1, "b@o.example"))
    assert owes_bounce(m, None)
    assert owes_bounce(m, frozenset({Notify.FAILURE, Notify.DELAY}))
    assert not owes_bounce(m, frozenset({Notify.NEVER}))
    assert not owes_bounce(m, frozenset({Notify.SUCCESS}))
    # RFC 5321 §4.5.5: never to the null reverse path
    assert not owes_bounce(message(row(1, "b@o.example"), mail_from=""), None)


def test_deferred_then_expired() -> None:
    r = row(1, "b@o.example", account="b@o.example")
    m = message(r)
    p = plan(m, [r], [Attempt(1, Status.DEFERRED, "4.2.2 mailbox full")], T0 + 10, POLICY)
    (new,) = p.changed
    assert new.status is Status.DEFERRED and new.attempts == 1
    assert new.next_try == T0 + 10 + 60 and new.last_error == "4.2.2 mailbox full"
    late = T0 + 5 * 86400
    p = plan(m, [new], [Attempt(1, Status.DEFERRED, "4.2.2 mailbox full")], late, POLICY)
    (gone,) = p.changed
    assert gone.status is Status.FAILED and gone.dsn == DSN_PENDING
    assert gone.last_error == "4.2.2 mailbox full (gave up after 5 days)"


def test_delivered_records_resolution_in_place() -> None:
    r = row(1, "Bob+news@o.example")
    p = plan(
        message(r),
        [r],
        [Attempt(1, Status.DELIVERED, account="bob@o.example", tag="news")],
        T0,
        POLICY,
    )
    (new,) = p.changed
    assert (new.status, new.account, new.tag, new.attempts) == (
        Status.DELIVERED,
        "bob@o.example",
        "news",
        1,
    )


def test_rerouted_row_is_not_an_attempt() -> None:
    r = row(1, "x@far.example")
    p = plan(message(r), [r], [Attempt(1, Status.PENDING, route=Route.REMOTE)], T0, POLICY)
    (new,) = p.changed
    assert (new.route, new.status, new.attempts) == (Route.REMOTE, Status.PENDING, 0)


def test_expansion_children_inherit_notify_and_orcpt() -> None:
    notify = frozenset({Notify.FAILURE})
    r = row(7, "team@o.example", notify=notify, orcpt="rfc822;team@o.example")
    children = (
        Target("bob@o.example", Route.LOCAL, Status.DELIVERED, "bob@o.example"),
        Target(
            "carol@o.example",
            Route.LOCAL,
            Status.DEFERRED,
            "carol@o.example",
            reply="4.2.2 mailbox full",
        ),
        Target("x@far.example", Route.REMOTE, Status.PENDING),
        Target("gone@o.example", Route.LOCAL, Status.FAILED, reply="5.1.1 no such mailbox"),
    )
    p = plan(message(r), [r], [Attempt(7, Status.EXPANDED, children=children)], T0, POLICY)
    (parent,) = p.changed
    assert parent.status is Status.EXPANDED and parent.status.final
    assert [c.status for c in p.added] == [
        Status.DELIVERED,
        Status.DEFERRED,
        Status.PENDING,
        Status.FAILED,
    ]
    assert all(c.parent == 7 and c.notify == notify for c in p.added)
    assert all(c.orcpt == "rfc822;team@o.example" for c in p.added)
    assert p.added[1].next_try == T0 + 60
    assert p.added[2].route is Route.REMOTE and p.added[2].attempts == 0
    assert p.added[3].dsn == DSN_PENDING


def test_missing_attempt_defers() -> None:
    r = row(1, "b@o.example")
    (new,) = plan(message(r), [r], [], T0, POLICY).changed
    assert new.status is Status.DEFERRED and new.last_error == MISSING_ATTEMPT


def test_failure_without_bounce() -> None:
    r = row(1, "b@o.example", notify=frozenset({Notify.NEVER}))
    (new,) = plan(message(r), [r], [Attempt(1, Status.FAILED, "5.1.1 x")], T0, POLICY).changed
    assert new.status is Status.FAILED and new.dsn is None
