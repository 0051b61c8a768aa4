"""SQLiteThread (one thread, one connection, group commit) and apply_migrations."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from posthorn.store.sqlite.db import (
    DatabaseClosed,
    Migration,
    SchemaTooNew,
    SQLiteReaders,
    SQLiteThread,
    apply_migrations,
)

STEPS = (Migration(1, ("CREATE TABLE t (v TEXT PRIMARY KEY)",)),)


def _setup(conn: sqlite3.Connection) -> None:
    apply_migrations(conn, STEPS)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SQLiteThread]:
    runner = SQLiteThread(tmp_path / "t.sqlite3", setup=_setup)
    await runner.start()
    yield runner
    await runner.close()


def insert(conn: sqlite3.Connection, value: str) -> int:
    conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
    return threading.get_ident()


def insert_then_fail(conn: sqlite3.Connection, value: str) -> None:
    conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
    raise KeyError(value)


def values(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT v FROM t ORDER BY v")]


def outside(path: Path) -> list[str]:
    """Read with a separate connection: sees only committed data."""
    conn = sqlite3.connect(path)
    try:
        return values(conn)
    finally:
        conn.close()


async def test_jobs_run_on_one_dedicated_thread(db: SQLiteThread) -> None:
    idents = {await db.run(insert, str(i)) for i in range(5)}
    assert len(idents) == 1
    assert threading.get_ident() not in idents


async def test_result_comes_after_commit(db: SQLiteThread) -> None:
    await db.run(insert, "a")
    assert outside(db.path) == ["a"]


async def test_pragmas(db: SQLiteThread) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[str, int, int]:
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
            conn.execute("PRAGMA busy_timeout").fetchone()[0],
        )

    assert await db.run(pragmas) == ("wal", 2, 10_000)


async def test_a_failing_job_in_a_batch_rolls_back_only_itself(db: SQLiteThread) -> None:
    gate, running = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        running.set()
        gate.wait(5)

    blocker = db.submit(block)
    await asyncio.to_thread(running.wait, 5)
    # Queued while the thread is busy: these three run as one batch, one commit.
    jobs: list[asyncio.Future[Any]] = [
        db.submit(insert, "a"),
        db.submit(insert_then_fail, "b"),
        db.submit(insert, "c"),
    ]
    gate.set()
    await blocker
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(results[1], KeyError)
    assert await db.run(values) == ["a", "c"]


async def test_sqlite_errors_reach_the_caller(db: SQLiteThread) -> None:
    await db.run(insert, "dup")
    with pytest.raises(sqlite3.IntegrityError):
        await db.run(insert, "dup")
    await db.run(insert, "next")  # the thread is fine afterwards
    assert await db.run(values) == ["dup", "next"]


async def test_a_job_cancelled_before_it_started_is_skipped(db: SQLiteThread) -> None:
    gate, running = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        running.set()
        gate.wait(5)

    blocker = db.submit(block)
    await asyncio.to_thread(running.wait, 5)  # the thread is busy: the next job only queues
    task = asyncio.create_task(db.run(insert, "never"))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    gate.set()
    await blocker
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await db.run(values) == []


async def test_busy_timeout_waits_for_another_writer(db: SQLiteThread) -> None:
    other = sqlite3.connect(db.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (v) VALUES ('other')")

    def release() -> None:
        time.sleep(0.3)
        other.execute("COMMIT")

    releaser = threading.Thread(target=release)
    releaser.start()
    started = time.monotonic()
    await db.run(insert, "mine")
    assert time.monotonic() - started >= 0.25
    releaser.join()
    other.close()
    assert await db.run(values) == ["mine", "other"]


async def test_close_finishes_queued_jobs_then_refuses(tmp_path: Path) -> None:
    db = SQLiteThread(tmp_path / "c.sqlite3", setup=_setup)
    await db.start()
    pending = [db.submit(insert, str(i)) for i in range(10)]
    await db.close()
    await db.close()  # idempotent
    assert len(await asyncio.gather(*pending)) == 10
    assert len(outside(db.path)) == 10
    with pytest.raises(DatabaseClosed):
        await db.run(values)


async def test_start_reports_setup_errors(tmp_path: Path) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        raise RuntimeError("no")

    db = SQLiteThread(tmp_path / "b.sqlite3", setup=broken)
    with pytest.raises(RuntimeError, match="no"):
        await db.start()


# migrations --------------------------------------------------------------------------


def test_migrations_apply_once_and_record_the_version(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    assert apply_migrations(conn, STEPS) == 1
    conn.execute("INSERT INTO t (v) VALUES ('kept')")
    conn.close()
    conn = sqlite3.connect(path, isolation_level=None)
    assert apply_migrations(conn, STEPS) == 1  # CREATE TABLE is not run again
    more = (*STEPS, Migration(2, ("ALTER TABLE t ADD COLUMN n INTEGER NOT NULL DEFAULT 5",)))
    assert apply_migrations(conn, more) == 2
    assert conn.execute("SELECT v, n FROM t").fetchall() == [("kept", 5)]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    with pytest.raises(SchemaTooNew):
        apply_migrations(conn, STEPS)
    conn.close()


def test_a_failing_step_leaves_the_previous_version(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "f.sqlite3", isolation_level=None)
    bad = (*STEPS, Migration(2, ("CREATE TABLE u (x)", "THIS IS NOT SQL")))
    with pytest.raises(sqlite3.OperationalError):
        apply_migrations(conn, bad)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'u'").fetchone() is None
    conn.close()


def test_migration_versions_must_be_consecutive(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "v.sqlite3", isolation_level=None)
    with pytest.raises(ValueError):
        apply_migrations(conn, (Migration(2, ()),))
    conn.close()


async def test_readers_see_commits_never_write_and_join_on_close(db: SQLiteThread) -> None:
    readers = SQLiteReaders(db.path, threads=2)
    await readers.start()
    await db.run(insert, "a")
    assert await readers.run(values) == ["a"]  # read-your-writes
    with pytest.raises(sqlite3.OperationalError):
        await readers.run(insert, "b")  # query_only
    idents = {await readers.run(lambda conn: threading.get_ident()) for _ in range(20)}
    assert threading.get_ident() not in idents
    threads = list(readers._threads)
    await readers.close()
    await readers.close()  # idempotent
    assert not any(t.is_alive() for t in threads)
    with pytest.raises(DatabaseClosed):
        await readers.run(values)
