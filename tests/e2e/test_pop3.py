"""POP3 end to end: `posthorn serve` on loopback, driven by poplib, curl and fetchmail, with
IMAP on the same account at the same time. Each test uses its own account, so the tests do not
share maildrops (or maildrop locks)."""

from __future__ import annotations

import getpass
import imaplib
import mailbox
import os
import poplib
import shutil
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Posthorn
from tests.e2e.mail import client_tls

USERS = ("ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "joe", "kim")
PASSWORD = "pop-secret-1"


def address(user: str) -> str:
    return f"{user}@example.test"


def message(subject: str, body: str = "Hello.") -> bytes:
    return (
        f"From: Bob <bob@example.test>\r\nTo: someone@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Posthorn]:
    ph = Posthorn(
        tmp_path_factory.mktemp("pop3"), services=("smtp", "imap", "pop3", "pop3s")
    ).start()
    for user in USERS:
        ph.cli("user", "add", address(user), "--password-stdin", input=PASSWORD + "\n", check=True)
    yield ph
    assert ph.stop() == 0
    tracebacks = [ln for ln in ph.lines if "Traceback" in ln or "internal_error" in ln]
    assert not tracebacks, "\n".join(tracebacks)


def imap_login(server: Posthorn, user: str) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    m.login(address(user), PASSWORD)
    return m


def fill(server: Posthorn, user: str, *messages: bytes) -> None:
    """Messages into INBOX through IMAP APPEND (stored when APPEND answers)."""
    m = imap_login(server, user)
    for data in messages:
        typ, _ = m.append("INBOX", None, None, data)
        assert typ == "OK"
    m.logout()


def pop(server: Posthorn, user: str) -> poplib.POP3:
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    p.user(address(user))
    p.pass_(PASSWORD)
    return p


def test_poplib_session(server: Posthorn) -> None:
    fill(server, "ann", message("one", ".leading dot"), message("two"), message("three"))
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    assert p.getwelcome() == b"+OK posthorn POP3 server ready"
    caps = p.capa()
    for cap in ("TOP", "UIDL", "USER", "STLS", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"):
        assert cap in caps, cap
    assert caps["SASL"] == ["PLAIN", "LOGIN"] and caps["EXPIRE"] == ["NEVER"]
    with pytest.raises(poplib.error_proto, match="APOP not supported"):
        p.apop(address("ann"), PASSWORD)  # no timestamp in the greeting: APOP is not offered
    p.user(address("ann"))
    assert p.pass_(PASSWORD).startswith(b"+OK")
    count, total = p.stat()
    assert count == 3
    _, listing, _ = p.list()
    sizes = {int(n): int(s) for n, s in (ln.split() for ln in listing)}
    assert sum(sizes.values()) == total
    _, uidl, _ = p.uidl()
    ids = [ln.split()[1] for ln in uidl]
    assert len(set(ids)) == 3 and all(b"." in i for i in ids)
    _, lines, octets = p.retr(1)
    assert octets == sizes[1]  # poplib counts the octets after undoing the stuffing
    assert b"Subject: one" in lines and b".leading dot" in lines
    _, head, _ = p.top(2, 0)
    assert b"Subject: two" in head and b"Hello." not in head
    assert p.dele(1).startswith(b"+OK")
    assert p.stat()[0] == 2
    p.rset()
    assert p.stat()[0] == 3
    p.dele(2)
    assert p.quit().startswith(b"+OK")
    p2 = pop(server, "ann")
    _, uidl2, _ = p2.uidl()
    assert [ln.split()[1] for ln in uidl2] == [ids[0], ids[2]]  # stable, 2 gone
    p2.quit()


def test_wrong_password_gets_a_response_code(server: Posthorn) -> None:
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    p.user(address("ben"))
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.pass_("wrong")
    p.quit()


def test_stls_and_pop3s(server: Posthorn) -> None:
    fill(server, "cat", message("secure"))
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    p.stls(client_tls())
    assert "STLS" not in p.capa()
    p.user(address("cat"))
    p.pass_(PASSWORD)
    assert p.stat()[0] == 1
    p.quit()
    s = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=client_tls(), timeout=10)
    assert "STLS" not in s.capa() and "USER" in s.capa()
    s.user(address("cat"))
    s.pass_(PASSWORD)
    assert b"Subject: secure" in s.retr(1)[1]
    s.quit()


def test_mail_in_over_smtp_out_over_pop3(server: Posthorn) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("x@remote.test", [address("dan")], message("via smtp", "smtp body"))
    deadline = time.monotonic() + 10
    while True:
        p = pop(server, "dan")
        if p.stat()[0] == 1 or time.monotonic() > deadline:
            break
        p.quit()
        time.sleep(0.1)
    _, listing, _ = p.list()
    _, lines, octets = p.retr(1)
    assert octets == int(listing[0].split()[1])
    assert b"Subject: via smtp" in lines and b"smtp body" in lines
    assert any(ln.startswith(b"Delivered-To:") for ln in lines)
    p.quit()


def test_bare_lf_message_octets_are_exact(server: Posthorn) -> None:
    fill(server, "eve", b"Subject: bare lf\n\nline one\n.line two\n")
    p = pop(server, "eve")
    _, size = p.stat()
    _, lines, octets = p.retr(1)
    assert lines == [b"Subject: bare lf", b"", b"line one", b".line two"]
    assert octets == size == len(b"Subject: bare lf\r\n\r\nline one\r\n.line two\r\n")
    p.quit()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, check=True
    )


def test_curl_lists_retrieves_and_deletes(server: Posthorn) -> None:
    fill(server, "fay", message("for curl", "curl body"), message("second"))
    base = f"pop3://127.0.0.1:{server.ports['pop3']}"
    user = ["--user", f"{address('fay')}:{PASSWORD}"]
    listing = curl(*user, base + "/").stdout.splitlines()
    assert [ln.split()[0] for ln in listing] == ["1", "2"]
    body = curl(*user, base + "/1").stdout
    assert "Subject: for curl" in body and "curl body" in body
    curl(*user, "-X", "DELE", "-I", base + "/1")
    p = pop(server, "fay")
    assert p.stat()[0] == 1
    assert b"Subject: second" in p.retr(1)[1]
    p.quit()


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail is not installed")
def test_fetchmail_downloads_into_an_mbox(server: Posthorn, tmp_path: Path) -> None:
    fill(server, "gus", message("fetch one", "first"), message("fetch two", "From here"))
    mbox = tmp_path / "mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"set no bouncemail\n"
        f"poll 127.0.0.1 service {server.ports['pop3']} protocol pop3 auth password\n"
        f'  user "{address("gus")}" there with password "{PASSWORD}" is {getpass.getuser()} here\n'
        f"  sslproto '' fetchall\n"
        # An mbox: a From_ line before each message, >From quoting, a blank line after.
        f"  mda \"(echo 'From fetchmail Thu Jan  1 00:00:00 1970';"
        f" sed 's/^From />From /'; echo) >> {mbox}\"\n"
    )
    rc.chmod(0o600)
    done = subprocess.run(
        ["fetchmail", "--nodetach", "--nosyslog", "-f", str(rc), "-i", str(tmp_path / "ids")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    got = mailbox.mbox(str(mbox))
    subjects = sorted(m["Subject"] for m in got)
    assert subjects == ["fetch one", "fetch two"]
    two = next(m for m in got if m["Subject"] == "fetch two")
    assert "From here" in str(two.get_payload())
    p = pop(server, "gus")
    assert p.stat() == (0, 0)  # fetchmail deleted what it downloaded
    p.quit()


def test_imap_and_pop3_on_one_account(server: Posthorn) -> None:
    fill(server, "hal", *(message(f"shared {i}") for i in range(4)))
    m = imap_login(server, "hal")
    assert m.select("INBOX") == ("OK", [b"4"])
    # Delete over POP3: the IMAP session sees EXPUNGE on its next NOOP.
    p = pop(server, "hal")
    p.dele(1)
    p.quit()
    m.noop()
    assert m.untagged_responses.pop("EXPUNGE", None) == [b"1"]
    # One POP3 session per account, across both POP3 listeners.
    p = pop(server, "hal")
    second = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    second.user(address("hal"))
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(PASSWORD)
    second.quit()
    tls = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=client_tls(), timeout=10)
    tls.user(address("hal"))
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        tls.pass_(PASSWORD)
    tls.quit()
    # Expunge over IMAP while the POP3 session is open: RETR fails cleanly...
    m.store("1", "+FLAGS", "(\\Deleted)")
    m.expunge()
    with pytest.raises(poplib.error_proto, match="deleted by another session"):
        p.retr(1)
    assert b"shared 2" in b"\n".join(p.retr(2)[1])
    p.quit()
    # ...and it is simply absent at the next login.
    p = pop(server, "hal")
    assert p.stat()[0] == 2
    subjects = [ln for n in (1, 2) for ln in p.top(n, 0)[1] if ln.startswith(b"Subject:")]
    assert subjects == [b"Subject: shared 2", b"Subject: shared 3"]
    p.quit()
    m.logout()


def test_dropped_connection_deletes_nothing_and_unlocks(server: Posthorn) -> None:
    fill(server, "ivy", message("keep me"))
    p = pop(server, "ivy")
    p.dele(1)
    p.sock.shutdown(socket.SHUT_RDWR)  # gone without QUIT: no UPDATE state
    p.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            again = pop(server, "ivy")
            break
        except poplib.error_proto:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # the server notices the close asynchronously
    assert again.stat()[0] == 1
    again.quit()


def test_uidl_survives_a_restart(tmp_path: Path) -> None:
    ph = Posthorn(tmp_path, services=("imap", "pop3")).start()
    try:
        ph.cli("user", "add", address("joe"), "--password-stdin", input=PASSWORD + "\n", check=True)
        fill(ph, "joe", message("a"), message("b"))
        p = pop(ph, "joe")
        before = p.uidl()[1]
        p.quit()
    finally:
        assert ph.stop() == 0
    again = Posthorn(tmp_path, services=("imap", "pop3")).start()  # same data directory
    try:
        p = pop(again, "joe")
        assert p.uidl()[1] == before
        p.quit()
    finally:
        assert again.stop() == 0
