"""SMTP replies (posthorn.smtp.codes) and command grammar (posthorn.smtp.protocol), byte-literal.

Every error path asserts the exact reply constant (STYLE.md point 9).
"""

from __future__ import annotations

import pytest

from posthorn.mail.address import Address
from posthorn.queue.envelope import Notify
from posthorn.smtp import codes
from posthorn.smtp.codes import Reply, SMTPError
from posthorn.smtp.protocol import (
    Command,
    MailFrom,
    MailParams,
    XtextError,
    decode_sasl,
    ehlo_lines,
    helo_reply,
    parse_auth,
    parse_bdat,
    parse_command,
    parse_helo,
    parse_mail_from,
    parse_rcpt_to,
    xtext_decode,
    xtext_encode,
)


def refused(reply: Reply, fn: object, *args: object, **kwargs: object) -> SMTPError:
    """Call ``fn`` and assert it raises SMTPError with exactly ``reply``."""
    assert callable(fn)
    with pytest.raises(SMTPError) as info:
        fn(*args, **kwargs)
    assert info.value.reply == reply, f"{info.value.reply} != {reply}"
    return info.value


# --- Reply ------------------------------------------------------------------------------------


def test_single_line_reply() -> None:
    assert codes.OK.to_bytes() == b"250 2.0.0 Ok\r\n"
    assert codes.OK.to_bytes(enhanced=False) == b"250 Ok\r\n"
    assert codes.START_DATA.to_bytes() == b"354 End data with <CR><LF>.<CR><LF>\r\n"


def test_multi_line_reply_prefixes_every_line() -> None:
    # RFC 5321 §4.2.1 and RFC 2034 §3: enhanced code on each line.
    reply = Reply(550, "5.7.1", "first\nsecond\nthird")
    assert reply.to_bytes() == (b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n")
    assert reply.to_bytes(enhanced=False) == b"550-first\r\n550-second\r\n550 third\r\n"


def test_empty_text_keeps_the_space() -> None:
    assert codes.AUTH_CONTINUE.to_bytes() == b"334 \r\n"
    assert Reply(250, None, "a\n").to_bytes() == b"250-a\r\n250 \r\n"


def test_control_characters_cannot_inject_lines() -> None:
    reply = Reply(550, "5.1.1", "user\r\n250 ok\x00\x7f")
    wire = reply.to_bytes()
    assert wire == b"550-5.1.1 user\r\n550 5.1.1 250 ok\r\n"
    assert Reply(250, None, "a\rb").to_bytes() == b"250 a b\r\n"


def test_utf8_text_is_encoded() -> None:
    assert Reply(250, "2.1.5", "<ü@example.org> ok").to_bytes() == (
        "250 2.1.5 <ü@example.org> ok\r\n".encode()
    )


@pytest.mark.parametrize(
    ("code", "enhanced"),
    [(250, "5.0.0"), (550, "2.0.0"), (550, "5.0"), (550, "5.0.0.0"), (550, "x.1.1"), (99, None)],
)
def test_bad_reply_values_are_refused(code: int, enhanced: str | None) -> None:
    with pytest.raises(ValueError):
        Reply(code, enhanced, "text")


def test_with_text_and_with_id() -> None:
    assert codes.BAD_SEQUENCE.with_text("Send MAIL first") == Reply(503, "5.5.1", "Send MAIL first")
    assert codes.queued("7QXK2M").to_bytes() == b"250 2.0.0 Ok: queued as 7QXK2M\r\n"
    assert codes.LOCAL_ERROR.with_id("c1").to_bytes() == b"451 4.3.0 Internal error (c1)\r\n"


def test_auth_challenge() -> None:
    assert codes.auth_challenge(b"").to_bytes() == b"334 \r\n"
    assert codes.auth_challenge(b"hi").to_bytes() == b"334 aGk=\r\n"


def test_str_is_one_log_line() -> None:
    assert str(Reply(550, "5.1.1", "a\nb")) == "550 5.1.1 a / b"
    assert str(codes.AUTH_CONTINUE) == "334"


def test_smtp_error_carries_reply_and_detail() -> None:
    err = SMTPError(codes.NO_SUCH_USER, "no account bob@example.org")
    assert err.reply is codes.NO_SUCH_USER
    assert err.detail == "no account bob@example.org"
    assert str(err) == "no account bob@example.org"
    assert str(SMTPError(codes.OK)) == "250 2.0.0 Ok"


@pytest.mark.parametrize(
    ("reply", "code", "enhanced"),
    [
        (codes.CLOSING, 221, "2.0.0"),
        (codes.OK, 250, "2.0.0"),
        (codes.SENDER_OK, 250, "2.1.0"),
        (codes.RCPT_OK, 250, "2.1.5"),
        (codes.START_DATA, 354, None),
        (codes.AUTH_OK, 235, "2.7.0"),
        (codes.AUTH_CONTINUE, 334, None),
        (codes.SHUTTING_DOWN, 421, "4.3.2"),
        (codes.TOO_MANY_BAD, 421, "4.7.0"),
        (codes.LOCAL_ERROR, 451, "4.3.0"),
        (codes.INSUFFICIENT_STORAGE, 452, "4.3.1"),
        (codes.TOO_MANY_RECIPIENTS, 452, "4.5.3"),
        (codes.TEMP_AUTH_FAIL, 454, "4.7.0"),
        (codes.TLS_NOT_AVAILABLE, 454, "4.7.0"),
        (codes.COMMAND_UNRECOGNIZED, 500, "5.5.2"),
        (codes.LINE_TOO_LONG, 500, "5.5.2"),
        (codes.SYNTAX_ERROR_PARAMS, 501, "5.5.4"),
        (codes.BAD_SENDER_SYNTAX, 501, "5.1.7"),
        (codes.BAD_RECIPIENT_SYNTAX, 501, "5.1.3"),
        (codes.NOT_IMPLEMENTED, 502, "5.5.1"),
        (codes.BAD_SEQUENCE, 503, "5.5.1"),
        (codes.PARAM_NOT_IMPLEMENTED, 504, "5.5.4"),
        (codes.AUTH_REQUIRED, 530, "5.7.0"),
        (codes.STARTTLS_REQUIRED, 530, "5.7.0"),
        (codes.ENCRYPTION_REQUIRED, 538, "5.7.11"),
        (codes.AUTH_FAILED, 535, "5.7.8"),
        (codes.NO_SUCH_USER, 550, "5.1.1"),
        (codes.RELAY_DENIED, 554, "5.7.1"),
        (codes.MESSAGE_TOO_BIG, 552, "5.3.4"),
        (codes.SENDER_NOT_OWNED, 553, "5.7.1"),
        (codes.BAD_DESTINATION_SYNTAX, 553, "5.1.3"),
        (codes.SOURCE_ROUTE_REFUSED, 553, "5.1.3"),
        (codes.TRANSACTION_FAILED, 554, "5.5.0"),
        (codes.CONTENT_REJECTED, 554, "5.6.0"),
        (codes.PARAM_UNRECOGNIZED, 555, "5.5.4"),
        (codes.BARE_LINE_ENDING, 554, "5.6.0"),
        (codes.SMTPUTF8_REQUIRED, 553, "5.6.7"),
    ],
)
def test_reply_constants(reply: Reply, code: int, enhanced: str | None) -> None:
    assert (reply.code, reply.enhanced) == (code, enhanced)
    assert reply.to_bytes().endswith(b"\r\n")


# --- parse_command ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "verb", "arg"),
    [
        (b"QUIT", "QUIT", b""),
        (b"quit", "QUIT", b""),  # RFC 5321 §2.4: verbs are case-insensitive
        (b"MaIl FROM:<a@b.example>", "MAIL", b"FROM:<a@b.example>"),
        (b"NOOP ", "NOOP", b""),
        (b"EHLO  two spaces", "EHLO", b" two spaces"),
        (b"STARTTLS", "STARTTLS", b""),
        (b"GET / HTTP/1.1", "GET", b"/ HTTP/1.1"),  # unknown verbs are the session's business
        (b"XCLIENT NAME=x", "XCLIENT", b"NAME=x"),
    ],
)
def test_parse_command(line: bytes, verb: str, arg: bytes) -> None:
    assert parse_command(line) == Command(verb, arg)


@pytest.mark.parametrize(
    "line", [b"", b" QUIT", b"QU1T", b"MAIL:FROM", b"\xc3\xa4HLO x", b"A" * 21, b"QUIT\t", b"\x00"]
)
def test_parse_command_garbage(line: bytes) -> None:
    refused(codes.COMMAND_UNRECOGNIZED, parse_command, line)


# --- parse_helo -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "name"),
    [
        (b"mail.example.org", "mail.example.org"),
        (b"[192.0.2.1]", "[192.0.2.1]"),
        (b"[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"),
        (b" client  extra words", "client"),  # lenient: the first word counts
        (b"under_score.local", "under_score.local"),  # not checked against the grammar
    ],
)
def test_parse_helo(arg: bytes, name: str) -> None:
    assert parse_helo(arg) == name


@pytest.mark.parametrize("arg", [b"", b"   ", b"caf\xc3\xa9", b"a\x00b", b"x" * 256])
def test_parse_helo_refused(arg: bytes) -> None:
    refused(codes.HELO_SYNTAX, parse_helo, arg)


# --- MAIL FROM --------------------------------------------------------------------------------


def test_mail_from_plain() -> None:
    assert parse_mail_from(b"FROM:<Bob@Example.ORG>") == MailFrom(
        Address("Bob", "example.org"), MailParams()
    )


@pytest.mark.parametrize("arg", [b"FROM:<>", b"from:<>", b"FROM: <>", b"FROM:<> "])
def test_mail_from_null_path(arg: bytes) -> None:
    assert parse_mail_from(arg).path is None


def test_mail_from_all_params() -> None:
    mail = parse_mail_from(
        b"FROM:<a@example.org> size=1000 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=Ab+2Bc+3D AUTH=<>"
    )
    assert mail.params == MailParams(
        size=1000, body="8BITMIME", smtputf8=True, ret="HDRS", envid="Ab+c=", auth="<>"
    )


def test_mail_from_auth_param_is_decoded() -> None:
    mail = parse_mail_from(b"FROM:<a@example.org> AUTH=bob+2Bx@example.org")
    assert mail.params.auth == "bob+x@example.org"


@pytest.mark.parametrize("body", [b"7BIT", b"8BITMIME", b"BINARYMIME", b"binarymime"])
def test_mail_from_body_values(body: bytes) -> None:
    mail = parse_mail_from(b"FROM:<a@example.org> BODY=" + body)
    assert mail.params.body == body.decode().upper()


def test_mail_from_size_limits() -> None:
    assert parse_mail_from(b"FROM:<> SIZE=" + b"9" * 20).params.size == 10**20 - 1
    refused(codes.SYNTAX_ERROR_PARAMS, parse_mail_from, b"FROM:<> SIZE=" + b"9" * 21)


def test_mail_from_runs_of_spaces_between_params() -> None:
    assert parse_mail_from(b"FROM:<>  SIZE=5   RET=FULL").params == MailParams(size=5, ret="FULL")


def test_mail_from_source_route_is_stripped() -> None:
    # RFC 5321 Appendix C: the reverse path's route may be ignored; it cannot make us relay.
    assert parse_mail_from(b"FROM:<@relay.example,@b.example:bob@example.org>").path == Address(
        "bob", "example.org"
    )


def test_mail_from_quoted_local_part_may_hold_angle_bracket() -> None:
    mail = parse_mail_from(b'FROM:<"a>b"@example.org> SIZE=1')
    assert mail.path == Address("a>b", "example.org")
    assert mail.params.size == 1


def test_mail_from_utf8_needs_smtputf8() -> None:
    arg = "FROM:<jösé@example.org>".encode()
    refused(codes.SMTPUTF8_REQUIRED, parse_mail_from, arg)
    assert parse_mail_from(arg + b" SMTPUTF8").path == Address("jösé", "example.org")


def test_mail_from_idn_domain_needs_smtputf8_too() -> None:
    refused(codes.SMTPUTF8_REQUIRED, parse_mail_from, "FROM:<a@bücher.example>".encode())
    mail = parse_mail_from("FROM:<a@bücher.example> SMTPUTF8".encode())
    assert mail.path == Address("a", "xn--bcher-kva.example")


@pytest.mark.parametrize(
    ("arg", "reply"),
    [
        (b"", codes.MAIL_SYNTAX),
        (b"TO:<a@example.org>", codes.MAIL_SYNTAX),
        (b"FROM <a@example.org>", codes.MAIL_SYNTAX),
        (b"FROM:a@example.org", codes.BAD_SENDER_SYNTAX),  # RFC 5321 §4.1.2: brackets required
        (b"FROM:<a@example.org", codes.BAD_SENDER_SYNTAX),
        (b"FROM:<a@example.org>SIZE=1", codes.BAD_SENDER_SYNTAX),
        (b"FROM:<a>", codes.BAD_SENDER_SYNTAX),
        (b"FROM:<a@@example.org>", codes.BAD_SENDER_SYNTAX),
        (b"FROM:<<a@example.org>>", codes.BAD_SENDER_SYNTAX),
        (b"FROM:<a@example.org.>", codes.BAD_SENDER_SYNTAX),
        (b"FROM:<\xff@example.org> SMTPUTF8", codes.BAD_SENDER_SYNTAX),  # not UTF-8
        (b"FROM:<@a.example:@b.example:c@d.example>", codes.BAD_SENDER_SYNTAX),
        (b"FROM:<> FOO=bar", codes.PARAM_UNRECOGNIZED),
        (b"FROM:<> REQUIRETLS", codes.PARAM_UNRECOGNIZED),
        (b"FROM:<> SIZE=1 SIZE=2", codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> size=1 SIZE=1", codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> SIZE", codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> SIZE=", codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> SIZE=-1", codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> SIZE=1k", codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> BODY=9BIT", codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> RET=ALL", codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> SMTPUTF8=yes", codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> ENVID=" + b"x" * 101, codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> ENVID=a+zz", codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> ENVID=a+0A", codes.SYNTAX_ERROR_PARAMS),  # decodes to a control character
        (b"FROM:<> ENVID=a+C3+A9", codes.SYNTAX_ERROR_PARAMS),  # RFC 3461 §4.4: US-ASCII
        (b"FROM:<> ENVID=a=b", codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> AUTH=\xc3\xa9", codes.SYNTAX_ERROR_PARAMS),  # UTF-8 only with SMTPUTF8
        (b"FROM:<> -X=1", codes.SYNTAX_ERROR_PARAMS),
        (b"FROM:<> X\x01=1", codes.SYNTAX_ERROR_PARAMS),
    ],
)
def test_mail_from_refused(arg: bytes, reply: Reply) -> None:
    refused(reply, parse_mail_from, arg)


def test_mail_from_envid_limit_is_100() -> None:
    assert parse_mail_from(b"FROM:<> ENVID=" + b"x" * 100).params.envid == "x" * 100


def test_mail_from_values_keep_their_case() -> None:
    # aiosmtpd upper-cases values; ENVID must come back exactly as sent (RFC 3461 §4.4).
    assert parse_mail_from(b"FROM:<> ENVID=QQ314159.aBc").params.envid == "QQ314159.aBc"


# --- RCPT TO ----------------------------------------------------------------------------------


def test_rcpt_to_plain() -> None:
    rcpt = parse_rcpt_to(b"TO:<Alice@Example.org>", smtputf8=False)
    assert (rcpt.path, rcpt.notify, rcpt.orcpt) == (Address("Alice", "example.org"), None, None)
    assert parse_rcpt_to(b"to: <a@example.org>", smtputf8=False).path == Address("a", "example.org")


@pytest.mark.parametrize(
    ("arg", "local"),
    [
        (b"TO:<user%other.example@ourdomain.example>", "user%other.example"),
        (b'TO:<"user@other.example"@ourdomain.example>', "user@other.example"),
        (b"TO:<other.example!user@ourdomain.example>", "other.example!user"),
    ],
)
def test_rcpt_relay_tricks_parse_and_are_flagged(arg: bytes, local: str) -> None:
    path = parse_rcpt_to(arg, smtputf8=False).path
    assert path == Address(local, "ourdomain.example")
    assert path.has_routing_chars


@pytest.mark.parametrize(
    "arg",
    [
        b"TO:<@a.example:b@c.example>",
        b"TO:<@a.example,@b.example:user@c.example>",
        b"TO:<@ourdomain.example:user@elsewhere.example>",
    ],
)
def test_rcpt_source_routes_are_refused(arg: bytes) -> None:
    refused(codes.SOURCE_ROUTE_REFUSED, parse_rcpt_to, arg, smtputf8=False)


def test_rcpt_postmaster_without_domain() -> None:
    # RFC 5321 §4.1.1.3: "<Postmaster>" with no domain MUST be accepted.
    rcpt = parse_rcpt_to(b"TO:<Postmaster>", smtputf8=False, postmaster_domain="Example.ORG")
    assert rcpt.path == Address("Postmaster", "example.org")
    assert rcpt.path.canonical == "postmaster@example.org"
    refused(codes.BAD_RECIPIENT_SYNTAX, parse_rcpt_to, b"TO:<postmaster>", smtputf8=False)
    refused(
        codes.LOCAL_ERROR,
        parse_rcpt_to,
        b"TO:<postmaster>",
        smtputf8=False,
        postmaster_domain="bad domain",
    )


def test_rcpt_other_local_without_domain_is_syntax() -> None:
    refused(
        codes.BAD_RECIPIENT_SYNTAX,
        parse_rcpt_to,
        b"TO:<bob>",
        smtputf8=False,
        postmaster_domain="example.org",
    )


@pytest.mark.parametrize(
    ("value", "notify"),
    [
        (b"NEVER", {Notify.NEVER}),
        (b"never", {Notify.NEVER}),
        (b"SUCCESS", {Notify.SUCCESS}),
        (b"SUCCESS,FAILURE,DELAY", {Notify.SUCCESS, Notify.FAILURE, Notify.DELAY}),
        (b"delay,Failure", {Notify.DELAY, Notify.FAILURE}),
        (b"FAILURE,FAILURE", {Notify.FAILURE}),
    ],
)
def test_rcpt_notify(value: bytes, notify: set[Notify]) -> None:
    rcpt = parse_rcpt_to(b"TO:<a@example.org> NOTIFY=" + value, smtputf8=False)
    assert rcpt.notify == frozenset(notify)


def test_rcpt_orcpt_is_decoded() -> None:
    rcpt = parse_rcpt_to(
        b"TO:<a@example.org> ORCPT=rfc822;Bob+2Bx@Example.org NOTIFY=FAILURE", smtputf8=False
    )
    assert rcpt.orcpt == "rfc822;Bob+x@Example.org"
    assert rcpt.notify == frozenset({Notify.FAILURE})


def test_rcpt_orcpt_utf8_only_with_smtputf8() -> None:
    arg = "TO:<a@example.org> ORCPT=utf-8;jösé@example.org".encode()
    assert parse_rcpt_to(arg, smtputf8=True).orcpt == "utf-8;jösé@example.org"
    refused(codes.SYNTAX_ERROR_PARAMS, parse_rcpt_to, arg, smtputf8=False)
    hex_arg = b"TO:<a@example.org> ORCPT=rfc822;j+C3+B6@example.org"
    refused(codes.SYNTAX_ERROR_PARAMS, parse_rcpt_to, hex_arg, smtputf8=False)
    assert parse_rcpt_to(hex_arg, smtputf8=True).orcpt == "rfc822;jö@example.org"


def test_rcpt_utf8_path_needs_smtputf8() -> None:
    arg = "TO:<jösé@example.org>".encode()
    refused(codes.SMTPUTF8_REQUIRED, parse_rcpt_to, arg, smtputf8=False)
    assert parse_rcpt_to(arg, smtputf8=True).path == Address("jösé", "example.org")


def test_rcpt_orcpt_length_limit() -> None:
    value = b"rfc822;" + b"x" * (500 - 6 - 7)  # "ORCPT=" + value is exactly 500
    assert parse_rcpt_to(b"TO:<a@example.org> ORCPT=" + value, smtputf8=False).orcpt
    refused(
        codes.SYNTAX_ERROR_PARAMS,
        parse_rcpt_to,
        b"TO:<a@example.org> ORCPT=" + value + b"x",
        smtputf8=False,
    )


@pytest.mark.parametrize(
    ("arg", "reply"),
    [
        (b"", codes.RCPT_SYNTAX),
        (b"FROM:<a@example.org>", codes.RCPT_SYNTAX),
        (b"TO:a@example.org", codes.BAD_RECIPIENT_SYNTAX),
        (b"TO:<>", codes.BAD_RECIPIENT_SYNTAX),
        (b"TO:<a@example.org", codes.BAD_RECIPIENT_SYNTAX),
        (b"TO:<a@example.org>NOTIFY=NEVER", codes.BAD_RECIPIENT_SYNTAX),
        (b"TO:<a@b@example.org>", codes.BAD_RECIPIENT_SYNTAX),
        (b"TO:<a@[300.1.1.1]>", codes.BAD_RECIPIENT_SYNTAX),
        (b"TO:<a@example.org> NOTIFY=NEVER,SUCCESS", codes.SYNTAX_ERROR_PARAMS),
        (b"TO:<a@example.org> NOTIFY=SUCCESS,,DELAY", codes.SYNTAX_ERROR_PARAMS),
        (b"TO:<a@example.org> NOTIFY=SOMETIMES", codes.SYNTAX_ERROR_PARAMS),
        (b"TO:<a@example.org> NOTIFY", codes.SYNTAX_ERROR_PARAMS),
        (b"TO:<a@example.org> NOTIFY=NEVER NOTIFY=NEVER", codes.SYNTAX_ERROR_PARAMS),
        (b"TO:<a@example.org> ORCPT=a@example.org", codes.SYNTAX_ERROR_PARAMS),
        (b"TO:<a@example.org> ORCPT=;a@example.org", codes.SYNTAX_ERROR_PARAMS),
        (b"TO:<a@example.org> ORCPT=rfc(822);a", codes.SYNTAX_ERROR_PARAMS),
        (b"TO:<a@example.org> ORCPT=rfc822;", codes.SYNTAX_ERROR_PARAMS),
        (b"TO:<a@example.org> ORCPT=rfc822;a+0D+0Ab", codes.SYNTAX_ERROR_PARAMS),
        (b"TO:<a@example.org> ORCPT=rfc822;a+2", codes.SYNTAX_ERROR_PARAMS),
        (b"TO:<a@example.org> SIZE=10", codes.PARAM_UNRECOGNIZED),
        (b"TO:<a@example.org> FOO", codes.PARAM_UNRECOGNIZED),
    ],
)
def test_rcpt_to_refused(arg: bytes, reply: Reply) -> None:
    refused(reply, parse_rcpt_to, arg, smtputf8=False)


# --- xtext ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("", ""),
        ("plain", "plain"),
        ("a+2Bb", "a+b"),
        ("a+3Db", "a=b"),
        ("a+20b", "a b"),
        ("a+2bb", "a+b"),  # lower-case hex tolerated on input
        ("+C3+A9", "é"),
    ],
)
def test_xtext_decode(encoded: str, decoded: str) -> None:
    assert xtext_decode(encoded) == decoded


@pytest.mark.parametrize("bad", ["a+", "a+2", "a+GG", "a=b", "a b", "é", "+C3", "\x00"])
def test_xtext_decode_refused(bad: str) -> None:
    with pytest.raises(XtextError):
        xtext_decode(bad)


def test_xtext_utf8_passes_raw_characters() -> None:
    assert xtext_decode("jö+2B", utf8=True) == "jö+"


@pytest.mark.parametrize(
    ("text", "encoded"),
    [("a+b=c", "a+2Bb+3Dc"), ("a b", "a+20b"), ("é", "+C3+A9"), ("~!", "~!"), ("\r\n", "+0D+0A")],
)
def test_xtext_encode(text: str, encoded: str) -> None:
    assert xtext_encode(text) == encoded
    assert xtext_decode(encoded) == text


# --- AUTH, BDAT -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "result"),
    [
        (b"PLAIN dGVzdA==", ("PLAIN", b"dGVzdA==")),
        (b"plain", ("PLAIN", None)),
        (b"LOGIN ", ("LOGIN", None)),
        (b"PLAIN =", ("PLAIN", b"")),  # RFC 4954 §4: "=" is an empty initial response
        (b"SCRAM-SHA-256 biwsbj11c2Vy", ("SCRAM-SHA-256", b"biwsbj11c2Vy")),
    ],
)
def test_parse_auth(arg: bytes, result: tuple[str, bytes | None]) -> None:
    assert parse_auth(arg) == result


@pytest.mark.parametrize("arg", [b"", b" PLAIN", b"PLAIN a b", b"PL@IN", b"X" * 21, b"PLAIN  a"])
def test_parse_auth_refused(arg: bytes) -> None:
    refused(codes.SYNTAX_ERROR_PARAMS, parse_auth, arg)


def test_decode_sasl() -> None:
    assert decode_sasl(b"dGVzdA==") == b"test"
    assert decode_sasl(b"") == b""
    refused(codes.AUTH_CANCELLED, decode_sasl, b"*")
    refused(codes.AUTH_SYNTAX, decode_sasl, b"dGVzdA=")
    refused(codes.AUTH_SYNTAX, decode_sasl, b"d GVzdA==")
    refused(codes.AUTH_SYNTAX, decode_sasl, b"\xff")


@pytest.mark.parametrize(
    ("arg", "result"),
    [
        (b"1000 LAST", (1000, True)),
        (b"1000", (1000, False)),
        (b"0 last", (0, True)),
        (b"86 ", (86, False)),
        (b"9" * 20, (10**20 - 1, False)),
    ],
)
def test_parse_bdat(arg: bytes, result: tuple[int, bool]) -> None:
    assert parse_bdat(arg) == result


@pytest.mark.parametrize(
    "arg", [b"", b"LAST", b"-1", b"1 FIRST", b"1 LAST x", b"1x", b"9" * 21, b" 1", b"1  LAST"]
)
def test_parse_bdat_refused(arg: bytes) -> None:
    refused(codes.BDAT_SYNTAX, parse_bdat, arg)


# --- HELO / EHLO replies ----------------------------------------------------------------------


def test_ehlo_lines() -> None:
    reply = ehlo_lines("mx.example.org", "client.example", ["PIPELINING", "SIZE 1000", "8BITMIME"])
    assert reply.to_bytes() == (
        b"250-mx.example.org Hello client.example\r\n"
        b"250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"
    )
    assert ehlo_lines("mx.example.org", "", []).to_bytes() == b"250 mx.example.org\r\n"


@pytest.mark.parametrize("ext", ["", "A\nB", "A\rB"])
def test_ehlo_lines_refuses_bad_extension(ext: str) -> None:
    with pytest.raises(ValueError):
        ehlo_lines("mx.example.org", "c", [ext])


def test_helo_reply() -> None:
    assert helo_reply("mx.example.org", "c").to_bytes() == b"250 mx.example.org Hello c\r\n"
