"""The client's wire format: reply parsing, EHLO keywords, command lines, dot-stuffing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthorn.queue.envelope import Notify
from posthorn.smtp.codes import Reply
from posthorn.smtp.data import DataReader
from posthorn.smtp.replies import (
    MAX_LINE,
    MAX_LINES,
    DotStuffer,
    ReplyError,
    ReplyReader,
    mail_command,
    parse_ehlo,
    rcpt_command,
    size_limit,
)


def replies(data: bytes) -> list[Reply]:
    return ReplyReader().feed(data)


def test_single_and_multiline_replies() -> None:
    assert replies(b"220 mx.b.test ESMTP\r\n") == [Reply(220, None, "mx.b.test ESMTP")]
    assert replies(
        b"550-5.1.1 The account\r\n550-5.1.1 does not exist.\r\n550 5.1.1 See x\r\n"
    ) == [Reply(550, "5.1.1", "The account\ndoes not exist.\nSee x")]
    assert replies(b"250\r\n354 \r\n") == [Reply(250, None, ""), Reply(354, None, "")]
    # LF alone is tolerated; control characters become spaces; bad UTF-8 is replaced.
    assert replies(b"451 4.3.0 a\tb\xff\n") == [Reply(451, "4.3.0", "a b\ufffd")]


def test_enhanced_code_only_with_matching_class() -> None:
    assert replies(b"550 4.1.1 odd\r\n") == [Reply(550, None, "4.1.1 odd")]  # RFC 3463 §2
    assert replies(b"250 2.01.000 Ok\r\n") == [Reply(250, "2.1.0", "Ok")]
    assert replies(b"250 2.1.0Ok\r\n") == [Reply(250, None, "2.1.0Ok")]
    assert replies(b"250 2.1.0\r\n") == [Reply(250, "2.1.0", "")]


def test_incremental_and_pipelined() -> None:
    reader = ReplyReader()
    assert reader.feed(b"250-mx\r\n250-PIPE") == []
    assert reader.buffered > 0
    assert reader.feed(b"LINING\r\n250 SIZE 10\r\n250 2.1.0 Ok\r\n25") == [
        Reply(250, None, "mx\nPIPELINING\nSIZE 10"),
        Reply(250, "2.1.0", "Ok"),
    ]
    assert reader.buffered == 2
    assert reader.feed(b"0 2.1.5 Ok\r\n") == [Reply(250, "2.1.5", "Ok")]
    assert reader.buffered == 0


@pytest.mark.parametrize(
    "data",
    [
        b"hello\r\n",
        b"25\r\n",
        b"250x\r\n",
        b"150 nope\r\n",
        b"650 nope\r\n",
        b"260 nope\r\n",
        b"250-a\r\n251 b\r\n",  # RFC 5321 §4.2.1: one code per reply
        b"250 " + b"x" * MAX_LINE + b"\r\n",
        b"250 " + b"x" * MAX_LINE,  # no line end yet, but already too long
        b"250-x\r\n" * (MAX_LINES + 1),
    ],
)
def test_malformed_replies_raise(data: bytes) -> None:
    with pytest.raises(ReplyError):
        replies(data)


@given(st.lists(st.binary(max_size=200), max_size=10))
def test_arbitrary_bytes_only_raise_reply_error(chunks: list[bytes]) -> None:
    reader = ReplyReader()
    try:
        for chunk in chunks:
            for reply in reader.feed(chunk):
                assert 200 <= reply.code <= 599
                reply.to_bytes()  # a parsed reply is always a valid Reply
    except ReplyError:
        pass


@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5), st.data())
def test_any_split_gives_the_same_replies(texts: list[str], data: st.DataObject) -> None:
    wire = Reply(250, "2.0.0", "\n".join(texts)).to_bytes()
    expected = replies(wire)
    cut = data.draw(st.integers(0, len(wire)))
    reader = ReplyReader()
    assert reader.feed(wire[:cut]) + reader.feed(wire[cut:]) == expected


def test_parse_ehlo() -> None:
    (reply,) = replies(
        b"250-mx.b.test Hello out.a.test\r\n250-PIPELINING\r\n250-size 35882577\r\n"
        b"250-AUTH PLAIN  LOGIN\r\n250-AUTH=CRAM-MD5\r\n250-8BITMIME\r\n250-bad_kw x\r\n"
        b"250-PIPELINING again\r\n250 STARTTLS\r\n"
    )
    assert parse_ehlo(reply) == {
        "PIPELINING": "",
        "SIZE": "35882577",
        "AUTH": "PLAIN LOGIN",
        "8BITMIME": "",
        "STARTTLS": "",
    }
    (old,) = replies(b"250-mx\r\n250 AUTH=LOGIN PLAIN\r\n")
    assert parse_ehlo(old) == {"AUTH": "LOGIN PLAIN"}
    assert parse_ehlo(Reply(250, None, "mx")) == {}


def test_size_limit() -> None:
    assert size_limit({}) is None
    assert size_limit({"SIZE": ""}) is None
    assert size_limit({"SIZE": "0"}) is None  # RFC 1870 §4: no fixed limit
    assert size_limit({"SIZE": "x1"}) is None
    assert size_limit({"SIZE": "1000"}) == 1000


def test_mail_command_parameters_follow_extensions() -> None:
    all_ext = {"SIZE": "", "8BITMIME": "", "SMTPUTF8": "", "DSN": "", "BINARYMIME": ""}
    line = mail_command(
        "jörg@a.test",
        extensions=all_ext,
        size=42,
        body="8BITMIME",
        smtputf8=True,
        ret="full",
        envid="a b+c",
    )
    params = "SIZE=42 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=a+20b+2Bc"
    assert line == f"MAIL FROM:<jörg@a.test> {params}\r\n".encode()
    assert mail_command("", extensions={}, size=42, ret="FULL", envid="x") == b"MAIL FROM:<>\r\n"
    with pytest.raises(ValueError):
        mail_command("a@a.test", extensions={}, size=1, body="9BIT")
    with pytest.raises(ValueError):  # no command injection through an address
        mail_command("a@a.test>\r\nRCPT TO:<x@y", extensions={}, size=1)
    with pytest.raises(UnicodeEncodeError):  # RFC 6531 §3.4: UTF-8 only with SMTPUTF8
        mail_command("jörg@a.test", extensions={}, size=1)


def test_rcpt_command_dsn_parameters() -> None:
    notify = frozenset({Notify.DELAY, Notify.FAILURE})
    assert (
        rcpt_command("b@b.test", notify, "rfc822;B=1@b.test", dsn=True)
        == b"RCPT TO:<b@b.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;B+3D1@b.test\r\n"
    )
    assert rcpt_command("b@b.test", frozenset({Notify.NEVER}), None, dsn=True) == (
        b"RCPT TO:<b@b.test> NOTIFY=NEVER\r\n"
    )
    assert (
        rcpt_command("b@b.test", notify, "rfc822;b@b.test", dsn=False) == b"RCPT TO:<b@b.test>\r\n"
    )
    # A malformed or over-long ORCPT is dropped, not sent.
    assert rcpt_command("b@b.test", None, "no-type", dsn=True) == b"RCPT TO:<b@b.test>\r\n"
    assert rcpt_command("b@b.test", None, "rfc822;" + "x" * 500, dsn=True) == (
        b"RCPT TO:<b@b.test>\r\n"
    )


def stuff(message: bytes, cuts: list[int] | None = None) -> bytes:
    stuffer = DotStuffer()
    points = [0, *(cuts or []), len(message)]
    out = [stuffer.feed(message[a:b]) for a, b in itertools.pairwise(points)]
    return b"".join(out) + stuffer.finish()


def test_dot_stuffing_exact() -> None:
    assert stuff(b"a\r\n.hidden\r\n..two\r\n") == b"a\r\n..hidden\r\n...two\r\n.\r\n"
    assert stuff(b".first\r\n") == b"..first\r\n.\r\n"
    assert stuff(b"") == b".\r\n"
    assert stuff(b"no end") == b"no end\r\n.\r\n"
    assert stuff(b"cr end\r") == b"cr end\r\n.\r\n"
    assert stuff(b"bare\nlf\n.x") == b"bare\r\nlf\r\n..x\r\n.\r\n"
    assert stuff(b"a\r\n.\r\nb\r\n", [1, 2, 3]) == b"a\r\n..\r\nb\r\n.\r\n"
    assert stuff(b"a\r\n.b", [2]) == b"a\r\n..b\r\n.\r\n"  # split inside the CRLF


@given(
    st.lists(
        st.sampled_from([b"a", b".", b"\r\n", b"\r", b"\n", b"..", b"\r\n.\r\n"]), max_size=30
    ),
    st.lists(st.integers(0, 60), max_size=5),
)
def test_stuffing_round_trips_through_our_server_reader(
    parts: list[bytes], cuts: list[int]
) -> None:
    message = b"".join(parts)
    wire = stuff(message, sorted(c for c in cuts if c <= len(message)))
    assert wire == stuff(message)  # chunking never changes the output
    reader = DataReader(10**6, max_line=10**6)
    body = reader.feed(wire)
    assert reader.done and reader.rest == b""
    # What arrives is the message with LF made CRLF and a final line end.
    normal = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if normal and not normal.endswith(b"\r\n"):
        normal += b"\n" if normal.endswith(b"\r") else b"\r\n"
    if reader.error is None:
        assert body == normal
    else:  # a bare CR passes through unchanged, and our server refuses it (data.py)
        assert normal.replace(b"\r\n", b"").count(b"\r")
