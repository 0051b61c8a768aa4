"""Bad input against a running `posthorn serve` (issue 8, point 3).

Every case drives real sockets on 127.0.0.1 and checks three things: the answer is a protocol
error (never a traceback, never silence), the connection then either goes on (the next command
is answered normally) or is closed cleanly, and the server process's resident memory stays
bounded (VmRSS from /proc, growth under `RSS_BUDGET`). The module fixture finally asserts that
the server logged no traceback and no internal error for anything sent here.

Connection caps are configured small (`LIMITS`) so that they are reached at once, and the slow
client case runs on its own instance with 2-second command timeouts (`TIMEOUTS`); size limits
keep their defaults (50 MB) so the 100 MB uploads really exceed them.
"""

from __future__ import annotations

import contextlib
import imaplib
import random
import re
import smtplib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.harness import Posthorn

ALICE, BOB = "alice@example.test", "bob@example.test"
PASSWORDS = {ALICE: "alice-bad-input-pw", BOB: "bob-bad-input-pw"}
PER_IP = 6
LIMITS = f"""
[smtp]
max_connections_per_ip = {PER_IP}
[imap]
max_connections_per_ip = {PER_IP}
[pop3]
max_connections_per_ip = {PER_IP}
"""
TIMEOUT = 2.0  # the slow-client instance's command timeouts
TIMEOUTS = f"""
[smtp]
command_timeout = {TIMEOUT}
[imap]
login_timeout = {TIMEOUT}
[pop3]
timeout = {TIMEOUT}
"""
HUNDRED_MB = 100 * 1024 * 1024
RSS_BUDGET = 50 * 1024 * 1024
SMTP_REPLY = re.compile(rb"^[2-5]\d\d[ -]")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Posthorn]:
    ph = Posthorn(
        tmp_path_factory.mktemp("badinput"),
        extra=LIMITS,
        services=("smtp", "imap", "pop3", "http"),
    ).start()
    for address, password in PASSWORDS.items():
        ph.cli("user", "add", address, "--password-stdin", input=password + "\n", check=True)
    yield ph
    assert ph.stop() == 0
    bad = [ln for ln in ph.lines if "Traceback" in ln or "internal_error" in ln]
    assert not bad, "\n".join(bad)


def rss(server: Posthorn) -> int:
    """The server process's resident set size in bytes (Linux /proc)."""
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def bounded_memory(server: Posthorn) -> Iterator[None]:
    before = rss(server)
    yield
    grown = rss(server) - before
    assert grown < RSS_BUDGET, f"server RSS grew by {grown / 2**20:.1f} MB"


class Wire:
    """A byte-exact line client for all three protocols."""

    def __init__(self, port: int, timeout: float = 15) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed; unread: " + repr(self.buf[:200]))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def smtp(self) -> bytes:
        """One complete SMTP reply, its last line."""
        while True:
            line = self.line()
            assert SMTP_REPLY.match(line), line
            if line[3:4] == b" ":
                return line

    def smtp_cmd(self, data: bytes) -> bytes:
        self.send(data + b"\r\n")
        return self.smtp()

    def tagged(self, tag: bytes) -> bytes:
        """Read up to the tagged response of ``tag``; untagged BYE is an error."""
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                return line
            assert not line.startswith(b"* BYE"), line

    def imap_cmd(self, tag: bytes, data: bytes) -> bytes:
        self.send(tag + b" " + data + b"\r\n")
        return self.tagged(tag)

    def pop3_cmd(self, data: bytes) -> bytes:
        self.send(data + b"\r\n")
        return self.line()

    def rest(self, timeout: float = 10) -> bytes:
        """Everything until the server closes (fails if it does not within ``timeout``)."""
        self.sock.settimeout(timeout)
        data, self.buf = self.buf, b""
        while chunk := self.sock.recv(65536):
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def smtp_session(server: Posthorn) -> Iterator[Wire]:
    w = Wire(server.ports["smtp"])
    try:
        assert w.smtp().startswith(b"220 ")
        assert w.smtp_cmd(b"EHLO bad.test").startswith(b"250 ")
        yield w
    finally:
        w.close()


@contextlib.contextmanager
def imap_session(server: Posthorn, login: bool = True) -> Iterator[Wire]:
    w = Wire(server.ports["imap"])
    try:
        assert w.line().startswith(b"* OK")
        if login:
            reply = w.imap_cmd(b"L", f'LOGIN {ALICE} "{PASSWORDS[ALICE]}"'.encode())
            assert reply.startswith(b"L OK"), reply
        yield w
    finally:
        w.close()


@contextlib.contextmanager
def pop3_session(server: Posthorn) -> Iterator[Wire]:
    w = Wire(server.ports["pop3"])
    try:
        assert w.line().startswith(b"+OK")
        yield w
    finally:
        w.close()


def web_base(server: Posthorn) -> str:
    return f"http://127.0.0.1:{server.ports['http']}"


@contextlib.contextmanager
def web(server: Posthorn, account: str = ALICE) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web_base(server), timeout=30) as client:
        r = client.post("/api/login", json={"address": account, "password": PASSWORDS[account]})
        assert r.status_code == 200, r.text
        client.headers["X-CSRF-Token"] = r.json()["csrf"]
        yield client


def deliver(server: Posthorn, rcpt: str, message: bytes) -> int:
    """Send ``message`` over SMTP as DATA (dot-stuffed here); the final reply code."""
    with smtp_session(server) as w:
        assert w.smtp_cmd(b"MAIL FROM:<sender@remote.test>").startswith(b"250")
        assert w.smtp_cmd(b"RCPT TO:<" + rcpt.encode() + b">").startswith(b"250")
        assert w.smtp_cmd(b"DATA").startswith(b"354")
        body = message if message.endswith(b"\r\n") else message + b"\r\n"
        body = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in body.split(b"\r\n"))
        reply = w.smtp_cmd(body + b".")
        w.smtp_cmd(b"QUIT")
        return int(reply[:3])


def message_count(server: Posthorn, address: str, mailbox: str = "INBOX") -> int:
    out = server.cli("mail", "ls", address, mailbox, check=True).stdout
    return len(out.splitlines())


def wait_count(server: Posthorn, address: str, count: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while message_count(server, address) < count:
        assert time.monotonic() < deadline, f"{address}: fewer than {count} messages"
        time.sleep(0.2)


# --- over-long lines ------------------------------------------------------------------------


def test_overlong_lines_are_refused_and_sessions_continue(server: Posthorn) -> None:
    huge = b"x" * (8 * 1024 * 1024)  # 8 MB on one line, far past every line limit
    with bounded_memory(server):
        with smtp_session(server) as w:
            reply = w.smtp_cmd(b"MAIL FROM:<" + huge + b"@example.test>")
            assert reply.startswith(b"500 5.5.2"), reply
            assert w.smtp_cmd(b"NOOP").startswith(b"250")
        with imap_session(server, login=False) as w:
            assert w.imap_cmd(b"a1", b"LOGIN " + huge + b" x") == b"a1 BAD command line too long"
            assert w.imap_cmd(b"a2", b"NOOP").startswith(b"a2 OK")
        with imap_session(server) as w:
            reply = w.imap_cmd(b"a3", b'SELECT "' + huge + b'"')
            assert reply == b"a3 BAD command line too long"
            assert w.imap_cmd(b"a4", b"SELECT INBOX").startswith(b"a4 OK")
        with pop3_session(server) as w:
            assert w.pop3_cmd(b"USER " + huge).startswith(b"-ERR")
            assert w.pop3_cmd(b"CAPA").startswith(b"+OK")


def test_http_huge_header_and_request_line(server: Posthorn) -> None:
    huge = b"y" * (1024 * 1024)
    requests = [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + huge + b"\r\n\r\n",
        b"GET /" + huge + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 50_000 + b"\r\n",
    ]
    with bounded_memory(server):
        for request in requests:
            w = Wire(server.ports["http"])
            with contextlib.suppress(ConnectionError):  # the server may close mid-send
                w.send(request)
            try:
                answer = w.rest()
            except ConnectionError:
                answer = b""
            finally:
                w.close()
            # Refused (4xx) or dropped: never a 2xx/5xx for a request it could not read.
            assert answer == b"" or re.match(rb"HTTP/1\.1 4\d\d ", answer), answer[:200]
        assert httpx.get(web_base(server) + "/login", timeout=10).status_code == 200


# --- 100 MB uploads -------------------------------------------------------------------------


def test_imap_huge_literal_before_login_is_not_read(server: Posthorn) -> None:
    with bounded_memory(server), imap_session(server, login=False) as w:
        # RFC 9051 §7.1 TOOBIG instead of "+": the client sends no octets and the session goes on.
        assert w.imap_cmd(b"a1", b"LOGIN {104857600}").startswith(b"a1 NO [TOOBIG]")
        assert w.imap_cmd(b"a2", b"CAPABILITY").startswith(b"a2 OK")


def test_imap_huge_append_after_login(server: Posthorn) -> None:
    with bounded_memory(server):
        with imap_session(server) as w:
            reply = w.imap_cmd(b"a1", b"APPEND INBOX {104857600}")
            assert reply.startswith(b"a1 NO [TOOBIG]"), reply
            assert w.imap_cmd(b"a2", b"NOOP").startswith(b"a2 OK")
        with imap_session(server) as w:
            # Non-synchronizing: the octets come unasked (RFC 7888 §4), so the server must close.
            w.send(b"a3 APPEND INBOX {104857600+}\r\n")
            with contextlib.suppress(ConnectionError):
                for _ in range(16):  # a few MB of it; the server stops reading
                    w.send(b"z" * (1024 * 1024))
            answer = w.rest()
            assert b"* BYE" in answer, answer
            assert b"a3 BAD [TOOBIG]" in answer, answer


def stream_data(w: Wire, total: int) -> None:
    """Exactly ``total`` octets of CRLF-ended lines (of at most 1000 octets), in 1 MB sends."""
    line = b"x" * 998 + b"\r\n"
    block = line * 1024
    left = total
    while left > len(block):
        w.send(block)
        left -= len(block)
    w.send(line * (left // len(line)) + b"y" * (left % len(line) - 2) + b"\r\n")


def test_smtp_data_of_100mb(server: Posthorn) -> None:
    before = message_count(server, ALICE)
    with bounded_memory(server), smtp_session(server) as w:
        assert w.smtp_cmd(b"MAIL FROM:<big@remote.test>").startswith(b"250")
        assert w.smtp_cmd(b"RCPT TO:<" + ALICE.encode() + b">").startswith(b"250")
        assert w.smtp_cmd(b"DATA").startswith(b"354")
        w.send(b"Subject: huge\r\n\r\n")
        stream_data(w, HUNDRED_MB)
        reply = w.smtp_cmd(b".")
        assert reply.startswith(b"552 5.3.4"), reply  # RFC 5321 §4.5.3.1.10, RFC 3463 X.3.4
        assert w.smtp_cmd(b"NOOP").startswith(b"250")
    assert server.cli("queue", "list", check=True).stdout.strip() == "queue is empty"
    assert message_count(server, ALICE) == before


def test_smtp_bdat_of_100mb(server: Posthorn) -> None:
    before = message_count(server, ALICE)
    with bounded_memory(server), smtp_session(server) as w:
        assert w.smtp_cmd(b"MAIL FROM:<big@remote.test>").startswith(b"250")
        assert w.smtp_cmd(b"RCPT TO:<" + ALICE.encode() + b">").startswith(b"250")
        w.send(b"BDAT %d LAST\r\n" % HUNDRED_MB)
        stream_data(w, HUNDRED_MB)
        reply = w.smtp()
        assert reply.startswith(b"552 5.3.4"), reply
        assert w.smtp_cmd(b"NOOP").startswith(b"250")
    assert server.cli("queue", "list", check=True).stdout.strip() == "queue is empty"
    assert message_count(server, ALICE) == before


# --- NUL and invalid UTF-8 ------------------------------------------------------------------

BAD_BYTES = [b"\x00", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"a\x00b", b"\xc0\xaf", b"\x80"]


def test_nul_and_invalid_utf8_over_smtp(server: Posthorn) -> None:
    for bad in BAD_BYTES:
        with smtp_session(server) as w:
            assert w.smtp_cmd(b"EHLO " + bad)[:1] in (b"2", b"5")
            reply = w.smtp_cmd(b"MAIL FROM:<a" + bad + b"@remote.test>")
            assert reply[:1] == b"5", reply
            assert w.smtp_cmd(b"MAIL FROM:<ok@remote.test> ENVID=" + bad)[:1] == b"5"
            assert w.smtp_cmd(b"MAIL FROM:<ok@remote.test>").startswith(b"250")
            reply = w.smtp_cmd(b"RCPT TO:<" + bad + b"@example.test>")
            assert reply[:1] == b"5", reply
            assert w.smtp_cmd(b"RCPT TO:<" + BOB.encode() + b"> NOTIFY=" + bad)[:1] == b"5"
            assert w.smtp_cmd(b"VRFY " + bad)[:1] in (b"2", b"5")
            assert w.smtp_cmd(b"RSET").startswith(b"250")
    # Headers with NUL and invalid UTF-8: accepted as 8-bit data or refused, never a crash.
    before = message_count(server, BOB)
    accepted = 0
    for bad in BAD_BYTES:
        message = b"Subject: s" + bad + b"\r\nFrom: f" + bad + b" <x@y.test>\r\n\r\nbody" + bad
        code = deliver(server, BOB, message)
        assert code in (250, 550, 554), code
        accepted += code == 250
    wait_count(server, BOB, before + accepted)


def test_nul_and_invalid_utf8_over_imap(server: Posthorn) -> None:
    for i, bad in enumerate(BAD_BYTES):
        with imap_session(server, login=False) as w:
            reply = w.imap_cmd(b"a", b'LOGIN "' + bad + b'" "' + bad + b'"')
            assert re.match(rb"a (NO|BAD) ", reply), reply
        with imap_session(server) as w:
            for n, cmd in enumerate(
                [
                    b'SELECT "' + bad + b'"',
                    b'CREATE "box' + bad + b'"',
                    b'RENAME INBOX "' + bad + b'"',
                    b'STATUS "' + bad + b'" (MESSAGES)',
                    b'LIST "" "' + bad + b'*"',
                    b"CREATE {%d}\r\nx%s" % (len(bad) + 1, bad),
                ]
            ):
                tag = b"t%d" % n
                if b"{" in cmd:  # a literal: wait for the continuation (or a refusal)
                    head, literal = cmd.split(b"\r\n", 1)
                    w.send(tag + b" " + head + b"\r\n")
                    reply = w.line()
                    if reply.startswith(b"+"):
                        w.send(literal + b"\r\n")
                        reply = w.tagged(tag)
                else:
                    reply = w.imap_cmd(tag, cmd)
                assert re.match(rb"t\d (OK|NO|BAD) ", reply), reply
            assert w.imap_cmd(b"s", b"SELECT INBOX").startswith(b"s OK")
            for n, cmd in enumerate(
                [
                    b'SEARCH SUBJECT "' + bad + b'"',
                    b"SEARCH CHARSET UTF-8 TEXT {%d+}\r\n%s" % (len(bad), bad),
                    b'SEARCH HEADER "X' + bad + b'" "v"',
                    b"STORE 1:* +FLAGS (kw" + bad + b")",
                    b'FETCH 1:* (BODY.PEEK[HEADER.FIELDS ("' + bad + b'")])',
                ]
            ):
                reply = w.imap_cmd(b"q%d" % n, cmd)
                assert re.match(rb"q\d (OK|NO|BAD) ", reply), reply
            assert w.imap_cmd(b"z%d" % i, b"NOOP").startswith(b"z%d OK" % i)


def test_nul_and_invalid_utf8_over_pop3(server: Posthorn) -> None:
    for bad in BAD_BYTES:
        with pop3_session(server) as w:
            assert w.pop3_cmd(b"USER " + bad).startswith((b"+OK", b"-ERR"))
            assert w.pop3_cmd(b"PASS " + bad).startswith(b"-ERR")
            assert w.pop3_cmd(b"APOP " + bad + b" " + bad).startswith(b"-ERR")
            assert w.pop3_cmd(bad + b"CAPA").startswith(b"-ERR")
            assert w.pop3_cmd(b"CAPA").startswith(b"+OK")
            while w.line() != b".":
                pass
            assert w.pop3_cmd(b"QUIT").startswith(b"+OK")
            assert w.rest() == b""


def test_nul_and_invalid_utf8_over_http(server: Posthorn) -> None:
    with web(server) as client:
        for bad in ["%00", "%FF%FE", "%C3", "%ED%A0%80", "a%00b"]:
            r = client.get(f"/api/mailboxes/{bad}/messages")
            assert r.status_code in (400, 404), (bad, r.status_code)
            r = client.get(f"/api/mailboxes/INBOX/messages?q={bad}")
            assert r.status_code in (200, 400), (bad, r.status_code)
            r = client.post("/api/mailboxes", json={"name": f"x{bad}"})
            assert r.status_code in (200, 201, 400), (bad, r.status_code)
        r = client.post(
            "/api/mailboxes",
            content=b'{"name": "\xff\xfe"}',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400, r.status_code
    with httpx.Client(base_url=web_base(server), timeout=10) as anon:
        r = anon.post(
            "/api/login",
            content=b'{"address": "\xff@example.test", "password": "\x00"}',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code in (400, 401), r.status_code


# --- pipelined garbage ----------------------------------------------------------------------


def garbage(rng: random.Random, count: int) -> list[bytes]:
    """Random lines: any octet but CR and LF, and never ending in a literal announcement."""
    alphabet = bytes(b for b in range(256) if b not in (10, 13, ord("{"), ord("}")))
    return [bytes(rng.choices(alphabet, k=rng.randint(0, 120))) for _ in range(count)]


def test_pipelined_garbage(server: Posthorn) -> None:
    rng = random.Random(8)
    lines = garbage(rng, 5000)
    with bounded_memory(server):
        # SMTP: one reply per line, in order, until the bad-command limit ends it with 421.
        w = Wire(server.ports["smtp"])
        w.smtp()
        w.send(b"".join(ln + b"\r\n" for ln in lines))
        replies = [ln for ln in w.rest().split(b"\r\n") if ln]
        w.close()
        assert all(SMTP_REPLY.match(r) for r in replies), replies[:5]
        assert replies[-1].startswith(b"421 4.7.0"), replies[-3:]
        assert all(r[:1] == b"5" for r in replies[:-1] if r[3:4] == b" ")
        # IMAP: tagged garbage, one tagged answer per line, in order; then a real command.
        with imap_session(server) as w:
            w.send(b"".join(b"g%d " % i + ln + b"\r\n" for i, ln in enumerate(lines)))
            w.send(b"end NOOP\r\n")
            seen = []
            while True:
                line = w.line()
                assert not line.startswith(b"* BYE"), line
                m = re.match(rb"(g\d+|end) (OK|NO|BAD)", line)
                if m:
                    seen.append(m.group(1))
                    if m.group(1) == b"end":
                        break
            numbers = [int(t[1:]) for t in seen[:-1]]
            assert numbers == sorted(numbers) and len(numbers) >= len(lines) * 0.99, len(numbers)
        # POP3: -ERR per line, then closed after too many bad commands.
        w = Wire(server.ports["pop3"])
        w.line()
        w.send(b"".join(ln + b"\r\n" for ln in lines))
        answers = [ln for ln in w.rest().split(b"\r\n") if ln]
        w.close()
        assert answers and all(a.startswith(b"-ERR") for a in answers), answers[:5]


# --- connections from one IP ----------------------------------------------------------------


def refused(port: int, count: int, batch: int = 100) -> list[bytes]:
    """Open ``count`` more connections in batches; what each got before the server closed it."""
    answers = []
    for start in range(0, count, batch):
        socks = [
            socket.create_connection(("127.0.0.1", port), timeout=10)
            for _ in range(min(batch, count - start))
        ]
        for s in socks:
            data = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := s.recv(1024):
                    data += chunk
            answers.append(data)
            s.close()
    return answers


@pytest.mark.parametrize(
    ("service", "greeting", "refusal"),
    [
        ("smtp", b"220 ", b"421 4.7.0 "),
        ("imap", b"* OK", b"* BYE [UNAVAILABLE] too many connections\r\n"),
        ("pop3", b"+OK", b"-ERR"),
    ],
)
def test_thousands_of_connections_from_one_ip(
    server: Posthorn, service: str, greeting: bytes, refusal: bytes
) -> None:
    port = server.ports[service]
    time.sleep(0.3)  # connections of earlier tests are released
    with bounded_memory(server):
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(PER_IP)]
        try:
            for s in held:
                assert s.recv(1024).startswith(greeting)
            answers = refused(port, 1000)
            assert all(a.startswith(refusal) for a in answers), {a[:60] for a in answers}
        finally:
            for s in held:
                s.close()
    time.sleep(0.3)
    w = Wire(port)
    assert w.line().startswith(greeting.strip())  # slots come back
    w.close()


# --- slow clients ---------------------------------------------------------------------------


def trickle(port: int, result: dict[str, float]) -> None:
    """Read the greeting, then send one byte a second, never a line end; how long until the
    server hangs up (or 4 timeouts, when the test gives up)."""
    w = Wire(port, timeout=0.3)
    w.line()
    started = time.monotonic()
    try:
        while time.monotonic() - started < 4 * TIMEOUT + 2:
            try:
                w.send(b"N")
                if w.sock.recv(1024) == b"":
                    break
                break  # the server answered (a timeout reply); it closes next
            except TimeoutError:
                pass
            except OSError:
                break
            time.sleep(max(0.0, 1 - (time.monotonic() - started) % 1))
        result["cut_after"] = round(time.monotonic() - started, 1)
    finally:
        w.close()


def test_slow_clients_are_cut_off_by_the_command_timeout(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A client trickling a byte a second must not hold a connection forever: the command
    timeout bounds the whole command, not the gap between two reads (slowloris)."""
    ph = Posthorn(
        tmp_path_factory.mktemp("slow"), extra=TIMEOUTS, services=("smtp", "imap", "pop3")
    ).start()
    try:
        results: dict[str, dict[str, float]] = {"smtp": {}, "imap": {}, "pop3": {}}
        threads = [
            threading.Thread(target=trickle, args=(ph.ports[name], results[name]))
            for name in results
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        assert ph.stop() == 0
    slow = {name: r for name, r in results.items() if r["cut_after"] > 2 * TIMEOUT + 1.5}
    assert not slow, f"not cut off by the {TIMEOUT} s command timeout: {slow}"


# --- malformed MIME -------------------------------------------------------------------------

H = b"From: a@remote.test\r\nTo: alice@example.test\r\n"
MALFORMED = [
    H + b"Subject: unterminated multipart\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\nContent-Type: multipart/alt",
    H + b"Subject: no boundary\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody\r\n",
    H + b'Subject: empty boundary\r\nContent-Type: multipart/mixed; boundary=""\r\n\r\n--\r\n',
    H + b"Subject: truncated rfc822\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nX:",
    H + b"Subject: bad base64\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64"
    b"\r\n\r\n!!!!====AAAA*\r\n",
    H + b"Subject: bad charset\r\nContent-Type: text/plain; charset=x-no-such\r\n\r\n\xe9\xff\r\n",
    H + b"Subject: =?utf-8?q?broken=ZZ?= =?x?b?!!!?= =?utf-8?B?w6\r\n\r\nb\r\n",
    H + b"Subject: no subtype\r\nContent-Type: text\r\nContent-Type: /plain\r\n\r\nb\r\n",
    H + b"Subject: rfc2231 junk\r\nContent-Type: application/x; name*0*=utf-8''%E2%82; "
    b"name*2*=%AC; name*=''\r\nContent-Disposition: attachment; filename*=x''%ZZ\r\n\r\nb\r\n",
    H + b"Subject: deep\r\n" + b"Content-Type: multipart/mixed; boundary=d\r\n\r\n--d\r\n" * 150,
    H + b"Subject: boundary in preamble\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b--\r\n--b\r\n\r\n--b\r\n\r\n--b--\r\n--b\r\n",
    H + b"Subject: 8-bit \xff\xfe headers\r\nX-\xff: \xc3\r\n\r\nbody\r\n",
    b"no header separator at all, just a line\r\nand another",
    H + b"Subject: folded forever\r\nX-Long: " + b"word \r\n " * 2000 + b"\r\n\r\nb\r\n",
    H + b'Subject: addresses\r\nCc: <<<@>>>, "unterminated, a@@b, (comment (nested\r\n'
    b"Reply-To: ;;;:,\r\nDate: 99 Foo 2024 99:99 +9999\r\n\r\nb\r\n",
    H + b"Subject: rfc822 in multipart\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: message/rfc822\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b--\r\n",
]


def test_malformed_mime_is_read_sanely_over_imap_and_web(server: Posthorn) -> None:
    before = message_count(server, ALICE)
    codes = [deliver(server, ALICE, message) for message in MALFORMED]
    assert set(codes) <= {250, 550, 554}, codes
    assert codes.count(250) >= len(MALFORMED) - 2, codes
    wait_count(server, ALICE, before + codes.count(250))
    with imap_session(server) as w:
        assert w.imap_cmd(b"s", b"EXAMINE INBOX").startswith(b"s OK")
        for item in (
            b"BODYSTRUCTURE",
            b"ENVELOPE",
            b"BODY.PEEK[1.2]",
            b"BODY.PEEK[1.MIME]",
            b"BODY.PEEK[2.1.HEADER]",
            b"BINARY.PEEK[1]",
            b"BODY",
            b"RFC822.SIZE",
        ):
            reply = w.imap_cmd(b"f", b"UID FETCH 1:* (UID " + item + b")")
            assert re.match(rb"f (OK|NO) ", reply), (item, reply)
            assert b"SERVERBUG" not in reply
    with web(server) as client:
        r = client.get("/api/mailboxes/INBOX/messages", params={"per_page": 100})
        assert r.status_code == 200, r.text
        for summary in r.json()["messages"]:
            msg = client.get(f"/api/mailboxes/INBOX/messages/{summary['uid']}")
            assert msg.status_code == 200, (summary, msg.text)
            for att in msg.json()["attachments"]:
                part = client.get(
                    f"/api/mailboxes/INBOX/messages/{summary['uid']}/parts/{att['part']}"
                )
                assert part.status_code == 200, (summary, att)


# --- the web compose form, attachment names, search -----------------------------------------


def test_header_injection_through_the_web_compose_form(server: Posthorn) -> None:
    before = message_count(server, BOB)
    attempts = [
        {"to": BOB, "subject": "hi\r\nBcc: victim@remote.test", "body": "x"},
        {"to": BOB, "subject": "hi\nBcc: victim@remote.test", "body": "x"},
        {"to": BOB + "\r\nBcc: victim@remote.test", "subject": "hi", "body": "x"},
        {"to": BOB, "cc": "c@remote.test\rBcc: victim@remote.test", "subject": "s"},
        {"to": BOB, "subject": "nul\x00Bcc: victim@remote.test", "body": "x"},
        {"to": BOB, "subject": "s", "in_reply_to": "<a@b>\r\nBcc: victim@remote.test"},
    ]
    with web(server) as client:
        for form in attempts:
            files = {"attachments": ("", b"", "application/octet-stream")}
            r = client.post("/api/send", data=form, files=files)
            assert r.status_code == 400, (form, r.status_code, r.text)
    assert server.cli("queue", "list", check=True).stdout.strip() == "queue is empty"
    time.sleep(0.5)
    assert message_count(server, BOB) == before
    assert message_count(server, ALICE, "Sent") == 0


def test_attachment_names_with_path_traversal(server: Posthorn) -> None:
    names = {"../../x": "x", "..\\..\\evil.exe": "evil.exe", "/etc/passwd": "passwd"}
    before = message_count(server, BOB)
    with web(server) as client:
        files = [
            ("attachments", (name, b"content of " + name.encode(), "text/plain")) for name in names
        ]
        r = client.post("/api/send", data={"to": BOB, "subject": "traversal"}, files=files)
        assert r.status_code == 200, r.text
    wait_count(server, BOB, before + 1)
    with web(server, BOB) as client:
        listing = client.get("/api/mailboxes/INBOX/messages", params={"q": "traversal"})
        (summary,) = listing.json()["messages"]
        uid = summary["uid"]
        raw = client.get(f"/api/mailboxes/INBOX/messages/{uid}/raw").content
        assert b"../" not in raw and b"..\\" not in raw and b"/etc/" not in raw
        attachments = client.get(f"/api/mailboxes/INBOX/messages/{uid}").json()["attachments"]
        assert sorted(a["filename"] for a in attachments) == sorted(names.values())
        for att in attachments:
            part = client.get(f"/api/mailboxes/INBOX/messages/{uid}/parts/{att['part']}")
            disposition = part.headers["content-disposition"]
            assert disposition == f"attachment; filename*=UTF-8''{att['filename']}"
    # Mail arriving over SMTP with hostile names is downloaded under a safe name too.
    hostile = (
        H + b"Subject: hostile names\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        b'--b\r\nContent-Disposition: attachment; filename="../../../etc/cron.d/x"\r\n\r\nA\r\n'
        b"--b\r\nContent-Disposition: attachment; filename*=utf-8''..%2F..%2F%2E%2Eb\r\n\r\nB\r\n"
        b"--b--\r\n"
    )
    count = message_count(server, ALICE)
    assert deliver(server, ALICE, hostile) == 250
    wait_count(server, ALICE, count + 1)
    with web(server) as client:
        listing = client.get("/api/mailboxes/INBOX/messages", params={"q": "hostile names"})
        (summary,) = listing.json()["messages"]
        msg = client.get(f"/api/mailboxes/INBOX/messages/{summary['uid']}").json()
        for att in msg["attachments"]:
            assert "/" not in att["filename"] and not att["filename"].startswith(".")
            part = client.get(f"/api/mailboxes/INBOX/messages/{summary['uid']}/parts/{att['part']}")
            assert "%2F" not in part.headers["content-disposition"]
            assert part.headers["content-disposition"].startswith("attachment; filename*=")


SQL = [
    "'; DROP TABLE messages; --",
    '" OR 1=1 --',
    "%' OR '1'='1",
    "_%",
    "\\'; DELETE FROM mailboxes; --",
    "1; ATTACH DATABASE '/tmp/x' AS x; --",
]


def test_sql_metacharacters_in_imap_and_web_search(server: Posthorn) -> None:
    assert deliver(server, ALICE, H + b"Subject: '; DROP TABLE messages; --\r\n\r\nb\r\n") == 250
    time.sleep(0.5)
    total = message_count(server, ALICE)
    with imap_session(server) as w:
        assert w.imap_cmd(b"s", b"SELECT INBOX").startswith(b"s OK")
        for i, text in enumerate(SQL):
            quoted = text.replace("\\", "\\\\").replace('"', '\\"').encode()
            for key in (b"SUBJECT", b"TEXT", b"FROM", b"HEADER X-Y"):
                w.send(b'q%d SEARCH %s "%s"\r\n' % (i, key, quoted))
                untagged = w.line()
                assert untagged.startswith(b"* SEARCH"), untagged
                assert w.tagged(b"q%d" % i).startswith(b"q%d OK" % i)
        w.send(b'x SEARCH SUBJECT "\'; DROP TABLE messages; --"\r\n')
        hits = w.line().split()[2:]
        assert len(hits) == 1 and w.tagged(b"x").startswith(b"x OK")
        w.send(b'x CREATE "\'; DROP TABLE mailboxes; --"\r\n')
        assert w.tagged(b"x").startswith(b"x OK")
        assert w.imap_cmd(b"y", b'DELETE "\'; DROP TABLE mailboxes; --"').startswith(b"y OK")
    with web(server) as client:
        for text in SQL:
            for field in ("all", "subject", "from", "body"):
                r = client.get("/api/mailboxes/INBOX/messages", params={"q": text, "in": field})
                assert r.status_code == 200, (text, r.text)
        r = client.get("/api/mailboxes/INBOX/messages", params={"q": SQL[0], "in": "subject"})
        assert r.json()["total"] == 1
    assert message_count(server, ALICE) == total  # the store is intact
    with imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10) as m:
        m.login(ALICE, PASSWORDS[ALICE])
        typ, data = m.select("INBOX", readonly=True)
        assert typ == "OK" and int(data[0] or b"0") == total
        m.logout()
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        assert s.noop()[0] == 250
