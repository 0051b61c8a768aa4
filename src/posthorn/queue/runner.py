"""`QueueRunner`: takes queued messages to a delivery agent, now and after every restart.

One runner per route: ``Route.LOCAL`` with local delivery, ``Route.REMOTE`` with outbound
SMTP delivery, each with its own retry policy; a row that alias expansion moves to the other
route kicks that route's runner (`peers`). Below, "local" stands for the runner's route.

Work arrives two ways: every commit is handed over at once by the spool (in-process, no
polling delay), and a scan of the queue database finds what is due — at start (crash recovery:
everything accepted and not yet delivered), when a retry time comes, and after a backlog. A
message is handled by at most one task at a time; at most ``concurrency`` deliveries run at
once.

One pass over a message: take its due local rows, hand them to local delivery (one
`Attempt` per row), turn the attempts into row updates (`schedule.plan`: backoff, expiry,
alias expansion rows), write them in one transaction, and — when that transaction found the
message finished and deleted its row — delete the spool file.

Crash safety (DESIGN.md "Delivery semantics", STYLE.md "better to deliver twice than to lose
mail"): the store commits the delivered copies first, the queue records it second. A crash
in between leaves the rows as they were (pending or deferred), so the restart delivers those
copies again: a duplicate, never a loss. A crash after the queue commit and before the file
deletion leaves an orphan file, swept by `Spool.open`. An exception anywhere in a pass
defers (local delivery's failures) or leaves the rows untouched for a later pass (the queue
database's); nothing is ever dropped or failed because of a bug.

Rows that failed for good and owe the sender a DSN keep the message queued (``dsn=pending``,
"failed, bounce pending" in ``posthorn queue list``). After each pass ``after_pass`` (the
bouncer) queues the DSN (RFC 3464), marks the rows ``dsn=sent``, and the message is then
deleted. Changes the CLI commits (``queue retry``, ``release``) are noticed within
`EXTERNAL_CHECK` seconds through the database's ``data_version``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from posthorn.log import bind, get_logger
from posthorn.queue.records import (
    Attempt,
    QueuedMessage,
    QueuedRecipient,
    Route,
    Status,
)
from posthorn.queue.schedule import Plan, RetryPolicy, plan
from posthorn.queue.spool import Spool

log = get_logger(__name__)

DELIVERY_BUG = "4.3.0 temporary failure (internal error)"
EXTERNAL_CHECK = 1.0  # seconds between checks for the CLI's changes to the queue


class LocalDeliverer(Protocol):
    """A delivery agent as the runner sees it: `posthorn.delivery.local.LocalDelivery` for
    ``Route.LOCAL``, `posthorn.delivery.outbound.OutboundDelivery` for ``Route.REMOTE``."""

    async def deliver(
        self, message: QueuedMessage, due: Sequence[QueuedRecipient]
    ) -> list[Attempt]: ...


AfterPass = Callable[[QueuedMessage, Plan], Awaitable[None]]
"""Called after a pass's rows are written (the bouncer: DSNs for what just failed)."""


class QueueRunner:
    """Delivers the spool's local recipients. ``start()`` after `Spool.open`, ``stop()``
    before `Spool.close`.

    ``concurrency``: deliveries at once; ``backlog``: messages held in memory waiting for a
    slot (more are left in the database for the next scan); ``poll``: the longest sleep
    between scans (a safety net: due times and commits wake the runner anyway).
    """

    def __init__(
        self,
        spool: Spool,
        local: LocalDeliverer,
        *,
        retry: RetryPolicy | None = None,
        route: Route = Route.LOCAL,
        after_pass: AfterPass | None = None,
        split: Callable[[Sequence[QueuedRecipient]], list[list[QueuedRecipient]]] | None = None,
        on_external_change: Callable[[], Awaitable[None]] | None = None,
        concurrency: int = 16,
        backlog: int = 1024,
        poll: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.spool = spool
        self.local = local
        self.route = route
        self.after_pass = after_pass
        self.split = split  # rows into groups recorded separately (outbound: per domain)
        self.on_external_change = on_external_change  # the CLI committed (bouncer.sweep)
        self.peers: list[QueueRunner] = []  # runners of other routes, kicked on a re-route
        self._version: int | None = None
        self.retry = retry or RetryPolicy()
        self.clock = clock or spool.clock
        self._concurrency = max(1, concurrency)
        self._max_tasks = max(self._concurrency, backlog)
        self._poll = poll
        self._tasks: dict[str, asyncio.Task[float | None]] = {}
        self._running: set[str] = set()
        self._hold_off: dict[str, float] = {}
        self._slots: asyncio.Semaphore | None = None
        self._wake = asyncio.Event()
        self._wake_at: float | None = None
        self._more = False
        self._scanner: asyncio.Task[None] | None = None
        self._stopping = False

    # lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        self._slots = asyncio.Semaphore(self._concurrency)
        self.spool.add_listener(self._on_commit)
        self._scanner = asyncio.get_running_loop().create_task(self._scan_loop())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work; let deliveries in progress finish within ``grace`` seconds, then
        cancel the rest (their rows stay as they were: they run again after the restart)."""
        self._stopping = True
        self.spool.remove_listener(self._on_commit)
        if self._scanner is not None:
            self._scanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scanner
            self._scanner = None
        for qid, task in list(self._tasks.items()):
            if qid not in self._running:
                task.cancel()
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                log.warning("queue.stop_cancelled", count=len(late))
            await asyncio.gather(*tasks, return_exceptions=True)

    def kick(self) -> None:
        """Scan for due work now (after a clock change in tests; ``queue retry`` later)."""
        self._wake.set()

    async def settle(self) -> None:
        """Return once nothing is in flight and a scan finds nothing due (tests, tools)."""
        while True:
            if self._tasks:
                await asyncio.wait(list(self._tasks.values()))
                continue
            started, _ = await self._scan()
            if not started and not self._tasks:
                return

    # finding work --------------------------------------------------------------
    def _on_commit(self, message: QueuedMessage) -> None:
        if self._stopping or message.queue_id in self._tasks:
            return
        if not any(r.route is self.route for r in message.recipients):
            # Not ours (yet): a task holding this snapshot would find nothing to do, and while
            # it waited for a slot it would make the other runner's kick skip the message.
            return
        if len(self._tasks) >= self._max_tasks:
            self._more = True  # it is durable: a scan takes it once there is room
            return
        self._dispatch(message.queue_id, message)

    async def _scan_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                _, delay = await self._scan()
            except Exception:
                log.exception("queue.scan_failed")
                delay = self._poll
            delay = max(0.0, min(delay, self._poll))
            self._wake_at = self.clock() + delay
            await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        """Until ``delay`` passes, a kick, or another process (``posthorn queue retry``,
        ``release``, ...) commits to the queue database: checked every `EXTERNAL_CHECK` s."""
        deadline = asyncio.get_running_loop().time() + delay
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(left, EXTERNAL_CHECK))
                return
            try:
                version = await self.spool.db.data_version()
            except Exception:
                log.exception("queue.data_version_failed")
                continue
            if self._version is not None and version != self._version:
                self._version = version
                # An operator acted (``queue retry``, ``release``): messages held off after
                # a failed pass get their chance now rather than after the pause.
                self._hold_off.clear()
                if self.on_external_change is not None:
                    try:
                        await self.on_external_change()
                    except Exception:
                        log.exception("queue.external_change_failed")
                return
            self._version = version

    async def _scan(self) -> tuple[int, float]:
        """Dispatch due messages; returns how many, and seconds until the next due time."""
        now = self.clock()
        self._hold_off = {q: t for q, t in self._hold_off.items() if t > now}
        room = self._max_tasks - len(self._tasks)
        if room <= 0:
            self._more = True
            return 0, self._poll
        limit = room + len(self._tasks) + len(self._hold_off)
        due, later = await self.spool.db.due(self.route, now, limit)
        self._more = len(due) >= limit
        started = 0
        for qid in due:
            if qid in self._tasks or qid in self._hold_off:
                continue
            if len(self._tasks) >= self._max_tasks:
                self._more = True
                break
            self._dispatch(qid, None)
            started += 1
        wake_times = list(self._hold_off.values())
        if later is not None:
            wake_times.append(later)
        return started, (min(wake_times) - now if wake_times else self._poll)

    def _dispatch(self, qid: str, message: QueuedMessage | None) -> None:
        # A fresh context: a delivery started by an SMTP session's commit must not log under
        # that session's connection id (posthorn.log keeps ids in contextvars).
        task = asyncio.get_running_loop().create_task(
            self._handle(qid, message), context=contextvars.Context()
        )
        self._tasks[qid] = task
        task.add_done_callback(lambda t: self._finished(qid, t))

    def _finished(self, qid: str, task: asyncio.Task[float | None]) -> None:
        self._tasks.pop(qid, None)
        self._running.discard(qid)
        next_try = None if task.cancelled() or task.exception() else task.result()
        if self._stopping:
            return
        if self._more:
            self._more = False
            self._wake.set()
        elif next_try is not None and (self._wake_at is None or next_try < self._wake_at):
            self._wake.set()

    # one message ---------------------------------------------------------------
    async def _handle(self, qid: str, message: QueuedMessage | None) -> float | None:
        """One pass over one message; returns when its rows want the next pass, if set."""
        assert self._slots is not None
        async with self._slots:
            self._running.add(qid)
            with bind(queue=qid):
                try:
                    return await self._pass(qid, message)
                except Exception:
                    # The queue database (or the spool) failed us: the rows are as they were.
                    # Do not spin on them: try this message again after a while.
                    log.exception("queue.pass_failed")
                    until = self.clock() + self.retry.first
                    self._hold_off[qid] = until
                    return until

    async def _pass(self, qid: str, message: QueuedMessage | None) -> float | None:
        if message is None:
            message = await self.spool.db.load(qid)
            if message is None:
                return None  # finished meanwhile
        now = self.clock()
        due = [r for r in message.recipients if r.due(self.route, now)]
        if not due:
            return None
        groups = self.split(due) if self.split is not None else [due]
        # Each group (a destination) is recorded as soon as it is done, so a slow destination
        # never leaves a finished one unrecorded: after a crash only rows in flight repeat.
        next_times: list[float] = []
        removed = False
        for done in asyncio.as_completed([self._group(qid, message, g, now) for g in groups]):
            gone, when = await done
            removed = removed or gone
            if when is not None:
                next_times.append(when)
        return None if removed else min(next_times, default=None)

    async def _group(
        self, qid: str, message: QueuedMessage, due: list[QueuedRecipient], now: float
    ) -> tuple[bool, float | None]:
        """Deliver one group and record it: (the message is finished and removed, when this
        group's rows want the next pass)."""
        try:
            attempts = await self.local.deliver(message, due)
        except Exception:
            log.exception("queue.delivery_failed")
            attempts = [Attempt(r.id, Status.DEFERRED, DELIVERY_BUG) for r in due]
        now = max(now, self.clock())
        steps = plan(message, due, attempts, now, self.retry)
        finished = await self.spool.db.apply(qid, steps.changed, steps.added)
        _log_rows(steps, now)
        if any(r.route is not self.route and r.status is Status.PENDING for r in steps.rows):
            for peer in self.peers:
                peer.kick()  # alias expansion sent a row to the other route
        if self.after_pass is not None:
            try:
                await self.after_pass(message, steps)
            except Exception:
                log.exception("queue.after_pass_failed")
        if finished is not None:
            await self.spool.remove_file(finished)
            log.info("queue.removed")
            return True, None
        retries = [
            r.next_try for r in steps.rows if r.route is self.route and r.status is Status.DEFERRED
        ]
        return False, min(retries, default=None)


def _log_rows(steps: Plan, now: float) -> None:
    for r in steps.rows:
        if r.status is Status.DELIVERED:
            log.info("queue.delivered", to=r.address, account=r.account or "")
        elif r.status is Status.DEFERRED:
            log.info(
                "queue.deferred",
                to=r.address,
                attempts=r.attempts,
                retry_in=f"{r.next_try - now:.0f}s",
                reason=r.last_error or "",
            )
        elif r.status is Status.FAILED:
            log.warning(
                "queue.failed", to=r.address, reason=r.last_error or "", bounce=r.dsn or "none"
            )
        elif r.status is Status.PENDING and r.route is Route.REMOTE:
            log.info("queue.remote_pending", to=r.address)
        elif r.status is Status.EXPANDED:
            log.info("queue.expanded", to=r.address)
