"""Shared values and small helpers of the store conformance suite (protocol-only)."""

from __future__ import annotations

import asyncio

from posthorn.store.base import Change, ChangeSubscription, MailStore

ACCOUNT = "alice@example.org"
OTHER = "bob@example.org"


def message(n: int = 1, body_size: int = 0, subject: str | None = None) -> bytes:
    """A small well-formed RFC 5322 message; ``body_size`` pads the body to about that size."""
    subject = subject if subject is not None else f"message {n}"
    head = (
        f"From: Carol <carol@example.net>\r\n"
        f"To: {ACCOUNT}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{n}@example.net>\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
        f"\r\n"
    ).encode()
    body = f"Hello {n}.\r\n".encode()
    if body_size > len(body):
        line = b"x" * 70 + b"\r\n"
        body += line * ((body_size - len(body)) // len(line) + 1)
    return head + body


async def mailbox_id(store: MailStore, name: str, account: str = ACCOUNT) -> int:
    return (await store.get_mailbox(account, name)).id


async def next_change(sub: ChangeSubscription, within: float = 5.0) -> Change:
    return await asyncio.wait_for(sub.get(), within)


async def drain(sub: ChangeSubscription, quiet: float = 0.05) -> list[Change]:
    """Every change available now (waiting ``quiet`` seconds for stragglers)."""
    changes: list[Change] = []
    while True:
        try:
            changes.append(await asyncio.wait_for(sub.get(), quiet))
        except TimeoutError:
            return changes
