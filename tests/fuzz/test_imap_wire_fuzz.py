"""Hypothesis fuzzing of the IMAP command reader (posthorn.imap.wire).

Any octets, split anywhere, give only the documented events, the same events however they
are split, a bounded number of them, and a bounded buffer; and well-formed commands generated
from `Value`s, written with every kind of string, come back exactly as they were."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from posthorn.imap.values import Atom, Command, String, Value
from posthorn.imap.wire import CommandReader, Continue, Event, LineTooLong, Reject
from tests.fuzz.budget import budget

FUZZ = budget(300)

MAX_LINE = 40
LITERAL_LIMIT = 30
LIMITS = {"max_line": MAX_LINE, "max_command": 300, "max_literals": 4}

_PIECES = st.sampled_from(
    [
        b"a1 ", b"A2 ", b"NOOP", b"UID ", b"fetch ", b"APPEND ", b"IDLE", b"DONE", b"\r\n",
        b"\n", b"\r", b" ", b"  ", b"(", b")", b"[", b"]", b'"', b"\\", b"{", b"}", b"~", b"+",
        b"*", b"%", b"<0.1>", b"NIL", b"{0}\r\n", b"{3}\r\n", b"{5+}\r\n", b"~{2}\r\n",
        b"~{4+}\r\n", b"{31}\r\n", b"{31+}\r\n", b"{9999999999999999999999}", b"{12-}",
        b"\x00", b"\x01", b"\t", b"\x7f", b"\xff", b"\xc3\xa9", b"BODY[HEADER.FIELDS (a)]",
        b"y" * 45, b"1:*", b"\\Seen",
        b"a1 X " + b"y" * 35 + b"\r\n", b"a1 X " + b"y" * 36 + b"\r\n",  # at the line limit
    ]
)  # fmt: skip
_HEADS = st.sampled_from(
    [b"a1 FETCH 1 ", b"a2 APPEND INBOX ", b"a3 uid Search ", b"a4 LOGIN ", b"a5 IDLE\r\n", b""]
)
_COMMANDISH = st.lists(
    st.tuples(_HEADS, st.lists(_PIECES, max_size=8).map(b"".join))
    .map(b"".join)
    .map(lambda line: line + b"\r\n"),
    max_size=8,
).map(b"".join)
_STREAM = st.one_of(
    st.binary(max_size=300), st.lists(_PIECES, max_size=60).map(b"".join), _COMMANDISH
)


def _cuts(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """``data`` split at arbitrary offsets (possibly none, possibly into single octets)."""

    def split(points: list[int]) -> list[bytes]:
        bounds = [0, *sorted(points), len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds)]

    single = st.just([data[i : i + 1] for i in range(len(data))])
    return st.one_of(st.lists(st.integers(0, len(data)), max_size=20).map(split), single)


def _read(chunks: list[bytes], limit: Callable[[str], int], **kwargs: int) -> list[Event | bytes]:
    """Feed chunk by chunk, draining after each; after IDLE read one raw line (as the session
    does). Checks the bounds that must hold whatever arrives."""
    r = CommandReader(literal_limit=limit, **kwargs)
    total = sum(map(len, chunks))
    bound = max(kwargs.get("max_line", 65536) + 1, LITERAL_LIMIT)
    out: list[Event | bytes] = []
    raw = False
    for chunk in chunks:
        r.feed(chunk)
        while True:
            assert len(out) <= total + 1  # every result consumes input: no endless loop
            item: Event | bytes | LineTooLong | None
            item = r.next_line(MAX_LINE) if raw else r.next_event()
            if item is None:
                break
            if isinstance(item, LineTooLong):
                item = b"<too long>"
            raw = isinstance(item, Command) and item.name == "IDLE"
            out.append(item)
        assert r.pending() <= bound
    return out


def _check_events(events: list[Event | bytes]) -> None:
    for i, event in enumerate(events):
        if isinstance(event, Command):
            assert event.tag and event.tag.isascii() and "+" not in event.tag
            assert event.name == event.name.upper() and event.name.isascii()
        elif isinstance(event, Reject):
            assert event.status in ("BAD", "NO")
            assert event.code in (None, "TOOBIG")
            assert event.text
            if event.close:
                assert i == len(events) - 1  # nothing after a closing Reject
        else:
            assert isinstance(event, Continue | bytes)


@FUZZ
@given(st.data(), _STREAM)
def test_any_octets_any_split_small_limits(data: st.DataObject, stream: bytes) -> None:
    limit = (lambda name: LITERAL_LIMIT) if data.draw(st.booleans()) else (lambda name: 4)
    whole = _read([stream], limit, **LIMITS)
    _check_events(whole)
    assert _read(data.draw(_cuts(stream)), limit, **LIMITS) == whole


@FUZZ
@given(st.data(), _STREAM)
def test_any_octets_any_split_default_limits(data: st.DataObject, stream: bytes) -> None:
    def limit(name: str) -> int:
        return LITERAL_LIMIT

    whole = _read([stream], limit)
    _check_events(whole)
    assert _read(data.draw(_cuts(stream)), limit) == whole


# --- round trip -------------------------------------------------------------------------------

_TAG_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '(){%*"\\+')
_ATOM_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '(){"[') + "éü日"
_SECTION_CHARS = "ABCdef.-0123456789 ()<>"

Wire = tuple[Value, bytes, int]  # a value, one way to write it, its synchronizing literals


def _section() -> st.SearchStrategy[str]:
    quoted = st.text("ab] (", max_size=4).map(lambda t: f'"{t}"')
    inner = st.lists(st.one_of(st.text(_SECTION_CHARS, max_size=8), quoted), max_size=3)
    return inner.map(lambda parts: "[" + "".join(parts) + "]")


_ATOM_TEXT = st.builds(
    lambda head, section, rest: head + section + rest if section else head + rest or "x",
    st.text(_ATOM_CHARS, max_size=8),
    st.one_of(st.just(""), _section()),
    st.text(_ATOM_CHARS, max_size=4),
)


def _atom(text: str) -> Wire:
    return Atom(text), text.encode(), 0


def _string(draw: st.DrawFn) -> Wire:
    form = draw(st.sampled_from(["quoted", "sync", "nonsync", "binary", "binary+"]))
    data = draw(st.binary(max_size=40))
    if form.startswith("binary"):
        plus = b"+" if form.endswith("+") else b""
        wire = b"~{%d%s}\r\n%s" % (len(data), plus, data)
        return String(data, literal=True, binary=True), wire, 0 if plus else 1
    data = data.replace(b"\x00", b"")
    if form == "quoted":
        data = data.replace(b"\r", b"").replace(b"\n", b"")
        escaped = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return String(data), b'"' + escaped + b'"', 0
    plus = b"+" if form == "nonsync" else b""
    wire = b"{%d%s}\r\n%s" % (len(data), plus, data)
    return String(data, literal=True), wire, 0 if plus else 1


def _join(items: list[Wire]) -> Wire:
    wire = b"(" + b" ".join(w for _, w, _ in items) + b")"
    return tuple(v for v, _, _ in items), wire, sum(n for _, _, n in items)


_LEAF = st.one_of(_ATOM_TEXT.map(_atom), st.composite(_string)())
_VALUE = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=4).map(_join), max_leaves=12)


@st.composite
def _command(draw: st.DrawFn) -> tuple[Command, bytes, int]:
    """A command, its wire form, and how many synchronizing literals it holds."""
    tag = draw(st.text(_TAG_CHARS, min_size=1, max_size=8))
    name = draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=10))
    if name in ("UID", "IDLE"):  # UID needs a subcommand; IDLE switches to raw lines
        name = "NOOP"
    if draw(st.booleans()):
        name = "UID " + name
    args = draw(st.lists(_VALUE, max_size=5))
    spoken = name.lower() if draw(st.booleans()) else name
    wire = tag.encode() + b" " + spoken.encode()
    for _, w, _ in args:
        wire += b" " + w
    wire += draw(st.sampled_from([b"\r\n", b"\n"]))
    syncs = sum(n for _, _, n in args)
    return Command(tag, name, tuple(v for v, _, _ in args)), wire, syncs


@FUZZ
@given(st.data(), st.lists(_command(), min_size=1, max_size=4))
def test_generated_commands_round_trip(
    data: st.DataObject, commands: list[tuple[Command, bytes, int]]
) -> None:
    stream = b"".join(wire for _, wire, _ in commands)
    expected: list[Event | bytes] = []
    for command, _, syncs in commands:
        expected += [Continue()] * syncs + [command]
    chunks = data.draw(_cuts(stream))
    assert _read(chunks, lambda name: 1000) == expected
