"""Sequence sets (RFC 9051 §9 ``sequence-set``): ``1:4,7,9:*`` over message numbers or UIDs.

Parsing is pure and independent of any mailbox; `SequenceSet.ranges` resolves ``*`` against
the largest number in use (RFC 9051 §6.4.8: ``*`` is the largest number in use, and ``n:m``
means the same as ``m:n``). ``$`` (RFC 5182 SEARCHRES) parses to a set with ``saved=True``
that the session replaces with the saved search result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from posthorn.imap.values import Atom, ParseError, Value

MAX_NUMBER = 0xFFFFFFFF  # nz-number is 32-bit (RFC 9051 §9)
MAX_ELEMENTS = 10_000  # more comma-separated elements than any client sends: refuse, bounded


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """Elements as (first, last), either being None for ``*``; order as sent."""

    elements: tuple[tuple[int | None, int | None], ...]
    saved: bool = False

    def ranges(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges with ``*`` = ``largest``. An empty mailbox
        (``largest`` 0) gives ``[]``. Numbers above ``largest`` stay (a UID range may name
        UIDs that do not exist; the caller keeps those it has)."""
        spans: list[tuple[int, int]] = []
        for first, last in self.elements:
            if largest == 0 and (first is None or last is None):
                continue  # "*" in an empty mailbox names nothing
            a = largest if first is None else first
            b = largest if last is None else last
            if a > b:
                a, b = b, a
            if b == 0:
                continue
            spans.append((max(a, 1), b))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1] + 1:
                if b > merged[-1][1]:
                    merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        return merged

    def contains(self, n: int, largest: int) -> bool:
        for first, last in self.elements:
            a = largest if first is None else first
            b = largest if last is None else last
            if min(a, b) <= n <= max(a, b):
                return True
        return False


def _number(text: str) -> int | None:
    if text == "*":
        return None
    if not text.isascii() or not text.isdigit() or text.startswith("0"):
        raise ParseError(f"invalid sequence number {text!r}")
    n = int(text)
    if n > MAX_NUMBER:
        raise ParseError(f"sequence number {text} out of range")
    return n


def parse_sequence_set(text: str) -> SequenceSet:
    """``1:4,7,*`` -> SequenceSet. Raises `ParseError`."""
    if text == "$":
        return SequenceSet((), saved=True)
    if not text:
        raise ParseError("empty sequence set")
    parts = text.split(",")
    if len(parts) > MAX_ELEMENTS:
        raise ParseError("sequence set has too many elements")
    elements: list[tuple[int | None, int | None]] = []
    for part in parts:
        first, colon, last = part.partition(":")
        a = _number(first)
        b = _number(last) if colon else a
        elements.append((a, b))
    return SequenceSet(tuple(elements))


def sequence_arg(value: Value) -> SequenceSet:
    if not isinstance(value, Atom):
        raise ParseError("expected a sequence set")
    return parse_sequence_set(value.text)


def format_sequence(numbers: Sequence[int]) -> str:
    """Ascending numbers as a compact set: ``[1,2,3,5]`` -> ``1:3,5`` (RFC 4315 COPYUID,
    RFC 7162 VANISHED, RFC 4731 ESEARCH ALL). Empty input gives ``""``."""
    return ",".join(a if a == b else f"{a}:{b}" for a, b in _runs(numbers))


def _runs(numbers: Sequence[int]) -> Iterator[tuple[str, str]]:
    it = iter(numbers)
    try:
        start = prev = next(it)
    except StopIteration:
        return
    for n in it:
        if n == prev + 1:
            prev = n
            continue
        yield str(start), str(prev)
        start = prev = n
    yield str(start), str(prev)
