"""`posthorn import|export maildir|mbox`: moving mail in from other servers and back out.

The formats live in `posthorn.mail.maildir` and `posthorn.mail.mbox`; this module walks the
files, talks to the store in its own process (like `posthorn mail append`, so the server may
run) and keeps the tally. Decisions, also in the README:
- Files on disk have LF line ends, the store CRLF (what SMTP delivers): LF → CRLF on import,
  back on export. Flags and internal dates travel both ways (to the second, zone UTC).
- Importing ignores the account's quota (as Dovecot's dsync does by default): moving a mailbox
  in must not stop half-way; the usage counts afterwards.
- A file or message that cannot be imported is reported on stderr with its path and skipped;
  the rest goes on. Exit 0 when everything went, 1 when something was skipped, 2 for bad input
  (unknown account, missing or unsuitable PATH, bad --mailbox) with nothing done.
- Messages of one mailbox are appended one after another, so UIDs follow the source's order;
  different mailboxes are imported side by side.
- ``export mbox`` writes one file per mailbox under PATH, children in Thunderbird's
  ``NAME.sbd/`` directories (``Work/2026`` → ``Work.sbd/2026``), so a mailbox can have both
  messages and children; ``import mbox`` of a directory reads that layout back (and plain
  nested directories, as mutt's ~/Mail).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import click

from posthorn.cli.admin import directory
from posthorn.cli.common import EXIT_FAILED, data_dir_exists, fail, with_config
from posthorn.cli.mail import StorageFailed, with_store
from posthorn.config import Config
from posthorn.fsync import fsync_dir
from posthorn.mail import maildir, mbox
from posthorn.store.base import MailboxExists, MailStore, NoSuchMailbox, NoSuchMessage, StoreError

INBOX = maildir.INBOX
PARALLEL_MAILBOXES = 4
SBD = ".sbd"  # Thunderbird: the directory holding a mailbox's children
DELIMITER = "/"

Advance = Callable[[int], None]


@dataclass
class Tally:
    done: int = 0
    skipped: int = 0
    mailboxes: set[str] = field(default_factory=set)

    warnings: int = 0

    def skip(self, where: Path | str, reason: str) -> None:
        self.skipped += 1
        click.echo(f"posthorn: {where}: {reason}", err=True)

    def warn(self, where: Path | str, reason: str) -> None:
        """Something was lost on the way, though the message went (exit code 1 too)."""
        self.warnings += 1
        click.echo(f"posthorn: {where}: {reason}", err=True)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.skipped or self.warnings else 0


@contextmanager
def progress(length: int, label: str) -> Iterator[Advance]:
    """A progress bar on a terminal (stderr), nothing otherwise."""
    if length <= 0 or not sys.stderr.isatty():
        yield lambda n: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


def bad_name(name: str) -> str | None:
    """Why ``name`` cannot be a mailbox (the IMAP server's rules), or None."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "mailbox name is not valid UTF-8"
    levels = name.split(DELIMITER)
    if any(level in ("", ".", "..") for level in levels):
        return f"mailbox name {name!r} has an empty, '.' or '..' level"
    if any(ord(c) < 0x20 or c == "\x7f" for c in name) or "*" in name or "%" in name:
        return f"mailbox name {name!r} has control characters, '*' or '%'"
    return None


def under(prefix: str | None, name: str) -> str:
    """``name`` of the source tree placed under --mailbox ``prefix`` (its INBOX is prefix)."""
    if prefix is None:
        return name
    levels = name.split(DELIMITER)
    if levels[0].upper() == INBOX:
        levels = levels[1:]
    return DELIMITER.join([prefix, *levels])


def import_account(config: Config, address: str, mailbox: str | None) -> str:
    """The account's canonical address, after checking it and --mailbox (exit 2 if bad)."""
    data_dir_exists(config)
    with directory(config) as db:
        account = db.get_account(address).address
    if mailbox is not None and (why := bad_name(mailbox)):
        fail(f"--mailbox: {why}")
    return account


def finish(tally: Tally, summary: str) -> None:
    click.echo(summary)
    raise SystemExit(tally.exit_code)


async def open_mailbox(store: MailStore, account: str, name: str) -> int:
    """The mailbox's id, created (with parents) when missing."""
    try:
        return (await store.get_mailbox(account, name)).id
    except NoSuchMailbox:
        pass
    try:
        return (await store.create_mailbox(account, name)).id
    except MailboxExists:  # made meanwhile by someone else (an IMAP client)
        return (await store.get_mailbox(account, name)).id


async def append(
    store: MailStore,
    account: str,
    box: int,
    data: bytes,
    flags: frozenset[str],
    date: datetime | None,
    where: str,
    tally: Tally,
) -> None:
    try:
        await store.append(account, box, data, flags=flags, internal_date=date, quota=None)
    except (StoreError, ValueError) as e:
        tally.skip(where, f"cannot store: {e}")
        return
    except (OSError, sqlite3.Error) as e:
        raise StorageFailed(e) from e
    tally.done += 1


# --- import maildir ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderJob:
    mailbox: str
    folder: maildir.Folder
    files: list[Path]


async def import_folder(
    store: MailStore, account: str, job: FolderJob, tally: Tally, advance: Advance
) -> None:
    box = await open_mailbox(store, account, job.mailbox)
    tally.mailboxes.add(job.mailbox)
    keywords = maildir.read_keywords(job.folder.path)
    for path in job.files:
        advance(1)
        try:
            msg = maildir.describe(path, keywords)
            raw = await asyncio.to_thread(path.read_bytes)
        except (OSError, maildir.MaildirError) as e:
            tally.skip(path, getattr(e, "strerror", None) or str(e))
            continue
        if not mbox.looks_like_message(raw):
            tally.skip(path, "not a message (it does not start with a header field)")
            continue
        data = mbox.to_crlf(raw)
        await append(store, account, box, data, msg.flags, msg.internal_date, str(path), tally)


def maildir_jobs(root: Path, prefix: str | None, tally: Tally) -> list[FolderJob]:
    folders, problems = maildir.list_folders(root)
    for path, reason in problems:
        tally.skip(path, f"folder skipped: {reason}")
    jobs = []
    for folder in folders:
        name = under(prefix, folder.mailbox)
        if why := bad_name(name):
            tally.skip(folder.path, f"folder skipped: {why}")
            continue
        try:
            files = maildir.list_messages(folder.path)
        except OSError as e:
            tally.skip(folder.path, f"folder skipped: {e.strerror or e}")
            continue
        jobs.append(FolderJob(name, folder, files))
    return jobs


async def run_parallel(jobs: Iterable[Coroutine[None, None, None]]) -> None:
    """Mailboxes side by side (each one's messages in order)."""
    sem = asyncio.Semaphore(PARALLEL_MAILBOXES)

    async def one(job: Coroutine[None, None, None]) -> None:
        async with sem:
            await job

    await asyncio.gather(*(one(j) for j in jobs))


# --- import mbox ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MboxJob:
    mailbox: str
    path: Path
    size: int


def _looks_like_mbox(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(5)
    return head in (b"", b"From ")


def mbox_jobs(root: Path, prefix: str | None, tally: Tally) -> list[MboxJob]:
    """One job per file: ``root`` itself, or each file under the directory ``root`` (a
    ``NAME.sbd`` or plain directory holds NAME's children). Hidden files and Thunderbird's
    ``.msf`` indexes are ignored unless they look like an mbox; other files that do not are
    reported."""
    if root.is_file():
        return [MboxJob(prefix or INBOX, root, root.stat().st_size)]
    jobs = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).parts
        levels = [p.removesuffix(SBD) if p.endswith(SBD) else p for p in rel]
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            quiet = filename.startswith(".") or filename.endswith(".msf")
            try:
                if not _looks_like_mbox(path):
                    if not quiet:
                        tally.skip(path, "not an mbox (it does not start with 'From ')")
                    continue
                size = path.stat().st_size
            except OSError as e:
                tally.skip(path, e.strerror or str(e))
                continue
            name = under(prefix, DELIMITER.join([*levels, filename]))
            if why := bad_name(name):
                tally.skip(path, why)
                continue
            jobs.append(MboxJob(name, path, size))
    return jobs


async def import_mbox_file(
    store: MailStore, account: str, job: MboxJob, tally: Tally, advance: Advance
) -> None:
    box = await open_mailbox(store, account, job.mailbox)
    tally.mailboxes.add(job.mailbox)
    seen = 0
    try:
        for chunk in mbox.split(mbox.read_blocks(job.path)):
            advance(chunk.end - seen)
            seen = chunk.end
            where = f"{job.path}: message at byte {chunk.offset}"
            try:
                msg = mbox.parse_chunk(chunk)
            except mbox.MboxError as e:
                tally.skip(where, str(e))
                continue
            await append(store, account, box, msg.data, msg.flags, msg.internal_date, where, tally)
    except OSError as e:
        tally.skip(job.path, f"reading stopped: {e.strerror or e}")
    advance(job.size - seen)


# --- commands ---------------------------------------------------------------------------------


@click.group("import")
def import_group() -> None:
    """Bring mail in from a Maildir tree or mbox files."""


@import_group.command("maildir")
@click.argument("address")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--mailbox", default=None, help="Put the tree's INBOX here, folders below it.")
@with_config
def import_maildir(config: Config, address: str, path: Path, mailbox: str | None) -> None:
    """Import the Maildir (Dovecot's Maildir++ .Sub.Folder layout) at PATH into ADDRESS."""
    account = import_account(config, address, mailbox)
    if not path.is_dir():
        fail(f"{path}: no such directory")
    if not maildir.list_folders(path)[0]:
        fail(f"{path}: not a Maildir (no cur/ or new/, and no .Folder with them)")
    tally = Tally()
    jobs = maildir_jobs(path, mailbox, tally)

    async def job(store: MailStore) -> None:
        await store.ensure_account(account)
        with progress(sum(len(j.files) for j in jobs), "importing") as advance:
            await run_parallel(import_folder(store, account, j, tally, advance) for j in jobs)

    with_store(config, job)
    finish(tally, import_summary(tally))


@import_group.command("mbox")
@click.argument("address")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--mailbox", default=None, help="Target mailbox (default INBOX).")
@with_config
def import_mbox(config: Config, address: str, path: Path, mailbox: str | None) -> None:
    """Import the mbox file at PATH (or a directory of them, one mailbox each) into ADDRESS."""
    account = import_account(config, address, mailbox)
    if not path.exists():
        fail(f"{path}: no such file or directory")
    tally = Tally()
    if path.is_file() and not _readable_mbox(path):
        fail(f"{path}: not an mbox (it does not start with 'From ')")
    jobs = mbox_jobs(path, mailbox, tally)

    async def job(store: MailStore) -> None:
        await store.ensure_account(account)
        with progress(sum(j.size for j in jobs), "importing") as advance:
            await run_parallel(import_mbox_file(store, account, j, tally, advance) for j in jobs)

    with_store(config, job)
    finish(tally, import_summary(tally))


def _readable_mbox(path: Path) -> bool:
    try:
        return _looks_like_mbox(path)
    except OSError as e:
        fail(f"{path}: {e.strerror or e}")


def import_summary(tally: Tally) -> str:
    return (
        f"imported {tally.done} messages into {len(tally.mailboxes)} mailboxes,"
        f" skipped {tally.skipped}"
    )


# --- export -----------------------------------------------------------------------------------


class MaildirSink:
    """Mailboxes into one Maildir++ tree (INBOX the root, others ``.A.B``)."""

    def __init__(self, root: Path, tally: Tally) -> None:
        self._writer = maildir.MaildirWriter(root)
        self._tally = tally
        self._folder: Path | None = None

    def mailbox(self, name: str) -> bool:
        self._folder = self._writer.folder(name)
        return True

    def message(self, where: str, data: bytes, flags: frozenset[str], date: datetime) -> None:
        assert self._folder is not None
        _, dropped = self._writer.write(self._folder, mbox.to_lf(data), flags, date)
        if dropped:
            kept = maildir.MAX_KEYWORDS
            self._tally.warn(where, f"keywords {' '.join(dropped)} dropped (a folder keeps {kept})")

    def close(self) -> None:
        self._writer.finish()


class MboxSink:
    """One mboxrd file per mailbox: ``Work/2026`` → ``Work.sbd/2026`` under the root."""

    def __init__(self, root: Path, tally: Tally) -> None:
        self._root = root
        self._tally = tally
        self._file: BinaryIO | None = None
        self._dirs: set[Path] = {root}

    def mailbox(self, name: str) -> bool:
        self._close_file()
        levels = name.split(DELIMITER)
        path = self._root.joinpath(*[level + SBD for level in levels[:-1]], levels[-1])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("xb")
        except OSError as e:
            self._tally.skip(path, f"mailbox {name} skipped: {e.strerror or e}")
            return False
        self._dirs.add(path.parent)
        return True

    def message(self, where: str, data: bytes, flags: frozenset[str], date: datetime) -> None:
        assert self._file is not None
        self._file.write(mbox.format_message(data, flags, date))

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def close(self) -> None:
        self._close_file()
        for d in sorted(self._dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)


Sink = MaildirSink | MboxSink


def export_target(path: Path) -> None:
    """PATH must be new or an empty directory: an export never mixes with other files."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        fail(f"{path}: exists and is not an empty directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"{path}: cannot create: {e.strerror or e}")


async def export_all(store: MailStore, account: str, sink: Sink, tally: Tally) -> None:
    boxes = await store.list_mailboxes(account)
    metas = {box.id: await store.fetch(account, box.id) for box in boxes}
    with progress(sum(len(m) for m in metas.values()), "exporting") as advance:
        for box in boxes:
            if not sink.mailbox(box.name):
                advance(len(metas[box.id]))
                continue
            tally.mailboxes.add(box.name)
            for meta in metas[box.id]:
                advance(1)
                where = f"{box.name} UID {meta.uid}"
                try:
                    data = await store.read(account, box.id, meta.uid)
                except NoSuchMessage:
                    tally.skip(where, "expunged while exporting")
                    continue
                sink.message(where, data, meta.flags, meta.internal_date)
                tally.done += 1
    sink.close()


def run_export(config: Config, address: str, path: Path, make: Callable[[Tally], Sink]) -> None:
    data_dir_exists(config)
    with directory(config) as db:
        account = db.get_account(address).address
    export_target(path)
    tally = Tally()
    sink = make(tally)
    with_store(config, lambda store: export_all(store, account, sink, tally))
    finish(
        tally,
        f"exported {tally.done} messages from {len(tally.mailboxes)} mailboxes,"
        f" skipped {tally.skipped}",
    )


@click.group("export")
def export_group() -> None:
    """Write an account's mail out as a Maildir tree or mbox files."""


@export_group.command("maildir")
@click.argument("address")
@click.argument("path", type=click.Path(path_type=Path))
@with_config
def export_maildir(config: Config, address: str, path: Path) -> None:
    """Every mailbox of ADDRESS into a new Maildir++ tree at PATH (INBOX is the root)."""
    run_export(config, address, path, lambda tally: MaildirSink(path, tally))


@export_group.command("mbox")
@click.argument("address")
@click.argument("path", type=click.Path(path_type=Path))
@with_config
def export_mbox(config: Config, address: str, path: Path) -> None:
    """Every mailbox of ADDRESS as an mbox file under the new directory PATH."""
    run_export(config, address, path, lambda tally: MboxSink(path, tally))
