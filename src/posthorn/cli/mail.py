"""`posthorn mail`: a doveadm-style view of the store, for operators and for tests.

Reads go through the `MailStore` protocol like any other reader; the account must exist in the
directory, so a typo is an error and not an empty listing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.header import decode_header, make_header
from pathlib import Path
from typing import TypeVar

import click

from posthorn.cli.admin import directory
from posthorn.cli.common import fail, with_config
from posthorn.config import Config
from posthorn.mail.info import EnvelopeAddress
from posthorn.store.base import MailStore, MessageMeta, StoreError
from posthorn.store.sqlite import SQLiteMailStore

T = TypeVar("T")

MAX_APPEND = 256 * 1024 * 1024


def account_key(config: Config, address: str) -> str:
    with directory(config) as db:
        return db.get_account(address).address


class StorageFailed(Exception):
    """The store could not write (disk full, I/O error). Not an OSError on purpose, so code
    that handles unreadable *input* files never mistakes it for one of those."""


def with_store(config: Config, job: Callable[[MailStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = SQLiteMailStore(config.server.data_dir)
        await store.open()
        try:
            return await job(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreError as e:
        fail(str(e) or type(e).__name__)
    except (OSError, sqlite3.Error, StorageFailed) as e:
        # A full or failing disk: what was stored before stays stored (each append is
        # durable on its own); say so in one line instead of a traceback.
        fail(f"storage error, stopped: {e}", code=1)


def display(value: str | None) -> str:
    """An RFC 2047-decoded header value on one line, for people (never for the wire)."""
    if not value:
        return ""
    try:
        text = str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        text = value
    return " ".join(text.encode("utf-8", "replace").decode("utf-8").split())


def display_address(addrs: tuple[EnvelopeAddress, ...]) -> str:
    for a in addrs:
        if a.mailbox is not None and a.host is not None:
            return display(f"{a.mailbox}@{a.host}")
    return ""


def message_line(meta: MessageMeta) -> str:
    flags = " ".join(sorted(meta.flags)) or "-"
    date = meta.internal_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sender = subject = ""
    if meta.info is not None:
        sender = display_address(meta.info.envelope.from_)
        subject = display(meta.info.envelope.subject)
    return f"{meta.uid}\t{flags}\t{meta.size}\t{date}\t{sender}\t{subject}"


@click.group("mail")
def mail_group() -> None:
    """Look into accounts' mailboxes."""


@mail_group.command("ls")
@click.argument("address")
@click.argument("mailbox", default="INBOX")
@with_config
def mail_ls(config: Config, address: str, mailbox: str) -> None:
    """One line per message: UID, flags, size, date, from, subject."""
    key = account_key(config, address)

    async def job(store: MailStore) -> list[MessageMeta]:
        box = await store.get_mailbox(key, mailbox)
        return await store.fetch(key, box.id, with_info=True)

    for meta in with_store(config, job):
        click.echo(message_line(meta))


@mail_group.command("cat")
@click.argument("address")
@click.argument("mailbox")
@click.argument("uid", type=click.IntRange(min=1))
@with_config
def mail_cat(config: Config, address: str, mailbox: str, uid: int) -> None:
    """The raw message, byte for byte, on standard output."""
    key = account_key(config, address)
    chunk = 1 << 20

    async def job(store: MailStore) -> None:
        box = await store.get_mailbox(key, mailbox)
        offset = 0
        while True:
            data = await store.read(key, box.id, uid, offset, chunk)
            sys.stdout.buffer.write(data)
            offset += len(data)
            if len(data) < chunk:
                break
        sys.stdout.buffer.flush()

    with_store(config, job)


@mail_group.command("append")
@click.argument("address")
@click.argument("mailbox")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@with_config
def mail_append(config: Config, address: str, mailbox: str, file: str | None) -> None:
    """Store a message from FILE (or standard input) into MAILBOX."""
    with directory(config) as db:
        account = db.get_account(address)
    source: bytes | Path = Path(file) if file else sys.stdin.buffer.read(MAX_APPEND + 1)
    if isinstance(source, bytes) and len(source) > MAX_APPEND:
        fail(f"message on standard input is larger than {MAX_APPEND} bytes")

    async def job(store: MailStore) -> int:
        await store.ensure_account(account.address)
        box = await store.get_mailbox(account.address, mailbox)
        result = await store.append(
            account.address,
            box.id,
            source,
            internal_date=datetime.now(UTC),
            quota=account.quota_bytes,
        )
        return result.uid

    uid = with_store(config, job)
    click.echo(f"appended as UID {uid} in {mailbox}")


@mail_group.command("mailboxes")
@click.argument("address")
@with_config
def mail_mailboxes(config: Config, address: str) -> None:
    """Each mailbox with its special use, message count, unseen count and size."""
    key = account_key(config, address)

    async def job(store: MailStore) -> list[str]:
        lines = []
        for box in await store.list_mailboxes(key):
            st = await store.status(key, box.id)
            use = box.special_use or "-"
            lines.append(f"{box.name}\t{use}\t{st.messages}\t{st.unseen}\t{st.size}")
        return lines

    for line in with_store(config, job):
        click.echo(line)
