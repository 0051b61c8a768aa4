"""DATA and BDAT content readers (posthorn.smtp.data): RFC 5321 §4.1.1.4, §4.5.2, §4.5.3.1.6,
§2.3.8 (SMTP smuggling), RFC 3030, with chunks split everywhere."""

from __future__ import annotations

import pytest

from posthorn.smtp import codes
from posthorn.smtp.data import ChunkReader, DataReader

BIG = 10**9


def feed_all(reader: DataReader, chunks: list[bytes]) -> bytes:
    out = b"".join(reader.feed(c) for c in chunks)
    assert reader.buffered <= 4
    return out


def whole(stream: bytes, max_size: int = BIG, max_line: int = 1000) -> tuple[bytes, DataReader]:
    reader = DataReader(max_size, max_line)
    return reader.feed(stream), reader


def assert_split_invariant(stream: bytes, max_size: int = BIG, max_line: int = 1000) -> None:
    """Feeding ``stream`` split at any one offset, or byte by byte, changes nothing."""
    expected, ref = whole(stream, max_size, max_line)
    splits = [[stream[:i], stream[i:]] for i in range(len(stream) + 1)]
    splits.append([stream[i : i + 1] for i in range(len(stream))])
    for chunks in splits:
        reader = DataReader(max_size, max_line)
        out = feed_all(reader, chunks)
        state = (reader.done, reader.rest, reader.error, reader.size, reader.seen_8bit)
        assert state == (ref.done, ref.rest, ref.error, ref.size, ref.seen_8bit), chunks
        if ref.error is None:
            assert out == expected, chunks


# --- the ordinary case ------------------------------------------------------------------------


def test_simple_message_and_pipelined_rest() -> None:
    out, reader = whole(b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert out == b"Subject: hi\r\n\r\nbody\r\n"
    assert reader.done
    assert reader.rest == b"QUIT\r\n"  # RFC 2920: the next command, not message bytes
    assert reader.size == len(out)
    assert reader.error is None


def test_empty_message_is_a_dot_at_the_very_start() -> None:
    out, reader = whole(b".\r\nMAIL FROM:<>\r\n")
    assert (out, reader.done, reader.rest, reader.size) == (b"", True, b"MAIL FROM:<>\r\n", 0)


def test_nothing_yet() -> None:
    reader = DataReader(BIG)
    assert reader.feed(b"") == b""
    assert reader.feed(b".") == b""
    assert not reader.done
    assert reader.feed(b"\r") == b""
    assert reader.feed(b"\n") == b""
    assert reader.done


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"..hidden\r\n.\r\n", b".hidden\r\n"),  # RFC 5321 §4.5.2, first line too
        (b"a\r\n..\r\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),
        (b"a\r\n...\r\n.\r\n", b"a\r\n..\r\n"),
        (b"a\r\n.b\r\n.\r\n", b"a\r\nb\r\n"),  # an unstuffed dot is dropped too (lenient)
        (b"a.\r\n.a\r\n.\r\n", b"a.\r\na\r\n"),
        (b"a\r\n\r\n.\r\n", b"a\r\n\r\n"),
        (b"\r\n.\r\n", b"\r\n"),
    ],
)
def test_dot_unstuffing(stream: bytes, message: bytes) -> None:
    out, reader = whole(stream)
    assert out == message
    assert reader.done and reader.error is None
    assert_split_invariant(stream)


def test_feed_after_done_goes_to_rest() -> None:
    reader = DataReader(BIG)
    assert reader.feed(b"x\r\n.\r\nRS") == b"x\r\n"
    assert reader.feed(b"ET\r\n") == b""
    assert reader.rest == b"RSET\r\n"


def test_only_the_first_marker_ends_the_message() -> None:
    stream = b"a\r\n.\r\nb\r\n.\r\n"
    out, reader = whole(stream)
    assert (out, reader.rest) == (b"a\r\n", b"b\r\n.\r\n")
    assert_split_invariant(stream)


def test_marker_split_across_every_boundary() -> None:
    stream = b"Subject: x\r\n\r\n..a\r\n.b\r\n\r\n.\r\nQUIT\r\nNOOP\r\n"
    assert_split_invariant(stream)
    assert whole(stream)[0] == b"Subject: x\r\n\r\n.a\r\nb\r\n\r\n"


def test_large_message_in_64k_chunks() -> None:
    lines = [b"%06d " % i + b"x" * (i % 90) for i in range(20000)]
    lines[5] = b"." + lines[5]
    message = b"\r\n".join(lines) + b"\r\n"
    stream = message.replace(b"\r\n.", b"\r\n..") + b".\r\nQUIT\r\n"
    reader = DataReader(BIG)
    out = feed_all(reader, [stream[i : i + 65536] for i in range(0, len(stream), 65536)])
    assert out == message
    assert (reader.done, reader.rest, reader.size) == (True, b"QUIT\r\n", len(message))


def test_seen_8bit() -> None:
    assert not whole(b"plain\r\n.\r\n")[1].seen_8bit
    assert whole("caf\u00e9\r\n.\r\n".encode())[1].seen_8bit


# --- size -------------------------------------------------------------------------------------


def test_size_exactly_at_the_limit() -> None:
    stream = b"12345678\r\n.\r\n"  # 10 message octets
    out, reader = whole(stream, max_size=10)
    assert out == b"12345678\r\n"
    assert reader.error is None


def test_size_over_the_limit() -> None:
    stream = b"123456789\r\n" * 3 + b".\r\nQUIT\r\n"
    reader = DataReader(15)
    outs = [reader.feed(stream[i : i + 11]) for i in range(0, len(stream), 11)]
    assert outs[0] == b"123456789"  # within the limit (the CRLF may start the end marker)
    assert outs[1:] == [b""] * (len(outs) - 1)  # nothing more once the limit is passed
    assert reader.error == codes.MESSAGE_TOO_BIG
    assert reader.done  # the end was still found ...
    assert reader.rest == b"QUIT\r\n"  # ... and the next command kept
    assert reader.size == 33  # and counted on, for the log
    assert_split_invariant(stream, max_size=15)


def test_zero_size_limit() -> None:
    assert whole(b".\r\n", max_size=0)[1].error is None
    assert whole(b"a\r\n.\r\n", max_size=0)[1].error == codes.MESSAGE_TOO_BIG


# --- line length (RFC 5321 §4.5.3.1.6: 1000 octets including CRLF) ---------------------------


def test_line_of_1000_octets_is_fine() -> None:
    stream = b"x" * 998 + b"\r\n.\r\n"
    assert whole(stream)[1].error is None


def test_line_of_1001_octets_is_too_long() -> None:
    stream = b"x" * 999 + b"\r\nnext\r\n.\r\nQUIT\r\n"
    out, reader = whole(stream)
    assert reader.error == codes.LINE_TOO_LONG
    assert out == b""
    assert (reader.done, reader.rest) == (True, b"QUIT\r\n")


def test_stuffed_dot_does_not_count() -> None:
    assert whole(b"a\r\n." + b"." * 998 + b"\r\n.\r\n")[1].error is None
    assert whole(b"a\r\n." + b"." * 999 + b"\r\n.\r\n")[1].error == codes.LINE_TOO_LONG


def test_long_line_across_chunks() -> None:
    reader = DataReader(BIG)
    for _ in range(10):
        reader.feed(b"y" * 100)
    assert reader.error == codes.LINE_TOO_LONG
    assert reader.feed(b"\r\n.\r\n") == b""
    assert reader.done


def test_line_limit_split_everywhere() -> None:
    assert_split_invariant(b"abc\r\n" + b"x" * 19 + b"\r\nz\r\n.\r\n", max_line=20)
    assert_split_invariant(b"abc\r\n" + b"x" * 18 + b"\r\nz\r\n.\r\n", max_line=20)
    assert whole(b"x" * 19 + b"\r\n.\r\n", max_line=20)[1].error == codes.LINE_TOO_LONG
    assert whole(b"x" * 18 + b"\r\n.\r\n", max_line=20)[1].error is None


def test_many_short_lines_then_a_long_one() -> None:
    stream = b"ab\r\n" * 700 + b"q" * 999 + b"\r\n.\r\n"
    assert whole(stream)[1].error == codes.LINE_TOO_LONG
    assert whole(stream[:-1004] + b"q" * 998 + b"\r\n.\r\n")[1].error is None


# --- SMTP smuggling: the end is only CRLF.CRLF, and bare CR/LF is refused ---------------------


@pytest.mark.parametrize(
    "smuggle",
    [
        b"\n.\n",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r",
        b"\r.\r\n",
        b"\r\n.\r",
        b"\n.\r",
        b"\r\n\x00.\r\n",
    ],
)
def test_smuggled_end_markers_do_not_end_the_message(smuggle: bytes) -> None:
    second = b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
    stream = b"Subject: real\r\n\r\nhi" + smuggle + second + b"fake\r\n.\r\nQUIT\r\n"
    out, reader = whole(stream)
    assert reader.done
    assert reader.rest == b"QUIT\r\n"  # the smuggled commands are not commands
    if b"\x00" in smuggle:
        assert reader.error is None  # no bare CR/LF: just odd content, fully ours
        assert second in out
    else:
        assert reader.error == codes.BARE_LINE_ENDING
        assert out == b""
    assert_split_invariant(stream)


@pytest.mark.parametrize(
    "stream",
    [
        b"a\rb\r\n.\r\n",
        b"a\nb\r\n.\r\n",
        b"a\r\r\n.\r\n",
        b"a\n\r\n.\r\n",
        b"\n.\r\n",
        b"\r\r\n.\r\n",
        b"a\r",
    ],
)
def test_bare_cr_or_lf_anywhere(stream: bytes) -> None:
    reader = DataReader(BIG)
    reader.feed(stream)
    reader.feed(b"\r\n.\r\n")
    assert reader.error == codes.BARE_LINE_ENDING
    assert reader.done


def test_bare_line_ending_outranks_other_errors_whatever_the_order() -> None:
    stream = b"x" * 50 + b"\r\n" + b"y" * 10 + b"\n" + b"z" * 40 + b"\r\n.\r\n"
    assert_split_invariant(stream, max_size=20, max_line=30)
    assert whole(stream, max_size=20, max_line=30)[1].error == codes.BARE_LINE_ENDING


def test_line_too_long_outranks_size() -> None:
    stream = b"short\r\n" * 5 + b"x" * 40 + b"\r\n.\r\n"
    assert whole(stream, max_size=20, max_line=30)[1].error == codes.LINE_TOO_LONG
    assert_split_invariant(stream, max_size=20, max_line=30)


def test_constructor_checks_limits() -> None:
    with pytest.raises(ValueError):
        DataReader(-1)
    with pytest.raises(ValueError):
        ChunkReader(10, max_line=2)


# --- BDAT (RFC 3030) --------------------------------------------------------------------------


def chunked(chunks: list[bytes], **kwargs: object) -> tuple[bytes, ChunkReader]:
    reader = ChunkReader(**kwargs)  # type: ignore[arg-type]
    out = b"".join(reader.feed(c) for c in chunks)
    return out + reader.finish(), reader


def test_bdat_passes_bytes_unchanged() -> None:
    out, reader = chunked([b"Subject: a\r\n\r\n", b"..x\r\n.\r\n", b"end\r\n"], max_size=BIG)
    assert out == b"Subject: a\r\n\r\n..x\r\n.\r\nend\r\n"  # no dot-stuffing in BDAT
    assert (reader.done, reader.error, reader.size) == (True, None, len(out))


def test_bdat_crlf_split_between_chunks() -> None:
    assert chunked([b"a\r", b"\nb\r\n"], max_size=BIG)[1].error is None
    assert chunked([b"a\r", b"", b"\nb\r\n"], max_size=BIG)[1].error is None


@pytest.mark.parametrize(
    "chunks",
    [
        [b"a\r", b"b\r\n"],
        [b"a\r", b"\r\n"],
        [b"a\n"],
        [b"a\r\n", b"\nb\r\n"],
        [b"a\rb\r\n"],
        [b"a\r"],  # a CR at the very end, settled by finish()
        [b"a\r\n.\n"],
    ],
)
def test_bdat_bare_line_endings(chunks: list[bytes]) -> None:
    _, reader = chunked(chunks, max_size=BIG)
    assert reader.error == codes.BARE_LINE_ENDING


def test_bdat_binarymime_allows_anything() -> None:
    data = [b"\x00\r\r\n\n" + b"z" * 5000, b"\r"]
    out, reader = chunked(data, max_size=BIG, binary=True)
    assert out == b"".join(data)  # nothing appended either
    assert reader.error is None


def test_bdat_missing_final_crlf_is_appended() -> None:
    out, reader = chunked([b"Subject: a\r\n\r\nno newline"], max_size=BIG)
    assert out == b"Subject: a\r\n\r\nno newline\r\n"
    assert reader.size == len(out)
    assert chunked([], max_size=BIG)[0] == b""  # BDAT 0 LAST: empty stays empty


def test_bdat_appended_crlf_counts_for_line_length() -> None:
    assert chunked([b"x" * 998], max_size=BIG)[1].error is None
    assert chunked([b"x" * 999], max_size=BIG)[1].error == codes.LINE_TOO_LONG


def test_bdat_long_line_across_chunks() -> None:
    _, reader = chunked([b"y" * 600, b"y" * 399 + b"\r\n"], max_size=BIG)
    assert reader.error == codes.LINE_TOO_LONG
    assert chunked([b"y" * 600, b"y" * 398 + b"\r\n"], max_size=BIG)[1].error is None


def test_bdat_size_limit() -> None:
    reader = ChunkReader(10)
    assert reader.feed(b"12345678\r\n") == b"12345678\r\n"
    assert reader.feed(b"x\r\n") == b""
    assert reader.finish() == b""
    assert (reader.error, reader.size) == (codes.MESSAGE_TOO_BIG, 13)


def test_bdat_feed_after_finish_is_a_bug() -> None:
    reader = ChunkReader(10)
    reader.finish()
    assert reader.finish() == b""
    with pytest.raises(RuntimeError):
        reader.feed(b"x")
