"""copy and move: COPYUID mapping (RFC 4315 §3), MOVE atomicity (RFC 6851), quota."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from posthorn.store.base import FlagMode, MailStore, NoSuchMailbox, QuotaExceeded, QuotaUsage

from .helpers import ACCOUNT, OTHER, mailbox_id, message

WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


async def setup(store: MailStore, inbox: int) -> int:
    for n in range(1, 6):
        flags = frozenset({"\\Seen", f"k{n}"}) if n % 2 else frozenset()
        await store.append(ACCOUNT, inbox, message(n), flags=flags, internal_date=WHEN)
    return await mailbox_id(store, "Archive")


async def test_copy_maps_uids_and_keeps_flags_and_date(store: MailStore, inbox: int) -> None:
    archive = await setup(store, inbox)
    await store.append(ACCOUNT, archive, message(100))  # the destination is not empty
    before = await store.status(ACCOUNT, archive)
    res = await store.copy(ACCOUNT, inbox, [(4, 5), (1, 1), (9, 12)], archive)
    assert res.dest_uidvalidity == (await store.get_mailbox(ACCOUNT, "Archive")).uidvalidity
    assert res.mapping == [(1, 2), (4, 3), (5, 4)]
    assert res.expunged == []
    src = {m.uid: m for m in await store.fetch(ACCOUNT, inbox)}
    dst = {m.uid: m for m in await store.fetch(ACCOUNT, archive)}
    for old, new in res.mapping:
        assert dst[new].flags == src[old].flags
        assert dst[new].internal_date == WHEN
        assert dst[new].size == src[old].size
        assert dst[new].modseq > before.highestmodseq
        assert await store.read(ACCOUNT, archive, new) == message(old)
    assert len(src) == 5  # the sources stay
    assert (await store.status(ACCOUNT, archive)).uidnext == 5


async def test_copy_into_the_same_mailbox(store: MailStore, inbox: int) -> None:
    await setup(store, inbox)
    res = await store.copy(ACCOUNT, inbox, [(2, 2)], inbox)
    assert res.mapping == [(2, 6)]
    assert await store.read(ACCOUNT, inbox, 6) == message(2)


async def test_copy_nothing(store: MailStore, inbox: int) -> None:
    archive = await setup(store, inbox)
    before = await store.status(ACCOUNT, archive)
    res = await store.copy(ACCOUNT, inbox, [(50, 60)], archive)
    assert res.mapping == []
    assert await store.status(ACCOUNT, archive) == before


async def test_copy_quota(store: MailStore, inbox: int) -> None:
    archive = await setup(store, inbox)
    usage = await store.quota_usage(ACCOUNT)
    one = len(message(1))
    with pytest.raises(QuotaExceeded):
        await store.copy(ACCOUNT, inbox, [(1, 2)], archive, quota=usage.bytes + one)
    assert await store.fetch(ACCOUNT, archive) == []
    await store.copy(ACCOUNT, inbox, [(1, 1)], archive, quota=usage.bytes + one)
    assert await store.quota_usage(ACCOUNT) == QuotaUsage(usage.bytes + one, usage.messages + 1)


async def test_copy_and_move_stay_inside_the_account(store: MailStore, inbox: int) -> None:
    await setup(store, inbox)
    await store.ensure_account(OTHER)
    theirs = await mailbox_id(store, "INBOX", OTHER)
    with pytest.raises(NoSuchMailbox):
        await store.copy(ACCOUNT, inbox, [(1, 5)], theirs)
    with pytest.raises(NoSuchMailbox):
        await store.move(ACCOUNT, inbox, [(1, 5)], theirs)
    with pytest.raises(NoSuchMailbox):
        await store.copy(OTHER, inbox, [(1, 5)], theirs)
    assert await store.fetch(OTHER, theirs) == []
    assert len(await store.fetch(ACCOUNT, inbox)) == 5


async def test_move(store: MailStore, inbox: int) -> None:
    archive = await setup(store, inbox)
    src_before = await store.status(ACCOUNT, inbox)
    usage = await store.quota_usage(ACCOUNT)
    flags = {m.uid: m.flags for m in await store.fetch(ACCOUNT, inbox)}
    res = await store.move(ACCOUNT, inbox, [(2, 3), (5, 5)], archive)
    assert res.mapping == [(2, 1), (3, 2), (5, 3)]
    assert res.expunged == [2, 3, 5]
    assert [m.uid for m in await store.fetch(ACCOUNT, inbox)] == [1, 4]
    moved = {m.uid: m for m in await store.fetch(ACCOUNT, archive)}
    for old, new in res.mapping:
        assert moved[new].flags == flags[old]
        assert moved[new].internal_date == WHEN
        assert await store.read(ACCOUNT, archive, new) == message(old)
    src_after = await store.status(ACCOUNT, inbox)
    assert src_after.highestmodseq > src_before.highestmodseq
    assert await store.expunged_since(ACCOUNT, inbox, src_before.highestmodseq) == [2, 3, 5]
    assert await store.quota_usage(ACCOUNT) == usage  # moved, not duplicated


async def test_move_nothing(store: MailStore, inbox: int) -> None:
    archive = await setup(store, inbox)
    res = await store.move(ACCOUNT, inbox, [(77, 88)], archive)
    assert res.mapping == [] and res.expunged == []


async def test_flags_on_a_copy_are_independent(store: MailStore, inbox: int) -> None:
    archive = await setup(store, inbox)
    res = await store.copy(ACCOUNT, inbox, [(2, 2)], archive)
    ((_, new),) = res.mapping
    await store.store_flags(ACCOUNT, archive, [(new, new)], frozenset({"\\Deleted"}), FlagMode.ADD)
    assert await store.expunge(ACCOUNT, archive) == [new]
    assert await store.read(ACCOUNT, inbox, 2) == message(2)
    assert (await store.fetch(ACCOUNT, inbox, [(2, 2)]))[0].flags == frozenset()
