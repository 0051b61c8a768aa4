"""Per-account isolation: another account's mailbox_id is the same as a missing one."""

from __future__ import annotations

import pytest

from posthorn.store.base import FlagMode, MailStore, NoSuchMailbox

from .helpers import ACCOUNT, OTHER, mailbox_id, message


async def test_every_operation_refuses_a_foreign_mailbox_id(store: MailStore, inbox: int) -> None:
    await store.append(ACCOUNT, inbox, message(1), flags=frozenset({"\\Deleted"}))
    await store.ensure_account(OTHER)
    theirs = await mailbox_id(store, "INBOX", OTHER)
    everything = [(1, 2**32 - 1)]
    attempts = [
        store.status(OTHER, inbox),
        store.append(OTHER, inbox, message(2)),
        store.fetch(OTHER, inbox),
        store.read(OTHER, inbox, 1),
        store.read_headers(OTHER, inbox, [1]),
        store.store_flags(OTHER, inbox, everything, frozenset({"x"}), FlagMode.ADD),
        store.expunge(OTHER, inbox),
        store.expunged_since(OTHER, inbox, 0),
        store.copy(OTHER, inbox, everything, theirs),
        store.move(OTHER, inbox, everything, theirs),
        store.copy(OTHER, theirs, everything, inbox),
    ]
    for attempt in attempts:
        with pytest.raises(NoSuchMailbox):
            await attempt
    # Untouched: the message, its flags, and the other account's mailbox.
    (meta,) = await store.fetch(ACCOUNT, inbox)
    assert meta.flags == frozenset({"\\Deleted"})
    assert (await store.status(OTHER, theirs)).messages == 0


async def test_mailbox_names_are_per_account(store: MailStore, inbox: int) -> None:
    await store.create_mailbox(ACCOUNT, "Private")
    with pytest.raises(NoSuchMailbox):
        await store.get_mailbox(OTHER, "Private")
    with pytest.raises(NoSuchMailbox):
        await store.delete_mailbox(OTHER, "Private")
    with pytest.raises(NoSuchMailbox):
        await store.rename_mailbox(OTHER, "Private", "Mine")
    await store.ensure_account(OTHER)
    await store.create_mailbox(OTHER, "Private")  # the same name, another account
    assert (await store.get_mailbox(OTHER, "Private")).id != (
        await store.get_mailbox(ACCOUNT, "Private")
    ).id
