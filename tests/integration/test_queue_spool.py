"""The durable spool (posthorn.queue.spool): commit ordering, abort, sweep, crash, concurrency."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posthorn.queue.envelope import Envelope, EnvelopeRecipient, Notify
from posthorn.queue.ids import is_queue_id
from posthorn.queue.records import QueuedMessage, Route, Status
from posthorn.queue.schema import QUEUE_DB_NAME
from posthorn.queue.spool import Spool, SpoolError
from posthorn.store.sqlite.db import DatabaseClosed

MESSAGE = b"From: a@far.example\r\nSubject: hi\r\n\r\n" + b"x" * 2000 + b"\r\n"
ENVELOPE = Envelope(
    "a@far.example",
    (
        EnvelopeRecipient("Bob@ours.example", frozenset({Notify.FAILURE}), "rfc822;bob@x"),
        EnvelopeRecipient("carol@ours.example"),
    ),
    received=b"Received: from far.example by ours.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n",
    ret="HDRS",
    envid="env-1",
    body="8BITMIME",
    auth="bob@ours.example",
    client_ip="192.0.2.1",
    helo="far.example",
    protocol="ESMTPSA",
)


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    s = Spool(tmp_path, buffer_size=1024)
    await s.open()
    yield s
    await s.close()


def rows(data_dir: Path) -> list[tuple[str, str]]:
    """What another process sees: only committed rows."""
    conn = sqlite3.connect(data_dir / QUEUE_DB_NAME)
    try:
        return list(conn.execute("SELECT queue_id, spool_name FROM messages ORDER BY 1"))
    finally:
        conn.close()


def files(spool: Spool) -> list[str]:
    return sorted(os.listdir(spool.dir))


async def write_all(spool: Spool, data: bytes = MESSAGE, chunk: int = 700) -> str:
    writer = await spool.new_message()
    for i in range(0, len(data), chunk):
        await writer.write(data[i : i + chunk])
    return await writer.commit(ENVELOPE)


async def test_commit_makes_file_and_record_durable(spool: Spool, tmp_path: Path) -> None:
    seen: list[QueuedMessage] = []
    spool.add_listener(seen.append)
    writer = await spool.new_message()
    assert is_queue_id(writer.queue_id)
    for i in range(0, len(MESSAGE), 700):
        await writer.write(MESSAGE[i : i + 700])
    assert writer.size == len(MESSAGE)
    # Before the commit: at most a temporary file, and no record anyone can see.
    assert files(spool) == [writer.queue_id + ".tmp"]
    assert rows(tmp_path) == []
    assert await writer.commit(ENVELOPE) == writer.queue_id
    assert files(spool) == [writer.queue_id]
    assert (spool.dir / writer.queue_id).read_bytes() == MESSAGE
    assert rows(tmp_path) == [(writer.queue_id, writer.queue_id)]
    # The listener got the whole record, envelope round-tripped.
    (message,) = seen
    assert message.queue_id == writer.queue_id and message.size == len(MESSAGE)
    assert message.envelope == ENVELOPE
    assert message.spool_path == spool.dir / writer.queue_id
    assert [(r.address, r.route, r.status) for r in message.recipients] == [
        ("Bob@ours.example", Route.LOCAL, Status.PENDING),
        ("carol@ours.example", Route.LOCAL, Status.PENDING),
    ]
    assert await spool.db.load(writer.queue_id) == message


async def test_small_message_is_written_once_at_commit(spool: Spool) -> None:
    writer = await spool.new_message()
    await writer.write(b"Subject: s\r\n\r\nshort\r\n")
    assert files(spool) == []  # still buffered: no file yet
    qid = await writer.commit(ENVELOPE)
    assert files(spool) == [qid]


async def test_abort_leaves_nothing(spool: Spool, tmp_path: Path) -> None:
    unflushed = await spool.new_message()
    await unflushed.write(b"Subject: s\r\n")
    flushed = await spool.new_message()
    await flushed.write(MESSAGE)  # over the buffer size: a temporary file exists
    assert files(spool) == [flushed.queue_id + ".tmp"]
    for writer in (unflushed, flushed):
        await writer.abort()
        await writer.abort()  # idempotent
    assert files(spool) == [] and rows(tmp_path) == []
    with pytest.raises(SpoolError):
        await flushed.write(b"more")
    with pytest.raises(SpoolError):
        await flushed.commit(ENVELOPE)


async def test_abort_after_commit_keeps_the_message(spool: Spool, tmp_path: Path) -> None:
    writer = await spool.new_message()
    await writer.write(MESSAGE)
    qid = await writer.commit(ENVELOPE)
    await writer.abort()
    assert files(spool) == [qid] and len(rows(tmp_path)) == 1
    with pytest.raises(SpoolError):
        await writer.commit(ENVELOPE)
    with pytest.raises(SpoolError):
        await writer.write(b"x")


async def test_envelope_without_recipients_is_refused(spool: Spool) -> None:
    writer = await spool.new_message()
    await writer.write(MESSAGE)
    with pytest.raises(ValueError):
        await writer.commit(Envelope("a@far.example", ()))
    await writer.abort()
    assert files(spool) == []


async def test_failed_record_leaves_no_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path, buffer_size=1024)
    await spool.open()
    writer = await spool.new_message()
    await writer.write(MESSAGE)
    await spool.db.close()  # the queue database goes away under the commit
    with pytest.raises(DatabaseClosed):
        await writer.commit(ENVELOPE)
    assert files(spool) == []
    await writer.abort()  # safe after a failed commit
    await spool.close()


async def test_cancelled_caller_does_not_cancel_the_commit(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    await spool.open()
    writer = await spool.new_message()
    await writer.write(MESSAGE)
    caller = asyncio.create_task(writer.commit(ENVELOPE))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await writer.abort()  # the session's cleanup: must not undo a commit in progress
    await spool.close()  # waits for the commit
    assert rows(tmp_path) == [(writer.queue_id, writer.queue_id)]
    assert (spool.dir / writer.queue_id).read_bytes() == MESSAGE


async def test_open_sweeps_what_a_crash_left(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    await spool.open()
    kept = await write_all(spool)
    await spool.close()
    # What a crash leaves: a session's temporary file, and a renamed file whose record never
    # committed. Files that are not ours are left alone.
    (spool.dir / "7ABCDEFGHJK0.tmp").write_bytes(b"partial")
    (spool.dir / "7ABCDEFGHJK1").write_bytes(MESSAGE)
    (spool.dir / "README").write_bytes(b"not a spool file")
    spool = Spool(tmp_path)
    await spool.open()
    assert files(spool) == sorted([kept, "README"])
    assert (await spool.db.load(kept)) is not None
    await spool.close()


async def test_concurrent_commits_share_directory_fsyncs(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    await spool.open()
    ids = await asyncio.gather(*(write_all(spool) for _ in range(40)))
    assert len(set(ids)) == 40
    assert sorted(rows(tmp_path)) == sorted((i, i) for i in ids)
    assert files(spool) == sorted(ids)
    assert 1 <= spool.dir_syncs < 40  # coalesced (every commit still waited for one)
    await spool.close()


async def test_without_group_sync_every_commit_syncs(tmp_path: Path) -> None:
    spool = Spool(tmp_path, group_sync=False)
    await spool.open()
    ids = await asyncio.gather(*(write_all(spool) for _ in range(5)))
    assert sorted(rows(tmp_path)) == sorted((i, i) for i in ids)
    assert spool.dir_syncs == 0  # the coalescer was bypassed
    await spool.close()


CRASHER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from posthorn.queue.envelope import Envelope, EnvelopeRecipient
    from posthorn.queue.spool import Spool

    async def main() -> None:
        spool = Spool(Path(sys.argv[1]), buffer_size=1024)
        await spool.open()
        env = Envelope("a@far.example", (EnvelopeRecipient("bob@ours.example"),))
        for _ in range(5):
            w = await spool.new_message()
            await w.write(b"Subject: committed\\r\\n\\r\\n" + b"x" * 3000)
            print(await w.commit(env), flush=True)
        w = await spool.new_message()
        await w.write(b"Subject: in flight\\r\\n\\r\\n" + b"y" * 3000)
        print("tmp", w.queue_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


async def test_kill_9_keeps_every_committed_message(tmp_path: Path) -> None:
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CRASHER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    lines = proc.stdout.split()
    committed, in_flight = lines[:5], lines[-1]
    assert (tmp_path / "spool" / (in_flight + ".tmp")).exists()
    spool = Spool(tmp_path)
    await spool.open()
    assert files(spool) == sorted(committed)
    for qid in committed:
        message = await spool.db.load(qid)
        assert message is not None
        assert message.spool_path.read_bytes().startswith(b"Subject: committed")
    await spool.close()
