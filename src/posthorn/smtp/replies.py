"""The SMTP client's wire format, pure: reply bytes in, `Reply` values out; commands and the
DATA stream out (STYLE.md point 1). The socket code is `posthorn.smtp.client`; the server side's
equivalents are `posthorn.smtp.protocol` and `posthorn.smtp.codes`.

Owns: splitting the server's byte stream into replies (RFC 5321 §4.2, multi-line replies
§4.2.1), the enhanced status code in front of the text (RFC 2034 §3, RFC 3463 §2), the EHLO
reply's extension keywords (RFC 5321 §4.1.1.1), the MAIL/RCPT command lines with their ESMTP
parameters, and dot-stuffing (RFC 5321 §4.5.2).

Invariants:

- `ReplyReader.feed` returns replies or raises `ReplyError`; nothing else escapes, whatever the
  bytes (a hypothesis test feeds arbitrary ones). A server that breaks the grammar is a
  temporary problem of that server, never a reason to guess.
- Memory is bounded: one line is at most `MAX_LINE` octets, one reply at most `MAX_LINES`
  lines and `MAX_REPLY` octets; past that the reader raises instead of buffering on.
- Reply text is safe to put into a log line or a DSN field: control characters become spaces
  and invalid UTF-8 becomes U+FFFD (RFC 6531 §3.7.4.2 lets servers send UTF-8 text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from posthorn.queue.envelope import Notify
from posthorn.smtp.codes import Reply
from posthorn.smtp.protocol import BODY_TYPES, xtext_encode

__all__ = [
    "MAX_LINE",
    "MAX_LINES",
    "MAX_REPLY",
    "DotStuffer",
    "Extensions",
    "ReplyError",
    "ReplyReader",
    "mail_command",
    "parse_ehlo",
    "rcpt_command",
    "size_limit",
]

# RFC 5321 §4.5.3.1.5 sets 512 octets for a reply line; real servers exceed it (long EHLO
# AUTH lists, verbose 5xx texts), so we are lenient by a factor of eight but still bounded.
MAX_LINE: Final = 4096
MAX_LINES: Final = 200  # an EHLO reply has a few dozen lines at most
MAX_REPLY: Final = 64 * 1024

# RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39; then SP, "-" or the line end.
_LINE: Final = re.compile(rb"([2-5][0-5][0-9])([ -]|\Z)(.*)\Z", re.DOTALL)
# RFC 3463 §2: status-code = class "." subject "." detail, followed by a space or the end.
_ENHANCED: Final = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: |\Z)")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# RFC 5321 §4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
_KEYWORD: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_NOTIFY_ORDER: Final = (Notify.NEVER, Notify.SUCCESS, Notify.FAILURE, Notify.DELAY)
_MAX_ORCPT_PARAM: Final = 500  # RFC 3461 §4.2

Extensions = dict[str, str]
"""EHLO keywords, upper-cased, to their parameters as one string (``""`` when none)."""


class ReplyError(ValueError):
    """The server's bytes are not a well-formed SMTP reply, or are too long."""


@dataclass(slots=True)
class _Partial:
    code: bytes
    lines: list[str]
    octets: int


class ReplyReader:
    """Incremental reply parser: `feed` raw socket bytes, get complete replies back.

    Bytes after a complete reply stay buffered for the next one (pipelined replies, RFC 2920
    §3.1); `buffered` says how many, so a client can refuse data that arrived where none may
    (before a TLS handshake, RFC 3207 §4.2).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._partial: _Partial | None = None

    @property
    def buffered(self) -> int:
        """Octets received but not yet part of a returned reply."""
        return len(self._buf) + (self._partial.octets if self._partial else 0)

    def feed(self, data: bytes) -> list[Reply]:
        """Take the next bytes; return the replies they complete, in order."""
        self._buf += data
        replies: list[Reply] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    raise ReplyError(f"reply line longer than {MAX_LINE} octets")
                return replies
            if end + 1 > MAX_LINE:
                raise ReplyError(f"reply line longer than {MAX_LINE} octets")
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            reply = self._line(line[:-1] if line.endswith(b"\r") else line, end + 1)
            if reply is not None:
                replies.append(reply)

    def _line(self, line: bytes, octets: int) -> Reply | None:
        m = _LINE.match(line)
        if m is None:
            raise ReplyError(f"malformed reply line {line[:40]!r}")
        code, sep, text = m.groups()
        part = self._partial
        if part is None:
            part = self._partial = _Partial(code, [], 0)
        elif code != part.code:  # RFC 5321 §4.2.1: the same code on every line
            raise ReplyError(f"reply code changed from {part.code!r} to {code!r} mid-reply")
        part.lines.append(_text(text))
        part.octets += octets
        if len(part.lines) > MAX_LINES or part.octets > MAX_REPLY:
            raise ReplyError("reply too long")
        if sep == b"-":
            return None
        self._partial = None
        return _reply(int(code), part.lines)


def _text(raw: bytes) -> str:
    return _CONTROL.sub(" ", raw.decode("utf-8", "replace"))


def _reply(code: int, lines: list[str]) -> Reply:
    """Build the `Reply`, taking the enhanced code off the front of every line that has it.

    RFC 2034 §3: with ENHANCEDSTATUSCODES every line starts with the same status code; its
    class must be the reply code's class (RFC 3463 §2), otherwise it is left as text.
    """
    m = _ENHANCED.match(lines[0])
    enhanced = None
    if m is not None and m[1] == str(code)[0]:
        enhanced = f"{m[1]}.{int(m[2])}.{int(m[3])}"
        prefix = m[0].rstrip(" ")
        lines = [
            line[len(prefix) :].lstrip(" ") if line.startswith(prefix) else line for line in lines
        ]
    return Reply(code, enhanced, "\n".join(lines))


def parse_ehlo(reply: Reply) -> Extensions:
    """The service extensions of a 250 EHLO reply (RFC 5321 §4.1.1.1 ehlo-ok-rsp).

    The first line is the server's name and greeting, not an extension. Lines that are not
    ``keyword [params]`` are skipped; a repeated keyword keeps its first parameters. The
    pre-RFC 2554 form ``AUTH=PLAIN LOGIN`` still sent by old servers counts as ``AUTH``
    when no proper ``AUTH`` line is present.
    """
    found: Extensions = {}
    legacy_auth: str | None = None
    for line in reply.text.split("\n")[1:]:
        keyword, _, params = line.strip(" ").partition(" ")
        if keyword.upper().startswith("AUTH="):
            legacy_auth = " ".join([keyword[5:], params]).strip(" ")
            continue
        if not _KEYWORD.match(keyword):
            continue
        found.setdefault(keyword.upper(), " ".join(params.split()))
    if legacy_auth is not None:
        found.setdefault("AUTH", legacy_auth)
    return found


def size_limit(extensions: Extensions) -> int | None:
    """The server's fixed message size limit in octets, or None for none known (RFC 1870 §4).

    ``SIZE`` without a number, ``SIZE 0`` or a garbled number all mean "no limit announced".
    """
    if "SIZE" not in extensions:
        return None
    value = extensions["SIZE"]
    if not value.isascii() or not value.isdigit() or len(value) > 20:  # RFC 1870 §3: 1*20DIGIT
        return None
    limit = int(value)
    return limit or None


# --- commands and message data -----------------------------------------------------------


def mail_command(
    mail_from: str,
    *,
    extensions: Extensions,
    size: int,
    body: str = "7BIT",
    smtputf8: bool = False,
    ret: str | None = None,
    envid: str | None = None,
) -> bytes:
    """``MAIL FROM:<addr> [params]`` CRLF with only the parameters ``extensions`` allow.

    SIZE (RFC 1870 §3), BODY (RFC 6152 §2 / RFC 3030 §3; 7BIT is the default and left out),
    SMTPUTF8 (RFC 6531 §3.4), RET and ENVID (RFC 3461 §4.3, §4.4; ENVID as xtext). Whether a
    needed extension is missing is the caller's check (`Client.send`); here the parameter is
    just left out.
    """
    if body not in BODY_TYPES:
        raise ValueError(f"unknown BODY type {body!r}")
    params: list[str] = []
    if "SIZE" in extensions:
        params.append(f"SIZE={size}")
    if body != "7BIT" and body in extensions:
        params.append(f"BODY={body}")
    if smtputf8 and "SMTPUTF8" in extensions:
        params.append("SMTPUTF8")
    if "DSN" in extensions:
        if ret:
            params.append(f"RET={ret.upper()}")
        if envid:
            params.append(f"ENVID={xtext_encode(envid)}")
    return _command("MAIL FROM:", mail_from, params, smtputf8)


def rcpt_command(
    address: str,
    notify: frozenset[Notify] | None = None,
    orcpt: str | None = None,
    *,
    dsn: bool,
    smtputf8: bool = False,
) -> bytes:
    """``RCPT TO:<addr> [NOTIFY=… ORCPT=…]`` CRLF; the DSN parameters only when ``dsn``
    (RFC 3461 §4: a client MUST NOT send them to a server that did not offer DSN)."""
    params: list[str] = []
    if dsn and notify:
        # RFC 3461 §4.1: NEVER alone, or a comma list of SUCCESS, FAILURE, DELAY.
        params.append("NOTIFY=" + ",".join(n.value for n in _NOTIFY_ORDER if n in notify))
    if dsn and orcpt:
        addr_type, semi, original = orcpt.partition(";")
        param = f"ORCPT={addr_type};{xtext_encode(original)}"  # RFC 3461 §4.2
        # A malformed or over-long ORCPT is dropped rather than failing the delivery.
        if semi and addr_type and addr_type.isascii() and len(param) <= _MAX_ORCPT_PARAM:
            params.append(param)
    return _command("RCPT TO:", address, params, smtputf8)


def _command(verb: str, address: str, params: list[str], utf8: bool) -> bytes:
    # RFC 5321 §2.3.8: CR and LF only as the line end; a path holding one would inject a command.
    if any(c < " " or c == "\x7f" for c in address):
        raise ValueError(f"control character in address {address!r}")
    line = f"{verb}<{address}>{''.join(' ' + p for p in params)}\r\n"
    # RFC 6531 §3.4: UTF-8 in the path only with SMTPUTF8; ASCII encoding enforces it.
    return line.encode("utf-8" if utf8 else "ascii")


class DotStuffer:
    """Message octets in, the DATA stream out (RFC 5321 §4.5.2 dot transparency).

    Feed the message in chunks of any size; `finish` returns the end-of-data indicator
    ``CRLF.CRLF``, adding the last line's CRLF when the message lacks it. A bare LF becomes
    CRLF (RFC 5321 §2.3.8; the receiver would otherwise refuse or misread it; bare CR passes).
    Bulk ``bytes.replace`` per chunk, never a loop per line (DESIGN.md "Bulk I/O").
    """

    def __init__(self) -> None:
        self._line_start = True
        self._held_cr = False  # a chunk ended in CR: its LF may start the next one

    def feed(self, chunk: bytes) -> bytes:
        if self._held_cr:
            chunk = b"\r" + chunk
            self._held_cr = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            self._held_cr = True
        if not chunk:
            return b""
        out = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        out = out.replace(b"\r\n.", b"\r\n..")
        if self._line_start and out.startswith(b"."):
            out = b"." + out
        self._line_start = out.endswith(b"\n")
        return out

    def finish(self) -> bytes:
        if self._held_cr:  # a CR at the very end: its line end
            self._held_cr = False
            self._line_start = True
            return b"\r\n.\r\n"
        return b".\r\n" if self._line_start else b"\r\n.\r\n"
