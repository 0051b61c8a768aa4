"""The IMAP command reader, sans I/O: octets in, `Command`s and flow-control events out.

Owns command framing (RFC 9051 §2.2.1: a command is a line ending in CRLF, with literals inside
it; a bare LF is accepted as Dovecot does), the tag and command name (``UID`` folded into the
name), the generic argument grammar of `posthorn.imap.values` (atoms with bracketed sections,
quoted strings, literals, parenthesised lists), literal flow control (RFC 9051 §4.3 and §7.5,
RFC 7888 LITERAL+/LITERAL-, RFC 3516 literal8) and every size limit. It knows nothing about
what a command means; the handlers check their arguments.

Invariants:

- Lazy: nothing is parsed until `CommandReader.next_event`, so each command is read under the
  session state left by the one before it (`literal_limit` grows at LOGIN; AUTHENTICATE and
  IDLE read raw lines with `CommandReader.next_line` instead).
- Bounded: once `next_event` returns None the reader keeps at most ``max_line + 1`` octets of
  an unfinished line, or the octets of the literal being read, whose size was checked against
  ``literal_limit`` and ``max_command`` before any of it was kept. Overlong lines and the rest
  of a rejected command are discarded as they arrive.
- Chunking-blind: the events are the same however the octets are split into `feed` calls.
- One `Reject` per malformed command; the rest of that command (to the end of its line, and
  past any non-synchronizing literal announced there) is skipped so the next one parses
  cleanly. After a `Reject` with ``close`` set the reader is dead: it keeps and returns nothing.
- Linear: each line octet is searched for LF once and parsed once; literal octets are copied
  once and only searched for NUL.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from posthorn.imap.values import Atom, Command, String, Value

__all__ = ["MAX_NESTING", "CommandReader", "Continue", "Event", "LineTooLong", "Reject"]

MAX_NESTING: Final = 100  # open parentheses in one command; real commands use fewer than 5
_MAX_NUMBER64: Final = (1 << 63) - 1  # RFC 9051 §9 number64: the largest literal size
_TAIL: Final = 80  # octets kept of a discarded line, enough to see a "{n+}" at its end


@dataclass(frozen=True, slots=True)
class Continue:
    """A synchronizing literal was accepted: send a ``+`` continuation now (RFC 9051 §7.5)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """A command that cannot be read. ``tag`` is None when no valid tag was seen (answer
    ``* BAD``); with ``close`` the shell sends ``* BYE`` and hangs up."""

    tag: str | None
    status: str  # "BAD" or "NO"
    code: str | None  # response code without brackets, e.g. "TOOBIG"
    text: str
    close: bool


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """`CommandReader.next_line` skipped a line longer than its ``max_len``."""


Event = Command | Continue | Reject

# RFC 9051 §9: tag = 1*<any ASTRING-CHAR except "+">; ASTRING-CHAR is ATOM-CHAR or "]", and
# ATOM-CHAR is any 7-bit CHAR except atom-specials ( ) { SP CTL % * " \ ("]" is one too).
_TAG: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
_NAME: Final = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
# Argument atoms are ASTRING-CHAR plus list-wildcards, "\" (flags) and UTF-8 (RFC 9051 §9
# utf8-quoted, RFC 6855); "[" opens a section that `_section_end` reads.
_ATOM_RUN: Final = re.compile(rb'[^\x00-\x20\x7f(){"\[]+')
# RFC 9051 §9 quoted: QUOTED-CHAR is TEXT-CHAR (no CR, LF) or "\" quoted-specials.
_QUOTED: Final = re.compile(rb'"([^"\\\r\n]*(?:\\["\\][^"\\\r\n]*)*)"')
_UNESCAPE: Final = re.compile(rb'\\(["\\])')
_SECTION_STOP: Final = re.compile(rb'[\[\]"]')
_SECTION_QUOTED: Final = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_CTL: Final = re.compile(rb"[\x00-\x1f\x7f]")
# RFC 9051 §9 literal, RFC 7888 §3 "{n+}", RFC 3516 §4.2 literal8 "~{n}".
_LITERAL: Final = re.compile(rb"(~?)\{([0-9]+)(\+?)\}")
_NONSYNC_TAIL: Final = re.compile(rb"\{([0-9]{1,64})\+\}\Z")


class _Mode(enum.Enum):
    LINE = enum.auto()  # reading a command line (or, between commands, a raw line)
    LITERAL = enum.auto()  # collecting announced literal octets
    SKIP_LITERAL = enum.auto()  # discarding the literal of a rejected command
    SKIP_LINE = enum.auto()  # discarding to the end of an overlong or rejected line
    CLOSED = enum.auto()  # a closing Reject was returned


class _Bad(Exception):
    """The command line breaks the grammar: ``tag BAD <message>``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class _Announce:
    size: int
    sync: bool
    binary: bool


@dataclass(slots=True)
class _Partial:
    """The command being read: what its lines so far have given."""

    tag: str | None = None
    name: str = ""
    stack: list[list[Value]] = field(default_factory=lambda: [[]])  # open lists, outermost first
    after_value: bool = False  # the next argument needs a space first
    octets: int = 0
    literals: int = 0


class CommandReader:
    """Reads client commands from a byte stream; see the module docstring for the invariants.

    ``literal_limit(name)`` is asked, when a literal is announced, for the largest literal the
    command ``name`` (upper-cased, ``"UID SEARCH"``) may carry now.
    """

    def __init__(
        self,
        *,
        max_line: int = 65536,
        literal_limit: Callable[[str], int],
        max_command: int = 64 * 1024 * 1024,
        max_literals: int = 1000,
    ) -> None:
        self._max_line = max_line
        self._literal_limit = literal_limit
        self._max_command = max_command
        self._max_literals = max_literals
        self._buf = bytearray()
        self._scanned = 0  # no LF in _buf[:_scanned]
        self._mode = _Mode.LINE
        self._cmd: _Partial | None = None
        self._remaining = 0  # literal octets still to come (LITERAL, SKIP_LITERAL)
        self._binary = False  # the literal being read is a literal8
        self._chunks: list[bytes] = []  # the literal so far
        self._pending: Reject | None = None  # for an overlong line, sent at its end
        self._tail = b""  # the end of the line being skipped
        self._raw_overflow = False  # next_line is skipping an overlong line

    def feed(self, data: bytes) -> None:
        """Take octets from the client; nothing is parsed until `next_event`."""
        if self._mode is _Mode.CLOSED or not data:
            return
        if self._remaining and not self._buf:
            # Literal octets go straight to the literal, uncopied (a 50 MB APPEND).
            take = min(self._remaining, len(data))
            if self._mode is _Mode.LITERAL:
                self._chunks.append(data if take == len(data) else data[:take])
            self._remaining -= take
            data = data[take:]
        self._buf += data

    def pending(self) -> int:
        """Octets received and not yet consumed: plaintext pipelined after STARTTLS must be
        refused, never read as commands after the handshake (CVE-2011-0411)."""
        return len(self._buf) + sum(map(len, self._chunks))

    def discard(self) -> None:
        """Forget everything buffered and any command in progress."""
        self._buf.clear()
        self._scanned = 0
        self._chunks = []
        self._cmd = None
        self._remaining = 0
        self._pending = None
        self._tail = b""
        self._raw_overflow = False
        if self._mode is not _Mode.CLOSED:
            self._mode = _Mode.LINE

    def next_event(self) -> Event | None:
        """The next command or event, or None when more octets are needed."""
        while True:
            mode = self._mode
            event: Event | None
            if mode is _Mode.CLOSED:
                return None
            if mode is _Mode.LITERAL or mode is _Mode.SKIP_LITERAL:
                if not self._drain_literal():
                    return None
                if mode is _Mode.SKIP_LITERAL:
                    self._begin_skip(None)  # and the rest of the rejected command
                    continue
                event = self._end_literal()
            elif mode is _Mode.SKIP_LINE:
                tail = self._skip_line()
                if tail is None:
                    return None
                event, self._pending = self._pending, None
                self._after_bad_line(tail)
            else:
                raw = self._take_line()
                if raw is None:
                    if self._mode is _Mode.SKIP_LINE:
                        continue
                    return None
                event = self._on_line(raw)
            if event is not None:
                return event

    def next_line(self, max_len: int) -> bytes | LineTooLong | None:
        """The next raw line without its CRLF or LF (an AUTHENTICATE response, IDLE's DONE), or
        None when more octets are needed. A line longer than ``max_len`` is discarded as it
        arrives and reported as `LineTooLong`. Only between commands."""
        if self._mode is _Mode.CLOSED:
            return None
        if self._mode is not _Mode.LINE or self._cmd is not None:
            raise RuntimeError("next_line() called in the middle of a command")
        buf = self._buf
        lf = buf.find(b"\n", self._scanned)
        if lf < 0:
            if self._raw_overflow or len(buf) > max_len + 1:
                self._raw_overflow = True
                buf.clear()
                self._scanned = 0
            else:
                self._scanned = len(buf)
            return None
        if self._raw_overflow:
            del buf[: lf + 1]
            self._scanned = 0
            self._raw_overflow = False
            return LineTooLong()
        line = _strip_eol(self._pop(lf + 1))
        return LineTooLong() if len(line) > max_len else line

    # --- lines ---------------------------------------------------------------------------------

    def _take_line(self) -> bytes | None:
        """The next line with its terminator; an overlong one switches to SKIP_LINE."""
        buf = self._buf
        lf = buf.find(b"\n", self._scanned)
        if lf >= 0:
            return self._pop(lf + 1)
        if len(buf) > self._max_line + 1:  # too long even if the next octet is LF
            self._begin_skip(self._too_long(bytes(buf[: self._max_line + 1])))
        else:
            self._scanned = len(buf)
        return None

    def _on_line(self, raw: bytes) -> Event | None:
        line = _strip_eol(raw)
        if len(line) > self._max_line:
            reject = self._too_long(line[: self._max_line + 1])
            self._after_bad_line(line)
            return reject
        cmd = self._cmd = self._cmd or _Partial()
        cmd.octets += len(raw)
        if cmd.octets > self._max_command:
            return self._close(cmd.tag or _readable_tag(line), "command too long")
        try:
            announce = _parse_line(cmd, line)
        except _Bad as bad:
            self._after_bad_line(line)
            return Reject(cmd.tag, "BAD", None, bad.message, close=False)
        if announce is not None:
            return self._announce(cmd, announce)
        self._cmd = None
        assert cmd.tag is not None  # set by the first line or _Bad was raised
        return Command(cmd.tag, cmd.name, tuple(cmd.stack[0]))

    def _too_long(self, head: bytes) -> Reject:
        """``head`` is the line's first ``max_line + 1`` octets, however it arrived."""
        tag = self._cmd.tag if self._cmd is not None else None
        return Reject(tag or _readable_tag(head), "BAD", None, "command line too long", False)

    def _begin_skip(self, reject: Reject | None) -> None:
        self._mode = _Mode.SKIP_LINE
        self._pending = reject
        self._tail = b""

    def _skip_line(self) -> bytes | None:
        """Discard to the next LF without keeping more than `_TAIL` octets; the line's end."""
        buf = self._buf
        lf = buf.find(b"\n")
        end = len(buf) if lf < 0 else lf
        self._tail = (self._tail + bytes(buf[max(0, end - _TAIL) : end]))[-_TAIL:]
        if lf < 0:
            buf.clear()
            return None
        del buf[: lf + 1]
        self._scanned = 0
        tail, self._tail = self._tail, b""
        return tail[:-1] if tail.endswith(b"\r") else tail

    def _after_bad_line(self, line: bytes) -> None:
        """The command is over, unless its bad line announced a non-synchronizing literal: the
        client sends that without waiting (RFC 7888 §3), so skip it and what follows it."""
        self._cmd = None
        m = _NONSYNC_TAIL.search(line[-_TAIL:])
        if m is None:
            self._mode = _Mode.LINE
        else:
            self._mode = _Mode.SKIP_LITERAL
            self._remaining = int(m.group(1))

    # --- literals ------------------------------------------------------------------------------

    def _announce(self, cmd: _Partial, announce: _Announce) -> Event | None:
        cmd.literals += 1
        if cmd.literals > self._max_literals:
            return self._close(cmd.tag, "too many literals in one command")
        if announce.size > self._literal_limit(cmd.name):
            if announce.sync:
                # RFC 9051 §7.1 TOOBIG: a tagged NO instead of "+", so no octets follow.
                self._cmd = None
                return Reject(cmd.tag, "NO", "TOOBIG", "literal too large", close=False)
            # RFC 7888 §4: the octets come unasked and cannot be told from commands: close.
            return self._close(cmd.tag, "literal too large")
        cmd.octets += announce.size
        if cmd.octets > self._max_command:
            return self._close(cmd.tag, "command too long")
        self._mode = _Mode.LITERAL
        self._remaining = announce.size
        self._binary = announce.binary
        return Continue() if announce.sync else None

    def _drain_literal(self) -> bool:
        """Move buffered octets into the literal (or drop them); True once it is complete."""
        if self._remaining and self._buf:
            take = min(self._remaining, len(self._buf))
            if self._mode is _Mode.LITERAL:
                self._chunks.append(self._pop(take))
            else:
                del self._buf[:take]
            self._remaining -= take
        return self._remaining == 0

    def _end_literal(self) -> Reject | None:
        data = b"".join(self._chunks)
        self._chunks = []
        self._mode = _Mode.LINE
        cmd = self._cmd
        assert cmd is not None  # LITERAL is entered from _announce only
        if not self._binary and b"\x00" in data:
            # RFC 9051 §9: a literal is CHAR8, which excludes NUL; literal8 may hold it.
            self._cmd = None
            self._begin_skip(None)
            return Reject(cmd.tag, "BAD", None, "NUL octet in literal", close=False)
        cmd.stack[-1].append(String(data, literal=True, binary=self._binary))
        cmd.after_value = True
        return None

    # --- plumbing ------------------------------------------------------------------------------

    def _pop(self, n: int) -> bytes:
        """Remove and return the first n buffered octets: one copy (deleting the head of a
        bytearray is O(1) in CPython)."""
        with memoryview(self._buf) as view, view[:n] as head:
            data = head.tobytes()
        del self._buf[:n]
        self._scanned = 0
        return data

    def _close(self, tag: str | None, text: str) -> Reject:
        self.discard()
        self._mode = _Mode.CLOSED
        return Reject(tag, "BAD", "TOOBIG", text, close=True)


def _readable_tag(line: bytes) -> str | None:
    """The tag of a line that will not be parsed, if it starts with one and a space."""
    m = _TAG.match(line)
    if m is None or line[m.end() : m.end() + 1] != b" ":
        return None
    return m.group().decode("ascii")


def _strip_eol(raw: bytes) -> bytes:
    if raw.endswith(b"\r\n"):
        return raw[:-2]
    return raw[:-1] if raw.endswith(b"\n") else raw


# --- the grammar --------------------------------------------------------------------------------


def _parse_line(cmd: _Partial, line: bytes) -> _Announce | None:
    """Parse one line of ``cmd`` (terminator removed) into it; returns the literal announcement
    that ends the line, if any. Raises `_Bad`."""
    i = 0
    if cmd.tag is None:
        i = _parse_tag(cmd, line)
    if b"\x00" in line:  # RFC 9051 §4.3.1, §9 CHAR8: NUL only inside literal8
        raise _Bad("NUL octet in command")
    if not cmd.name:
        i = _parse_name(cmd, line, i)
    return _parse_args(cmd, line, i)


def _parse_tag(cmd: _Partial, line: bytes) -> int:
    if not line:
        raise _Bad("empty command line")
    m = _TAG.match(line)
    if m is None or line[m.end() : m.end() + 1] not in (b"", b" "):
        raise _Bad("invalid tag")
    cmd.tag = m.group().decode("ascii")
    return m.end()


def _parse_name(cmd: _Partial, line: bytes, i: int) -> int:
    name, i = _command_atom(line, i, "missing command name")
    if name == "UID":  # RFC 9051 §6.4.9: UID COPY, MOVE, FETCH, SEARCH, STORE, EXPUNGE
        sub, i = _command_atom(line, i, "missing command after UID")
        name = f"UID {sub}"
    cmd.name = name
    return i


def _command_atom(line: bytes, i: int, missing: str) -> tuple[str, int]:
    i = _skip_spaces(line, i)
    m = _NAME.match(line, i)
    if m is None:
        raise _Bad(missing if i == len(line) else "invalid command name")
    end = m.end()
    if line[end : end + 1] not in (b"", b" "):
        raise _Bad("invalid command name")
    return m.group().decode("ascii").upper(), end


def _skip_spaces(line: bytes, i: int) -> int:
    while line[i : i + 1] == b" ":
        i += 1
    return i


def _parse_args(cmd: _Partial, line: bytes, i: int) -> _Announce | None:
    """Arguments separated by spaces (runs of them, and trailing ones, are tolerated)."""
    stack = cmd.stack
    n = len(line)
    while i < n:
        c = line[i]
        if c == 0x20:
            i += 1
            cmd.after_value = False
            continue
        if c == 0x29:  # ")"
            if len(stack) == 1:
                raise _Bad("unbalanced parentheses: unexpected )")
            inner = tuple(stack.pop())
            stack[-1].append(inner)
            cmd.after_value = True
            i += 1
            continue
        if cmd.after_value:
            raise _Bad("expected a space between arguments")
        if c == 0x28:  # "("
            if len(stack) > MAX_NESTING:
                raise _Bad("lists nested too deeply")
            stack.append([])
            i += 1
            continue
        value: Value
        if c == 0x22:  # '"'
            value, i = _quoted(line, i)
        elif c == 0x7B or (c == 0x7E and line[i + 1 : i + 2] == b"{"):  # "{" or "~{"
            return _announcement(line, i)
        else:
            value, i = _atom(line, i)
        stack[-1].append(value)
        cmd.after_value = True
    if len(stack) > 1:
        raise _Bad("unbalanced parentheses: missing )")
    return None


def _quoted(line: bytes, i: int) -> tuple[String, int]:
    m = _QUOTED.match(line, i)
    if m is None:
        raise _Bad("malformed quoted string")
    data = m.group(1)
    if b"\\" in data:
        data = _UNESCAPE.sub(rb"\1", data)
    return String(data), m.end()


def _announcement(line: bytes, i: int) -> _Announce:
    m = _LITERAL.match(line, i)
    if m is None:
        raise _Bad("invalid literal announcement")
    if m.end() != len(line):
        raise _Bad("a literal announcement must end the line")
    digits = m.group(2).lstrip(b"0") or b"0"
    if len(digits) > 19 or int(digits) > _MAX_NUMBER64:
        raise _Bad("literal size out of range")
    return _Announce(int(digits), sync=not m.group(3), binary=bool(m.group(1)))


def _atom(line: bytes, i: int) -> tuple[Atom, int]:
    """Atom characters with any number of bracketed sections, kept exactly as sent."""
    start = i
    n = len(line)
    while i < n:
        m = _ATOM_RUN.match(line, i)
        if m is not None:
            i = m.end()
        if line[i : i + 1] != b"[":
            break
        i = _section_end(line, i)
    if i == start:
        raise _Bad(f"invalid character 0x{line[i]:02x}")
    try:
        return Atom(line[start:i].decode("utf-8")), i
    except UnicodeDecodeError:
        raise _Bad("atom is not valid UTF-8") from None


def _section_end(line: bytes, i: int) -> int:
    """The index after the "]" matching the "[" at ``i``. Sections nest, and a "]" inside a
    quoted string does not count (``HEADER.FIELDS ("X]")``)."""
    start = i
    depth = 0
    while True:
        m = _SECTION_STOP.search(line, i)
        if m is None:
            raise _Bad("unterminated [ in atom")
        i = m.end()
        c = line[m.start()]
        if c == 0x22:  # '"'
            q = _SECTION_QUOTED.match(line, i)
            if q is None:
                raise _Bad("unterminated [ in atom")
            i = q.end()
            continue
        depth += 1 if c == 0x5B else -1
        if depth == 0:
            if _CTL.search(line, start, i):
                raise _Bad("control character in atom")
            return i
