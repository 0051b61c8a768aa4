"""Helpers for e2e mail tests: wait for delivery through the CLI, raw SMTP dialogues."""

from __future__ import annotations

import socket
import ssl
import time

from tests.e2e.harness import Posthorn


def inbox(server: Posthorn, address: str, mailbox: str = "INBOX") -> list[list[str]]:
    out = server.cli("mail", "ls", address, mailbox, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def wait_for_messages(
    server: Posthorn, address: str, count: int, mailbox: str = "INBOX", timeout: float = 15
) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = inbox(server, address, mailbox)
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) >= count, f"{address}: {len(rows)} of {count} messages: {rows}"
            return rows
        time.sleep(0.2)


def wait_for_subject(
    server: Posthorn, address: str, subject: str, mailbox: str = "INBOX", timeout: float = 15
) -> list[str]:
    """The ``mail ls`` row of the first message with this subject, once delivered."""
    deadline = time.monotonic() + timeout
    while True:
        for row in inbox(server, address, mailbox):
            if row[5] == subject:
                return row
        assert time.monotonic() < deadline, f"{address}: no message {subject!r}"
        time.sleep(0.2)


def cat(server: Posthorn, address: str, uid: str, mailbox: str = "INBOX") -> bytes:
    import subprocess
    import sys

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "posthorn",
            "mail",
            "cat",
            address,
            mailbox,
            uid,
            "-c",
            str(server.config_path),
        ],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Raw:
    """A byte-exact SMTP client for what smtplib will not send (pipelining, smuggling, BDAT)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        """One complete (possibly multi-line) reply."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed: " + repr(self.buf))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, line: bytes) -> tuple[int, str]:
        self.send(line + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()
