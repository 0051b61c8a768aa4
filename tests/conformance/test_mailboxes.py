"""Mailboxes: create, get, list, rename, delete, subscriptions, STATUS (RFC 9051 §6.3)."""

from __future__ import annotations

import pytest

from posthorn.store.base import (
    FlagMode,
    MailboxExists,
    MailboxNotAllowed,
    MailStore,
    NoSuchMailbox,
)

from .helpers import ACCOUNT, OTHER, mailbox_id, message


async def names(store: MailStore, account: str = ACCOUNT) -> list[str]:
    return [b.name for b in await store.list_mailboxes(account)]


async def test_create_and_get(store: MailStore, inbox: int) -> None:
    box = await store.create_mailbox(ACCOUNT, "Projects", special_use="\\Flagged")
    assert box.name == "Projects"
    assert box.special_use == "\\Flagged"
    assert await store.get_mailbox(ACCOUNT, "Projects") == box
    with pytest.raises(MailboxExists):
        await store.create_mailbox(ACCOUNT, "Projects")
    with pytest.raises(NoSuchMailbox):
        await store.get_mailbox(ACCOUNT, "projects")  # names other than INBOX are exact


async def test_create_makes_parents(store: MailStore, inbox: int) -> None:
    # RFC 9051 §6.3.4: superior hierarchical names are created as needed.
    await store.create_mailbox(ACCOUNT, "a/b/c")
    assert {"a", "a/b", "a/b/c"} <= set(await names(store))
    await store.create_mailbox(ACCOUNT, "a/x")
    with pytest.raises(MailboxExists):
        await store.create_mailbox(ACCOUNT, "a/b")


async def test_create_trailing_delimiter_and_bad_names(store: MailStore, inbox: int) -> None:
    await store.create_mailbox(ACCOUNT, "Lists/")
    assert "Lists" in await names(store)
    for bad in ("", "a//b", "/"):
        with pytest.raises(MailboxNotAllowed):
            await store.create_mailbox(ACCOUNT, bad)


async def test_inbox_is_case_insensitive(store: MailStore, inbox: int) -> None:
    # RFC 9051 §5.1: INBOX in any case is INBOX.
    assert (await store.get_mailbox(ACCOUNT, "inbox")).id == inbox
    assert (await store.get_mailbox(ACCOUNT, "InBoX")).name == "INBOX"
    with pytest.raises(MailboxExists):
        await store.create_mailbox(ACCOUNT, "Inbox")


async def test_list_is_sorted_with_inbox_first(store: MailStore, inbox: int) -> None:
    await store.create_mailbox(ACCOUNT, "AAA")
    await store.create_mailbox(ACCOUNT, "INBOX/Sub")
    listed = await names(store)
    assert listed[0] == "INBOX"
    assert listed[1:] == sorted(listed[1:])


async def test_uidvalidity_is_new_for_a_recreated_name(store: MailStore, inbox: int) -> None:
    # RFC 9051 §2.3.1.1: a new incarnation of a name never repeats a UIDVALIDITY.
    first = await store.create_mailbox(ACCOUNT, "Again")
    await store.delete_mailbox(ACCOUNT, "Again")
    second = await store.create_mailbox(ACCOUNT, "Again")
    assert second.uidvalidity > first.uidvalidity
    assert second.id != first.id
    await store.rename_mailbox(ACCOUNT, "Again", "Elsewhere")
    third = await store.create_mailbox(ACCOUNT, "Again")
    assert third.uidvalidity not in (first.uidvalidity, second.uidvalidity)


async def test_rename_moves_children_and_keeps_identity(store: MailStore, inbox: int) -> None:
    box = await store.create_mailbox(ACCOUNT, "Work/2025/Q1")
    work = await store.get_mailbox(ACCOUNT, "Work")
    await store.append(ACCOUNT, box.id, message(1))
    await store.rename_mailbox(ACCOUNT, "Work", "Archive/Work")
    listed = await names(store)
    assert "Work" not in listed and "Work/2025" not in listed
    assert {"Archive/Work", "Archive/Work/2025", "Archive/Work/2025/Q1"} <= set(listed)
    moved = await store.get_mailbox(ACCOUNT, "Archive/Work/2025/Q1")
    assert (moved.id, moved.uidvalidity) == (box.id, box.uidvalidity)
    assert (await store.get_mailbox(ACCOUNT, "Archive/Work")).id == work.id
    assert await store.read(ACCOUNT, moved.id, 1) == message(1)


async def test_rename_creates_parents_of_the_new_name(store: MailStore, inbox: int) -> None:
    await store.create_mailbox(ACCOUNT, "Old")
    await store.rename_mailbox(ACCOUNT, "Old", "New/Deeper/Name")
    assert {"New", "New/Deeper", "New/Deeper/Name"} <= set(await names(store))


async def test_rename_errors(store: MailStore, inbox: int) -> None:
    await store.create_mailbox(ACCOUNT, "One")
    await store.create_mailbox(ACCOUNT, "Two")
    with pytest.raises(NoSuchMailbox):
        await store.rename_mailbox(ACCOUNT, "Missing", "Three")
    with pytest.raises(MailboxExists):
        await store.rename_mailbox(ACCOUNT, "One", "Two")
    with pytest.raises(MailboxExists):
        await store.rename_mailbox(ACCOUNT, "One", "inbox")
    with pytest.raises(MailboxNotAllowed):
        await store.rename_mailbox(ACCOUNT, "One", "One")
    with pytest.raises(MailboxNotAllowed):
        await store.rename_mailbox(ACCOUNT, "One", "One/Inside")


async def test_rename_refuses_when_a_child_target_exists(store: MailStore, inbox: int) -> None:
    await store.create_mailbox(ACCOUNT, "A/kid")
    await store.create_mailbox(ACCOUNT, "B/kid")
    await store.delete_mailbox(ACCOUNT, "B")  # B/kid stays, B goes
    with pytest.raises(MailboxExists):
        await store.rename_mailbox(ACCOUNT, "A", "B")
    assert {"A", "A/kid", "B/kid"} <= set(await names(store))


async def test_rename_inbox_moves_messages_and_leaves_it_empty(
    store: MailStore, inbox: int
) -> None:
    # RFC 9051 §6.3.6: INBOX stays (empty); its messages go to the new name; children stay.
    await store.create_mailbox(ACCOUNT, "INBOX/Child")
    for n in (1, 2):
        await store.append(ACCOUNT, inbox, message(n), flags=frozenset({"\\Seen"}))
    before = await store.status(ACCOUNT, inbox)
    await store.rename_mailbox(ACCOUNT, "inbox", "Old Inbox")
    after = await store.status(ACCOUNT, inbox)
    assert (await store.get_mailbox(ACCOUNT, "INBOX")).id == inbox
    assert after.messages == 0
    assert after.uidvalidity == before.uidvalidity
    assert after.uidnext >= before.uidnext  # UIDs are never reused in INBOX
    assert after.highestmodseq > before.highestmodseq
    assert sorted(await store.expunged_since(ACCOUNT, inbox, before.highestmodseq)) == [1, 2]
    old = await store.get_mailbox(ACCOUNT, "Old Inbox")
    assert old.id != inbox and old.uidvalidity != before.uidvalidity
    metas = await store.fetch(ACCOUNT, old.id)
    assert [m.flags for m in metas] == [frozenset({"\\Seen"})] * 2
    assert [await store.read(ACCOUNT, old.id, m.uid) for m in metas] == [message(1), message(2)]
    assert "INBOX/Child" in await names(store)
    # New mail still lands in INBOX, with a fresh UID.
    res = await store.append(ACCOUNT, inbox, message(3))
    assert res.uid >= before.uidnext


async def test_delete_mailbox(store: MailStore, inbox: int) -> None:
    await store.create_mailbox(ACCOUNT, "Parent/Child")
    parent = await mailbox_id(store, "Parent")
    await store.append(ACCOUNT, parent, message(1))
    await store.set_subscribed(ACCOUNT, "Parent", True)
    await store.delete_mailbox(ACCOUNT, "Parent")
    assert "Parent" not in await names(store)
    assert "Parent/Child" in await names(store)  # children stay (RFC 9051 §6.3.5)
    assert "Parent" in await store.list_subscriptions(ACCOUNT)  # subscriptions are names
    assert (await store.quota_usage(ACCOUNT)).messages == 0
    with pytest.raises(NoSuchMailbox):
        await store.status(ACCOUNT, parent)
    with pytest.raises(NoSuchMailbox):
        await store.delete_mailbox(ACCOUNT, "Parent")


async def test_delete_inbox_is_refused(store: MailStore, inbox: int) -> None:
    for name in ("INBOX", "inbox"):
        with pytest.raises(MailboxNotAllowed):
            await store.delete_mailbox(ACCOUNT, name)
    assert (await store.get_mailbox(ACCOUNT, "INBOX")).id == inbox


async def test_subscriptions_are_names(store: MailStore, inbox: int) -> None:
    # RFC 9051 §6.3.7: a name may be subscribed without existing.
    await store.set_subscribed(ACCOUNT, "Does/Not/Exist", True)
    await store.set_subscribed(ACCOUNT, "Does/Not/Exist", True)  # idempotent
    assert "Does/Not/Exist" in await store.list_subscriptions(ACCOUNT)
    assert "Does/Not/Exist" not in await names(store)
    box = await store.create_mailbox(ACCOUNT, "Does/Not/Exist")
    assert box.subscribed
    await store.set_subscribed(ACCOUNT, "Does/Not/Exist", False)
    await store.set_subscribed(ACCOUNT, "Never", False)  # unsubscribing a stranger is fine
    assert "Does/Not/Exist" not in await store.list_subscriptions(ACCOUNT)
    assert not (await store.get_mailbox(ACCOUNT, "Does/Not/Exist")).subscribed
    assert await store.list_subscriptions(OTHER) == []


async def test_subscription_follows_rename(store: MailStore, inbox: int) -> None:
    await store.create_mailbox(ACCOUNT, "Sub/Kid")
    await store.set_subscribed(ACCOUNT, "Sub/Kid", True)
    await store.rename_mailbox(ACCOUNT, "Sub", "Renamed")
    assert (await store.get_mailbox(ACCOUNT, "Renamed/Kid")).subscribed


async def test_status_counts(store: MailStore, inbox: int) -> None:
    empty = await store.status(ACCOUNT, inbox)
    assert (empty.messages, empty.unseen, empty.deleted, empty.size) == (0, 0, 0, 0)
    assert empty.uidnext >= 1 and empty.uidvalidity >= 1 and empty.highestmodseq >= 1
    sizes = []
    for n, flags in enumerate(({"\\Seen"}, set(), {"\\Deleted"}, {"\\Seen", "\\Deleted"})):
        data = message(n)
        sizes.append(len(data))
        await store.append(ACCOUNT, inbox, data, flags=frozenset(flags))
    st = await store.status(ACCOUNT, inbox)
    assert st.mailbox_id == inbox
    assert (st.messages, st.unseen, st.deleted, st.size) == (4, 2, 2, sum(sizes))
    assert st.uidnext == empty.uidnext + 4
    assert st.highestmodseq > empty.highestmodseq
    await store.store_flags(ACCOUNT, inbox, [(1, 10)], frozenset({"\\Seen"}), FlagMode.ADD)
    assert (await store.status(ACCOUNT, inbox)).unseen == 0


async def test_counters_follow_status(store: MailStore, inbox: int) -> None:
    before = await store.counters(ACCOUNT, inbox)
    await store.append(ACCOUNT, inbox, message(1))
    await store.store_flags(ACCOUNT, inbox, [(1, 10)], frozenset({"\\Seen"}), FlagMode.ADD)
    after = await store.counters(ACCOUNT, inbox)
    status = await store.status(ACCOUNT, inbox)
    assert (after.uidvalidity, after.uidnext, after.highestmodseq) == (
        status.uidvalidity,
        status.uidnext,
        status.highestmodseq,
    )
    assert after.uidnext == before.uidnext + 1 and after.highestmodseq > before.highestmodseq
    await store.ensure_account(OTHER)
    with pytest.raises(NoSuchMailbox):
        await store.counters(OTHER, inbox)
