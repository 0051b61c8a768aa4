"""SMTP in, end to end: `posthorn serve` in a subprocess, real clients, mail read back by CLI."""

from __future__ import annotations

import re
import smtplib
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.harness import Posthorn
from tests.e2e.mail import Raw, cat, client_tls, inbox, wait_for_messages, wait_for_subject

SMTP_LIMITS = """
[smtp]
max_message_size = "64K"
max_recipients = 5
"""

PASSWORDS = {"alice@example.test": "alice-secret-1", "bob@example.test": "bob-secret-22"}


def message(sender: str, to: str, subject: str, extra: str = "", body: str = "Hello.") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}\r\n{body}\r\n").encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Posthorn]:
    ph = Posthorn(
        tmp_path_factory.mktemp("smtp"),
        extra=SMTP_LIMITS,
        services=("smtp", "submission", "submissions", "lmtp"),
    ).start()
    for address, password in PASSWORDS.items():
        ph.cli("user", "add", address, "--password-stdin", input=password + "\n", check=True)
    ph.cli("user", "add", "carol@example.test", check=True)
    ph.cli("domain", "add", "catch.test", check=True)
    ph.cli("user", "add", "postmaster@catch.test", check=True)
    ph.cli(
        "alias", "add", "team@example.test", "alice@example.test", "bob@example.test", check=True
    )
    ph.cli("alias", "add", "outside@example.test", "someone@remote.test", check=True)
    ph.cli("alias", "add", "sales@example.test", "alice@example.test", check=True)
    ph.cli("alias", "add", "@catch.test", "carol@example.test", check=True)
    yield ph
    assert ph.stop() == 0
    # Tracebacks belong in the log only for the storage fault injected on purpose below.
    expected = ("event=smtp.", "event=spool.commit_failed")
    unexpected = [ln for ln in ph.lines if "Traceback" in ln and not any(e in ln for e in expected)]
    assert not unexpected, "\n".join(unexpected)


def submit(server: Posthorn, user: str = "alice@example.test") -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10)
    s.starttls(context=client_tls())
    s.login(user, PASSWORDS[user])
    return s


def test_inbound_local_delivery_with_trace_headers(server: Posthorn) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("client.remote.test")
        s.mail("sender@remote.test")
        code, _ = s.rcpt("Alice@Example.Test")
        assert code == 250
        code, text = s.data(message("sender@remote.test", "alice@example.test", "inbound-1"))
    assert code == 250
    queue_id = re.search(rb"queued as (\S+)", text).group(1).decode()  # type: ignore[union-attr]
    row = wait_for_subject(server, "alice@example.test", "inbound-1")
    raw = cat(server, "alice@example.test", row[0])
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"Return-Path: <sender@remote.test>\r\n")
    assert b"\r\nDelivered-To: alice@example.test\r\n" in head
    assert re.search(
        rb"Received: from client\.remote\.test \(\[127\.0\.0\.1\]\)\r\n\tby "
        rb"mail\.example\.test \(posthorn\) with ESMTP id " + queue_id.encode(),
        head,
    )
    assert raw.endswith(b"\r\nHello.\r\n")


def test_mixed_recipients_local_unknown_remote(server: Posthorn) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("client.remote.test")
        assert s.mail("sender@remote.test")[0] == 250
        assert s.rcpt("bob@example.test")[0] == 250
        code, text = s.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")
        code, text = s.rcpt("someone@remote.test")
        assert (code, text[:5]) == (554, b"5.7.1")
        code, _ = s.data(message("sender@remote.test", "bob@example.test", "mixed-1"))
        assert code == 250
    wait_for_subject(server, "bob@example.test", "mixed-1")


@pytest.mark.parametrize(
    "rcpt",
    [
        "<user%remote.test@example.test>",
        '<"user@remote.test"@example.test>',
        "<@example.test:user@remote.test>",
        "<@a.test,@b.test:user@remote.test>",
        "<remote.test!user@example.test>",
        "<user@remote.test>",
        "<user@[127.0.0.1]>",
    ],
)
def test_no_open_relay(server: Posthorn, rcpt: str) -> None:
    raw = Raw(server.ports["smtp"])
    try:
        assert raw.reply()[0] == 220
        assert raw.cmd(b"EHLO evil.test")[0] == 250
        assert raw.cmd(b"MAIL FROM:<spammer@evil.test>")[0] == 250
        code, text = raw.cmd(b"RCPT TO:" + rcpt.encode())
        assert 500 <= code < 600, text
    finally:
        raw.close()


def test_submission_requires_auth_and_relays_when_authenticated(server: Posthorn) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.ehlo("mua.test")
        code, text = s.mail("alice@example.test")
        assert (code, text[:5]) == (530, b"5.7.0")
    with submit(server) as s:
        refused = s.sendmail(
            "alice@example.test",
            ["friend@remote.test", "bob@example.test"],
            message("alice@example.test", "friend@remote.test", "outbound-1"),
        )
        assert refused == {}
    wait_for_subject(server, "bob@example.test", "outbound-1")
    listing = server.cli("queue", "list", check=True).stdout
    assert "friend@remote.test" in listing
    assert "alice@example.test" in listing


def test_auth_over_plaintext_is_allowed_only_on_loopback_by_config(server: Posthorn) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.ehlo("mua.test")
        assert s.has_extn("auth")  # loopback + plaintext_on_loopback = true (the default)
        s.login("alice@example.test", PASSWORDS["alice@example.test"])


def test_sender_must_belong_to_the_account(server: Posthorn) -> None:
    with submit(server) as s:
        code, text = s.mail("bob@example.test")
        assert (code, text[:5]) == (553, b"5.7.1")
        s.rset()
        assert s.mail("sales@example.test")[0] == 250  # an alias delivering to alice
        s.rset()
        assert s.mail("alice+lists@example.test")[0] == 250  # her plus-address
        s.rset()
        with pytest.raises(smtplib.SMTPDataError) as exc:
            s.sendmail(
                "alice@example.test",
                ["bob@example.test"],
                message("Bob <bob@example.test>", "bob@example.test", "forged"),
            )
        assert exc.value.smtp_code == 553


def test_submission_adds_message_id_and_date(server: Posthorn) -> None:
    with submit(server) as s:
        s.sendmail(
            "alice@example.test",
            ["carol@example.test"],
            message("Alice <alice@example.test>", "carol@example.test", "no-id"),
        )
    row = wait_for_subject(server, "carol@example.test", "no-id")
    head = cat(server, "carol@example.test", row[0]).split(b"\r\n\r\n", 1)[0]
    assert re.search(rb"\r\nMessage-ID: <[^>]+@mail\.example\.test>\r\n", head)
    assert re.search(rb"\r\nDate: \w{3}, \d", head)
    assert b"with ESMTPSA id" in head


def test_implicit_tls_submissions(server: Posthorn) -> None:
    with smtplib.SMTP_SSL(
        "127.0.0.1", server.ports["submissions"], timeout=10, context=client_tls()
    ) as s:
        s.login("bob@example.test", PASSWORDS["bob@example.test"])
        s.sendmail(
            "bob@example.test",
            ["alice@example.test"],
            message("bob@example.test", "alice@example.test", "via-465"),
        )
    wait_for_subject(server, "alice@example.test", "via-465")


def test_pipelining(server: Posthorn) -> None:
    raw = Raw(server.ports["smtp"])
    try:
        raw.reply()
        _, ehlo = raw.cmd(b"EHLO pipe.test")
        assert "PIPELINING" in ehlo
        raw.send(
            b"MAIL FROM:<p@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n"
        )
        assert [raw.reply()[0] for _ in range(5)] == [250, 250, 550, 250, 354]
        raw.send(b"Subject: pipelined\r\n\r\n..dot-stuffed line\r\n.\r\nNOOP\r\nQUIT\r\n")
        assert raw.reply()[0] == 250
        assert raw.reply()[0] == 250
        assert raw.reply()[0] == 221
    finally:
        raw.close()
    row = wait_for_subject(server, "carol@example.test", "pipelined")
    assert cat(server, "carol@example.test", row[0]).endswith(b"\r\n\r\n.dot-stuffed line\r\n")


def test_bdat_chunking(server: Posthorn) -> None:
    body = b"Subject: chunked\r\n\r\nfirst part, " + b"second part\r\n"
    raw = Raw(server.ports["smtp"])
    try:
        raw.reply()
        assert "CHUNKING" in raw.cmd(b"EHLO chunk.test")[1]
        assert raw.cmd(b"MAIL FROM:<c@remote.test> BODY=8BITMIME")[0] == 250
        assert raw.cmd(b"RCPT TO:<bob@example.test>")[0] == 250
        raw.send(b"BDAT 33\r\n" + body[:33])
        assert raw.reply()[0] == 250
        raw.send(b"BDAT %d LAST\r\n" % (len(body) - 33) + body[33:])
        code, text = raw.reply()
        assert code == 250 and "queued as" in text
    finally:
        raw.close()
    row = wait_for_subject(server, "bob@example.test", "chunked")
    assert cat(server, "bob@example.test", row[0]).endswith(body)


def test_smtputf8(server: Posthorn) -> None:
    server.cli("user", "add", "jörg@example.test", check=True)
    msg = "From: zoë@remote.test\r\nTo: jörg@example.test\r\nSubject: grüße\r\n\r\nHallo.\r\n"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("utf8.test")
        assert s.has_extn("smtputf8")
        refused = s.sendmail(
            "zoë@remote.test",
            ["jörg@example.test"],
            msg.encode(),
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
        assert refused == {}
    raw = Raw(server.ports["smtp"])
    try:
        raw.reply()
        raw.cmd(b"EHLO utf8.test")
        code, _ = raw.cmd("MAIL FROM:<zoë@remote.test>".encode())
        assert code == 553  # non-ASCII without SMTPUTF8 (RFC 6531 §3.4)
    finally:
        raw.close()
    rows = wait_for_messages(server, "jörg@example.test", 1)
    assert rows[0][4] == "zoë@remote.test"


def test_oversized_message_is_refused_and_not_kept(server: Posthorn) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("big.test")
        assert s.has_extn("size") and int(s.esmtp_features["size"]) == 64 * 1024
        code, text = s.mail("big@remote.test", options=["SIZE=100000"])
        assert (code, text[:5]) == (552, b"5.3.4")
        s.rset()
        s.mail("big@remote.test")
        s.rcpt("alice@example.test")
        code, text = s.data(
            message(
                "big@remote.test", "alice@example.test", "too-big", body=("x" * 70 + "\r\n") * 1000
            )
        )
        assert (code, text[:5]) == (552, b"5.3.4")
    assert not any(r[5] == "too-big" for r in inbox(server, "alice@example.test"))


def test_over_long_line_is_refused(server: Posthorn) -> None:
    raw = Raw(server.ports["smtp"])
    try:
        raw.reply()
        raw.cmd(b"EHLO long.test")
        raw.cmd(b"MAIL FROM:<l@remote.test>")
        raw.cmd(b"RCPT TO:<alice@example.test>")
        assert raw.cmd(b"DATA")[0] == 354
        raw.send(b"Subject: long-line\r\n\r\n" + b"y" * 999 + b"\r\n.\r\n")
        code, text = raw.reply()
        assert code == 500 and "5.5.2" in text
        assert raw.cmd(b"NOOP")[0] == 250  # the session goes on
        assert raw.cmd(b"X" * 1200)[0] == 500  # an over-long command too
    finally:
        raw.close()
    assert not any(r[5] == "long-line" for r in inbox(server, "alice@example.test"))


@pytest.mark.parametrize("smuggle", [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"])
def test_smtp_smuggling_is_refused(server: Posthorn, smuggle: bytes) -> None:
    raw = Raw(server.ports["smtp"])
    subject = f"smuggle-{smuggle!r}"
    try:
        raw.reply()
        raw.cmd(b"EHLO smuggle.test")
        raw.cmd(b"MAIL FROM:<s@remote.test>")
        raw.cmd(b"RCPT TO:<carol@example.test>")
        assert raw.cmd(b"DATA")[0] == 354
        raw.send(
            b"Subject: outer\r\n\r\nbody"
            + smuggle
            + b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n"
            + f"Subject: {subject}\r\n\r\nsmuggled\r\n".encode()
            + b"\r\n.\r\n"
        )
        code, _ = raw.reply()
        assert code >= 500
    finally:
        raw.close()
    rows = inbox(server, "carol@example.test")
    assert not any(r[5] in ("outer", subject) for r in rows)


def test_aliases_catch_all_and_plus_addressing(server: Posthorn) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail(
            "x@remote.test",
            ["team@example.test"],
            message("x@remote.test", "team@example.test", "to-team"),
        )
        s.sendmail(
            "x@remote.test",
            ["anything@catch.test"],
            message("x@remote.test", "anything@catch.test", "to-catch-all"),
        )
        s.sendmail(
            "x@remote.test",
            ["bob+news@example.test"],
            message("x@remote.test", "bob+news@example.test", "to-plus"),
        )
        s.sendmail(
            "x@remote.test",
            ["outside@example.test"],
            message("x@remote.test", "outside@example.test", "to-remote-alias"),
        )
    wait_for_subject(server, "alice@example.test", "to-team")
    wait_for_subject(server, "bob@example.test", "to-team")
    wait_for_subject(server, "carol@example.test", "to-catch-all")
    wait_for_subject(server, "bob@example.test", "to-plus")
    assert "someone@remote.test" in server.cli("queue", "list", check=True).stdout


def test_too_many_recipients(server: Posthorn) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("many.test")
        s.mail("m@remote.test")
        for _ in range(5):
            assert s.rcpt("alice@example.test")[0] == 250
        code, text = s.rcpt("alice@example.test")
        assert (code, text[:5]) == (452, b"4.5.3")


def test_lmtp(server: Posthorn) -> None:
    raw = Raw(server.ports["lmtp"])
    try:
        assert "LMTP" in raw.reply()[1]
        assert raw.cmd(b"EHLO mta.test")[0] == 500  # LMTP speaks LHLO (RFC 2033 §4.1)
        assert raw.cmd(b"LHLO mta.test")[0] == 250
        assert raw.cmd(b"MAIL FROM:<l@remote.test>")[0] == 250
        assert raw.cmd(b"RCPT TO:<alice@example.test>")[0] == 250
        assert raw.cmd(b"RCPT TO:<bob@example.test>")[0] == 250
        assert raw.cmd(b"RCPT TO:<far@remote.test>")[0] >= 500
        assert raw.cmd(b"DATA")[0] == 354
        raw.send(b"Subject: via-lmtp\r\n\r\nhi\r\n.\r\n")
        assert [raw.reply()[0] for _ in range(2)] == [250, 250]  # one per recipient
    finally:
        raw.close()
    wait_for_subject(server, "bob@example.test", "via-lmtp")


def test_swaks_inbound_and_submission(server: Posthorn) -> None:
    result = subprocess.run(
        [
            "swaks",
            "--server",
            "127.0.0.1",
            "--port",
            str(server.ports["smtp"]),
            "--from",
            "swaks@remote.test",
            "--to",
            "carol@example.test",
            "--header",
            "Subject: swaks-inbound",
            "--pipeline",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run(
        [
            "swaks",
            "--server",
            "127.0.0.1",
            "--port",
            str(server.ports["submission"]),
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "bob@example.test",
            "--auth-password",
            PASSWORDS["bob@example.test"],
            "--from",
            "bob@example.test",
            "--to",
            "carol@example.test",
            "--header",
            "From: bob@example.test",
            "--header",
            "Subject: swaks-submission",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout
    wait_for_subject(server, "carol@example.test", "swaks-inbound")
    wait_for_subject(server, "carol@example.test", "swaks-submission")


def test_dsn_parameters_are_stored_with_the_message(server: Posthorn) -> None:
    import json

    with submit(server) as s:
        refused = s.sendmail(
            "alice@example.test",
            ["dsn-target@remote.test"],
            message("alice@example.test", "dsn-target@remote.test", "with-dsn"),
            mail_options=["RET=HDRS", "ENVID=env+2Bid-42"],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;dsn-target@remote.test"],
        )
        assert refused == {}
        code, _ = s.docmd("MAIL FROM:<alice@example.test> RET=SOMETIMES")
        assert code == 501
    queued = json.loads(server.cli("queue", "list", "--json", check=True).stdout)
    entry = next(
        m for m in queued if any(r["address"] == "dsn-target@remote.test" for r in m["recipients"])
    )
    assert entry["ret"] == "HDRS"
    assert entry["envid"] == "env+id-42"  # xtext-decoded (RFC 3461 §4)
    rcpt = next(r for r in entry["recipients"] if r["address"] == "dsn-target@remote.test")
    assert rcpt["notify"] == ["FAILURE", "SUCCESS"]
    assert rcpt["orcpt"] == "rfc822;dsn-target@remote.test"
    assert rcpt["route"] == "remote"


def test_extensions_per_listener(server: Posthorn) -> None:
    common = {
        "pipelining",
        "8bitmime",
        "smtputf8",
        "size",
        "enhancedstatuscodes",
        "chunking",
        "dsn",
    }
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.ehlo("x.test")
        assert common <= set(s.esmtp_features)
        assert "starttls" in s.esmtp_features
        assert "auth" not in s.esmtp_features  # port 25 offers no AUTH unless configured
        s.starttls(context=client_tls())
        s.ehlo("x.test")
        assert "starttls" not in s.esmtp_features and "auth" not in s.esmtp_features
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.ehlo("x.test")
        assert common | {"starttls", "auth"} <= set(s.esmtp_features)
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
    with smtplib.SMTP_SSL(
        "127.0.0.1", server.ports["submissions"], timeout=10, context=client_tls()
    ) as s:
        s.ehlo("x.test")
        assert common | {"auth"} <= set(s.esmtp_features)
        assert "starttls" not in s.esmtp_features


def test_storage_failure_is_a_temporary_error_never_a_traceback(server: Posthorn) -> None:
    """chattr +i makes the spool refuse new files, even to root: a real I/O fault."""
    spool = server.data_dir / "spool"
    subprocess.run(["chattr", "+i", str(spool)], check=True)
    try:
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
            s.ehlo("fault.test")
            s.mail("f@remote.test")
            s.rcpt("alice@example.test")
            code, text = s.docmd("DATA")
            if code == 354:
                s.send(b"Subject: fault\r\n\r\nbody\r\n.\r\n")
                code, text = s.getreply()
            assert 400 <= code < 500, (code, text)
            assert b"Traceback" not in text and b"Error" not in text.split(b" ", 1)[0]
            assert s.noop()[0] == 250  # the session survives
    finally:
        subprocess.run(["chattr", "-i", str(spool)], check=True)
    server.wait_for_log("event=smtp.")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail(
            "f@remote.test",
            ["alice@example.test"],
            message("f@remote.test", "alice@example.test", "after-fault"),
        )
    wait_for_subject(server, "alice@example.test", "after-fault")
