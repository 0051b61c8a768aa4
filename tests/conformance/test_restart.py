"""Durability across a restart: data, UIDVALIDITY, and UIDs/MODSEQs that keep ascending."""

from __future__ import annotations

import asyncio

from posthorn.store.base import FlagMode

from .conftest import StoreHarness
from .helpers import ACCOUNT, message


async def test_restart_keeps_everything_and_uids_continue(harness: StoreHarness) -> None:
    store = harness.store
    await store.ensure_account(ACCOUNT)
    inbox = await store.get_mailbox(ACCOUNT, "INBOX")
    first = await asyncio.gather(*(store.append(ACCOUNT, inbox.id, message(n)) for n in range(50)))
    await store.store_flags(ACCOUNT, inbox.id, [(1, 3)], frozenset({"\\Seen"}), FlagMode.ADD)
    await store.create_mailbox(ACCOUNT, "Kept/Child")
    await store.set_subscribed(ACCOUNT, "Ghost", True)
    before = await store.status(ACCOUNT, inbox.id)
    usage = await store.quota_usage(ACCOUNT)

    store = await harness.restart()
    assert await store.get_mailbox(ACCOUNT, "INBOX") == inbox
    assert await store.status(ACCOUNT, inbox.id) == before
    assert await store.quota_usage(ACCOUNT) == usage
    assert "Kept/Child" in {b.name for b in await store.list_mailboxes(ACCOUNT)}
    assert "Ghost" in await store.list_subscriptions(ACCOUNT)
    metas = await store.fetch(ACCOUNT, inbox.id, [(1, 3)])
    assert all("\\Seen" in m.flags for m in metas)
    assert await store.read(ACCOUNT, inbox.id, first[9].uid) == message(9)

    second = await asyncio.gather(
        *(store.append(ACCOUNT, inbox.id, message(n)) for n in range(50, 100))
    )
    assert min(r.uid for r in second) > max(r.uid for r in first)
    assert min(r.modseq for r in second) > before.highestmodseq
    assert {r.uidvalidity for r in second} == {inbox.uidvalidity}
    uids = [m.uid for m in await store.fetch(ACCOUNT, inbox.id)]
    assert uids == sorted(set(uids)) and len(uids) == 100


async def test_uidvalidity_after_restart_is_still_new(harness: StoreHarness) -> None:
    store = harness.store
    await store.ensure_account(ACCOUNT)
    seen = {b.uidvalidity for b in await store.list_mailboxes(ACCOUNT)}
    store = await harness.restart()
    box = await store.create_mailbox(ACCOUNT, "After")
    assert box.uidvalidity > max(seen)
