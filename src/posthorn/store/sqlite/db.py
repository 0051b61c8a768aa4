"""SQLite connections on dedicated threads, driven from asyncio with coarse operations.

Owns: `SQLiteThread` (the writer: one connection, one thread), `SQLiteReaders` (read-only
connections, one thread each) and `apply_migrations` (versioned schema steps recorded in
``PRAGMA user_version``). Nothing here knows about mail: the message store and the account
directory each run their own database file through their own `SQLiteThread`.

Why not aiosqlite: it makes one thread hop per *statement* (≈150 µs); here a whole store
operation is one Python function run on the database thread, so one hop per *call*.

Invariants:
- The connection is created, used and closed on the runner's thread only.
- Every job runs inside a write transaction (``BEGIN IMMEDIATE``) and its future resolves only
  after ``COMMIT`` returned: with WAL and ``synchronous=FULL`` that means the change is on disk.
- A job that raises leaves no trace: it runs inside its own SAVEPOINT, rolled back on error;
  the exception is re-raised to its caller.
- Jobs run in submission order. Jobs already queued when the thread becomes free are run as one
  batch in one transaction, each in its own savepoint, and committed once (group commit: one
  WAL fsync for the batch). A job's result is released only after the batch's commit, so no
  caller ever sees data that is not durable; if the commit fails, every job of the batch fails.
- ``busy_timeout`` is set, because other processes (the ``posthorn`` CLI) open the same file.
- `SQLiteReaders` jobs run in a plain (deferred) read transaction on a ``query_only``
  connection: they never take the write lock, so with WAL they run alongside the writer and it
  alongside them. Each job gets its own transaction, begun after the job was submitted, so it
  sees every commit that returned before its submission (read-your-writes) and one consistent
  snapshot throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

Job = Callable[[sqlite3.Connection], Any]


class DatabaseClosed(RuntimeError):
    """The runner was closed (or never started) before the job could run."""


class SchemaTooNew(RuntimeError):
    """The database was written by a newer posthorn (its schema version is unknown here)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: the statements that take the schema from ``version - 1`` to ``version``."""

    version: int
    statements: tuple[str, ...]


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """Bring the schema up to the last of ``migrations``; returns the resulting version.

    Each step runs in its own ``BEGIN IMMEDIATE`` transaction together with the
    ``user_version`` bump, so a crash leaves the database at a step boundary, and two processes
    opening the same file at once apply each step exactly once.
    """
    latest = 0
    for expected, step in enumerate(migrations, start=1):
        if step.version != expected:
            raise ValueError(f"migration versions must be 1, 2, 3 ...; got {step.version}")
        latest = step.version
    for step in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = _user_version(conn)
            if current > latest:
                raise SchemaTooNew(f"schema version {current} is newer than {latest}")
            if current < step.version:
                for statement in step.statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(step.version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if not migrations:
        current = _user_version(conn)
        if current > 0:
            raise SchemaTooNew(f"schema version {current} is newer than 0")
    return _user_version(conn)


def _user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


@dataclass(slots=True)
class _Pending:
    fn: Job
    future: Future[Any]  # the thread's side: cancelled before the job starts, the job is skipped
    waiter: asyncio.Future[Any]  # the caller's side, settled from ``future`` on the loop
    loop: asyncio.AbstractEventLoop


def _cancel_job(job: Future[Any], waiter: asyncio.Future[Any]) -> None:
    if waiter.cancelled():
        job.cancel()


def _settle(jobs: list[_Pending]) -> None:
    """On the event loop: hand every finished job's outcome to its waiter (one wake-up of the
    loop per batch, rather than one per job)."""
    for p in jobs:
        waiter, job = p.waiter, p.future
        if waiter.done():
            continue
        if job.cancelled():
            waiter.cancel()
        elif not job.done():  # cannot happen: `_wake` is called with finished jobs only
            waiter.set_exception(RuntimeError("database job not finished"))
        elif (exc := job.exception()) is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(job.result())


_STOP = object()


def _wake(jobs: list[_Pending]) -> None:
    """From the database thread: settle the waiters of ``jobs`` (all finished), one call per
    event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
    for p in jobs:
        by_loop.setdefault(p.loop, []).append(p)
    for loop, some in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(_settle, some)


def _connect(path: Path, busy_timeout_ms: int, *, readonly: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        if readonly:
            # The writer made the file WAL (a persistent setting); a reader only checks.
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            conn.execute("PRAGMA query_only = ON")
        else:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            # synchronous=FULL: in WAL mode every COMMIT fsyncs the WAL, so a commit that
            # returned is durable (NORMAL would only sync at checkpoints).
            conn.execute("PRAGMA synchronous = FULL")
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"{path} is not in WAL mode (got {mode})")
        conn.execute("PRAGMA foreign_keys = OFF")
    except BaseException:
        conn.close()
        raise
    return conn


def _new_job(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[_Pending, asyncio.Future[Any]]:
    loop = asyncio.get_running_loop()
    cfut: Future[Any] = Future()
    waiter: asyncio.Future[Any] = loop.create_future()
    waiter.add_done_callback(partial(_cancel_job, cfut))
    return _Pending(lambda conn: fn(conn, *args, **kwargs), cfut, waiter, loop), waiter


def _fail_leftovers(jobs: queue.SimpleQueue[_Pending | object], name: str) -> None:
    """Anything still queued when a thread stops can no longer run."""
    left: list[_Pending] = []
    while True:
        try:
            item = jobs.get_nowait()
        except queue.Empty:
            break
        if isinstance(item, _Pending):
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(DatabaseClosed(f"{name} database closed"))
            left.append(item)
    _wake(left)


class SQLiteThread:
    """Runs ``fn(conn, *args)`` jobs on one thread that owns one SQLite connection.

    Usage::

        db = SQLiteThread(path, setup=lambda conn: apply_migrations(conn, MIGRATIONS))
        await db.start()
        n = await db.run(count_rows, "INBOX")      # count_rows(conn, name) runs on the thread
        await db.close()

    ``setup`` runs once on the thread after the connection is configured and before any job,
    outside any transaction (it manages its own, like `apply_migrations`). ``max_batch`` bounds
    how many queued jobs share one commit (1 disables group commit).
    """

    def __init__(
        self,
        path: Path,
        *,
        name: str = "sqlite",
        busy_timeout: float = 10.0,
        max_batch: int = 64,
        setup: Callable[[sqlite3.Connection], object] | None = None,
    ) -> None:
        self.path = path
        self._name = name
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._max_batch = max(1, max_batch)
        self._setup = setup
        self._jobs: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closing = False

    # lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Open the connection on a new thread, configure it and run ``setup``."""
        if self._thread is not None:
            raise RuntimeError("SQLiteThread already started")
        ready: Future[None] = Future()
        self._closing = False
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name=f"{self._name}-db", daemon=True
        )
        self._thread.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            raise

    async def close(self) -> None:
        """Finish the queued jobs, then close the connection and end the thread. Idempotent."""
        thread = self._thread
        if thread is None or self._closing:
            return
        self._closing = True
        self._jobs.put(_STOP)
        await asyncio.to_thread(thread.join)
        self._thread = None

    # jobs --------------------------------------------------------------------
    def submit(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> asyncio.Future[T]:
        """Queue ``fn(conn, *args, **kwargs)``; the future resolves after its commit.

        Cancelling the future before the job started skips the job; once started, the job
        runs to its commit regardless. Callers that must learn the outcome even when they are
        cancelled (to publish changes) attach a done-callback and await the future through
        `asyncio.shield`. Must be called from the event loop thread.
        """
        if self._thread is None or self._closing:
            raise DatabaseClosed(f"{self._name} database is not open")
        pending, waiter = _new_job(fn, args, kwargs)
        self._jobs.put(pending)
        return waiter

    async def run(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in one transaction on the database thread and
        return its result once committed. Cancelling the caller does not undo the job once it
        started; a job whose caller was cancelled before it started is skipped."""
        return await self.submit(fn, *args, **kwargs)

    # the thread --------------------------------------------------------------
    def _serve(self, ready: Future[None]) -> None:
        try:
            conn = _connect(self.path, self._busy_timeout_ms, readonly=False)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        try:
            if self._setup is not None:
                self._setup(conn)
        except BaseException as exc:
            conn.close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            self._loop(conn)
        finally:
            conn.close()

    def _loop(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
            jobs = [p for p in batch if isinstance(p, _Pending)]
            try:
                self._run_batch(conn, jobs)
            except BaseException as exc:  # a bug here must not kill the thread silently
                for p in jobs:
                    if not p.future.done():
                        p.future.set_exception(exc)
            _wake(jobs)
        _fail_leftovers(self._jobs, self._name)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        # A caller cancelled before its job started: skip the job.
        batch = [p for p in batch if p.future.set_running_or_notify_cancel()]
        if not batch:
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            for p in batch:
                p.future.set_exception(exc)
            return
        for p in batch:
            outcomes.append(self._run_one(conn, p, outcomes))
        try:
            if conn.in_transaction:
                conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            for p in batch:
                p.future.set_exception(exc)
            return
        for p, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                p.future.set_result(value)
            else:
                p.future.set_exception(value)

    def _run_one(
        self, conn: sqlite3.Connection, p: _Pending, done: list[tuple[bool, Any]]
    ) -> tuple[bool, Any]:
        try:
            if not conn.in_transaction:
                conn.execute("BEGIN IMMEDIATE")
            conn.execute("SAVEPOINT job")
        except BaseException as exc:
            return (False, exc)
        try:
            value = p.fn(conn)
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                except BaseException:
                    self._lose_transaction(conn, done, exc)
            else:
                # SQLite rolled the whole transaction back by itself (I/O error, disk full):
                # the earlier jobs of this batch are gone too.
                self._lose_transaction(conn, done, exc)
            return (False, exc)
        try:
            conn.execute("RELEASE job")
        except BaseException as exc:
            self._lose_transaction(conn, done, exc)
            return (False, exc)
        return (True, value)

    @staticmethod
    def _lose_transaction(
        conn: sqlite3.Connection, done: list[tuple[bool, Any]], exc: BaseException
    ) -> None:
        """The open transaction is unusable: roll it back and fail the jobs it held."""
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        for i, (ok, _) in enumerate(done):
            if ok:
                done[i] = (False, exc)


class SQLiteReaders:
    """Runs read-only ``fn(conn, *args)`` jobs on ``threads`` threads, each owning one
    ``query_only`` connection to the file a `SQLiteThread` writes.

    Start it after the writer (which creates the file, switches it to WAL and migrates the
    schema) and close it before the writer, so the writer's connection is the last to close
    and checkpoints the WAL. Jobs may finish out of submission order when ``threads`` > 1;
    each sees every commit that returned before it was submitted.
    """

    def __init__(
        self, path: Path, *, name: str = "sqlite", threads: int = 2, busy_timeout: float = 10.0
    ) -> None:
        self.path = path
        self._name = name
        self._count = max(1, threads)
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._jobs: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closing = False

    async def start(self) -> None:
        """Open every connection on its own thread; fails if any cannot be opened."""
        if self._threads:
            raise RuntimeError("SQLiteReaders already started")
        self._closing = False
        readies: list[Future[None]] = []
        for i in range(self._count):
            ready: Future[None] = Future()
            thread = threading.Thread(
                target=self._serve, args=(ready,), name=f"{self._name}-read{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            readies.append(ready)
        results = await asyncio.gather(
            *(asyncio.wrap_future(r) for r in readies), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close()
            raise errors[0]

    async def close(self) -> None:
        """Finish the queued jobs, close the connections, join the threads. Idempotent."""
        threads = self._threads
        if not threads or self._closing:
            return
        self._closing = True
        for _ in threads:
            self._jobs.put(_STOP)
        for thread in threads:
            await asyncio.to_thread(thread.join)
        self._threads = []
        _fail_leftovers(self._jobs, self._name)

    def submit(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> asyncio.Future[T]:
        """Queue ``fn(conn, *args, **kwargs)`` (it must not write). Cancelling the future
        before the job started skips it. Must be called from the event loop thread."""
        if not self._threads or self._closing:
            raise DatabaseClosed(f"{self._name} database is not open")
        pending, waiter = _new_job(fn, args, kwargs)
        self._jobs.put(pending)
        return waiter

    async def run(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in one read transaction and return its result."""
        return await self.submit(fn, *args, **kwargs)

    def _serve(self, ready: Future[None]) -> None:
        try:
            conn = _connect(self.path, self._busy_timeout_ms, readonly=True)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            while (item := self._jobs.get()) is not _STOP:
                if isinstance(item, _Pending):
                    self._run_one(conn, item)
        finally:
            conn.close()

    @staticmethod
    def _run_one(conn: sqlite3.Connection, p: _Pending) -> None:
        if not p.future.set_running_or_notify_cancel():
            _wake([p])
            return
        try:
            conn.execute("BEGIN")
            try:
                value = p.fn(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")  # ends the read snapshot; there is nothing to write
        except BaseException as exc:
            p.future.set_exception(exc)
        else:
            p.future.set_result(value)
        _wake([p])
