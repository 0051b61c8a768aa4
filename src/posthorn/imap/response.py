"""IMAP response serialisation primitives: strings, flag lists, mailbox names, status lines.

Everything returns wire ``bytes`` (the ``*_text`` variants return ``str`` for builders that
encode a whole response once, with UTF-8 + ``surrogateescape``). ``str`` input is encoded the
same way, so header values from `posthorn.mail.info` go out as their exact original octets.

A string becomes a quoted string when that is safe (RFC 9051 §4.3: no CR, LF or NUL; 7-bit,
or valid UTF-8 once UTF8=ACCEPT is enabled, RFC 6855 §3), else a literal ``{n}`` CRLF octets.
These run for every string of every ENVELOPE and BODYSTRUCTURE, so the checks are single
regex searches, never Python loops over characters.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Iterable

from posthorn.imap import utf7

# RFC 9051 §9: QUOTED-CHAR is any TEXT-CHAR (CHAR = %x01-7F without CR, LF), or UTF-8
# sequences when UTF-8 is allowed. In str form invalid UTF-8 shows up as lone surrogates.
_UNQUOTABLE_TEXT_7BIT = re.compile(r"[^\x01-\x09\x0b\x0c\x0e-\x7f]")
_UNQUOTABLE_TEXT_UTF8 = re.compile(r"[\x00\r\n\ud800-\udfff]")
_UNQUOTABLE_7BIT = re.compile(rb"[^\x01-\x09\x0b\x0c\x0e-\x7f]")
_UNQUOTABLE_8BIT = re.compile(rb"[\x00\r\n]")
# RFC 9051 §9: ASTRING-CHAR = ATOM-CHAR / resp-specials; ATOM-CHAR excludes "(" ")" "{" SP,
# CTL, "%" "*", '"' "\" and "]" (which resp-specials gives back).
_ASTRING = re.compile(r"[\x21\x23\x24\x26\x27\x2b-\x5b\x5d-\x7a\x7c-\x7e]+")
_LINE_BREAK = re.compile(r"[\r\n]+")

NIL = b"NIL"


def quote_text(s: str, *, utf8: bool = False) -> str:
    """`quoted_or_literal` in ``str`` form: encoding the result gives the wire octets."""
    return _quote_text_utf8(s) if utf8 else _quote_text_7bit(s)


def _quote_text_7bit(s: str) -> str:
    if _UNQUOTABLE_TEXT_7BIT.search(s) is None:
        if '"' in s or "\\" in s:
            s = s.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + s + '"'
    return f"{{{len(s.encode('utf-8', 'surrogateescape'))}}}\r\n{s}"


def _quote_text_utf8(s: str) -> str:
    if _UNQUOTABLE_TEXT_UTF8.search(s) is None:
        if '"' in s or "\\" in s:
            s = s.replace("\\", "\\\\").replace('"', '\\"')
        return '"' + s + '"'
    return f"{{{len(s.encode('utf-8', 'surrogateescape'))}}}\r\n{s}"


def _nstring_text_7bit(s: str | None) -> str:
    return "NIL" if s is None else _quote_text_7bit(s)


def _nstring_text_utf8(s: str | None) -> str:
    return "NIL" if s is None else _quote_text_utf8(s)


Quoter = Callable[[str | None], str]


def text_quoter(utf8: bool) -> Quoter:
    """The ``str`` nstring writer for a UTF-8 mode, picked once per response rather than
    branching per string (ENVELOPE and BODYSTRUCTURE call it dozens of times)."""
    return _nstring_text_utf8 if utf8 else _nstring_text_7bit


def quoted_or_literal(data: bytes | str, *, utf8: bool = False) -> bytes:
    """A quoted string when safe, else a literal (RFC 9051 §4.3)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if utf8:
        safe = _UNQUOTABLE_8BIT.search(data) is None
        if safe and not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                safe = False
    else:
        safe = _UNQUOTABLE_7BIT.search(data) is None
    if safe:
        if b'"' in data or b"\\" in data:
            data = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return b'"' + data + b'"'
    return b"{%d}\r\n%b" % (len(data), data)


def nstring(x: bytes | str | None, *, utf8: bool = False) -> bytes:
    return NIL if x is None else quoted_or_literal(x, utf8=utf8)


def astring(s: str, *, utf8: bool = False) -> bytes:
    """An atom when every character is an ASTRING-CHAR, else a quoted string or literal.

    ``NIL`` is quoted so that no client can read it as the NIL of an nstring."""
    if _ASTRING.fullmatch(s) is not None and s.upper() != "NIL":
        return s.encode("ascii")
    return quoted_or_literal(s, utf8=utf8)


def flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen $Forwarded)``: flags are atoms (RFC 9051 §9 ``flag-list``)."""
    return b"(" + " ".join(flags).encode("utf-8", "surrogateescape") + b")"


def mailbox_name(name: str, *, utf8: bool) -> bytes:
    """A mailbox name for LIST, STATUS and friends (RFC 9051 §9 ``mailbox``).

    Without UTF-8 the name goes out in modified UTF-7 (RFC 3501 §5.1.3); with UTF8=ACCEPT or
    IMAP4rev2 as UTF-8 (RFC 6855 §3, RFC 9051 §5.1). INBOX is stored as ``INBOX``."""
    if name == "INBOX":
        return b"INBOX"
    return astring(name if utf8 else utf7.encode(name), utf8=utf8)


def _one_line(text: str) -> str:
    """Response text never breaks the line: a CR or LF in it would start a forged response."""
    return _LINE_BREAK.sub(" ", text) if "\r" in text or "\n" in text else text


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    """``tag OK [CODE] text`` CRLF (RFC 9051 §7.1)."""
    text = _one_line(text)
    if code is not None:
        text = "[" + _one_line(code) + "] " + text
    return (tag + " " + status + " " + text + "\r\n").encode("utf-8", "surrogateescape")


def untagged(text: str | bytes) -> bytes:
    """``* text`` CRLF. ``text`` is sent as given: it may hold literals with line breaks."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    return b"* " + text + b"\r\n"


def continuation_b64(data: bytes) -> bytes:
    """A SASL challenge: ``+ <base64>`` CRLF (RFC 9051 §6.2.2); empty data gives ``+ ``."""
    return b"+ " + binascii.b2a_base64(data, newline=False) + b"\r\n"


def continuation(text: str = "") -> bytes:
    """``+ text`` CRLF (RFC 9051 §7.5 ``continue-req``)."""
    return b"+ " + _one_line(text).encode("utf-8", "surrogateescape") + b"\r\n"
