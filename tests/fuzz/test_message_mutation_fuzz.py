"""Hypothesis fuzzing of the parse-once metadata and the FETCH renderer on mutated real
messages: the samples in tests/data/mime with bits flipped, bytes inserted and deleted, and
boundary lines duplicated, dropped or cut. `parse_message` never raises, its offsets stay inside
the message, its JSON round-trips (all checked by `test_mime_fuzz.check`), and `render_fetch`
answers every FETCH item with a well-formed response or `FetchFailed`, nothing else."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from posthorn.imap.fetch import FetchFailed, parse_fetch_items, render_fetch
from posthorn.imap.values import Atom, Value
from posthorn.store.base import MessageMeta
from tests.fuzz.budget import budget
from tests.fuzz.test_mime_fuzz import SAMPLES, check

FUZZ = budget(300)
_BOUNDARY_LINE = re.compile(rb"^--[^\r\n]*\r?\n", re.MULTILINE)


@st.composite
def mutated_sample(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "boundary", "crlf"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[i:i] = draw(st.sampled_from([b"\r\n", b"\n", b"--", b":", b"\x00", b"\xff"]))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 64))]
        elif op == "crlf":
            data = bytearray(bytes(data).replace(b"\r\n", b"\n"))
        else:
            lines = list(_BOUNDARY_LINE.finditer(data))
            if lines:
                m = draw(st.sampled_from(lines))
                how = draw(st.sampled_from(["dup", "drop", "cut", "close"]))
                line = bytes(m.group())
                new = {
                    "dup": line * draw(st.integers(2, 5)),
                    "drop": b"",
                    "cut": line[: draw(st.integers(0, len(line)))],
                    "close": line.rstrip(b"\r\n").rstrip(b"-") + b"--\r\n",
                }[how]
                data[m.start() : m.end()] = new
    return bytes(data)


@FUZZ
@given(mutated_sample())
def test_parse_message_on_mutated_samples(data: bytes) -> None:
    check(data)


_ITEMS = [
    "ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.SIZE", "BODY.PEEK[]", "BODY.PEEK[HEADER]",
    "BODY.PEEK[TEXT]", "BODY.PEEK[1]", "BODY.PEEK[1.2]", "BODY.PEEK[2.1.MIME]",
    "BODY.PEEK[1.HEADER]", "BODY.PEEK[3.TEXT]", "BODY.PEEK[1.2.3.4]", "BODY.PEEK[2]<0.10>",
    "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]", "BODY.PEEK[1.HEADER.FIELDS.NOT (TO)]",
    "BINARY.PEEK[1]", "BINARY.PEEK[2.1]", "BINARY.SIZE[1]", "BINARY.SIZE[2]", "RFC822.HEADER",
    "INTERNALDATE", "FLAGS", "UID",
]  # fmt: skip
_FETCH = re.compile(rb"^\* 1 FETCH \(.*\)\r\n\Z", re.DOTALL)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __call__(self, start: int, length: int | None) -> bytes:
        end = len(self.data) if length is None else start + length
        return self.data[start:end]


@FUZZ
@given(mutated_sample(), st.lists(st.sampled_from(_ITEMS), min_size=1, max_size=5), st.booleans())
def test_render_fetch_on_mutated_samples(data: bytes, names: list[str], utf8: bool) -> None:
    info = check(data)
    meta = MessageMeta(9, 1, frozenset(), datetime(2025, 1, 2, tzinfo=UTC), len(data), 0, info)
    request = parse_fetch_items(tuple[Value, ...](Atom(n) for n in names))
    for with_info in (meta, MessageMeta(9, 1, meta.flags, meta.internal_date, len(data))):
        try:
            out = asyncio.run(
                render_fetch(request, 1, with_info, _Reader(data), flags=["\\Seen"], utf8=utf8)
            )
        except FetchFailed:
            continue
        assert _FETCH.match(out), out[:200]
