"""append: UIDs, MODSEQs, flags, dates, sources, malformed input, quota (RFC 9051 §6.3.12)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from posthorn.store.base import ChangeKind, MailStore, NoSuchMailbox, QuotaExceeded

from .helpers import ACCOUNT, drain, message


async def test_append_returns_uid_modseq_uidvalidity(store: MailStore, inbox: int) -> None:
    box = await store.get_mailbox(ACCOUNT, "INBOX")
    before = await store.status(ACCOUNT, inbox)
    first = await store.append(ACCOUNT, inbox, message(1))
    second = await store.append(ACCOUNT, inbox, message(2))
    assert first.uidvalidity == second.uidvalidity == box.uidvalidity
    assert first.uid == before.uidnext
    assert second.uid > first.uid
    assert before.highestmodseq < first.modseq < second.modseq
    st = await store.status(ACCOUNT, inbox)
    assert st.uidnext == second.uid + 1
    assert st.highestmodseq == second.modseq


async def test_flags_are_canonicalised_and_recent_not_stored(store: MailStore, inbox: int) -> None:
    flags = frozenset({"\\seen", "\\FLAGGED", "\\Recent", "$Label1", "custom"})
    res = await store.append(ACCOUNT, inbox, message(1), flags=flags)
    (meta,) = await store.fetch(ACCOUNT, inbox, [(res.uid, res.uid)])
    assert meta.flags == frozenset({"\\Seen", "\\Flagged", "$Label1", "custom"})


async def test_internal_date_round_trips_with_its_zone(store: MailStore, inbox: int) -> None:
    when = datetime(2024, 2, 29, 23, 59, 58, tzinfo=timezone(timedelta(hours=-7)))
    res = await store.append(ACCOUNT, inbox, message(1), internal_date=when)
    (meta,) = await store.fetch(ACCOUNT, inbox, [(res.uid, res.uid)])
    assert meta.internal_date == when
    assert meta.internal_date.utcoffset() == timedelta(hours=-7)


async def test_default_internal_date_is_now(store: MailStore, inbox: int) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    await store.append(ACCOUNT, inbox, message(1))
    (meta,) = await store.fetch(ACCOUNT, inbox)
    assert before <= meta.internal_date <= datetime.now(UTC) + timedelta(seconds=2)


async def test_append_from_a_path_leaves_the_source(
    store: MailStore, inbox: int, tmp_path: Path
) -> None:
    source = tmp_path / "spool-file.eml"
    source.write_bytes(message(7, body_size=5000))
    res = await store.append(ACCOUNT, inbox, source)
    assert source.read_bytes() == message(7, body_size=5000)
    assert await store.read(ACCOUNT, inbox, res.uid) == message(7, body_size=5000)
    source.unlink()  # the spool removes its copy; the stored message stays
    assert await store.read(ACCOUNT, inbox, res.uid) == message(7, body_size=5000)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\xff\xfe garbage \r\n\r\n\x80", b"no header separator at all", b"\r\n\r\n"],
    ids=["empty", "binary", "no-separator", "blank-lines"],
)
async def test_malformed_messages_are_stored(store: MailStore, inbox: int, data: bytes) -> None:
    res = await store.append(ACCOUNT, inbox, data)
    assert await store.read(ACCOUNT, inbox, res.uid) == data
    (meta,) = await store.fetch(ACCOUNT, inbox, [(res.uid, res.uid)], with_info=True)
    assert meta.size == len(data)
    assert meta.info is not None and meta.info.size == len(data)


async def test_append_to_missing_mailbox(store: MailStore, inbox: int) -> None:
    with pytest.raises(NoSuchMailbox):
        await store.append(ACCOUNT, 987654, message(1))


async def test_append_quota(store: MailStore, inbox: int) -> None:
    data = message(1)
    await store.append(ACCOUNT, inbox, data, quota=len(data))  # exactly at the limit is fine
    before = await store.status(ACCOUNT, inbox)
    with pytest.raises(QuotaExceeded):
        await store.append(ACCOUNT, inbox, data, quota=len(data) * 2 - 1)
    after = await store.status(ACCOUNT, inbox)
    assert after == before  # nothing taken: no UID, no MODSEQ, no message
    await store.append(ACCOUNT, inbox, data, quota=len(data) * 2)


async def test_concurrent_appends_get_ascending_uids_and_modseqs(
    store: MailStore, inbox: int
) -> None:
    sub = store.subscribe(ACCOUNT)
    results = await asyncio.gather(*(store.append(ACCOUNT, inbox, message(n)) for n in range(50)))
    uids = [r.uid for r in results]
    assert len(set(uids)) == 50
    # Commit order is the feed's order: UIDs and MODSEQs ascend together along it.
    changes = [c for c in await drain(sub) if c.kind is ChangeKind.NEW]
    assert [c.uids for c in changes] == [(u,) for u in sorted(uids)]
    feed_modseqs = [c.modseq for c in changes]
    assert feed_modseqs == sorted(set(feed_modseqs))
    by_uid = sorted((r.uid, r.modseq) for r in results)
    assert [m for _, m in by_uid] == sorted({m for _, m in by_uid})
    metas = await store.fetch(ACCOUNT, inbox)
    assert [(m.uid, m.modseq) for m in metas] == by_uid
    # Each append stored its own bytes under its own UID.
    for n, r in enumerate(results[:5]):
        assert await store.read(ACCOUNT, inbox, r.uid) == message(n)
    sub.close()
