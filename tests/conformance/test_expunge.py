"""expunge and expunged_since (RFC 9051 §6.4.3, RFC 4315 UID EXPUNGE, RFC 7162 VANISHED)."""

from __future__ import annotations

from posthorn.store.base import FlagMode, MailStore, QuotaUsage

from .helpers import ACCOUNT, message


async def setup(store: MailStore, inbox: int, count: int = 6) -> None:
    for n in range(1, count + 1):
        await store.append(ACCOUNT, inbox, message(n))
    deleted = [(2, 2), (4, 5)]
    await store.store_flags(ACCOUNT, inbox, deleted, frozenset({"\\Deleted"}), FlagMode.ADD)


async def uids(store: MailStore, inbox: int) -> list[int]:
    return [m.uid for m in await store.fetch(ACCOUNT, inbox)]


async def test_expunge_only_deleted(store: MailStore, inbox: int) -> None:
    await setup(store, inbox)
    high = (await store.status(ACCOUNT, inbox)).highestmodseq
    assert await store.expunge(ACCOUNT, inbox) == [2, 4, 5]
    assert await uids(store, inbox) == [1, 3, 6]
    st = await store.status(ACCOUNT, inbox)
    assert st.highestmodseq > high and st.deleted == 0 and st.messages == 3
    # Nothing left to expunge: no MODSEQ is taken.
    assert await store.expunge(ACCOUNT, inbox) == []
    assert (await store.status(ACCOUNT, inbox)).highestmodseq == st.highestmodseq


async def test_uid_expunge_limits_to_the_set(store: MailStore, inbox: int) -> None:
    await setup(store, inbox)
    assert await store.expunge(ACCOUNT, inbox, [(1, 4)]) == [2, 4]
    assert await uids(store, inbox) == [1, 3, 5, 6]


async def test_expunge_regardless_of_deleted(store: MailStore, inbox: int) -> None:
    await setup(store, inbox)
    assert await store.expunge(ACCOUNT, inbox, [(3, 3), (6, 9)], only_deleted=False) == [3, 6]
    assert await store.expunge(ACCOUNT, inbox, only_deleted=False) == [1, 2, 4, 5]
    assert await uids(store, inbox) == []
    assert await store.quota_usage(ACCOUNT) == QuotaUsage(0, 0)


async def test_uids_are_not_reused_after_expunge(store: MailStore, inbox: int) -> None:
    await setup(store, inbox)
    await store.expunge(ACCOUNT, inbox, only_deleted=False)
    res = await store.append(ACCOUNT, inbox, message(99))
    assert res.uid == 7


async def test_expunged_since(store: MailStore, inbox: int) -> None:
    await setup(store, inbox)
    m0 = (await store.status(ACCOUNT, inbox)).highestmodseq
    assert await store.expunged_since(ACCOUNT, inbox, 0) == []
    await store.expunge(ACCOUNT, inbox, [(2, 2)])
    m1 = (await store.status(ACCOUNT, inbox)).highestmodseq
    await store.expunge(ACCOUNT, inbox)
    assert await store.expunged_since(ACCOUNT, inbox, m0) == [2, 4, 5]
    assert await store.expunged_since(ACCOUNT, inbox, m1) == [4, 5]
    assert await store.expunged_since(ACCOUNT, inbox, 0) == [2, 4, 5]
    high = (await store.status(ACCOUNT, inbox)).highestmodseq
    assert await store.expunged_since(ACCOUNT, inbox, high) == []
