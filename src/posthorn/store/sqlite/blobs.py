"""Message bytes as files: ``<data_dir>/blobs/<2 hex>/<32 hex>``, written once, never changed.

Owns the file side of the store: durable writes (`BlobFiles.stage`), byte-range reads,
deletion, and the sweep of orphans (files no database row knows). The database side (which
blob names exist, their reference counts) belongs to `posthorn.store.sqlite.messages`; the
sweep is driven by the store, which asks the database which candidate names are known.

Invariants:
- A blob file under its final name is complete and durable: bytes are written to
  ``<name>.tmp`` in the same directory, fsync'd, renamed, and the directory fsync'd; a hard-linked
  source is fsync'd and its directory fsync'd the same way. New fan-out directories are fsync'd
  into ``blobs/``.
- Files are written *before* the database row that references them commits, and deleted only
  *after* the commit that dropped the last reference. A crash in between leaves an orphan
  file, never a row without its file; the sweep (`remove_orphans`) removes orphans older than
  a grace period (younger ones may belong to another process's transaction still in flight).
- A source ``Path`` is never modified or deleted. It may be hard-linked rather than copied
  (same file system), so it must not be modified afterwards either (spool files never are).
- Everything here blocks: callers run it in a worker thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from posthorn.fsync import fsync_dir
from posthorn.mail.info import MessageInfo
from posthorn.store.base import MessageSource

TMP_SUFFIX = ".tmp"
_NAME_LEN = 32
_LINK_FALLBACK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP}


class BlobDamaged(OSError):
    """A blob file holds fewer bytes than its row records (truncated on disk). An OSError,
    so every reader that already treats an unreadable file as a storage error does here too."""


@dataclass(frozen=True, slots=True)
class StagedBlob:
    """A blob file made durable but not yet referenced by the database."""

    name: str
    size: int
    info_json: str
    header_size: int


def new_blob_name() -> str:
    return secrets.token_hex(_NAME_LEN // 2)


def is_blob_name(name: str) -> bool:
    return len(name) == _NAME_LEN and all(c in "0123456789abcdef" for c in name)


class BlobFiles:
    """The ``blobs/`` directory of one store."""

    def __init__(self, root: Path, *, link_sources: bool = True) -> None:
        self.root = root
        self._link_sources = link_sources
        self._known_dirs: set[str] = set()

    def path(self, name: str) -> Path:
        return self.root / name[:2] / name

    def ensure_root(self) -> None:
        """Create ``blobs/`` (durably). Fan-out directories are made on first use."""
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.root.parent)

    # writing -----------------------------------------------------------------
    def stage(self, source: MessageSource, describe: Callable[[bytes], MessageInfo]) -> StagedBlob:
        """Store ``source`` durably under a new name; ``describe(bytes)`` is the one MIME parse
        of this message."""
        data = source.read_bytes() if isinstance(source, Path) else bytes(source)
        # Parse first: should the parser ever fail, no file is left behind.
        info = describe(data)
        info_json = info.to_json()
        name = new_blob_name()
        directory = self._fanout_dir(name)
        final = directory / name
        linked = isinstance(source, Path) and self._link_sources and self._try_link(source, final)
        if not linked:
            self._write_file(directory, final, data)
        fsync_dir(directory)
        return StagedBlob(name, len(data), info_json, info.header_size)

    def _write_file(self, directory: Path, final: Path, data: bytes) -> None:
        tmp = directory / (final.name + TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        os.rename(tmp, final)

    def _try_link(self, source: Path, final: Path) -> bool:
        """Hard-link ``source`` as ``final`` ("write the bytes once"); False to fall back to a
        copy (another file system, or links not allowed)."""
        try:
            os.link(source, final)
        except OSError as exc:
            if exc.errno in _LINK_FALLBACK:
                return False
            raise
        # The link count changed (inode metadata): make the file itself durable too.
        fd = os.open(final, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _fanout_dir(self, name: str) -> Path:
        sub = name[:2]
        directory = self.root / sub
        if sub not in self._known_dirs:
            with contextlib.suppress(FileExistsError):
                directory.mkdir()
            # Whoever created it (another thread, an earlier run that crashed), its entry in
            # blobs/ must be durable before a file in it is called durable.
            fsync_dir(self.root)
            self._known_dirs.add(sub)
        return directory

    # reading -----------------------------------------------------------------
    def read(self, name: str, start: int, length: int | None) -> bytes:
        """Bytes ``start`` .. ``start+length`` of the blob (to its end when length is None),
        reading only those. Raises FileNotFoundError when the blob is gone, and `BlobDamaged`
        when it is shorter than that: callers ask only for bytes the database says exist, so a
        short file is damage, and serving it would hand a client a message cut short (and a
        literal that disagrees with RFC822.SIZE) as if nothing were wrong."""
        with open(self.path(name), "rb") as f:
            if start:
                f.seek(start)
            data = f.read() if length is None else f.read(length)
        if length is not None and len(data) < length:
            raise BlobDamaged(
                errno.EIO, f"blob file shorter than recorded ({start + len(data)} bytes)"
            )
        return data

    def read_heads(self, wanted: Iterable[tuple[str, int]]) -> dict[str, bytes]:
        """The first ``size`` bytes of each named blob, by name; blobs that are gone are left
        out. One open/read/close per file and no buffering layer: a FETCH of every header of
        a big mailbox costs a few microseconds per message."""
        root = os.fspath(self.root)
        flags = os.O_RDONLY | os.O_CLOEXEC
        heads: dict[str, bytes] = {}
        for name, size in wanted:
            if name in heads:
                continue
            try:
                fd = os.open(f"{root}/{name[:2]}/{name}", flags)
            except FileNotFoundError:
                continue  # its last copy was expunged after the lookup
            try:
                chunks = [os.read(fd, size)]
                got = len(chunks[0])
                while 0 < got < size:  # short reads are legal; regular files rarely do it
                    more = os.read(fd, size - got)
                    if not more:
                        break
                    chunks.append(more)
                    got += len(more)
            finally:
                os.close(fd)
            heads[name] = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return heads

    # deleting ----------------------------------------------------------------
    def delete(self, names: Iterable[str]) -> None:
        """Remove blob files whose last reference was committed away. Missing files are fine.
        No directory fsync: a deletion lost in a crash leaves an orphan that `sweep` removes."""
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name))

    def fanout_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(d for d in self.root.iterdir() if len(d.name) == 2 and d.is_dir())

    def candidates(self, directory: Path) -> list[str]:
        """Names in a fan-out directory that look like ours: blobs and temp files."""
        return [
            e.name for e in _scan(directory) if is_blob_name(e.name) or e.name.endswith(TMP_SUFFIX)
        ]

    def remove_orphans(self, directory: Path, names: Iterable[str], grace: float) -> int:
        """Delete the files ``names`` (known orphans: no database row references them) that
        were last changed more than ``grace`` seconds ago; younger ones may belong to a
        transaction still in flight in another process. Returns how many went."""
        cutoff = time.time() - grace
        removed = 0
        for name in names:
            path = directory / name
            with contextlib.suppress(FileNotFoundError):
                st = path.lstat()
                # ctime too: a hard-linked spool file keeps its old mtime, but linking it
                # here changed its ctime.
                if max(st.st_mtime, st.st_ctime) < cutoff:
                    path.unlink()
                    removed += 1
        return removed


def _scan(directory: Path) -> Iterator[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        yield from it
