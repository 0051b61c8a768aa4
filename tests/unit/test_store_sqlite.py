"""SQLiteMailStore specifics the protocol cannot see: files, blobs, parse-once, sweeps,
invariants of the SQL tables, cancellation, two stores on one data directory."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from posthorn.mail.info import MessageInfo
from posthorn.mail.mime import parse_message
from posthorn.store.base import AppendResult, ChangeKind, Delivery, FlagMode
from posthorn.store.sqlite import SQLiteMailStore
from posthorn.store.sqlite.db import SchemaTooNew
from posthorn.store.sqlite.schema import SCHEMA_VERSION

A = "alice@example.org"
B = "bob@example.org"
MSG = b"From: c@example.net\r\nSubject: hi\r\n\r\nbody\r\n"


def blob_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "blobs").glob("*/*") if p.is_file())


async def eventually(check: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteMailStore]:
    s = SQLiteMailStore(tmp_path / "data")
    await s.open()
    await s.ensure_account(A)
    yield s
    await s.close()


async def box(store: SQLiteMailStore, name: str, account: str = A) -> int:
    return (await store.get_mailbox(account, name)).id


def raw(store: SQLiteMailStore) -> sqlite3.Connection:
    return sqlite3.connect(store.data_dir / "mail.sqlite3")


async def test_layout_and_schema_version(store: SQLiteMailStore) -> None:
    inbox = await box(store, "INBOX")
    await store.append(A, inbox, MSG)
    assert (store.data_dir / "mail.sqlite3").is_file()
    (blob,) = blob_files(store.data_dir)
    assert blob.parent.parent == store.data_dir / "blobs"
    assert blob.parent.name == blob.name[:2] and len(blob.name) == 32
    assert blob.read_bytes() == MSG
    assert not list((store.data_dir / "blobs").glob("*/*.tmp"))
    conn = raw(store)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_one_blob_shared_until_the_last_reference_goes(store: SQLiteMailStore) -> None:
    boxes = [await box(store, n) for n in ("INBOX", "Archive", "Trash")]
    results = await store.deliver(MSG, [Delivery(A, b, prefix=b"X: 1\r\n") for b in boxes])
    await store.copy(A, boxes[0], [(1, 1)], await box(store, "Sent"))
    assert len(blob_files(store.data_dir)) == 1
    for b in boxes:
        await store.expunge(A, b, only_deleted=False)
    assert all(isinstance(r, AppendResult) for r in results)
    assert len(blob_files(store.data_dir)) == 1  # the copy in Sent still holds it
    await store.expunge(A, await box(store, "Sent"), only_deleted=False)
    await eventually(lambda: not blob_files(store.data_dir))


@pytest.mark.parametrize("how", ["mailbox", "account"])
async def test_deleting_a_mailbox_or_account_deletes_blobs(
    store: SQLiteMailStore, how: str
) -> None:
    work = (await store.create_mailbox(A, "Work")).id
    await store.append(A, work, MSG)
    await store.append(A, work, MSG + b"2")
    assert len(blob_files(store.data_dir)) == 2
    if how == "mailbox":
        await store.delete_mailbox(A, "Work")
    else:
        await store.delete_account(A)
    await eventually(lambda: not blob_files(store.data_dir))


async def test_a_failed_append_leaves_no_file(store: SQLiteMailStore) -> None:
    with pytest.raises(Exception, match="no mailbox"):
        await store.append(A, 424242, MSG)
    (only,) = await store.deliver(MSG, [Delivery(A, await box(store, "INBOX"), quota=1)])
    assert not isinstance(only, AppendResult)
    await eventually(lambda: not blob_files(store.data_dir))


async def test_parse_once_per_blob(tmp_path: Path) -> None:
    calls: list[bytes] = []

    def counting(data: bytes) -> MessageInfo:
        calls.append(data)
        return parse_message(data)

    store = SQLiteMailStore(tmp_path / "d", parse=counting)
    await store.open()
    await store.ensure_account(A)
    boxes = [await box(store, n) for n in ("INBOX", "Archive", "Trash")]
    await store.deliver(MSG, [Delivery(A, b) for b in boxes])
    await store.copy(A, boxes[0], [(1, 1)], boxes[1])
    await store.move(A, boxes[1], [(1, 2)], boxes[2])
    assert calls == [MSG]
    metas = await store.fetch(A, boxes[2], with_info=True)
    assert len(metas) == 3 and all(m.info == parse_message(MSG) for m in metas)
    assert calls == [MSG]
    await store.close()


async def test_fetch_without_info_does_not_decode_it(
    store: SQLiteMailStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = await box(store, "INBOX")
    await store.deliver(MSG, [Delivery(A, inbox)] * 20)

    def refuse(cls: type[MessageInfo], text: str) -> MessageInfo:
        raise AssertionError("info decoded")

    monkeypatch.setattr(MessageInfo, "from_json", classmethod(refuse))
    assert len(await store.fetch(A, inbox)) == 20


async def test_path_source_is_hard_linked_and_kept(store: SQLiteMailStore, tmp_path: Path) -> None:
    source = tmp_path / "spooled"
    source.write_bytes(MSG)
    await store.append(A, await box(store, "INBOX"), source)
    (blob,) = blob_files(store.data_dir)
    assert blob.stat().st_ino == source.stat().st_ino  # bytes written once
    assert source.read_bytes() == MSG


async def test_path_source_is_copied_when_linking_is_off(tmp_path: Path) -> None:
    store = SQLiteMailStore(tmp_path / "d", link_sources=False)
    await store.open()
    await store.ensure_account(A)
    source = tmp_path / "spooled"
    source.write_bytes(MSG)
    await store.append(A, await box(store, "INBOX"), source)
    (blob,) = blob_files(store.data_dir)
    assert blob.stat().st_ino != source.stat().st_ino
    assert blob.read_bytes() == source.read_bytes() == MSG
    await store.close()


async def test_open_sweeps_old_orphans_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    store = SQLiteMailStore(data_dir)
    await store.open()
    await store.ensure_account(A)
    await store.append(A, await box(store, "INBOX"), MSG)
    await store.close()
    (kept,) = blob_files(data_dir)
    orphan = data_dir / "blobs" / "ab" / ("ab" + "0" * 30)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"crashed before commit")
    temp = kept.parent / (kept.name + ".tmp")
    temp.write_bytes(b"half written")
    foreign = kept.parent / "README"
    foreign.write_text("not ours")

    young = SQLiteMailStore(data_dir)  # default grace: a young orphan may be in flight
    await young.open()
    await young.close()
    assert orphan.exists() and temp.exists()

    swept = SQLiteMailStore(data_dir, orphan_grace=0)
    await swept.open()
    assert not orphan.exists() and not temp.exists()
    assert kept.exists() and foreign.exists()
    assert await swept.read(A, await box(swept, "INBOX"), 1) == MSG
    await swept.close()


async def test_cancelled_caller_still_publishes_the_committed_change(
    store: SQLiteMailStore,
) -> None:
    inbox = await box(store, "INBOX")
    sub = store.subscribe(A)
    gate, running = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        running.set()
        gate.wait(5)

    blocker = store._db.submit(block)
    await asyncio.to_thread(running.wait, 5)
    task = asyncio.create_task(store.append(A, inbox, MSG))
    await eventually(lambda: store._db._jobs.qsize() > 0)  # staged, queued behind the blocker
    task.cancel()
    gate.set()
    await blocker
    with pytest.raises(asyncio.CancelledError):
        await task
    change = await asyncio.wait_for(sub.get(), 2)
    assert (change.kind, change.uids) == (ChangeKind.NEW, (1,))
    assert [m.uid for m in await store.fetch(A, inbox)] == [1]


async def test_two_stores_on_one_directory(store: SQLiteMailStore) -> None:
    """What the CLI does while the server runs: another connection (here: another store on
    its own thread) writes the same files."""
    inbox = await box(store, "INBOX")
    await store.append(A, inbox, MSG)
    cli = SQLiteMailStore(store.data_dir)
    await cli.open()
    results = await asyncio.gather(
        *(cli.append(A, inbox, MSG + str(i).encode()) for i in range(10)),
        *(store.append(A, inbox, MSG + str(i).encode()) for i in range(10)),
    )
    await cli.close()
    uids = sorted(r.uid for r in results)
    assert uids == list(range(2, 22))
    assert [m.uid for m in await store.fetch(A, inbox)] == list(range(1, 22))
    assert len(blob_files(store.data_dir)) == 21  # the second open swept nothing in flight


async def test_reference_counts_and_usage_stay_consistent(store: SQLiteMailStore) -> None:
    await store.ensure_account(B)
    inbox, archive, trash = [await box(store, n) for n in ("INBOX", "Archive", "Trash")]
    b_inbox = await box(store, "INBOX", B)
    for i in range(6):
        await store.deliver(
            MSG + bytes([65 + i]),
            [Delivery(A, inbox, prefix=b"P: %d\r\n" % i), Delivery(B, b_inbox)],
        )
    await store.copy(A, inbox, [(1, 4)], archive)
    await store.move(A, inbox, [(2, 3)], trash)
    await store.store_flags(A, archive, [(1, 2)], frozenset({"\\Deleted"}), FlagMode.ADD)
    await store.expunge(A, archive)
    await store.rename_mailbox(A, "INBOX", "Old")
    await store.delete_mailbox(A, "Trash")
    await store.expunge(B, b_inbox, [(1, 2)], only_deleted=False)

    conn = raw(store)
    refs = conn.execute(
        "SELECT b.refs, (SELECT count(*) FROM messages m WHERE m.blob_id = b.id) FROM blobs b"
    ).fetchall()
    assert refs and all(have == want for have, want in refs)
    usage = conn.execute(
        "SELECT a.used_bytes, a.used_messages,"
        " (SELECT coalesce(sum(m.size), 0) FROM messages m JOIN mailboxes x"
        "  ON x.id = m.mailbox_id WHERE x.account_id = a.id),"
        " (SELECT count(*) FROM messages m JOIN mailboxes x"
        "  ON x.id = m.mailbox_id WHERE x.account_id = a.id) FROM accounts a"
    ).fetchall()
    assert all(r[0] == r[2] and r[1] == r[3] for r in usage)
    prefixes = conn.execute(
        "SELECT count(*) FROM prefixes p WHERE NOT EXISTS"
        " (SELECT 1 FROM messages m WHERE m.prefix_id = p.id)"
    ).fetchone()[0]
    assert prefixes == 0
    names = {r[0] for r in conn.execute("SELECT name FROM blobs")}
    conn.close()
    await eventually(lambda: {p.name for p in blob_files(store.data_dir)} == names)


async def test_uidvalidity_never_goes_back_with_the_clock(tmp_path: Path) -> None:
    now = [2_000_000_000.0]
    store = SQLiteMailStore(tmp_path / "d", clock=lambda: now[0])
    await store.open()
    first = await store.create_mailbox(A, "x")
    now[0] -= 10_000
    second = await store.create_mailbox(A, "y")
    assert second.uidvalidity == first.uidvalidity + 1
    await store.close()


async def test_open_is_required_and_close_is_idempotent(tmp_path: Path) -> None:
    store = SQLiteMailStore(tmp_path / "d")
    with pytest.raises(RuntimeError):
        await store.ensure_account(A)
    await store.open()
    await store.close()
    await store.close()
    assert (tmp_path / "d" / "blobs").is_dir()


async def test_a_parser_failure_fails_the_append_and_leaves_nothing(tmp_path: Path) -> None:
    def broken(data: bytes) -> MessageInfo:
        raise RuntimeError("parser bug")

    store = SQLiteMailStore(tmp_path / "d", parse=broken)
    await store.open()
    await store.ensure_account(A)
    inbox = await box(store, "INBOX")
    with pytest.raises(RuntimeError, match="parser bug"):
        await store.append(A, inbox, MSG)
    assert blob_files(store.data_dir) == []
    assert (await store.status(A, inbox)).messages == 0
    await store.close()


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    store = SQLiteMailStore(tmp_path / "d")
    await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / "d" / "mail.sqlite3")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew):
        await SQLiteMailStore(tmp_path / "d").open()
