"""Byte-level POP3 dialogues: the real line reader, session, store and directory.

UIDL values hold the time-based UIDVALIDITY, so tests read it from the store.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posthorn.pop3 import session as pop3_session
from posthorn.pop3.session import Limits
from posthorn.store.sqlite import SQLiteMailStore
from tests.integration import imap_driver
from tests.integration.imap_driver import PASSWORD, World, open_world
from tests.integration.pop3_driver import USER, Dialogue, POP3World

MSG = (
    b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\n"
    b"hello\r\n.dotted line\r\n..two dots\r\nlast\r\n"
)
BARE_LF = b"Subject: bare\n\nline one\n.dot\nline three\n"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async for w in open_world(tmp_path):
        yield w


@pytest.fixture
def pw(world: World) -> POP3World:
    return POP3World(world)


async def inbox(world: World, account: str = USER) -> tuple[int, int]:
    await world.store.ensure_account(account)
    box = await world.store.get_mailbox(account, "INBOX")
    return box.id, box.uidvalidity


async def put(world: World, *messages: bytes, account: str = USER) -> list[int]:
    box, _ = await inbox(world, account)
    return [(await world.store.append(account, box, m)).uid for m in messages]


async def authed(pw: POP3World, **kw: object) -> Dialogue:
    d = Dialogue(pw, **kw)  # type: ignore[arg-type]
    await d.login()
    return d


CAPA_PLAIN = (
    b"+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
    b"PIPELINING\r\nEXPIRE NEVER\r\n"
)


async def test_greeting_and_capa_before_login_on_loopback(pw: POP3World) -> None:
    d = Dialogue(pw)
    assert d.greeting() == b"+OK posthorn POP3 server ready\r\n"
    assert await d.cmd("CAPA") == CAPA_PLAIN + (
        b"STLS\r\nUSER\r\nSASL PLAIN LOGIN\r\nIMPLEMENTATION posthorn\r\n.\r\n"
    )


async def test_capa_after_tls_and_after_login(pw: POP3World) -> None:
    d = Dialogue(pw, loopback=False, tls="TLSv1.3")
    assert await d.cmd("capa") == CAPA_PLAIN + (
        b"USER\r\nSASL PLAIN LOGIN\r\nIMPLEMENTATION posthorn\r\n.\r\n"
    )
    await d.login()
    assert await d.cmd("CAPA") == CAPA_PLAIN + b"IMPLEMENTATION posthorn\r\n.\r\n"


async def test_passwords_refused_in_the_clear_off_loopback(pw: POP3World) -> None:
    d = Dialogue(pw, loopback=False)
    capa = await d.cmd("CAPA")
    assert b"STLS\r\n" in capa and b"USER" not in capa and b"SASL" not in capa
    refusal = b"-ERR [SYS/PERM] use STLS or port 995 to log in\r\n"
    assert await d.cmd(f"USER {USER}") == refusal
    assert await d.cmd(f"PASS {PASSWORD}") == refusal
    assert await d.cmd("AUTH PLAIN") == refusal
    assert await d.cmd("AUTH") == b"+OK\r\n.\r\n"  # no mechanism usable now
    # Loopback without the config switch is refused too.
    strict = Dialogue(pw, limits=Limits(plaintext_auth_on_loopback=False))
    assert await strict.cmd(f"USER {USER}") == refusal


async def test_stls_discards_pipelined_input_and_enables_login(pw: POP3World) -> None:
    d = Dialogue(pw, loopback=False)
    # "USER" pipelined after STLS must not be taken as said over TLS (CVE-2011-0411).
    out = await d.send(f"STLS\r\nUSER {USER}\r\n".encode())
    assert out == b"+OK begin TLS negotiation\r\n"
    assert d.session.conn.tls == "TLSv1.3" and d.session.user is None
    assert b"STLS" not in await d.cmd("CAPA")
    assert await d.cmd("STLS") == b"-ERR TLS is already on\r\n"
    await d.login()
    no_tls = Dialogue(pw, tls_available=False)
    assert await no_tls.cmd("STLS") == b"-ERR TLS not available\r\n"


async def test_scan_listings_retr_and_top(world: World, pw: POP3World) -> None:
    uids = await put(world, MSG, b"Subject: two\r\n\r\nbody\r\n")
    _, uidvalidity = await inbox(world)
    d = Dialogue(pw)
    assert await d.cmd(f"USER {USER}") == b"+OK send PASS\r\n"
    assert await d.cmd(f"PASS {PASSWORD}") == b"+OK maildrop locked and ready, 2 messages\r\n"
    size2 = len(b"Subject: two\r\n\r\nbody\r\n")
    assert await d.cmd("STAT") == f"+OK 2 {len(MSG) + size2}\r\n".encode()
    assert await d.cmd("LIST") == (f"+OK 2 messages\r\n1 {len(MSG)}\r\n2 {size2}\r\n.\r\n".encode())
    assert await d.cmd("LIST 2") == f"+OK 2 {size2}\r\n".encode()
    assert (
        await d.cmd("UIDL")
        == (
            f"+OK 2 messages\r\n1 {uidvalidity}.{uids[0]}\r\n2 {uidvalidity}.{uids[1]}\r\n.\r\n"
        ).encode()
    )
    assert await d.cmd("UIDL 1") == f"+OK 1 {uidvalidity}.{uids[0]}\r\n".encode()
    stuffed = MSG.replace(b"\r\n.", b"\r\n..")
    assert await d.cmd("RETR 1") == b"+OK message follows\r\n" + stuffed + b".\r\n"
    assert await d.cmd("TOP 1 0") == (
        b"+OK message follows\r\nFrom: Bob <bob@example.test>\r\nTo: alice@example.test\r\n"
        b"Subject: hi\r\n\r\n.\r\n"
    )
    assert await d.cmd("TOP 1 2") == (
        b"+OK message follows\r\nFrom: Bob <bob@example.test>\r\nTo: alice@example.test\r\n"
        b"Subject: hi\r\n\r\nhello\r\n..dotted line\r\n.\r\n"
    )
    assert await d.cmd("TOP 2 99") == b"+OK message follows\r\nSubject: two\r\n\r\nbody\r\n.\r\n"
    for bad in ("RETR 3", "LIST 0", "UIDL 9", "TOP 3 1"):
        assert await d.cmd(bad) == b"-ERR no such message\r\n", bad
    assert await d.cmd("RETR x") == b"-ERR invalid message number\r\n"
    assert await d.cmd("TOP 1 -1") == b"-ERR invalid line count\r\n"
    assert await d.cmd("NOOP") == b"+OK\r\n"


async def test_bare_lf_message_octets_are_exact(world: World, pw: POP3World) -> None:
    """IMAP APPEND (and import) can store bare LF; POP3 sends CRLF and counts that."""
    await put(world, BARE_LF, b"no final newline\r\n.")
    d = await authed(pw)
    crlf = BARE_LF.replace(b"\n", b"\r\n")
    second = b"no final newline\r\n."
    assert await d.cmd("LIST") == (
        f"+OK 2 messages\r\n1 {len(crlf)}\r\n2 {len(second)}\r\n.\r\n".encode()
    )
    assert await d.cmd("STAT") == f"+OK 2 {len(crlf) + len(second)}\r\n".encode()
    out = await d.cmd("RETR 1")
    assert out == b"+OK message follows\r\n" + crlf.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    # The octets before stuffing, as a client counts them after undoing it, equal LIST's.
    body = out.split(b"\r\n", 1)[1][: -len(b".\r\n")].replace(b"\r\n..", b"\r\n.")
    assert len(body) == len(crlf)
    # A message not ending in CRLF gets one before the terminating dot.
    assert await d.cmd("RETR 2") == (b"+OK message follows\r\nno final newline\r\n..\r\n.\r\n")
    assert len(pw.sizes) == 2  # counted once per process


async def test_big_message_streams_in_chunks(world: World, pw: POP3World) -> None:
    line = b"." + b"x" * 98 + b"\n"  # bare LF and a leading dot on every line
    big = b"Subject: big\n\n" + line * (3 * pop3_session.CHUNK // len(line) + 7)
    await put(world, big)
    d = await authed(pw)
    normalized = big.replace(b"\n", b"\r\n")
    assert await d.cmd("LIST 1") == f"+OK 1 {len(normalized)}\r\n".encode()
    d.reader.feed(b"RETR 1\r\n")
    await d.session.line(d.reader.next_line(255) or b"")
    assert len(d.out) >= 4  # emitted chunk by chunk, not as one piece
    out, d.out = b"".join(d.out), []
    assert out == (b"+OK message follows\r\n" + normalized.replace(b"\r\n.", b"\r\n..") + b".\r\n")


async def test_dele_rset_and_quit_update(world: World, pw: POP3World) -> None:
    box, _ = await inbox(world)
    await put(world, MSG, MSG, MSG)
    d = await authed(pw)
    assert await d.cmd("DELE 1") == b"+OK message 1 deleted\r\n"
    assert await d.cmd("DELE 1") == b"-ERR message 1 already deleted\r\n"
    assert await d.cmd("RETR 1") == b"-ERR no such message\r\n"
    assert (await d.cmd("STAT")).startswith(b"+OK 2 ")
    assert await d.cmd("LIST") == (
        f"+OK 2 messages\r\n2 {len(MSG)}\r\n3 {len(MSG)}\r\n.\r\n".encode()
    )
    assert await d.cmd("RSET") == b"+OK maildrop has 3 messages\r\n"
    assert (await d.cmd("STAT")).startswith(b"+OK 3 ")
    assert await d.cmd("DELE 2") == b"+OK message 2 deleted\r\n"
    assert await d.cmd("DELE 3") == b"+OK message 3 deleted\r\n"
    assert len(await world.store.fetch(USER, box)) == 3  # only marked so far
    assert await d.cmd("QUIT") == b"+OK posthorn signing off (1 messages left)\r\n"
    assert d.closed
    assert [m.uid for m in await world.store.fetch(USER, box)] == [1]
    assert USER not in pw.locks


async def test_dropped_connection_deletes_nothing_and_frees_the_lock(
    world: World, pw: POP3World
) -> None:
    box, _ = await inbox(world)
    await put(world, MSG, MSG)
    d = await authed(pw)
    assert await d.cmd("DELE 1") == b"+OK message 1 deleted\r\n"
    await d.drop()
    assert len(await world.store.fetch(USER, box)) == 2
    again = await authed(pw)
    assert (await again.cmd("STAT")).startswith(b"+OK 2 ")


async def test_one_session_per_account(world: World, pw: POP3World) -> None:
    await put(world, MSG)
    first = await authed(pw)
    second = Dialogue(pw)
    await second.cmd(f"USER {USER}")
    assert await second.cmd(f"PASS {PASSWORD}") == (
        b"-ERR [IN-USE] maildrop already in use by another session\r\n"
    )
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    assert (await second.cmd(f"AUTH PLAIN {token}")).startswith(b"-ERR [IN-USE]")
    # Another account is not affected.
    bob = Dialogue(pw)
    await bob.cmd("USER bob@example.test")
    assert (await bob.cmd("PASS pw-bob")).startswith(b"+OK")
    # QUIT releases it; so does a bad-command close (errors end the session the same way).
    await first.cmd("QUIT")
    third = await authed(pw)
    for _ in range(10):
        await third.cmd("FROB")
    assert third.closed
    await authed(pw)


async def test_failed_logins_are_delayed_then_locked(pw: POP3World) -> None:
    d = Dialogue(pw)
    answers = []
    for _ in range(6):
        await d.cmd(f"USER {USER}")
        answers.append(await d.cmd("PASS wrong"))
    assert answers[0] == b"-ERR [AUTH] invalid credentials\r\n"
    assert d.delays and max(d.delays) > 0
    assert answers[-1] == b"-ERR [SYS/TEMP] too many failed logins; try later\r\n"
    # Locked: even the right password is not checked from this client.
    await d.cmd(f"USER {USER}")
    assert await d.cmd(f"PASS {PASSWORD}") == answers[-1]
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    assert await d.cmd(f"AUTH PLAIN {token}") == answers[-1]
    assert d.session.bad_commands == 0  # failed logins are the throttle's, not bad commands


async def test_auth_plain_login_cancel_and_listing(pw: POP3World) -> None:
    token = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    d = Dialogue(pw)
    assert await d.cmd("AUTH") == b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n"
    assert await d.cmd("AUTH PLAIN") == b"+ \r\n"
    assert await d.cmd("*") == b"-ERR authentication cancelled\r\n"
    assert await d.cmd("AUTH CRAM-MD5") == b"-ERR unsupported mechanism\r\n"
    assert await d.cmd("AUTH PLAIN !!!") == (
        b"-ERR authentication failed: SASL response is not valid base64\r\n"
    )
    assert (await d.cmd(f"AUTH PLAIN {token}")).startswith(b"+OK maildrop locked")
    await d.cmd("QUIT")
    d2 = Dialogue(pw)
    assert await d2.cmd("AUTH PLAIN") == b"+ \r\n"
    assert (await d2.cmd(token)).startswith(b"+OK maildrop locked")
    await d2.cmd("QUIT")
    d3 = Dialogue(pw)
    assert await d3.cmd("AUTH LOGIN") == b"+ " + base64.b64encode(b"Username:") + b"\r\n"
    assert await d3.cmd(base64.b64encode(USER.encode())) == (
        b"+ " + base64.b64encode(b"Password:") + b"\r\n"
    )
    assert (await d3.cmd(base64.b64encode(PASSWORD.encode()))).startswith(b"+OK")
    await d3.cmd("QUIT")
    d4 = Dialogue(pw)
    wrong = base64.b64encode(f"\0{USER}\0nope".encode()).decode()
    assert await d4.cmd(f"AUTH PLAIN {wrong}") == b"-ERR [AUTH] invalid credentials\r\n"
    proxy = base64.b64encode(f"bob@example.test\0{USER}\0{PASSWORD}".encode()).decode()
    assert await d4.cmd(f"AUTH PLAIN {proxy}") == b"-ERR [AUTH] proxy login not allowed\r\n"


async def test_commands_in_the_wrong_state_and_bad_input(pw: POP3World) -> None:
    d = Dialogue(pw, limits=Limits(plaintext_auth_on_loopback=True, max_bad_commands=6))
    assert await d.cmd("STAT") == b"-ERR STAT not allowed before login\r\n"
    assert await d.cmd("PASS x") == b"-ERR send USER first\r\n"
    assert await d.cmd("APOP alice@example.test 0123") == b"-ERR unknown command\r\n"
    assert await d.cmd(b"NOOP\x00") == b"-ERR control character in command\r\n"
    assert await d.cmd(b"USER " + b"a" * 300) == b"-ERR command line too long\r\n"
    assert await d.cmd("CAPA") != b""  # good commands do not reset the count
    assert d.session.bad_commands == 5
    assert await d.cmd("FROB") == b"-ERR too many bad commands; closing\r\n"
    assert d.closed
    e = await authed(pw)
    assert await e.cmd("USER x") == b"-ERR USER not allowed after login\r\n"
    assert await e.cmd("STAT 1") == b"-ERR STAT takes no arguments\r\n"


async def test_pipelined_commands_are_answered_in_order(world: World, pw: POP3World) -> None:
    await put(world, MSG)
    d = Dialogue(pw)
    out = await d.send(f"USER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\nUIDL 1\r\nQUIT\r\n".encode())
    lines = out.split(b"\r\n")
    assert lines[0] == b"+OK send PASS" and lines[1].startswith(b"+OK maildrop")
    assert lines[2] == f"+OK 1 {len(MSG)}".encode()
    assert lines[3].startswith(b"+OK 1 ") and lines[4].startswith(b"+OK posthorn signing off")


async def test_pass_keeps_spaces_in_the_password(world: World, tmp_path: Path) -> None:
    await world.directory.add_account("spaced@example.test", "two words here")
    d = Dialogue(POP3World(world))
    await d.cmd("USER spaced@example.test")
    assert (await d.cmd("PASS two words here")).startswith(b"+OK maildrop locked")


async def test_pop3_deletion_reaches_an_imap_session_as_expunge(
    world: World, pw: POP3World
) -> None:
    await put(world, MSG, MSG)
    imap = imap_driver.Dialogue(world)
    await imap.login()
    assert b"* 2 EXISTS" in await imap.cmd("s SELECT INBOX")
    d = await authed(pw)
    await d.cmd("DELE 1")
    assert await imap.cmd("n NOOP") == b"n OK NOOP completed\r\n"  # nothing before QUIT
    await d.cmd("QUIT")
    assert await imap.cmd("n NOOP") == b"* 1 EXPUNGE\r\nn OK NOOP completed\r\n"


async def test_imap_expunge_during_a_pop3_session(world: World, pw: POP3World) -> None:
    await put(world, MSG, b"Subject: keep\r\n\r\nkeep\r\n")
    d = await authed(pw)
    assert (await d.cmd("LIST 1")).startswith(b"+OK 1 ")
    imap = imap_driver.Dialogue(world)
    await imap.login()
    await imap.cmd("s SELECT INBOX")
    await imap.cmd("f STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert b"* 1 EXPUNGE" in await imap.cmd("e EXPUNGE")
    # The POP3 maildrop is the snapshot: still listed, but RETR and TOP fail cleanly.
    assert (await d.cmd("STAT")).startswith(b"+OK 2 ")
    assert await d.cmd("RETR 1") == b"-ERR message was deleted by another session\r\n"
    assert await d.cmd("TOP 1 0") == b"-ERR message was deleted by another session\r\n"
    assert (await d.cmd("RETR 2")).endswith(b"keep\r\n.\r\n")
    await d.cmd("DELE 1")  # deleting what is already gone is harmless
    assert (await d.cmd("QUIT")).startswith(b"+OK")
    again = await authed(pw)  # the next login simply does not have it
    keep = len(b"Subject: keep\r\n\r\nkeep\r\n")
    assert await again.cmd("LIST") == f"+OK 1 messages\r\n1 {keep}\r\n.\r\n".encode()


async def test_uidl_is_stable_across_sessions_and_restarts(
    world: World, pw: POP3World, tmp_path: Path
) -> None:
    await put(world, MSG, MSG, MSG)
    d = await authed(pw)
    before = await d.cmd("UIDL")
    await d.cmd("DELE 2")
    await d.cmd("QUIT")
    lines = before.split(b"\r\n")[1:4]
    # A fresh store on the same data (what a restart does) gives the same ids.
    store = SQLiteMailStore(tmp_path)
    await store.open()
    try:
        restarted = POP3World(World(world.directory, store, world.throttle))
        e = await authed(restarted)
        after = await e.cmd("UIDL")
        assert after.split(b"\r\n")[1:3] == [lines[0], b"2 " + lines[2].split(b" ")[1]]
        await e.cmd("QUIT")
    finally:
        await store.close()
