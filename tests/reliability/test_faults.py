"""Faults (issue 8 point 2): damaged files, a full disk, a remote MTA that vanishes, DNS that
never answers. Each test runs `posthorn serve` as a subprocess on loopback and damages its data
directory (or its world) for real; `posthorn check` must say what is wrong, and no client
session may crash.

The full-disk test mounts a tmpfs (root needed; CI runs as root) and fails plainly without it.
"""

from __future__ import annotations

import imaplib
import json
import os
import smtplib
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Posthorn
from tests.e2e.mail import wait_for_messages
from tests.support.dns_server import FakeDNS
from tests.support.mta import RemoteMTA

ALICE = ("alice@example.test", "alice-secret-1")


def message(subject: str, body: str = "Hello.\r\n") -> bytes:
    return (
        f"From: bob@elsewhere.test\r\nTo: {ALICE[0]}\r\nSubject: {subject}\r\n\r\n{body}"
    ).encode()


def send(server: Posthorn, subject: str, body: str = "Hello.\r\n") -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=20) as s:
        s.sendmail("bob@elsewhere.test", [ALICE[0]], message(subject, body))


def check(server: Posthorn, *args: str) -> subprocess.CompletedProcess[str]:
    result = server.cli("check", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def blob_path(server: Posthorn, uid: int) -> Path:
    """The file holding INBOX message ``uid`` of alice (read-only look at mail.sqlite3)."""
    db = server.data_dir / "mail.sqlite3"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT bl.name FROM messages m JOIN blobs bl ON bl.id = m.blob_id"
            " JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.name = 'INBOX' AND m.uid = ?",
            (uid,),
        ).fetchone()
    name = str(row[0])
    return server.data_dir / "blobs" / name[:2] / name


def imap(server: Posthorn) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=20)
    m.login(*ALICE)
    return m


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Posthorn]:
    """A server with three messages in alice's INBOX (UIDs 1, 2, 3)."""
    ph = Posthorn(tmp_path, services=("smtp", "submission", "imap")).start()
    try:
        ph.cli("user", "add", ALICE[0], "--password-stdin", input=ALICE[1] + "\n", check=True)
        for i in (1, 2, 3):
            send(ph, f"message {i}", "line of text\r\n" * 50)
        wait_for_messages(ph, ALICE[0], 3)
        yield ph
    finally:
        ph.stop()


# --- posthorn check ------------------------------------------------------------------------


def test_check_passes_a_clean_store_while_the_server_runs(server: Posthorn) -> None:
    result = check(server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].endswith(": ok"), result.stdout
    assert "checked 3 messages" in result.stdout
    doc = json.loads(check(server, "--json", "--deep").stdout)
    assert doc["ok"] is True and doc["messages"] == 3
    assert [f for f in doc["findings"] if f["severity"] == "problem"] == []


def assert_fetch_fails_alone(server: Posthorn, bad_uid: int) -> None:
    """FETCH of the damaged message: tagged NO [SERVERBUG]; the others and the session work."""
    m = imap(server)
    try:
        m.select("INBOX")
        typ, data = m.uid("FETCH", str(bad_uid), "(BODY.PEEK[])")
        assert typ == "NO", (typ, data)
        assert b"[SERVERBUG]" in data[0], data
        for uid in (u for u in (1, 2, 3) if u != bad_uid):
            typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
            assert typ == "OK", (typ, data)
            item = data[0]
            assert isinstance(item, tuple) and b"line of text" in item[1]
        assert m.noop()[0] == "OK"
    finally:
        m.logout()


def test_a_truncated_message_file_is_reported_and_fails_only_its_fetch(server: Posthorn) -> None:
    path = blob_path(server, 2)
    size = path.stat().st_size
    os.truncate(path, size // 2)
    result = check(server)
    assert result.returncode == 1, result.stdout
    problems = [ln for ln in result.stdout.splitlines() if ln.startswith("problem:")]
    assert problems == [
        f"problem: {ALICE[0]} INBOX UID 2: blob file truncated: {size // 2} bytes,"
        f" recorded {size} ({path})"
    ], result.stdout
    assert result.stdout.splitlines()[-1].endswith(": 1 problem")
    assert_fetch_fails_alone(server, 2)


def test_a_deleted_message_file_is_reported_and_fails_only_its_fetch(server: Posthorn) -> None:
    path = blob_path(server, 3)
    path.unlink()
    result = check(server)
    assert result.returncode == 1, result.stdout
    problems = [ln for ln in result.stdout.splitlines() if ln.startswith("problem:")]
    assert problems == [f"problem: {ALICE[0]} INBOX UID 3: blob file missing ({path})"]
    doc = json.loads(check(server, "--json").stdout)
    assert doc["ok"] is False
    assert doc["findings"] == [
        {
            "severity": "problem",
            "where": f"{ALICE[0]} INBOX UID 3",
            "text": "blob file missing",
            "path": str(path),
        }
    ]
    assert_fetch_fails_alone(server, 3)


def test_an_orphan_message_file_is_only_a_note(server: Posthorn) -> None:
    stray = blob_path(server, 1).parent / ("ab" * 16)
    stray.write_bytes(b"Subject: nobody's\r\n\r\n")
    result = check(server)
    assert result.returncode == 0, result.stdout
    assert "note: blobs: file no message refers to" in result.stdout
    assert str(stray) in result.stdout


def test_a_garbage_page_in_the_database_is_reported(server: Posthorn) -> None:
    assert server.stop() == 0  # the WAL is checkpointed into the file on a clean stop
    db = server.data_dir / "mail.sqlite3"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        root = int(
            conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'messages'").fetchone()[0]
        )
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(os.urandom(page_size))
    result = check(server)
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    assert any(
        ln.startswith("problem: mail.sqlite3: ") and ln.endswith(f"({db})") for ln in lines
    ), result.stdout
    assert not any("queue.sqlite3" in ln or "directory.sqlite3" in ln for ln in lines)


def test_check_refuses_a_missing_data_directory(tmp_path: Path) -> None:
    ph = Posthorn(tmp_path, services=())
    result = check(ph)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and result.stdout == ""


# --- the queue's files ---------------------------------------------------------------------


def queue_ids(server: Posthorn) -> list[str]:
    return [ln.split("\t")[0] for ln in server.cli("queue", "list").stdout.splitlines()]


def submit_remote(server: Posthorn, to: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=20) as s:
        s.login(*ALICE)
        s.sendmail(ALICE[0], [to], message(subject).replace(b"bob@elsewhere", b"alice@example"))


def test_a_missing_or_short_spool_file_is_reported_by_queue_id(server: Posthorn) -> None:
    # Mail for elsewhere waits in the queue: the harness's DNS never answers usefully.
    submit_remote(server, "x@elsewhere.test", "stays queued 1")
    submit_remote(server, "y@elsewhere.test", "stays queued 2")
    deadline = time.monotonic() + 10
    while len(queue_ids(server)) < 2:
        assert time.monotonic() < deadline, server.cli("queue", "list").stdout
        time.sleep(0.1)
    first, second = sorted(queue_ids(server))
    spool = server.data_dir / "spool"
    (spool / first).unlink()
    size = (spool / second).stat().st_size
    os.truncate(spool / second, 10)
    result = check(server)
    assert result.returncode == 1, result.stdout
    problems = [ln for ln in result.stdout.splitlines() if ln.startswith("problem:")]
    assert problems == [
        f"problem: queue {first}: spool file missing ({spool / first})",
        f"problem: queue {second}: spool file truncated: 10 bytes, recorded {size}"
        f" ({spool / second})",
    ], result.stdout
    assert "2 queued" in result.stdout


# --- a full disk ---------------------------------------------------------------------------

RETRY_FAST = '[outbound]\nnameservers = ["127.0.0.1:1"]\nretry_first = "1s"\nretry_max = "2s"\n'


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs, unmounted afterwards whatever happens."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.fail(f"mounting a tmpfs needs root (CI runs as root): {done.stderr.decode()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def append(m: imaplib.IMAP4, subject: str, size: int) -> tuple[str, list[object]]:
    body = ("x" * 70 + "\r\n") * (size // 72)
    typ, data = m.append("INBOX", None, None, message(subject, body))
    return typ, list(data)


def test_a_full_disk_refuses_mail_with_452_and_recovers(small_disk: Path) -> None:
    ph = Posthorn(small_disk, extra=RETRY_FAST, services=("smtp", "imap")).start()
    try:
        ph.cli("user", "add", ALICE[0], "--password-stdin", input=ALICE[1] + "\n", check=True)
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * (1024 * 1024))
        body = ("y" * 70 + "\r\n") * 800  # about 57 KB a message
        accepted: list[str] = []
        refusal: smtplib.SMTPDataError | None = None
        for i in range(200):
            try:
                send(ph, f"fill {i}", body)
            except smtplib.SMTPDataError as e:
                refusal = e
                break
            accepted.append(f"fill {i}")
        assert refusal is not None, "the disk never filled"
        assert (refusal.smtp_code, refusal.smtp_error[:6]) == (452, b"4.3.1 "), refusal
        m = imap(ph)
        try:
            typ, data = append(m, "appended while full", 100_000)
            # RFC 5530 §3 OVERQUOTA, as Dovecot answers a full disk (see docs/reliability.md).
            assert (typ, data) == ("NO", [b"[OVERQUOTA] not enough disk space"])
            assert m.noop()[0] == "OK"
        finally:
            m.logout()
        result = check(ph)
        assert result.returncode == 0, result.stdout + result.stderr
        filler.unlink()
        send(ph, "after space returned", body)
        accepted.append("after space returned")
        m = imap(ph)
        try:
            typ, data = append(m, "appended after", 100_000)
            assert typ == "OK", (typ, data)
        finally:
            m.logout()
        # A local delivery that failed on the full disk is tried again after the runner's
        # pause (60 s for local mail); `queue retry` cannot shorten it (docs/reliability.md).
        rows = wait_for_messages(ph, ALICE[0], len(accepted) + 1, timeout=90)
        subjects = sorted(r[5] for r in rows)
        assert subjects == sorted([*accepted, "appended after"]), subjects
        result = check(ph)
        assert result.returncode == 0, result.stdout
    finally:
        ph.stop()


# --- the remote side fails ----------------------------------------------------------------

REMOTE_HOST = "127.0.0.5"


class VanishingMTA:
    """A remote MTA that takes the envelope, says 354, reads some of the message and closes
    the connection without a reply: a crash or a cut cable mid-DATA."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.vanished = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                self._session(conn.makefile("rwb"))

    def _session(self, f: object) -> None:
        import io

        assert isinstance(f, io.BufferedRWPair)
        f.write(b"220 vanishing ESMTP\r\n")
        f.flush()
        while line := f.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                f.write(b"250-vanishing\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                f.write(b"354 go ahead\r\n")
                f.flush()
                f.readline()  # one line of the message, then gone
                self.vanished += 1
                return
            elif verb == b"QUIT":
                f.write(b"221 bye\r\n")
                f.flush()
                return
            else:
                f.write(b"250 ok\r\n")
            f.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def queued(server: Posthorn, queue_id: str) -> dict[str, object] | None:
    result = server.cli("queue", "show", queue_id, "--json")
    if result.returncode == 2:  # no longer queued
        return None
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict)
    return doc


def wait_for(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def submitted(server: Posthorn, to: str, subject: str) -> str:
    before = set(queue_ids(server))
    submit_remote(server, to, subject)
    new: list[str] = []

    def appeared() -> bool:
        new[:] = [q for q in queue_ids(server) if q not in before]
        return bool(new)

    wait_for(appeared, 10, f"{subject} not queued")
    return new[0]


def recipient(doc: dict[str, object]) -> dict[str, object]:
    rows = doc["recipients"]
    assert isinstance(rows, list) and len(rows) == 1
    row = rows[0]
    assert isinstance(row, dict)
    return row


@pytest.fixture
def outbound(tmp_path: Path) -> Iterator[tuple[Posthorn, FakeDNS, VanishingMTA]]:
    with FakeDNS() as dns:
        vanishing = VanishingMTA(REMOTE_HOST)
        extra = (
            f'[outbound]\nnameservers = ["{dns.address}"]\nmx_port = {vanishing.port}\n'
            'retry_first = "1s"\nretry_max = "2s"\n'
        )
        ph = Posthorn(tmp_path, extra=extra, services=("smtp", "submission", "imap")).start()
        try:
            ph.cli("user", "add", ALICE[0], "--password-stdin", input=ALICE[1] + "\n", check=True)
            yield ph, dns, vanishing
        finally:
            vanishing.close()
            assert ph.stop() == 0
        assert not [ln for ln in ph.lines if "Traceback" in ln], "\n".join(ph.lines)


def test_a_remote_mta_vanishing_mid_data_defers_then_delivers_once(
    outbound: tuple[Posthorn, FakeDNS, VanishingMTA],
) -> None:
    ph, dns, vanishing = outbound
    dns.set("vanish.test", [("MX", "10 mx.vanish.test")])
    dns.set("mx.vanish.test", [("A", REMOTE_HOST)])
    qid = submitted(ph, "x@vanish.test", "cut mid-DATA")
    doc: dict[str, object] = {}

    def deferred() -> bool:
        doc.update(queued(ph, qid) or {})
        return vanishing.vanished >= 1 and recipient(doc)["status"] == "deferred"

    wait_for(deferred, 20, "not deferred after the remote vanished")
    row = recipient(doc)
    assert str(row["last_error"]).startswith("4."), row
    assert doc["state"] == "deferred"
    # The remote comes back on the same address and port.
    port = vanishing.port
    vanishing.close()
    with RemoteMTA(REMOTE_HOST, port) as remote:
        wait_for(lambda: queued(ph, qid) is None, 30, "not delivered after the remote returned")
        time.sleep(3)  # long enough for a second (duplicate) delivery to show
        got = remote.messages_to("x@vanish.test")
        assert len(got) == 1, got
        assert b"Subject: cut mid-DATA" in got[0].data


def test_dns_timing_out_defers_with_4_4_3_then_delivers(
    outbound: tuple[Posthorn, FakeDNS, VanishingMTA],
) -> None:
    ph, dns, vanishing = outbound
    port = vanishing.port
    vanishing.close()
    dns.set("slow.test", [("MX", "10 mx.slow.test")])
    dns.set("mx.slow.test", [("A", REMOTE_HOST)])
    dns.drop("slow.test")
    with RemoteMTA(REMOTE_HOST, port) as remote:
        qid = submitted(ph, "y@slow.test", "dns times out")
        doc: dict[str, object] = {}

        def deferred() -> bool:
            doc.update(queued(ph, qid) or {})
            return recipient(doc)["status"] == "deferred"

        wait_for(deferred, 30, "not deferred while DNS timed out")
        row = recipient(doc)
        assert str(row["last_error"]).startswith("4.4.3"), row
        assert remote.messages_to("y@slow.test") == []
        dns.set("slow.test", [("MX", "10 mx.slow.test")])  # answers again
        wait_for(lambda: queued(ph, qid) is None, 40, "not delivered after DNS answered")
        assert len(remote.messages_to("y@slow.test")) == 1
