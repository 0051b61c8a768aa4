"""fetch (metadata, CHANGEDSINCE, parse-once info) and read (byte ranges over prefix + bytes)."""

from __future__ import annotations

import pytest

from posthorn.store.base import (
    AppendResult,
    Delivery,
    FlagMode,
    MailStore,
    NoSuchMessage,
)

from .helpers import ACCOUNT, message


async def fill(store: MailStore, inbox: int, count: int) -> list[AppendResult]:
    return [await store.append(ACCOUNT, inbox, message(n)) for n in range(1, count + 1)]


async def test_fetch_selects_uid_ranges(store: MailStore, inbox: int) -> None:
    await fill(store, inbox, 10)
    assert [m.uid for m in await store.fetch(ACCOUNT, inbox)] == list(range(1, 11))
    got = await store.fetch(ACCOUNT, inbox, [(8, 9), (2, 3), (5, 5), (20, 30)])
    assert [m.uid for m in got] == [2, 3, 5, 8, 9]
    assert [m.uid for m in await store.fetch(ACCOUNT, inbox, [(7, 4)])] == [4, 5, 6, 7]
    assert await store.fetch(ACCOUNT, inbox, []) == []
    assert [m.uid for m in await store.fetch(ACCOUNT, inbox, [(9, 2**32 - 1)])] == [9, 10]


async def test_fetch_with_a_fragmented_uid_set(store: MailStore, inbox: int) -> None:
    data = message(1)
    await store.deliver(data, [Delivery(ACCOUNT, inbox)] * 300)
    odd = [(u, u) for u in range(1, 301, 2)]
    assert [m.uid for m in await store.fetch(ACCOUNT, inbox, odd)] == list(range(1, 301, 2))
    res = await store.store_flags(ACCOUNT, inbox, odd, frozenset({"\\Deleted"}), FlagMode.ADD)
    assert len(res.updated) == 150
    assert await store.expunge(ACCOUNT, inbox, odd[:100]) == list(range(1, 201, 2))


async def test_fetch_metadata(store: MailStore, inbox: int) -> None:
    data = message(1, body_size=500)
    res = await store.append(ACCOUNT, inbox, data, flags=frozenset({"\\Answered"}))
    (meta,) = await store.fetch(ACCOUNT, inbox)
    assert (meta.uid, meta.modseq, meta.flags) == (res.uid, res.modseq, frozenset({"\\Answered"}))
    assert (meta.size, meta.prefix_size) == (len(data), 0)
    assert meta.info is None  # only loaded when asked for
    (full,) = await store.fetch(ACCOUNT, inbox, with_info=True)
    assert full.info is not None
    assert full.info.size == len(data)
    assert full.info.envelope.subject == "message 1"
    assert full.info.envelope.message_id == "<1@example.net>"
    assert (full.uid, full.flags, full.size) == (meta.uid, meta.flags, meta.size)


async def test_fetch_changed_since(store: MailStore, inbox: int) -> None:
    results = await fill(store, inbox, 5)
    mark = results[-1].modseq
    assert await store.fetch(ACCOUNT, inbox, changed_since=mark) == []
    await store.store_flags(ACCOUNT, inbox, [(2, 2), (4, 4)], frozenset({"\\Seen"}), FlagMode.ADD)
    changed = await store.fetch(ACCOUNT, inbox, changed_since=mark)
    assert [m.uid for m in changed] == [2, 4]
    assert all(m.modseq > mark for m in changed)
    assert [m.uid for m in await store.fetch(ACCOUNT, inbox, [(3, 5)], changed_since=mark)] == [4]
    assert len(await store.fetch(ACCOUNT, inbox, changed_since=0)) == 5


async def test_read_ranges_across_prefix_and_bytes(store: MailStore, inbox: int) -> None:
    prefix = b"Delivered-To: alice@example.org\r\n"
    data = message(1, body_size=10_000)
    whole = prefix + data
    (res,) = await store.deliver(data, [Delivery(ACCOUNT, inbox, prefix=prefix)])
    assert isinstance(res, AppendResult)
    uid, p = res.uid, len(prefix)
    cases = [
        (0, None),
        (0, 5),
        (p - 3, 6),  # straddles the boundary
        (p, 10),  # starts exactly at the stored bytes
        (p - 1, 1),  # last prefix byte only
        (5, p - 5),  # ends exactly at the boundary
        (p + 100, 4000),
        (len(whole) - 10, 100),  # runs past the end
        (len(whole), 5),  # at the end
        (len(whole) + 50, None),  # beyond the end
        (0, 0),
        (17, None),
    ]
    for start, length in cases:
        want = whole[start:] if length is None else whole[start : start + length]
        assert await store.read(ACCOUNT, inbox, uid, start, length) == want, (start, length)


async def test_read_without_prefix_and_missing(store: MailStore, inbox: int) -> None:
    data = message(2)
    res = await store.append(ACCOUNT, inbox, data)
    assert await store.read(ACCOUNT, inbox, res.uid) == data
    assert await store.read(ACCOUNT, inbox, res.uid, 6, 4) == data[6:10]
    with pytest.raises(NoSuchMessage):
        await store.read(ACCOUNT, inbox, res.uid + 1)
    await store.expunge(ACCOUNT, inbox, only_deleted=False)
    with pytest.raises(NoSuchMessage):
        await store.read(ACCOUNT, inbox, res.uid)


async def test_read_headers_is_the_header_section_as_read(store: MailStore, inbox: int) -> None:
    prefix = b"Delivered-To: alice@example.org\r\n"
    plain = message(1, body_size=3000)
    (with_prefix,) = await store.deliver(message(2), [Delivery(ACCOUNT, inbox, prefix=prefix)])
    assert isinstance(with_prefix, AppendResult)
    first = await store.append(ACCOUNT, inbox, plain)
    headless = await store.append(ACCOUNT, inbox, b"Subject: no body\r\n")
    got = await store.read_headers(ACCOUNT, inbox, [headless.uid, first.uid, 999, with_prefix.uid])
    assert set(got) == {first.uid, with_prefix.uid, headless.uid}  # 999 does not exist
    assert got[first.uid] == plain[: plain.index(b"\r\n\r\n") + 4]
    assert got[with_prefix.uid] == prefix + message(2)[: message(2).index(b"\r\n\r\n") + 4]
    assert got[headless.uid] == b"Subject: no body\r\n"  # no blank line: all of it
    for uid, head in got.items():
        assert await store.read(ACCOUNT, inbox, uid, 0, len(head)) == head
    assert await store.read_headers(ACCOUNT, inbox, []) == {}


async def test_read_headers_of_many_messages(store: MailStore, inbox: int) -> None:
    data = message(7)
    head = data[: data.index(b"\r\n\r\n") + 4]
    await store.deliver(data, [Delivery(ACCOUNT, inbox)] * 300)
    await store.expunge(ACCOUNT, inbox, [(100, 199)], only_deleted=False)
    wanted = list(range(1, 301, 3))  # fragmented, some expunged
    got = await store.read_headers(ACCOUNT, inbox, wanted)
    assert sorted(got) == [u for u in wanted if not 100 <= u <= 199]
    assert set(got.values()) == {head}
