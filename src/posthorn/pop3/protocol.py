"""POP3 wire format, pure: command lines in, values out; responses and message octets out.

Owns RFC 1939 framing (commands, ``+OK``/``-ERR`` status lines, multi-line responses ending in
``CRLF.CRLF`` with dot-stuffing), RFC 2449 response codes and line limits, and the streaming
transforms RETR and TOP push message bytes through. No sockets, no store, no state beyond one
stream's position: the session (`posthorn.pop3.session`) decides what to say.

Invariants:
- A command line is at most `MAX_COMMAND_LINE` octets with its CRLF (RFC 2449 §4); a SASL
  response line at most `posthorn.sasl.MAX_RESPONSE_LINE`. Longer lines are discarded as they
  arrive, never buffered whole (`LineReader`).
- Message octets leave with every line ending as CRLF: a bare LF becomes CRLF
  (`CRLFNormalizer`), and `OctetCounter` counts exactly those octets, so LIST and STAT sizes
  equal what RETR sends before dot-stuffing (RFC 1939 §11).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Final

MAX_COMMAND_LINE: Final = 255  # RFC 2449 §4: octets, CRLF included
_KEYWORD_MAX: Final = 4  # RFC 1939 §3: keywords are three or four characters


class ParseError(Exception):
    """A command line we cannot take; the message is safe to send after ``-ERR``."""


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line over the limit, already discarded."""


@dataclass(frozen=True, slots=True)
class Command:
    """One command: ``name`` upper-cased, ``args`` as sent (ASCII text).

    PASS keeps the rest of the line as its one argument, spaces included (RFC 1939 §7: a
    password may contain spaces); every other command splits on single spaces.
    """

    name: str
    args: tuple[str, ...] = ()


def parse_command(line: bytes) -> Command:
    """A command line without its CRLF (RFC 1939 §3: keyword, then arguments separated by a
    single space, printable ASCII)."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ParseError("command must be ASCII") from None
    if any(not (" " <= c <= "~") for c in text):
        raise ParseError("control character in command")
    keyword, sep, rest = text.partition(" ")
    if not keyword or len(keyword) > _KEYWORD_MAX or not keyword.isalpha():
        raise ParseError("no such command")
    name = keyword.upper()
    if not sep:
        return Command(name)
    if name == "PASS":
        return Command(name, (rest,))
    args = tuple(rest.split(" "))
    if any(not a for a in args):
        raise ParseError("arguments are separated by one space")
    return Command(name, args)


def message_number(text: str) -> int:
    """RFC 1939 §3 msg: a decimal number (0 and other numbers out of the maildrop's range are
    the session's to refuse as "no such message")."""
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise ParseError("invalid message number")
    return int(text)


# --- responses -----------------------------------------------------------------------------


def ok(text: str = "", code: str | None = None) -> bytes:
    """``+OK [CODE] text`` (RFC 1939 §3, RFC 2449 §8 response codes)."""
    return _status(b"+OK", text, code)


def err(text: str, code: str | None = None) -> bytes:
    """``-ERR [CODE] text``. Codes: RFC 2449 §8.1 (IN-USE, LOGIN-DELAY), RFC 3206 (SYS/TEMP,
    SYS/PERM, AUTH)."""
    return _status(b"-ERR", text, code)


def _status(status: bytes, text: str, code: str | None) -> bytes:
    parts = [status]
    if code:
        parts.append(b"[" + code.encode("ascii") + b"]")
    if text:
        parts.append(text.encode("ascii", "replace"))
    return b" ".join(parts) + b"\r\n"


def multiline(first: bytes, lines: list[bytes]) -> bytes:
    """A whole multi-line response (RFC 1939 §3): status line, dot-stuffed lines, ``.``."""
    body = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
    return first + body + b".\r\n"


def continuation(challenge: bytes) -> bytes:
    """RFC 5034 §4: ``+ <base64>``; an empty challenge is ``+ `` with nothing after."""
    return b"+ " + base64.b64encode(challenge) + b"\r\n"


# --- reading lines -------------------------------------------------------------------------


class LineReader:
    """Client octets in, lines out, never holding more than a line's limit plus one read.

    A line ends at LF (CRLF or a bare LF, as other servers accept). Lines longer than the
    limit given to `next_line` are dropped as they arrive and reported once as `LineTooLong`.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False  # inside an overlong line: drop up to its LF

    def feed(self, data: bytes) -> None:
        self._buf += data

    def discard(self) -> None:
        """Forget everything buffered (RFC 2595 §4 / CVE-2011-0411: input pipelined after
        STLS must not be read as if it came over TLS)."""
        self._buf.clear()
        self._skipping = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_line(self, limit: int) -> bytes | LineTooLong | None:
        """The next line without its line end, `LineTooLong`, or None when more octets are
        needed. ``limit`` counts the CRLF."""
        buf = self._buf
        lf = buf.find(b"\n")
        if lf < 0:
            if len(buf) > limit:
                self._skipping = True
                buf.clear()
            return None
        line = bytes(buf[:lf])
        del buf[: lf + 1]
        if self._skipping:
            self._skipping = False
            return LineTooLong()
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) + 2 > limit:
            return LineTooLong()
        return line


# --- message octets ------------------------------------------------------------------------


class CRLFNormalizer:
    """Streaming bare-LF -> CRLF. A CR at the end of a chunk is held back until the next chunk
    shows whether an LF follows it. Bare CRs pass unchanged (they end no line)."""

    def __init__(self) -> None:
        self._cr = False

    def feed(self, chunk: bytes) -> bytes:
        if self._cr:
            chunk = b"\r" + chunk
            self._cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._cr = True
        if b"\n" not in chunk:
            return chunk
        return chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def finish(self) -> bytes:
        held, self._cr = (b"\r" if self._cr else b""), False
        return held


class OctetCounter:
    """The octets `CRLFNormalizer` would produce from the same chunks, without producing them:
    the stored size plus one per bare LF."""

    def __init__(self) -> None:
        self.octets = 0
        self._last_cr = False

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        bare = chunk.count(b"\n") - chunk.count(b"\r\n")
        if self._last_cr and chunk.startswith(b"\n"):
            bare -= 1  # the CR ended the previous chunk
        self.octets += len(chunk) + bare
        self._last_cr = chunk.endswith(b"\r")


class DotStuffer:
    """RFC 1939 §3 byte-stuffing of CRLF-terminated lines: a line starting with ``.`` gets
    another ``.``; `finish` ends the response with ``CRLF.CRLF`` (adding a CRLF first when the
    message does not end with one)."""

    def __init__(self) -> None:
        self._line_start = True
        self._cr = False  # the last chunk ended with CR: an LF may complete the line end

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return chunk
        if self._line_start and chunk.startswith(b"."):
            chunk = b"." + chunk
        elif self._cr and chunk.startswith(b"\n."):
            chunk = b"\n." + chunk[1:]
        chunk = chunk.replace(b"\r\n.", b"\r\n..")
        self._line_start = chunk.endswith(b"\r\n") or (self._cr and chunk == b"\n")
        self._cr = chunk.endswith(b"\r")
        return chunk

    def finish(self) -> bytes:
        return b".\r\n" if self._line_start else b"\r\n.\r\n"


class TopFilter:
    """TOP msg n (RFC 1939 §7): the header, the blank line after it, then ``n`` body lines.
    Fed CRLF-normalised chunks; `done` turns true once nothing more is wanted. A message with
    no blank line is all header and is sent whole."""

    def __init__(self, lines: int) -> None:
        self._lines = lines
        self._in_header = True
        self._tail = b"\r\n"  # the last octets seen: an empty header ends at the first CRLF
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done or not chunk:
            return b""
        out = b""
        if self._in_header:
            text = self._tail + chunk
            end = text.find(b"\r\n\r\n")
            if end < 0:
                self._tail = text[-3:]
                return chunk
            cut = end + 4 - len(self._tail)
            out, chunk = chunk[:cut], chunk[cut:]
            self._in_header = False
        return out + self._body(chunk)

    def _body(self, chunk: bytes) -> bytes:
        if self._lines <= 0:
            self.done = True
            return b""
        found = chunk.count(b"\n")
        if found < self._lines:
            self._lines -= found
            return chunk
        pos = -1
        for _ in range(self._lines):  # bounded by the line count asked for
            pos = chunk.find(b"\n", pos + 1)
        self._lines = 0
        self.done = True
        return chunk[: pos + 1]
