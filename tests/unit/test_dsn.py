"""DSN builder (posthorn.mail.dsn): reports built, then read back with the stdlib parser."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage, Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posthorn.mail import dsn
from posthorn.mail.dsn import DSNRecipient, build_dsn

ARRIVED = datetime(2025, 3, 1, 9, 30, 0, tzinfo=UTC)
NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
ORIGINAL = (
    b"From: Alice <alice@a.test>\r\n"
    b"To: bob@b.test\r\n"
    b"Subject: lunch?\r\n"
    b"Message-ID: <1@a.test>\r\n"
    b"\r\n"
    b"Shall we?\r\n"
)
BOUNCED = DSNRecipient(
    final_recipient="rfc822; bob@b.test",
    action="failed",
    status="5.1.1",
    original_recipient="rfc822;Bob@b.test",
    remote_mta="dns; mx.b.test",
    diagnostic="smtp; 550 5.1.1 <bob@b.test>: no such user",
    last_attempt=datetime(2025, 3, 1, 11, 59, 0, tzinfo=UTC),
)
DELAYED = DSNRecipient(
    final_recipient="rfc822; carol@c.test",
    action="delayed",
    status="4.4.1",
    remote_mta="dns; mx.c.test",
    diagnostic="smtp; 451 4.4.1 try again later",
    last_attempt=datetime(2025, 3, 1, 11, 0, 0, tzinfo=UTC),
    will_retry_until=datetime(2025, 3, 6, 9, 30, 0, tzinfo=UTC),
)
DELIVERED = DSNRecipient(final_recipient="rfc822; dave@d.test", action="delivered", status="2.0.0")


def build(**kwargs: object) -> bytes:
    args: dict[str, object] = {
        "reporting_mta": "a.test",
        "sender": "alice@a.test",
        "recipients": [BOUNCED],
        "original": ORIGINAL,
        "arrival_date": ARRIVED,
        "now": NOW,
        "message_id": "<dsn.1@a.test>",
    }
    args.update(kwargs)
    return build_dsn(**args)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> list[EmailMessage]:
    assert msg.get_content_type() == "multipart/report"
    out = list(msg.iter_parts())
    assert all(isinstance(p, EmailMessage) for p in out)
    return out  # type: ignore[return-value]


def raw_part_body(data: bytes, index: int) -> bytes:
    """The octets of body part ``index`` (0-based) between its header block and delimiter."""
    boundary = re.search(rb'boundary="([^"]+)"', data)
    assert boundary is not None
    delimiter = b"\r\n--" + boundary.group(1)
    chunk = data.split(delimiter)[index + 1]
    return chunk.split(b"\r\n\r\n", 1)[1]


def status_blocks(data: bytes) -> list[dict[str, str]]:
    """The delivery-status part as field dicts, unfolded, read straight from the bytes."""
    text = raw_part_body(data, 1).decode("utf-8")
    blocks = []
    for block in text.split("\r\n\r\n"):
        unfolded = re.sub(r"\r\n[ \t]", " ", block.strip("\r\n"))
        fields = {}
        for line in unfolded.split("\r\n"):
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        blocks.append(fields)
    return blocks


def content(part: Message) -> str:
    """A text part's decoded content with LF line ends, for comparisons."""
    assert isinstance(part, EmailMessage)
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


def lines(data: bytes) -> Iterator[bytes]:
    yield from data.split(b"\r\n")


# --- the message as a whole ----------------------------------------------------------------


def test_top_level_headers() -> None:
    msg = parse(build())
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@a.test>"
    assert msg["To"] == "alice@a.test"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Date"] == "Sat, 01 Mar 2025 12:00:00 +0000"
    assert msg["Message-ID"] == "<dsn.1@a.test>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert "Content-Transfer-Encoding" not in msg
    assert not msg.defects


def test_crlf_only_and_short_lines() -> None:
    data = build(recipients=[BOUNCED, DELAYED, DELIVERED], return_content=True)
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in lines(data))
    assert data.isascii()


def test_defaults_message_id_and_date() -> None:
    msg = parse(
        build_dsn(
            reporting_mta="a.test",
            sender="alice@a.test",
            recipients=[BOUNCED],
            original=ORIGINAL,
            arrival_date=ARRIVED,
        )
    )
    assert re.fullmatch(r"<[0-9a-f]+\.[0-9a-f]{24}@a\.test>", msg["Message-ID"])
    assert msg["Date"].datetime.tzinfo is not None
    assert abs(msg["Date"].datetime - datetime.now(UTC)) < timedelta(minutes=1)


def test_from_address_override() -> None:
    msg = parse(build(from_address="Postmaster <postmaster@a.test>"))
    assert msg["From"] == "Postmaster <postmaster@a.test>"


def test_non_ascii_display_name_is_encoded_in_7bit_report() -> None:
    data = build(from_address="Système de courrier <postmaster@a.test>")
    assert data.isascii()
    assert parse(data)["From"] == "Système de courrier <postmaster@a.test>"
    assert b"message/delivery-status" in data


@pytest.mark.parametrize(
    ("recipients", "subject"),
    [
        ([BOUNCED], "Undelivered Mail Returned to Sender"),
        ([DELAYED], "Delayed Mail (still being retried)"),
        ([DELIVERED], "Successful Mail Delivery Report"),
        ([DELIVERED, DELAYED], "Delayed Mail (still being retried)"),
        ([DELAYED, BOUNCED, DELIVERED], "Undelivered Mail Returned to Sender"),
        (
            [DSNRecipient("rfc822; e@e.test", "relayed", "2.0.0")],
            "Successful Mail Delivery Report",
        ),
        (
            [DSNRecipient("rfc822; e@e.test", "expanded", "2.1.5")],
            "Successful Mail Delivery Report",
        ),
    ],
)
def test_subject_by_worst_action(recipients: list[DSNRecipient], subject: str) -> None:
    assert parse(build(recipients=recipients))["Subject"] == subject


def test_three_parts_in_order() -> None:
    text, status, original = parts(parse(build()))
    assert text.get_content_type() == "text/plain"
    assert text.get_content_charset() == "utf-8"
    assert status.get_content_type() == "message/delivery-status"
    assert original.get_content_type() == "text/rfc822-headers"
    assert [p["Content-Transfer-Encoding"] for p in (text, status, original)] == ["7bit"] * 3


# --- the human-readable part ---------------------------------------------------------------


def test_human_text_names_recipients_and_replies() -> None:
    msg = parse(build(recipients=[BOUNCED, DELAYED]))
    text = content(parts(msg)[0])
    assert text.startswith("This is the mail system at host a.test.\n")
    assert "could not be delivered to one or more recipients" in text
    assert "<bob@b.test>: delivery failed (5.1.1)\n" in text
    assert "    host mx.b.test said: 550 5.1.1 <bob@b.test>: no such user\n" in text
    assert "<carol@c.test>: delivery delayed (4.4.1)" in text
    assert "Thu, 06 Mar 2025 09:30:00 +0000" in text.replace("\n  ", " ")
    assert "The headers of your message are attached below." in text


def test_human_text_for_delay_and_success() -> None:
    delayed = content(parts(parse(build(recipients=[DELAYED])))[0])
    assert "could not be delivered yet" in delayed
    assert "you do not need to send it again" in delayed.replace("\n", " ")
    done = content(parts(parse(build(recipients=[DELIVERED], return_content=True)))[0])
    assert "Your message was delivered to the recipients below." in done
    assert "<dave@d.test>: delivered (2.0.0)" in done
    assert "Your message is attached below." in done


def test_diagnostic_without_remote_mta() -> None:
    r = DSNRecipient("rfc822; bob@b.test", "failed", "5.4.4", diagnostic="X-Posthorn; null MX")
    text = content(parts(parse(build(recipients=[r])))[0])
    assert "<bob@b.test>: delivery failed (5.4.4)\n    null MX\n" in text


# --- the delivery-status part --------------------------------------------------------------


def test_delivery_status_fields_exactly() -> None:
    data = build(recipients=[BOUNCED, DELAYED, DELIVERED], envelope_id="QQ314159")
    assert status_blocks(data) == [
        {
            "Original-Envelope-Id": "QQ314159",
            "Reporting-MTA": "dns; a.test",
            "Arrival-Date": "Sat, 01 Mar 2025 09:30:00 +0000",
        },
        {
            "Original-Recipient": "rfc822; Bob@b.test",
            "Final-Recipient": "rfc822; bob@b.test",
            "Action": "failed",
            "Status": "5.1.1",
            "Remote-MTA": "dns; mx.b.test",
            "Diagnostic-Code": "smtp; 550 5.1.1 <bob@b.test>: no such user",
            "Last-Attempt-Date": "Sat, 01 Mar 2025 11:59:00 +0000",
        },
        {
            "Final-Recipient": "rfc822; carol@c.test",
            "Action": "delayed",
            "Status": "4.4.1",
            "Remote-MTA": "dns; mx.c.test",
            "Diagnostic-Code": "smtp; 451 4.4.1 try again later",
            "Last-Attempt-Date": "Sat, 01 Mar 2025 11:00:00 +0000",
            "Will-Retry-Until": "Thu, 06 Mar 2025 09:30:00 +0000",
        },
        {"Final-Recipient": "rfc822; dave@d.test", "Action": "delivered", "Status": "2.0.0"},
    ]


def test_delivery_status_field_order() -> None:
    """RFC 3464 §2.2 / §2.3 grammar order."""
    data = build(recipients=[BOUNCED, DELAYED], envelope_id="E1")
    blocks = status_blocks(data)
    assert list(blocks[0]) == ["Original-Envelope-Id", "Reporting-MTA", "Arrival-Date"]
    assert list(blocks[2]) == [
        "Final-Recipient",
        "Action",
        "Status",
        "Remote-MTA",
        "Diagnostic-Code",
        "Last-Attempt-Date",
        "Will-Retry-Until",
    ]


def test_stdlib_reads_the_delivery_status_blocks() -> None:
    status = parts(parse(build(recipients=[BOUNCED, DELAYED], envelope_id="E1")))[1]
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    per_message, first, second = (b for b in blocks if isinstance(b, Message))
    assert per_message["Reporting-MTA"] == "dns; a.test"
    assert per_message["Original-Envelope-Id"] == "E1"
    assert first["Final-Recipient"] == "rfc822; bob@b.test"
    assert first["Status"] == "5.1.1"
    assert second["Action"] == "delayed"
    assert second["Will-Retry-Until"] == "Thu, 06 Mar 2025 09:30:00 +0000"


def test_no_envelope_id_no_field() -> None:
    assert "Original-Envelope-Id" not in status_blocks(build())[0]


def test_naive_and_offset_datetimes() -> None:
    plus2 = timezone(timedelta(hours=2))
    data = build(
        arrival_date=datetime(2025, 3, 1, 9, 30), now=datetime(2025, 3, 1, 14, tzinfo=plus2)
    )
    assert status_blocks(data)[0]["Arrival-Date"] == "Sat, 01 Mar 2025 09:30:00 +0000"
    assert parse(data)["Date"] == "Sat, 01 Mar 2025 14:00:00 +0200"


def test_bare_values_get_default_types() -> None:
    r = DSNRecipient(
        "bob@b.test", "failed", "5.1.1", remote_mta="mx.b.test", diagnostic="550 5.1.1 unknown"
    )
    block = status_blocks(build(recipients=[r]))[1]
    assert block["Final-Recipient"] == "rfc822; bob@b.test"
    assert block["Remote-MTA"] == "dns; mx.b.test"
    assert block["Diagnostic-Code"] == "smtp; 550 5.1.1 unknown"
    r = DSNRecipient("bob@b.test", "failed", "5.4.4", diagnostic="no MX for b.test")
    assert status_blocks(build(recipients=[r]))[1]["Diagnostic-Code"] == (
        "X-Posthorn; no MX for b.test"
    )


def test_multiline_reply_cannot_inject_fields() -> None:
    r = DSNRecipient(
        "rfc822; bob@b.test",
        "failed",
        "5.7.1",
        diagnostic="smtp; 550-5.7.1 first\r\n550 5.7.1 second\r\nStatus: 2.0.0\n\nX: y",
    )
    data = build(recipients=[r])
    block = status_blocks(data)[1]
    assert block["Status"] == "5.7.1"
    assert block["Diagnostic-Code"] == "smtp; 550-5.7.1 first 550 5.7.1 second Status: 2.0.0 X: y"
    assert len(status_blocks(data)) == 2


def test_long_diagnostic_is_folded() -> None:
    reply = "smtp; 550 5.7.1 " + " ".join(["blocked"] * 200) + " " + "z" * 2000
    r = DSNRecipient("rfc822; bob@b.test", "failed", "5.7.1", diagnostic=reply)
    data = build(recipients=[r])
    assert all(len(line) <= 998 for line in lines(data))
    assert status_blocks(data)[1]["Diagnostic-Code"].startswith("smtp; 550 5.7.1 blocked blocked")
    assert not parse(data).defects


def test_non_ascii_diagnostic_stays_7bit_without_smtputf8() -> None:
    r = DSNRecipient(
        "rfc822; bob@b.test", "failed", "5.1.1", diagnostic="smtp; 550 Benutzer unbekannt ü"
    )
    data = build(recipients=[r])
    assert data.isascii()
    assert status_blocks(data)[1]["Diagnostic-Code"] == "smtp; 550 Benutzer unbekannt ?"


# --- the returned original -----------------------------------------------------------------


def test_headers_only_by_default() -> None:
    original = parts(parse(build()))[2]
    assert original.get_content_type() == "text/rfc822-headers"
    assert raw_part_body(build(), 2) == ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"
    assert b"Shall we?" not in build()


def test_ret_full_returns_the_whole_message() -> None:
    data = build(return_content=True)
    original = parts(parse(data))[2]
    assert original.get_content_type() == "message/rfc822"
    assert original["Content-Transfer-Encoding"] == "7bit"
    payload = original.get_payload()
    assert isinstance(payload, list)
    inner = payload[0]
    assert isinstance(inner, Message)
    assert inner["Subject"] == "lunch?"
    assert content(inner) == "Shall we?\n"
    assert raw_part_body(data, 2) == ORIGINAL


def test_ret_full_8bit_original() -> None:
    original = ORIGINAL.replace(b"Shall we?", "Schön, ja?".encode())
    data = build(return_content=True, original=original)
    msg = parse(data)
    assert msg["Content-Transfer-Encoding"] == "8bit"
    part = parts(msg)[2]
    assert part.get_content_type() == "message/rfc822"  # the addresses are ASCII
    assert part["Content-Transfer-Encoding"] == "8bit"
    assert raw_part_body(data, 2) == original


def test_ret_full_binary_original_falls_back_to_headers() -> None:
    original = ORIGINAL + b"\x00\x01" + b"x" * 1200 + b"\r\n"
    data = build(return_content=True, original=original)
    text, _, returned = parts(parse(data))
    assert returned.get_content_type() == "text/rfc822-headers"
    assert "only its headers are attached" in content(text)
    assert b"\x00" not in data


def test_bare_lf_original_is_returned_with_crlf() -> None:
    data = build(return_content=True, original=ORIGINAL.replace(b"\r\n", b"\n"))
    assert raw_part_body(data, 2) == ORIGINAL


def test_original_without_blank_line_is_all_header() -> None:
    original = b"From: a@a.test\r\nSubject: x"
    data = build(original=original)
    assert raw_part_body(data, 2) == b"From: a@a.test\r\nSubject: x\r\n"
    full = build(original=original, return_content=True)
    assert raw_part_body(full, 2) == original
    assert len(parts(parse(full))) == 3


def test_original_with_nul_in_header_is_quoted_printable() -> None:
    original = b"Subject: a\x00b\r\nX-Long: " + b"y" * 1500 + b"\r\n\r\nbody\r\n"
    data = build(original=original)
    assert b"\x00" not in data
    assert all(len(line) <= 998 for line in lines(data))
    returned = parts(parse(data))[2]
    assert returned["Content-Transfer-Encoding"] == "quoted-printable"
    assert returned.get_payload(decode=True) == original.split(b"\r\n\r\n")[0] + b"\r\n"


@pytest.mark.parametrize("original", [b"", b"\r\n", b"\r\nbody only\r\n", b"no header at all"])
def test_degenerate_originals(original: bytes) -> None:
    for ret in (False, True):
        msg = parse(build(original=original, return_content=ret))
        assert len(parts(msg)) == 3


def test_boundary_collision_is_avoided(monkeypatch: pytest.MonkeyPatch) -> None:
    likely = "=_posthorn_0123"
    candidates = iter([likely, likely, "=_posthorn_fresh"])
    monkeypatch.setattr(dsn, "_new_boundary", lambda: next(candidates))
    original = ORIGINAL + b"--" + likely.encode() + b"\r\nevil\r\n--" + likely.encode() + b"--\r\n"
    data = build(original=original, return_content=True)
    assert b'boundary="=_posthorn_fresh"' in data
    returned = parts(parse(data))[2]
    assert raw_part_body(data, 2) == original
    assert returned.get_content_type() == "message/rfc822"


def test_boundary_not_in_headers_only_part(monkeypatch: pytest.MonkeyPatch) -> None:
    candidates = iter(["=_posthorn_x", "=_posthorn_y"])
    monkeypatch.setattr(dsn, "_new_boundary", lambda: next(candidates))
    data = build(original=b"X-Trap: --=_posthorn_x\r\n\r\n")
    assert b'boundary="=_posthorn_y"' in data


# --- internationalised mail (RFC 6533) ------------------------------------------------------


def test_utf8_recipient_uses_global_types() -> None:
    r = DSNRecipient(
        "rfc822; jürgen@b.test",
        "failed",
        "5.1.1",
        original_recipient="utf-8;jürgen@b.test",
        diagnostic="smtp; 550 5.1.1 unbekannt: jürgen",
    )
    original = "From: alice@a.test\r\nTo: jürgen@b.test\r\n\r\nHallo\r\n".encode()
    data = build(recipients=[r], original=original, return_content=True)
    msg = parse(data)
    assert msg["Content-Transfer-Encoding"] == "8bit"
    text, status, returned = parts(msg)
    assert status.get_content_type() == "message/global-delivery-status"
    assert returned.get_content_type() == "message/global"
    assert returned["Content-Transfer-Encoding"] == "8bit"
    block = status_blocks(data)[1]
    assert block["Final-Recipient"] == "utf-8; jürgen@b.test"
    assert block["Original-Recipient"] == "utf-8; jürgen@b.test"
    assert block["Diagnostic-Code"] == "smtp; 550 5.1.1 unbekannt: jürgen"
    assert "<jürgen@b.test>: delivery failed (5.1.1)" in content(text)
    assert raw_part_body(data, 2) == original


def test_utf8_sender_uses_global_headers_part() -> None:
    data = build(sender="änne@a.test")
    msg = parse(data)
    assert msg["To"] == "änne@a.test"
    _, status, returned = parts(msg)
    assert status.get_content_type() == "message/global-delivery-status"
    assert returned.get_content_type() == "message/global-headers"
    assert status_blocks(data)[1]["Final-Recipient"] == "utf-8; bob@b.test"
    # An ASCII ORCPT is kept as received (RFC 3464 §2.3.1).
    assert status_blocks(data)[1]["Original-Recipient"] == "rfc822; Bob@b.test"


def test_smtputf8_flag_alone_selects_global_types() -> None:
    _, status, returned = parts(parse(build(smtputf8=True, return_content=True)))
    assert status.get_content_type() == "message/global-delivery-status"
    assert returned.get_content_type() == "message/global"


# --- caller errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("failed", "4.4.1"),
        ("failed", "2.0.0"),
        ("delayed", "5.1.1"),
        ("delivered", "5.0.0"),
        ("relayed", "4.0.0"),
        ("expanded", "5.1.1"),
        ("bounced", "5.1.1"),
        ("failed", "5.1"),
        ("failed", "6.1.1"),
        ("failed", "5.1.1 "),
        ("failed", "5.1000.1"),
    ],
)
def test_action_status_mismatch_is_refused(action: str, status: str) -> None:
    with pytest.raises(ValueError):
        DSNRecipient("rfc822; bob@b.test", action, status)


def test_action_is_case_insensitive() -> None:
    assert DSNRecipient("rfc822; bob@b.test", "Failed", "5.1.1").action == "failed"


def test_will_retry_until_only_for_delays() -> None:
    with pytest.raises(ValueError):
        DSNRecipient("rfc822; b@b.test", "failed", "5.1.1", will_retry_until=NOW)


def test_empty_final_recipient_is_refused() -> None:
    with pytest.raises(ValueError):
        DSNRecipient("\r\n", "failed", "5.1.1")


def test_no_recipients_is_refused() -> None:
    with pytest.raises(ValueError):
        build(recipients=[])


def test_null_sender_is_refused() -> None:
    """A bounce is never bounced (RFC 5321 §4.5.5)."""
    with pytest.raises(ValueError):
        build(sender="")


# --- whatever the original ----------------------------------------------------------------


def _check_report(data: bytes) -> Message:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    payload = msg.get_payload()
    assert isinstance(payload, list)
    assert len(payload) == 3
    assert all(len(line) <= 998 for line in lines(data))
    assert b"\x00" not in data
    return msg


@settings(max_examples=300, deadline=None)
@given(
    original=st.one_of(
        st.binary(max_size=3000),
        st.lists(
            st.sampled_from(
                [
                    b"\r\n",
                    b"\n",
                    b"\r",
                    b"\x00",
                    b"From: a@b\r\n",
                    b"--",
                    b"=_posthorn_",
                    b"Content-Type: multipart/mixed; boundary=x\r\n",
                    b"--x\r\n",
                    b"\xff\xfe",
                    b"x" * 1000,
                    b": ",
                    b" ",
                ]
            ),
            max_size=40,
        ).map(b"".join),
    ),
    ret=st.booleans(),
    utf8=st.booleans(),
)
def test_any_original_gives_a_report(original: bytes, ret: bool, utf8: bool) -> None:
    data = build(original=original, return_content=ret, smtputf8=utf8)
    _check_report(data)
