"""The in-process change feed: committed store changes fanned out to readers (IDLE, web push).

Owns: `ChangeFeed`, which a store calls with `publish` after each commit, and `FeedSubscription`,
the `ChangeSubscription` a reader holds. Shared by every `MailStore` implementation that runs
in this process (the SQLite store now, the PostgreSQL store's local side later).

Invariants:
- A subscription sees every change of its account published after `subscribe`, in publish
  order, which the store makes its commit order (it publishes on the event loop, right after the
  commit is known, with no ``await`` in between).
- Nothing is lost silently. Each subscription buffers at most ``maxsize`` changes; when a
  publish would overflow it, the buffer is dropped and the next `get`/`get_nowait` raises
  `ChangesLost` once. The reader then resyncs from the store (STATUS, FETCH CHANGEDSINCE,
  `expunged_since`) and keeps reading: changes published after the overflow are delivered again.
- `publish` never blocks and never awaits: a slow reader costs memory up to its bound, not
  latency for the writer.
- Not thread-safe: publish, subscribe, get and close all happen on the event loop thread.

Cross-process changes reach this feed through the store: when another process writes the same
store (the ``posthorn`` CLI appending while the server runs, or ``serve --workers N``), the
SQLite store notices within a poll interval and publishes one not-itemised change (empty
``uids``: resync) per mailbox that moved; see `posthorn.store.sqlite.watch`. The PostgreSQL
store will get the same effect from LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from posthorn.store.base import Change, ChangesLost

DEFAULT_MAXSIZE = 1000
"""Changes buffered per subscription before it is marked as having lost some."""


class FeedSubscription:
    """One reader's bounded queue of one account's changes (a `ChangeSubscription`)."""

    def __init__(self, feed: ChangeFeed, account: str, maxsize: int) -> None:
        self.account = account
        self._feed = feed
        self._maxsize = maxsize
        self._buffer: deque[Change] = deque()
        self._lost = False
        self._closed = False
        self._ready = asyncio.Event()

    # called by the feed --------------------------------------------------------
    def _push(self, change: Change) -> None:
        if self._lost:
            # The reader must resync anyway; the changes made before it does are covered by
            # that resync, so keeping them would only deliver them twice.
            return
        if len(self._buffer) >= self._maxsize:
            self._buffer.clear()
            self._lost = True
        else:
            self._buffer.append(change)
        self._ready.set()

    def _shut(self) -> None:
        self._closed = True
        self._ready.set()

    # the ChangeSubscription protocol ------------------------------------------------
    async def get(self) -> Change:
        """The next change; waits for one. Raises `ChangesLost` after an overflow (once) and
        when the subscription or the store was closed."""
        while True:
            change = self.get_nowait()
            if change is not None:
                return change
            self._ready.clear()
            await self._ready.wait()

    def get_nowait(self) -> Change | None:
        """The next change if there is one, else None. Raises like `get`."""
        if self._lost:
            self._lost = False
            raise ChangesLost(f"change feed overflow for {self.account!r}: resync")
        if self._buffer:
            return self._buffer.popleft()
        if self._closed:
            raise ChangesLost("change subscription closed")
        return None

    def close(self) -> None:
        """Stop receiving changes. Idempotent."""
        if not self._closed:
            self._feed._remove(self)
            self._shut()


class ChangeFeed:
    """Fan-out of committed changes to the subscriptions of each account."""

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._subs: dict[str, set[FeedSubscription]] = {}

    def subscribe(self, account: str) -> FeedSubscription:
        sub = FeedSubscription(self, account, self._maxsize)
        self._subs.setdefault(account, set()).add(sub)
        return sub

    def publish(self, changes: Iterable[Change]) -> None:
        """Hand committed changes to their accounts' subscriptions. Call only after commit."""
        for change in changes:
            for sub in self._subs.get(change.account, ()):
                sub._push(change)

    def subscriber_count(self, account: str) -> int:
        return len(self._subs.get(account, ()))

    def accounts(self) -> list[str]:
        """The accounts that have at least one subscription."""
        return list(self._subs)

    def close(self) -> None:
        """Close every subscription: blocked readers wake with `ChangesLost`."""
        subs = [s for group in self._subs.values() for s in group]
        self._subs.clear()
        for sub in subs:
            sub._shut()

    def _remove(self, sub: FeedSubscription) -> None:
        group = self._subs.get(sub.account)
        if group is not None:
            group.discard(sub)
            if not group:
                del self._subs[sub.account]
