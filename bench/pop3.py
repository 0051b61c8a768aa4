"""POP3 benchmark: download and delete a whole INBOX, as fetchmail or a mail client does.

Prints figures; it is not a test. Everything runs on 127.0.0.1 in a fresh temporary directory.
The messages are bench/imap.py's (varied: plain, multipart/alternative, some with an
attachment). posthorn: the config enables the ``pop3`` listener only; the account is added with
``posthorn user add`` and INBOX is filled straight through the store before ``posthorn serve``
starts. With ``--dovecot``, a private Dovecot (bench/imap.py's setup with ``protocols = pop3``;
``apt-get install dovecot-pop3d``) serves the same messages from a Maildir.

One client on a raw socket, each command awaited before the next (no pipelining): USER, PASS,
STAT, UIDL, LIST, then RETR n and DELE n for every message, then QUIT (the UPDATE state, which
removes them). Timed: login to the LIST answer (the "scan"), the RETR+DELE loop, QUIT, and the
whole session from connect to QUIT's answer, reported as messages/s. The octets received are
checked against LIST, and a second login must find the maildrop empty.

    .venv/bin/python bench/pop3.py                       # posthorn, 1,000 messages
    .venv/bin/python bench/pop3.py --dovecot             # and Dovecot
    .venv/bin/python bench/pop3.py --messages 5000 --dovecot
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imap import PASSWORD, USER, Message, make_message
from imap import Dovecot as IMAPDovecot
from imap import Posthorn as IMAPPosthorn
from posthorn.config import SERVICES


class Posthorn(IMAPPosthorn):
    """bench/imap.py's posthorn with only the ``pop3`` listener on."""

    def __init__(self, root: Path, connections: int = 10) -> None:
        super().__init__(root, connections)
        off = "".join(f"{s} = []\n" for s in SERVICES if s != "pop3")
        self.config.write_text(
            f'[server]\nhostname = "mail.bench.test"\ndata_dir = "{self.data_dir}"\n'
            f'domains = ["bench.test"]\nshutdown_timeout = 5\n'
            f'[listen]\npop3 = ["127.0.0.1:0"]\n{off}'
            "[auth]\nplaintext_on_loopback = true\n"
        )

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
                if "event=listener.bound" in line and "service=pop3" in line:
                    return int(line.split(" addr=")[1].split()[0].rsplit(":", 1)[1])
            time.sleep(0.1)
        self.stop()
        raise SystemExit("posthorn did not start:\n" + self.log.read_text(errors="replace"))


class Dovecot(IMAPDovecot):
    """bench/imap.py's private Dovecot serving POP3 instead of IMAP."""

    def __init__(self, root: Path, connections: int = 10) -> None:
        super().__init__(root, connections)

    def prepare(self, messages: list[Message]) -> None:
        if not Path("/usr/lib/dovecot/pop3").exists():
            raise SystemExit("dovecot's POP3 server is missing: apt-get install dovecot-pop3d")
        super().prepare(messages)

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config.read_text()
        text = text.replace("protocols = imap", "protocols = pop3")
        start = text.index("protocol imap {")
        end = text.index("passdb {")
        text = (
            text[:start]
            + f"""service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
protocol pop3 {{
  pop3_uidl_format = %08Xu%08Xv
}}
"""
            + text[end:]
        )
        self.config.write_text(text)


class Client:
    """A POP3 client on a raw socket: one command, then its whole answer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""
        self.line()

    def _fill(self) -> None:
        data = self.sock.recv(256 * 1024)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line, self.buf = self.buf[:end], self.buf[end + 2 :]
        if not line.startswith(b"+OK"):
            raise SystemExit(f"unexpected answer {line[:200]!r}")
        return line

    def cmd(self, command: str) -> bytes:
        self.sock.sendall(command.encode() + b"\r\n")
        return self.line()

    def multi(self, command: str) -> bytes:
        """The body of a multi-line answer, still dot-stuffed, without the final dot line."""
        self.cmd(command)
        if self.buf.startswith(b".\r\n"):
            self.buf = self.buf[3:]
            return b""
        while (end := self.buf.find(b"\r\n.\r\n")) < 0:
            self._fill()
        body, self.buf = self.buf[: end + 2], self.buf[end + 5 :]
        return body

    def close(self) -> None:
        self.sock.close()


def run(port: int, count: int) -> dict[str, float]:
    started = time.perf_counter()
    c = Client(port)
    c.cmd(f"USER {USER}")
    c.cmd(f"PASS {PASSWORD}")
    stat = c.cmd("STAT").split()
    if int(stat[1]) != count:
        raise SystemExit(f"STAT says {stat[1].decode()} messages, expected {count}")
    uidl = c.multi("UIDL").splitlines()
    sizes = [int(ln.split()[1]) for ln in c.multi("LIST").splitlines()]
    scanned = time.perf_counter()
    received = 0
    for n in range(1, count + 1):
        body = c.multi(f"RETR {n}")
        received += len((b"\r\n" + body).replace(b"\r\n..", b"\r\n.")) - 2  # unstuffed
        c.cmd(f"DELE {n}")
    looped = time.perf_counter()
    c.cmd("QUIT")
    ended = time.perf_counter()
    c.close()
    if len(uidl) != count or received != sum(sizes):
        raise SystemExit(f"received {received} octets, LIST announced {sum(sizes)}")
    check = Client(port)
    check.cmd(f"USER {USER}")
    check.cmd(f"PASS {PASSWORD}")
    left = check.cmd("STAT").split()[1]
    check.cmd("QUIT")
    check.close()
    if left != b"0":
        raise SystemExit(f"{left.decode()} messages left after QUIT")
    return {
        "login + STAT/UIDL/LIST": scanned - started,
        "RETR + DELE loop": looped - scanned,
        "QUIT (UPDATE)": ended - looped,
        "whole session": ended - started,
        "octets": float(received),
    }


def measure(server: IMAPPosthorn | IMAPDovecot, messages: list[Message]) -> dict[str, float]:
    print(f"[{server.name}] preparing {len(messages):,} messages ...", flush=True)
    server.prepare(messages)
    port = server.start()
    try:
        figures = run(port, len(messages))
    except BaseException:
        if server.log.exists():
            print("\n".join(server.log.read_text(errors="replace").splitlines()[-20:]))
        raise
    finally:
        server.stop()
    for label, value in figures.items():
        if label != "octets":
            print(f"[{server.name}] {label:<24} {value:8.3f} s", flush=True)
    rate = len(messages) / figures["whole session"]
    print(f"[{server.name}] download and delete: {rate:,.0f} messages/s", flush=True)
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=1000, help="messages in INBOX")
    p.add_argument("--dovecot", action="store_true", help="measure Dovecot too")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="posthorn-pop3-bench-"))
    messages = [make_message(n) for n in range(args.messages)]
    size = sum(len(m.data) for m in messages)
    print(f"directory {root}; {len(messages):,} messages, {size / 1e6:.1f} MB", flush=True)
    servers: list[IMAPPosthorn | IMAPDovecot] = [Posthorn(root / "posthorn")]
    if args.dovecot:
        servers.append(Dovecot(root / "dovecot"))
    results = {}
    try:
        for server in servers:
            results[server.name] = measure(server, messages)
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    for name, figures in results.items():
        rate = len(messages) / figures["whole session"]
        print(f"{name:<10} {rate:10,.0f} messages/s  ({figures['whole session']:.2f} s)")


if __name__ == "__main__":
    main()
