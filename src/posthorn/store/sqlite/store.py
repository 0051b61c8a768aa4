"""`SQLiteMailStore`: the embedded `MailStore` — SQLite (WAL) for metadata, files for bytes.

Layout of ``data_dir``: ``mail.sqlite3`` (+ ``-wal``, ``-shm``) and ``blobs/<2 hex>/<32 hex>``.

Owns the asyncio side: each store method is at most one hop to a database thread (one
transaction, see `posthorn.store.sqlite.db`) plus, for message bytes, one hop to an I/O thread
pool that writes/fsyncs or reads blob files. Writes go to the one writer thread (``BEGIN
IMMEDIATE``, group commit); reads (fetch, read, read_headers, status, list_mailboxes,
get_mailbox, list_subscriptions, quota_usage, expunged_since) go to reader threads with their
own read-only connections, so a FETCH of a big mailbox neither waits behind deliveries nor holds
them up. The SQL lives in `mailboxes` and `messages`; the files in `blobs`; the change feed in
`posthorn.store.changes`; noticing other processes' commits in `watch`.

Invariants:
- Durable on return: a blob is written and fsync'd (file and directory) before the transaction
  that references it, and the method returns after that transaction's COMMIT (WAL,
  ``synchronous=FULL``).
- Parse once: each stored blob is parsed by ``parse_message`` exactly once, on the I/O thread,
  and its `MessageInfo` JSON is kept in the database, shared by every copy.
- After-commit work (publishing changes, deleting blob files whose last reference went) is
  attached to the transaction's future, so it happens even if the caller was cancelled, in
  commit order, and never for a transaction that failed.
- Read-your-writes: a read submitted after a write returned sees it (WAL readers start their
  snapshot after submission), as does a read started after its change was published.
- Changes committed by other processes are published within about ``poll_interval`` seconds
  while the account has subscribers, never twice for our own commits (`watch`).
- A crash between a blob write and its commit, or between a commit and a file deletion, leaves
  an orphan file; `open` sweeps orphans older than ``orphan_grace`` seconds (younger ones may
  belong to another process, e.g. the CLI, mid-append).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from posthorn.mail.info import MessageInfo
from posthorn.store.base import (
    AppendResult,
    ChangeSubscription,
    CopyResult,
    Delivery,
    FlagMode,
    Mailbox,
    MailboxCounters,
    MailboxStatus,
    MessageMeta,
    MessageSource,
    NoSuchMessage,
    QuotaUsage,
    StoreError,
    StoreFlagsResult,
    UIDRanges,
)
from posthorn.store.changes import ChangeFeed
from posthorn.store.sqlite import mailboxes, messages
from posthorn.store.sqlite.blobs import BlobFiles, StagedBlob
from posthorn.store.sqlite.common import Outcome, encode_date
from posthorn.store.sqlite.db import DatabaseClosed, SQLiteReaders, SQLiteThread, apply_migrations
from posthorn.store.sqlite.schema import MIGRATIONS
from posthorn.store.sqlite.watch import ForeignWatch, Poller

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)

DB_NAME = "mail.sqlite3"
BLOB_DIR = "blobs"


def _default_parse(data: bytes) -> MessageInfo:
    # Imported here, not at module level: the MIME package is optional for tools that only
    # read the store, and importing it lazily keeps start-up cheap.
    from posthorn.mail.mime import parse_message

    return parse_message(data)


class SQLiteMailStore:
    """The embedded message store. ``open()`` before use, ``close()`` after.

    ``parse`` turns message bytes into `MessageInfo` (default: `posthorn.mail.mime`); ``feed``
    lets several components share one `ChangeFeed` (the store closes only a feed it made);
    ``link_sources`` hard-links `Path` sources instead of copying them; ``orphan_grace`` is the
    age (seconds) below which an unreferenced blob file is left alone by the sweep;
    ``busy_timeout`` (seconds) is how long a transaction waits for another process's lock;
    ``io_threads`` sizes the pool that writes, fsyncs and reads blob files; ``readers`` is the
    number of read-only database connections (one thread each); ``poll_interval`` (seconds) is
    how often, while someone is subscribed, the store looks for other processes' commits (0
    turns that off); ``clock`` feeds UIDVALIDITY.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        parse: Callable[[bytes], MessageInfo] | None = None,
        feed: ChangeFeed | None = None,
        link_sources: bool = True,
        orphan_grace: float = 3600.0,
        busy_timeout: float = 10.0,
        io_threads: int = 16,
        readers: int = 2,
        poll_interval: float = 0.3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._parse = parse or _default_parse
        self._own_feed = feed is None
        self._feed = feed or ChangeFeed()
        self._orphan_grace = orphan_grace
        self._clock = clock
        self._blobs = BlobFiles(self.data_dir / BLOB_DIR, link_sources=link_sources)
        self._db = SQLiteThread(
            self.data_dir / DB_NAME,
            name="mailstore",
            busy_timeout=busy_timeout,
            setup=partial(apply_migrations, migrations=MIGRATIONS),
        )
        self._reads = SQLiteReaders(
            self.data_dir / DB_NAME, name="mailstore", threads=readers, busy_timeout=busy_timeout
        )
        self._io_threads = io_threads
        self._io: ThreadPoolExecutor | None = None
        self._cleanups: set[asyncio.Future[None]] = set()
        # Writes in flight, by sequence number: a poll's snapshot is compared only once every
        # write that may be in it has been published (see `watch`).
        self._write_seq = 0
        self._unsettled: set[int] = set()
        self._settled = asyncio.Event()
        self._watch = ForeignWatch()
        self._poller = Poller(lambda: self._write_seq)
        self._poll_interval = poll_interval
        self._poll_task: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        self._open = False

    # plumbing ----------------------------------------------------------------
    async def _io_call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Blocking file work, on the I/O pool (never the event loop, never the DB thread)."""
        if self._io is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, partial(fn, *args, **kwargs))

    async def _call(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], Outcome[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """One write transaction on the writer thread; after-commit work runs even if we are
        cancelled meanwhile (hence the shield)."""
        fut = self._submit_write(lambda conn: fn(conn, *args, **kwargs))
        try:
            outcome = await asyncio.shield(fut)
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode != sqlite3.SQLITE_FULL:
                raise
            # The same "disk full" as a blob write's ENOSPC, so readers answer it one way
            # (IMAP NO [OVERQUOTA], local delivery defers) without knowing about SQLite.
            raise OSError(errno.ENOSPC, "message database: disk full") from e
        return outcome.value

    async def _read(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], Outcome[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """One read transaction on a reader thread (no write lock, nothing to publish)."""
        outcome = await self._reads.run(fn, *args, **kwargs)
        return outcome.value

    def _submit_write(
        self, job: Callable[[sqlite3.Connection], Outcome[T]], drop_on_error: str = ""
    ) -> asyncio.Future[Outcome[T]]:
        # The sequence number is taken before the job can commit: a poll that reads
        # ``_write_seq`` after its snapshot began then covers every write in that snapshot.
        self._write_seq += 1
        seq = self._write_seq
        self._unsettled.add(seq)
        try:
            fut = self._db.submit(job)
        except BaseException:
            self._settle(seq)
            raise
        fut.add_done_callback(partial(self._after_commit, seq=seq, drop_on_error=drop_on_error))
        return fut

    def _after_commit(
        self, fut: asyncio.Future[Outcome[T]], seq: int, drop_on_error: str = ""
    ) -> None:
        try:
            if fut.cancelled():
                return
            if fut.exception() is not None:
                if drop_on_error:
                    self._delete_blobs([drop_on_error])
                return
            outcome = fut.result()
            self._watch.own(outcome.changes, seq)
            self._feed.publish(outcome.changes)
            if outcome.dead_blobs:
                self._delete_blobs(outcome.dead_blobs)
        finally:
            self._settle(seq)

    def _settle(self, seq: int) -> None:
        self._unsettled.discard(seq)
        self._settled.set()

    def _delete_blobs(self, names: list[str]) -> None:
        if self._io is None:
            return  # left as orphans; the next open sweeps them
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(self._io, self._blobs.delete, names)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _stage(self, source: MessageSource) -> StagedBlob:
        """Write (or link) the blob durably and parse it, on the I/O pool. If we are cancelled
        meanwhile, the file is deleted as soon as the write finishes."""
        if self._io is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        staging = loop.run_in_executor(self._io, self._blobs.stage, source, self._parse)
        try:
            return await asyncio.shield(staging)
        except asyncio.CancelledError:
            staging.add_done_callback(self._drop_staged)
            raise

    def _drop_staged(self, staging: asyncio.Future[StagedBlob]) -> None:
        if not staging.cancelled() and staging.exception() is None:
            self._delete_blobs([staging.result().name])

    # lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        """Create the directories, open the database (migrating its schema), sweep orphans."""
        self._io = ThreadPoolExecutor(self._io_threads, thread_name_prefix="mailstore-io")
        try:
            await self._io_call(self.data_dir.mkdir, parents=True, exist_ok=True)
            await self._io_call(self._blobs.ensure_root)
            await self._db.start()
            await self._reads.start()
            await self.sweep_orphans(self._orphan_grace)
        except BaseException:
            await self.close()
            raise
        self._open = True
        if self._feed.accounts():  # a shared feed may have subscribers already
            self._start_watching()

    async def close(self) -> None:
        """Stop watching other processes, finish queued transactions and blob deletions, wake
        subscribers (`ChangesLost`; only if the feed is the store's own), stop the threads
        (readers before the writer, whose connection checkpoints last). Idempotent."""
        self._open = False
        if self._poll_task is not None:
            task, self._poll_task = self._poll_task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._reads.close()
        await self._db.close()
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        if self._own_feed:
            self._feed.close()
        if self._io is not None:
            io, self._io = self._io, None
            await asyncio.to_thread(io.shutdown)

    async def sweep_orphans(self, grace: float) -> int:
        """Delete blob files no database row references, last changed over ``grace`` seconds
        ago (and stale temp files). Returns the number removed. Run by `open`."""
        removed = 0
        for directory in await self._io_call(self._blobs.fanout_dirs):
            names = await self._io_call(self._blobs.candidates, directory)
            if not names:
                continue
            known = await self._db.run(_known_blobs, names)
            orphans = [n for n in names if n not in known]
            if orphans:
                removed += await self._io_call(
                    self._blobs.remove_orphans, directory, orphans, grace
                )
        return removed

    # accounts ----------------------------------------------------------------
    async def ensure_account(self, account: str) -> None:
        await self._call(mailboxes.ensure_account, account, self._clock)

    async def delete_account(self, account: str) -> None:
        await self._call(mailboxes.delete_account, account)

    async def quota_usage(self, account: str) -> QuotaUsage:
        return await self._read(mailboxes.quota_usage, account)

    # mailboxes ---------------------------------------------------------------
    async def list_mailboxes(self, account: str) -> list[Mailbox]:
        return await self._read(mailboxes.list_mailboxes, account)

    async def get_mailbox(self, account: str, name: str) -> Mailbox:
        return await self._read(mailboxes.get_mailbox, account, name)

    async def create_mailbox(
        self, account: str, name: str, special_use: str | None = None
    ) -> Mailbox:
        return await self._call(mailboxes.create_mailbox, account, name, special_use, self._clock)

    async def rename_mailbox(self, account: str, old: str, new: str) -> None:
        await self._call(mailboxes.rename_mailbox, account, old, new, self._clock)

    async def delete_mailbox(self, account: str, name: str) -> None:
        await self._call(mailboxes.delete_mailbox, account, name)

    async def set_subscribed(self, account: str, name: str, subscribed: bool) -> None:
        await self._call(mailboxes.set_subscribed, account, name, subscribed)

    async def list_subscriptions(self, account: str) -> list[str]:
        return await self._read(mailboxes.list_subscriptions, account)

    async def status(self, account: str, mailbox_id: int) -> MailboxStatus:
        return await self._read(mailboxes.status, account, mailbox_id)

    async def counters(self, account: str, mailbox_id: int) -> MailboxCounters:
        return await self._read(mailboxes.counters, account, mailbox_id)

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
        copy = messages.NewCopy(
            account, mailbox_id, frozenset(flags), encode_date(internal_date), b"", quota
        )
        (result,) = await self._store_new(source, [copy])
        if isinstance(result, StoreError):
            raise result
        return result

    async def deliver(
        self, source: MessageSource, deliveries: Sequence[Delivery]
    ) -> list[AppendResult | StoreError]:
        if not deliveries:
            return []
        copies = [
            messages.NewCopy(
                d.account,
                d.mailbox_id,
                frozenset(d.flags),
                encode_date(d.internal_date),
                bytes(d.prefix),
                d.quota,
            )
            for d in deliveries
        ]
        return await self._store_new(source, copies)

    async def _store_new(
        self, source: MessageSource, copies: list[messages.NewCopy]
    ) -> list[AppendResult | StoreError]:
        staged = await self._stage(source)
        try:
            fut = self._submit_write(
                partial(messages.store_new, staged=staged, copies=copies), staged.name
            )
        except BaseException:
            self._delete_blobs([staged.name])
            raise
        try:
            outcome = await asyncio.shield(fut)
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode != sqlite3.SQLITE_FULL:
                raise
            # The same "disk full" as a blob write's ENOSPC, so readers answer it one way
            # (IMAP NO [OVERQUOTA], local delivery defers) without knowing about SQLite.
            raise OSError(errno.ENOSPC, "message database: disk full") from e
        return outcome.value

    async def fetch(
        self,
        account: str,
        mailbox_id: int,
        uids: UIDRanges | None = None,
        *,
        changed_since: int | None = None,
        with_info: bool = False,
    ) -> list[MessageMeta]:
        fetched = await self._read(
            messages.fetch, account, mailbox_id, uids, changed_since, with_info
        )
        if fetched.infos is None:
            return fetched.metas
        return await self._io_call(messages.attach_info, fetched)

    async def read(
        self, account: str, mailbox_id: int, uid: int, start: int = 0, length: int | None = None
    ) -> bytes:
        if start < 0 or (length is not None and length < 0):
            raise ValueError("start and length must not be negative")
        where = await self._read(messages.locate, account, mailbox_id, uid)
        prefix = where.prefix
        total = len(prefix) + where.blob_size
        end = total if length is None else min(total, start + length)
        if start >= end:
            return b""
        head = prefix[start:end]
        if end <= len(prefix):
            return head
        blob_start = max(start - len(prefix), 0)
        try:
            tail = await self._io_call(
                self._blobs.read, where.blob_name, blob_start, end - len(prefix) - blob_start
            )
        except FileNotFoundError:
            # Expunged (its last copy) between the lookup and the read.
            raise NoSuchMessage(f"message {uid} is gone") from None
        return head + tail

    async def read_headers(
        self, account: str, mailbox_id: int, uids: Sequence[int]
    ) -> dict[int, bytes]:
        spots = await self._read(messages.locate_headers, account, mailbox_id, list(uids))
        if not spots:
            return {}
        heads = await self._io_call(
            self._blobs.read_heads, [(s.blob_name, s.header_size) for s in spots]
        )
        # A blob missing here lost its last copy to an expunge after the lookup.
        return {s.uid: s.prefix + heads[s.blob_name] for s in spots if s.blob_name in heads}

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
        return await self._call(
            messages.store_flags,
            account,
            mailbox_id,
            uids,
            frozenset(flags),
            mode,
            unchanged_since,
        )

    async def expunge(
        self,
        account: str,
        mailbox_id: int,
        uids: UIDRanges | None = None,
        *,
        only_deleted: bool = True,
    ) -> list[int]:
        return await self._call(messages.expunge, account, mailbox_id, uids, only_deleted)

    async def expunged_since(self, account: str, mailbox_id: int, modseq: int) -> list[int]:
        return await self._read(messages.expunged_since, account, mailbox_id, modseq)

    async def copy(
        self,
        account: str,
        mailbox_id: int,
        uids: UIDRanges,
        dest_mailbox_id: int,
        *,
        quota: int | None = None,
    ) -> CopyResult:
        return await self._call(
            messages.copy_messages, account, mailbox_id, uids, dest_mailbox_id, quota, False
        )

    async def move(
        self, account: str, mailbox_id: int, uids: UIDRanges, dest_mailbox_id: int
    ) -> CopyResult:
        return await self._call(
            messages.copy_messages, account, mailbox_id, uids, dest_mailbox_id, None, True
        )

    # change feed -------------------------------------------------------------
    def subscribe(self, account: str) -> ChangeSubscription:
        sub = self._feed.subscribe(account)
        if self._open:
            self._start_watching()
        return sub

    # other processes' commits --------------------------------------------------------
    def _start_watching(self) -> None:
        """Record our own changes for every subscribed account from now on, and make sure the
        poll runs (at once, if an account needs its baseline)."""
        if self._poll_interval <= 0:
            return
        if self._watch.watch(self._feed.accounts()):
            self._poke.set()
        if self._poll_task is None or self._poll_task.done():
            self._poll_task = asyncio.get_running_loop().create_task(
                self._watch_others(), name="mailstore-watch"
            )

    async def _watch_others(self) -> None:
        """Poll for other processes' commits while anyone is subscribed; ends when nobody is."""
        while True:
            self._poke.clear()
            force = self._watch.watch(self._feed.accounts())
            accounts = self._watch.accounts()
            if not accounts:
                return
            try:
                snap = await self._reads.run(
                    self._poller.poll, accounts, self._watch.known(), force
                )
            except DatabaseClosed:
                return
            except Exception:  # a bug or a broken database: log it, keep the server up
                log.exception("polling the store for other processes' changes failed")
                snap = None
            if snap is not None:
                while any(seq <= snap.bound for seq in self._unsettled):
                    self._settled.clear()
                    await self._settled.wait()
                self._feed.publish(self._watch.apply(snap))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._poll_interval)


def _known_blobs(conn: sqlite3.Connection, names: list[str]) -> set[str]:
    known: set[str] = set()
    for i in range(0, len(names), 500):
        chunk = names[i : i + 500]
        marks = ",".join("?" * len(chunk))
        known.update(
            r[0] for r in conn.execute(f"SELECT name FROM blobs WHERE name IN ({marks})", chunk)
        )
    return known
