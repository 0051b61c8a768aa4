"""The outbound SMTP client against real servers on 127.0.0.1: a scripted peer (answers chosen
by the test, reads recorded), aiosmtpd (an independent implementation, with STARTTLS and AUTH),
and posthorn's own SMTP server in-process (PIPELINING, DSN, CHUNKING/BINARYMIME, SMTPUTF8)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posthorn.directory import Directory, DirectoryDB, Hasher, HashParams
from posthorn.net.tls import ensure_self_signed, server_context
from posthorn.policy.limits import AuthThrottle, ConnectionLimiter
from posthorn.queue.envelope import Notify
from posthorn.queue.records import QueuedMessage
from posthorn.queue.spool import Spool
from posthorn.smtp.client import (
    Client,
    OutRecipient,
    SMTPClientError,
    Timeouts,
    TLSMode,
)
from posthorn.smtp.server import SMTPServer
from posthorn.smtp.session import PROFILES, Limits
from tests.integration.smtp_peer import AioPeer, PeerConfig, Recorder, ScriptedPeer, trusting

MESSAGE = b"From: a@a.test\r\nTo: b@b.test\r\nSubject: hi\r\n\r\nHello.\r\n.hidden\r\n..two\r\n"
FAST = Timeouts(
    connect=2, greeting=2, ehlo=2, mail=2, rcpt=2, data_init=2, data_block=2, data_end=2
)


async def connect(port: int, tls: TLSMode = TLSMode.NONE, **kw: object) -> Client:
    return await Client.connect(
        "127.0.0.1",
        port,
        hostname_for_ehlo="out.a.test",
        server_name="localhost",
        tls=tls,
        timeouts=kw.pop("timeouts", FAST),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedPeer]:
    peer = await ScriptedPeer().start()
    yield peer
    await peer.close()


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return ensure_self_signed(tmp_path, "localhost")


# --- per-recipient results, pipelining, DSN ----------------------------------------------------


async def test_per_recipient_results_with_pipelining(scripted: ScriptedPeer) -> None:
    scripted.config.rcpt_replies = {
        "gone@b.test": b"550 5.1.1 No such user\r\n",
        "later@b.test": b"451 4.3.0 Try again\r\n",
    }
    client = await connect(scripted.port)
    assert client.remote == "localhost [127.0.0.1]" and "PIPELINING" in client.extensions
    reads_before = len(scripted.reads)
    rcpts = [OutRecipient("ok@b.test"), OutRecipient("gone@b.test"), OutRecipient("later@b.test")]
    result = await client.send("a@a.test", rcpts, MESSAGE, size=len(MESSAGE))
    ok, gone, later = result.recipients
    assert (ok.address, ok.code, ok.status, ok.accepted) == ("ok@b.test", 250, "2.0.0", True)
    assert ok.text == "Ok: queued as PEER1"
    assert (gone.code, gone.status, gone.accepted, gone.temporary) == (550, "5.1.1", False, False)
    assert gone.diagnostic() == "smtp; 550 5.1.1 No such user"
    assert (later.code, later.temporary) == (451, True)
    # RFC 2920: MAIL, the three RCPTs and DATA arrived in one read (one write, one round trip).
    batch = scripted.reads[reads_before]
    assert batch.startswith(b"MAIL FROM:<a@a.test> SIZE=") and batch.endswith(b"DATA\r\n")
    assert batch.count(b"RCPT TO:") == 3
    assert scripted.messages == [MESSAGE]  # dot-stuffing undone exactly by the peer
    assert client.usable
    await client.quit()
    assert not client.usable


async def test_one_by_one_without_pipelining(scripted: ScriptedPeer) -> None:
    scripted.config.extensions = ("8BITMIME", "SIZE 0")
    client = await connect(scripted.port)
    start = len(scripted.reads)
    result = await client.send(
        "a@a.test", [OutRecipient("x@b.test"), OutRecipient("y@b.test")], MESSAGE, size=10**9
    )
    assert [r.code for r in result.recipients] == [250, 250]
    assert not result.dsn_relayed
    # Each command in its own read: MAIL, RCPT, RCPT, DATA, then the data.
    assert [r.split(b" ")[0] for r in scripted.reads[start : start + 4]] == [
        b"MAIL",
        b"RCPT",
        b"RCPT",
        b"DATA\r\n",
    ]
    assert scripted.reads[start] == b"MAIL FROM:<a@a.test> SIZE=1000000000\r\n"  # SIZE 0: no limit
    await client.quit()


async def test_dsn_parameters_only_when_offered_and_xtext(scripted: ScriptedPeer) -> None:
    rcpt = OutRecipient(
        "bob@b.test",
        notify=frozenset({Notify.FAILURE, Notify.SUCCESS}),
        orcpt="rfc822;Bob+x=y@b.test",
    )
    client = await connect(scripted.port)
    result = await client.send("a@a.test", [rcpt], MESSAGE, size=55, ret="HDRS", envid="id=1+2 x")
    assert result.dsn_relayed
    mail, rcpt_line = scripted.commands[1:3]
    assert mail == b"MAIL FROM:<a@a.test> SIZE=55 RET=HDRS ENVID=id+3D1+2B2+20x"
    assert (
        rcpt_line == b"RCPT TO:<bob@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+2Bx+3Dy@b.test"
    )
    await client.quit()
    scripted.config.extensions = ("PIPELINING",)
    scripted.commands.clear()
    client = await connect(scripted.port)
    result = await client.send("a@a.test", [rcpt], MESSAGE, size=55, ret="HDRS", envid="e")
    assert not result.dsn_relayed
    assert scripted.commands[1:3] == [b"MAIL FROM:<a@a.test>", b"RCPT TO:<bob@b.test>"]
    await client.quit()


async def test_no_recipient_accepted_resets_without_data(scripted: ScriptedPeer) -> None:
    scripted.config.rcpt_replies = {"x@b.test": b"550 5.1.1 Unknown\r\n"}
    # RFC 2920 §3.1: a pipelined DATA may get 354 although no RCPT was accepted.
    client = await connect(scripted.port)
    result = await client.send("a@a.test", [OutRecipient("x@b.test")], MESSAGE, size=1)
    assert [r.code for r in result.recipients] == [550]
    assert scripted.messages == [b""]  # the lone "." the RFC asks for
    assert scripted.commands[-1] == b"RSET" and client.usable
    await client.quit()


async def test_mail_refused_raises_and_stays_usable(scripted: ScriptedPeer) -> None:
    scripted.config.mail_reply = b"553 5.7.1 Sender refused\r\n"
    scripted.config.data_init_reply = b"503 5.5.1 No valid recipients\r\n"
    client = await connect(scripted.port)
    with pytest.raises(SMTPClientError) as info:
        await client.send("a@a.test", [OutRecipient("x@b.test")], MESSAGE, size=1)
    e = info.value
    assert (e.stage, e.code, e.status, e.temporary) == ("mail", 553, "5.7.1", False)
    assert e.diagnostic() == "smtp; 553 5.7.1 Sender refused"
    assert client.usable
    await client.quit()


async def test_data_refusal_applies_to_accepted_recipients(scripted: ScriptedPeer) -> None:
    scripted.config.rcpt_replies = {"gone@b.test": b"550 5.1.1 No such user\r\n"}
    scripted.config.data_reply = b"554 5.7.1 Spam\r\n"
    client = await connect(scripted.port)
    rcpts = [OutRecipient("a@b.test"), OutRecipient("gone@b.test"), OutRecipient("c@b.test")]
    result = await client.send("a@a.test", rcpts, MESSAGE, size=1)
    assert [(r.code, r.status) for r in result.recipients] == [
        (554, "5.7.1"),
        (550, "5.1.1"),
        (554, "5.7.1"),
    ]
    await client.quit()


async def test_size_smtputf8_8bitmime_refused_before_sending(scripted: ScriptedPeer) -> None:
    scripted.config.extensions = ("PIPELINING", "SIZE 100")
    client = await connect(scripted.port)
    sent = len(scripted.commands)
    cases = [
        ({"size": 101}, "size", "5.3.4"),
        ({"size": 10, "smtputf8": True}, "smtputf8", "5.6.7"),
        ({"size": 10, "body": "8BITMIME"}, "8bitmime", "5.6.3"),
        ({"size": 10, "body": "BINARYMIME"}, "binarymime", "5.6.3"),
    ]
    for kwargs, stage, status in cases:
        with pytest.raises(SMTPClientError) as info:
            await client.send("a@a.test", [OutRecipient("b@b.test")], MESSAGE, **kwargs)  # type: ignore[arg-type]
        assert (info.value.stage, info.value.status, info.value.temporary) == (stage, status, False)
        assert info.value.code is None and info.value.diagnostic().startswith("X-Posthorn; ")
    # A non-ASCII address needs SMTPUTF8 even when the flag was not set.
    with pytest.raises(SMTPClientError, match="SMTPUTF8"):
        await client.send("a@a.test", [OutRecipient("jörg@b.test")], MESSAGE, size=1)
    assert len(scripted.commands) == sent  # nothing was sent for any of them
    assert client.usable
    await client.quit()


async def test_connection_reuse_with_reset(scripted: ScriptedPeer) -> None:
    client = await connect(scripted.port)
    for n in range(2):
        body = MESSAGE + f"n={n}\r\n".encode()
        result = await client.send("a@a.test", [OutRecipient("b@b.test")], body, size=len(body))
        assert result.recipients[0].accepted
        await client.reset()
        assert client.usable
    assert scripted.connections == 1 and len(scripted.messages) == 2
    assert scripted.messages[1].endswith(b"n=1\r\n")
    await client.quit()
    assert scripted.commands[-1] == b"QUIT"


async def test_message_from_file_without_final_crlf(scripted: ScriptedPeer, tmp_path: Path) -> None:
    path = tmp_path / "msg"
    path.write_bytes(b"Subject: x\r\n\r\n.\r\n.\r\nlast line")
    client = await connect(scripted.port)
    trace = b"Received: from x by y; date\r\n"
    await client.send("", [OutRecipient("b@b.test")], path, size=10, prefix=trace)
    assert scripted.commands[1] == b"MAIL FROM:<> SIZE=10"
    assert scripted.messages == [trace + b"Subject: x\r\n\r\n.\r\n.\r\nlast line\r\n"]
    with pytest.raises(SMTPClientError) as info:
        await client.send("", [OutRecipient("b@b.test")], tmp_path / "missing", size=10)
    assert (info.value.stage, info.value.temporary) == ("data", True)
    assert client.usable  # the file was missing before anything was sent
    await client.quit()


# --- failures of the session ---------------------------------------------------------------------


async def test_drop_mid_data_is_temporary(scripted: ScriptedPeer) -> None:
    scripted.config.drop_in_data = True
    scripted.config.extensions = ("PIPELINING",)
    client = await connect(scripted.port)
    big = b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n"
    big *= 3000
    with pytest.raises(SMTPClientError) as info:
        await client.send("a@a.test", [OutRecipient("b@b.test")], big, size=len(big))
    assert (info.value.stage, info.value.temporary, info.value.code) == ("data", True, None)
    assert not client.usable
    await client.quit()  # never raises


async def test_greeting_554_is_permanent(scripted: ScriptedPeer) -> None:
    scripted.config.greeting = b"554-5.7.1 No service\r\n554 5.7.1 for you\r\n"
    with pytest.raises(SMTPClientError) as info:
        await connect(scripted.port)
    e = info.value
    assert (e.stage, e.code, e.status, e.temporary) == ("greeting", 554, "5.7.1", False)
    assert e.text == "No service for you"


async def test_421_ends_the_session(scripted: ScriptedPeer) -> None:
    scripted.config.rcpt_replies = {"b@b.test": b"421 4.3.2 Shutting down\r\n"}
    client = await connect(scripted.port)
    with pytest.raises(SMTPClientError) as info:
        await client.send("a@a.test", [OutRecipient("b@b.test")], MESSAGE, size=1)
    assert (info.value.stage, info.value.code, info.value.temporary) == ("rcpt", 421, True)
    assert not client.usable


async def test_ehlo_refused_falls_back_to_helo(scripted: ScriptedPeer) -> None:
    scripted.config.ehlo_reply = b"502 5.5.1 What?\r\n"
    client = await connect(scripted.port)
    assert client.extensions == {}
    result = await client.send("a@a.test", [OutRecipient("b@b.test")], MESSAGE, size=1)
    assert result.recipients[0].accepted
    assert scripted.commands[:3] == [
        b"EHLO out.a.test",
        b"HELO out.a.test",
        b"MAIL FROM:<a@a.test>",
    ]
    await client.quit()


async def test_timeouts() -> None:
    silent = await ScriptedPeer(PeerConfig(silent=True)).start()
    try:
        t = Timeouts(connect=0.5, greeting=0.5)
        start = time.monotonic()
        with pytest.raises(SMTPClientError) as info:
            await connect(silent.port, timeouts=t)
        assert (info.value.stage, info.value.temporary, info.value.status) == (
            "greeting",
            True,
            "4.4.2",
        )
        assert time.monotonic() - start < 3
    finally:
        await silent.close()
    # A server that never answers the end of data.
    stalled = await ScriptedPeer(PeerConfig(data_reply=b"")).start()
    try:
        client = await connect(stalled.port, timeouts=Timeouts(data_end=0.5))
        with pytest.raises(SMTPClientError) as info:
            await client.send("a@a.test", [OutRecipient("b@b.test")], MESSAGE, size=1)
        assert (info.value.stage, info.value.temporary) == ("data", True)
        assert not client.usable
    finally:
        await stalled.close()


async def test_connection_refused_is_temporary() -> None:
    peer = await ScriptedPeer().start()
    port = peer.port
    await peer.close()
    with pytest.raises(SMTPClientError) as info:
        await connect(port)
    assert (info.value.stage, info.value.temporary, info.value.status) == ("connect", True, "4.4.1")


async def test_starttls_required_but_not_offered(scripted: ScriptedPeer) -> None:
    with pytest.raises(SMTPClientError) as info:
        await connect(scripted.port, tls=TLSMode.REQUIRED)
    e = info.value
    assert (e.stage, e.temporary, e.status, e.code) == ("starttls", True, "4.7.4", None)
    # Opportunistic TLS goes on in plaintext.
    client = await connect(scripted.port, tls=TLSMode.OPPORTUNISTIC)
    assert client.tls is None
    await client.quit()


# --- aiosmtpd: STARTTLS, AUTH, dot-stuffing -------------------------------------------------------


async def test_aiosmtpd_starttls_and_dot_stuffing(cert: tuple[Path, Path]) -> None:
    recorder = Recorder(refuse={"gone@b.test": "550 5.1.1 Unknown user"})
    peer = await AioPeer(recorder, tls_context=server_context(*cert)).start()
    try:
        client = await connect(peer.port, tls=TLSMode.OPPORTUNISTIC)
        assert client.tls is not None and client.tls.startswith("TLSv1.")
        assert recorder.ehlo_names == ["out.a.test", "out.a.test"]  # EHLO again after TLS
        result = await client.send(
            "a@a.test",
            [OutRecipient("b@b.test"), OutRecipient("gone@b.test")],
            MESSAGE,
            size=len(MESSAGE),
            body="8BITMIME",
        )
        assert [r.code for r in result.recipients] == [250, 550]
        (tx,) = recorder.transactions
        assert tx.rcpt_tos == ["b@b.test"]
        assert tx.mail_options == [f"SIZE={len(MESSAGE)}", "BODY=8BITMIME"]
        assert tx.content == MESSAGE  # ".hidden" arrived as ".hidden", "..two" as "..two"
        await client.quit()
        # REQUIRED verifies: our own CA passes, the system store does not know the cert.
        client = await connect(peer.port, tls=TLSMode.REQUIRED, tls_context=trusting(str(cert[0])))
        assert client.tls is not None
        await client.quit()
        with pytest.raises(SMTPClientError) as info:
            await connect(peer.port, tls=TLSMode.REQUIRED)
        assert (info.value.stage, info.value.status, info.value.temporary) == (
            "starttls",
            "4.7.5",
            True,
        )
    finally:
        await peer.close()


async def test_opportunistic_handshake_failure_falls_back(cert: tuple[Path, Path]) -> None:
    recorder = Recorder()
    peer = await AioPeer(recorder, tls_context=server_context(*cert)).start()
    try:
        strict = ssl.create_default_context()  # will not verify the self-signed cert
        client = await connect(peer.port, tls=TLSMode.OPPORTUNISTIC, tls_context=strict)
        assert client.tls is None  # second connection, plaintext (RFC 7435)
        result = await client.send("a@a.test", [OutRecipient("b@b.test")], MESSAGE, size=1)
        assert result.recipients[0].accepted
        await client.quit()
    finally:
        await peer.close()


async def test_auth_plain_over_tls(cert: tuple[Path, Path]) -> None:
    recorder = Recorder()
    peer = await AioPeer(
        recorder,
        tls_context=server_context(*cert),
        authenticator=recorder.authenticate,
        auth_require_tls=True,
        auth_required=True,
    ).start()
    try:
        client = await connect(
            peer.port,
            tls=TLSMode.REQUIRED,
            tls_context=trusting(str(cert[0])),
            auth=("relay-user", "s3cret pass"),
        )
        assert "PLAIN" in client.extensions["AUTH"].split()
        result = await client.send("a@a.test", [OutRecipient("b@b.test")], MESSAGE, size=1)
        assert result.recipients[0].accepted
        assert recorder.logins == [(b"relay-user", b"s3cret pass")]
        await client.quit()
        with pytest.raises(SMTPClientError) as info:
            await connect(peer.port, tls=TLSMode.OPPORTUNISTIC, auth=("relay-user", "wrong"))
        assert (info.value.stage, info.value.code, info.value.temporary) == ("auth", 535, True)
        assert "wrong" not in str(info.value)
        # Without TLS the password is never sent (the server would offer AUTH only after TLS
        # anyway; the client refuses first).
        with pytest.raises(SMTPClientError) as info:
            await connect(peer.port, tls=TLSMode.NONE, auth=("relay-user", "s3cret pass"))
        assert (info.value.stage, info.value.status) == ("auth", "4.7.11")
        assert len(recorder.logins) == 2
    finally:
        await peer.close()


async def test_auth_login_in_clear_only_on_loopback_when_allowed() -> None:
    recorder = Recorder(extra_ehlo=())
    peer = await AioPeer(
        recorder, authenticator=recorder.authenticate, auth_require_tls=False
    ).start()
    try:
        # aiosmtpd offers LOGIN and PLAIN; force LOGIN by offering only it is not possible
        # here, so PLAIN is used; allow_plain_auth lets it go in the clear on loopback.
        client = await connect(peer.port, auth=("relay-user", "s3cret pass"), allow_plain_auth=True)
        assert client.tls is None and recorder.logins == [(b"relay-user", b"s3cret pass")]
        await client.quit()
    finally:
        await peer.close()


async def test_auth_login_mechanism(scripted: ScriptedPeer) -> None:
    scripted.config.extensions = ("AUTH LOGIN",)
    scripted.config.auth_replies = (
        b"334 VXNlcm5hbWU6\r\n",
        b"334 UGFzc3dvcmQ6\r\n",
        b"235 2.7.0 Ok\r\n",
    )
    client = await connect(scripted.port, auth=("u", "p"), allow_plain_auth=True)
    assert scripted.commands[1:4] == [b"AUTH LOGIN", b"dQ==", b"cA=="]
    await client.quit()


# --- posthorn's own server ------------------------------------------------------------------


@pytest.fixture
async def posthorn_mx(tmp_path: Path) -> AsyncIterator[tuple[int, list[QueuedMessage]]]:
    cheap = Hasher(HashParams(time_cost=1, memory_cost=8, parallelism=1))
    with DirectoryDB.in_data_dir(tmp_path, hasher=cheap) as db:
        db.add_domain("b.test")
        db.add_account("bob@b.test", "pw")
    directory = await Directory.in_data_dir(tmp_path, hasher=cheap)
    spool = Spool(tmp_path)
    await spool.open()
    queued: list[QueuedMessage] = []
    spool.add_listener(queued.append)
    smtp = SMTPServer(
        PROFILES["smtp"],
        hostname="mx.b.test",
        accounts=directory,
        spool=spool,
        limits=Limits(1_000_000, 10, 10, plaintext_auth_on_loopback=False),
        throttle=AuthThrottle(),
        connections=ConnectionLimiter(10, 10),
        ssl_context=server_context(*ensure_self_signed(tmp_path, "mx.b.test")),
        command_timeout=10,
        data_timeout=10,
        postmaster_domain="b.test",
    )
    server = await asyncio.start_server(smtp.handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], queued
    server.close()
    await server.wait_closed()
    await spool.close()
    await directory.close()


async def wait_queued(queued: list[QueuedMessage], n: int) -> None:
    for _ in range(100):
        if len(queued) >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(queued)} of {n} messages queued")


async def test_posthorn_server_pipelining_dsn_tls(
    posthorn_mx: tuple[int, list[QueuedMessage]],
) -> None:
    port, queued = posthorn_mx
    client = await connect(port, tls=TLSMode.OPPORTUNISTIC)
    assert client.tls is not None
    assert {"PIPELINING", "DSN", "SMTPUTF8", "8BITMIME", "CHUNKING"} <= client.extensions.keys()
    rcpts = [
        OutRecipient("bob@b.test", frozenset({Notify.SUCCESS}), "rfc822;Bob+Tag@a.test"),
        OutRecipient("nobody@b.test"),
    ]
    result = await client.send(
        "a@a.test", rcpts, MESSAGE, size=len(MESSAGE), ret="FULL", envid="q+1"
    )
    bob, nobody = result.recipients
    assert bob.accepted and "queued as" in bob.text and result.dsn_relayed
    assert (nobody.code, nobody.status) == (550, "5.1.1")
    await wait_queued(queued, 1)
    env = queued[0].envelope
    assert (env.ret, env.envid) == ("FULL", "q+1")
    assert env.recipients[0].notify == frozenset({Notify.SUCCESS})
    assert env.recipients[0].orcpt == "rfc822;Bob+Tag@a.test"
    assert queued[0].spool_path.read_bytes().endswith(MESSAGE)  # after the Received header
    # A second message on the same connection: BINARYMIME through BDAT, octets unchanged.
    await client.reset()
    binary = b"Subject: bin\r\n\r\n\x00\xff\r.\n.\r\n"
    trace = b"Received: from x by y; date\r\n"
    result = await client.send(
        "a@a.test",
        [OutRecipient("bob@b.test")],
        binary,
        size=len(binary),
        body="BINARYMIME",
        prefix=trace,
    )
    assert result.recipients[0].accepted
    await wait_queued(queued, 2)
    assert queued[1].envelope.body == "BINARYMIME"
    assert queued[1].spool_path.read_bytes() == trace + binary  # BDAT size counted the prefix
    # SMTPUTF8 passes where offered.
    result = await client.send(
        "jörg@a.test", [OutRecipient("bob@b.test")], MESSAGE, size=1, smtputf8=True
    )
    assert result.recipients[0].accepted
    await wait_queued(queued, 3)
    assert queued[2].envelope.smtputf8 and queued[2].envelope.mail_from == "jörg@a.test"
    await client.quit()
