"""DirectorySync (posthorn.queue.durable): directory fsyncs shared by concurrent commits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from posthorn.queue import durable


class GatedFsync:
    """An fsync that records each call and waits until the test opens the gate."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = threading.Semaphore(0)
        self.gate = threading.Event()
        self.fail = False

    def __call__(self, path: Path) -> None:
        self.calls += 1
        self.started.release()
        self.gate.wait(5)
        if self.fail:
            raise OSError(5, "Input/output error")


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


async def started(fsync: GatedFsync) -> None:
    assert await asyncio.to_thread(fsync.started.acquire, True, 5)


async def test_callers_during_a_round_share_the_next_one(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    fsync = GatedFsync()
    sync = durable.DirectorySync(tmp_path, pool, fsync)
    first = asyncio.create_task(sync.sync())
    await started(fsync)  # round 1 is in flight
    late = [asyncio.create_task(sync.sync()) for _ in range(10)]
    await asyncio.sleep(0.01)
    assert fsync.calls == 1
    assert not any(t.done() for t in late)  # round 1 started before they asked
    fsync.gate.set()
    await asyncio.gather(first, *late)
    assert fsync.calls == 2 and sync.rounds == 2


async def test_a_round_that_started_earlier_never_serves_a_caller(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    fsync = GatedFsync()
    sync = durable.DirectorySync(tmp_path, pool, fsync)
    first = asyncio.create_task(sync.sync())
    await started(fsync)
    second = asyncio.create_task(sync.sync())
    await asyncio.sleep(0)
    fsync.gate.set()
    await first
    await second
    assert fsync.calls == 2  # the second caller got its own, later round


async def test_failure_reaches_every_caller_of_the_round(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    fsync = GatedFsync()
    fsync.fail = True
    fsync.gate.set()
    sync = durable.DirectorySync(tmp_path, pool, fsync)
    results = await asyncio.gather(*(sync.sync() for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    fsync.fail = False
    await sync.sync()  # a failed round does not wedge the coalescer


async def test_cancelled_caller_does_not_cancel_the_shared_round(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    fsync = GatedFsync()
    sync = durable.DirectorySync(tmp_path, pool, fsync)
    a = asyncio.create_task(sync.sync())
    b = asyncio.create_task(sync.sync())
    await started(fsync)
    a.cancel()
    fsync.gate.set()
    await b
    with pytest.raises(asyncio.CancelledError):
        await a


def test_finish_file_refuses_to_replace(tmp_path: Path) -> None:
    (tmp_path / "ID").write_bytes(b"queued")
    fd = durable.create_exclusive(tmp_path / "ID.tmp")
    with pytest.raises(FileExistsError):
        durable.finish_file(fd, b"other", tmp_path / "ID.tmp", tmp_path / "ID")
    assert (tmp_path / "ID").read_bytes() == b"queued"


def test_make_dir_creates_parents(tmp_path: Path) -> None:
    durable.make_dir(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    durable.make_dir(tmp_path / "a" / "b")  # idempotent
