"""Hypothesis fuzzing of the ESMTP parameters of MAIL and RCPT (RFC 1870 SIZE, RFC 6152 BODY,
RFC 6531 SMTPUTF8, RFC 3461 RET/ENVID/NOTIFY/ORCPT, RFC 4954 AUTH): any parameter list yields a
validated value or `SMTPError`, and well-formed parameters come back exactly as sent."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from posthorn.queue.envelope import Notify
from posthorn.smtp.codes import SMTPError
from posthorn.smtp.protocol import MailFrom, RcptTo, parse_mail_from, parse_rcpt_to, xtext_encode
from tests.fuzz.budget import budget

FUZZ = budget(400)

_KEYWORDS = st.sampled_from(
    [b"SIZE", b"BODY", b"SMTPUTF8", b"RET", b"ENVID", b"AUTH", b"NOTIFY", b"ORCPT", b"size",
     b"X-FOO", b"", b"=", b"SIZE=", b"\xff", b"BODY\x00"]
)  # fmt: skip
_SAMPLE_VALUES = [
    b"", b"0", b"1", b"-1", b"9" * 30, b"1e3", b"7BIT", b"8bitmime", b"BINARYMIME", b"FULL",
    b"HDRS", b"NEVER", b"SUCCESS,FAILURE,DELAY", b"NEVER,SUCCESS", b"SUCCESS,,",
    b"rfc822;a@b.example", b"rfc822;", b";", b"utf-8;a\\x{00E9}@b", b"+2B", b"+zz", b"+",
    b"a+3Db", b"<>", b"=", b"\xc3\xa9", b"\x00", b" ",
]  # fmt: skip
_VALUES = st.sampled_from(_SAMPLE_VALUES) | st.binary(max_size=12)
_PARAM = st.one_of(
    st.builds(lambda k, v: k + b"=" + v, _KEYWORDS, _VALUES),
    _KEYWORDS,
)
_PARAMS = st.lists(_PARAM, max_size=6).map(b" ".join)
_PATHS = st.sampled_from([b"<a@b.example>", b"<>", b"<\xc3\xa9@b.example>", b"<postmaster>"])


def _check_mail(mail: MailFrom) -> None:
    p = mail.params
    assert p.size is None or p.size >= 0
    assert p.body in (None, "7BIT", "8BITMIME", "BINARYMIME")
    assert p.ret in (None, "FULL", "HDRS")
    assert p.envid is None or isinstance(p.envid, str)


def _check_rcpt(rcpt: RcptTo) -> None:
    if rcpt.notify is not None:
        assert rcpt.notify
        assert Notify.NEVER not in rcpt.notify or rcpt.notify == {Notify.NEVER}
    assert rcpt.orcpt is None or ";" in rcpt.orcpt


@FUZZ
@given(_PATHS, _PARAMS)
def test_mail_and_rcpt_params_raise_only_smtp_error(path: bytes, params: bytes) -> None:
    arg = path + (b" " + params if params else b"")
    with contextlib.suppress(SMTPError):
        _check_mail(parse_mail_from(b"FROM:" + arg))
    for smtputf8 in (False, True):
        try:
            rcpt = parse_rcpt_to(b"TO:" + arg, smtputf8=smtputf8, postmaster_domain="b.example")
        except SMTPError:
            continue
        _check_rcpt(rcpt)


_PRINTABLE = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30)


@FUZZ
@given(
    st.integers(0, 10**12),
    st.sampled_from(["7BIT", "8BITMIME", "BINARYMIME"]),
    st.sampled_from(["FULL", "HDRS"]),
    _PRINTABLE.filter(bool),
)
def test_wellformed_mail_params_come_back(size: int, body: str, ret: str, envid: str) -> None:
    line = f"FROM:<a@b.example> SIZE={size} BODY={body} RET={ret} ENVID={xtext_encode(envid)}"
    p = parse_mail_from(line.encode()).params
    assert (p.size, p.body, p.ret, p.envid) == (size, body, ret, envid)


@FUZZ
@given(
    st.sets(st.sampled_from(["SUCCESS", "FAILURE", "DELAY"]), min_size=1) | st.just({"NEVER"}),
    _PRINTABLE.filter(lambda s: "@" not in s and bool(s)),
)
def test_wellformed_rcpt_params_come_back(notify: set[str], local: str) -> None:
    orcpt = f"rfc822;{local}@b.example"
    line = f"TO:<c@b.example> NOTIFY={','.join(sorted(notify))} ORCPT={xtext_encode(orcpt)}"
    rcpt = parse_rcpt_to(line.encode(), smtputf8=False, postmaster_domain="b.example")
    assert {n.name for n in rcpt.notify or ()} == notify
    assert rcpt.orcpt == orcpt
