"""Scripted SMTP dialogues against the session state machine, with the real directory and spool.

No sockets: each line goes to `Session.command` and the replies are compared with the named
constants of `posthorn.smtp.codes`.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posthorn.directory import Directory, DirectoryDB, Hasher, HashParams
from posthorn.policy.limits import AuthThrottle
from posthorn.queue.spool import Spool
from posthorn.smtp import codes
from posthorn.smtp.codes import Reply
from posthorn.smtp.session import PROFILES, Connection, Limits, Next, Session

CHEAP = HashParams(time_cost=1, memory_cost=8, parallelism=1)
LIMITS = Limits(
    max_message_size=10_000, max_recipients=3, max_bad_commands=6, plaintext_auth_on_loopback=True
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Directory, Spool]]:
    with DirectoryDB.in_data_dir(tmp_path, hasher=Hasher(CHEAP)) as db:
        db.add_domain("example.test")
        db.add_account("alice@example.test", "pw-alice")
    directory = await Directory.in_data_dir(tmp_path, hasher=Hasher(CHEAP))
    spool = Spool(tmp_path)
    await spool.open()
    yield directory, spool
    await spool.close()
    await directory.close()


def session(
    world: tuple[Directory, Spool],
    profile: str = "smtp",
    ip: str = "127.0.0.1",
    tls: str | None = None,
) -> Session:
    directory, spool = world
    return Session(
        PROFILES[profile],
        Connection(ip, ip.startswith("127."), tls),
        hostname="mx.example.test",
        accounts=directory,
        spool=spool,
        limits=LIMITS,
        throttle=AuthThrottle(),
        tls_available=True,
        postmaster_domain="example.test",
    )


async def say(s: Session, line: str) -> list[Reply]:
    return (await s.command(line.encode())).replies


async def test_sequence_errors(world: tuple[Directory, Spool]) -> None:
    s = session(world)
    assert (await say(s, "MAIL FROM:<a@remote.test>"))[0].code == 503  # before EHLO
    assert (await say(s, "EHLO client.test"))[0].code == 250
    assert await say(s, "RCPT TO:<alice@example.test>") == [
        codes.BAD_SEQUENCE.with_text("Send MAIL first")
    ]
    assert await say(s, "DATA") == [codes.BAD_SEQUENCE.with_text("Send MAIL first")]
    assert await say(s, "MAIL FROM:<a@remote.test>") == [codes.SENDER_OK]
    assert (await say(s, "MAIL FROM:<a@remote.test>"))[0].code == 503  # nested
    assert await say(s, "DATA") == [codes.NO_VALID_RECIPIENTS]
    assert await say(s, "RSET") == [codes.OK]
    assert await say(s, "VRFY alice") == [codes.CANNOT_VRFY]
    assert await say(s, "NOOP") == [codes.OK]
    outcome = await s.command(b"QUIT")
    assert outcome.replies == [codes.CLOSING] and outcome.next is Next.CLOSE


async def test_recipient_rules(world: tuple[Directory, Spool]) -> None:
    s = session(world)
    await say(s, "EHLO client.test")
    await say(s, "MAIL FROM:<>")  # the null reverse path is accepted (bounces)
    assert await say(s, "RCPT TO:<Alice@EXAMPLE.test>") == [codes.RCPT_OK]
    assert await say(s, "RCPT TO:<nobody@example.test>") == [codes.NO_SUCH_USER]
    assert await say(s, "RCPT TO:<x@remote.test>") == [codes.RELAY_DENIED]
    assert await say(s, "RCPT TO:<x%remote.test@example.test>") == [codes.RELAY_DENIED]
    assert await say(s, "RCPT TO:<@a.test:x@remote.test>") == [codes.SOURCE_ROUTE_REFUSED]
    assert await say(s, "RCPT TO:<Postmaster>") == [codes.NO_SUCH_USER]  # no postmaster account
    assert await say(s, "RCPT TO:<alice@example.test>") == [codes.RCPT_OK]
    assert await say(s, "RCPT TO:<alice@example.test>") == [codes.RCPT_OK]
    assert await say(s, "RCPT TO:<alice@example.test>") == [codes.TOO_MANY_RECIPIENTS]


async def test_too_many_bad_commands_closes(world: tuple[Directory, Spool]) -> None:
    s = session(world)
    for _ in range(5):
        assert await say(s, "XYZZY") == [codes.COMMAND_UNRECOGNIZED]
    outcome = await s.command(b"XYZZY")
    assert outcome.replies == [codes.TOO_MANY_BAD] and outcome.next is Next.CLOSE


async def test_submission_auth_rules(world: tuple[Directory, Spool]) -> None:
    s = session(world, "submission", ip="192.0.2.7")  # not loopback, no TLS yet
    await say(s, "EHLO mua.test")
    assert "AUTH" not in s.extensions() and "STARTTLS" in s.extensions()
    plain = base64.b64encode(b"\0alice@example.test\0pw-alice").decode()
    assert (await say(s, f"AUTH PLAIN {plain}"))[0].code in (530, 538)
    assert await say(s, "MAIL FROM:<alice@example.test>") == [codes.AUTH_REQUIRED]
    assert (await s.command(b"STARTTLS")).next is Next.STARTTLS
    await s.tls_started("TLSv1.3 TLS_AES_256_GCM_SHA384")
    assert (await say(s, "MAIL FROM:<alice@example.test>"))[0].code == 503  # EHLO again first
    await say(s, "EHLO mua.test")
    assert "AUTH PLAIN LOGIN" in s.extensions()
    bad = base64.b64encode(b"\0alice@example.test\0wrong").decode()
    assert await say(s, f"AUTH PLAIN {bad}") == [codes.AUTH_FAILED]
    assert await say(s, f"AUTH PLAIN {plain}") == [codes.AUTH_OK]
    assert (await say(s, f"AUTH PLAIN {plain}"))[0].code == 503  # once per session
    assert await say(s, "MAIL FROM:<someone@example.test>") == [codes.SENDER_NOT_OWNED]
    assert await say(s, "MAIL FROM:<alice+x@example.test>") == [codes.SENDER_OK]


async def test_auth_login_exchange_and_cancel(world: tuple[Directory, Spool]) -> None:
    s = session(world, "submission", tls="TLSv1.3")
    await say(s, "EHLO mua.test")
    assert (await say(s, "AUTH LOGIN")) == [codes.auth_challenge(b"Username:")]
    assert (await say(s, base64.b64encode(b"alice@example.test").decode())) == [
        codes.auth_challenge(b"Password:")
    ]
    assert await say(s, base64.b64encode(b"pw-alice").decode()) == [codes.AUTH_OK]
    t = session(world, "submission", tls="TLSv1.3")
    await say(t, "EHLO mua.test")
    await say(t, "AUTH LOGIN")
    assert await say(t, "*") == [codes.AUTH_CANCELLED]
    assert await say(t, "AUTH CRAM-MD5") == [codes.AUTH_MECHANISM_UNKNOWN]


async def test_data_is_spooled_and_queued(world: tuple[Directory, Spool]) -> None:
    s = session(world)
    await say(s, "EHLO client.test")
    await say(s, "MAIL FROM:<a@remote.test> BODY=8BITMIME")
    await say(s, "RCPT TO:<alice@example.test> NOTIFY=NEVER")
    outcome = await s.command(b"DATA")
    assert outcome.replies == [codes.START_DATA] and outcome.next is Next.DATA
    await s.content(b"Subject: hi\r\n\r\n..stuffed\r\n.\r\nNOOP\r\n")
    assert s.content_done and s.content_rest() == b"NOOP\r\n"
    (reply,) = (await s.end_of_content()).replies
    assert reply.code == 250 and "queued as" in reply.text
    queue_id = reply.text.rsplit(" ", 1)[1]
    _, spool = world
    assert (spool.dir / queue_id).read_bytes() == b"Subject: hi\r\n\r\n.stuffed\r\n"
