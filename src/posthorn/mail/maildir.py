"""Maildir trees on disk, read and written the way Dovecot lays them out.

References: D. J. Bernstein, "Using maildir format" (https://cr.yp.to/proto/maildir.html) for
file names, ``tmp/`` → ``cur/`` delivery and the ``:2,FLAGS`` info; Dovecot's Maildir++ layout
(https://doc.dovecot.org/admin_manual/mailbox_formats/maildir/) for folders as ``.Sub.Folder``
directories, ``maildirfolder`` markers, ``dovecot-keywords`` and ``dovecot-uidlist``.

Owns the mapping between the two worlds, and nothing about the store:
- The root's ``cur/`` and ``new/`` are INBOX; ``.A.B`` is the mailbox ``A/B`` (each level in
  modified UTF-7, RFC 3501 §5.1.3; ``.`` and ``\\`` inside a level escaped as ``\\2e`` and
  ``\\5c``, as Dovecot's listescape does, since ``.`` is the hierarchy separator).
- Info letters ``S R F T D`` are ``\\Seen \\Answered \\Flagged \\Deleted \\Draft``; ``P``
  (passed) has no IMAP flag and is dropped; lower-case letters are the keywords numbered in
  ``dovecot-keywords`` (``a`` is 0). Messages in ``new/`` are unseen.
- The internal date is the file's mtime in whole seconds, UTC (Dovecot's convention); the
  ``,S=`` and ``,W=`` size fields of a name are not trusted and only written.
- Message bytes are passed through untouched: line ends are the caller's business.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from posthorn.fsync import fsync_dir
from posthorn.imap import utf7

INBOX = "INBOX"
DELIMITER = "/"
KEYWORDS_FILE = "dovecot-keywords"
UIDLIST_FILE = "dovecot-uidlist"
FOLDER_MARKER = "maildirfolder"
MAX_KEYWORDS = 26  # the letters a-z

_LETTER_TO_FLAG = {
    "D": "\\Draft",
    "F": "\\Flagged",
    "R": "\\Answered",
    "S": "\\Seen",
    "T": "\\Deleted",
}
_FLAG_TO_LETTER = {flag: letter for letter, flag in _LETTER_TO_FLAG.items()}
# cr.yp.to: "2," then the flags, in ASCII order; anything else after ":" is another info form.
_INFO = re.compile(r"2,([A-Za-z]*)")
_ESCAPED = re.compile(r"\\([0-9a-fA-F]{2})")


class MaildirError(ValueError):
    """A name or file that does not follow the Maildir rules (the message says which)."""


# --- names and flags (pure) ------------------------------------------------------------------


def split_name(name: str) -> tuple[str, str]:
    """(unique part, info letters) of a file name in ``cur/`` or ``new/``.

    ``1700000000.M1P2.host,S=12:2,FS`` → (``1700000000.M1P2.host,S=12``, ``FS``). A name
    without ``:`` has no info; an info that is not ``2,`` plus letters is an error."""
    base, colon, info = name.partition(":")
    if not base:
        raise MaildirError(f"bad maildir file name {name!r}: empty unique part")
    if not colon:
        return base, ""
    m = _INFO.fullmatch(info)
    if m is None:
        raise MaildirError(f"bad maildir file name {name!r}: info is not ':2,FLAGS'")
    return base, m.group(1)


def flags_from_info(letters: str, keywords: Sequence[str | None] = ()) -> frozenset[str]:
    """IMAP flags for info letters; lower-case letters index ``keywords`` (unknown ones and
    ``P`` are dropped)."""
    flags: set[str] = set()
    for ch in letters:
        if ch in _LETTER_TO_FLAG:
            flags.add(_LETTER_TO_FLAG[ch])
        elif "a" <= ch <= "z":
            i = ord(ch) - ord("a")
            word = keywords[i] if i < len(keywords) else None
            if word:
                flags.add(word)
    return frozenset(flags)


def info_from_flags(flags: Iterable[str], keyword_letters: Mapping[str, str] | None = None) -> str:
    """The ``2,LETTERS`` info (letters in ASCII order, as cr.yp.to asks). Keywords without a
    letter in ``keyword_letters`` are left out."""
    flags = set(flags)
    keyword_letters = keyword_letters or {}
    letters = {_FLAG_TO_LETTER[f] for f in flags if f in _FLAG_TO_LETTER}
    letters.update(keyword_letters[f] for f in flags if f in keyword_letters)
    return "2," + "".join(sorted(letters))


def parse_keywords(text: str) -> list[str | None]:
    """``dovecot-keywords``: lines ``<index> <keyword>``; the result is indexed by letter."""
    found: dict[int, str] = {}
    for line in text.splitlines():
        index, _, word = line.strip().partition(" ")
        if index.isdigit() and word and int(index) < MAX_KEYWORDS:
            found[int(index)] = word.strip()
    size = max(found, default=-1) + 1
    return [found.get(i) for i in range(size)]


def format_keywords(keywords: Sequence[str]) -> str:
    return "".join(f"{i} {word}\n" for i, word in enumerate(keywords))


def parse_uidlist(text: str) -> dict[str, int]:
    """Dovecot's ``dovecot-uidlist`` (versions 1 and 3): unique part of a file name → UID.
    Only the order matters here: messages are imported in UID order when a list exists."""
    uids: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        head, _, filename = line.partition(":")
        fields = head.split()
        if not fields or not fields[0].isdigit():
            continue
        if not filename:  # version 1: "<uid> <filename>"
            if len(fields) < 2:
                continue
            filename = fields[1]
        uids[filename.split(":", 1)[0]] = int(fields[0])
    return uids


def folder_to_mailbox(dirname: str) -> str:
    """``.Work.2026`` → ``Work/2026``. Levels are modified UTF-7 (a level that is not valid
    modified UTF-7 is kept as written) with listescape's ``\\XX`` escapes undone."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        raise MaildirError(f"{dirname!r} is not a Maildir++ folder name")
    levels = dirname[1:].split(".")
    if any(not level for level in levels):
        raise MaildirError(f"folder {dirname!r} has an empty level")
    return DELIMITER.join(_ESCAPED.sub(_unescape, _decode_level(level)) for level in levels)


def _decode_level(level: str) -> str:
    try:
        return utf7.decode(level)
    except ValueError:
        return level


def _unescape(m: re.Match[str]) -> str:
    return chr(int(m.group(1), 16))


def mailbox_to_folder(name: str) -> str:
    """``Work/2026`` → ``.Work.2026`` (INBOX itself is the root and has no folder)."""
    if name.upper() == INBOX:
        raise MaildirError("INBOX is the root of the tree, not a folder")
    levels = [
        utf7.encode(level.replace("\\", "\\5c").replace(".", "\\2e"))
        for level in name.split(DELIMITER)
    ]
    return "." + ".".join(levels)


def unique_name(when: float, pid: int, seq: int, host: str) -> str:
    """cr.yp.to's ``time.MusecPpidQn.host``. ``Q`` is zero-padded so that names sort in the
    order they were written; ``/``, ``:`` and ``,`` in the host are escaped (``,`` starts
    Dovecot's size fields)."""
    secs = int(when)
    usec = int((when - secs) * 1_000_000)
    host = host.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")
    return f"{secs}.M{usec}P{pid}Q{seq:08d}.{host}"


# --- reading a tree ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Folder:
    """One folder of a tree: ``mailbox`` relative to the tree (``INBOX`` for the root)."""

    mailbox: str
    path: Path


@dataclass(frozen=True, slots=True)
class MaildirMessage:
    path: Path
    flags: frozenset[str]
    internal_date: datetime


def is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() or (path / "new").is_dir()


def list_folders(root: Path) -> tuple[list[Folder], list[tuple[Path, str]]]:
    """The root (if it has ``cur/`` or ``new/``) and its ``.Sub.Folder`` directories, sorted
    by mailbox name; and the directories that look like folders but cannot be (with why)."""
    folders = [Folder(INBOX, root)] if is_maildir(root) else []
    problems: list[tuple[Path, str]] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.name.startswith(".") or entry.name in (".", ".."):
            continue
        if not entry.is_dir() or not is_maildir(Path(entry.path)):
            continue
        try:
            folders.append(Folder(folder_to_mailbox(entry.name), Path(entry.path)))
        except MaildirError as e:
            problems.append((Path(entry.path), str(e)))
    return folders, problems


def list_messages(folder: Path) -> list[Path]:
    """The files of ``cur/`` and ``new/`` (not ``tmp/``: deliveries in progress), in
    ``dovecot-uidlist`` order where there is one, then by name (which starts with the time)."""
    files: list[Path] = []
    for sub in ("cur", "new"):
        d = folder / sub
        if d.is_dir():
            files.extend(
                Path(e.path) for e in os.scandir(d) if not e.name.startswith(".") and e.is_file()
            )
    try:
        uids = parse_uidlist((folder / UIDLIST_FILE).read_text("utf-8", "replace"))
    except OSError:
        uids = {}
    last = 1 << 62
    return sorted(files, key=lambda p: (uids.get(p.name.split(":", 1)[0], last), p.name))


def read_keywords(folder: Path) -> list[str | None]:
    try:
        return parse_keywords((folder / KEYWORDS_FILE).read_text("utf-8", "replace"))
    except OSError:
        return []


def describe(path: Path, keywords: Sequence[str | None]) -> MaildirMessage:
    """Flags and internal date of one message file. Raises `MaildirError`, `OSError`."""
    _, letters = split_name(path.name)
    flags = flags_from_info(letters, keywords)
    if path.parent.name == "new":
        flags -= {"\\Seen"}
    mtime = int(path.stat().st_mtime)
    return MaildirMessage(path, flags, datetime.fromtimestamp(mtime, UTC))


# --- writing a tree ---------------------------------------------------------------------------


class MaildirWriter:
    """Writes messages into a new tree at ``root``: each to ``tmp/``, fsync'd, mtime set to the
    internal date, renamed into ``cur/``; `finish` writes keyword files and fsyncs directories.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._pid = os.getpid()
        self._host = socket.gethostname() or "localhost"
        self._started = time.time()
        self._seq = 0
        self._keywords: dict[Path, list[str]] = {}
        self._dirty: set[Path] = set()

    def folder(self, mailbox: str) -> Path:
        """Create (if needed) the folder for ``mailbox`` and return its path."""
        path = self.root if mailbox.upper() == INBOX else self.root / mailbox_to_folder(mailbox)
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        if path != self.root:
            (path / FOLDER_MARKER).touch()
        self._keywords.setdefault(path, [])
        self._dirty.update({path, path.parent})
        return path

    def write(
        self, folder: Path, data: bytes, flags: frozenset[str], internal_date: datetime
    ) -> tuple[Path, list[str]]:
        """Store one message; returns its path and the keywords that found no letter."""
        letters, dropped = self._letters(folder, flags)
        self._seq += 1
        base = unique_name(self._started, self._pid, self._seq, self._host)
        vsize = len(data) + data.count(b"\n") - data.count(b"\r\n")
        name = f"{base},S={len(data)},W={vsize}:{info_from_flags(flags, letters)}"
        tmp = folder / "tmp" / base
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            stamp = int(internal_date.timestamp() * 1_000_000) * 1000
            os.utime(fd, ns=(stamp, stamp))
            os.fsync(fd)
        finally:
            os.close(fd)
        final = folder / "cur" / name
        os.rename(tmp, final)
        self._dirty.add(folder / "cur")
        return final, dropped

    def _letters(self, folder: Path, flags: frozenset[str]) -> tuple[dict[str, str], list[str]]:
        known = self._keywords[folder]
        letters: dict[str, str] = {}
        dropped: list[str] = []
        for flag in sorted(flags):
            if flag.startswith("\\"):
                continue
            if flag not in known and len(known) < MAX_KEYWORDS:
                known.append(flag)
            if flag in known:
                letters[flag] = chr(ord("a") + known.index(flag))
            else:
                dropped.append(flag)
        return letters, dropped

    def finish(self) -> None:
        """Keyword files, then one fsync per directory touched (new entries made durable)."""
        for folder, keywords in self._keywords.items():
            if keywords:
                (folder / KEYWORDS_FILE).write_text(format_keywords(keywords), "utf-8")
        for d in sorted(self._dirty, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)
