"""The pure POP3 wire layer: command parsing, responses, line reading, the message transforms."""

from __future__ import annotations

import pytest

from posthorn.pop3.protocol import (
    Command,
    CRLFNormalizer,
    DotStuffer,
    LineReader,
    LineTooLong,
    OctetCounter,
    ParseError,
    TopFilter,
    continuation,
    err,
    message_number,
    multiline,
    ok,
    parse_command,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"STAT", Command("STAT")),
        (b"list 2", Command("LIST", ("2",))),
        (b"TOP 1 10", Command("TOP", ("1", "10"))),
        (b"PASS secret with  spaces ", Command("PASS", ("secret with  spaces ",))),
        (b"PASS ", Command("PASS", ("",))),
        (b"AUTH PLAIN AGFsaWNlAHB3", Command("AUTH", ("PLAIN", "AGFsaWNlAHB3"))),
    ],
)
def test_parse_command(line: bytes, expected: Command) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"", "no such command"),
        (b"STATUS", "no such command"),
        (b"ST4T", "no such command"),
        (b" STAT", "no such command"),
        (b"LIST  1", "arguments are separated by one space"),
        (b"LIST 1 ", "arguments are separated by one space"),
        (b"USER \xc3\xa9", "command must be ASCII"),
        (b"USER a\tb", "control character in command"),
    ],
)
def test_parse_command_errors(line: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_command(line)


def test_message_number() -> None:
    assert message_number("12") == 12
    assert message_number("0") == 0  # out of range is the session's call
    for bad in ("", "-1", "1.5", "x", "12345678901", "\u0661"):
        with pytest.raises(ParseError):
            message_number(bad)


def test_responses() -> None:
    assert ok() == b"+OK\r\n"
    assert ok("2 320") == b"+OK 2 320\r\n"
    assert err("in use", "IN-USE") == b"-ERR [IN-USE] in use\r\n"
    assert err("later", "SYS/TEMP") == b"-ERR [SYS/TEMP] later\r\n"
    assert multiline(ok("x"), [b"TOP", b".hidden"]) == b"+OK x\r\nTOP\r\n..hidden\r\n.\r\n"
    assert continuation(b"") == b"+ \r\n"
    assert continuation(b"Username:") == b"+ VXNlcm5hbWU6\r\n"


def test_line_reader_limits_and_line_ends() -> None:
    r = LineReader()
    r.feed(b"STAT\r\nNOOP\nLI")
    assert r.next_line(255) == b"STAT"
    assert r.next_line(255) == b"NOOP"  # a bare LF ends a line too
    assert r.next_line(255) is None
    r.feed(b"ST\r\n")
    assert r.next_line(255) == b"LIST"
    # 253 octets + CRLF = 255 is fine; one more is too long (RFC 2449 §4).
    r.feed(b"x" * 253 + b"\r\n" + b"y" * 254 + b"\r\n")
    assert r.next_line(255) == b"x" * 253
    assert r.next_line(255) == LineTooLong()
    # An endless line is dropped as it arrives, never buffered whole.
    for _ in range(10):
        r.feed(b"z" * 1000)
        assert r.next_line(255) is None
        assert r.buffered <= 1000
    r.feed(b"zz\r\nQUIT\r\n")
    assert r.next_line(255) == LineTooLong()
    assert r.next_line(255) == b"QUIT"
    r.feed(b"USER a\r\nPASS b\r\n")
    r.discard()
    assert r.next_line(255) is None


def _chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_normalizer_and_counter_agree_at_any_chunking(size: int) -> None:
    data = b"a\nb\r\nc\r\r\n\n.\r\nend\r"
    norm, count = CRLFNormalizer(), OctetCounter()
    out = b""
    for chunk in _chunked(data, size):
        out += norm.feed(chunk)
        count.feed(chunk)
    out += norm.finish()
    assert out == b"a\r\nb\r\nc\r\r\n\r\n.\r\nend\r"
    assert count.octets == len(out)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 1000])
def test_dot_stuffing_at_any_chunking(size: int) -> None:
    data = b".first\r\nmid.dle\r\n..two\r\n.\r\nlast"
    stuff = DotStuffer()
    out = b"".join(stuff.feed(c) for c in _chunked(data, size)) + stuff.finish()
    assert out == b"..first\r\nmid.dle\r\n...two\r\n..\r\nlast\r\n.\r\n"
    stuff = DotStuffer()
    assert stuff.feed(b"x\r\n") + stuff.finish() == b"x\r\n.\r\n"
    assert DotStuffer().finish() == b".\r\n"


@pytest.mark.parametrize("size", [1, 2, 3, 4, 1000])
def test_top_filter_at_any_chunking(size: int) -> None:
    msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n"

    def top(lines: int, data: bytes = msg) -> bytes:
        cut = TopFilter(lines)
        out = b""
        for chunk in _chunked(data, size):
            out += cut.feed(chunk)
            if cut.done:
                break
        return out

    assert top(0) == b"A: 1\r\nB: 2\r\n\r\n"
    assert top(2) == b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n"
    assert top(9) == msg
    assert top(1, b"\r\nbody\r\nmore\r\n") == b"\r\nbody\r\n"  # empty header
    assert top(1, b"Only: header\r\n") == b"Only: header\r\n"
