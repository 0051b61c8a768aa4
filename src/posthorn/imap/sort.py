"""IMAP SORT (RFC 5256 §3), DISPLAYFROM/DISPLAYTO (RFC 5957) and ESORT answers (RFC 5267).

Also the RFC 5256 §2.1 base subject, which THREAD uses too (`base_subject`).

Invariants:
- `run_sort` searches with `posthorn.imap.search.run_search`, then sorts by the criteria in
  order; messages equal under every criterion keep mailbox order (RFC 5256 §3), and REVERSE
  applies only to the criterion it precedes.
- Sort values come from the parsed envelope (``MessageMeta.info``); a message without one sorts
  as if every field were missing: empty strings, and the internal date for DATE.
- Strings compare case-insensitively by `collate` (i;unicode-casemap approximated by NFKD and
  ``casefold``, RFC 5256 §5 / RFC 5051).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from posthorn.imap.search import (
    Candidate,
    Needs,
    SearchContext,
    SearchQuery,
    check_charset,
    decode_words,
    esearch_line,
    parse_keys,
    parse_return,
    run_search,
    sent_datetime,
)
from posthorn.imap.search import needs as search_needs
from posthorn.imap.values import Atom, ParseError, Value, astring
from posthorn.mail.info import Envelope, EnvelopeAddress

# RFC 5256 §3 sort-key, RFC 5957 §3 DISPLAYFROM/DISPLAYTO
CRITERIA = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
_ENVELOPE_CRITERIA = frozenset({"CC", "DATE", "FROM", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})


@dataclass(frozen=True)
class SortQuery:
    """``criteria`` as (name, reverse) pairs in order; ``search.return_opts`` is the RFC 5267
    ``RETURN`` list (None for the plain ``* SORT`` answer)."""

    criteria: tuple[tuple[str, bool], ...]
    search: SearchQuery


def parse_sort(args: Sequence[Value], *, utf8: bool = False) -> SortQuery:
    """``[RETURN (opts)] (sort-criteria) charset search-key+`` (RFC 5256 §3, RFC 5267 §3.2)."""
    del utf8  # strings are read as UTF-8 in both modes (see parse_search)
    pos = 0
    return_opts = None
    if args and isinstance(args[0], Atom) and args[0].upper() == "RETURN":
        if len(args) < 2:
            raise ParseError("RETURN needs a list of options")
        return_opts = parse_return(args[1])
        pos = 2
    if pos >= len(args) or not isinstance(args[pos], tuple):
        raise ParseError("SORT needs a parenthesised list of criteria")
    criteria = _criteria(args[pos])
    if pos + 1 >= len(args):
        raise ParseError("SORT needs a charset")
    charset = check_charset(astring(args[pos + 1], "charset"))
    key = parse_keys(args[pos + 2 :])
    return SortQuery(criteria, SearchQuery(key, charset, return_opts))


def _criteria(value: Value) -> tuple[tuple[str, bool], ...]:
    items = value if isinstance(value, tuple) else ()
    out: list[tuple[str, bool]] = []
    reverse = False
    for item in items:
        if not isinstance(item, Atom):
            raise ParseError("invalid sort criterion")
        name = item.upper()
        if name == "REVERSE" and not reverse:
            reverse = True
        elif name in CRITERIA:
            out.append((name, reverse))
            reverse = False
        else:
            raise ParseError("invalid sort criterion")
    if reverse or not out:
        raise ParseError("invalid sort criteria")
    return tuple(out)


def needs(query: SortQuery) -> Needs:
    """What the session loads before `run_sort`: the search's needs, and the envelope when a
    criterion reads it."""
    out = search_needs(query.search)
    if any(name in _ENVELOPE_CRITERIA for name, _ in query.criteria):
        out |= Needs(info=True)
    return out


async def run_sort(
    q: SortQuery, candidates: Sequence[Candidate], ctx: SearchContext
) -> list[Candidate]:
    """The matches of the search, sorted (RFC 5256 §3)."""
    matches = await run_search(q.search, candidates, ctx)  # ascending seq: the final tiebreak
    for name, reverse in reversed(q.criteria):  # stable sorts, least significant first
        matches.sort(key=_KEYS[name], reverse=reverse)
    return matches


def collate(text: str) -> str:
    """Comparison form of a string: i;unicode-casemap, approximately (RFC 5051 §2)."""
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFKD", text).casefold()


def _envelope(c: Candidate) -> Envelope:
    return c.meta.info.envelope if c.meta.info is not None else _EMPTY


_EMPTY = Envelope()


def _first(addresses: tuple[EnvelopeAddress, ...]) -> EnvelopeAddress | None:
    """The first real address; RFC 3501 group markers (host None) are skipped."""
    return next((a for a in addresses if a.host is not None), None)


def _mailbox(addresses: tuple[EnvelopeAddress, ...]) -> str:
    """RFC 5256 §3: the addr-mailbox of the first address, or "" when there is none."""
    first = _first(addresses)
    return collate(first.mailbox or "") if first else ""


def _display(addresses: tuple[EnvelopeAddress, ...]) -> str:
    """RFC 5957 §3: the decoded display-name if present and non-empty, else the addr-spec."""
    first = _first(addresses)
    if first is None:
        return ""
    name = decode_words(first.name).strip() if first.name else ""
    if name:
        return collate(name)
    spec = f"{first.mailbox}@{first.host}" if first.host else first.mailbox or ""
    return collate(spec)


_KEYS: dict[str, Callable[[Candidate], Any]] = {
    "ARRIVAL": lambda c: c.meta.internal_date.timestamp(),
    "CC": lambda c: _mailbox(_envelope(c).cc),
    "DATE": lambda c: sent_datetime(c.meta).timestamp(),
    "FROM": lambda c: _mailbox(_envelope(c).from_),
    "SIZE": lambda c: c.meta.size,
    "SUBJECT": lambda c: collate(base_subject(_envelope(c).subject)[0]),
    "TO": lambda c: _mailbox(_envelope(c).to),
    "DISPLAYFROM": lambda c: _display(_envelope(c).from_),
    "DISPLAYTO": lambda c: _display(_envelope(c).to),
}


# ---------------------------------------------------------------------------------------------
# RFC 5256 §2.1 base subject

_WS = re.compile(r"[ \t\r\n]+")
_TRAILER = re.compile(r"(?:\(fwd\)| )$", re.IGNORECASE)  # subj-trailer = "(fwd)" / WSP
# subj-leader = (*subj-blob subj-refwd) / WSP; subj-blob = "[" *BLOBCHAR "]" *WSP;
# subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
_BLOB = r"\[[^\[\]]*\] *"
_REFWD = re.compile(rf"(?:{_BLOB})*(?:re|fwd?) *(?:{_BLOB})?:", re.IGNORECASE)
_BLOB_PREFIX = re.compile(_BLOB)


def base_subject(subject: str | None) -> tuple[str, bool]:
    """``(base subject, is reply or forward)`` per RFC 5256 §2.1 steps (1)-(7).

    A message is a reply or forward (for THREAD=REFERENCES step 5) when step 2 removed a
    "(fwd)" trailer, step 3 a subj-refwd, or step 6 a "[fwd: ...]" wrapper.
    """
    if not subject:
        return "", False
    # (1) decode encoded-words; tabs, continuations and runs of spaces become one space
    text = _WS.sub(" ", decode_words(subject))
    refwd = False
    while True:
        # (2) remove subj-trailers, repeatedly
        while (m := _TRAILER.search(text)) is not None:
            refwd = refwd or m.group() != " "
            text = text[: m.start()]
        while True:  # (5) repeat (3) and (4) until nothing changes
            before = text
            # (3) remove subj-leaders
            while True:
                if text.startswith(" "):
                    text = text[1:]
                elif (m := _REFWD.match(text)) is not None:
                    refwd = True
                    text = text[m.end() :]
                else:
                    break
            # (4) remove a subj-blob prefix unless that leaves nothing
            m = _BLOB_PREFIX.match(text)
            if m is not None and text[m.end() :]:
                text = text[m.end() :]
            if text == before:
                break
        # (6) "[fwd:" ... "]": unwrap and start again from (2)
        if len(text) >= 6 and text[:5].lower() == "[fwd:" and text.endswith("]"):
            text = text[5:-1]
            refwd = True
            continue
        return text, refwd


# ---------------------------------------------------------------------------------------------
# Responses


def format_sort(matches: Sequence[Candidate], *, tag: str, uid: bool, query: SortQuery) -> bytes:
    """``* SORT n n n`` (RFC 5256 §4), or with ``RETURN`` the ESORT form of ``* ESEARCH``
    (RFC 5267 §3.2): MIN/MAX are the first/last in sort order, ALL keeps sort order."""
    numbers = [c.meta.uid if uid else c.seq for c in matches]
    opts = query.search.return_opts
    if opts is None:
        return ("".join(["* SORT", *(f" {n}" for n in numbers)]) + "\r\n").encode("ascii")
    return esearch_line(numbers, tag=tag, uid=uid, opts=opts)
