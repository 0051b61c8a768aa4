"""Outbound delivery end to end, all on loopback: a real DNS server (FakeDNS), two
`posthorn serve` instances (a.test and b.test), and aiosmtpd standing in for other
organisations' servers and a smart host.

MX hosts resolve to different 127.0.0.x addresses; every instance uses one MX port
(``outbound.mx_port``), B's SMTP port, so each remote double listens on its own loopback
address with that same port.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from posthorn.net.tls import ensure_self_signed, server_context
from tests.e2e.harness import Posthorn
from tests.e2e.mail import cat, inbox, wait_for_subject
from tests.support.dns_server import FakeDNS
from tests.support.mta import RemoteMTA, Script

ALICE = ("alice@a.test", "alice-secret-1")
BOB = ("bob@b.test", "bob-secret-22")


def message(subject: str, to: str, sender: str = ALICE[0], extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}\r\nHello {to}.\r\n"
    ).encode()


def submit(server: Posthorn, to: list[str], subject: str, **options: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.login(*ALICE)
        s.sendmail(
            ALICE[0],
            to,
            message(subject, ", ".join(to)),
            mail_options=options.get("mail", []),
            rcpt_options=options.get("rcpt", []),
        )


def outbound(dns: FakeDNS, mx_port: int, more: str = "") -> str:
    return (
        f'[outbound]\nnameservers = ["{dns.address}"]\nmx_port = {mx_port}\n'
        f'retry_first = "1s"\nretry_max = "2s"\n{more}'
    )


@dataclass
class World:
    dns: FakeDNS
    a: Posthorn
    b: Posthorn
    flaky: RemoteMTA
    reject: RemoteMTA
    port: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with FakeDNS() as dns:
        b = Posthorn(
            tmp_path_factory.mktemp("b"),
            extra=outbound(dns, 25),
            services=("smtp", "imap"),
            hostname="mx.b.test",
            domains=("b.test", "b2.test", "inner.test"),
        ).start()
        port = b.ports["smtp"]
        for address, pw in (
            BOB,
            ("carol@b2.test", "carol-pw-333"),
            ("dan@inner.test", "d-pw-4444"),
        ):
            b.cli("user", "add", address, "--password-stdin", input=pw + "\n", check=True)
        dns.set("b.test", [("MX", "10 mx.b.test")])
        dns.set("mx.b.test", [("A", "127.0.0.1")])
        # b2.test: the preferred MX is down (nothing listens on 127.0.0.2), the second is B.
        dns.set("b2.test", [("MX", "10 dead.b2.test"), ("MX", "20 mx.b.test")])
        dns.set("dead.b2.test", [("A", "127.0.0.2")])
        dns.set("flaky.test", [("MX", "10 mx.flaky.test")])
        dns.set("mx.flaky.test", [("A", "127.0.0.3")])
        dns.set("reject.test", [("MX", "10 mx.reject.test")])
        dns.set("mx.reject.test", [("A", "127.0.0.4")])
        dns.set("nullmx.test", [("MX", "0 .")])
        a = Posthorn(
            tmp_path_factory.mktemp("a"),
            extra=outbound(dns, port, f'[outbound.routes]\n"inner.test" = "127.0.0.1:{port}"\n'),
            services=("smtp", "submission", "imap"),
            hostname="mx.a.test",
            domains=("a.test",),
        ).start()
        a.cli("user", "add", ALICE[0], "--password-stdin", input=ALICE[1] + "\n", check=True)
        flaky = RemoteMTA("127.0.0.3", port, script=Script())
        reject = RemoteMTA(
            "127.0.0.4", port, script=Script(rcpt={"nobody@reject.test": "550 5.1.1 no such user"})
        )
        with flaky, reject:
            yield World(dns, a, b, flaky, reject, port)
        assert a.stop() == 0
        assert b.stop() == 0
        for server in (a, b):
            assert not [ln for ln in server.lines if "Traceback" in ln], "\n".join(server.lines)


def imap_fetch(server: Posthorn, user: tuple[str, str], subject: str) -> bytes:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    m.login(*user)
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", f'"{subject}"')
    assert typ == "OK" and data[0], (subject, data)
    number = data[0].split()[-1]
    typ, fetched = m.fetch(number, "(BODY.PEEK[])")
    m.logout()
    item = fetched[0]
    assert isinstance(item, tuple)
    return item[1]


FAILED = "Undelivered Mail Returned to Sender"
DELAYED = "Delayed Mail (still being retried)"
SUCCESS = "Successful Mail Delivery Report"


def dsn_for(server: Posthorn, subject: str, about: str, timeout: float = 20) -> EmailMessage:
    """The notice with this subject in alice's INBOX that mentions ``about``."""
    deadline = time.monotonic() + timeout
    while True:
        for row in inbox(server, ALICE[0]):
            if row[5] == subject:
                raw = cat(server, ALICE[0], row[0])
                if about.encode() in raw:
                    msg = email.message_from_bytes(raw, policy=email.policy.default)
                    assert isinstance(msg, EmailMessage)
                    return msg
        assert time.monotonic() < deadline, f"no {subject!r} about {about}"
        time.sleep(0.2)


def report(dsn: EmailMessage) -> str:
    return list(dsn.iter_parts())[1].as_bytes().decode("utf-8", "replace")


def wait_until(check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_mx_delivery_between_two_instances(world: World) -> None:
    submit(world.a, [BOB[0]], "across the net")
    wait_for_subject(world.b, BOB[0], "across the net")
    raw = imap_fetch(world.b, BOB, "across the net")
    head = raw.split(b"\r\n\r\n")[0]
    assert head.count(b"Received: ") >= 2  # A's hop and B's hop
    assert b"by mx.a.test" in head and b"by mx.b.test" in head
    assert b"Return-Path: <alice@a.test>" in head
    assert ("b.test", "MX") in [(q[0].rstrip(".").lower(), q[1]) for q in world.dns.queries]


def test_first_mx_down_the_second_takes_it(world: World) -> None:
    submit(world.a, ["carol@b2.test"], "via the backup MX")
    wait_for_subject(world.b, "carol@b2.test", "via the backup MX")


def test_route_to_an_inner_server_needs_no_dns(world: World) -> None:
    submit(world.a, ["dan@inner.test"], "through the hub route")
    wait_for_subject(world.b, "dan@inner.test", "through the hub route")
    assert not [q for q in world.dns.queries if "inner.test" in q[0]]


def test_451_then_accepted_is_delivered_once(world: World) -> None:
    world.flaky.script.rcpt_once["x@flaky.test"] = ["451 4.3.0 try again later"]
    submit(world.a, ["x@flaky.test"], "flaky first")
    wait_until(lambda: world.flaky.messages_to("x@flaky.test"))
    time.sleep(2.5)  # any further retry would have happened by now
    assert len(world.flaky.messages_to("x@flaky.test")) == 1
    listing = world.a.cli("queue", "list", check=True).stdout
    assert "x@flaky.test" not in listing


def test_550_bounces_to_the_sender_with_the_remote_reply(world: World) -> None:
    submit(world.a, ["nobody@reject.test"], "doomed message")
    dsn = dsn_for(world.a, FAILED, "nobody@reject.test")
    assert dsn["Auto-Submitted"] == "auto-replied"
    assert dsn.get_content_type() == "multipart/report"
    parts = list(dsn.iter_parts())
    status = report(dsn)
    assert "Final-Recipient: rfc822; nobody@reject.test" in status
    assert "Action: failed" in status and "Status: 5.1.1" in status
    assert "550 5.1.1 no such user" in status
    assert "Remote-MTA: dns; mx.reject.test" in status
    assert "Subject: doomed message" in parts[2].as_bytes().decode()


def test_null_mx_fails_at_once(world: World) -> None:
    submit(world.a, ["someone@nullmx.test"], "to a null mx")
    status = report(dsn_for(world.a, FAILED, "someone@nullmx.test"))
    assert "someone@nullmx.test" in status and "Status: 5.1.10" in status


def test_dsn_notify_success_and_never(world: World) -> None:
    # The flaky double does not offer DSN: A reports "relayed" itself (RFC 3461 §4.2).
    submit(world.a, ["y@flaky.test"], "tell me relayed", rcpt=["NOTIFY=SUCCESS"])
    status = report(dsn_for(world.a, SUCCESS, "y@flaky.test"))
    assert "Action: relayed" in status and "Status: 2.0.0" in status
    # Delivered here: "delivered".
    submit(world.a, [ALICE[0]], "tell me delivered", rcpt=["NOTIFY=SUCCESS,FAILURE"])
    status = report(dsn_for(world.a, SUCCESS, "Final-Recipient: rfc822; alice@a.test"))
    assert "Action: delivered" in status
    before = len(inbox(world.a, ALICE[0]))
    submit(world.a, ["nobody@reject.test"], "never tell", rcpt=["NOTIFY=NEVER"])
    time.sleep(3)
    assert len(inbox(world.a, ALICE[0])) == before


def test_expiry_sends_a_delay_notice_then_a_bounce(tmp_path: Path, world: World) -> None:
    world.dns.set("gone.test", [("MX", "10 mx.gone.test")])
    world.dns.set("mx.gone.test", [("A", "127.0.0.2")])  # nobody listens there
    c = Posthorn(
        tmp_path,
        extra=outbound(world.dns, world.port, 'lifetime = "6s"\ndelay_warning = "2s"\n'),
        services=("submission",),
        hostname="mx.a.test",
        domains=("a.test",),
    ).start()
    try:
        c.cli("user", "add", ALICE[0], "--password-stdin", input=ALICE[1] + "\n", check=True)
        submit(c, ["x@gone.test"], "will expire")
        status = report(dsn_for(c, DELAYED, "x@gone.test"))
        assert "Action: delayed" in status and "Will-Retry-Until:" in status
        status = report(dsn_for(c, FAILED, "x@gone.test"))
        assert "Action: failed" in status and "x@gone.test" in status
        assert "gave up after" in status
        shown = c.cli("queue", "list", check=True).stdout
        assert "x@gone.test" not in shown
    finally:
        assert c.stop() == 0


def test_smart_host_with_auth_and_tls(tmp_path: Path, world: World) -> None:
    cert, key = ensure_self_signed(tmp_path / "relay", "relay.test")
    world.dns.set("relay.test", [("A", "127.0.0.5")])
    with RemoteMTA(
        "127.0.0.5",
        world.port,
        tls=server_context(cert, key),
        credentials=("relay-user", "relay-pass"),
    ) as relay:
        (tmp_path / "d").mkdir()
        d = Posthorn(
            tmp_path / "d",
            extra=outbound(
                world.dns,
                world.port,
                f'smarthost = "relay.test:{world.port}"\nsmarthost_user = "relay-user"\n'
                f'smarthost_password = "relay-pass"\nsmarthost_ca = "{cert}"\n',
            ),
            services=("submission",),
            hostname="mx.a.test",
            domains=("a.test",),
        )
        d.start()
        try:
            d.cli("user", "add", ALICE[0], "--password-stdin", input=ALICE[1] + "\n", check=True)
            submit(d, ["someone@far-away.test"], "via the smart host")
            wait_until(lambda: relay.messages_to("someone@far-away.test"))
            got = relay.messages_to("someone@far-away.test")[0]
            assert got.tls and got.login == "relay-user"
            assert b"Subject: via the smart host" in got.data
            assert not [q for q in world.dns.queries if "far-away" in q[0]]  # no MX lookup
        finally:
            assert d.stop() == 0
