"""Accounts: provisioning, deletion, quota usage (MailStore "accounts" section)."""

from __future__ import annotations

from posthorn.store.base import DEFAULT_MAILBOXES, Delivery, MailStore, QuotaUsage

from .helpers import ACCOUNT, OTHER, message


async def test_ensure_account_creates_default_mailboxes(store: MailStore) -> None:
    await store.ensure_account(ACCOUNT)
    boxes = await store.list_mailboxes(ACCOUNT)
    assert {(b.name, b.special_use) for b in boxes} == set(DEFAULT_MAILBOXES)
    assert boxes[0].name == "INBOX"
    # RFC 6154 special-use attributes are on the right mailboxes.
    assert (await store.get_mailbox(ACCOUNT, "Sent")).special_use == "\\Sent"
    assert len({b.uidvalidity for b in boxes}) == len(boxes)


async def test_ensure_account_is_idempotent(store: MailStore) -> None:
    await store.ensure_account(ACCOUNT)
    first = await store.list_mailboxes(ACCOUNT)
    await store.ensure_account(ACCOUNT)
    assert await store.list_mailboxes(ACCOUNT) == first


async def test_ensure_account_does_not_recreate_deleted_defaults(store: MailStore) -> None:
    await store.ensure_account(ACCOUNT)
    await store.delete_mailbox(ACCOUNT, "Junk")
    await store.ensure_account(ACCOUNT)
    assert "Junk" not in {b.name for b in await store.list_mailboxes(ACCOUNT)}


async def test_unknown_account_is_empty(store: MailStore) -> None:
    assert await store.list_mailboxes("nobody@example.org") == []
    assert await store.quota_usage("nobody@example.org") == QuotaUsage(0, 0)
    assert await store.list_subscriptions("nobody@example.org") == []


async def test_quota_usage_counts_every_copy(store: MailStore, inbox: int) -> None:
    data = message(1)
    await store.append(ACCOUNT, inbox, data)
    trash = (await store.get_mailbox(ACCOUNT, "Trash")).id
    await store.deliver(data, [Delivery(ACCOUNT, trash, prefix=b"X-A: 1\r\n")])
    usage = await store.quota_usage(ACCOUNT)
    assert usage == QuotaUsage(2 * len(data) + len(b"X-A: 1\r\n"), 2)
    await store.copy(ACCOUNT, inbox, [(1, 1)], trash)
    assert await store.quota_usage(ACCOUNT) == QuotaUsage(usage.bytes + len(data), 3)


async def test_delete_account_removes_everything_and_is_idempotent(
    store: MailStore, inbox: int
) -> None:
    await store.ensure_account(OTHER)
    other_inbox = (await store.get_mailbox(OTHER, "INBOX")).id
    await store.deliver(message(1), [Delivery(ACCOUNT, inbox), Delivery(OTHER, other_inbox)])
    await store.create_mailbox(ACCOUNT, "Projects/2026")
    await store.set_subscribed(ACCOUNT, "Ghost", True)
    await store.delete_account(ACCOUNT)
    assert await store.list_mailboxes(ACCOUNT) == []
    assert await store.list_subscriptions(ACCOUNT) == []
    assert await store.quota_usage(ACCOUNT) == QuotaUsage(0, 0)
    await store.delete_account(ACCOUNT)
    # The other account's copy of the shared message is untouched.
    assert await store.read(OTHER, other_inbox, 1) == message(1)
    # A deleted account can be provisioned again from scratch.
    await store.ensure_account(ACCOUNT)
    fresh = await store.get_mailbox(ACCOUNT, "INBOX")
    assert fresh.id != inbox
    assert (await store.status(ACCOUNT, fresh.id)).messages == 0
