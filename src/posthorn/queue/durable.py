"""Making spool files durable, and sharing directory fsyncs between concurrent commits.

A new file survives a crash only when its data is fsync'd *and* the directory entry naming it
is fsync'd (POSIX makes no promise about the entry otherwise; ext4 and XFS need the directory
fsync in practice). The data fsync is per file, but the directory fsync can be shared:
`DirectorySync` is a small group-commit coalescer for it.

`DirectorySync` invariant: `sync` returns only after an ``fsync`` of the directory that
*started after* `sync` was called. A caller arriving while a round is in flight cannot be
served by that round (its rename may have come too late for it), so it waits for the next one;
every caller arriving during one round shares that next single round. With N concurrent
committers that is about two directory fsyncs per burst instead of N.

Everything else here blocks and runs on the spool's I/O threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from posthorn.fsync import fsync_dir


def make_dir(path: Path) -> None:
    """Create ``path`` (and its parents) durably if it is missing."""
    if path.is_dir():
        return
    make_dir(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    fsync_dir(path.parent)


def create_exclusive(path: Path) -> int:
    """A new file opened for writing; `FileExistsError` if the name is taken."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def finish_file(fd: int, data: bytes | bytearray | memoryview, tmp: Path, final: Path) -> None:
    """Write the last ``data``, fsync and close ``fd`` (open on ``tmp``), then give the file
    its ``final`` name. The caller still owes a `DirectorySync.sync` of the directory.

    The name is given with link + unlink rather than rename: rename silently replaces an
    existing ``final``, link refuses (`FileExistsError`), so a queue id that somehow clashed
    fails one commit instead of overwriting a queued message.
    """
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.link(tmp, final)
    os.unlink(tmp)


class DirectorySync:
    """Coalesces fsyncs of one directory (see the module docstring). Use from one event loop."""

    def __init__(
        self, path: Path, executor: Executor, fsync: Callable[[Path], None] = fsync_dir
    ) -> None:
        self.path = path
        self._executor = executor
        self._fsync = fsync
        self._running: asyncio.Future[None] | None = None
        self._next: asyncio.Future[None] | None = None
        self.rounds = 0
        """How many fsyncs were issued (for tests and benchmarks)."""

    async def sync(self) -> None:
        loop = asyncio.get_running_loop()
        if self._running is None:
            waiter = self._running = loop.create_future()
            self._start(waiter)
        else:
            if self._next is None:
                self._next = loop.create_future()
            waiter = self._next
        # Shielded: one cancelled caller must not cancel the round others share.
        await asyncio.shield(waiter)

    def _start(self, waiter: asyncio.Future[None]) -> None:
        self.rounds += 1
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._executor, self._fsync, self.path)
        job.add_done_callback(lambda done: self._finished(waiter, done))

    def _finished(self, waiter: asyncio.Future[None], done: asyncio.Future[None]) -> None:
        self._running = None
        error = OSError("directory fsync was cancelled") if done.cancelled() else done.exception()
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)
            waiter.exception()  # mark it retrieved: every caller may have been cancelled
        if self._next is not None:
            self._running, self._next = self._next, None
            self._start(self._running)
