"""The durable spool: where an accepted message lives from DATA until its last delivery.

Owns ``data_dir/spool/`` (one file per message, named by its queue id, holding the message
bytes exactly as received) and the queue database ``data_dir/queue.sqlite3`` (`QueueDB`, on
its own `SQLiteThread`). The SMTP side's whole output is `Spool.new_message` →
`SpoolWriter.write` … → `SpoolWriter.commit` or `abort` (DESIGN.md "The data path").

What is on disk at each step of a commit, and what a crash (kill -9, power loss) there leaves:

1. ``write``: bytes are buffered, then appended to ``spool/<ID>.tmp`` in large blocks on an
   I/O thread. Crash: a ``.tmp`` file, deleted by the next `Spool.open`. No 250 was sent, so
   the client still has the message and retries (RFC 5321 §4.5.4.1, §6.1).
2. ``commit``: the last block is written, the file fsync'd and given its name ``spool/<ID>``
   (link + unlink: never replaces an existing file; see `durable.finish_file`). Crash: a file
   no queue row names (or still the ``.tmp``): swept by `Spool.open`.
3. The directory ``spool/`` is fsync'd (shared between concurrent commits: `DirectorySync`).
   Crash: a durable file without a row: swept.
4. The message row and one row per RCPT TO are inserted in one transaction and committed
   (``synchronous=FULL``: the WAL is fsync'd; shared between concurrent commits by
   `SQLiteThread`'s group commit). Crash before the COMMIT: as 3. After it: the message is
   queued, complete, and will be delivered after restart.
5. `commit` returns the queue id; only now may the SMTP side send ``250 2.0.0 Ok: queued as
   ID`` (RFC 5321 §4.4, §6.1: after the 250 we own the message and the sender forgets it). A
   crash between 4 and the 250 reaching the client makes the client retry: a duplicate,
   never a loss ("better to deliver twice than to lose mail").

Invariants:
- A queue row exists only while its file does: files become durable before rows commit, and
  are deleted only after the row's deletion commits (`posthorn.queue.runner`).
- A committed spool file is never modified; the message store may hard-link it.
- `SpoolWriter.abort` never deletes a committed message, and a commit whose outcome is unknown
  (cancelled mid-way) leaves its files to the sweep rather than guess.
- One process owns the spool: the server holds the data directory lock, so the sweep in
  `open` can delete every file without a row. Tools (``posthorn queue``) read and change the
  queue database only, never through a `Spool`. (Several worker processes on one spool would
  need a grace period here, as the store's blob sweep has.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import errno
import os
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Final, ParamSpec, TypeVar

from posthorn.fsync import fsync_dir
from posthorn.log import bind, get_logger
from posthorn.queue import durable
from posthorn.queue.db import QueueDB
from posthorn.queue.envelope import Envelope
from posthorn.queue.ids import QueueIdSource, is_queue_id
from posthorn.queue.records import QueuedMessage
from posthorn.queue.schema import QUEUE_DB_NAME

P = ParamSpec("P")
T = TypeVar("T")

SPOOL_DIR: Final = "spool"
TMP_SUFFIX: Final = ".tmp"
HEAD_LIMIT: Final = 256 * 1024
"""How far a message in memory at commit is searched for the end of its header block."""
_END_OF_HEADER: Final = re.compile(rb"\n\r?\n")  # RFC 5322 §2.1, bare LF tolerated

log = get_logger(__name__)

Listener = Callable[[QueuedMessage], None]
"""Called on the event loop with every message right after its commit (the queue runner)."""


class SpoolError(RuntimeError):
    """A writer used out of order (write after commit or abort, commit twice)."""


class _State(enum.Enum):
    OPEN = "open"
    BROKEN = "broken"  # a write failed or was cancelled: only abort is left
    COMMITTING = "committing"
    COMMITTED = "committed"
    FAILED = "failed"
    ABORTED = "aborted"


class Spool:
    """The spool directory and queue database of ``data_dir``. ``open()`` before use.

    ``buffer_size``: bytes a writer keeps in memory before appending them to its file (a
    message smaller than this is written once, at commit). ``io_threads``: the pool that
    writes and fsyncs files (fsyncs of concurrent commits run in parallel). ``group_sync``
    False gives every commit its own directory fsync and turns off the database's group
    commit (only for measuring what they gain).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        buffer_size: int = 256 * 1024,
        io_threads: int = 16,
        busy_timeout: float = 10.0,
        group_sync: bool = True,
        clock: Callable[[], float] = time.time,
        ids: QueueIdSource | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.dir = self.data_dir / SPOOL_DIR
        self.db = QueueDB(
            self.data_dir / QUEUE_DB_NAME,
            self.dir,
            busy_timeout=busy_timeout,
            max_batch=64 if group_sync else 1,
        )
        self.buffer_size = max(1, buffer_size)
        self.clock = clock
        self._group_sync = group_sync
        self._ids = ids or QueueIdSource(clock)
        self._io_threads = io_threads
        self._io: ThreadPoolExecutor | None = None
        self._dirsync: durable.DirectorySync | None = None
        self._listeners: list[Listener] = []
        self._commits: set[asyncio.Task[None]] = set()

    # lifecycle ---------------------------------------------------------------
    async def open(self) -> None:
        """Create what is missing, open the queue database, and sweep what crashed sessions
        left behind (see the module docstring)."""
        self._io = ThreadPoolExecutor(self._io_threads, thread_name_prefix="posthorn-spool")
        self._dirsync = durable.DirectorySync(self.dir, self._io)
        try:
            await self.io(durable.make_dir, self.dir)
            await self.db.open()
            await self._sweep()
        except BaseException:
            await self.db.close()
            self._io.shutdown(wait=True)
            self._io = None
            raise

    async def close(self) -> None:
        """Let commits in progress finish, then close the database. Idempotent."""
        if self._commits:
            await asyncio.wait(set(self._commits))
        await self.db.close()
        if self._io is not None:
            io, self._io = self._io, None
            await asyncio.to_thread(io.shutdown, True)

    async def _sweep(self) -> None:
        known = await self.db.spool_names()
        present = await self.io(os.listdir, self.dir)
        stale = [
            n for n in present if n.endswith(TMP_SUFFIX) or (is_queue_id(n) and n not in known)
        ]
        for name in stale:
            log.info("spool.swept", file=name)
            await self.io(_unlink, self.dir / name)
        missing = known.difference(present)
        for name in sorted(missing):
            # Only a damaged disk or a hand-deleted file can do this; say it loudly.
            log.error("spool.file_missing", file=name)

    # plumbing ----------------------------------------------------------------
    async def io(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking file work on the spool's I/O threads."""
        if self._io is None:
            raise RuntimeError("spool is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, partial(fn, *args, **kwargs))

    def submit_io(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Like `io`, but the caller gets the thread's own future (which a cancelled awaiter
        cannot cancel once it runs)."""
        if self._io is None:
            raise RuntimeError("spool is not open")
        return self._io.submit(fn, *args, **kwargs)

    async def sync_dir(self) -> None:
        assert self._dirsync is not None
        if self._group_sync:
            await self._dirsync.sync()
        else:
            await self.io(fsync_dir, self.dir)

    @property
    def dir_syncs(self) -> int:
        """Directory fsyncs issued by the coalescer so far (benchmarks, tests)."""
        return 0 if self._dirsync is None else self._dirsync.rounds

    async def remove_file(self, name: str) -> None:
        """Delete a spool file. Only after the deletion of its queue row committed."""
        await self.io(_unlink, self.dir / name)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _announce(self, message: QueuedMessage) -> None:
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:
                # The message is safely queued; the runner's scan will find it anyway.
                log.exception("spool.listener_failed")

    def _track(self, task: asyncio.Task[None]) -> None:
        self._commits.add(task)
        task.add_done_callback(self._commits.discard)

    # the SMTP side's API -----------------------------------------------------
    async def new_message(self) -> SpoolWriter:
        """A writer for one message, with its queue id assigned already."""
        if self._io is None:
            raise RuntimeError("spool is not open")
        return SpoolWriter(self, self._ids.new())


class SpoolWriter:
    """One message on its way into the spool: `write` …, then `commit` or `abort`.

    Calls must not overlap (one SMTP session drives one writer). ``size`` counts the bytes
    written so far.
    """

    def __init__(self, spool: Spool, queue_id: str) -> None:
        self.queue_id = queue_id
        self.size = 0
        self._spool = spool
        self._buf = bytearray()
        self._fd: int | None = None
        self._io_busy: Future[int] | None = None
        self._state = _State.OPEN
        self._tmp = spool.dir / (queue_id + TMP_SUFFIX)
        self._final = spool.dir / queue_id

    async def write(self, data: bytes) -> None:
        """Append message bytes (already un-dot-stuffed). Blocks the event loop only to copy
        ``data`` into the buffer; full buffers go to the file on an I/O thread."""
        if self._state is not _State.OPEN:
            raise SpoolError(f"write on a {self._state.value} spool writer")
        self._buf += data
        self.size += len(data)
        if len(self._buf) >= self._spool.buffer_size:
            await self._flush()

    async def _flush(self) -> None:
        data, self._buf = self._buf, bytearray()
        job = self._spool.submit_io(_append, self._fd, self._tmp, data)
        self._io_busy = job
        try:
            self._fd = await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            self._state = _State.BROKEN  # the block may still be in flight: abort waits
            raise
        except BaseException:
            self._state = _State.BROKEN
            self._io_busy = self._fd = None  # `_append` closed the file and removed it
            raise
        self._io_busy = None

    async def commit(self, envelope: Envelope) -> str:
        """Make the message durable and queue it; returns the queue id. Only after this
        returns may the 250 go out. Raises on any failure (the caller answers 451 and the
        message is not queued; an `OSError` with ``ENOSPC`` when the disk is full, whether
        for the file or the database, so the caller can answer 452 4.3.1); a cancelled caller
        does not cancel the commit itself."""
        if self._state is not _State.OPEN:
            raise SpoolError(f"commit on a {self._state.value} spool writer")
        if not envelope.recipients:
            raise ValueError("an envelope without recipients cannot be queued")
        self._state = _State.COMMITTING
        task = asyncio.get_running_loop().create_task(self._commit(envelope))
        self._spool._track(task)
        await asyncio.shield(task)
        return self.queue_id

    async def _commit(self, envelope: Envelope) -> None:
        spool = self._spool
        with bind(queue=self.queue_id):
            owned: Path | None = None
            try:
                data, self._buf = self._buf, bytearray()
                fd, self._fd = self._fd, None
                # Nothing written yet: the whole message is in ``data``; its header block
                # goes along to delivery (`QueuedMessage.head`).
                head = _head(data) if fd is None else None
                # One hop to the I/O threads: make the file if the buffer never overflowed,
                # write the rest, fsync, name it (on failure it removes its own file).
                await spool.io(_finish, fd, data, self._tmp, self._final)
                owned = self._final
                await spool.sync_dir()
                message = await spool.db.insert(
                    self.queue_id, envelope, self.size, self._final.name, spool.clock()
                )
            except asyncio.CancelledError:
                # Outcome unknown (a thread may still link, the row may still commit):
                # leave the files to the sweep, which decides by the committed rows.
                self._state = _State.FAILED
                raise
            except BaseException as e:
                self._state = _State.FAILED
                log.exception("spool.commit_failed")
                if owned is not None:  # the insert rolled back: the file is nobody's
                    await spool.io(_unlink, owned)
                if isinstance(e, sqlite3.Error) and _is_full(e):
                    # One kind of "out of space" for the SMTP side (452 4.3.1), whether the
                    # file or the queue database ran out.
                    raise OSError(errno.ENOSPC, "queue database: disk full") from e
                raise
            self._state = _State.COMMITTED
            log.info(
                "queue.accepted",
                size=self.size,
                sender=envelope.mail_from,
                nrcpt=len(envelope.recipients),
            )
            if head is not None:
                message = dataclasses.replace(message, head=head)
            spool._announce(message)

    async def abort(self) -> None:
        """Discard the message. Idempotent; a no-op once a commit started (a failed commit
        cleans up after itself, a committed message is never deleted here)."""
        if self._state not in (_State.OPEN, _State.BROKEN):
            return
        self._state = _State.ABORTED
        self._buf = bytearray()
        fd = self._fd
        job, self._io_busy = self._io_busy, None
        if job is not None:
            # A write was cancelled while its block was being written: let the thread finish
            # with the descriptor before closing it.
            await asyncio.wait([asyncio.wrap_future(job)])
            fd = None if job.cancelled() or job.exception() is not None else job.result()
        self._fd = None
        await self._spool.io(_discard, fd, self._tmp)


def _is_full(e: sqlite3.Error) -> bool:
    return getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _head(data: bytearray) -> bytes | None:
    end = _END_OF_HEADER.search(data, 0, HEAD_LIMIT)
    return None if end is None else bytes(data[: end.end()])


def _append(fd: int | None, path: Path, data: bytearray) -> int:
    """Append to the writer's temporary file (made on first use); on failure the file is
    closed and removed, so the writer holds nothing."""
    try:
        if fd is None:
            fd = durable.create_exclusive(path)
        durable.write_all(fd, data)
    except BaseException:
        if fd is not None:  # else the name was taken by someone else: leave it alone
            os.close(fd)
            _unlink(path)
        raise
    return fd


def _finish(fd: int | None, data: bytearray, tmp: Path, final: Path) -> None:
    if fd is None:
        fd = durable.create_exclusive(tmp)  # FileExistsError: not ours, nothing to undo
    try:
        durable.finish_file(fd, data, tmp, final)
    except BaseException:
        _unlink(tmp)
        raise


def _discard(fd: int | None, path: Path) -> None:
    if fd is not None:
        os.close(fd)
    _unlink(path)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
