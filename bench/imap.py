"""IMAP benchmark: big-mailbox commands, command rates and idle-connection memory.

Prints figures; it is not a test. Everything runs on 127.0.0.1 in a fresh temporary directory.
posthorn: the config enables the ``imap`` listener only; the account is added with
``posthorn user add --password-stdin`` and its INBOX is filled with ``--messages`` varied
messages (plain, multipart/alternative, some with an attachment) straight through the store,
before ``posthorn serve`` starts. With ``--dovecot``, a private Dovecot instance (its own config,
Maildir, passwd-file with a {PLAIN} password, ``dovecot -F``) gets the same messages as Maildir
files, and every figure is measured against it too.

Measured, each command timed from sending it to its tagged reply (a warm-up run first, then
the median of ``--repeat`` runs), on one connection with INBOX selected:

- ``UID FETCH 1:* (FLAGS)``, ``FETCH 1:* (ENVELOPE BODYSTRUCTURE)``, SEARCH on a header
  (SUBJECT word, Message-ID) and on the body;
- commands/s of a NOOP loop and of a ``UID FETCH n (FLAGS)`` loop; APPEND messages/s (one at a
  time, LITERAL+, each awaited);
- memory per idle connection: ``--connections`` clients logged in (then also with INBOX
  selected), as the growth of the server's memory divided by the connection count. posthorn is
  one process; Dovecot is every process under its master (one ``imap`` process per connection).
  Both RSS and PSS (/proc/PID/smaps_rollup: shared pages divided among their users) are summed.
  The servers are restarted first, so that memory freed by the big FETCHes is not reused.

    .venv/bin/python bench/imap.py                        # posthorn, 10,000 messages
    .venv/bin/python bench/imap.py --dovecot              # and Dovecot (apt-get installs it)
    .venv/bin/python bench/imap.py --messages 2000 --connections 200 --skip-posthorn --dovecot
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import pwd
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from posthorn.config import SERVICES
from posthorn.store.sqlite import SQLiteMailStore

USER = "bench@bench.test"
PASSWORD = "bench-password"
SUBJECT_WORD = "xylophone"  # in the subject of every 97th message
BODY_WORD = "zeppelin"  # in the body of every 89th message
_VOCABULARY = """invoice meeting report quarterly budget release holiday schedule review draft
minutes proposal contract update reminder travel lunch project server backup migration plan
customer feedback roadmap hiring offsite agenda notes question answer"""
WORDS = _VOCABULARY.split()
PEOPLE = [
    ("Alice Martin", "alice@example.com"),
    ("Bob Dupont", "bob@example.net"),
    ("Chloé Bernard", "chloe@example.org"),
    ("Dmitri Ivanov", "dmitri@mail.example.ru"),
    ("Eve O'Neil", "eve@example.co.uk"),
    ("", "noreply@notifications.example.com"),
    ("Zoë Müller", "zoe@beispiel.example"),
    ("Yuki Tanaka", "yuki@example.jp"),
]


# --- the mailbox ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    data: bytes
    date: datetime
    message_id: str


def message_id(n: int) -> str:
    return f"<{n}.{n * 7919 % 100_000:05d}@mail.example.net>"


def _text(rnd: random.Random, n: int, lines: int) -> str:
    out = []
    for i in range(lines):
        line = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(6, 12)))
        if i == 0 and n % 89 == 0:
            line += " " + BODY_WORD
        out.append(line.capitalize() + ".")
    return "\r\n".join(out) + "\r\n"


def make_message(n: int) -> Message:
    """Message ``n`` of the mailbox: deterministic, varied in sender, subject, date and shape
    (60 % text/plain, 30 % multipart/alternative, 10 % multipart/mixed with an attachment)."""
    rnd = random.Random(n)
    date = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=53 * n + rnd.randrange(50))
    name, addr = rnd.choice(PEOPLE)
    subject = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(2, 6))).capitalize()
    if n % 97 == 0:
        subject += " " + SUBJECT_WORD
    if rnd.random() < 0.3:
        subject = "Re: " + subject
    from_ = f'"{name}" <{addr}>' if name else addr
    if not name.isascii():  # RFC 2047 encoded-word, as real mail has
        from_ = f"=?utf-8?b?{base64.b64encode(name.encode()).decode()}?= <{addr}>"
    head = [
        "Return-Path: <" + addr + ">",
        "Received: from mx.example.net (mx.example.net [192.0.2.7])\r\n\tby mail.bench.test "
        f"(posthorn) with ESMTPS id B{n:06d}\r\n\tfor <{USER}>; {format_datetime(date)}",
        f"Date: {format_datetime(date)}",
        f"From: {from_}",
        f"To: Bench User <{USER}>",
        f"Subject: {subject}",
        f"Message-ID: {message_id(n)}",
        "MIME-Version: 1.0",
    ]
    if rnd.random() < 0.3:
        head.append("Cc: Team <team@bench.test>, ops@bench.test")
    if n and rnd.random() < 0.3:
        head.append(f"In-Reply-To: {message_id(rnd.randrange(n))}")
    text = _text(rnd, n, rnd.randint(3, 40))
    kind = n % 10
    if kind < 6:
        head.append("Content-Type: text/plain; charset=utf-8")
        body = text
    else:
        alt = (
            "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            + text
            + "--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>"
            + text.replace("\r\n", "</p>\r\n<p>")
            + "</p></body></html>\r\n--alt--\r\n"
        )
        if kind < 9:
            head.append('Content-Type: multipart/alternative; boundary="alt"')
            body = alt
        else:
            blob = base64.encodebytes(rnd.randbytes(rnd.randint(2_000, 40_000))).decode()
            head.append('Content-Type: multipart/mixed; boundary="mix"')
            body = (
                '--mix\r\nContent-Type: multipart/alternative; boundary="alt"\r\n\r\n'
                + alt
                + "--mix\r\nContent-Type: application/pdf; name=report.pdf\r\n"
                + "Content-Disposition: attachment; filename=report.pdf\r\n"
                + "Content-Transfer-Encoding: base64\r\n\r\n"
                + blob.replace("\n", "\r\n")
                + "--mix--\r\n"
            )
    data = ("\r\n".join(head) + "\r\n\r\n" + body).encode()
    return Message(data, date, message_id(n))


# --- a raw IMAP client ------------------------------------------------------------------------


class Client:
    """One blocking connection. `command` sends a line and reads up to its tagged reply,
    skipping literals (``{n}``/``{n+}``/``~{n}``) so their contents are never taken for lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = bytearray()
        self.tags = 0
        self._read_through(b"*")  # the greeting

    def _fill(self) -> int:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data
        return len(data)

    def _read_through(self, tag: bytes) -> tuple[bytes, bytes, int]:
        """Read up to the line starting with ``tag``; return (that line, everything before it,
        octets read)."""
        buf, pos, octets, line_start, prefix = self.buf, 0, 0, True, tag + b" "
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                octets += self._fill()
                continue
            if line_start and buf.startswith(prefix, pos):
                line, before = bytes(buf[pos:eol]), bytes(buf[:pos])
                del buf[: eol + 2]
                return line, before, octets
            if eol > pos and buf[eol - 1] == 0x7D:  # "}": a literal follows this CRLF
                size = int(buf[buf.rfind(b"{", pos, eol) + 1 : eol - 1].rstrip(b"+"))
                pos, line_start = eol + 2 + size, False
                while len(buf) < pos:
                    octets += self._fill()
            else:
                pos, line_start = eol + 2, True

    def command(self, text: str, literal: bytes | None = None) -> Reply:
        self.tags += 1
        tag = b"a%d" % self.tags
        wire = tag + b" " + text.encode()
        if literal is not None:  # LITERAL+ (RFC 7888): no wait for a continuation
            wire += b" {%d+}\r\n" % len(literal) + literal
        started = time.perf_counter()
        self.sock.sendall(wire + b"\r\n")
        line, data, octets = self._read_through(tag)
        elapsed = time.perf_counter() - started
        status = line.split(b" ", 2)[1]
        return Reply(status, line, data, octets, elapsed)

    def ok(self, text: str, literal: bytes | None = None) -> Reply:
        reply = self.command(text, literal)
        if reply.status != b"OK":
            raise RuntimeError(f"{text[:60]!r}: {reply.line.decode(errors='replace')}")
        return reply

    def login(self) -> None:
        self.ok(f'LOGIN "{USER}" "{PASSWORD}"')

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class Reply:
    status: bytes
    line: bytes
    data: bytes
    octets: int
    elapsed: float

    def search_hits(self) -> int:
        for line in self.data.split(b"\r\n"):
            if line.startswith(b"* SEARCH"):
                return len(line.split()) - 2
        return 0


# --- the servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory(pids: list[int]) -> tuple[int, int]:
    """(RSS, PSS) in KiB, summed over ``pids`` (processes gone meanwhile count nothing)."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return rss, pss


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


class Posthorn:
    name = "posthorn"

    def __init__(self, root: Path, connections: int) -> None:
        self.root = root
        root.mkdir()
        self.data_dir = root / "data"
        self.config = root / "posthorn.toml"
        self.log = root / "serve.log"
        off = "".join(f"{s} = []\n" for s in SERVICES if s != "imap")
        self.config.write_text(
            f'[server]\nhostname = "mail.bench.test"\ndata_dir = "{self.data_dir}"\n'
            f'domains = ["bench.test"]\nshutdown_timeout = 5\n'
            f'[listen]\nimap = ["127.0.0.1:0"]\n{off}'
            f"[imap]\nmax_connections = {connections + 100}\n"
            f"max_connections_per_ip = {connections + 50}\n"
            "[auth]\nplaintext_on_loopback = true\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, stdin: str | None = None) -> None:
        cmd = [sys.executable, "-m", "posthorn", *args, "-c", str(self.config)]
        done = subprocess.run(cmd, input=stdin, text=True, capture_output=True)
        if done.returncode != 0:
            raise SystemExit(f"posthorn {' '.join(args)}: {done.stderr.strip()}")

    def prepare(self, messages: list[Message]) -> None:
        self.cli("domain", "add", "bench.test")
        self.cli("user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
        asyncio.run(self._fill(messages))

    async def _fill(self, messages: list[Message]) -> None:
        store = SQLiteMailStore(self.data_dir)  # before `serve`: it locks the data dir
        await store.open()
        try:
            await store.ensure_account(USER)
            box = (await store.get_mailbox(USER, "INBOX")).id
            queue = iter(messages)

            async def appender() -> None:
                for m in queue:  # shared iterator: each message once
                    await store.append(USER, box, m.data, internal_date=m.date)

            await asyncio.gather(*(appender() for _ in range(50)))
        finally:
            await store.close()

    def start(self) -> int:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "posthorn", "serve", "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            for line in self.log.read_text(errors="replace").splitlines():
                if "event=listener.bound" in line and "service=imap" in line:
                    return int(line.split(" addr=")[1].split()[0].rsplit(":", 1)[1])
            time.sleep(0.1)
        self.stop()
        raise SystemExit("posthorn did not start:\n" + self.log.read_text(errors="replace"))

    def pids(self) -> list[int]:
        assert self.proc is not None
        return descendants(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Dovecot:
    """A private Dovecot instance: own config, sockets, state, log and Maildir in ``root``."""

    name = "dovecot"

    def __init__(self, root: Path, connections: int) -> None:
        self.root = root
        root.mkdir()
        self.config = root / "dovecot.conf"
        self.home = root / "home"
        self.log = root / "dovecot.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.connections = connections

    def _write_config(self) -> None:
        processes, clients = self.connections + 200, 4 * self.connections + 1000
        if os.getuid() == 0:  # the package's users; mail owned by nobody
            internal, login, ids = "dovecot", "dovenull", "65534:65534"
        else:
            internal = login = pwd.getpwuid(os.getuid()).pw_name
            ids = f"{os.getuid()}:{os.getgid()}"
        (self.root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{ids}::{self.home}::\n")
        self.config.write_text(f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 1
default_internal_user = {internal}
default_login_user = {login}
default_process_limit = {processes}
default_client_limit = {clients}
protocol imap {{
  mail_max_userip_connections = {self.connections + 100}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service imap {{
  process_limit = {processes}
  client_limit = 1
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.root}/users
}}
userdb {{
  driver = passwd-file
  args = {self.root}/users
}}
""")

    def prepare(self, messages: list[Message]) -> None:
        if shutil.which("dovecot") is None:
            if os.getuid() != 0:
                raise SystemExit("dovecot is missing: apt-get install -y dovecot-imapd")
            print("installing dovecot-imapd (apt-get) ...", flush=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "dovecot-imapd"],
                check=True,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                stdout=subprocess.DEVNULL,
            )
        maildir = self.home / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        base = int(time.time())
        for n, m in enumerate(messages):  # Maildir names: time.unique.host,S=size:2,flags
            path = maildir / "cur" / f"{base}.M{n}P{os.getpid()}.bench,S={len(m.data)}:2,"
            path.write_bytes(m.data)
            stamp = m.date.timestamp()
            os.utime(path, (stamp, stamp))  # the INTERNALDATE
        if os.getuid() == 0:
            for d in (self.root.parent, self.root):  # auth and mail processes: other users
                d.chmod(0o755)
            for dirpath, _, files in os.walk(self.home):
                os.chown(dirpath, 65534, 65534)
                for f in files:
                    os.chown(os.path.join(dirpath, f), 65534, 65534)
        self.port = free_port()
        self._write_config()

    def start(self) -> int:
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(self.config)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self.port
            except OSError:
                time.sleep(0.1)
        self.stop()
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        raise SystemExit("dovecot did not start:\n" + log)

    def pids(self) -> list[int]:
        assert self.proc is not None
        return descendants(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


Server = Posthorn | Dovecot


# --- the measurements -------------------------------------------------------------------------


@dataclass
class Figure:
    text: str
    value: float | None = None  # seconds, or KiB per connection, compared with the target
    detail: str = ""


def timed(client: Client, command: str, repeat: int) -> tuple[float, Reply]:
    client.ok(command)  # warm-up: caches filled, indexes built
    replies = [client.ok(command) for _ in range(repeat)]
    return statistics.median(r.elapsed for r in replies), replies[-1]


def big_mailbox(port: int, args: argparse.Namespace, target_id: str) -> dict[str, Figure]:
    out: dict[str, Figure] = {}
    c = Client(port)
    c.login()
    select = c.ok("SELECT INBOX")
    out["SELECT INBOX (first)"] = Figure(f"{select.elapsed * 1000:,.1f} ms")
    cases = [
        ("UID FETCH 1:* (FLAGS)", "UID FETCH 1:* (FLAGS)"),
        ("FETCH 1:* (ENVELOPE BODYSTRUCTURE)", "FETCH 1:* (ENVELOPE BODYSTRUCTURE)"),
        (f"SEARCH SUBJECT {SUBJECT_WORD}", f'SEARCH SUBJECT "{SUBJECT_WORD}"'),
        ("SEARCH HEADER Message-ID", f'SEARCH HEADER Message-ID "{target_id}"'),
        (f"SEARCH BODY {BODY_WORD}", f'SEARCH BODY "{BODY_WORD}"'),
    ]
    for label, command in cases:
        median, reply = timed(c, command, args.repeat)
        detail = (
            f"{reply.octets / 1e6:.2f} MB" if "FETCH" in command else f"{reply.search_hits()} hits"
        )
        out[label] = Figure(f"{median * 1000:,.1f} ms", median, detail)
    uids = [int(u) for u in c.ok("UID SEARCH ALL").data.split(b"\r\n")[0].split()[2:]]
    rnd = random.Random(1)
    for label, commands in (
        ("NOOP loop", ["NOOP"] * args.loop),
        (
            "UID FETCH n (FLAGS) loop",
            [f"UID FETCH {rnd.choice(uids)} (FLAGS)" for _ in range(args.loop)],
        ),
    ):
        started = time.perf_counter()
        for command in commands:
            c.ok(command)
        rate = args.loop / (time.perf_counter() - started)
        out[label] = Figure(f"{rate:,.0f} cmd/s")
    c.ok("CREATE Bench")
    sample = [make_message(n).data for n in range(args.appends)]
    started = time.perf_counter()
    for data in sample:
        c.ok("APPEND Bench ()", data)
    out["APPEND, one at a time"] = Figure(
        f"{args.appends / (time.perf_counter() - started):,.0f} msg/s"
    )
    c.command("LOGOUT")
    c.close()
    return out


def idle_memory(server: Server, port: int, count: int) -> dict[str, Figure]:
    """Memory growth of the server per idle connection: logged in, then INBOX selected."""
    warm = Client(port)  # load everything a session needs before the baseline
    warm.login()
    warm.ok("SELECT INBOX")
    warm.ok("UID FETCH 1:* (FLAGS)")
    warm.command("LOGOUT")
    warm.close()
    time.sleep(1)
    before = memory(server.pids())
    clients = []
    started = time.perf_counter()
    for _ in range(count):
        c = Client(port)
        c.login()
        clients.append(c)
    login_rate = count / (time.perf_counter() - started)
    time.sleep(1)
    logged_in = memory(server.pids())
    started = time.perf_counter()
    for c in clients:
        c.ok("SELECT INBOX")
    select_rate = count / (time.perf_counter() - started)
    time.sleep(1)
    selected = memory(server.pids())
    for c in clients:
        c.close()

    def per_connection(after: tuple[int, int]) -> Figure:
        rss, pss = ((a - b) / count for a, b in zip(after, before, strict=True))
        return Figure(f"{pss:,.0f} KiB", pss, f"RSS {rss:,.0f} KiB")

    return {
        f"connect + LOGIN, {count} in a row": Figure(f"{login_rate:,.0f} /s"),
        f"SELECT INBOX on {count} connections": Figure(f"{select_rate:,.0f} /s"),
        "memory / idle conn, logged in (PSS)": per_connection(logged_in),
        "memory / idle conn, INBOX selected (PSS)": per_connection(selected),
    }


TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "UID FETCH 1:* (FLAGS)": ("< 200 ms", lambda v: v < 0.2),
    "FETCH 1:* (ENVELOPE BODYSTRUCTURE)": ("< 2,000 ms", lambda v: v < 2),
    f"SEARCH SUBJECT {SUBJECT_WORD}": ("< 500 ms", lambda v: v < 0.5),
    "SEARCH HEADER Message-ID": ("< 500 ms", lambda v: v < 0.5),
    "memory / idle conn, logged in (PSS)": ("< 100 KiB", lambda v: v < 100),
    "memory / idle conn, INBOX selected (PSS)": ("< 100 KiB", lambda v: v < 100),
}


def measure(server: Server, args: argparse.Namespace, messages: list[Message]) -> dict[str, Figure]:
    print(f"[{server.name}] preparing {len(messages):,} messages ...", flush=True)
    started = time.perf_counter()
    server.prepare(messages)
    print(f"[{server.name}] filled in {time.perf_counter() - started:.1f} s", flush=True)
    port = server.start()
    try:
        print(f"[{server.name}] serving on 127.0.0.1:{port} (pid {server.pids()[0]})", flush=True)
        figures = big_mailbox(port, args, messages[len(messages) // 2].message_id)
        if args.connections:
            server.stop()  # a fresh process: memory freed by the big FETCHes is not reused
            port = server.start()
            figures.update(idle_memory(server, port, args.connections))
    except Exception:
        if server.log.exists():
            print("\n".join(server.log.read_text(errors="replace").splitlines()[-20:]))
        raise
    finally:
        server.stop()
    for label, f in figures.items():
        print(f"[{server.name}] {label:<42} {f.text:>14}  {f.detail}", flush=True)
    return figures


def table(results: dict[str, dict[str, Figure]]) -> None:
    names = list(results)
    labels = list(dict.fromkeys(label for r in results.values() for label in r))
    print()
    print(f"{'metric':<42} | " + " | ".join(f"{n:>24}" for n in names) + " | target")
    print("-" * 42 + "-|-" + "-|-".join("-" * 24 for _ in names) + "-|-------")
    for label in labels:
        target, ok = TARGETS.get(label, ("", lambda v: True))
        cells = []
        for n in names:
            f = results[n].get(label)
            mark = "" if f is None or f.value is None or ok(f.value) else " MISS"
            cells.append("" if f is None else f"{f.text}{mark}".rjust(24))
        print(f"{label:<42} | " + " | ".join(cells) + f" | {target}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=10_000, help="messages in INBOX")
    p.add_argument("--connections", type=int, default=1000, help="idle connections (0 = skip)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per command (median)")
    p.add_argument("--loop", type=int, default=2000, help="commands in each rate loop")
    p.add_argument("--appends", type=int, default=300, help="APPENDs for the APPEND rate")
    p.add_argument("--dovecot", action="store_true", help="measure Dovecot too")
    p.add_argument("--skip-posthorn", action="store_true", help="do not measure posthorn")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * args.connections + 256  # ours, inherited by the servers we start
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    root = Path(tempfile.mkdtemp(prefix="posthorn-imap-bench-"))
    print(f"directory {root}; load average {os.getloadavg()[0]:.2f}", flush=True)
    started = time.perf_counter()
    messages = [make_message(n) for n in range(args.messages)]
    size = sum(len(m.data) for m in messages)
    print(
        f"{len(messages):,} messages, {size / 1e6:.1f} MB "
        f"(made in {time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    servers: list[Server] = []
    if not args.skip_posthorn:
        servers.append(Posthorn(root / "posthorn", args.connections))
    if args.dovecot:
        servers.append(Dovecot(root / "dovecot", args.connections))
    results: dict[str, dict[str, Figure]] = {}
    try:
        for server in servers:
            results[server.name] = measure(server, args, messages)
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    table(results)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
