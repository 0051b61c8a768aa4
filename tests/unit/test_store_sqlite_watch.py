"""`ForeignWatch`: which polled changes are another process's, and the store around it
(reads beside a busy writer, a real second process, the header_size migration)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posthorn.store.base import Change, ChangeKind
from posthorn.store.sqlite import SQLiteMailStore
from posthorn.store.sqlite.watch import BoxState, ForeignWatch, Snapshot

A = "alice@example.org"
MSG = b"From: c@example.net\r\nSubject: hi\r\n\r\nbody\r\n"


def snap(*boxes: tuple[int, str, int, int], bound: int = 0, expunged: bool = False) -> Snapshot:
    """Boxes of account A as (id, name, uidnext, highestmodseq)."""
    states = [BoxState(A, i, n, u, m, expunged) for i, n, u, m in boxes]
    return Snapshot((A,), states, bound)


def baseline() -> ForeignWatch:
    watch = ForeignWatch()
    assert watch.watch([A])
    assert watch.apply(snap((1, "INBOX", 5, 10), (2, "Sent", 1, 1))) == []
    assert not watch.watch([A])
    return watch


def test_own_changes_are_not_foreign() -> None:
    watch = baseline()
    watch.own([Change(A, 1, ChangeKind.NEW, (5,), 11)], seq=1)
    watch.own([Change(A, 1, ChangeKind.FLAGS, (5,), 12)], seq=2)
    assert watch.apply(snap((1, "INBOX", 6, 12), (2, "Sent", 1, 1), bound=2)) == []
    assert watch.known() == {1: 12, 2: 1}


def test_a_foreign_modseq_among_ours_is_reported_once() -> None:
    watch = baseline()
    watch.own([Change(A, 1, ChangeKind.NEW, (5,), 11)], seq=1)
    # modseq 12 was another process's; 13 ours again (published before the poll is applied).
    watch.own([Change(A, 1, ChangeKind.FLAGS, (5,), 13)], seq=2)
    got = watch.apply(snap((1, "INBOX", 7, 13), (2, "Sent", 1, 1), bound=2))
    assert got == [Change(A, 1, ChangeKind.NEW, (), 13)]
    assert watch.apply(snap((1, "INBOX", 7, 13), (2, "Sent", 1, 1), bound=2)) == []


def test_kind_hints() -> None:
    watch = baseline()
    assert watch.apply(snap((1, "INBOX", 5, 11), (2, "Sent", 1, 1))) == [
        Change(A, 1, ChangeKind.FLAGS, (), 11)
    ]
    assert watch.apply(snap((1, "INBOX", 5, 12), (2, "Sent", 1, 1), expunged=True)) == [
        Change(A, 1, ChangeKind.EXPUNGE, (), 12)
    ]


def test_own_change_after_the_snapshot_is_kept_for_the_next_poll() -> None:
    watch = baseline()
    watch.own([Change(A, 1, ChangeKind.NEW, (7,), 12)], seq=5)  # 11 is foreign, not yet seen
    assert watch.apply(snap((1, "INBOX", 6, 11), (2, "Sent", 1, 1), bound=4)) == [
        Change(A, 1, ChangeKind.NEW, (), 11)
    ]
    assert watch.known()[1] == 12  # ours, right after, is absorbed
    assert watch.apply(snap((1, "INBOX", 8, 12), (2, "Sent", 1, 1), bound=5)) == []


def test_mailbox_layout_changes() -> None:
    watch = baseline()
    assert watch.apply(snap((1, "INBOX", 5, 10), (3, "New", 1, 1))) == [
        Change(A, 0, ChangeKind.MAILBOXES, (), 0)
    ]
    watch.own([Change(A, 4, ChangeKind.MAILBOXES, (), 0)], seq=9)
    assert watch.apply(snap((1, "INBOX", 5, 10), (3, "New", 1, 1), (4, "X", 1, 1), bound=9)) == []
    watch.own([Change(A, 5, ChangeKind.MAILBOXES, (), 0)], seq=10)
    # Our change is after this snapshot: the difference in it is someone else's.
    assert watch.apply(snap((1, "INBOX", 5, 10), (3, "Renamed", 1, 1), bound=9)) == [
        Change(A, 0, ChangeKind.MAILBOXES, (), 0)
    ]


def test_unwatched_accounts_are_forgotten() -> None:
    watch = baseline()
    watch.watch([])
    assert watch.known() == {}
    assert watch.accounts() == ()
    watch.own([Change(A, 1, ChangeKind.NEW, (5,), 11)], seq=1)  # ignored: nobody listens
    assert watch.watch([A])  # needs a baseline again


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteMailStore]:
    s = SQLiteMailStore(tmp_path / "data")
    await s.open()
    await s.ensure_account(A)
    yield s
    await s.close()


async def test_reads_do_not_wait_for_the_writer(store: SQLiteMailStore) -> None:
    inbox = (await store.get_mailbox(A, "INBOX")).id
    await store.append(A, inbox, MSG)
    gate, running = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        running.set()
        gate.wait(5)

    blocker = store._db.submit(block)  # holds the write lock, as a long delivery would
    await asyncio.to_thread(running.wait, 5)
    try:
        metas = await asyncio.wait_for(store.fetch(A, inbox, with_info=True), 2)
        assert [m.uid for m in metas] == [1]
        assert (await asyncio.wait_for(store.status(A, inbox), 2)).messages == 1
        assert await asyncio.wait_for(store.read(A, inbox, 1), 2) == MSG
        assert len(await asyncio.wait_for(store.read_headers(A, inbox, [1]), 2)) == 1
    finally:
        gate.set()
        await blocker


async def test_a_real_second_process(store: SQLiteMailStore) -> None:
    inbox = (await store.get_mailbox(A, "INBOX")).id
    sub = store.subscribe(A)
    await asyncio.sleep(0.1)
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from posthorn.store.sqlite import SQLiteMailStore

        async def main():
            s = SQLiteMailStore(Path(sys.argv[1]))
            await s.open()
            print((await s.append({A!r}, {inbox}, {MSG!r})).uid)
            await s.close()

        asyncio.run(main())
        """
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script, str(store.data_dir)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    uid = int(done.stdout)
    change = await asyncio.wait_for(sub.get(), 2)
    assert (change.mailbox_id, change.kind, change.uids) == (inbox, ChangeKind.NEW, ())
    assert [m.uid for m in await store.fetch(A, inbox, changed_since=0)] == [uid]
    sub.close()


async def test_header_size_is_filled_in_for_old_databases(tmp_path: Path) -> None:
    store = SQLiteMailStore(tmp_path / "d")
    await store.open()
    await store.ensure_account(A)
    inbox = (await store.get_mailbox(A, "INBOX")).id
    res = await store.append(A, inbox, MSG)
    await store.close()
    conn = sqlite3.connect(tmp_path / "d" / "mail.sqlite3")
    conn.execute("ALTER TABLE blobs DROP COLUMN header_size")  # back to schema version 1
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = SQLiteMailStore(tmp_path / "d")
    await store.open()
    heads = await store.read_headers(A, inbox, [res.uid])
    assert heads == {res.uid: MSG[: MSG.index(b"\r\n\r\n") + 4]}
    await store.close()
