"""IMAP SEARCH: parsing keys, running them over real parsed messages, formatting the answer."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from posthorn.imap.search import (
    BADCHARSET,
    And,
    Candidate,
    DateKey,
    HasFlag,
    Header,
    Needs,
    Not,
    Numbers,
    Or,
    Recent,
    SearchQuery,
    Text,
    decode_transfer,
    decode_words,
    format_search,
    header_contains,
    needs,
    parse_search,
    run_search,
    save_result,
)
from posthorn.imap.values import Atom, ParseError, Refused, String, Value
from posthorn.mail.mime import parse_message
from posthorn.store.base import MessageMeta

# --- helpers shared with the SORT and THREAD tests ---------------------------------------------

_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|([()])|([^\s()"]+)')


def args(text: str) -> tuple[Value, ...]:
    """A command's arguments written as IMAP text: ``'FROM "a b" (OR SEEN 1:3)'``."""
    stack: list[list[Value]] = [[]]
    for m in _TOKEN.finditer(text):
        quoted, paren, atom = m.groups()
        if quoted is not None:
            stack[-1].append(String(re.sub(r"\\(.)", r"\1", quoted).encode()))
        elif paren == "(":
            stack.append([])
        elif paren == ")":
            inner = tuple(stack.pop())
            stack[-1].append(inner)
        else:
            stack[-1].append(Atom(atom))
    assert len(stack) == 1
    return tuple(stack[0])


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def message(
    subject: str | None = "Hello",
    *,
    sender: str = "Alice Example <alice@example.org>",
    to: str = "Bob <bob@example.net>",
    date: str | None = "Mon, 01 Jan 2024 10:00:00 +0000",
    mid: str | None = None,
    refs: str | None = None,
    irt: str | None = None,
    extra: str = "",
    body: str = "Just a short note.\n",
) -> bytes:
    lines = [f"From: {sender}", f"To: {to}"]
    if subject is not None:
        lines.append(f"Subject: {subject}")
    if date is not None:
        lines.append(f"Date: {date}")
    if mid is not None:
        lines.append(f"Message-ID: {mid}")
    if refs is not None:
        lines.append(f"References: {refs}")
    if irt is not None:
        lines.append(f"In-Reply-To: {irt}")
    head = "\n".join(lines) + "\n" + extra
    return crlf(head + "\n" + body)


BASE = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


class FakeContext:
    """A SearchContext over a dict of message bytes, recording what was read."""

    def __init__(self, data: dict[int, bytes], saved: Sequence[int] = ()) -> None:
        self.data = data
        self.largest_seq = len(data)
        self.largest_uid = max(data, default=0)
        self.saved = list(saved)
        self.header_calls: list[list[int]] = []
        self.message_calls: list[int] = []

    async def headers(self, uids: Sequence[int]) -> dict[int, bytes]:
        self.header_calls.append(list(uids))
        out = {}
        for uid in uids:
            raw = self.data[uid]
            out[uid] = raw[: parse_message(raw).header_size]
        return out

    async def message(self, uid: int) -> bytes:
        self.message_calls.append(uid)
        return self.data[uid]


def make(
    messages: Sequence[bytes],
    *,
    flags: dict[int, set[str]] | None = None,
    dates: dict[int, datetime] | None = None,
    recent: Sequence[int] = (),
    uid_base: int = 10,
    saved: Sequence[int] = (),
) -> tuple[list[Candidate], FakeContext]:
    """Candidates with seq 1..n and UIDs uid_base+seq; internal dates one hour apart."""
    cands = []
    data = {}
    for i, raw in enumerate(messages, start=1):
        uid = uid_base + i
        data[uid] = raw
        meta = MessageMeta(
            uid=uid,
            modseq=100 + i,
            flags=frozenset((flags or {}).get(i, set())),
            internal_date=(dates or {}).get(i, BASE + timedelta(hours=i)),
            size=len(raw),
            info=parse_message(raw),
        )
        cands.append(Candidate(i, meta, recent=i in recent))
    return cands, FakeContext(data, saved)


async def seqs(query: str, cands: list[Candidate], ctx: FakeContext) -> list[int]:
    return [c.seq for c in await run_search(parse_search(args(query)), cands, ctx)]


# --- parsing ----------------------------------------------------------------------------------


def test_parse_keys_and_defaults() -> None:
    q = parse_search(args('FROM "alice" UNSEEN'))
    assert q == SearchQuery(And((Header("from", "alice"), HasFlag("\\Seen", False))), None, None)
    assert parse_search(args("NEW")).key == And((Recent(True), HasFlag("\\Seen", False)))
    assert parse_search(args("(OLD)")).key == Recent(False)


def test_parse_nested_or_not_and_sequence_sets() -> None:
    q = parse_search(args("OR NOT 1:3 UID 5:* $"))
    assert isinstance(q.key, And)
    first, second = q.key.keys
    assert isinstance(first, Or) and isinstance(first.left, Not)
    assert isinstance(first.left.key, Numbers) and not first.left.key.uid
    assert isinstance(first.right, Numbers) and first.right.uid
    assert isinstance(second, Numbers) and second.set.saved


def test_parse_return_and_charset() -> None:
    q = parse_search(args("RETURN (min COUNT) CHARSET utf-8 ALL"))
    assert q.return_opts == ("MIN", "COUNT")
    assert q.charset == "UTF-8"
    assert parse_search(args("RETURN () ALL")).return_opts == ()


def test_parse_header_lowercases_name_and_casefolds_string() -> None:
    q = parse_search(args('HEADER X-Mailer "MUTT Straße"'))
    assert q.key == Header("x-mailer", "mutt strasse")


def test_parse_dates() -> None:
    q = parse_search(args('SINCE 1-Feb-2024 SENTBEFORE "31-dec-2023"'))
    assert isinstance(q.key, And)
    assert q.key.keys[0] == DateKey("since", datetime(2024, 2, 1).date())
    assert q.key.keys[1] == DateKey("before", datetime(2023, 12, 31).date(), sent=True)


def test_unsupported_charset_is_refused_with_badcharset() -> None:
    with pytest.raises(Refused) as exc:
        parse_search(args("CHARSET KOI8-R SUBJECT x"))
    assert exc.value.code == BADCHARSET == "BADCHARSET (UTF-8 US-ASCII)"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "FROB",
        "FROM",
        "LARGER x",
        "SMALLER -1",
        "SINCE 32-Jan-2024",
        "SINCE 1-Foo-2024",
        "SINCE 2024-01-01",
        "OR SEEN",
        "NOT",
        "()",
        "UID",
        "UID (1)",
        "0:3",
        "1,,2",
        "KEYWORD \\Seen",
        "HEADER",
        'HEADER "" x',
        "HEADER Subject",
        "RETURN (FOO) ALL",
        "RETURN ALL",
        "RETURN (MIN)",
        "CHARSET",
        "OLDER 0",
        "MODSEQ",
        'MODSEQ "/flags/\\\\draft" bogus 5',
        '"ALL"',
    ],
)
def test_syntax_errors(text: str) -> None:
    with pytest.raises(ParseError):
        parse_search(args(text))


def test_bounded_key_count_and_depth() -> None:
    parse_search(args(" ".join(["SEEN"] * 1000)))
    with pytest.raises(ParseError):
        parse_search(args(" ".join(["SEEN"] * 1001)))
    parse_search(args("NOT " * 99 + "SEEN"))
    with pytest.raises(ParseError):
        parse_search(args("NOT " * 200 + "SEEN"))
    deep: Value = (Atom("SEEN"),)
    for _ in range(150):
        deep = (deep,)
    with pytest.raises(ParseError):
        parse_search((deep,))


def test_needs() -> None:
    assert needs(parse_search(args("SEEN 1:4 LARGER 5"))) == Needs()
    assert needs(parse_search(args("SUBJECT x"))) == Needs(headers=True)
    assert needs(parse_search(args("NOT BODY x"))) == Needs(info=True, body=True)
    assert needs(parse_search(args("SENTON 1-Jan-2024"))) == Needs(info=True)
    assert needs(parse_search(args("OR MODSEQ 5 SEEN"))) == Needs(modseq=True)


# --- running: metadata keys --------------------------------------------------------------------


async def test_flags_keywords_recent() -> None:
    cands, ctx = make(
        [message()] * 5,
        flags={1: {"\\Seen"}, 2: {"\\Seen", "\\Flagged", "$Work"}, 3: {"\\Deleted"}},
        recent=[2, 3],
    )
    assert await seqs("SEEN", cands, ctx) == [1, 2]
    assert await seqs("UNSEEN", cands, ctx) == [3, 4, 5]
    assert await seqs("FLAGGED", cands, ctx) == [2]
    assert await seqs("UNDELETED UNFLAGGED", cands, ctx) == [1, 4, 5]
    assert await seqs("KEYWORD $work", cands, ctx) == [2]
    assert await seqs("UNKEYWORD $Work", cands, ctx) == [1, 3, 4, 5]
    assert await seqs("RECENT", cands, ctx) == [2, 3]
    assert await seqs("NEW", cands, ctx) == [3]
    assert await seqs("OLD", cands, ctx) == [1, 4, 5]
    assert await seqs("ALL", cands, ctx) == [1, 2, 3, 4, 5]


async def test_sizes() -> None:
    cands, ctx = make([message(body="x" * n) for n in (10, 100, 1000)])
    size2 = cands[1].meta.size
    assert await seqs(f"LARGER {size2}", cands, ctx) == [3]
    assert await seqs(f"SMALLER {size2}", cands, ctx) == [1]
    assert await seqs(f"NOT LARGER {size2} NOT SMALLER {size2}", cands, ctx) == [2]


async def test_sequence_sets_uids_and_saved_result() -> None:
    cands, ctx = make([message()] * 6, saved=[12, 15, 99])  # UIDs 11..16
    assert await seqs("2:4", cands, ctx) == [2, 3, 4]
    assert await seqs("5:*", cands, ctx) == [5, 6]
    assert await seqs("*:5", cands, ctx) == [5, 6]
    assert await seqs("1,3,*", cands, ctx) == [1, 3, 6]
    assert await seqs("UID 12:13,16", cands, ctx) == [2, 3, 6]
    assert await seqs("UID 20:*", cands, ctx) == [6]  # RFC 9051 §6.4.8: * is the largest UID
    assert await seqs("$", cands, ctx) == [2, 5]
    assert await seqs("UID $", cands, ctx) == [2, 5]
    assert await seqs("NOT $", cands, ctx) == [1, 3, 4, 6]


async def test_sequence_set_on_a_subset_of_candidates() -> None:
    cands, ctx = make([message()] * 6)
    assert [c.seq for c in await run_search(parse_search(args("4:*")), cands[:3], ctx)] == []
    assert [c.seq for c in await run_search(parse_search(args("2,3")), cands[::-1], ctx)] == [2, 3]


async def test_internal_dates_compare_by_their_own_calendar_date() -> None:
    east = timezone(timedelta(hours=9))
    cands, ctx = make(
        [message()] * 3,
        dates={
            1: datetime(2024, 2, 29, 23, 30, tzinfo=UTC),
            2: datetime(2024, 3, 1, 1, 0, tzinfo=east),  # 29 Feb 16:00 UTC, but 1 Mar locally
            3: datetime(2024, 3, 2, 0, 0, tzinfo=UTC),
        },
    )
    assert await seqs("ON 1-Mar-2024", cands, ctx) == [2]
    assert await seqs("BEFORE 1-Mar-2024", cands, ctx) == [1]
    assert await seqs("SINCE 1-Mar-2024", cands, ctx) == [2, 3]
    assert await seqs('SINCE "01-Mar-2024" BEFORE 2-Mar-2024', cands, ctx) == [2]


async def test_sent_dates_use_the_date_header_and_fall_back_to_internal_date() -> None:
    cands, ctx = make(
        [
            message(date="Fri, 01 Mar 2024 23:59:00 -0800"),  # its own date: 1 March
            message(date="Sat, 02 Mar 2024 00:30:00 +0200"),
            message(date="not a date at all"),  # internal date: 2024-03-10 15:00
            message(date=None),
            message(date="Thu, 31 Feb 2024 10:00:00 +0000"),  # impossible: internal date
        ]
    )
    assert await seqs("SENTON 1-Mar-2024", cands, ctx) == [1]
    assert await seqs("SENTBEFORE 2-Mar-2024", cands, ctx) == [1]
    assert await seqs("SENTSINCE 2-Mar-2024", cands, ctx) == [2, 3, 4, 5]
    assert await seqs("SENTON 10-Mar-2024", cands, ctx) == [3, 4, 5]


async def test_older_younger() -> None:
    now = datetime.now(UTC)
    cands, ctx = make(
        [message()] * 3,
        dates={1: now - timedelta(days=3), 2: now - timedelta(hours=2), 3: now},
    )
    assert await seqs("YOUNGER 86400", cands, ctx) == [2, 3]
    assert await seqs("OLDER 86400", cands, ctx) == [1]
    assert await seqs("OLDER 3600 YOUNGER 86400", cands, ctx) == [2]


async def test_modseq() -> None:
    cands, ctx = make([message()] * 4)  # modseqs 101..104
    assert await seqs("MODSEQ 103", cands, ctx) == [3, 4]
    assert await seqs('MODSEQ "/flags/\\\\draft" all 102', cands, ctx) == [2, 3, 4]


async def test_or_not_and_groups() -> None:
    cands, ctx = make([message()] * 6, flags={1: {"\\Seen"}, 4: {"\\Flagged"}})
    assert await seqs("OR SEEN FLAGGED", cands, ctx) == [1, 4]
    assert await seqs("OR (SEEN 2:6) (NOT 1:5)", cands, ctx) == [6]
    assert await seqs("NOT (OR 1 2) NOT 6", cands, ctx) == [3, 4, 5]
    assert await seqs("OR OR 1 2 OR 3 NOT ALL", cands, ctx) == [1, 2, 3]


# --- running: header keys ----------------------------------------------------------------------


async def test_subject_is_decoded_and_case_insensitive() -> None:
    cands, ctx = make(
        [
            message("Quarterly REPORT"),
            message("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?="),
            message("=?iso-8859-1?B?U2No9m5lIEdy/N9l?="),  # "Schöne Grüße"
            message("Nothing here"),
            message(None),
        ]
    )
    assert await seqs("SUBJECT report", cands, ctx) == [1]
    assert await seqs('SUBJECT "grüsse"', cands, ctx) == [2, 3]  # casefold: ß == ss
    assert await seqs('SUBJECT "köln"', cands, ctx) == [2]
    assert await seqs('SUBJECT "schöne"', cands, ctx) == [3]
    assert await seqs('SUBJECT ""', cands, ctx) == [1, 2, 3, 4]  # has a Subject field
    assert ctx.header_calls == [[11, 12, 13, 14, 15]] * 5  # one batch per key, nothing else
    assert ctx.message_calls == []


async def test_address_keys_match_name_and_address_text() -> None:
    cands, ctx = make(
        [
            message(sender="Alice Example <alice@example.org>"),
            message(sender="=?utf-8?q?J=C3=BCrgen?= <jm@example.de>", to="a@x, b@y"),
            message(sender="carol@example.com (Carol)", extra="Cc: Dave <dave@example.org>\n"),
        ]
    )
    assert await seqs("FROM alice", cands, ctx) == [1]
    assert await seqs('FROM "alice example"', cands, ctx) == [1]
    assert await seqs('FROM "jürgen"', cands, ctx) == [2]
    assert await seqs("FROM example.", cands, ctx) == [1, 2, 3]
    assert await seqs("FROM carol", cands, ctx) == [3]
    assert await seqs("TO b@y", cands, ctx) == [2]
    assert await seqs("CC dave", cands, ctx) == [3]
    assert await seqs("BCC dave", cands, ctx) == []
    assert await seqs("FROM bob", cands, ctx) == []  # Bob is only in To


async def test_header_key_folding_repeats_and_empty_string() -> None:
    cands, ctx = make(
        [
            message(extra="X-Tag: one\n\ttwo\nX-Tag: three\n"),
            message(extra="X-Tagged: one two\n"),
            message(extra="x-tag : =?utf-8?b?w6lsw6hWRQ==?=\n"),
        ]
    )
    assert await seqs('HEADER X-Tag "one two"', cands, ctx) == [1]  # unfolded
    assert await seqs("HEADER x-tag three", cands, ctx) == [1]  # any occurrence
    assert await seqs('HEADER X-TAG ""', cands, ctx) == [1, 3]
    assert await seqs('HEADER X-Tag "élève"', cands, ctx) == [3]
    assert await seqs('HEADER Subject "hello"', cands, ctx) == [1, 2, 3]


async def test_header_keys_run_after_cheap_keys_on_the_survivors_only() -> None:
    cands, ctx = make([message()] * 5, flags={2: {"\\Seen"}, 4: {"\\Seen"}})
    assert await seqs("SUBJECT hello SEEN", cands, ctx) == [2, 4]
    assert ctx.header_calls == [[12, 14]]
    assert await seqs("FROM alice SUBJECT hello", cands, ctx) == [1, 2, 3, 4, 5]
    assert ctx.header_calls[1:] == [[11, 12, 13, 14, 15]]  # the cache serves the second key


def test_header_contains_directly() -> None:
    block = crlf("Subject: Hello\n World\nFrom: x@y\n")
    assert header_contains(block, "subject", "hello world")
    assert header_contains(block, "subject", "")
    assert not header_contains(block, "subject", "x@y")
    assert not header_contains(block, "to", "")
    latin = "Subject: caf\xe9\r\n".encode("latin-1")  # 8-bit junk: no crash, no match
    assert not header_contains(latin, "subject", "café")
    utf8 = crlf("Subject: Überweisung erhalten\n")
    assert header_contains(utf8, "subject", "überweisung")


def test_decode_words_is_lenient() -> None:
    assert decode_words("=?utf-8?q?a?= =?utf-8?q?b?=") == "ab"  # RFC 2047 §6.2
    assert decode_words("x =?utf-8?q?a?= y") == "x a y"
    # one character split across two words
    assert decode_words("=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=") == "éé"
    assert decode_words("=?utf-8?b?w6?= =?utf-8?q?=C3?=") != ""
    assert decode_words("=?x-unknown?q?abc?=") == "abc"
    assert decode_words("=?utf-8?b?!!!?=") == ""
    assert decode_words("=?utf-8*en?q?hi?=") == "hi"
    assert decode_words("no words") == "no words"


# --- running: body and text --------------------------------------------------------------------


MULTIPART = crlf(
    """From: a@example.org
Subject: report
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Caf=E9 au lait, soft=
 line
--b
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

"""
    + base64.encodebytes("<p>Grüße aus Köln</p>".encode()).decode()
    + """--b
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

"""
    + base64.encodebytes(b"secret needle in attachment").decode()
    + """--b
Content-Type: message/rfc822

Subject: =?utf-8?q?inner_=C3=A9t=C3=A9?=

inner body text
--b--
"""
)


async def test_body_decodes_transfer_encoding_and_charset() -> None:
    cands, ctx = make([MULTIPART, message(body="plain café text\n")])
    assert await seqs('BODY "café au lait"', cands, ctx) == [1]
    assert await seqs('BODY "soft line"', cands, ctx) == [1]
    assert await seqs('BODY "grüsse aus köln"', cands, ctx) == [1]
    assert await seqs('BODY "inner été"', cands, ctx) == [1]  # embedded message header
    assert await seqs("BODY needle", cands, ctx) == []  # attachments are not text
    assert await seqs('BODY "café"', cands, ctx) == [1, 2]
    assert await seqs("BODY report", cands, ctx) == []  # the subject is not body
    assert await seqs("TEXT report", cands, ctx) == [1]
    assert await seqs('TEXT "bob@example.net"', cands, ctx) == [2]
    assert await seqs('BODY ""', cands, ctx) == [1, 2]


async def test_body_reads_only_survivors_one_at_a_time() -> None:
    cands, ctx = make([message(body=f"body {i}\n") for i in range(6)], flags={3: {"\\Seen"}})
    assert await seqs("BODY body SEEN", cands, ctx) == [3]
    assert ctx.message_calls == [13]
    assert await seqs("OR 1 BODY 4", cands, ctx) == [1, 5]
    assert ctx.message_calls[1:] == [12, 13, 14, 15, 16]  # seq 1 matched already


async def test_body_with_a_delivery_prefix_and_without_info() -> None:
    raw = message(body="the needle\n")
    prefix = b"Return-Path: <x@y>\r\nDelivered-To: bob@example.net\r\n"
    info = parse_message(raw)
    with_info = MessageMeta(1, 1, frozenset(), BASE, len(prefix + raw), len(prefix), info)
    without = MessageMeta(2, 1, frozenset(), BASE, len(prefix + raw), len(prefix), None)
    ctx = FakeContext({1: prefix + raw, 2: prefix + raw})
    cands = [Candidate(1, with_info), Candidate(2, without)]
    found = await run_search(parse_search(args("BODY needle")), cands, ctx)
    assert [c.seq for c in found] == [1, 2]
    found = await run_search(parse_search(args("TEXT delivered-to")), cands, ctx)
    assert [c.seq for c in found] == [1, 2]


# --- responses --------------------------------------------------------------------------------


def _fmt(
    matches: list[Candidate],
    query: str,
    *,
    uid: bool = False,
    esearch: bool = False,
    modseq: bool = False,
) -> bytes:
    q = parse_search(args(query))
    return format_search(
        matches, tag="a1", uid=uid, query=q, esearch=esearch, highest_modseq_of_matches=modseq
    )


def test_format_plain_search() -> None:
    cands, _ = make([message()] * 9)
    picked = [cands[1], cands[4], cands[8]]
    assert _fmt(picked, "ALL") == b"* SEARCH 2 5 9\r\n"
    assert _fmt(picked, "ALL", uid=True) == b"* SEARCH 12 15 19\r\n"
    assert _fmt([], "ALL") == b"* SEARCH\r\n"
    assert _fmt(picked, "MODSEQ 1") == b"* SEARCH 2 5 9 (MODSEQ 109)\r\n"
    assert _fmt(picked, "ALL", modseq=True) == b"* SEARCH 2 5 9 (MODSEQ 109)\r\n"
    assert _fmt([], "MODSEQ 1") == b"* SEARCH\r\n"


def test_format_esearch() -> None:
    cands, _ = make([message()] * 9)
    picked = [cands[1], cands[4], cands[8]]
    assert (
        _fmt(picked, "RETURN (MIN MAX COUNT ALL) ALL", uid=True)
        == b'* ESEARCH (TAG "a1") UID MIN 12 MAX 19 COUNT 3 ALL 12,15,19\r\n'
    )
    assert _fmt(cands[2:6], "RETURN () ALL") == b'* ESEARCH (TAG "a1") ALL 3:6\r\n'
    assert _fmt(picked, "ALL", esearch=True) == b'* ESEARCH (TAG "a1") ALL 2,5,9\r\n'
    assert _fmt([], "RETURN (MIN COUNT) ALL") == b'* ESEARCH (TAG "a1") COUNT 0\r\n'
    assert _fmt([], "RETURN (ALL) ALL", uid=True) == b'* ESEARCH (TAG "a1") UID\r\n'
    assert _fmt(picked, "RETURN (COUNT) MODSEQ 5") == b'* ESEARCH (TAG "a1") COUNT 3 MODSEQ 109\r\n'
    assert _fmt(picked, "RETURN (SAVE) ALL") == b""
    assert _fmt(picked, "RETURN (SAVE MIN) ALL") == b'* ESEARCH (TAG "a1") MIN 2\r\n'


def test_save_result() -> None:
    cands, _ = make([message()] * 9)
    picked = [cands[4], cands[1], cands[8]]

    def saved(query: str) -> list[int] | None:
        return save_result(picked, parse_search(args(query)))

    assert saved("ALL") is None
    assert saved("RETURN (SAVE) ALL") == [12, 15, 19]
    assert saved("RETURN (SAVE MIN) ALL") == [12]
    assert saved("RETURN (SAVE MIN MAX) ALL") == [12, 19]
    assert saved("RETURN (SAVE MAX COUNT) ALL") == [12, 15, 19]  # RFC 5182 §2.4
    assert save_result([], parse_search(args("RETURN (SAVE MIN) ALL"))) == []


def test_text_key_shape() -> None:
    assert parse_search(args("TEXT Foo")).key == Text("foo", header=True)
    assert parse_search(args("BODY Foo")).key == Text("foo")


@pytest.mark.parametrize("data", [b"\x00", b"ab", b"abc", b"abcd", bytes(range(256))])
def test_decode_transfer_keeps_every_byte_of_padded_base64(data: bytes) -> None:
    """Regression: the padding used to be stripped before cutting to whole quanta."""
    import base64 as b64

    encoded = b64.encodebytes(data)  # with "=" padding and line breaks
    assert decode_transfer(encoded, "base64") == data
