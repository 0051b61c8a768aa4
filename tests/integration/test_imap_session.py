"""Byte-level IMAP dialogues per command: the real reader, session, store and directory.

UIDVALIDITY values are time-based, so responses are compared after replacing them with ``V``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posthorn.imap.session import Limits
from tests.integration.imap_driver import PASSWORD, Dialogue, World, open_world

MSG = (
    b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: hi\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\nhello\r\n"
)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async for w in open_world(tmp_path):
        yield w


def v(data: bytes) -> bytes:
    return re.sub(rb"(UIDVALIDITY|COPYUID|APPENDUID) \d+", rb"\1 V", data)


async def authed(world: World, **kw: object) -> Dialogue:
    d = Dialogue(world, **kw)  # type: ignore[arg-type]
    await d.login()
    return d


async def append(d: Dialogue, box: str = "INBOX", msg: bytes = MSG, flags: str = "") -> bytes:
    head = f"A APPEND {box} {flags + ' ' if flags else ''}{{{len(msg)}+}}\r\n".encode()
    return await d.send(head + msg + b"\r\n")


async def test_greeting_and_capability_before_login(world: World) -> None:
    d = Dialogue(world)
    assert d.greeting() == (
        b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ID ENABLE IDLE STARTTLS "
        b"AUTH=PLAIN AUTH=LOGIN] posthorn ready\r\n"
    )
    assert await d.cmd("a CAPABILITY") == (
        b"* CAPABILITY IMAP4rev1 IMAP4rev2 SASL-IR LITERAL+ ID ENABLE IDLE STARTTLS "
        b"AUTH=PLAIN AUTH=LOGIN\r\na OK CAPABILITY completed\r\n"
    )


async def test_login_is_disabled_in_the_clear_off_loopback(world: World) -> None:
    d = Dialogue(world, loopback=False)
    assert b"LOGINDISABLED" in d.greeting() and b"AUTH=" not in d.greeting()
    assert await d.cmd(f"a LOGIN alice@example.test {PASSWORD}") == (
        b"a NO [PRIVACYREQUIRED] use STARTTLS or port 993 to log in\r\n"
    )
    assert await d.cmd("b AUTHENTICATE PLAIN") == (
        b"b NO [PRIVACYREQUIRED] use STARTTLS or port 993 to log in\r\n"
    )
    tls = Dialogue(world, loopback=False, tls="TLSv1.3")
    assert (await tls.cmd(f"a LOGIN alice@example.test {PASSWORD}")).startswith(b"a OK [CAP")


async def test_failed_logins_are_delayed_then_locked(world: World) -> None:
    d = Dialogue(world)
    answers = [await d.cmd(f"a{i} LOGIN alice@example.test wrong") for i in range(12)]
    assert answers[0] == b"a0 NO [AUTHENTICATIONFAILED] invalid credentials\r\n"
    assert d.delays and max(d.delays) > 0
    assert answers[-1] == b"a11 NO [UNAVAILABLE] too many failed logins; try later\r\n"
    # Locked: even the right password is not checked from this client.
    assert (await d.cmd(f"z LOGIN alice@example.test {PASSWORD}")).startswith(b"z NO [UNAV")


async def test_authenticate_plain_with_sasl_ir_and_with_a_continuation(world: World) -> None:
    token = base64.b64encode(f"\0alice@example.test\0{PASSWORD}".encode()).decode()
    d = Dialogue(world)
    assert (await d.cmd(f"a AUTHENTICATE PLAIN {token}")).startswith(b"a OK [CAPABILITY")
    d2 = Dialogue(world)
    assert await d2.cmd("a AUTHENTICATE PLAIN") == b"+ \r\n"
    assert (await d2.cmd(token)).startswith(b"a OK [CAPABILITY")
    d3 = Dialogue(world)
    assert await d3.cmd("a AUTHENTICATE PLAIN") == b"+ \r\n"
    assert await d3.cmd("*") == b"a BAD AUTHENTICATE cancelled\r\n"
    assert await d3.cmd("b NOOP") == b"b OK NOOP completed\r\n"


async def test_commands_in_the_wrong_state(world: World) -> None:
    d = Dialogue(world)
    assert await d.cmd("a SELECT INBOX") == b"a BAD SELECT not allowed before login\r\n"
    assert await d.cmd("b FETCH 1 FLAGS") == b"b BAD FETCH not allowed before login\r\n"
    await d.login()
    assert await d.cmd("c FETCH 1 FLAGS") == (
        b"c BAD FETCH not allowed without a selected mailbox\r\n"
    )
    assert await d.cmd("d LOGIN x y") == b"d BAD LOGIN not allowed without a selected mailbox\r\n"
    assert await d.cmd("e FROB") == b"e BAD unknown command FROB\r\n"


async def test_select_rev1_and_examine(world: World) -> None:
    d = await authed(world)
    await append(d, flags="(\\Seen $Work)")
    await append(d)
    assert v(await d.cmd("a SELECT INBOX")) == (
        b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Work)\r\n"
        b"* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Work \\*)]"
        b" flags allowed\r\n"
        b"* 2 EXISTS\r\n* 0 RECENT\r\n* OK [UNSEEN 2] first unseen\r\n"
        b"* OK [UIDVALIDITY V] UIDs valid\r\n* OK [UIDNEXT 3] predicted next UID\r\n"
        b"* OK [HIGHESTMODSEQ 3] highest\r\na OK [READ-WRITE] SELECT completed\r\n"
    )
    out = await d.cmd("b EXAMINE INBOX")
    assert out.startswith(b"* OK [CLOSED] previous mailbox closed\r\n")
    assert b"* OK [PERMANENTFLAGS ()]" in out and out.endswith(
        b"b OK [READ-ONLY] EXAMINE completed\r\n"
    )
    assert await d.cmd("c STORE 1 +FLAGS (\\Flagged)") == (
        b"c NO [READ-ONLY] mailbox is read-only\r\n"
    )
    # EXAMINE never sets \Seen (RFC 9051 §6.3.3).
    assert b"FLAGS ()" in await d.cmd("d FETCH 2 (BODY[] FLAGS)")


async def test_select_rev2_after_enable(world: World) -> None:
    d = await authed(world)
    assert await d.cmd("a ENABLE IMAP4rev2 CONDSTORE X-UNKNOWN") == (
        b"* ENABLED IMAP4rev2 CONDSTORE\r\na OK ENABLE completed\r\n"
    )
    out = v(await d.cmd("b SELECT inbox"))
    assert b"RECENT" not in out and b"UNSEEN" not in out
    assert b'* LIST () "/" INBOX\r\n' in out
    assert (
        await d.cmd("c ENABLE QRESYNC") == b"c BAD ENABLE not allowed with a mailbox selected\r\n"
    )


async def test_bad_mailbox_names_never_leave_the_account(world: World) -> None:
    d = await authed(world)
    for name in ('"../bob"', '"a//b"', '"/x"', '"a/./b"', '"a*b"', '"50%"'):
        out = await d.cmd(f"a CREATE {name}")
        assert out.startswith(b"a BAD") or out.startswith(b"a NO"), (name, out)
    assert await d.cmd('b SELECT "../bob@example.test/INBOX"') == (
        b"b BAD mailbox name has an empty, '.' or '..' level\r\n"
    )
    bob = await authed(world, **{})
    bob_d = Dialogue(world)
    await bob_d.login("bob@example.test", "pw-bob")
    await bob_d.cmd("a CREATE Private")
    assert await d.cmd("c SELECT Private") == b"c NO [NONEXISTENT] no such mailbox\r\n"
    assert await d.cmd("d STATUS Private (MESSAGES)") == b"d NO [NONEXISTENT] no such mailbox\r\n"
    assert b"Private" not in await d.cmd('e LIST "" *')
    await bob.cmd("z LOGOUT")


async def test_create_rename_delete_subscribe_lsub(world: World) -> None:
    d = await authed(world)
    assert await d.cmd("a CREATE Projects/2026/") == b"a OK CREATE completed\r\n"
    assert await d.cmd("b CREATE Projects") == b"b NO [ALREADYEXISTS] mailbox exists\r\n"
    assert await d.cmd('c LIST "" Projects*') == (
        b'* LIST (\\HasChildren) "/" Projects\r\n'
        b'* LIST (\\HasNoChildren) "/" Projects/2026\r\n'
        b"c OK LIST completed\r\n"
    )
    assert (await d.cmd('d LIST "" %')).count(b"* LIST") == 7
    assert await d.cmd("e RENAME Projects Work") == b"e OK RENAME completed\r\n"
    assert await d.cmd('f LIST "Work/" %') == (
        b'* LIST (\\HasNoChildren) "/" Work/2026\r\nf OK LIST completed\r\n'
    )
    assert await d.cmd("g SUBSCRIBE Work/2026") == b"g OK SUBSCRIBE completed\r\n"
    assert await d.cmd('h LSUB "" Work*') == b'* LSUB () "/" Work/2026\r\nh OK LSUB completed\r\n'
    assert await d.cmd('i LIST (SUBSCRIBED) "" W*') == (
        b'* LIST (\\HasNoChildren \\Subscribed) "/" Work/2026\r\ni OK LIST completed\r\n'
    )
    assert await d.cmd("j DELETE Work/2026") == b"j OK DELETE completed\r\n"
    assert await d.cmd("k DELETE INBOX") == b"k NO [CANNOT] INBOX cannot be deleted\r\n"
    assert await d.cmd("l DELETE Nope") == b"l NO [NONEXISTENT] no such mailbox\r\n"
    assert await d.cmd('m LIST "" ""') == b'* LIST (\\Noselect) "/" ""\r\nm OK LIST completed\r\n'


async def test_rename_inbox_moves_its_messages(world: World) -> None:
    d = await authed(world)
    await append(d)
    assert await d.cmd("a RENAME INBOX Old") == b"a OK RENAME completed\r\n"
    assert await d.cmd("b STATUS INBOX (MESSAGES)") == (
        b"* STATUS INBOX (MESSAGES 0)\r\nb OK STATUS completed\r\n"
    )
    assert await d.cmd("c STATUS Old (MESSAGES)") == (
        b"* STATUS Old (MESSAGES 1)\r\nc OK STATUS completed\r\n"
    )


async def test_list_extended_status_and_special_use(world: World) -> None:
    d = await authed(world)
    await append(d)
    assert await d.cmd('a LIST "" INBOX RETURN (STATUS (MESSAGES UNSEEN SIZE))') == (
        b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
        b"* STATUS INBOX (MESSAGES 1 UNSEEN 1 SIZE %d)\r\na OK LIST completed\r\n" % len(MSG)
    )
    out = await d.cmd('b LIST (SPECIAL-USE) "" *')
    assert out.count(b"* LIST") == 5 and b"INBOX" not in out
    assert await d.cmd("c CREATE Stuff (USE (\\Flagged))") == b"c OK CREATE completed\r\n"
    assert b'\\Flagged) "/" Stuff' in await d.cmd('d LIST "" Stuff')


async def test_utf7_and_utf8_mailbox_names(world: World) -> None:
    d = await authed(world)
    assert await d.cmd("a CREATE &ZeVnLIqe-") == b"a OK CREATE completed\r\n"
    assert b'"/" &ZeVnLIqe-\r\n' in await d.cmd('b LIST "" &ZeVnLIqe-')
    assert (
        await d.cmd("c ENABLE UTF8=ACCEPT") == b"* ENABLED UTF8=ACCEPT\r\nc OK ENABLE completed\r\n"
    )
    assert '"/" "日本語"\r\n'.encode() in await d.cmd('d LIST "" *')


async def test_append_variants(world: World) -> None:
    d = await authed(world)
    out = await d.send(
        b'a APPEND INBOX (\\Flagged) " 1-Feb-2020 10:00:00 +0100" {%d}\r\n' % len(MSG)
    )
    assert out == b"+ OK\r\n"
    assert v(await d.send(MSG + b"\r\n")) == b"a OK [APPENDUID V 1] APPEND completed\r\n"
    assert (
        v(
            await d.send(
                b"b APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(MSG), MSG, len(MSG), MSG)
            )
        )
        == b"b OK [APPENDUID V 2:3] APPEND completed\r\n"
    )
    assert await d.cmd("c APPEND Nope {1+}\r\nx") == b"c NO [TRYCREATE] no such mailbox\r\n"
    assert await d.cmd("d APPEND INBOX {20000}") == (b"d NO [TOOBIG] literal too large\r\n")
    assert await d.cmd("e APPEND INBOX (\\Seen) notaliteral") == (
        b"e BAD APPEND: the message must be a literal\r\n"
    )
    await d.cmd("f SELECT INBOX")
    assert await d.cmd("g FETCH 1 (FLAGS INTERNALDATE)") == (
        b'* 1 FETCH (FLAGS (\\Flagged) INTERNALDATE " 1-Feb-2020 10:00:00 +0100")\r\n'
        b"g OK FETCH completed\r\n"
    )


async def test_append_over_quota(world: World) -> None:
    await world.directory.run(lambda db: db.set_quota("alice@example.test", 200))
    d = await authed(world)
    assert v(await append(d)) == b"A OK [APPENDUID V 1] APPEND completed\r\n"
    assert await append(d) == b"A NO [OVERQUOTA] quota exceeded\r\n"
    assert await d.cmd("q GETQUOTAROOT INBOX") == (
        b'* QUOTAROOT INBOX ""\r\n* QUOTA "" (STORAGE 1 0)\r\nq OK GETQUOTAROOT completed\r\n'
    )


async def test_fetch_store_and_flags_responses(world: World) -> None:
    d = await authed(world)
    for _ in range(3):
        await append(d)
    await d.cmd("s SELECT INBOX")
    assert await d.cmd("a FETCH 2 (UID RFC822.SIZE)") == (
        b"* 2 FETCH (UID 2 RFC822.SIZE %d)\r\na OK FETCH completed\r\n" % len(MSG)
    )
    assert await d.cmd("b FETCH 1:2 BODY.PEEK[TEXT]") == (
        b"* 1 FETCH (BODY[TEXT] {7}\r\nhello\r\n)\r\n* 2 FETCH (BODY[TEXT] {7}\r\nhello\r\n)\r\n"
        b"b OK FETCH completed\r\n"
    )
    assert await d.cmd("c FETCH 3 BODY[]<0.4>") == (
        b"* 3 FETCH (BODY[]<0> {4}\r\nFrom)\r\n* 3 FETCH (FLAGS (\\Seen))\r\n"
        b"c OK FETCH completed\r\n"
    )
    assert await d.cmd("d STORE 1:2 +FLAGS (\\Deleted $Junk)") == (
        b"* 1 FETCH (FLAGS ($Junk \\Deleted))\r\n* 2 FETCH (FLAGS ($Junk \\Deleted))\r\n"
        b"d OK STORE completed\r\n"
    )
    assert await d.cmd("e UID STORE 2 -FLAGS.SILENT ($Junk)") == b"e OK UID STORE completed\r\n"
    assert await d.cmd("f STORE 9 FLAGS ()") == b"f BAD message number out of range\r\n"
    assert await d.cmd("g STORE 1 FLAGS (\\Bogus)") == b"g BAD unknown system flag \\Bogus\r\n"
    assert (await d.cmd("h FETCH 1 (BOGUS)")).startswith(b"h BAD")
    assert await d.cmd("i UID FETCH 99 FLAGS") == b"i OK UID FETCH completed\r\n"


async def test_expunge_close_unselect_and_uid_expunge(world: World) -> None:
    d = await authed(world)
    for _ in range(4):
        await append(d)
    await d.cmd("s SELECT INBOX")
    await d.cmd("a STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    assert await d.cmd("b UID EXPUNGE 2:3") == (
        b"* 3 EXPUNGE\r\n* 2 EXPUNGE\r\nb OK UID EXPUNGE completed\r\n"
    )
    assert await d.cmd("c UNSELECT") == b"c OK UNSELECT completed\r\n"
    await d.cmd("s SELECT INBOX")
    assert await d.cmd("d CLOSE") == b"d OK CLOSE completed\r\n"  # expunges silently
    assert await d.cmd("e STATUS INBOX (MESSAGES DELETED)") == (
        b"* STATUS INBOX (MESSAGES 1 DELETED 0)\r\ne OK STATUS completed\r\n"
    )


async def test_copy_move_with_uidplus(world: World) -> None:
    d = await authed(world)
    for _ in range(3):
        await append(d)
    await d.cmd("s SELECT INBOX")
    assert v(await d.cmd("a COPY 1:2 Trash")) == b"a OK [COPYUID V 1:2 1:2] COPY completed\r\n"
    assert await d.cmd("b COPY 1 Nope") == b"b NO [TRYCREATE] no such mailbox\r\n"
    assert v(await d.cmd("c UID MOVE 2:3 Archive")) == (
        b"* OK [COPYUID V 2:3 1:2] moved\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n"
        b"c OK UID MOVE completed\r\n"
    )


async def test_search_sort_thread_and_esearch(world: World) -> None:
    d = await authed(world)
    await append(d, msg=MSG.replace(b"Subject: hi", b"Subject: Re: zeta"))
    await append(d, msg=MSG.replace(b"Subject: hi", b"Subject: alpha"), flags="(\\Seen)")
    await d.cmd("s SELECT INBOX")
    assert await d.cmd("a SEARCH SUBJECT zeta") == b"* SEARCH 1\r\na OK SEARCH completed\r\n"
    assert await d.cmd("b UID SEARCH SEEN") == b"* SEARCH 2\r\nb OK UID SEARCH completed\r\n"
    assert await d.cmd("c SEARCH RETURN (COUNT MAX) ALL") == (
        b'* ESEARCH (TAG "c") MAX 2 COUNT 2\r\nc OK SEARCH completed\r\n'
    )
    assert await d.cmd("d SORT (SUBJECT) UTF-8 ALL") == b"* SORT 2 1\r\nd OK SORT completed\r\n"
    assert await d.cmd("e SEARCH CHARSET KOI8-R ALL") == (
        b"e NO [BADCHARSET (UTF-8 US-ASCII)] charset 'KOI8-R' is not supported\r\n"
    )
    assert (await d.cmd("f SEARCH FROBNICATE")).startswith(b"f BAD")
    assert await d.cmd("g SEARCH RETURN (SAVE) SEEN") == b"g OK SEARCH completed\r\n"
    assert await d.cmd("h FETCH $ (UID)") == b"* 2 FETCH (UID 2)\r\nh OK FETCH completed\r\n"


async def test_condstore_and_qresync(world: World) -> None:
    d = await authed(world)
    for _ in range(3):
        await append(d)
    assert await d.cmd("e ENABLE QRESYNC") == b"* ENABLED QRESYNC\r\ne OK ENABLE completed\r\n"
    out = v(await d.cmd("s SELECT INBOX"))
    m = re.search(rb"HIGHESTMODSEQ (\d+)", out)
    assert m is not None
    modseq = int(m.group(1))
    assert await d.cmd(f"a STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Flagged)") == (
        b"* 1 FETCH (FLAGS (\\Flagged) MODSEQ (%d))\r\na OK STORE completed\r\n" % (modseq + 1)
    )
    assert await d.cmd(f"b STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Seen)") == (
        b"b OK [MODIFIED 1] STORE completed\r\n"
    )
    assert await d.cmd(f"c UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq})") == (
        b"* 1 FETCH (UID 1 MODSEQ (%d) FLAGS (\\Flagged))\r\nc OK UID FETCH completed\r\n"
        % (modseq + 1)
    )
    await d.cmd("x STORE 2 +FLAGS.SILENT (\\Deleted)")
    out = await d.cmd("y EXPUNGE")
    assert out.startswith(b"* VANISHED 2\r\ny OK [HIGHESTMODSEQ ")
    uidvalidity = re.search(rb"UIDVALIDITY (\d+)", await d.cmd("z EXAMINE INBOX"))
    assert uidvalidity is not None
    out = await d.cmd(f"q SELECT INBOX (QRESYNC ({uidvalidity.group(1).decode()} {modseq} 1:3))")
    assert b"* VANISHED (EARLIER) 2\r\n" in out
    assert b"* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ (%d))\r\n" % (modseq + 1) in out


async def test_two_sessions_updates_and_the_expunge_rule(world: World) -> None:
    a = await authed(world)
    b = await authed(world)
    for _ in range(3):
        await append(a)
    await a.cmd("s SELECT INBOX")
    await b.cmd("s SELECT INBOX")
    await a.cmd("x STORE 1 +FLAGS.SILENT (\\Deleted)")
    await a.cmd("y EXPUNGE")
    await a.cmd("z STORE 2 +FLAGS.SILENT (\\Flagged)")
    # FETCH may carry flag updates but never EXPUNGE (RFC 9051 §7.5.1).
    assert await b.cmd("f FETCH 3 (UID)") == (
        b"* 3 FETCH (UID 3)\r\n* 3 FETCH (FLAGS (\\Flagged))\r\nf OK FETCH completed\r\n"
    )
    assert await b.cmd("n NOOP") == b"* 1 EXPUNGE\r\nn OK NOOP completed\r\n"
    await append(a)
    assert await b.cmd("m NOOP") == b"* 3 EXISTS\r\n* 1 RECENT\r\nm OK NOOP completed\r\n"


async def test_idle_reports_a_new_message(world: World) -> None:
    a = await authed(world)
    b = await authed(world)
    await b.cmd("s SELECT INBOX")
    assert await b.cmd("i IDLE") == b"+ idling\r\n"
    await append(a)
    await b.session.idle_wait()
    assert await b.send(b"") == b"* 1 EXISTS\r\n* 1 RECENT\r\n"
    assert await b.cmd("DONE") == b"i OK IDLE terminated\r\n"


async def test_namespace_id_and_quota(world: World) -> None:
    d = await authed(world)
    assert await d.cmd("a NAMESPACE") == (
        b'* NAMESPACE (("" "/")) NIL NIL\r\na OK NAMESPACE completed\r\n'
    )
    assert await d.cmd('b ID ("name" "test")') == (
        b'* ID ("name" "posthorn" "vendor" "posthorn")\r\nb OK ID completed\r\n'
    )
    assert await d.cmd('c GETQUOTA ""') == b'* QUOTA "" ()\r\nc OK GETQUOTA completed\r\n'
    assert await d.cmd('d SETQUOTA "" (STORAGE 1)') == (
        b"d NO [NOPERM] quotas are set by the administrator\r\n"
    )


async def test_literal_bound_before_login_and_logout(world: World) -> None:
    d = Dialogue(world, limits=Limits(preauth_literal=100, plaintext_auth_on_loopback=True))
    assert await d.cmd("a LOGIN {101}") == (b"a NO [TOOBIG] literal too large\r\n")
    assert (await d.cmd("b LOGIN {200+}")).startswith(b"b BAD [TOOBIG]")
    assert d.closed
    d2 = Dialogue(world)
    assert await d2.cmd("z LOGOUT") == b"* BYE posthorn logging out\r\nz OK LOGOUT completed\r\n"
    assert d2.closed


async def test_authenticate_login_unsubscribe_check_and_ordered_subject(world: World) -> None:
    d = Dialogue(world)
    assert await d.cmd("a AUTHENTICATE LOGIN") == b"+ VXNlcm5hbWU6\r\n"  # "Username:"
    assert await d.cmd(base64.b64encode(b"alice@example.test").decode()) == b"+ UGFzc3dvcmQ6\r\n"
    assert (await d.cmd(base64.b64encode(PASSWORD.encode()).decode())).startswith(b"a OK [CAP")
    assert await d.cmd("b UNSUBSCRIBE Junk") == b"b OK UNSUBSCRIBE completed\r\n"
    assert b"Junk" not in await d.cmd('c LSUB "" *')
    await append(d, msg=MSG.replace(b"Subject: hi", b"Subject: Re: topic"))
    await append(d, msg=MSG.replace(b"Subject: hi", b"Subject: topic"))
    await append(d, msg=MSG.replace(b"Subject: hi", b"Subject: other"))
    await d.cmd("s SELECT INBOX")
    assert await d.cmd("e CHECK") == b"e OK CHECK completed\r\n"
    assert await d.cmd("f THREAD ORDEREDSUBJECT UTF-8 ALL") == (
        b"* THREAD (1 2)(3)\r\nf OK THREAD completed\r\n"
    )


async def test_append_utf8_literal8(world: World) -> None:
    d = await authed(world)
    await d.cmd("e ENABLE UTF8=ACCEPT")
    body = "Subject: grüße\r\n\r\nhallo\r\n".encode()
    assert v(await d.send(b"a APPEND INBOX UTF8 (~{%d+}\r\n%s)\r\n" % (len(body), body))) == (
        b"a OK [APPENDUID V 1] APPEND completed\r\n"
    )
    await d.cmd("s SELECT INBOX")
    assert await d.cmd("b FETCH 1 BODY.PEEK[HEADER]") == (
        b"* 1 FETCH (BODY[HEADER] {20}\r\n" + "Subject: grüße\r\n\r\n".encode() + b")\r\n"
        b"b OK FETCH completed\r\n"
    )
