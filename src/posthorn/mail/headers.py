"""Header blocks of stored messages: find them, pick fields, read MIME values and address lists.

The header half of the parse-once scanner (`posthorn.mail.mime` does the body structure). Every
function here is total: malformed input gives a best-effort value, never an exception.

Invariants:
- Wire bytes become ``str`` at one point, `header_fields`, decoded as UTF-8 with
  ``surrogateescape`` so 8-bit junk survives exactly (``value.encode("utf-8", "surrogateescape")``
  gives the octets back).
- Values are unfolded (RFC 5322 §2.2.3) and stripped of surrounding whitespace, nothing more:
  RFC 2047 encoded-words stay encoded, because IMAP ENVELOPE returns them raw (RFC 3501 §7.4.2).
- Only the fields ENVELOPE, BODYSTRUCTURE and threading need are extracted, and for each only
  its first occurrence.
- Type, subtype, disposition and parameter names are lower-cased; parameter values are kept as
  found, unquoted, with RFC 2231 continuations joined and ``charset'lang'`` values decoded when
  the charset is known (see `parse_params`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import unquote_to_bytes

from posthorn.mail.info import EnvelopeAddress, Params

# RFC 5322 §2.1 / RFC 2046 §5.1.1: the header ends at the first empty line. Bare LF is accepted
# as a line end, so the empty line is LF followed by an optional CR and LF.
_BLANK_LINE = re.compile(rb"\n\r?\n")

# RFC 5322 §2.2 field = name ":" value, continuation lines start with WSP (§2.2.3). Only the
# names we use are matched, so the regex engine skips every other field without Python code;
# anchoring on a literal LF (the block gets one prepended) lets it jump from line to line.
# Whitespace before the colon is obsolete syntax we still accept (RFC 5322 §4.5).
_FIELD = re.compile(
    rb"\n(content-(?:type|transfer-encoding|id|description|disposition|language|location|md5)"
    rb"|date|subject|from|sender|reply-to|to|cc|bcc|in-reply-to|message-id|references)"
    rb"[ \t]*:(.*(?:\r?\n[ \t].*)*)",
    re.IGNORECASE,
)
# RFC 5322 §2.2.3: unfolding removes each CRLF that is immediately followed by WSP.
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def find_body(data: bytes, start: int, end: int) -> tuple[int, int]:
    """Split ``data[start:end]`` into header and body: return ``(header_end, body_start)``.

    The header includes the line end of its last field; the empty line belongs to neither.
    Without an empty line the whole range is header and the body is empty at ``end``.
    """
    if data.startswith(b"\n", start, end):
        return start, start + 1
    if data.startswith(b"\r\n", start, end):
        return start, start + 2
    m = _BLANK_LINE.search(data, start, end)
    if m is None:
        return end, end
    return m.start() + 1, m.end()


def header_fields(block: bytes) -> dict[str, str]:
    """The first occurrence of each field we use, by lower-cased name, unfolded and stripped."""
    fields: dict[str, str] = {}
    for m in _FIELD.finditer(b"\n" + block):
        name = m.group(1).lower().decode("ascii")
        if name in fields:
            continue
        value = m.group(2)
        if b"\n" in value:
            value = _FOLD.sub(b"", value)
        fields[name] = value.strip(b" \t\r\n").decode("utf-8", "surrogateescape")
    return fields


# ---------------------------------------------------------------------------------------------
# MIME structured values: Content-Type, Content-Disposition, Content-Language (RFC 2045 §5.1,
# RFC 2183 §2, RFC 3282 §2). Comments (RFC 5322 §3.2.2) are allowed anywhere between tokens.

# RFC 2045 §5.1: token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>; 8-bit is
# tolerated so junk still yields a value.
_MIME_TOKEN = re.compile(r'[ \t]*([^\x00-\x20\x7f()<>@,;:\\"/\[\]?=]+)')
_MIME_TYPE = re.compile(
    r'[ \t]*([^\x00-\x20\x7f()<>@,;:\\"/\[\]?=]+)[ \t]*/[ \t]*([^\x00-\x20\x7f()<>@,;:\\"/\[\]?=]+)'
)
_SPLIT_SEMI = re.compile(r'"(?:[^"\\]|\\.)*"?|[;(]', re.DOTALL)
_SPLIT_COMMA = re.compile(r'"(?:[^"\\]|\\.)*"?|[,(]', re.DOTALL)
_COMMENT_SCAN = re.compile(r"\\.|[()]", re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
# RFC 2231 §3/§4: name*N (continuation), name* (extended), name*N* (both).
_EXT_NAME = re.compile(r"([^*]+)\*(?:([0-9]{1,4})\*?|)")


def _comment_end(text: str, pos: int) -> int:
    """Index just after the (possibly nested) comment opening at ``text[pos]``."""
    depth = 0
    for m in _COMMENT_SCAN.finditer(text, pos):
        c = m.group()
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return m.end()
    return len(text)


def _unescape(text: str) -> str:
    return _QUOTED_PAIR.sub(r"\1", text) if "\\" in text else text


def _split(value: str, sep: str) -> list[str]:
    """Split on ``sep`` (";" or ",") outside quoted strings, dropping comments."""
    if '"' not in value and "(" not in value:
        return value.split(sep)
    scanner = _SPLIT_SEMI if sep == ";" else _SPLIT_COMMA
    segments: list[str] = []
    pieces: list[str] = []
    start = pos = 0
    while (m := scanner.search(value, pos)) is not None:
        tok = m.group()
        if tok == "(":
            pieces.append(value[start : m.start()])
            pieces.append(" ")
            start = pos = _comment_end(value, m.start())
        elif tok == sep:
            pieces.append(value[start : m.start()])
            segments.append("".join(pieces))
            pieces = []
            start = pos = m.end()
        else:  # a quoted string: separators inside it do not count
            pos = m.end()
    pieces.append(value[start:])
    segments.append("".join(pieces))
    return segments


def _unquote(value: str) -> str:
    """A parameter value: quoted-string content, or the raw text (RFC 2045 §5.1 value)."""
    if not value.startswith('"'):
        return value
    m = re.match(r'"((?:[^"\\]|\\.)*)', value, re.DOTALL)
    return _unescape(m.group(1)) if m else value[1:]


def parse_content_type(value: str) -> tuple[str, str, Params] | None:
    """``(type, subtype, params)`` lower-cased, or None when there is no ``type/subtype``.

    RFC 2045 §5.2 says to treat a syntactically invalid Content-Type like a missing one; the
    caller applies the default.
    """
    segments = _split(value, ";")
    m = _MIME_TYPE.match(segments[0])
    if m is None:
        return None
    return m.group(1).lower(), m.group(2).lower(), parse_params(segments[1:])


def parse_disposition(value: str) -> tuple[str, Params] | None:
    """RFC 2183 §2: ``(disposition-type, params)``, or None without a type token."""
    segments = _split(value, ";")
    m = _MIME_TOKEN.match(segments[0])
    if m is None:
        return None
    return m.group(1).lower(), parse_params(segments[1:])


def parse_language(value: str) -> tuple[str, ...] | None:
    """RFC 3282 §2: Content-Language is a comma-separated list of tags; None when empty."""
    tags = tuple(t for t in (s.strip() for s in _split(value, ",")) if t)
    return tags or None


def parse_encoding(value: str | None) -> str:
    """RFC 2045 §6.1: the mechanism token, lower-cased; "7bit" when absent or empty."""
    if value is None:
        return "7bit"
    m = _MIME_TOKEN.match(_split(value, ";")[0])
    return m.group(1).lower() if m else "7bit"


def parse_params(segments: Sequence[str]) -> Params:
    """Parameters from ``attribute=value`` segments, RFC 2231 applied (first occurrence wins).

    RFC 2231 §3: ``name*0``, ``name*1`` ... are joined in numeric order. RFC 2231 §4: an
    extended value ``charset'lang'%XX...`` is percent-decoded and decoded with its charset into
    ``name``; it replaces a plain ``name`` (RFC 6266 §4.3 prefers the extended form). When the
    charset is unknown or the octets do not decode, it stays raw, as found, under ``name*``, so
    an IMAP client can still decode it.
    """
    plain: dict[str, str] = {}
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    order: dict[str, None] = {}  # names in order of first appearance
    for seg in segments:
        name, eq, raw = seg.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            continue
        value = _unquote(raw.strip())
        m = _EXT_NAME.fullmatch(name)
        if m is None:
            plain.setdefault(name, value)
            order[name] = None
        else:
            number = m.group(2)
            section = (int(number) if number else 0, name.endswith("*"), value)
            sections.setdefault(m.group(1), []).append(section)
            order[m.group(1)] = None
    out: list[tuple[str, str]] = []
    for name in order:
        parts = sections.get(name)
        joined = None if parts is None else _join_rfc2231(parts)
        if joined is not None:
            out.append((name, joined))
            continue
        if name in plain:
            out.append((name, plain[name]))
        if parts is not None:
            out.append((name + "*", "".join(v for _, _, v in sorted(parts, key=_section))))
    return tuple(out)


def _section(part: tuple[int, bool, str]) -> int:
    return part[0]


def _join_rfc2231(parts: list[tuple[int, bool, str]]) -> str | None:
    """Joined (and decoded) value of RFC 2231 sections, or None if it must stay raw."""
    seen: set[int] = set()
    ordered = []
    for part in sorted(parts, key=_section):
        if part[0] not in seen:  # a repeated section number: the first one wins
            seen.add(part[0])
            ordered.append(part)
    if not ordered[0][1]:
        # RFC 2231 §4.1: the charset is only in an extended first section; without one, the
        # sections are literal text.
        return "".join(v for _, _, v in ordered)
    charset, q1, rest = ordered[0][2].partition("'")
    _lang, q2, first = rest.partition("'")
    if not (q1 and q2):
        return None
    chunks = [first] + [v for _, _, v in ordered[1:]]
    octets = b"".join(
        unquote_to_bytes(v.encode("utf-8", "surrogateescape"))
        if ext
        else v.encode("utf-8", "surrogateescape")
        for v, (_, ext, _) in zip(chunks, ordered, strict=True)
    )
    try:
        return octets.decode(charset.strip() or "utf-8")
    except (LookupError, UnicodeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Address lists (RFC 5322 §3.4), shaped for IMAP ENVELOPE (RFC 3501 §7.4.2).

_Tok = tuple[str, str, str]  # (kind, text, raw): kind "a" atom, "q" quoted, "c" comment, special
_ADDR_TOKEN = re.compile(
    r"(?P<ws>[ \t\r\n]+)"
    r'|(?P<q>"(?:[^"\\]|\\.)*"?)'
    r"|(?P<a>\[(?:[^\]\\]|\\.)*\]?"  # RFC 5322 §3.4.1 domain-literal, kept as one atom
    r'|[^ \t\r\n"()<>@,;:\[]+)'  # atoms are lenient: dots, 8-bit and stray ")" included
    r"|(?P<s>[<>@,;:])",
    re.DOTALL,
)
_STOP = frozenset(",;")  # ";" ends a group, and separates like "," elsewhere (a common slip)
_WORD = frozenset("aq")
_PHRASE_KINDS = frozenset("aqc")


def _tokenize(value: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos, n = 0, len(value)
    while pos < n:
        if value[pos] == "(":
            end = _comment_end(value, pos)
            inner = value[pos + 1 : end - 1] if value[end - 1 : end] == ")" else value[pos + 1 :]
            toks.append(("c", _unescape(inner), ""))
            pos = end
            continue
        m = _ADDR_TOKEN.match(value, pos)
        if m is None:  # unreachable: the alternatives cover every character
            pos += 1
            continue
        pos = m.end()
        kind, raw = m.lastgroup, m.group()
        if kind == "q":
            body = raw[1:-1] if len(raw) > 1 and raw.endswith('"') else raw[1:]
            toks.append(("q", _unescape(body), raw))
        elif kind == "a":
            toks.append(("a", raw, raw))
        elif kind == "s":
            toks.append((raw, raw, raw))
    return toks


def _phrase(toks: Sequence[_Tok]) -> str:
    """RFC 5322 §3.2.5 phrase: words joined by one space, quotes and comments removed."""
    out: list[str] = []
    prev_word = False
    for kind, text, _raw in toks:
        if kind == "c":
            continue
        word = kind in _WORD
        if out and word and prev_word:
            out.append(" ")
        out.append(text)
        prev_word = word
    return "".join(out)


def _join_addr(toks: Sequence[_Tok]) -> str:
    """A local part or domain as written (quotes kept); obs-local-part spaces around dots go."""
    out: list[str] = []
    prev_word = False
    for kind, _text, raw in toks:
        word = kind in _WORD
        if out and word and prev_word and not (raw.startswith(".") or out[-1].endswith(".")):
            out.append(" ")
        out.append(raw)
        prev_word = word
    return "".join(out)


def _addr_spec(toks: Sequence[_Tok]) -> tuple[str, str, str | None]:
    """``(mailbox, host, last comment)`` of an RFC 5322 §3.4.1 addr-spec; host "" if no "@"."""
    local: list[_Tok] = []
    domain: list[_Tok] = []
    at_seen = False
    comment = None
    for tok in toks:
        if tok[0] == "c":
            comment = tok[1]
        elif tok[0] == "@" and not at_seen:
            at_seen = True
        else:
            (domain if at_seen else local).append(tok)
    return _join_addr(local), _join_addr(domain), comment


def _name_addr(toks: list[_Tok], start: int, lt: int, out: list[EnvelopeAddress]) -> int:
    """RFC 5322 §3.4 name-addr from ``toks[start]``, ``toks[lt]`` being its "<"."""
    n = len(toks)
    name = _phrase(toks[start:lt]) or None
    k = lt + 1
    route = None
    if k < n and toks[k][0] == "@":
        # RFC 5322 §4.4 obs-route "@a,@b:" (RFC 3501 §7.4.2 keeps it as the route).
        j = k
        while j < n and toks[j][0] not in ":>":
            j += 1
        if j < n and toks[j][0] == ":":
            route = _join_addr(toks[k:j])
            k = j + 1
    j = k
    while j < n and toks[j][0] not in ">,;":
        j += 1
    mailbox, host, _ = _addr_spec(toks[k:j])
    out.append(EnvelopeAddress(name, route, mailbox, host))
    while j < n and toks[j][0] not in _STOP:  # the ">" and any junk after it
        j += 1
    return j


def _mailbox(toks: list[_Tok], start: int, out: list[EnvelopeAddress]) -> int:
    """RFC 5322 §3.4 mailbox from ``toks[start]``; returns the index of its terminator."""
    j = start
    n = len(toks)
    while j < n and toks[j][0] not in _STOP:
        if toks[j][0] == "<":
            return _name_addr(toks, start, j, out)
        j += 1
    mailbox, host, comment = _addr_spec(toks[start:j])
    if mailbox or host:
        # Like Dovecot: "user@host (Real Name)" gives the comment as the display name.
        name = comment.strip() if comment else None
        out.append(EnvelopeAddress(name or None, None, mailbox, host))
    return j


def _starts_group(toks: list[_Tok], i: int) -> bool:
    """RFC 5322 §3.4: a group is a display-name followed by ":"."""
    for k in range(i, len(toks)):
        kind = toks[k][0]
        if kind not in _PHRASE_KINDS:
            return kind == ":"
    return False


def _group(toks: list[_Tok], start: int, out: list[EnvelopeAddress]) -> int:
    """RFC 5322 §3.4 group, flattened as RFC 3501 §7.4.2 says: a start and an end marker."""
    k = start
    while toks[k][0] != ":":
        k += 1
    out.append(EnvelopeAddress(None, None, _phrase(toks[start:k]), None))
    k += 1
    n = len(toks)
    while k < n:
        kind = toks[k][0]
        if kind == ";":
            k += 1
            break
        if kind in ",:>":
            k += 1
            continue
        k = _mailbox(toks, k, out)
    out.append(EnvelopeAddress(None, None, None, None))  # also for an unterminated group
    return k


def parse_address_list(value: str | None) -> tuple[EnvelopeAddress, ...]:
    """An RFC 5322 §3.4 address-list as ENVELOPE address structures; garbage-tolerant.

    Names and group names are phrase content (quotes and escapes removed, encoded-words raw);
    mailbox and host are the local part and domain as written (a quoted local part keeps its
    quotes, so ``mailbox + "@" + host`` is a valid address again). A missing domain gives
    ``host=""`` and an empty ``<>`` gives ``mailbox="", host=""``: never None, which marks groups.
    """
    if not value:
        return ()
    toks = _tokenize(value)
    out: list[EnvelopeAddress] = []
    i, n = 0, len(toks)
    while i < n:
        if toks[i][0] in ",;>":
            i += 1
        elif _starts_group(toks, i):
            i = _group(toks, i, out)
        else:
            i = _mailbox(toks, i, out)
    return tuple(out)


# RFC 5322 §3.6.4 msg-id = "<" id-left "@" id-right ">"; folding whitespace inside is dropped.
_MSG_ID = re.compile(r"<([^<>]*)>")
_WSP = re.compile(r"\s+")


def msg_ids(value: str | None) -> tuple[str, ...]:
    """The ``<...>`` message ids in a References / In-Reply-To value, brackets kept."""
    if not value:
        return ()
    ids = (_WSP.sub("", m) for m in _MSG_ID.findall(value))
    return tuple(f"<{i}>" for i in ids if i)
