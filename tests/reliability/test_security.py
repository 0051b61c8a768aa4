"""Security of a running `posthorn serve` (issue 8, point 5), driven from outside with real
clients: no open relay, per-account isolation in every reader, TLS 1.2+ with strong ciphers
only, brute-force lockout on every login path, no secret in the log, and root dropped to
``server.user`` after binding a privileged port.

All traffic stays on 127.0.0.0/8. Login paths are tried from different loopback source
addresses (127.0.0.1x) so the per-client failure tallies of one path do not slow another.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import os
import poplib
import re
import shutil
import smtplib
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from posthorn.net.tls import ensure_self_signed, server_context
from tests.e2e.harness import Posthorn
from tests.e2e.mail import client_tls, wait_for_messages
from tests.support.mta import RemoteMTA

DOMAIN = "example.test"
IDN_DOMAIN = "xn--mller-kva.test"  # müller.test, also ours
ALICE = ("alice@example.test", "Alice-pw-4417")
BOB = ("bob@example.test", "Bob-pw-8830")
CAROL = ("carol@example.test", "Carol-Zq8-distinct-Secret")  # the password hunted in the log
CAROL_WRONG = "Carol-Zq8-WRONG-guess"
SMARTHOST = ("relay-user", "Smarthost-Pw-Xy71-distinct")
LOCKED = [(f"lock{i}@example.test", f"Lock-pw-{i}") for i in range(6)]
BOB_SECRET = "bob-secret-subject-5521"

# A message for the TLS matrix: (service, openssl s_client arguments for the handshake).
STARTTLS = {"smtp": "smtp", "submission": "smtp", "imap": "imap", "pop3": "pop3"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plain(user: str, password: str) -> str:
    """The AUTH PLAIN initial response (RFC 4616)."""
    return b64(f"\0{user}\0{password}")


@dataclass
class World:
    server: Posthorn
    smarthost: RemoteMTA


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("security")
    cert, key = ensure_self_signed(root / "relay", "relay.test")
    relay_port = free_port()
    with RemoteMTA(
        "127.0.0.1", relay_port, tls=server_context(cert, key), credentials=SMARTHOST
    ) as relay:
        extra = (
            "[web]\ntls = true\n"
            '[outbound]\nnameservers = ["127.0.0.1:1"]\n'
            f'smarthost = "127.0.0.1:{relay_port}"\nsmarthost_user = "{SMARTHOST[0]}"\n'
            f'smarthost_password = "{SMARTHOST[1]}"\nsmarthost_ca = "{cert}"\n'
        )
        ph = Posthorn(root, extra=extra, domains=(DOMAIN, IDN_DOMAIN)).start()
        try:
            users = [ALICE, BOB, CAROL, *LOCKED]
            with ThreadPoolExecutor(4) as pool:
                list(
                    pool.map(
                        lambda u: ph.cli(
                            "user", "add", u[0], "--password-stdin", input=u[1] + "\n", check=True
                        ),
                        users,
                    )
                )
            yield World(ph, relay)
        finally:
            assert ph.stop() == 0
    tracebacks = [line for line in ph.lines if "Traceback" in line]
    assert not tracebacks, "\n".join(tracebacks)


# --- the open-relay matrix ------------------------------------------------------------------


class SMTPDialogue:
    """Byte-exact commands (UTF-8 allowed) with the reply code and enhanced status."""

    def __init__(
        self, port: int, *, implicit_tls: bool = False, lmtp: bool = False, ip: str = "127.0.0.1"
    ) -> None:
        if implicit_tls:
            self.smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                "127.0.0.1", port, timeout=20, context=client_tls(), source_address=(ip, 0)
            )
        elif lmtp:
            self.smtp = smtplib.LMTP("127.0.0.1", port, timeout=20)
        else:
            self.smtp = smtplib.SMTP("127.0.0.1", port, timeout=20, source_address=(ip, 0))
        self.smtp.ehlo("client.stranger.test")

    def __call__(self, line: str) -> str:
        self.smtp.send(line.encode() + b"\r\n")
        code, text = self.smtp.getreply()
        return f"{code} {text.decode(errors='replace').split(' ', 1)[0]}"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.smtp.quit()


RELAY_DENIED = "554 5.7.1"
SOURCE_ROUTE = "553 5.1.3"
BAD_ADDRESS = "501 5.1.3"  # not an address at all (RFC 5321 §4.1.2 syntax)
# Recipients that must never be relayed for a stranger, with the reply (README "SMTP").
RELAY_TRICKS = [
    ("user%other.test@example.test", RELAY_DENIED),  # the %-hack
    ('"user@other.test"@example.test', RELAY_DENIED),  # quoted @
    ("other.test!user@example.test", RELAY_DENIED),  # bang path
    ("@example.test:user@other.test", SOURCE_ROUTE),  # source route
    ("@example.test,@other.test:user@other.test", SOURCE_ROUTE),
    ("user@other.test", RELAY_DENIED),
    ("user@OTHER.TEST", RELAY_DENIED),
    ("user@[127.0.0.1]", RELAY_DENIED),  # address literal, even our own address
    ("user@[IPv6:::1]", RELAY_DENIED),
    ("user@other.test.", BAD_ADDRESS),  # trailing dot: not a valid domain
    ("user@example.test.", BAD_ADDRESS),
    ("user@evilexample.test", RELAY_DENIED),  # our domain as a suffix
    ("user@example.test.other.test", RELAY_DENIED),  # ... as a prefix
    ("user@sub.example.test", RELAY_DENIED),  # a subdomain is not ours
    ("user@\u0435xample.test", RELAY_DENIED),  # Cyrillic ie for "e": a look-alike IDN
    ("user@bücher.test", RELAY_DENIED),  # a foreign IDN, U-label ...
    ("user@xn--bcher-kva.test", RELAY_DENIED),  # ... and A-label
]
# Our own domains, spelled differently: local, never relayed (control cases).
OURS = [
    ("alice@EXAMPLE.TEST", "250 2.1.5"),
    ("ALICE@Example.Test", "250 2.1.5"),
    ("nobody@müller.test", "550 5.1.1"),  # our IDN domain, U-label: local, unknown user
    ("nobody@XN--MLLER-KVA.TEST", "550 5.1.1"),
]
FOREIGN_MARKERS = (
    "other.test",
    "127.0.0.1",
    "::1",
    "evilexample",
    "sub.example",
    "bcher",
    "\u0435x",
)


@pytest.mark.parametrize("sender", ["<stranger@other.test>", "<>", "<alice@example.test>"])
def test_port_25_relays_nothing_for_strangers(world: World, sender: str) -> None:
    smtp = SMTPDialogue(world.server.ports["smtp"])
    try:
        for rcpt, expected in [*RELAY_TRICKS, *OURS]:
            assert smtp(f"MAIL FROM:{sender} SMTPUTF8").startswith("250"), sender
            assert smtp(f"RCPT TO:<{rcpt}>") == expected, (sender, rcpt)
            assert smtp("RSET").startswith("250")
    finally:
        smtp.close()


def test_port_25_auth_attempt_does_not_open_the_relay(world: World) -> None:
    smtp = SMTPDialogue(world.server.ports["smtp"])
    try:
        # AUTH is not offered on port 25 (smtp.auth_on_smtp = false).
        assert smtp(f"AUTH PLAIN {plain(ALICE[0], 'wrong')}")[0] == "5"
        assert smtp("MAIL FROM:<alice@example.test>") == "250 2.1.0"
        assert smtp("RCPT TO:<user@other.test>") == RELAY_DENIED
    finally:
        smtp.close()


def test_lmtp_delivers_locally_only(world: World) -> None:
    lmtp = SMTPDialogue(world.server.ports["lmtp"], lmtp=True)
    try:
        assert lmtp("MAIL FROM:<stranger@other.test>") == "250 2.1.0"
        assert lmtp("RCPT TO:<user@other.test>") == RELAY_DENIED
        assert lmtp("RCPT TO:<user%other.test@example.test>") == RELAY_DENIED
    finally:
        lmtp.close()


@pytest.mark.parametrize("service", ["submission", "submissions"])
@pytest.mark.parametrize("sender", ["<stranger@other.test>", "<>", "<alice@example.test>"])
def test_submission_without_auth_takes_no_mail(world: World, service: str, sender: str) -> None:
    # From a client address of its own: these failed logins must not slow other tests.
    tls = service == "submissions"
    smtp = SMTPDialogue(world.server.ports[service], implicit_tls=tls, ip="127.0.0.41")
    try:
        if sender.startswith("<stranger"):  # a wrong password changes nothing
            assert smtp(f"AUTH PLAIN {plain('mallory@example.test', 'guess')}") == "535 5.7.8"
        assert smtp(f"MAIL FROM:{sender}") == "530 5.7.0"
        for rcpt, _ in RELAY_TRICKS[:6]:
            # Out of sequence without a MAIL; enough of them end the session (421).
            assert smtp(f"RCPT TO:<{rcpt}>") in ("503 5.5.1", "421 4.7.0")
    finally:
        smtp.close()


def test_nothing_was_queued_or_relayed_for_a_foreign_domain(world: World) -> None:
    # Runs after the matrix (module order): the queue and the smart host saw none of it.
    queued = world.server.cli("queue", "list", check=True).stdout
    for marker in FOREIGN_MARKERS:
        assert marker not in queued, queued
    assert not any(m in r for r in world.smarthost.rcpts for m in FOREIGN_MARKERS)
    assert not world.smarthost.received


# --- per-account isolation ------------------------------------------------------------------


def imap_login(world: World, user: tuple[str, str]) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", world.server.ports["imap"], timeout=20)
    imap.login(*user)
    return imap


def imap_reply(imap: imaplib.IMAP4, *args: str) -> tuple[str, str]:
    """(status, the tagged line's text) of a raw command, for comparing refusals."""
    tag = imap._new_tag().decode()
    imap.send(f"{tag} {' '.join(args)}\r\n".encode())
    while True:
        line = imap.readline().decode(errors="replace").rstrip("\r\n")
        if line.startswith(tag + " "):
            status, _, text = line[len(tag) + 1 :].partition(" ")
            return status, text


@pytest.fixture(scope="module")
def bob_secret(world: World) -> int:
    """Bob's private mailbox "Secret" with one message; returns its UID."""
    bob = imap_login(world, BOB)
    try:
        bob.create("Secret")
        msg = f"From: {BOB[0]}\r\nSubject: {BOB_SECRET}\r\n\r\nfor bob only\r\n".encode()
        status, data = bob.append("Secret", "", None, msg)
        assert status == "OK", data
        bob.select("Secret")
        _, uids = bob.uid("SEARCH", "ALL")
        return int(uids[0].split()[-1])
    finally:
        bob.logout()


def bob_counts(world: World) -> tuple[int, int]:
    bob = imap_login(world, BOB)
    try:
        counts = []
        for mailbox in ("Secret", "INBOX"):
            _, data = bob.status(mailbox, "(MESSAGES)")
            counts.append(int(re.findall(rb"MESSAGES (\d+)", data[0] or b"")[0]))
        return counts[0], counts[1]
    finally:
        bob.logout()


# Names that must never reach Bob's mail from Alice's session.
FOREIGN_NAMES = [
    "Secret",
    "bob@example.test/INBOX",
    "bob@example.test/Secret",
    "../bob@example.test/INBOX",
    "../bob/Secret",
    "~bob/Secret",
    "#users/bob/Secret",
    "Other Users/bob/Secret",
    "/Secret",
    "INBOX/../Secret",
]


def test_imap_alice_cannot_reach_bobs_mailboxes(world: World, bob_secret: int) -> None:
    before = bob_counts(world)
    alice = imap_login(world, ALICE)
    try:
        for pattern in ("*", "%", "*Secret*", "../*", "~bob/*", "#*", "/*", "bob*"):
            status, data = alice.list('""', f'"{pattern}"')
            assert status == "OK"
            listed = b" ".join(d for d in data if isinstance(d, bytes))
            assert b"Secret" not in listed and b"bob" not in listed, (pattern, listed)
        status, data = alice.list('"~bob/"', '"*"')
        assert b"Secret" not in b" ".join(d for d in data if isinstance(d, bytes))
        _, namespace = alice.namespace()
        assert b"bob" not in namespace[0] and b"NIL NIL" in namespace[0]  # personal only
        for name in FOREIGN_NAMES:
            quoted = '"' + name + '"'
            nobody = '"' + name.replace("bob", "nobody42").replace("Secret", "Nowhere42") + '"'
            for verb in ("SELECT", "EXAMINE"):
                # Refused (NO, or BAD for a '..' level) exactly as for a name nobody has:
                # existence is not revealed.
                refusal = imap_reply(alice, verb, quoted)
                assert refusal[0] in ("NO", "BAD") and refusal == imap_reply(alice, verb, nobody)
            refusal = imap_reply(alice, "STATUS", quoted, "(MESSAGES)")
            assert refusal[0] in ("NO", "BAD"), name
            try:
                status, _ = alice.append(quoted, "", None, b"Subject: intruder\r\n\r\nx\r\n")
            except imaplib.IMAP4.error:  # BAD: a '..' level
                status = "BAD"
            assert status in ("NO", "BAD"), name
        alice.append("INBOX", "", None, b"Subject: alice own\r\n\r\nx\r\n")
        alice.select("INBOX")
        for name in FOREIGN_NAMES:
            for verb in ("COPY", "MOVE"):
                status, text = imap_reply(alice, "UID", verb, "1:*", '"' + name + '"')
                assert status == "BAD" or "TRYCREATE" in text, (verb, name, text)
        # Bob's UIDs mean nothing in Alice's mailboxes.
        status, data = alice.uid("FETCH", f"{bob_secret}:{bob_secret + 5}", "(BODY.PEEK[])")
        assert BOB_SECRET.encode() not in b"".join(
            x if isinstance(x, bytes) else b"".join(x) for x in data if x
        )
        _, found = alice.search(None, "SUBJECT", BOB_SECRET)
        assert found == [b""]
        # Alice's own "Secret" is hers: creating it does not touch Bob's.
        assert alice.create("Secret")[0] == "OK"
        assert alice.append("Secret", "", None, b"Subject: alice secret\r\n\r\nx\r\n")[0] == "OK"
        assert alice.delete("Secret")[0] == "OK"
    finally:
        alice.logout()
    assert bob_counts(world) == before


def test_pop3_sees_only_the_own_inbox(world: World, bob_secret: int) -> None:
    pop = poplib.POP3("127.0.0.1", world.server.ports["pop3"], timeout=20)
    try:
        pop.user(ALICE[0])
        pop.pass_(ALICE[1])
        count, _ = pop.stat()
        for n in range(1, count + 1):
            assert BOB_SECRET.encode() not in b"\n".join(pop.retr(n)[1])
        with pytest.raises(poplib.error_proto):
            pop.retr(count + 1)
    finally:
        pop.quit()
    # Alice's password does not open Bob's maildrop.
    assert pop3_userpass(world, "127.0.0.42", BOB[0], ALICE[1]) == "fail"


@contextlib.contextmanager
def web_session(
    world: World, user: tuple[str, str], ip: str = "127.0.0.1"
) -> Iterator[httpx.Client]:
    transport = httpx.HTTPTransport(verify=client_tls(), local_address=ip)
    url = f"https://127.0.0.1:{world.server.ports['http']}"
    with httpx.Client(base_url=url, transport=transport, timeout=30) as client:
        r = client.post("/api/login", json={"address": user[0], "password": user[1]})
        assert r.status_code == 200, r.text
        client.headers["X-CSRF-Token"] = r.json()["csrf"]
        yield client


def test_web_and_api_alice_cannot_reach_bobs_mail(world: World, bob_secret: int) -> None:
    before = bob_counts(world)
    with web_session(world, ALICE) as alice:
        names = [m["name"] for m in alice.get("/api/mailboxes").json()]
        assert "Secret" not in names and not any("bob" in n for n in names)

        def get(path: str) -> httpx.Response:
            return alice.get(path)

        nowhere = get("/api/mailboxes/Nowhere-42/messages")
        assert nowhere.status_code == 404
        for name in FOREIGN_NAMES:
            enc = quote(name, safe="")
            for path in (
                f"/api/mailboxes/{enc}/messages",
                f"/api/mailboxes/{enc}/messages/{bob_secret}",
                f"/api/mailboxes/{enc}/messages/{bob_secret}/raw",
                f"/api/mailboxes/{enc}/messages/{bob_secret}/parts/1",
            ):
                r = get(path)
                assert r.status_code == 404, (path, r.status_code, r.text)
                assert BOB_SECRET not in r.text
                assert "bob" not in r.text.replace(enc, "").replace(name, "").lower()
            # The same answer as for a mailbox nobody has.
            r = get(f"/api/mailboxes/{enc}/messages")
            assert r.json()["error"].replace(name, "N") == nowhere.json()["error"].replace(
                "Nowhere-42", "N"
            )
        for uid in range(1, bob_secret + 3):
            r = get(f"/api/mailboxes/INBOX/messages/{uid}/raw")
            assert BOB_SECRET not in r.text
        r = get(f"/api/mailboxes/INBOX/messages?q={BOB_SECRET}&in=all")
        assert r.status_code == 200 and r.json()["total"] == 0
        sent = get("/api/mailboxes/INBOX/messages").json()["messages"]
        if sent:
            uid = sent[0]["uid"]
            for name in FOREIGN_NAMES[:4]:
                r = alice.post(f"/api/mailboxes/INBOX/messages/{uid}/move", json={"to": name})
                assert r.status_code in (400, 404), (name, r.status_code)
        # Another account's mailbox by rename/delete.
        r = alice.delete(f"/api/mailboxes/{quote('Secret', safe='')}")
        assert r.status_code == 404
        # The admin API is for admins only.
        for method, path in (
            ("GET", "/api/admin/accounts"),
            ("GET", f"/api/admin/accounts/{BOB[0]}"),
            ("GET", "/api/admin/domains"),
            ("GET", "/api/admin/queue"),
            ("GET", f"/api/admin/dns/{DOMAIN}"),
            ("PATCH", f"/api/admin/accounts/{BOB[0]}"),
            ("DELETE", f"/api/admin/accounts/{BOB[0]}"),
            ("POST", "/api/admin/accounts"),
        ):
            body = {"password": "taken-over"} if method != "GET" else None
            r = alice.request(method, path, json=body)
            assert r.status_code == 403, (method, path, r.status_code)
        # The /admin page is a data-free shell for everyone (admin.js explains the 403).
        assert BOB[0] not in alice.get("/admin").text
    assert bob_counts(world) == before
    bob = imap_login(world, BOB)
    bob.logout()  # Bob's password still works: the PATCH above changed nothing


# --- TLS: 1.2 and 1.3 only, strong ciphers --------------------------------------------------


def s_client(port: int, starttls: str | None, *args: str) -> tuple[bool, str]:
    """Whether a handshake with these options completed, and openssl's output."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost"]
    if starttls:
        cmd += ["-starttls", starttls]
    result = subprocess.run([*cmd, *args], input="", capture_output=True, text=True, timeout=20)
    out = result.stdout + result.stderr
    assert "no cipher match" not in out and "CONNECTED" in out, out
    m = re.search(r"Cipher is (\S+)", out)
    return bool(m and m.group(1) != "(NONE)"), out


# SECLEVEL=0 lets the client offer old protocols and weak ciphers: a refusal then comes from
# the server, not from Debian's own client defaults.
OLD = "DEFAULT:@SECLEVEL=0"
WEAK = "RC4:3DES:NULL:EXPORT:aNULL:MD5:@SECLEVEL=0"
TLS_SERVICES = ["smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http"]


def test_tls_offers_only_1_2_and_1_3_with_strong_ciphers(world: World) -> None:
    cases: list[tuple[str, tuple[str, ...], bool]] = []
    for service in TLS_SERVICES:
        cases += [
            (service, ("-tls1", "-cipher", OLD), False),
            (service, ("-tls1_1", "-cipher", OLD), False),
            (service, ("-tls1_2", "-cipher", WEAK), False),
            (service, ("-tls1_2",), True),
            (service, ("-tls1_3",), True),
        ]

    def run(case: tuple[str, tuple[str, ...], bool]) -> tuple[str, tuple[str, ...], bool, str]:
        service, args, _ = case
        ok, out = s_client(world.server.ports[service], STARTTLS.get(service), *args)
        return service, args, ok, out

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, cases))
    for (service, args, ok, out), (_, _, expected) in zip(results, cases, strict=True):
        assert ok == expected, f"{service} {' '.join(args)}: handshake {ok}\n{out[-600:]}"
        if ok:
            cipher = re.search(r"Cipher is (\S+)", out)
            assert cipher and re.search(r"GCM|CHACHA20", cipher.group(1)), out[-600:]


# --- brute-force lockout on every login path ------------------------------------------------


def smtp_auth(world: World, ip: str, user: str, password: str) -> str:
    smtp = smtplib.SMTP(
        "127.0.0.1", world.server.ports["submission"], timeout=30, source_address=(ip, 0)
    )
    try:
        smtp.ehlo("client.test")
        code, _ = smtp.docmd("AUTH", f"PLAIN {plain(user, password)}")
        return {235: "ok", 535: "fail", 454: "locked"}.get(code, str(code))
    finally:
        smtp.close()


class Lines:
    """A raw line client from a chosen loopback source address (imaplib and poplib have
    no source_address)."""

    def __init__(self, port: int, ip: str) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=30, source_address=(ip, 0)
        )
        self.file = self.sock.makefile("rb")
        self.greeting = self.read()

    def read(self) -> str:
        return self.file.readline().decode(errors="replace").rstrip("\r\n")

    def ask(self, line: str, done: Callable[[str], bool]) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        while True:
            reply = self.read()
            if done(reply) or not reply:
                return reply

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def imap_verdict(reply: str) -> str:
    if reply.startswith("a OK"):
        return "ok"
    if "[UNAVAILABLE]" in reply:
        return "locked"
    return "fail" if "[AUTHENTICATIONFAILED]" in reply else reply


def imap_login_attempt(world: World, ip: str, user: str, password: str) -> str:
    c = Lines(world.server.ports["imap"], ip)
    try:
        return imap_verdict(c.ask(f'a LOGIN "{user}" "{password}"', lambda r: r.startswith("a ")))
    finally:
        c.close()


def imap_authenticate(world: World, ip: str, user: str, password: str) -> str:
    c = Lines(world.server.ports["imap"], ip)
    try:
        reply = c.ask(f"a AUTHENTICATE PLAIN {plain(user, password)}", lambda r: r[:2] == "a ")
        return imap_verdict(reply)
    finally:
        c.close()


def pop3_verdict(reply: str) -> str:
    if reply.startswith("+OK"):
        return "ok"
    if "[SYS/TEMP]" in reply:
        return "locked"
    return "fail" if "[AUTH]" in reply else reply


def pop3_userpass(world: World, ip: str, user: str, password: str) -> str:
    c = Lines(world.server.ports["pop3"], ip)
    try:
        first = c.ask(f"USER {user}", lambda r: True)
        if not first.startswith("+OK"):
            return pop3_verdict(first)
        return pop3_verdict(c.ask(f"PASS {password}", lambda r: True))
    finally:
        c.close()


def pop3_auth(world: World, ip: str, user: str, password: str) -> str:
    c = Lines(world.server.ports["pop3"], ip)
    try:
        return pop3_verdict(c.ask(f"AUTH PLAIN {plain(user, password)}", lambda r: True))
    finally:
        c.close()


def web_login(world: World, ip: str, user: str, password: str) -> str:
    transport = httpx.HTTPTransport(verify=client_tls(), local_address=ip)
    url = f"https://127.0.0.1:{world.server.ports['http']}"
    with httpx.Client(base_url=url, transport=transport, timeout=30) as client:
        r = client.post("/api/login", json={"address": user, "password": password})
        return {200: "ok", 401: "fail", 429: "locked"}.get(r.status_code, str(r.status_code))


LOGIN_PATHS: list[Callable[[World, str, str, str], str]] = [
    smtp_auth,
    imap_login_attempt,
    imap_authenticate,
    pop3_userpass,
    pop3_auth,
    web_login,
]


def test_every_login_path_locks_out_after_repeated_failures(world: World) -> None:
    """The default throttle: 5 failures per account and client lock for 15 minutes; the
    right password is then refused as locked (not as wrong: it is never checked)."""

    def hammer(i: int) -> list[str]:
        path, (user, password), ip = LOGIN_PATHS[i], LOCKED[i], f"127.0.0.{11 + i}"
        outcomes = [path(world, ip, user, f"wrong-{n}") for n in range(5)]
        started = time.monotonic()
        outcomes.append(path(world, ip, user, password))
        assert time.monotonic() - started < 2, "a locked attempt is answered without delay"
        return outcomes

    started = time.monotonic()
    with ThreadPoolExecutor(len(LOGIN_PATHS)) as pool:
        results = list(pool.map(hammer, range(len(LOGIN_PATHS))))
    for path, outcomes in zip(LOGIN_PATHS, results, strict=True):
        assert outcomes == ["fail"] * 5 + ["locked"], (path.__name__, outcomes)
    assert time.monotonic() - started < 40
    # Another client is not locked out of the same account by the attacker (per-client
    # lock), and the owner's own client logs in.
    for i, path in enumerate(LOGIN_PATHS):
        assert path(world, f"127.0.0.{31 + i}", *LOCKED[i]) == "ok", path.__name__


# --- no secret in the log -------------------------------------------------------------------


def test_no_password_is_ever_logged(world: World) -> None:
    user, password = CAROL
    ports = world.server.ports
    # SMTP: AUTH PLAIN on 587 (loopback plaintext), AUTH LOGIN on 465; a wrong try; mail
    # out through the smart host (which makes the server use the smart host password).
    # (Wrong passwords from addresses of their own: no throttle delay for the rest.)
    assert smtp_auth(world, "127.0.0.43", user, CAROL_WRONG) == "fail"
    with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.docmd("AUTH", f"PLAIN {plain(user, password)}")[0] == 235
        smtp.sendmail(
            user, ["far@remote.test"], f"From: {user}\r\nSubject: out\r\n\r\nhi\r\n".encode()
        )
    with smtplib.SMTP_SSL("127.0.0.1", ports["submissions"], context=client_tls()) as smtp:
        smtp.ehlo()
        assert smtp.docmd("AUTH", "LOGIN")[0] == 334
        assert smtp.docmd(b64(user))[0] == 334
        assert smtp.docmd(b64(password))[0] == 235
    # IMAP: LOGIN (plain and TLS), AUTHENTICATE PLAIN, one wrong LOGIN.
    assert imap_login_attempt(world, "127.0.0.44", user, CAROL_WRONG) == "fail"
    imap = imaplib.IMAP4("127.0.0.1", ports["imap"])
    imap.login(user, password)
    imap.logout()
    imaps = imaplib.IMAP4_SSL("127.0.0.1", ports["imaps"], ssl_context=client_tls())
    imaps.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
    imaps.logout()
    # POP3: USER/PASS, AUTH PLAIN over TLS.
    pop = poplib.POP3("127.0.0.1", ports["pop3"])
    pop.user(user)
    pop.pass_(password)
    pop.quit()
    pops = poplib.POP3_SSL("127.0.0.1", ports["pop3s"], context=client_tls())
    pops._shortcmd(f"AUTH PLAIN {plain(user, password)}")  # type: ignore[attr-defined]
    pops.quit()
    # Web: a wrong and a right login.
    assert web_login(world, "127.0.0.45", user, CAROL_WRONG) == "fail"
    with web_session(world, CAROL) as web:
        assert web.get("/api/me").status_code == 200
    deadline = time.monotonic() + 20
    while not world.smarthost.messages_to("far@remote.test"):
        assert time.monotonic() < deadline, "the smart host never got the message"
        time.sleep(0.2)
    assert world.smarthost.messages_to("far@remote.test")[0].login == SMARTHOST[0]
    secrets = {password, CAROL_WRONG, SMARTHOST[1]}
    forms = set(secrets)
    for secret in secrets:
        forms |= {b64(secret), plain(user, secret), plain(SMARTHOST[0], secret)}
        forms.add(b64(f"{user}\0{user}\0{secret}"))
    log = "\n".join(world.server.lines)
    assert "auth.ok" in log  # the sessions above were logged ...
    leaked = [form for form in forms if form in log]
    assert not leaked, f"secrets in the log: {leaked}"  # ... without their secrets
    config_dump = world.server.cli("check-config").stdout
    assert SMARTHOST[1] not in config_dump


# --- root: bind, then drop to server.user ---------------------------------------------------

SERVICE_USER = "posthorn-test"


def ensure_service_user() -> None:
    exists = subprocess.run(["id", "-u", SERVICE_USER], capture_output=True).returncode == 0
    if not exists:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
            capture_output=True,
        )


def privileged_address() -> str:
    """A free port below 1024 on a loopback address (port 25 where free)."""
    for host in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"):
        with socket.socket() as s:
            try:
                s.bind((host, 25))
            except OSError:
                continue
            return f"{host}:25"
    raise AssertionError("no free port 25 on 127.0.0.2-6")


@pytest.fixture
def world_readable_tmp() -> Iterator[Path]:
    """pytest's tmp_path is below a root-only directory; the service user must reach this."""
    path = Path(tempfile.mkdtemp(prefix="posthorn-priv-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def status_ids(pid: int) -> dict[str, list[int]]:
    ids = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            ids[key] = [int(v) for v in value.split()]
    return ids


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")
def test_root_binds_a_privileged_port_then_runs_as_the_service_user(
    world_readable_tmp: Path,
) -> None:
    import pwd

    ensure_service_user()
    pw = pwd.getpwnam(SERVICE_USER)
    # A TLS key only root can read: it must still load (it is read before the drop).
    keys = world_readable_tmp / "root-only"
    cert, key = ensure_self_signed(keys, "mail.example.test")
    keys.chmod(0o700)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_uid == 0
    addr = privileged_address()
    ph = Posthorn(world_readable_tmp, services=("imap",))
    config = ph.config_path.read_text()
    config = config.replace(
        "shutdown_timeout = 5\n", f'shutdown_timeout = 5\nuser = "{SERVICE_USER}"\n'
    )
    config = config.replace("smtp = []\n", f'smtp = ["{addr}"]\n')
    config += f'[tls]\ncert = "{cert}"\nkey = "{key}"\n'
    ph.config_path.write_text(config)
    # Accounts made by root before the first start: root-owned files the server must take over.
    ph.cli("domain", "add", DOMAIN, check=True)
    ph.cli("user", "add", ALICE[0], "--password-stdin", input=ALICE[1] + "\n", check=True)
    assert (ph.data_dir / "directory.sqlite3").stat().st_uid == 0
    ph.start()
    try:
        assert ph.proc is not None
        ids = status_ids(ph.proc.pid)
        assert ids["Uid"] == [pw.pw_uid] * 4, ids
        assert ids["Gid"] == [pw.pw_gid] * 4, ids
        assert ids["Groups"] == [], ids
        ph.wait_for_log(f"event=listener.bound service=smtp addr={re.escape(addr)}")
        host, port = addr.split(":")
        with smtplib.SMTP(host, int(port), timeout=20) as smtp:
            smtp.starttls(context=client_tls())  # the root-only key was loaded
            smtp.sendmail("x@other.test", [ALICE[0]], b"Subject: after the drop\r\n\r\nstored\r\n")
        wait_for_messages(ph, ALICE[0], 1)  # the store is writable by the service user
        ph.wait_for_log("event=server.privileges_dropped user=posthorn-test")
        for entry in [ph.data_dir, *ph.data_dir.rglob("*")]:
            if entry.is_symlink() or entry.suffix in ("-wal", "-shm"):
                continue
            st = entry.lstat()
            assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid), entry
        assert key.stat().st_uid == 0  # a key outside the data directory stays root's
    finally:
        assert ph.stop() == 0
    assert not any("running_as_root" in line for line in ph.lines)


def test_unknown_service_user_is_one_line(world_readable_tmp: Path) -> None:
    config = world_readable_tmp / "posthorn.toml"
    listen = "\n".join(
        f"{s} = []"
        for s in ("smtp", "submission", "submissions", "lmtp", "imap", "imaps", "pop3", "pop3s")
    )
    config.write_text(
        f'[server]\ndata_dir = "data"\nuser = "no-such-user-4242"\n'
        f'[listen]\n{listen}\nhttp = ["127.0.0.1:0"]\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "posthorn", "serve", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    errors = [ln for ln in result.stderr.splitlines() if "event=" not in ln]
    assert errors == ["posthorn: server.user: no such user 'no-such-user-4242' on this system"]
