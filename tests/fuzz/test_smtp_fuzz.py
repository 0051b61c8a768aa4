"""Hypothesis fuzzing of the pure SMTP parts: the parsers raise nothing but SMTPError, and the
content readers agree with an obviously-correct per-line model however the input is split."""

from __future__ import annotations

import contextlib
import itertools
import re

from hypothesis import given
from hypothesis import strategies as st

from posthorn.smtp import codes
from posthorn.smtp.codes import Reply, SMTPError
from posthorn.smtp.data import ChunkReader, DataReader
from posthorn.smtp.protocol import (
    decode_sasl,
    parse_auth,
    parse_bdat,
    parse_command,
    parse_helo,
    parse_mail_from,
    parse_rcpt_to,
    xtext_decode,
    xtext_encode,
)
from tests.fuzz.budget import budget

FUZZ = budget(400)

# --- parsers ----------------------------------------------------------------------------------

_ARG_PIECES = st.sampled_from(
    [
        b"FROM:", b"TO:", b"from:", b"<", b">", b"<>", b"@", b"a", b"example.org", b".", b" ",
        b"  ", b'"', b"\\", b",", b":", b"@a,@b:", b"%", b"!", b"=", b"+", b"+2B", b"+zz",
        b"SIZE=", b"BODY=", b"8BITMIME", b"SMTPUTF8", b"RET=", b"ENVID=", b"AUTH=", b"NOTIFY=",
        b"NEVER", b"SUCCESS,DELAY", b"ORCPT=", b"rfc822;", b"123", b"9" * 25, b"\xc3\xa9",
        b"\xff", b"\x00", b"\r", b"\n", b"[", b"]", b"IPv6:", b"::1", b"postmaster", b"LAST",
    ]
)  # fmt: skip
_ARG = st.one_of(st.binary(max_size=80), st.lists(_ARG_PIECES, max_size=14).map(b"".join))


def attempt(fn: object, *args: object, **kwargs: object) -> object:
    assert callable(fn)
    try:
        return fn(*args, **kwargs)
    except SMTPError as exc:
        assert isinstance(exc.reply, Reply)
        return None


@FUZZ
@given(_ARG)
def test_parsers_raise_only_smtp_error(arg: bytes) -> None:
    command = attempt(parse_command, arg)
    if command is not None:
        verb = command.verb  # type: ignore[attr-defined]
        assert verb.isalpha() and verb.isascii() and verb == verb.upper()
    mail = attempt(parse_mail_from, arg)
    if mail is not None and mail.path is not None:  # type: ignore[attr-defined]
        assert mail.path.is_ascii or mail.params.smtputf8  # type: ignore[attr-defined]
    for smtputf8 in (False, True):
        rcpt = attempt(parse_rcpt_to, arg, smtputf8=smtputf8, postmaster_domain="example.org")
        if rcpt is not None and not smtputf8:
            assert rcpt.path.is_ascii  # type: ignore[attr-defined]
    for fn in (parse_helo, parse_auth, parse_bdat, decode_sasl):
        attempt(fn, arg)


@FUZZ
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))
def test_xtext_round_trip(text: str) -> None:
    encoded = xtext_encode(text)
    assert encoded.isascii() and " " not in encoded and "=" not in encoded
    assert xtext_decode(encoded) == text


@FUZZ
@given(st.text(max_size=30))
def test_xtext_decode_raises_only_value_error(text: str) -> None:
    for utf8 in (False, True):
        with contextlib.suppress(ValueError):
            xtext_decode(text, utf8=utf8)


# --- content readers: a per-line model as the oracle -----------------------------------------

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def gravest(bare: bool, long: bool, big: bool) -> Reply | None:
    if bare:
        return codes.BARE_LINE_ENDING
    if long:
        return codes.LINE_TOO_LONG
    return codes.MESSAGE_TOO_BIG if big else None


def model_data(stream: bytes, max_size: int, max_line: int) -> tuple[bytes, bytes, Reply | None]:
    """(message, rest, error) for a stream that holds an end marker, line by line."""
    s = b"\r\n" + stream
    end = s.find(b"\r\n.\r\n")
    assert end >= 0
    lines = s[2 : end + 2].split(b"\r\n")
    message = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    long = any(len(piece) >= max_line for piece in message.split(b"\n"))
    error = gravest(bool(_BARE.search(message)), long, len(message) > max_size)
    return message, s[end + 5 :], error


def model_chunks(
    content: bytes, max_size: int, max_line: int, binary: bool
) -> tuple[bytes, Reply | None]:
    if binary:
        return content, codes.MESSAGE_TOO_BIG if len(content) > max_size else None
    if content and not content.endswith(b"\n") and not content.endswith(b"\r"):
        content += b"\r\n"
    long = any(len(piece) >= max_line for piece in content.split(b"\n"))
    return content, gravest(bool(_BARE.search(content)), long, len(content) > max_size)


_STREAM_PIECES = st.sampled_from(
    [
        b"\r\n", b"\r\n", b"\r\n", b".", b"..", b"\r", b"\n", b"a", b"xyz", b"\xe9", b"\r\n.",
        b"\r\n..", b"\r\n.\r", b"\n.\n", b"\r.\r", b"y" * 30, b"\x00",
    ]
)  # fmt: skip
_CONTENT = st.lists(_STREAM_PIECES, max_size=40).map(b"".join)


def split(data: bytes, draw: st.DataObject) -> list[bytes]:
    """``data`` cut at a few random offsets (empty chunks included)."""
    cuts = draw.draw(st.lists(st.integers(0, len(data)), max_size=10), label="cuts")
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@FUZZ
@given(
    _CONTENT,
    st.binary(max_size=12),
    st.data(),
    st.integers(0, 200),
    st.integers(3, 40),
)
def test_data_reader_matches_model(
    content: bytes, tail: bytes, draw: st.DataObject, max_size: int, max_line: int
) -> None:
    stream = content + b"\r\n.\r\n" + tail
    message, rest, error = model_data(stream, max_size, max_line)
    reader = DataReader(max_size, max_line)
    out = b""
    for chunk in split(stream, draw):
        out += reader.feed(chunk)
        assert reader.buffered <= 4  # memory stays bounded
    assert (reader.done, reader.rest, reader.error) == (True, rest, error)
    assert reader.size == len(message)
    if error is None:
        assert out == message
    else:
        assert message.startswith(out) and len(out) <= max_size


@FUZZ
@given(_CONTENT, st.data())
def test_stuffed_message_comes_back_unchanged(content: bytes, draw: st.DataObject) -> None:
    # A well-formed message (CRLF lines), dot-stuffed as RFC 5321 §4.5.2 says, round-trips.
    lines = _BARE.sub(b"", content).split(b"\r\n")
    message = b"".join(line + b"\r\n" for line in lines if line or len(lines) > 1)
    stuffed = b"\r\n" + message
    stream = stuffed.replace(b"\r\n.", b"\r\n..")[2:] + b".\r\nQUIT\r\n"
    reader = DataReader(10**6, 10**6)
    out = b"".join(reader.feed(chunk) for chunk in split(stream, draw))
    assert (out, reader.rest, reader.error) == (message, b"QUIT\r\n", None)


@FUZZ
@given(
    _CONTENT,
    st.data(),
    st.integers(0, 200),
    st.integers(3, 40),
    st.booleans(),
)
def test_chunk_reader_matches_model(
    content: bytes, draw: st.DataObject, max_size: int, max_line: int, binary: bool
) -> None:
    expected, error = model_chunks(content, max_size, max_line, binary)
    reader = ChunkReader(max_size, max_line, binary=binary)
    out = b"".join(reader.feed(chunk) for chunk in split(content, draw)) + reader.finish()
    assert (reader.done, reader.error) == (True, error)
    if error is None:
        assert out == expected
        assert reader.size == len(expected)
    else:
        assert expected.startswith(out) and len(out) <= max_size
