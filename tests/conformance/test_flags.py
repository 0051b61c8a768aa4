"""store_flags: modes, MODSEQ only on real changes, UNCHANGEDSINCE (RFC 9051 §6.4.6, RFC 7162)."""

from __future__ import annotations

from posthorn.store.base import FlagMode, MailStore

from .helpers import ACCOUNT, message


async def setup(store: MailStore, inbox: int) -> None:
    await store.append(ACCOUNT, inbox, message(1), flags=frozenset({"\\Seen"}))
    await store.append(ACCOUNT, inbox, message(2))
    await store.append(ACCOUNT, inbox, message(3), flags=frozenset({"\\Seen", "work"}))


async def flags_of(store: MailStore, inbox: int) -> dict[int, frozenset[str]]:
    return {m.uid: m.flags for m in await store.fetch(ACCOUNT, inbox)}


async def test_add_remove_replace(store: MailStore, inbox: int) -> None:
    await setup(store, inbox)
    await store.store_flags(ACCOUNT, inbox, [(1, 3)], frozenset({"\\flagged"}), FlagMode.ADD)
    assert all("\\Flagged" in f for f in (await flags_of(store, inbox)).values())
    await store.store_flags(
        ACCOUNT, inbox, [(1, 3)], frozenset({"\\Seen", "work"}), FlagMode.REMOVE
    )
    assert set((await flags_of(store, inbox)).values()) == {frozenset({"\\Flagged"})}
    await store.store_flags(
        ACCOUNT, inbox, [(2, 2)], frozenset({"Work", "\\Draft"}), FlagMode.REPLACE
    )
    assert (await flags_of(store, inbox))[2] == frozenset({"Work", "\\Draft"})
    await store.store_flags(ACCOUNT, inbox, [(2, 2)], frozenset(), FlagMode.REPLACE)
    assert (await flags_of(store, inbox))[2] == frozenset()


async def test_keywords_are_exact(store: MailStore, inbox: int) -> None:
    await setup(store, inbox)
    await store.store_flags(ACCOUNT, inbox, [(3, 3)], frozenset({"WORK"}), FlagMode.REMOVE)
    assert (await flags_of(store, inbox))[3] == frozenset({"\\Seen", "work"})


async def test_result_and_modseq_only_for_real_changes(store: MailStore, inbox: int) -> None:
    await setup(store, inbox)
    before = await store.fetch(ACCOUNT, inbox)
    high = (await store.status(ACCOUNT, inbox)).highestmodseq
    res = await store.store_flags(ACCOUNT, inbox, [(1, 3)], frozenset({"\\Seen"}), FlagMode.ADD)
    assert [u.uid for u in res.updated] == [2]
    assert res.failed == []
    (upd,) = res.updated
    assert upd.flags == frozenset({"\\Seen"}) and upd.modseq > high
    after = {m.uid: m.modseq for m in await store.fetch(ACCOUNT, inbox)}
    assert after[1] == before[0].modseq and after[3] == before[2].modseq
    assert after[2] == upd.modseq
    assert (await store.status(ACCOUNT, inbox)).highestmodseq == upd.modseq
    # Nothing changes at all: no MODSEQ is taken.
    again = await store.store_flags(ACCOUNT, inbox, [(1, 3)], frozenset({"\\Seen"}), FlagMode.ADD)
    assert again.updated == [] and again.failed == []
    assert (await store.status(ACCOUNT, inbox)).highestmodseq == upd.modseq


async def test_missing_uids_are_ignored(store: MailStore, inbox: int) -> None:
    await setup(store, inbox)
    res = await store.store_flags(ACCOUNT, inbox, [(50, 60)], frozenset({"x"}), FlagMode.ADD)
    assert res.updated == [] and res.failed == []


async def test_unchangedsince_failures(store: MailStore, inbox: int) -> None:
    # RFC 7162 §3.1.3: messages modified after UNCHANGEDSINCE are not touched, and reported.
    await setup(store, inbox)
    metas = await store.fetch(ACCOUNT, inbox)
    mark = metas[1].modseq  # message 2's append MODSEQ: message 3 is newer
    res = await store.store_flags(
        ACCOUNT, inbox, [(1, 3)], frozenset({"\\Flagged"}), FlagMode.ADD, unchanged_since=mark
    )
    assert sorted(u.uid for u in res.updated) == [1, 2]
    assert res.failed == [3]
    assert "\\Flagged" not in (await flags_of(store, inbox))[3]
    # UNCHANGEDSINCE 0 fails for every message (their MODSEQs are all > 0).
    res = await store.store_flags(
        ACCOUNT, inbox, [(1, 3)], frozenset({"\\Seen"}), FlagMode.ADD, unchanged_since=0
    )
    assert res.updated == [] and res.failed == [1, 2, 3]
    # A message that passes the test but would not change keeps its MODSEQ.
    current = {m.uid: m.modseq for m in await store.fetch(ACCOUNT, inbox)}
    res = await store.store_flags(
        ACCOUNT,
        inbox,
        [(1, 1)],
        frozenset({"\\Seen"}),
        FlagMode.ADD,
        unchanged_since=current[1],
    )
    assert res.updated == [] and res.failed == []
    assert (await store.fetch(ACCOUNT, inbox, [(1, 1)]))[0].modseq == current[1]
