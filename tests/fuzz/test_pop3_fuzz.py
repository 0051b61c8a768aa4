"""Hypothesis fuzzing of the POP3 wire layer: the parser only ever returns a `Command` or raises
`ParseError`; the line reader never buffers past its limit; the message transforms are exact
whatever the chunking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from posthorn.pop3.protocol import (
    MAX_COMMAND_LINE,
    Command,
    CRLFNormalizer,
    DotStuffer,
    LineReader,
    LineTooLong,
    OctetCounter,
    ParseError,
    parse_command,
)
from tests.fuzz.budget import budget

_WORDS = st.sampled_from(
    [b"USER", b"PASS", b"STAT", b"LIST", b"RETR", b"TOP", b"UIDL", b"AUTH", b"CAPA", b"dele"]
)
_LINES = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda w, rest: w + b" " + rest, _WORDS, st.binary(max_size=60)),
)


@budget(400)
@given(_LINES)
def test_parse_command_returns_or_refuses(line: bytes) -> None:
    try:
        cmd = parse_command(line)
    except ParseError as e:
        assert str(e)
        return
    assert isinstance(cmd, Command)
    assert cmd.name.isupper() and 1 <= len(cmd.name) <= 4
    assert all(a.isascii() for a in cmd.args)


@budget(200)
@given(st.lists(st.binary(max_size=400), max_size=12))
def test_line_reader_is_bounded(chunks: list[bytes]) -> None:
    reader = LineReader()
    for chunk in chunks:
        reader.feed(chunk)
        while (line := reader.next_line(MAX_COMMAND_LINE)) is not None:
            assert isinstance(line, LineTooLong) or len(line) + 2 <= MAX_COMMAND_LINE
            assert isinstance(line, LineTooLong) or b"\n" not in line
        assert reader.buffered <= MAX_COMMAND_LINE + len(chunk)


_MESSAGE = st.lists(
    st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"..", b"x.y"]), max_size=60
).map(b"".join)


@budget(300)
@given(_MESSAGE, st.integers(min_value=1, max_value=9))
def test_retr_transforms_are_exact_at_any_chunking(data: bytes, size: int) -> None:
    norm, count, stuff = CRLFNormalizer(), OctetCounter(), DotStuffer()
    sent = b""
    normalized = b""
    for i in range(0, len(data), size):
        chunk = data[i : i + size]
        count.feed(chunk)
        part = norm.feed(chunk)
        normalized += part
        sent += stuff.feed(part)
    tail = norm.finish()
    normalized += tail
    sent += stuff.feed(tail) + stuff.finish()
    # RFC 1939 §11: the announced size is the octets before stuffing.
    assert count.octets == len(normalized)
    assert normalized == data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    # Undoing the stuffing gives the message back, and the terminator appears only at the end.
    assert sent.endswith(b".\r\n")
    body = sent[: -len(b".\r\n")]
    assert b"\r\n.\r\n" not in b"\r\n" + body
    lines = body.split(b"\r\n")
    restored = b"\r\n".join(ln[1:] if ln.startswith(b".") else ln for ln in lines)
    if normalized.endswith(b"\r\n") or not normalized:
        assert restored == normalized
    else:
        assert restored == normalized + b"\r\n"


@budget(300)
@given(st.sampled_from([b"USER", b"pass", b"Top", b"LIST", b"UIDL", b"APOP", b"XTND"]), _LINES)
def test_parsed_commands_render_back(word: bytes, rest: bytes) -> None:
    """What parses is exactly what was sent: re-rendering it parses to the same command."""
    try:
        cmd = parse_command(word + b" " + rest)
    except ParseError:
        return
    again = parse_command(" ".join([cmd.name, *cmd.args]).encode("ascii"))
    assert again == cmd
