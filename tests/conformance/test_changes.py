"""The change feed: committed changes, per account, in commit order, never silently lost."""

from __future__ import annotations

import asyncio

import pytest

from posthorn.store.base import (
    ChangeKind,
    ChangesLost,
    Delivery,
    FlagMode,
    MailStore,
    iter_changes,
)

from .conftest import StoreHarness
from .helpers import ACCOUNT, OTHER, drain, mailbox_id, message, next_change


async def test_new_flags_expunge_events(store: MailStore, inbox: int) -> None:
    sub = store.subscribe(ACCOUNT)
    res = await store.append(ACCOUNT, inbox, message(1))
    new = await next_change(sub)
    assert (new.account, new.mailbox_id, new.kind) == (ACCOUNT, inbox, ChangeKind.NEW)
    assert (new.uids, new.modseq) == ((res.uid,), res.modseq)

    upd = await store.store_flags(
        ACCOUNT, inbox, [(res.uid, res.uid)], frozenset({"\\Deleted"}), FlagMode.ADD
    )
    flags = await next_change(sub)
    assert (flags.kind, flags.uids, flags.modseq) == (
        ChangeKind.FLAGS,
        (res.uid,),
        upd.updated[0].modseq,
    )
    # A store that changes nothing publishes nothing.
    await store.store_flags(
        ACCOUNT, inbox, [(res.uid, res.uid)], frozenset({"\\Deleted"}), FlagMode.ADD
    )
    await store.expunge(ACCOUNT, inbox)
    gone = await next_change(sub)
    assert (gone.kind, gone.uids) == (ChangeKind.EXPUNGE, (res.uid,))
    assert gone.modseq == (await store.status(ACCOUNT, inbox)).highestmodseq
    assert sub.get_nowait() is None
    sub.close()


async def test_copy_move_and_mailbox_events(store: MailStore, inbox: int) -> None:
    archive = await mailbox_id(store, "Archive")
    await store.append(ACCOUNT, inbox, message(1))
    await store.append(ACCOUNT, inbox, message(2))
    sub = store.subscribe(ACCOUNT)
    await store.copy(ACCOUNT, inbox, [(1, 1)], archive)
    await store.move(ACCOUNT, inbox, [(2, 2)], archive)
    await store.create_mailbox(ACCOUNT, "Fresh")
    changes = await drain(sub)
    kinds = [(c.mailbox_id, c.kind, c.uids) for c in changes]
    assert kinds[:3] == [
        (archive, ChangeKind.NEW, (1,)),
        (archive, ChangeKind.NEW, (2,)),
        (inbox, ChangeKind.EXPUNGE, (2,)),
    ]
    assert kinds[3][1] is ChangeKind.MAILBOXES
    sub.close()


async def test_only_the_accounts_own_changes(store: MailStore, inbox: int) -> None:
    await store.ensure_account(OTHER)
    theirs = await mailbox_id(store, "INBOX", OTHER)
    mine = store.subscribe(ACCOUNT)
    await store.deliver(message(1), [Delivery(OTHER, theirs)])
    await store.append(ACCOUNT, inbox, message(2))
    changes = await drain(mine)
    assert [c.account for c in changes] == [ACCOUNT]
    mine.close()


async def test_changes_before_subscribing_are_not_seen(store: MailStore, inbox: int) -> None:
    await store.append(ACCOUNT, inbox, message(1))
    sub = store.subscribe(ACCOUNT)
    assert await drain(sub) == []
    sub.close()


async def test_falling_behind_raises_changes_lost(store: MailStore, inbox: int) -> None:
    sub = store.subscribe(ACCOUNT)
    count = 5000
    await store.deliver(message(1), [Delivery(ACCOUNT, inbox)] * count)
    got: list[int] = []
    lost = False
    while True:
        try:
            change = await asyncio.wait_for(sub.get(), 0.2)
        except ChangesLost:
            lost = True
            break
        except TimeoutError:
            break
        got.extend(change.uids)
    # Either every change arrived, or the reader was told it missed some: never silent loss.
    assert lost or sorted(got) == list(range(1, count + 1))
    if lost:
        # After ChangesLost the reader resyncs and keeps receiving new changes.
        res = await store.append(ACCOUNT, inbox, message(2))
        later = [u for c in await drain(sub, quiet=0.2) for u in c.uids]
        assert res.uid in later
    sub.close()


async def test_closed_subscription_gets_nothing(store: MailStore, inbox: int) -> None:
    sub = store.subscribe(ACCOUNT)
    sub.close()
    sub.close()  # idempotent
    await store.append(ACCOUNT, inbox, message(1))
    with pytest.raises(ChangesLost):
        sub.get_nowait()


async def test_iter_changes(store: MailStore, inbox: int) -> None:
    sub = store.subscribe(ACCOUNT)
    for n in range(3):
        await store.append(ACCOUNT, inbox, message(n))
    seen: list[int] = []
    async for change in iter_changes(sub):
        seen.extend(change.uids)
        if len(seen) == 3:
            break
    assert seen == [1, 2, 3]
    sub.close()


async def test_another_stores_commits_reach_subscribers(
    harness: StoreHarness, store: MailStore, inbox: int
) -> None:
    """Another process writing the same data (the CLI, another worker): its appends, flag
    changes and expunges reach this store's subscribers within about a second, as changes not
    itemised (empty ``uids``: resync) or itemised."""
    sub = store.subscribe(ACCOUNT)
    await asyncio.sleep(0.1)  # let the store take its baseline
    other = await harness.another()
    try:
        res = await other.append(ACCOUNT, inbox, message(1))
        new = await next_change(sub, within=2)
        assert (new.account, new.mailbox_id, new.kind) == (ACCOUNT, inbox, ChangeKind.NEW)
        assert new.uids in ((), (res.uid,))
        assert new.modseq == res.modseq

        upd = await other.store_flags(
            ACCOUNT, inbox, [(res.uid, res.uid)], frozenset({"\\Deleted"}), FlagMode.ADD
        )
        flags = await next_change(sub, within=2)
        assert (flags.mailbox_id, flags.kind) == (inbox, ChangeKind.FLAGS)
        assert flags.modseq == upd.updated[0].modseq

        await other.expunge(ACCOUNT, inbox)
        gone = await next_change(sub, within=2)
        assert (gone.mailbox_id, gone.kind) == (inbox, ChangeKind.EXPUNGE)
        assert gone.modseq == (await store.status(ACCOUNT, inbox)).highestmodseq
        assert await store.expunged_since(ACCOUNT, inbox, new.modseq) == [res.uid]

        await other.create_mailbox(ACCOUNT, "Elsewhere")
        boxes = await next_change(sub, within=2)
        assert boxes.kind is ChangeKind.MAILBOXES
    finally:
        await other.close()
    assert await drain(sub, quiet=0.8) == []
    sub.close()


async def test_own_changes_are_published_once(store: MailStore, inbox: int) -> None:
    sub = store.subscribe(ACCOUNT)
    await asyncio.sleep(0.1)
    res = await store.append(ACCOUNT, inbox, message(1))
    await store.store_flags(ACCOUNT, inbox, [(1, 1)], frozenset({"\\Seen"}), FlagMode.ADD)
    await store.create_mailbox(ACCOUNT, "Mine")
    changes = await drain(sub, quiet=1.0)  # several poll intervals
    assert [(c.kind, c.uids) for c in changes] == [
        (ChangeKind.NEW, (res.uid,)),
        (ChangeKind.FLAGS, (res.uid,)),
        (ChangeKind.MAILBOXES, ()),
    ]
    sub.close()


async def test_reads_see_writes_that_returned(store: MailStore, inbox: int) -> None:
    """Read-your-writes, with writes and reads in flight together."""

    async def write_then_read(n: int) -> None:
        res = await store.append(ACCOUNT, inbox, message(n))
        assert [m.uid for m in await store.fetch(ACCOUNT, inbox, [(res.uid, res.uid)])] == [res.uid]
        assert (await store.status(ACCOUNT, inbox)).uidnext > res.uid
        assert res.uid in await store.read_headers(ACCOUNT, inbox, [res.uid])

    await asyncio.gather(*(write_then_read(n) for n in range(30)))
    assert (await store.status(ACCOUNT, inbox)).messages == 30
