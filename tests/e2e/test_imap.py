"""IMAP end to end: `posthorn serve` on loopback, driven by imaplib, imapclient, curl, raw bytes."""

from __future__ import annotations

import imaplib
import re
import smtplib
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import imapclient
import pytest

from tests.e2e.harness import Posthorn
from tests.e2e.mail import client_tls

PASSWORDS = {"alice@example.test": "alice-secret-1", "bob@example.test": "bob-secret-22"}


def message(subject: str, body: str = "Hello.", to: str = "alice@example.test") -> bytes:
    return (
        f"From: Bob <bob@example.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Posthorn]:
    ph = Posthorn(
        tmp_path_factory.mktemp("imap"),
        extra="[imap]\nappend_limit = 200000\n",
        services=("smtp", "imap", "imaps"),
    ).start()
    for address, password in PASSWORDS.items():
        ph.cli("user", "add", address, "--password-stdin", input=password + "\n", check=True)
    yield ph
    assert ph.stop() == 0
    tracebacks = [ln for ln in ph.lines if "Traceback" in ln or "internal_error" in ln]
    assert not tracebacks, "\n".join(tracebacks)


def login(server: Posthorn, user: str = "alice@example.test") -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    m.login(user, PASSWORDS[user])
    return m


def fresh_mailbox(m: imaplib.IMAP4, name: str) -> None:
    m.create(name)
    typ, _ = m.select(name)
    assert typ == "OK"


def test_greeting_capability_and_login(server: Posthorn) -> None:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    caps = m.capabilities
    assert "IMAP4REV2" in caps and "IMAP4REV1" in caps and "STARTTLS" in caps
    assert "AUTH=PLAIN" in caps  # plaintext allowed on loopback by the default config
    ok(m.login("alice@example.test", PASSWORDS["alice@example.test"]))
    after = ok(m.capability())[0].decode().split()
    for cap in ("IDLE", "UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "SORT", "ESEARCH", "QUOTA"):
        assert cap in after, cap
    assert "APPENDLIMIT=200000" in after
    m.logout()


def test_wrong_password_is_refused_with_a_code(server: Posthorn) -> None:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login("alice@example.test", "wrong")
    m.logout()


def test_list_default_mailboxes_with_special_use(server: Posthorn) -> None:
    m = login(server)
    lines = [d.decode() for d in ok(m.list()) if isinstance(d, bytes)]
    names = {ln.rsplit(" ", 1)[1].strip('"') for ln in lines}
    assert {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"} <= names
    sent = next(ln for ln in lines if ln.endswith("Sent"))
    assert "\\Sent" in sent and "\\HasNoChildren" in sent
    m.logout()


def ok(result: tuple[str, Any]) -> list[Any]:
    """imaplib's (type, data) pair: the type must be OK; the data, untyped as imaplib's is."""
    typ, data = result
    assert typ == "OK", (typ, data)
    return list(data)


def test_append_fetch_store_search_copy_move_expunge(server: Posthorn) -> None:
    m = login(server)
    fresh_mailbox(m, "Work")
    for i in range(3):
        data = ok(m.append("Work", "(\\Flagged)", None, message(f"work {i}", f"body {i}")))
        assert b"APPENDUID" in data[0]
    m.noop()
    assert ok(m.select("Work")) == [b"3"]
    data = ok(m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    subjects = [d[1] for d in data if isinstance(d, tuple)]
    assert subjects == [f"Subject: work {i}\r\n\r\n".encode() for i in range(3)]
    assert ok(m.fetch("2", "(BODY[TEXT])"))[0][1] == b"body 1\r\n"
    assert b"\\Seen" in ok(m.fetch("2", "(FLAGS)"))[0]
    assert ok(m.search(None, "SUBJECT", '"work 2"')) == [b"3"]
    assert ok(m.search(None, "UNSEEN")) == [b"1 3"]
    assert b"\\Deleted" in ok(m.store("1", "+FLAGS", "(\\Deleted)"))[0]
    ok(m.copy("2", "Archive"))
    ok(m.uid("MOVE", "3", "Trash"))
    assert m.untagged_responses.pop("EXPUNGE") == [b"3"]  # MOVE's own expunge
    assert ok(m.expunge()) == [b"1"]
    assert len([d for d in ok(m.fetch("1:*", "(UID)")) if d]) == 1
    m.logout()


def test_imaps_and_starttls(server: Posthorn) -> None:
    m = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=client_tls(), timeout=10)
    assert "STARTTLS" not in m.capabilities
    m.login("alice@example.test", PASSWORDS["alice@example.test"])
    m.logout()
    m2 = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    m2.starttls(client_tls())
    typ, _ = m2.login("alice@example.test", PASSWORDS["alice@example.test"])
    assert typ == "OK"
    m2.logout()


def test_smtp_delivery_is_seen_by_idle_within_a_second(server: Posthorn) -> None:
    c = imapclient.IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=10)
    c.login("bob@example.test", PASSWORDS["bob@example.test"])
    c.select_folder("INBOX")
    c.idle()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        sent = time.monotonic()
        s.sendmail("x@remote.test", ["bob@example.test"], message("idle test", to="bob@..."))
    responses = c.idle_check(timeout=5)
    seen = time.monotonic()
    c.idle_done()
    assert any(r[1] == b"EXISTS" for r in responses), responses
    assert seen - sent < 1.5
    c.logout()


def test_two_sessions_see_each_others_changes(server: Posthorn) -> None:
    a = login(server)
    fresh_mailbox(a, "Shared")
    for i in range(3):
        a.append("Shared", None, None, message(f"shared {i}"))
    b = login(server)
    b.select("Shared")
    a.noop()
    a.store("2", "+FLAGS", "(\\Flagged)")
    a.store("1", "+FLAGS", "(\\Deleted)")
    a.expunge()
    ok(b.noop())
    untagged = b.untagged_responses
    assert untagged.get("EXPUNGE") == [b"1"], untagged
    assert any(b"\\Flagged" in f for f in untagged.get("FETCH", [])), untagged
    # FETCH never reports EXPUNGE (RFC 9051 §7.5.1): b fetches while a expunges again.
    a.store("1", "+FLAGS", "(\\Deleted)")
    a.expunge()
    b.untagged_responses.clear()
    ok(b.fetch("1:*", "(FLAGS)"))
    assert "EXPUNGE" not in b.untagged_responses
    ok(b.noop())
    assert b.untagged_responses.get("EXPUNGE") == [b"1"]
    a.logout()
    b.logout()


def test_cli_append_reaches_an_idle_session(server: Posthorn) -> None:
    """Another process (the CLI) writes the store; IDLE hears of it through data_version."""
    c = imapclient.IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=10)
    c.login("alice@example.test", PASSWORDS["alice@example.test"])
    c.create_folder("FromCLI")
    c.select_folder("FromCLI")
    c.idle()
    server.cli(
        "mail", "append", "alice@example.test", "FromCLI", input=message("cli").decode(), check=True
    )
    responses = c.idle_check(timeout=5)
    c.idle_done()
    assert any(r[1] == b"EXISTS" for r in responses), responses
    c.logout()


def test_imapclient_envelope_and_bodystructure(server: Posthorn) -> None:
    c = imapclient.IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=10)
    c.login("alice@example.test", PASSWORDS["alice@example.test"])
    c.create_folder("Structure")
    multipart = (
        b"From: Carol <carol@example.test>\r\nTo: alice@example.test\r\nSubject: parts\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="x.bin"\r\n\r\nAQID/w==\r\n--b1--\r\n'
    )
    c.append("Structure", multipart)
    c.select_folder("Structure")
    data = c.fetch("1", ["ENVELOPE", "BODYSTRUCTURE", "BINARY[2]"])[1]
    env = data[b"ENVELOPE"]
    assert env.subject == b"parts"
    assert env.from_[0].name == b"Carol" and env.from_[0].host == b"example.test"
    assert env.sender[0].mailbox == b"carol"  # defaults to From (RFC 9051 §7.5.2)
    body = data[b"BODYSTRUCTURE"]
    assert body.is_multipart
    assert body[0][0][:2] == (b"text", b"plain")
    assert data[b"BINARY[2]"] == b"\x01\x02\x03\xff"
    c.logout()


def test_account_isolation(server: Posthorn) -> None:
    a = login(server)
    a.create("Secret")
    b = login(server, "bob@example.test")
    assert not any(b"Secret" in d for d in ok(b.list()) if isinstance(d, bytes))
    for name in ("Secret", "../alice@example.test/Secret", "INBOX/../Secret", "/Secret"):
        try:
            typ, box = b.select(f'"{name}"')
        except imaplib.IMAP4.error as e:  # BAD: the name itself is refused
            assert "level" in str(e), e
        else:
            assert typ == "NO" and b"NONEXISTENT" in (box[0] or b""), (name, typ, box)
    a.logout()
    b.logout()


class RawIMAP:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.line()

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed: " + repr(self.buf))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def until_tagged(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def cmd(self, data: bytes) -> list[bytes]:
        self.sock.sendall(data + b"\r\n")
        return self.until_tagged(data.split(b" ", 1)[0])


def test_malformed_input_gets_bad_and_the_session_continues(server: Posthorn) -> None:
    r = RawIMAP(server.ports["imap"])
    assert r.cmd(b"a1 FROBNICATE")[-1].startswith(b"a1 BAD")
    assert r.cmd(b'a2 LOGIN "unterminated')[-1].startswith(b"a2 BAD")
    r.sock.sendall(b"a3 NOOP " + b"x" * 100_000 + b"\r\n")
    assert r.until_tagged(b"a3")[-1].startswith(b"a3 BAD")
    assert r.cmd(b"a4 NOOP")[-1].startswith(b"a4 OK")
    # A literal bigger than the pre-login bound is refused before any octet is sent.
    r.sock.sendall(b"a5 LOGIN {1000000}\r\n")
    assert re.match(rb"a5 NO \[TOOBIG\]", r.until_tagged(b"a5")[-1])
    assert r.cmd(b"a6 NOOP")[-1].startswith(b"a6 OK")
    r.sock.close()


def test_append_over_the_limit_is_refused_before_the_data(server: Posthorn) -> None:
    r = RawIMAP(server.ports["imap"])
    r.cmd(b'a1 LOGIN alice@example.test "alice-secret-1"')
    r.sock.sendall(b"a2 APPEND INBOX {300000}\r\n")
    assert r.until_tagged(b"a2")[-1].startswith(b"a2 NO [TOOBIG]")
    assert r.cmd(b"a3 NOOP")[-1].startswith(b"a3 OK")
    r.sock.close()


def test_idle_is_ended_by_done_and_other_commands_still_work(server: Posthorn) -> None:
    r = RawIMAP(server.ports["imap"])
    r.cmd(b'a1 LOGIN alice@example.test "alice-secret-1"')
    r.cmd(b"a2 SELECT INBOX")
    r.sock.sendall(b"a3 IDLE\r\n")
    assert r.line().startswith(b"+ ")
    r.sock.sendall(b"DONE\r\n")
    assert r.until_tagged(b"a3")[-1].startswith(b"a3 OK")
    assert r.cmd(b"a4 LOGOUT")[-1].startswith(b"a4 OK")


def test_curl_lists_and_fetches(server: Posthorn) -> None:
    m = login(server)
    fresh_mailbox(m, "Curl")
    m.append("Curl", None, None, message("for curl", "curl body"))
    m.logout()
    base = f"imap://127.0.0.1:{server.ports['imap']}"
    user = ["--user", "alice@example.test:" + PASSWORDS["alice@example.test"]]
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", *user, base + "/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Curl" in out and "INBOX" in out
    body = subprocess.run(
        ["curl", "-sS", "--max-time", "10", *user, base + "/Curl;UID=1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Subject: for curl" in body and "curl body" in body


def test_concurrent_appends_get_distinct_uids(server: Posthorn) -> None:
    m = login(server)
    m.create("Busy")
    m.logout()
    uids: list[bytes] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        c = login(server)
        for i in range(5):
            data = ok(c.append("Busy", None, None, message(f"busy {n} {i}")))
            with lock:
                found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
                assert found is not None
                uids.append(found.group(1))
        c.logout()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(uids)) == 20


def test_compress_deflate(server: Posthorn) -> None:
    r = RawIMAP(server.ports["imap"])
    r.cmd(b'a1 LOGIN alice@example.test "alice-secret-1"')
    assert r.cmd(b"a2 COMPRESS DEFLATE") == [b"a2 OK DEFLATE active"]
    out, inflate = zlib.compressobj(wbits=-15), zlib.decompressobj(wbits=-15)
    r.sock.sendall(out.compress(b"a3 SELECT INBOX\r\na4 NOOP\r\n") + out.flush(zlib.Z_SYNC_FLUSH))
    text = b""
    while b"a4 OK" not in text:
        chunk = r.sock.recv(65536)
        assert chunk, text
        text += inflate.decompress(chunk)
    assert b"a3 OK [READ-WRITE] SELECT completed\r\n" in text
    assert text.endswith(b"a4 OK NOOP completed\r\n")
    r.sock.sendall(out.compress(b"a5 COMPRESS DEFLATE\r\n") + out.flush(zlib.Z_SYNC_FLUSH))
    reply = inflate.decompress(r.sock.recv(65536))
    assert reply == b"a5 NO [COMPRESSIONACTIVE] compression is already on\r\n"
    r.sock.close()
