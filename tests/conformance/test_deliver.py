"""deliver: one message, many copies, a result per copy; bytes stored once and shared."""

from __future__ import annotations

from pathlib import Path

from posthorn.store.base import (
    AppendResult,
    Delivery,
    FlagMode,
    MailStore,
    NoSuchMailbox,
    QuotaExceeded,
    QuotaUsage,
)

from .helpers import ACCOUNT, OTHER, mailbox_id, message


async def test_deliver_with_one_quota_failure_among_successes(store: MailStore, inbox: int) -> None:
    await store.ensure_account(OTHER)
    other = await mailbox_id(store, "INBOX", OTHER)
    data = message(1)
    results = await store.deliver(
        data,
        [
            Delivery(ACCOUNT, inbox, prefix=b"Delivered-To: alice@example.org\r\n"),
            Delivery(OTHER, other, quota=10),  # far too small: refused
            Delivery(ACCOUNT, await mailbox_id(store, "Archive"), flags=frozenset({"\\Seen"})),
        ],
    )
    assert isinstance(results[0], AppendResult)
    assert isinstance(results[1], QuotaExceeded)
    assert isinstance(results[2], AppendResult)
    assert await store.quota_usage(OTHER) == QuotaUsage(0, 0)
    assert (await store.status(OTHER, other)).messages == 0
    assert await store.read(ACCOUNT, inbox, results[0].uid) == (
        b"Delivered-To: alice@example.org\r\n" + data
    )


async def test_deliver_quota_counts_earlier_copies_of_the_same_call(
    store: MailStore, inbox: int
) -> None:
    data = message(1)
    quota = 2 * len(data)
    results = await store.deliver(data, [Delivery(ACCOUNT, inbox, quota=quota)] * 3)
    assert [type(r) for r in results] == [AppendResult, AppendResult, QuotaExceeded]


async def test_deliver_errors_are_per_copy(store: MailStore, inbox: int) -> None:
    await store.ensure_account(OTHER)
    other = await mailbox_id(store, "INBOX", OTHER)
    results = await store.deliver(
        message(1),
        [
            Delivery(ACCOUNT, 424242),  # no such mailbox
            Delivery(ACCOUNT, other),  # another account's mailbox: the same to this account
            Delivery(OTHER, other),
        ],
    )
    assert isinstance(results[0], NoSuchMailbox)
    assert isinstance(results[1], NoSuchMailbox)
    assert isinstance(results[2], AppendResult)
    assert (await store.status(ACCOUNT, inbox)).messages == 0


async def test_deliver_all_failing_and_empty(store: MailStore, inbox: int) -> None:
    assert await store.deliver(message(1), []) == []
    (only,) = await store.deliver(message(1), [Delivery(ACCOUNT, inbox, quota=1)])
    assert isinstance(only, QuotaExceeded)
    assert await store.fetch(ACCOUNT, inbox) == []


async def test_deliver_copy_metadata(store: MailStore, inbox: int, tmp_path: Path) -> None:
    source = tmp_path / "queued"
    source.write_bytes(message(3))
    prefix = b"Return-Path: <carol@example.net>\r\n"
    (res,) = await store.deliver(
        source, [Delivery(ACCOUNT, inbox, flags=frozenset({"$Junk"}), prefix=prefix)]
    )
    assert isinstance(res, AppendResult)
    (meta,) = await store.fetch(ACCOUNT, inbox, with_info=True)
    assert meta.flags == frozenset({"$Junk"})
    assert meta.size == len(prefix) + len(message(3))
    assert meta.prefix_size == len(prefix)
    # info describes the stored bytes (without the prefix): offsets are blob offsets.
    assert meta.info is not None and meta.info.size == len(message(3))
    assert meta.info.envelope.subject == "message 3"
    assert source.read_bytes() == message(3)


async def test_shared_bytes_outlive_all_but_the_last_copy(store: MailStore, inbox: int) -> None:
    boxes = [inbox, await mailbox_id(store, "Archive"), await mailbox_id(store, "Trash")]
    data = message(9, body_size=3000)
    results = await store.deliver(
        data,
        [Delivery(ACCOUNT, b, prefix=f"X-Copy: {i}\r\n".encode()) for i, b in enumerate(boxes)],
    )
    uids = [r.uid for r in results if isinstance(r, AppendResult)]
    for box, uid in zip(boxes[:2], uids[:2], strict=True):
        await store.store_flags(ACCOUNT, box, [(uid, uid)], frozenset({"\\Deleted"}), FlagMode.ADD)
        assert await store.expunge(ACCOUNT, box) == [uid]
    assert await store.read(ACCOUNT, boxes[2], uids[2]) == b"X-Copy: 2\r\n" + data
    (meta,) = await store.fetch(ACCOUNT, boxes[2], with_info=True)
    assert meta.info is not None and meta.info.size == len(data)
    await store.expunge(ACCOUNT, boxes[2], only_deleted=False)
    assert await store.quota_usage(ACCOUNT) == QuotaUsage(0, 0)
