"""SMTP abuse limits and the TLS-before-AUTH rule, on a server configured strictly."""

from __future__ import annotations

import base64
import smtplib
import socket
import time
from collections.abc import Iterator

import pytest

from tests.e2e.harness import Posthorn
from tests.e2e.mail import Raw, client_tls

STRICT = """
[auth]
plaintext_on_loopback = false
[smtp]
command_timeout = 1.5
max_connections_per_ip = 3
max_bad_commands = 3
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Posthorn]:
    ph = Posthorn(
        tmp_path_factory.mktemp("strict"), extra=STRICT, services=("smtp", "submission")
    ).start()
    ph.cli("user", "add", "dave@example.test", "--password-stdin", input="right-pass\n", check=True)
    yield ph
    assert ph.stop() == 0


def plain(user: str, password: str) -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


def test_no_auth_before_tls_then_auth_after_starttls(server: Posthorn) -> None:
    raw = Raw(server.ports["submission"])
    try:
        raw.reply()
        code, ehlo = raw.cmd(b"EHLO mua.test")
        assert "STARTTLS" in ehlo and "AUTH" not in ehlo
        code, text = raw.cmd(b"AUTH PLAIN " + plain("dave@example.test", "right-pass"))
        assert code in (530, 538) and "5.7." in text
    finally:
        raw.close()
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.starttls(context=client_tls())
        s.ehlo("mua.test")
        assert s.has_extn("auth")
        assert s.login("dave@example.test", "right-pass")[0] == 235


def test_connections_per_ip(server: Posthorn) -> None:
    held = [Raw(server.ports["smtp"]) for _ in range(3)]
    try:
        for raw in held:
            assert raw.reply()[0] == 220
        extra = Raw(server.ports["smtp"])
        code, text = extra.reply()
        assert (code, text[4:9]) == (421, "4.7.0")
        extra.close()
    finally:
        for raw in held:
            raw.close()
    time.sleep(0.3)
    again = Raw(server.ports["smtp"])
    assert again.reply()[0] == 220  # slots come back when connections close
    again.close()


def test_bad_commands_end_the_session(server: Posthorn) -> None:
    raw = Raw(server.ports["smtp"])
    try:
        raw.reply()
        assert raw.cmd(b"FOO")[0] == 500
        assert raw.cmd(b"MAIL FROM:<x@y.test>")[0] == 503  # before EHLO
        code, text = raw.cmd(b"BAR")
        assert (code, text[4:9]) == (421, "4.7.0")
        assert raw.sock.recv(100) == b""  # closed
    finally:
        raw.close()


def test_idle_client_times_out(server: Posthorn) -> None:
    raw = Raw(server.ports["smtp"])
    try:
        raw.reply()
        raw.sock.settimeout(10)
        started = time.monotonic()
        code, text = raw.reply()
        assert (code, text[4:9]) == (421, "4.4.2")
        assert 1.0 < time.monotonic() - started < 8
    finally:
        raw.close()


def test_wrong_password_delay_then_lockout(server: Posthorn) -> None:
    ctx = client_tls()
    sock = socket.create_connection(("127.0.0.1", server.ports["submission"]), timeout=30)
    raw = Raw.__new__(Raw)
    raw.buf = b""
    raw.sock = sock
    raw.reply()
    raw.cmd(b"EHLO mua.test")
    assert raw.cmd(b"STARTTLS")[0] == 220
    raw.sock = ctx.wrap_socket(sock)
    raw.cmd(b"EHLO mua.test")
    timings = []
    try:
        for _ in range(5):
            started = time.monotonic()
            code, text = raw.cmd(b"AUTH PLAIN " + plain("dave@example.test", "wrong"))
            timings.append(time.monotonic() - started)
            assert (code, text[4:9]) == (535, "5.7.8")
        assert timings[-1] > timings[0] + 0.5  # failures cost growing delays
        # Locked now: even the right password is refused, temporarily, without a check.
        code, text = raw.cmd(b"AUTH PLAIN " + plain("dave@example.test", "right-pass"))
        assert (code, text[4:9]) == (454, "4.7.0")
    finally:
        raw.close()


def test_stalled_data_times_out_and_keeps_nothing(server: Posthorn) -> None:
    raw = Raw(server.ports["smtp"])
    try:
        raw.reply()
        raw.cmd(b"EHLO slow.test")
        raw.cmd(b"MAIL FROM:<slow@remote.test>")
        assert raw.cmd(b"RCPT TO:<dave@example.test>")[0] == 250
        assert raw.cmd(b"DATA")[0] == 354
        raw.send(b"Subject: stalled\r\n\r\nhalf a message")
        code, text = raw.reply()  # the server gives up on the silent client (RFC 5321 §4.5.3.2)
        assert (code, text[4:9]) == (421, "4.4.2")
    finally:
        raw.close()
    assert "stalled" not in server.cli("mail", "ls", "dave@example.test", check=True).stdout
    assert server.cli("queue", "list", check=True).stdout.strip() == "queue is empty"
