"""mbox files in the mboxrd dialect, split and written without touching the store.

References: RFC 4155 (the application/mbox type) and qmail's mbox(5) (mboxrd: every line
matching ``>*From `` in a message is quoted with one more ``>``, so unquoting is exact).

Reading:
- A message starts at a ``From `` line at the start of the file or right after an empty line
  (``From sender date``); the empty line before the next separator belongs to the file, not to
  the message (one is dropped). The date is the internal date when it parses (asctime, UTC
  unless a numeric zone follows).
- The mail clients' state headers are turned into flags and removed from the message (they
  describe the file copy, not the message, and they would go stale once IMAP changes flags):
  ``Status`` (``R`` → \\Seen), ``X-Status`` (``A F D T`` → \\Answered \\Flagged \\Deleted
  \\Draft), ``X-Keywords`` (keywords), Thunderbird's ``X-Mozilla-Status`` (bits 1, 2, 4, 8) and
  ``X-Mozilla-Keys``, and Dovecot's/UW's ``X-UID``, ``X-IMAP``, ``X-IMAPbase``, all only in the
  header section.
- Line ends: files are LF (CRLF tolerated); the store keeps CRLF, as SMTP delivers. `to_crlf`
  makes every line end CRLF and adds one to a last line without it; `to_lf` undoes it.

Writing: ``From <Return-Path or MAILER-DAEMON> <asctime UTC>``, the message in LF with
``Status``/``X-Status``/``X-Keywords`` added at the end of its header, mboxrd-quoted, then the
empty line. Reading that back gives the same bytes and flags, and the date to the second.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

MAILER_DAEMON = "MAILER-DAEMON"
BLOCK = 1 << 20

# RFC 4155 §2 / mbox(5): a separator is "From " after an empty line (LF or CRLF).
_SEPARATOR = re.compile(rb"\n\r?\nFrom ")
_QUOTED_FROM = re.compile(rb"^>(>*From )", re.M)
_TO_QUOTE = re.compile(rb"^(>*From )", re.M)
_LINE_END = re.compile(rb"\r?\n")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ASCTIME = re.compile(
    r"(?:[A-Z][a-z]{2},?\s+)?([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"\s+(?:([A-Za-z]{1,5}|[+-]\d{4})\s+)?(\d{4})(?:\s+([+-]\d{4}))?"
)
_STATE_FIELDS = frozenset(
    {
        b"status",
        b"x-status",
        b"x-keywords",
        b"x-mozilla-status",
        b"x-mozilla-status2",
        b"x-mozilla-keys",
        b"x-uid",
        b"x-imap",
        b"x-imapbase",
    }
)
_X_STATUS = {"A": "\\Answered", "F": "\\Flagged", "D": "\\Deleted", "T": "\\Draft"}
_X_STATUS_OUT = {flag: letter for letter, flag in _X_STATUS.items()}
_MOZILLA_BITS = ((0x1, "\\Seen"), (0x2, "\\Answered"), (0x4, "\\Flagged"), (0x8, "\\Deleted"))
# An IMAP flag-keyword is an atom (RFC 9051 §9): no specials, no controls, no spaces.
_KEYWORD = re.compile(r"[^\x00-\x20\x7f(){%*\"\\\]]+")


class MboxError(ValueError):
    """A part of an mbox file that is not a message (the message says why)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """The bytes between two separators: ``offset`` of its From_ line in the file (``end``
    past it); ``from_line`` without its line end (empty for text before any separator)."""

    offset: int
    end: int
    from_line: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class MboxMessage:
    data: bytes  # CRLF line ends, state headers removed
    flags: frozenset[str]
    internal_date: datetime | None
    sender: str


# --- line ends and quoting (pure) -------------------------------------------------------------


def to_crlf(data: bytes) -> bytes:
    """Every line end CRLF (bare CR left alone), and a final line end if it had none."""
    data = _LINE_END.sub(b"\r\n", data)
    return data if not data or data.endswith(b"\r\n") else data + b"\r\n"


def to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def quote(data: bytes) -> bytes:
    """mboxrd: one more ``>`` before every line matching ``>*From ``."""
    return _TO_QUOTE.sub(rb">\1", data)


def unquote(data: bytes) -> bytes:
    """mboxrd: one ``>`` less before every line matching ``>+From ``."""
    return _QUOTED_FROM.sub(rb"\1", data)


def looks_like_message(data: bytes) -> bool:
    """A message starts with a header field (RFC 5322 §2.2) — anything else is not mail."""
    return _FIELD_NAME.match(data) is not None


# --- splitting (pure over blocks of bytes) ----------------------------------------------------


def split(blocks: Iterable[bytes]) -> Iterator[Chunk]:
    """The chunks of an mbox given as consecutive blocks of bytes; memory holds about one
    block or one message, whichever is larger. Separators are found with one regex search per
    message, never a Python loop per line.

    Text before the first From_ line comes out as a chunk with an empty ``from_line`` unless
    it is only whitespace."""
    buf = bytearray()
    base = 0  # file offset of buf[0]
    start = 0  # where the current chunk begins in buf
    scan = 0  # where the next separator search may begin
    for block in blocks:
        if start:
            del buf[:start]
            base, scan, start = base + start, scan - start, 0
        buf += block
        while True:
            m = _SEPARATOR.search(buf, max(scan - 7, start))
            if m is None:
                scan = len(buf)
                break
            cut = m.end() - len(b"From ")
            chunk = _chunk(bytes(buf[start : m.start() + 1]), base + start)
            if chunk is not None:
                yield chunk
            start = scan = cut
    chunk = _chunk(_drop_blank(bytes(buf[start:])), base + start)
    if chunk is not None:
        yield chunk


def _drop_blank(tail: bytes) -> bytes:
    """The last message keeps all but the final empty line the writer added."""
    for blank in (b"\n\n", b"\r\n\r\n"):
        if tail.endswith(blank):
            return tail[: -len(blank) // 2]
    return tail


def _chunk(raw: bytes, offset: int) -> Chunk | None:
    if not raw.startswith(b"From "):
        if not raw.strip():
            return None
        return Chunk(offset, offset + len(raw), b"", raw)
    nl = raw.find(b"\n")
    if nl < 0:
        return Chunk(offset, offset + len(raw), raw.rstrip(b"\r"), b"")
    return Chunk(offset, offset + len(raw), raw[:nl].rstrip(b"\r"), raw[nl + 1 :])


def read_blocks(path: Path, size: int = BLOCK) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(size):
            yield block


# --- one message ------------------------------------------------------------------------------


def parse_chunk(chunk: Chunk) -> MboxMessage:
    """The message in a chunk, its flags and dates. Raises `MboxError`."""
    if not chunk.from_line:
        raise MboxError("text that is not in an mbox message (no 'From ' line before it)")
    body = unquote(chunk.body)
    if not looks_like_message(body):
        raise MboxError("not a message (no header field after the 'From ' line)")
    sender, date = parse_from_line(chunk.from_line)
    data, fields = take_state_fields(to_crlf(body))
    if date is None:
        date = _header_date(data)
    return MboxMessage(data, flags_from_fields(fields), date, sender)


def parse_from_line(line: bytes) -> tuple[str, datetime | None]:
    """``From sender date`` → (sender, date or None when it does not parse)."""
    text = line.decode("latin-1")[len("From ") :].strip()
    sender, _, rest = text.partition(" ")
    return sender, parse_asctime(rest)


def parse_asctime(text: str) -> datetime | None:
    """``Thu Mar 30 23:59:59 1995`` (UTC), optionally with a numeric zone before or after the
    year; RFC 5322 dates as some writers put them there. None when neither parses."""
    m = _ASCTIME.search(text)
    if m is not None and m.group(1) in _MONTHS:
        mon, day, hh, mm, ss, zone1, year, zone2 = m.groups()
        zone = zone2 or (zone1 if zone1 and zone1[0] in "+-" else None)
        tz = UTC
        if zone:
            minutes = int(zone[1:3]) * 60 + int(zone[3:5])
            tz = timezone(timedelta(minutes=-minutes if zone[0] == "-" else minutes))
        try:
            when = datetime(
                int(year), _MONTHS.index(mon) + 1, int(day), int(hh), int(mm), int(ss or 0), 0, tz
            )
        except ValueError:
            return None
        return when.astimezone(UTC)
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_asctime(when: datetime) -> str:
    """asctime in UTC, as C's asctime(3) writes it (day padded with a space)."""
    t = when.astimezone(UTC)
    return (
        f"{_DAYS[t.weekday()]} {_MONTHS[t.month - 1]} {t.day:2d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} {t.year}"
    )


def _header_end(data: bytes) -> int:
    """Offset of the empty line that ends the header (the whole message when none)."""
    if data.startswith(b"\r\n"):
        return 0
    end = data.find(b"\r\n\r\n")
    return len(data) if end < 0 else end + 2


def take_state_fields(data: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The CRLF message without the state fields (every copy, with its continuation lines), and
    the first value of each (lower-case names, unfolded values)."""
    head_end = _header_end(data)
    kept: list[bytes] = []
    found: dict[bytes, bytes] = {}
    dropping = False
    current: bytes | None = None  # the field whose continuation lines extend `found`
    for line in data[:head_end].split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):  # RFC 5322 §2.2.3: folded onto the field before
            if not dropping:
                kept.append(line)
            elif current is not None:
                found[current] += b" " + line.strip()
            continue
        field, colon, value = line.partition(b":")
        name = field.strip().lower()
        dropping = bool(colon) and name in _STATE_FIELDS
        if not dropping:
            kept.append(line)
            continue
        current = None if name in found else name
        if current is not None:
            found[current] = value.strip()
    head = b"".join(line + b"\r\n" for line in kept)
    return head + data[head_end:], found


def flags_from_fields(fields: dict[bytes, bytes]) -> frozenset[str]:
    flags: set[str] = set()
    status = fields.get(b"status", b"").decode("latin-1")
    if "R" in status:
        flags.add("\\Seen")
    for letter in fields.get(b"x-status", b"").decode("latin-1"):
        if letter in _X_STATUS:
            flags.add(_X_STATUS[letter])
    mozilla = fields.get(b"x-mozilla-status", b"").decode("latin-1").strip()
    if mozilla:
        try:
            bits = int(mozilla, 16)
        except ValueError:
            bits = 0
        flags.update(flag for bit, flag in _MOZILLA_BITS if bits & bit)
    for name in (b"x-keywords", b"x-mozilla-keys"):
        words = fields.get(name, b"").decode("utf-8", "replace").replace(",", " ").split()
        flags.update(w for w in words if _KEYWORD.fullmatch(w) and not w.startswith("\\"))
    return frozenset(flags)


def _header_date(data: bytes) -> datetime | None:
    head = data[: _header_end(data)]
    m = re.search(rb"^Date:[ \t]*(.*(?:\r\n[ \t].*)*)", head, re.M | re.I)
    if m is None:
        return None
    text = m.group(1).decode("latin-1").replace("\r\n", "").strip()
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# --- writing ----------------------------------------------------------------------------------


def envelope_sender(data: bytes) -> str:
    """The From_ line's sender: the first Return-Path's address, else MAILER-DAEMON (also for
    the null path ``<>``)."""
    head = data[: _header_end(data)]
    m = re.search(rb"^Return-Path:[ \t]*<?([^>\r\n]*)>?", head, re.M | re.I)
    if m is None:
        return MAILER_DAEMON
    sender = m.group(1).strip().decode("utf-8", "replace")
    return sender if sender and not any(c.isspace() for c in sender) else MAILER_DAEMON


def state_fields(flags: frozenset[str]) -> bytes:
    """``Status``, ``X-Status`` and ``X-Keywords`` (CRLF) carrying ``flags``, as mutt does."""
    lines = [b"Status: RO\r\n" if "\\Seen" in flags else b"Status: O\r\n"]
    letters = "".join(sorted(_X_STATUS_OUT[f] for f in flags if f in _X_STATUS_OUT))
    if letters:
        lines.append(f"X-Status: {letters}\r\n".encode())
    keywords = sorted(f for f in flags if not f.startswith("\\"))
    if keywords:
        lines.append(f"X-Keywords: {' '.join(keywords)}\r\n".encode())
    return b"".join(lines)


def format_message(data: bytes, flags: frozenset[str], internal_date: datetime) -> bytes:
    """One mboxrd entry (LF line ends) for a stored (CRLF) message."""
    data = to_crlf(data)
    head_end = _header_end(data)
    with_state = data[:head_end] + state_fields(flags) + data[head_end:]
    from_line = f"From {envelope_sender(data)} {format_asctime(internal_date)}\n".encode()
    return from_line + quote(to_lf(with_state)) + b"\n"
