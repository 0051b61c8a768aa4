"""IMAP THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES, checked through the wire format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from posthorn.imap.search import Candidate, Needs
from posthorn.imap.thread import (
    ThreadNode,
    format_thread,
    needs,
    parse_thread,
    references,
    run_thread,
)
from posthorn.imap.values import ParseError, Refused
from posthorn.mail.mime import parse_message
from posthorn.store.base import MessageMeta
from tests.unit.test_imap_search import FakeContext, args, message

T0 = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)


def day(n: int) -> str:
    """A Date header value n minutes after T0."""
    return (T0 + timedelta(minutes=n)).strftime("%a, %d %b %Y %H:%M:%S +0000")


def cands_at(items: dict[int, bytes]) -> list[Candidate]:
    """Candidates with the given sequence numbers (UID = seq + 100)."""
    out = []
    for seq, raw in sorted(items.items()):
        meta = MessageMeta(
            uid=seq + 100,
            modseq=1,
            flags=frozenset(),
            internal_date=T0,
            size=len(raw),
            info=parse_message(raw),
        )
        out.append(Candidate(seq, meta))
    return out


async def thread(query: str, items: dict[int, bytes], *, uid: bool = False) -> bytes:
    cands = cands_at(items)
    ctx = FakeContext({c.meta.uid: items[c.seq] for c in cands})
    nodes = await run_thread(parse_thread(args(query)), cands, ctx)
    return format_thread(nodes, uid=uid)


def test_parse_thread() -> None:
    q = parse_thread(args("references UTF-8 SEEN"))
    assert q.algorithm == "REFERENCES"
    assert q.search.charset == "UTF-8"
    assert needs(q) == Needs(info=True)
    for bad in ("", "REFERENCES", "REFERENCES UTF-8", "BOGUS UTF-8 ALL", "(REFERENCES) UTF-8 ALL"):
        with pytest.raises(ParseError):
            parse_thread(args(bad))
    with pytest.raises(Refused):
        parse_thread(args("REFERENCES BIG5 ALL"))


def test_format_thread_shapes() -> None:
    def leaf(n: int, *children: ThreadNode) -> ThreadNode:
        meta = MessageMeta(n + 1000, 1, frozenset(), T0, 1)
        return ThreadNode(Candidate(n, meta), list(children))

    nodes = [
        leaf(2),
        leaf(3, leaf(6, leaf(4, leaf(23)), leaf(44, leaf(7, leaf(96))))),
    ]
    assert format_thread(nodes, uid=False) == b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
    assert format_thread(nodes[:1], uid=True) == b"* THREAD (1002)\r\n"
    assert format_thread([ThreadNode(None, [leaf(1), leaf(2)])], uid=False) == (
        b"* THREAD ((1)(2))\r\n"
    )
    assert format_thread([], uid=False) == b"* THREAD\r\n"


async def test_references_rfc_example_shape() -> None:
    """The RFC 5256 §4 example answer, from messages that produce it."""
    items = {
        2: message("Lunch", mid="<2@x>", date=day(1)),
        3: message("Plan", mid="<3@x>", date=day(2)),
        6: message("Re: Plan", mid="<6@x>", refs="<3@x>", date=day(3)),
        4: message("Re: Plan", mid="<4@x>", refs="<3@x> <6@x>", date=day(4)),
        23: message("Re: Plan", mid="<23@x>", refs="<3@x> <6@x> <4@x>", date=day(5)),
        44: message("Re: Plan", mid="<44@x>", refs="<3@x> <6@x>", date=day(6)),
        7: message("Re: Plan", mid="<7@x>", refs="<3@x> <6@x> <44@x>", date=day(7)),
        96: message("Re: Plan", mid="<96@x>", irt="<7@x>", date=day(8)),
    }
    expected = b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
    assert await thread("REFERENCES UTF-8 ALL", items) == expected
    assert await thread("REFERENCES UTF-8 ALL", items, uid=True) == (
        b"* THREAD (102)(103 106 (104 123)(144 107 196))\r\n"
    )
    assert await thread("REFERENCES UTF-8 NOT 6", items) == (
        b"* THREAD (2)(3 (4 23)(44 7 96))\r\n"  # the dummy for <6@x> is spliced away
    )


async def test_missing_parent_becomes_a_dummy() -> None:
    items = {
        1: message("Re: gone", mid="<a@x>", refs="<root@x>", date=day(2)),
        2: message("Re: gone", mid="<b@x>", refs="<root@x>", date=day(1)),
        3: message("other", mid="<c@x>", refs="<lost@x>", date=day(3)),
    }
    # two children of a dummy at the top stay under it; a single one is promoted
    assert await thread("REFERENCES UTF-8 ALL", items) == b"* THREAD ((2)(1))(3)\r\n"


async def test_loops_in_references_are_not_linked() -> None:
    items = {
        1: message("a", mid="<a@x>", refs="<b@x>", date=day(1)),
        2: message("b", mid="<b@x>", refs="<a@x>", date=day(2)),
        3: message("c", mid="<c@x>", refs="<c@x> <d@x> <c@x>", date=day(3)),
        4: message("d", mid="<d@x>", refs="<e@x> <d@x> <e@x>", date=day(4)),
    }
    # 1 hangs under 2, and 2 -> 1 would close the loop; 3 adopts 4 in step 1A, but 4's own
    # last reference is a dummy below it, so step 1B cuts it loose and links nothing
    out = await thread("REFERENCES UTF-8 ALL", items)
    assert out == b"* THREAD (2 1)(3)(4)\r\n"


async def test_duplicate_message_ids() -> None:
    items = {
        1: message("first", mid="<dup@x>", date=day(1)),
        2: message("second", mid="<dup@x>", date=day(2)),
        3: message("Re: first", mid="<r@x>", refs="<dup@x>", date=day(3)),
        4: message("none", mid=None, date=day(4)),
        5: message("also none", mid="garbage", date=day(5)),
    }
    assert await thread("REFERENCES UTF-8 ALL", items) == b"* THREAD (1 3)(2)(4)(5)\r\n"


async def test_truncated_references_keep_the_first_link_but_the_last_one_wins() -> None:
    items = {
        1: message("topic", mid="<1@x>", date=day(1)),
        2: message("Re: topic", mid="<2@x>", refs="<1@x>", date=day(2)),
        3: message("Re: topic", mid="<3@x>", refs="<1@x> <2@x>", date=day(3)),
        # truncated: claims <3@x> follows <0@x>, but <3@x> already has its parent <2@x>
        4: message("Re: topic", mid="<4@x>", refs="<0@x> <3@x>", date=day(4)),
    }
    assert await thread("REFERENCES UTF-8 ALL", items) == b"* THREAD (1 2 3 4)\r\n"


async def test_subject_grouping_step_5() -> None:
    items = {
        1: message("Meeting", mid="<1@x>", date=day(1)),
        2: message("Re: Meeting", mid="<2@x>", date=day(2)),  # no references: by subject
        3: message("Lunch", mid="<3@x>", date=day(3)),
        4: message("lunch", mid="<4@x>", date=day(4)),  # neither a reply: a dummy holds both
        5: message("", mid="<5@x>", date=day(5)),
        6: message(None, mid="<6@x>", date=day(6)),  # empty subjects are never grouped
        7: message("Re: Party", mid="<7@x>", date=day(7)),
        8: message("Party", mid="<8@x>", date=day(8)),  # the non-reply becomes the parent
    }
    assert await thread("REFERENCES UTF-8 ALL", items) == (b"* THREAD (1 2)((3)(4))(5)(6)(8 7)\r\n")


async def test_subject_grouping_merges_dummies() -> None:
    items = {
        1: message("Re: x", mid="<1@x>", refs="<p@x>", date=day(1)),
        2: message("Re: x", mid="<2@x>", refs="<p@x>", date=day(2)),
        3: message("Re: x", mid="<3@x>", refs="<q@x>", date=day(3)),
        4: message("Re: x", mid="<4@x>", refs="<q@x>", date=day(4)),
    }
    assert await thread("REFERENCES UTF-8 ALL", items) == b"* THREAD ((1)(2)(3)(4))\r\n"


async def test_siblings_sorted_by_sent_date_then_sequence() -> None:
    items = {
        1: message("p", mid="<p@x>", date=day(0)),
        2: message("Re: p", mid="<2@x>", refs="<p@x>", date=day(9)),
        3: message("Re: p", mid="<3@x>", refs="<p@x>", date=day(5)),
        4: message("Re: p", mid="<4@x>", refs="<p@x>", date="bogus"),  # internal date: T0
        5: message("Re: p", mid="<5@x>", refs="<p@x>", date=day(5)),
    }
    assert await thread("REFERENCES UTF-8 ALL", items) == b"* THREAD (1 (4)(3)(5)(2))\r\n"


async def test_deep_chain_does_not_recurse() -> None:
    n = 3000
    items = {}
    for i in range(1, n + 1):
        refs = f"<{i - 1}@x>" if i > 1 else None
        items[i] = message("Re: deep", mid=f"<{i}@x>", irt=refs, date=day(i))
    out = await thread("REFERENCES UTF-8 ALL", items)
    assert out == b"* THREAD (" + " ".join(map(str, range(1, n + 1))).encode() + b")\r\n"


def test_references_function_is_order_independent() -> None:
    items = {
        1: message("a", mid="<1@x>", date=day(1)),
        2: message("Re: a", mid="<2@x>", refs="<1@x>", date=day(2)),
    }
    cands = cands_at(items)
    forward = format_thread(references(cands), uid=False)
    assert forward == format_thread(references(cands[::-1]), uid=False) == b"* THREAD (1 2)\r\n"


async def test_ordered_subject() -> None:
    items = {
        1: message("A", date=day(3)),
        2: message("B", date=day(1)),
        3: message("Re: A", date=day(2)),
        4: message("a", date=day(4)),
        5: message("Fwd: B", date=day(5)),
        6: message("C", date=day(6)),
    }
    assert await thread("ORDEREDSUBJECT UTF-8 ALL", items) == (b"* THREAD (2 5)(3 (1)(4))(6)\r\n")
    assert await thread("ORDEREDSUBJECT UTF-8 NOT 5", items) == b"* THREAD (2)(3 (1)(4))(6)\r\n"
