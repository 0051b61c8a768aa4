"""IMAP SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4): parse the keys, run them, format the answer.

Also ESEARCH (RFC 4731), SEARCHRES ``$`` and ``RETURN (SAVE)`` (RFC 5182), CONDSTORE ``MODSEQ``
(RFC 7162 §3.1.5) and WITHIN ``OLDER``/``YOUNGER`` (RFC 5032). SORT and THREAD reuse the parser
and the evaluator (`posthorn.imap.sort`, `posthorn.imap.thread`).

Invariants:
- `parse_search` raises only `ParseError` (BAD) or `Refused` (NO [BADCHARSET]), and its work is
  bounded: at most `MAX_KEYS` keys nested at most `MAX_DEPTH` deep.
- `run_search` is linear in the number of candidates per key. Within an AND the cheap keys
  (flags, sizes, dates, numbers) run first, so header and body keys only see the survivors;
  header octets are read in one `SearchContext.headers` batch per header key, message octets one
  message at a time and never for a message already excluded.
- String matching is a case-insensitive (``casefold``) substring match on decoded text: RFC 2047
  words in headers, Content-Transfer-Encoding and charset in bodies. Decoding never raises.
- Dates compare by calendar date alone, ignoring time and zone (RFC 9051 §6.4.4).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import parsedate_tz
from typing import Protocol, TypeAlias

from posthorn.imap.fetch import decode_base64
from posthorn.imap.sequence import SequenceSet, format_sequence, parse_sequence_set
from posthorn.imap.values import Atom, ParseError, Refused, String, Value, astring, number
from posthorn.mail.info import BodyPart, MessageInfo
from posthorn.mail.mime import parse_message
from posthorn.store.base import MessageMeta

MAX_KEYS = 1000
"""Search keys per command: far more than any client sends; refusing bounds the work."""
MAX_DEPTH = 100
"""Nesting of parentheses, NOT and OR."""
CHARSETS = ("UTF-8", "US-ASCII")
BADCHARSET = "BADCHARSET (UTF-8 US-ASCII)"  # RFC 9051 §7.1: the charsets we do support
RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})  # RFC 4731 §3.1, RFC 5182


@dataclass(frozen=True, slots=True)
class Candidate:
    seq: int
    meta: MessageMeta
    recent: bool = False


class SearchContext(Protocol):
    """What the session gives a search: the mailbox numbers and a way to read octets.

    ``saved`` is the RFC 5182 saved result as UIDs (``[]`` when there is none). ``headers``
    returns the header section (prefix + stored header) of many messages in one call and may
    leave out UIDs that vanished; ``message`` returns one whole message as the reader sees it.
    """

    @property
    def largest_seq(self) -> int: ...  # for * in sequence sets (read-only: any attribute fits)

    @property
    def largest_uid(self) -> int: ...

    @property
    def saved(self) -> Sequence[int]: ...

    async def headers(self, uids: Sequence[int]) -> dict[int, bytes]: ...

    async def message(self, uid: int) -> bytes: ...


# ---------------------------------------------------------------------------------------------
# The parsed keys. Leaves are evaluated by `_Eval`; `cost` orders the children of an AND.


@dataclass(frozen=True, slots=True)
class All:
    pass


@dataclass(frozen=True, slots=True)
class HasFlag:
    """ANSWERED/DELETED/... and KEYWORD (present) or their UN- forms (absent)."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class Recent:
    """RECENT, or OLD (``recent=False``); NEW is RECENT UNSEEN (RFC 9051 §6.4.4)."""

    recent: bool = True


@dataclass(frozen=True, slots=True)
class Size:
    larger: bool
    octets: int


@dataclass(frozen=True, slots=True)
class Numbers:
    """A sequence set over message numbers, or over UIDs (``UID`` key); ``$`` is saved UIDs."""

    set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class DateKey:
    """BEFORE/ON/SINCE (internal date) and SENTBEFORE/SENTON/SENTSINCE (Date header)."""

    op: str  # "before" | "on" | "since"
    day: date
    sent: bool = False


@dataclass(frozen=True, slots=True)
class Within:
    """RFC 5032 OLDER/YOUNGER: internal date older than / within ``seconds`` of now."""

    older: bool
    seconds: int


@dataclass(frozen=True, slots=True)
class ModSeq:
    """RFC 7162 §3.1.5: MODSEQ >= ``modseq``; the optional entry name does not narrow it
    because per-flag mod-sequences are not kept (the message's MODSEQ is used)."""

    modseq: int


@dataclass(frozen=True, slots=True)
class Header:
    """FROM/TO/CC/BCC/SUBJECT and HEADER: ``needle`` (casefolded) in a field named ``field``."""

    field: str
    needle: str


@dataclass(frozen=True, slots=True)
class Text:
    """BODY (``header=False``) or TEXT (header and body)."""

    needle: str
    header: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    key: Key


@dataclass(frozen=True, slots=True)
class Or:
    left: Key
    right: Key


@dataclass(frozen=True, slots=True)
class And:
    keys: tuple[Key, ...]


Key: TypeAlias = (
    All
    | HasFlag
    | Recent
    | Size
    | Numbers
    | DateKey
    | Within
    | ModSeq
    | Header
    | Text
    | Not
    | Or
    | And
)


@dataclass(frozen=True)
class SearchQuery:
    """``return_opts`` None: the plain SEARCH form; ``()``: ``RETURN ()``, which means ALL."""

    key: Key
    charset: str | None = None
    return_opts: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Needs:
    """What the session must load before `run_search`: ``info`` on each `MessageMeta`,
    header octets, message octets, and whether the query names MODSEQ (CONDSTORE-enabling)."""

    info: bool = False
    headers: bool = False
    body: bool = False
    modseq: bool = False

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.info or other.info,
            self.headers or other.headers,
            self.body or other.body,
            self.modseq or other.modseq,
        )


# ---------------------------------------------------------------------------------------------
# Parsing

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc", "SUBJECT": "subject"}
_DATE_KEYS = {
    "BEFORE": ("before", False),
    "ON": ("on", False),
    "SINCE": ("since", False),
    "SENTBEFORE": ("before", True),
    "SENTON": ("on", True),
    "SENTSINCE": ("since", True),
}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
_DATE = re.compile(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_ENTRY_TYPES = frozenset({"PRIV", "SHARED", "ALL"})  # RFC 7162 §3.1.5 entry-type-req
_SEQ_START = frozenset("0123456789*$")


def parse_search(args: Sequence[Value], *, utf8: bool = False) -> SearchQuery:
    """Everything after ``SEARCH`` / ``UID SEARCH``: ``[RETURN (opts)] [CHARSET name] keys``.

    Strings are read as UTF-8 whatever the charset (US-ASCII is a subset); ``utf8`` (RFC 6855
    UTF8=ACCEPT or IMAP4rev2) changes nothing else here, it only documents the caller's mode.
    """
    del utf8
    pos = 0
    return_opts = None
    if pos < len(args) and _is_atom(args[pos], "RETURN"):
        if pos + 1 >= len(args):
            raise ParseError("RETURN needs a list of options")
        return_opts = parse_return(args[pos + 1])
        pos += 2
    charset = None
    if pos < len(args) and _is_atom(args[pos], "CHARSET"):
        if pos + 1 >= len(args):
            raise ParseError("CHARSET needs a name")
        charset = check_charset(astring(args[pos + 1], "charset"))
        pos += 2
    return SearchQuery(parse_keys(args[pos:]), charset, return_opts)


def parse_return(value: Value) -> tuple[str, ...]:
    """RFC 4731 §3.1 ``RETURN (MIN MAX ...)``; unknown options are a syntax error."""
    if not isinstance(value, tuple):
        raise ParseError("RETURN needs a parenthesised list")
    opts: list[str] = []
    for item in value:
        if not isinstance(item, Atom) or item.upper() not in RETURN_OPTIONS:
            raise ParseError("unknown RETURN option")
        if item.upper() not in opts:
            opts.append(item.upper())
    return tuple(opts)


def check_charset(name: str) -> str:
    """RFC 9051 §6.4.4: an unsupported charset is answered ``NO [BADCHARSET (...)]``."""
    if name.upper() not in CHARSETS:
        raise Refused(f"charset {name[:40]!r} is not supported", code=BADCHARSET)
    return name.upper()


def parse_keys(args: Sequence[Value]) -> Key:
    """One or more search keys, ANDed (RFC 9051 §6.4.4: every key must match)."""
    if not args:
        raise ParseError("missing search criteria")
    return _Parser().keys(args, 0)


def _is_atom(value: Value, name: str) -> bool:
    return isinstance(value, Atom) and value.upper() == name


class _Parser:
    """Recursive descent over the argument values; counts keys and depth to bound the work."""

    def __init__(self) -> None:
        self.count = 0

    def keys(self, args: Sequence[Value], depth: int) -> Key:
        if depth > MAX_DEPTH:
            raise ParseError("search keys nested too deeply")
        out: list[Key] = []
        pos = 0
        while pos < len(args):
            key, pos = self.key(args, pos, depth)
            out.append(key)
        if not out:
            raise ParseError("empty search key list")
        return out[0] if len(out) == 1 else And(tuple(out))

    def key(self, args: Sequence[Value], pos: int, depth: int) -> tuple[Key, int]:
        self.count += 1
        if self.count > MAX_KEYS:
            raise ParseError("too many search keys")
        if depth > MAX_DEPTH:
            raise ParseError("search keys nested too deeply")
        value = args[pos]
        pos += 1
        if isinstance(value, tuple):
            return self.keys(value, depth + 1), pos
        if not isinstance(value, Atom):
            raise ParseError("expected a search key")
        name = value.upper()

        def arg(what: str) -> Value:
            if pos >= len(args):
                raise ParseError(f"{name} needs {what}")
            return args[pos]

        if name == "ALL":
            return All(), pos
        if name in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[name]
            return HasFlag(flag, present), pos
        if name in ("RECENT", "OLD"):
            return Recent(name == "RECENT"), pos
        if name == "NEW":
            return And((Recent(True), HasFlag("\\Seen", False))), pos
        if name in ("KEYWORD", "UNKEYWORD"):
            kw = arg("a flag keyword")
            if not isinstance(kw, Atom) or not kw.text or kw.text.startswith("\\"):
                raise ParseError(f"{name} needs a flag keyword")
            return HasFlag(kw.text, name == "KEYWORD"), pos + 1
        if name in ("LARGER", "SMALLER"):
            return Size(name == "LARGER", number(arg("a size"), "size", bits=63)), pos + 1
        if name in _DATE_KEYS:
            op, sent = _DATE_KEYS[name]
            return DateKey(op, _date(arg("a date")), sent), pos + 1
        if name in ("OLDER", "YOUNGER"):
            seconds = number(arg("an interval"), "interval", nz=True)
            return Within(name == "OLDER", seconds), pos + 1
        if name in _HEADER_KEYS:
            return Header(_HEADER_KEYS[name], _needle(arg("a string"))), pos + 1
        if name == "HEADER":
            field = astring(arg("a field name"), "field name")
            if pos + 1 >= len(args):
                raise ParseError("HEADER needs a string")
            if not field or not field.isascii() or ":" in field or not field.isprintable():
                raise ParseError("invalid header field name")
            return Header(field.lower(), _needle(args[pos + 1])), pos + 2
        if name in ("BODY", "TEXT"):
            return Text(_needle(arg("a string")), name == "TEXT"), pos + 1
        if name == "NOT":
            arg("a search key")
            inner, pos = self.key(args, pos, depth + 1)
            return Not(inner), pos
        if name == "OR":
            arg("two search keys")
            left, pos = self.key(args, pos, depth + 1)
            if pos >= len(args):
                raise ParseError("OR needs two search keys")
            right, pos = self.key(args, pos, depth + 1)
            return Or(left, right), pos
        if name == "UID":
            seqset = arg("a sequence set")
            if not isinstance(seqset, Atom):
                raise ParseError("UID needs a sequence set")
            return Numbers(parse_sequence_set(seqset.text), uid=True), pos + 1
        if name == "MODSEQ":
            return self.modseq(args, pos)
        if value.text[:1] in _SEQ_START:
            return Numbers(parse_sequence_set(value.text)), pos
        raise ParseError("unknown search key")

    def modseq(self, args: Sequence[Value], pos: int) -> tuple[Key, int]:
        """RFC 7162 §3.1.5: ``MODSEQ [entry-name entry-type-req] mod-sequence-valzer``."""
        if pos < len(args) and isinstance(args[pos], String):
            if pos + 1 >= len(args) or not isinstance(args[pos + 1], Atom):
                raise ParseError("MODSEQ entry name needs an entry type")
            if astring(args[pos + 1]).upper() not in _ENTRY_TYPES:
                raise ParseError("MODSEQ entry type must be priv, shared or all")
            pos += 2
        if pos >= len(args):
            raise ParseError("MODSEQ needs a number")
        return ModSeq(number(args[pos], "mod-sequence", bits=63)), pos + 1


def _date(value: Value) -> date:
    """RFC 9051 §9 ``date``: ``d-Mon-yyyy``, quoted or not."""
    m = _DATE.fullmatch(astring(value, "date"))
    month = _MONTHS.get(m.group(2).upper()) if m else None
    if m is None or month is None:
        raise ParseError("invalid date")
    try:
        return date(int(m.group(3)), month, int(m.group(1)))
    except ValueError:
        raise ParseError("invalid date") from None


def _needle(value: Value) -> str:
    return astring(value, "search string").casefold()


# ---------------------------------------------------------------------------------------------
# What a query needs, and how expensive each key is


def needs(query: SearchQuery | Key) -> Needs:
    key = query.key if isinstance(query, SearchQuery) else query
    out = Needs()
    for k in _walk(key):
        if isinstance(k, DateKey) and k.sent:
            out |= Needs(info=True)
        elif isinstance(k, Header):
            out |= Needs(headers=True)
        elif isinstance(k, Text):
            out |= Needs(info=True, body=True)
        elif isinstance(k, ModSeq):
            out |= Needs(modseq=True)
    return out


def _walk(key: Key) -> Iterator[Key]:
    stack = [key]
    while stack:
        k = stack.pop()
        yield k
        if isinstance(k, Not):
            stack.append(k.key)
        elif isinstance(k, Or):
            stack += (k.left, k.right)
        elif isinstance(k, And):
            stack += k.keys


def _cost(key: Key) -> int:
    """0: metadata only; 1: parses the Date field; 2: header octets; 3: message octets."""
    cost = 0
    for k in _walk(key):
        if isinstance(k, Text):
            return 3
        if isinstance(k, Header):
            cost = 2
        elif isinstance(k, DateKey) and k.sent:
            cost = max(cost, 1)
    return cost


# ---------------------------------------------------------------------------------------------
# Evaluation


async def run_search(
    query: SearchQuery | Key, candidates: Sequence[Candidate], ctx: SearchContext
) -> list[Candidate]:
    """The candidates that match, in ascending sequence-number order."""
    key = query.key if isinstance(query, SearchQuery) else query
    ordered = sorted(candidates, key=_by_seq)
    return await _Eval(ctx, datetime.now(UTC)).filter(key, ordered)


def _by_seq(c: Candidate) -> int:
    return c.seq


class _Eval:
    def __init__(self, ctx: SearchContext, now: datetime) -> None:
        self.ctx = ctx
        self.now = now
        self.saved = frozenset(ctx.saved)
        self.headers: dict[int, bytes] = {}

    async def filter(self, key: Key, cands: list[Candidate]) -> list[Candidate]:
        if not cands:
            return cands
        if _cost(key) <= 1:  # the whole subtree is one pass of a compiled predicate
            pred = self.predicate(key)
            return [c for c in cands if pred(c)]
        if isinstance(key, And):
            for k in sorted(key.keys, key=_cost):  # cheap keys first: they shrink the set
                cands = await self.filter(k, cands)
                if not cands:
                    break
            return cands
        if isinstance(key, Or):
            left = await self.filter(key.left, cands)
            taken = {c.seq for c in left}
            right = await self.filter(key.right, [c for c in cands if c.seq not in taken])
            taken.update(c.seq for c in right)
            return [c for c in cands if c.seq in taken]
        if isinstance(key, Not):
            taken = {c.seq for c in await self.filter(key.key, cands)}
            return [c for c in cands if c.seq not in taken]
        if isinstance(key, Header):
            await self.load_headers(cands)
            return [c for c in cands if self.header_match(c.meta.uid, key)]
        if isinstance(key, Text):
            return [c for c in cands if await self.text_match(c.meta, key)]
        raise AssertionError(f"unhandled search key {key!r}")  # pragma: no cover

    def predicate(self, key: Key) -> Callable[[Candidate], bool]:
        """A plain function for a subtree of metadata keys (cost <= 1)."""
        if isinstance(key, All):
            return _always
        if isinstance(key, HasFlag):
            flag, present = key.flag, key.present
            if flag.startswith("\\"):
                return lambda c: (flag in c.meta.flags) is present
            lowered = flag.lower()  # RFC 9051 §2.3.2: keywords are case-insensitive
            return lambda c: any(f.lower() == lowered for f in c.meta.flags) is present
        if isinstance(key, Recent):
            want = key.recent
            return lambda c: c.recent is want
        if isinstance(key, Size):
            octets = key.octets
            if key.larger:
                return lambda c: c.meta.size > octets
            return lambda c: c.meta.size < octets
        if isinstance(key, Numbers):
            return self.numbers(key)
        if isinstance(key, DateKey):
            return _date_predicate(key)
        if isinstance(key, Within):
            # RFC 5032 §3: YOUNGER n is "internal date within n seconds", OLDER n the rest.
            limit = self.now - timedelta(seconds=key.seconds)
            if key.older:
                return lambda c: c.meta.internal_date < limit
            return lambda c: c.meta.internal_date >= limit
        if isinstance(key, ModSeq):
            modseq = key.modseq
            return lambda c: c.meta.modseq >= modseq
        if isinstance(key, Not):
            inner = self.predicate(key.key)
            return lambda c: not inner(c)
        if isinstance(key, Or):
            left, right = self.predicate(key.left), self.predicate(key.right)
            return lambda c: left(c) or right(c)
        if isinstance(key, And):
            preds = [self.predicate(k) for k in sorted(key.keys, key=_cost)]
            return lambda c: all(p(c) for p in preds)
        raise AssertionError(f"not a metadata key: {key!r}")  # pragma: no cover

    def numbers(self, key: Numbers) -> Callable[[Candidate], bool]:
        if key.set.saved:  # RFC 5182 §2.1: "$" is the saved UIDs, for SEARCH and UID SEARCH
            saved = self.saved
            return lambda c: c.meta.uid in saved
        largest = self.ctx.largest_uid if key.uid else self.ctx.largest_seq
        ranges = key.set.ranges(largest)
        if key.uid:
            return lambda c: _in_ranges(ranges, c.meta.uid)
        return lambda c: _in_ranges(ranges, c.seq)

    async def load_headers(self, cands: Sequence[Candidate]) -> None:
        missing = [c.meta.uid for c in cands if c.meta.uid not in self.headers]
        if missing:
            got = await self.ctx.headers(missing)
            for uid in missing:
                self.headers[uid] = got.get(uid, b"")

    def header_match(self, uid: int, key: Header) -> bool:
        return header_contains(self.headers.get(uid, b""), key.field, key.needle)

    async def text_match(self, meta: MessageMeta, key: Text) -> bool:
        data = await self.ctx.message(meta.uid)
        return message_contains(data, meta, key.needle, header=key.header)


def _always(c: Candidate) -> bool:
    return True


def _in_ranges(ranges: list[tuple[int, int]], n: int) -> bool:
    lo, hi = 0, len(ranges)
    while lo < hi:  # binary search over sorted, merged ranges
        mid = (lo + hi) // 2
        if ranges[mid][1] < n:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(ranges) and ranges[lo][0] <= n


def _date_predicate(key: DateKey) -> Callable[[Candidate], bool]:
    day = key.day
    get = _sent_day if key.sent else _internal_day
    if key.op == "before":
        return lambda c: get(c.meta) < day
    if key.op == "on":
        return lambda c: get(c.meta) == day
    return lambda c: get(c.meta) >= day


def _internal_day(meta: MessageMeta) -> date:
    # RFC 9051 §6.4.4: "disregarding time and timezone": the date in the stamp's own zone.
    return meta.internal_date.date()


def _sent_day(meta: MessageMeta) -> date:
    """The Date header's own calendar date; the internal date when it does not parse."""
    parsed = _parse_date(meta.info.envelope.date if meta.info else None)
    if parsed is not None:
        try:
            return date(parsed[0], parsed[1], parsed[2])
        except ValueError:
            pass
    return meta.internal_date.date()


def _parse_date(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        parsed = parsedate_tz(text)
    except (ValueError, IndexError, TypeError, OverflowError):
        return None
    if parsed is None:
        return None
    return tuple(0 if v is None else int(v) for v in parsed)


def sent_datetime(meta: MessageMeta) -> datetime:
    """RFC 5256 §2.2 sent date in UTC, else the internal date (for SORT DATE and THREAD)."""
    parsed = _parse_date(meta.info.envelope.date if meta.info else None)
    if parsed is not None:
        y, mo, d, h, mi, s, offset = parsed[0], *parsed[1:6], parsed[9]
        try:
            zone = timezone(timedelta(seconds=offset))
            return datetime(y, mo, d, h, mi, s, tzinfo=zone).astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    internal = meta.internal_date
    return internal.astimezone(UTC) if internal.tzinfo else internal.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Decoding and matching text

# RFC 2047 §2 encoded-word, with the RFC 2231 §5 ``*lang`` suffix allowed (and ignored).
_EWORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=")


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded-words leniently. Whitespace between adjacent words is dropped
    (§6.2), and adjacent words in one charset are joined before decoding so that a character
    split across two words survives. Unknown charsets and bad payloads never raise."""
    if "=?" not in text:
        return text
    out: list[str] = []
    run: list[bytes] = []  # payloads of adjacent words in ``run_charset``
    run_charset = ""
    pos = 0
    for m in _EWORD.finditer(text):
        between = text[pos : m.start()]
        adjacent = pos > 0 and not between.strip(" \t\r\n")
        charset = m.group(1).lower()
        if run and not (adjacent and charset == run_charset):
            out.append(_decode_charset(b"".join(run), run_charset))
            run = []
        if not adjacent:
            out.append(between)
        payload = m.group(3).encode("utf-8", "surrogateescape")
        run.append(_b_decode(payload) if m.group(2) in "Bb" else binascii.a2b_qp(payload, True))
        run_charset = charset
        pos = m.end()
    if run:
        out.append(_decode_charset(b"".join(run), run_charset))
    out.append(text[pos:])
    return "".join(out)


def _b_decode(payload: bytes) -> bytes:
    payload = payload.rstrip(b"=")
    try:
        return base64.b64decode(payload + b"=" * (-len(payload) % 4))
    except (binascii.Error, ValueError):
        return payload


def _decode_charset(data: bytes, charset: str) -> str:
    """Text in ``charset``, never raising. US-ASCII (also the RFC 2045 §5.2 default) is read as
    its superset UTF-8, because 8-bit text without a declared charset is UTF-8 in practice."""
    if charset in _ASCII_NAMES:
        charset = "utf-8"
    try:
        return data.decode(charset, "replace")
    except (LookupError, ValueError, TypeError):
        return data.decode("utf-8", "replace")


_ASCII_NAMES = frozenset({"", "us-ascii", "ascii", "us_ascii", "ansi_x3.4-1968"})


def _unfold(raw: bytes) -> bytes:
    """RFC 5322 §2.2.3 unfolding (each line break followed by WSP goes), by plain ``replace``:
    several times faster than a regex, which matters for SEARCH over a whole mailbox."""
    if b"\n" not in raw:
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\n ", b" ").replace(b"\n\t", b"\t")


def header_text(raw: bytes) -> str:
    """A header value or block as text: unfolded, UTF-8 (surrogateescape), RFC 2047 decoded."""
    return decode_words(_unfold(raw).decode("utf-8", "surrogateescape"))


def _field_values(block: bytes, low: bytes, name: bytes) -> Iterator[bytes]:
    """Raw values of every ``name:`` field in a header block (``low`` is ``block.lower()``,
    ``name`` lower-case ASCII). Whitespace before the colon is accepted (RFC 5322 §4.5.3)."""
    n = len(low)
    probe = b"\n" + name
    start = 0 if low.startswith(name) else low.find(probe) + 1
    if start == 0 and not low.startswith(name):
        return
    while True:
        j = start + len(name)
        while j < n and low[j] in _WSP_OCTETS:
            j += 1
        end = j
        if j < n and low[j] == _COLON:
            end = block.find(b"\n", j)
            while end != -1 and end + 1 < n and block[end + 1] in _WSP_OCTETS:
                end = block.find(b"\n", end + 1)  # a continuation line
            if end == -1:
                end = n
            yield block[j + 1 : end]
        start = low.find(probe, end) + 1
        if start == 0:
            return


_WSP_OCTETS = b" \t"
_COLON = ord(":")


def header_contains(block: bytes, field: str, needle: str) -> bool:
    """Does a ``field`` line in the header ``block`` contain ``needle`` (casefolded)?

    Values are unfolded and each tab read as a space, so a subject folded with a tab matches
    the words as a mail client shows them. Fast path, because SUBJECT/FROM over a whole mailbox
    is common: an ASCII block without encoded-words is lowered as bytes and rejected with one
    ``find`` before any field is split. RFC 9051 §6.4.4: an empty string matches every message
    that has the field.
    """
    needle = needle.replace("\t", " ")
    needle_b = needle.encode("ascii") if needle.isascii() else None
    low = block.lower()
    if needle and b"=?" not in block and block.isascii():
        if needle_b is None:  # casefolded ASCII text stays ASCII
            return False
        if needle_b not in (_unfold(low).replace(b"\t", b" ") if b" " in needle_b else low):
            return False
    for value in _field_values(block, low, field.encode("ascii")):
        if not needle:
            return True
        value = _unfold(value).replace(b"\t", b" ")
        if value.isascii() and b"=?" not in value:
            if needle_b is not None and needle_b in value.lower():
                return True
        elif needle in decode_words(value.decode("utf-8", "surrogateescape")).casefold():
            return True
    return False


def message_contains(data: bytes, meta: MessageMeta, needle: str, *, header: bool) -> bool:
    """BODY (and with ``header``, TEXT): ``needle`` in the decoded text of the message."""
    info, base = meta.info, meta.prefix_size
    if info is None or base + info.size != len(data):
        info, base = parse_message(data), 0
    if header:
        head = data[: base + info.body.body_offset]
        if not needle or needle in header_text(head).casefold():
            return True
    if not needle:
        return True
    return any(needle in text.casefold() for text in _texts(data, info, base))


def _texts(data: bytes, info: MessageInfo, base: int) -> Iterator[str]:
    """Decoded text of each text/* leaf, and the header of each embedded message."""
    stack: list[BodyPart] = [info.body]
    while stack:
        part = stack.pop()
        if part.parts:
            stack.extend(reversed(part.parts))
        elif part.message is not None:
            inner = part.message.body
            yield header_text(data[base + inner.header_offset : base + inner.body_offset])
            stack.append(inner)
        elif part.type == "text":
            raw = data[base + part.body_offset : base + part.end_offset]
            charset = next((v for k, v in part.params if k == "charset"), "utf-8")
            yield _decode_charset(decode_transfer(raw, part.encoding), charset.strip().lower())


def decode_transfer(raw: bytes, encoding: str) -> bytes:
    """RFC 2045 §6: undo base64 / quoted-printable, leniently; other encodings are identity."""
    if encoding == "base64":
        return decode_base64(raw)  # one lenient decoder for FETCH BINARY and SEARCH
    if encoding == "quoted-printable":
        return binascii.a2b_qp(raw)
    return raw


# ---------------------------------------------------------------------------------------------
# Responses


def save_result(matches: Sequence[Candidate], query: SearchQuery) -> list[int] | None:
    """The UIDs to keep as the RFC 5182 saved result, or None without ``RETURN (SAVE)``.

    RFC 5182 §2.4: with MIN and/or MAX but neither ALL nor COUNT, only those are saved."""
    opts = query.return_opts
    if opts is None or "SAVE" not in opts:
        return None
    uids = [c.meta.uid for c in sorted(matches, key=_by_seq)]
    if uids and ("MIN" in opts or "MAX" in opts) and "ALL" not in opts and "COUNT" not in opts:
        picked = {min(uids)} if "MIN" in opts else set()
        if "MAX" in opts:
            picked.add(max(uids))
        return sorted(picked)
    return uids


def format_search(
    matches: Sequence[Candidate],
    *,
    tag: str,
    uid: bool,
    query: SearchQuery,
    esearch: bool,
    highest_modseq_of_matches: bool = False,
) -> bytes:
    """The untagged answer: ``* SEARCH ...`` or ``* ESEARCH ...`` (RFC 4731 §3.1, RFC 9051
    §7.3.4). The highest MODSEQ of the matches is added when the query has a MODSEQ key or the
    caller asks for it (RFC 7162 §3.1.5), never for an empty result. ``b""`` when the only
    return option is SAVE (RFC 5182 §2.4: no ESEARCH then)."""
    numbers = sorted(c.meta.uid if uid else c.seq for c in matches)
    modseq = None
    if matches and (highest_modseq_of_matches or needs(query).modseq):
        modseq = max(c.meta.modseq for c in matches)
    opts = query.return_opts
    if opts is None and not esearch:
        words = ["* SEARCH", *map(str, numbers)]
        if modseq is not None:
            words.append(f"(MODSEQ {modseq})")
        return (" ".join(words) + "\r\n").encode("ascii")
    return esearch_line(numbers, tag=tag, uid=uid, opts=opts, modseq=modseq)


def esearch_line(
    numbers: Sequence[int],
    *,
    tag: str,
    uid: bool,
    opts: tuple[str, ...] | None,
    modseq: int | None = None,
) -> bytes:
    """``* ESEARCH (TAG "t") [UID] MIN MAX COUNT ALL [MODSEQ]`` (RFC 4731 §3.1), shared with
    ESORT (RFC 5267 §3.2), where ``numbers`` come in sort order: MIN/MAX are then the first
    and last. ``b""`` when the only return option is SAVE (RFC 5182 §2.4)."""
    if opts == ("SAVE",):
        return b""
    if not opts:
        opts = ("ALL",)  # RFC 4731 §3.1: RETURN () is RETURN (ALL); rev2 SEARCH too
    quoted = tag.replace("\\", "\\\\").replace('"', '\\"')
    words = [f'* ESEARCH (TAG "{quoted}")']
    if uid:
        words.append("UID")
    if numbers and "MIN" in opts:
        words.append(f"MIN {numbers[0]}")
    if numbers and "MAX" in opts:
        words.append(f"MAX {numbers[-1]}")
    if "COUNT" in opts:
        words.append(f"COUNT {len(numbers)}")
    if numbers and "ALL" in opts:
        words.append(f"ALL {format_sequence(numbers)}")
    if modseq is not None:
        words.append(f"MODSEQ {modseq}")
    return (" ".join(words) + "\r\n").encode("utf-8")
