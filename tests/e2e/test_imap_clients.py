"""Real IMAP clients against `posthorn serve`: mbsync (isync) syncing both ways, and a by-hand
compliance sweep in the spirit of Dovecot's imaptest (RFC 9051 / RFC 3501 behaviours that real
clients rely on), including Thunderbird- and Apple-Mail-like command sequences.

Every exchange stays on 127.0.0.1.
"""

from __future__ import annotations

import base64
import imaplib
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Posthorn

PASSWORDS = {
    "carol@example.test": "carol-secret-3",  # mbsync's account
    "dave@example.test": "dave-secret-44",  # the compliance sweep's account
    "erin@example.test": "erin-secret-555",  # Thunderbird/Apple-like sequences
}


def message(subject: str, body: str = "Hello.", extra: str = "") -> bytes:
    return (
        f"From: Bob <bob@example.test>\r\nTo: someone@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n{extra}"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Posthorn]:
    ph = Posthorn(tmp_path_factory.mktemp("imapc"), services=("imap",)).start()
    for address, password in PASSWORDS.items():
        ph.cli("user", "add", address, "--password-stdin", input=password + "\n", check=True)
    yield ph
    assert ph.stop() == 0
    tracebacks = [ln for ln in ph.lines if "Traceback" in ln or "internal_error" in ln]
    assert not tracebacks, "\n".join(tracebacks)


def login(server: Posthorn, user: str) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    m.login(user, PASSWORDS[user])
    return m


def ok(result: tuple[str, Any]) -> list[Any]:
    typ, data = result
    assert typ == "OK", (typ, data)
    return list(data)


# --- mbsync ------------------------------------------------------------------------------------


def _tls_keyword() -> str:
    """isync 1.5 renamed SSLType to TLSType (1.4, Debian 12's, knows only SSLType)."""
    out = subprocess.run(["mbsync", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"(\d+)\.(\d+)", out)
    return "TLSType" if found and (int(found[1]), int(found[2])) >= (1, 5) else "SSLType"


def _mbsyncrc(tmp: Path, port: int) -> Path:
    local = tmp / "Mail"
    local.mkdir()
    rc = tmp / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount posthorn\nHost 127.0.0.1\nPort {port}\nUser carol@example.test\n"
        f'Pass "{PASSWORDS["carol@example.test"]}"\n{_tls_keyword()} None\nAuthMechs LOGIN\n\n'
        "IMAPStore remote\nAccount posthorn\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel posthorn\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\n"
        "Expunge Both\nSyncState *\n"
    )
    return rc


def _mbsync(rc: Path, home: Path) -> str:
    verbose = ["-V"] if os.environ.get("MBSYNC_VERBOSE") else []
    result = subprocess.run(
        ["mbsync", *verbose, "-c", str(rc), "-a"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(home)},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, "mbsync failed:\n" + output
    return output


def _local(folder: Path) -> dict[str, tuple[Path, str]]:
    """Subject -> (file, maildir flags) of every message in a local Maildir folder."""
    out: dict[str, tuple[Path, str]] = {}
    for sub in ("cur", "new"):
        for f in (folder / sub).iterdir():
            found = re.search(rb"^Subject: (.*?)\r?$", f.read_bytes(), re.M)
            assert found is not None, f
            flags = f.name.split(":2,", 1)[1] if ":2," in f.name else ""
            out[found.group(1).decode()] = (f, flags)
    return out


def _server_flags(m: imaplib.IMAP4, mailbox: str) -> dict[str, set[str]]:
    """Subject -> flags of every message in a server mailbox (read-only)."""
    ok(m.select(f'"{mailbox}"', readonly=True))
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out: dict[str, set[str]] = {}
    if typ == "OK" and data != [None]:
        for item in data:
            if isinstance(item, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                assert flags is not None, item
                subject = item[1].decode().removeprefix("Subject: ").strip()
                out[subject] = set(flags.group(1).decode().split())
    m.close()
    return out


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) not installed")
def test_mbsync_syncs_both_ways(server: Posthorn, tmp_path: Path) -> None:
    m = login(server, "carol@example.test")
    ok(m.append("INBOX", "(\\Seen)", None, message("seen one")))
    ok(m.append("INBOX", "(\\Flagged)", None, message("flagged two")))
    ok(m.append("INBOX", None, None, message("plain three")))
    ok(m.append("INBOX", "(\\Seen)", None, message("doomed four")))
    ok(m.create("Projects/2026"))
    ok(m.append("Projects/2026", "(\\Seen \\Answered)", None, message("answered five")))
    ok(m.append("Projects/2026", "(\\Draft)", None, message("draft six")))
    rc = _mbsyncrc(tmp_path, server.ports["imap"])
    mail = tmp_path / "Mail"

    # 1. Server -> local: every message, with its flags as maildir info (RFC-less but fixed:
    # D draft, F flagged, R replied, S seen, T trashed, in ASCII order).
    out = _mbsync(rc, tmp_path)
    inbox = _local(mail / "INBOX")
    assert {s: f for s, (_, f) in inbox.items()} == {
        "seen one": "S",
        "flagged two": "F",
        "plain three": "",
        "doomed four": "S",
    }, out
    projects = _local(mail / "Projects" / "2026")
    assert {s: f for s, (_, f) in projects.items()} == {"answered five": "RS", "draft six": "D"}
    for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert (mail / name / "cur").is_dir(), name

    # 2. Local -> server: a new message, a flag added, a deletion, a new folder.
    (mail / "INBOX" / "cur" / "1700000000.local1.testhost:2,S").write_bytes(message("local seven"))
    seen_file = inbox["seen one"][0]
    seen_file.rename(seen_file.with_name(seen_file.name.split(":2,")[0] + ":2,FS"))
    doomed = inbox["doomed four"][0]
    doomed.rename(doomed.with_name(doomed.name.split(":2,")[0] + ":2,ST"))
    (mail / "Projects" / "2026" / "new" / "1700000001.local2.testhost").write_bytes(
        message("local eight")
    )
    for sub in ("cur", "new", "tmp"):
        (mail / "LocalOnly" / sub).mkdir(parents=True)
    (mail / "LocalOnly" / "cur" / "1700000002.local3.testhost:2,RS").write_bytes(
        message("local nine")
    )
    out = _mbsync(rc, tmp_path)
    assert _server_flags(m, "INBOX") == {
        "seen one": {"\\Seen", "\\Flagged"},
        "flagged two": {"\\Flagged"},
        "plain three": set(),
        "local seven": {"\\Seen"},
    }, out
    assert _server_flags(m, "Projects/2026") == {
        "answered five": {"\\Seen", "\\Answered"},
        "draft six": {"\\Draft"},
        "local eight": set(),
    }, out
    assert _server_flags(m, "LocalOnly") == {"local nine": {"\\Seen", "\\Answered"}}, out
    assert "doomed four" not in _local(mail / "INBOX")

    # 3. Server changes again: a flag and an expunge come down on the next run.
    ok(m.select("INBOX"))
    data = ok(m.search(None, "SUBJECT", '"flagged two"'))
    ok(m.store(data[0].decode(), "+FLAGS", "(\\Seen)"))
    data = ok(m.search(None, "SUBJECT", '"plain three"'))
    ok(m.store(data[0].decode(), "+FLAGS", "(\\Deleted)"))
    ok(m.expunge())
    m.logout()
    out = _mbsync(rc, tmp_path)
    inbox = _local(mail / "INBOX")
    assert {s: f for s, (_, f) in inbox.items()} == {
        "seen one": "FS",
        "flagged two": "FS",
        "local seven": "S",
    }, out

    # 4. Nothing changed: a further run changes nothing on either side.
    out = _mbsync(rc, tmp_path)
    assert {s: f for s, (_, f) in _local(mail / "INBOX").items()} == {
        "seen one": "FS",
        "flagged two": "FS",
        "local seven": "S",
    }, out


# --- a raw client ------------------------------------------------------------------------------

_LITERAL_END = re.compile(rb"~?\{(\d+)\+?\}$")


class Raw:
    """A byte-exact IMAP client: each response is returned as received (literals inline,
    final CRLF removed), so failures show the exchange itself."""

    def __init__(self, server: Posthorn, user: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=10)
        self.buf = b""
        self.greeting = self.response()
        if user is not None:
            tagged = self.cmd(f'L1 LOGIN {user} "{PASSWORDS[user]}"'.encode())[-1]
            assert tagged.startswith(b"L1 OK"), tagged

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed: " + repr(self.buf))
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def response(self) -> bytes:
        """One response: a line, plus the literals it announces and the lines after them."""
        out = self._line()
        while m := _LITERAL_END.search(out):
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]
            out += self._line()
        return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until_tagged(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            lines.append(self.response())
            if lines[-1].startswith(tag + b" "):
                return lines

    def cmd(self, line: bytes) -> list[bytes]:
        self.send(line + b"\r\n")
        return self.until_tagged(line.split(b" ", 1)[0])

    def ok(self, line: bytes) -> list[bytes]:
        lines = self.cmd(line)
        assert lines[-1].startswith(line.split(b" ", 1)[0] + b" OK"), (line, lines)
        return lines[:-1]

    def append(self, mailbox: str, msg: bytes, flags: str = "", date: str = "") -> int:
        """APPEND with a LITERAL+ literal; the new message's UID (APPENDUID)."""
        opts = (f" ({flags})" if flags else "") + (f' "{date}"' if date else "")
        self.send(f'AP APPEND "{mailbox}"{opts} {{{len(msg)}+}}\r\n'.encode() + msg + b"\r\n")
        tagged = self.until_tagged(b"AP")[-1]
        found = re.match(rb"AP OK \[APPENDUID \d+ (\d+)\]", tagged)
        assert found is not None, tagged
        return int(found.group(1))

    def close(self) -> None:
        self.sock.close()


def untagged(lines: list[bytes], word: bytes) -> list[bytes]:
    """The untagged responses whose first word after ``*`` (or after the number) is ``word``."""
    pat = re.compile(rb"\* (?:\d+ )?" + re.escape(word) + rb"\b")
    return [ln for ln in lines if pat.match(ln)]


def parse(data: bytes) -> Any:
    """An IMAP data item as Python: lists for ``(...)``, bytes for strings and atoms, None for
    NIL. Enough for FETCH responses and BODYSTRUCTURE."""
    pos = 0

    def value() -> Any:
        nonlocal pos
        while data[pos : pos + 1] == b" ":
            pos += 1
        c = data[pos : pos + 1]
        if c == b"(":
            pos += 1
            items: list[Any] = []
            while True:
                while data[pos : pos + 1] == b" ":
                    pos += 1
                if data[pos : pos + 1] == b")":
                    pos += 1
                    return items
                items.append(value())
        if c == b'"':
            m = re.compile(rb'"((?:[^"\\]|\\.)*)"').match(data, pos)
            assert m is not None, data[pos:]
            pos = m.end()
            return re.sub(rb"\\(.)", rb"\1", m.group(1))
        m = re.compile(rb"~?\{(\d+)\}\r\n").match(data, pos)
        if m:
            n = int(m.group(1))
            pos = m.end() + n
            return data[m.end() : pos]
        m = re.compile(rb"[^ ()\[]+(?:\[[^\]]*\](?:<\d+>)?)?").match(data, pos)
        assert m is not None, data[pos:]
        pos = m.end()
        return None if m.group() == b"NIL" else m.group()

    return value()


def fetched(line: bytes) -> tuple[int, dict[bytes, Any]]:
    """``* n FETCH (k v ...)`` as (n, {K: v}) with upper-cased keys."""
    m = re.match(rb"\* (\d+) FETCH ", line)
    assert m is not None, line
    items = parse(line[m.end() :])
    return int(m.group(1)), {k.upper(): v for k, v in zip(items[::2], items[1::2], strict=True)}


def fresh(r: Raw, name: str) -> None:
    r.ok(f'C1 CREATE "{name}"'.encode())


# --- the compliance sweep ----------------------------------------------------------------------


def test_pipelined_commands_are_answered_in_order(server: Posthorn) -> None:
    r = Raw(server)
    pw = PASSWORDS["dave@example.test"]
    r.send(
        b"p1 CAPABILITY\r\np2 NOOP\r\n"
        + f'p3 LOGIN dave@example.test "{pw}"\r\n'.encode()
        + b"p4 SELECT INBOX\r\np5 UID FETCH 1:* (UID)\r\np6 NOOP\r\np7 BOGUS\r\np8 LOGOUT\r\n"
    )
    lines = r.until_tagged(b"p8")
    tagged = [ln.split(b" ", 2)[:2] for ln in lines if not ln.startswith(b"*")]
    assert tagged == [
        [b"p1", b"OK"],
        [b"p2", b"OK"],
        [b"p3", b"OK"],
        [b"p4", b"OK"],
        [b"p5", b"OK"],
        [b"p6", b"OK"],
        [b"p7", b"BAD"],
        [b"p8", b"OK"],
    ], lines
    assert lines.index(next(ln for ln in lines if ln.startswith(b"* BYE"))) == len(lines) - 2
    r.close()


def test_login_with_synchronizing_and_nonsynchronizing_literals(server: Posthorn) -> None:
    r = Raw(server)
    user, pw = b"dave@example.test", PASSWORDS["dave@example.test"].encode()
    r.send(b"a1 LOGIN {%d}\r\n" % len(user))
    assert r.response().startswith(b"+")
    r.send(user + b" {%d}\r\n" % len(pw))
    assert r.response().startswith(b"+")
    r.send(pw + b"\r\n")
    assert r.until_tagged(b"a1")[-1].startswith(b"a1 OK [CAPABILITY ")
    r.close()
    r = Raw(server)
    r.send(b"a1 LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(user), user, len(pw), pw))
    assert r.until_tagged(b"a1")[-1].startswith(b"a1 OK")
    r.close()


def test_select_and_examine_response_sets(server: Posthorn) -> None:
    r = Raw(server, "dave@example.test")
    fresh(r, "SelectMe")
    r.append("SelectMe", message("s1"), "\\Seen")
    r.append("SelectMe", message("s2"))
    lines = r.cmd(b"a2 SELECT SelectMe")
    # RFC 3501 §6.3.1 (IMAP4rev1 client): FLAGS, EXISTS, RECENT, UNSEEN, PERMANENTFLAGS,
    # UIDNEXT, UIDVALIDITY, tagged OK [READ-WRITE].
    (flags,) = untagged(lines, b"FLAGS")
    system = {b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft"}
    assert set(parse(flags[len(b"* FLAGS ") :])) == system, lines
    assert b"* 2 EXISTS" in lines and b"* 0 RECENT" in lines
    assert any(re.match(rb"\* OK \[UNSEEN 2\]", ln) for ln in lines), lines
    perm = next(ln for ln in lines if ln.startswith(b"* OK [PERMANENTFLAGS"))
    assert re.match(rb"\* OK \[PERMANENTFLAGS \((.*)\)\]", perm)
    assert set(perm.split(b"(")[1].split(b")")[0].split()) == system | {b"\\*"}
    assert any(re.match(rb"\* OK \[UIDVALIDITY \d+\]", ln) for ln in lines), lines
    assert any(re.match(rb"\* OK \[UIDNEXT 3\]", ln) for ln in lines), lines
    assert re.match(rb"a2 OK \[READ-WRITE\]", lines[-1])
    lines = r.cmd(b"a3 EXAMINE SelectMe")
    # RFC 9051 §7.1: the previous mailbox's CLOSED comes first.
    assert lines[0].startswith(b"* OK [CLOSED]"), lines
    assert re.match(rb"a3 OK \[READ-ONLY\]", lines[-1])
    perm = next(ln for ln in lines if ln.startswith(b"* OK [PERMANENTFLAGS"))
    assert perm.startswith(b"* OK [PERMANENTFLAGS ()]"), perm
    # A read-only FETCH of a body does not set \Seen (RFC 3501 §6.3.2).
    r.ok(b"a4 FETCH 2 BODY[TEXT]")
    assert b"\\Seen" not in r.ok(b"a5 FETCH 2 FLAGS")[0]
    r.close()


NESTED = (
    b"From: Carol <carol@example.test>\r\nTo: dave@example.test\r\nSubject: nested\r\n"
    b"X-Spam: yes\r\nMessage-ID: <nested@example.test>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"preamble\r\n"
    b"--outer\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\npart one\r\n\r\n"
    b"--outer\r\nContent-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n"
    b"From: Inner <inner@example.test>\r\nSubject: inner subject\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
    b"--inner\r\nContent-Type: text/plain\r\n\r\ninner plain\r\n\r\n"
    b"--inner\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>inner html</p>\r\n\r\n"
    b"--inner--\r\n"
    b"\r\n--outer\r\nContent-Type: application/pdf; name=x.pdf\r\n"
    b'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="x.pdf"'
    b"\r\n\r\nJVBERi0xLjQK\r\n\r\n"
    b"--outer--\r\nepilogue\r\n"
)
INNER = NESTED[NESTED.index(b"From: Inner") : NESTED.index(b"\r\n--outer\r\nContent-Type: app")]


@pytest.fixture(scope="module")
def nested(server: Posthorn) -> Iterator[Raw]:
    """dave's session with the mailbox Nested selected; message 1 is NESTED."""
    r = Raw(server, "dave@example.test")
    fresh(r, "Nested")
    r.append("Nested", NESTED)
    r.append("Nested", message("second", "0123456789abcdefghij"))
    r.ok(b"n1 SELECT Nested")
    yield r
    r.close()


def fetch_one(r: Raw, tag: bytes, what: bytes) -> dict[bytes, Any]:
    lines = r.ok(tag + b" " + what)
    fetches = [ln for ln in lines if re.match(rb"\* \d+ FETCH", ln)]
    assert len(fetches) == 1, lines
    return fetched(fetches[0])[1]


def test_fetch_body_sections_of_a_nested_message(nested: Raw) -> None:
    r = nested
    got = fetch_one(r, b"f1", b"FETCH 1 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2.MIME])")
    assert got[b"BODY[1]"] == b"part one\r\n"
    assert got[b"BODY[1.MIME]"] == b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    assert got[b"BODY[2.MIME]"] == (
        b"Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n"
    )
    got = fetch_one(r, b"f2", b"FETCH 1 (BODY.PEEK[2] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT])")
    assert got[b"BODY[2]"] == INNER
    header, text = INNER.split(b"\r\n\r\n", 1)
    assert got[b"BODY[2.HEADER]"] == header + b"\r\n\r\n"
    assert got[b"BODY[2.TEXT]"] == text
    got = fetch_one(r, b"f3", b"FETCH 1 (BODY.PEEK[2.1] BODY.PEEK[2.2] BODY.PEEK[2.2.MIME])")
    assert got[b"BODY[2.1]"] == b"inner plain\r\n"
    assert got[b"BODY[2.2]"] == b"<p>inner html</p>\r\n"
    assert got[b"BODY[2.2.MIME]"].startswith(b"Content-Type: text/html; charset=utf-8\r\n")
    got = fetch_one(r, b"f4", b"FETCH 1 (BODY.PEEK[3] BODY.PEEK[4] BODY.PEEK[1.1])")
    assert got[b"BODY[3]"] == b"JVBERi0xLjQK\r\n"
    assert got[b"BODY[4]"] == b"" and got[b"BODY[1.1]"] == b""  # no such part: empty
    assert b"\\Seen" not in r.ok(b"f5 FETCH 1 FLAGS")[0]


def test_fetch_header_fields_not_and_rfc822_items(nested: Raw) -> None:
    r = nested
    got = fetch_one(r, b"h1", b"FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (X-Spam Content-Type)])")
    (key,) = got
    assert key.startswith(b"BODY[HEADER.FIELDS.NOT (")
    assert got[key] == (
        b"From: Carol <carol@example.test>\r\nTo: dave@example.test\r\nSubject: nested\r\n"
        b"Message-ID: <nested@example.test>\r\nMIME-Version: 1.0\r\n\r\n"
    )
    got = fetch_one(r, b"h2", b'FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT "x-spam" Nope)])')
    assert list(got.values()) == [b"Subject: nested\r\nX-Spam: yes\r\n\r\n"]
    got = fetch_one(r, b"h3", b"FETCH 1 (RFC822.HEADER RFC822.SIZE)")
    head = NESTED.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    assert got[b"RFC822.HEADER"] == head
    assert got[b"RFC822.SIZE"] == str(len(NESTED)).encode()
    assert b"\\Seen" not in r.ok(b"h4 FETCH 1 FLAGS")[0]  # RFC822.HEADER is a peek
    lines = r.ok(b"h5 FETCH 1 RFC822.TEXT")
    got = fetched(lines[0])[1]
    assert got[b"RFC822.TEXT"] == NESTED[len(head) :]
    # RFC 3501 §6.4.5: RFC822.TEXT sets \Seen, and the change is reported.
    assert any(b"\\Seen" in ln for ln in lines), lines
    r.ok(b"h6 STORE 1 -FLAGS.SILENT (\\Seen)")


def test_partial_fetches(nested: Raw) -> None:
    r = nested
    lines = r.ok(b"q1 FETCH 2 (BODY.PEEK[TEXT]<0.10> BODY.PEEK[TEXT]<15.100>)")
    assert lines == [
        b"* 2 FETCH (BODY[TEXT]<0> {10}\r\n0123456789 BODY[TEXT]<15> {7}\r\nfghij\r\n)"
    ]
    got = fetch_one(r, b"q2", b"FETCH 2 (BODY.PEEK[]<0.10> BODY.PEEK[TEXT]<1000.10>)")
    assert got[b"BODY[]<0>"] == b"From: Bob "
    assert got[b"BODY[TEXT]<1000>"] == b""
    got = fetch_one(r, b"q3", b"FETCH 1 (BODY.PEEK[1]<5.3> BODY.PEEK[2.1]<0.5>)")
    assert got == {b"BODY[1]<5>": b"one", b"BODY[2.1]<0>": b"inner"}


def _lower(x: Any) -> Any:
    if isinstance(x, list):
        return [_lower(i) for i in x]
    return x.lower() if isinstance(x, bytes) else x


def test_bodystructure_of_nested_multipart_with_message_rfc822(nested: Raw) -> None:
    got = fetch_one(nested, b"b1", b"FETCH 1 (BODYSTRUCTURE)")
    bs = _lower(got[b"BODYSTRUCTURE"])
    part1, part2, part3, subtype, params = bs[:5]
    assert subtype == b"mixed" and params == [b"boundary", b"outer"]
    # RFC 3501 §7.4.2: type, subtype, params, id, description, encoding, size, lines, ext.
    assert part1[:8] == [b"text", b"plain", [b"charset", b"us-ascii"], None, None, b"7bit",
                         b"10", b"1"]  # fmt: skip
    assert part2[:6] == [b"message", b"rfc822", None, None, b"forwarded", b"7bit"]
    assert part2[6] == str(len(INNER)).encode()
    envelope, body, lines = part2[7], part2[8], part2[9]
    assert envelope[1] == b"inner subject"
    assert envelope[2] == [[b"inner", None, b"inner", b"example.test"]]
    assert body[0][:2] == [b"text", b"plain"] and body[0][6:8] == [b"13", b"1"]
    assert body[1][:6] == [b"text", b"html", [b"charset", b"utf-8"], None, None,
                           b"quoted-printable"]  # fmt: skip
    assert body[2] == b"alternative" and body[3] == [b"boundary", b"inner"]
    assert lines == str(INNER.count(b"\n")).encode()
    assert part3[:7] == [b"application", b"pdf", [b"name", b"x.pdf"], None, None, b"base64",
                         b"14"]  # fmt: skip
    # body-ext-1part: md5, then the disposition.
    assert part3[7] is None and part3[8] == [b"attachment", [b"filename", b"x.pdf"]]
    # BODY: the same without extension data.
    body_only = _lower(fetch_one(nested, b"b2", b"FETCH 1 (BODY)")[b"BODY"])
    assert body_only[3] == b"mixed" and len(body_only) == 4
    assert body_only[0] == part1[:8]


def test_uid_fetch_reports_uid_and_store_silent(server: Posthorn) -> None:
    r = Raw(server, "dave@example.test")
    fresh(r, "Uids")
    uids = [r.append("Uids", message(f"u{i}")) for i in range(3)]
    r.ok(b"u1 SELECT Uids")
    lines = r.ok(b"u2 UID FETCH %d (FLAGS)" % uids[1])
    assert lines == [b"* 2 FETCH (UID %d FLAGS ())" % uids[1]], lines
    lines = r.ok(b"u3 UID FETCH %d:* (RFC822.SIZE)" % (uids[2] + 100))
    # RFC 9051 §6.4.9: n:* always includes the largest UID, even when n is larger.
    assert [fetched(ln)[1][b"UID"] for ln in lines] == [str(uids[2]).encode()], lines
    assert r.ok(b"u4 STORE 1:2 +FLAGS.SILENT (\\Flagged)") == []
    lines = r.ok(b"u5 STORE 3 +FLAGS (\\Seen)")
    assert lines == [b"* 3 FETCH (FLAGS (\\Seen))"], lines
    lines = r.ok(b"u6 UID STORE %d -FLAGS (\\Flagged)" % uids[0])
    assert lines == [b"* 1 FETCH (UID %d FLAGS ())" % uids[0]], lines
    lines = r.ok(b"u7 FETCH 1:3 (FLAGS)")
    assert lines == [
        b"* 1 FETCH (FLAGS ())",
        b"* 2 FETCH (FLAGS (\\Flagged))",
        b"* 3 FETCH (FLAGS (\\Seen))",
    ], lines
    r.close()


def test_keywords_join_flags_and_permanentflags_after_first_use(server: Posthorn) -> None:
    r = Raw(server, "dave@example.test")
    fresh(r, "Keywords")
    r.append("Keywords", message("k1"))
    r.append("Keywords", message("k2"), "$Label1")
    lines = r.ok(b"k1 SELECT Keywords")
    assert b"$Label1" in untagged(lines, b"FLAGS")[0], lines
    lines = r.ok(b"k2 STORE 1 +FLAGS ($Work Junk)")
    assert lines[-1] in (b"* 1 FETCH (FLAGS ($Work Junk))", b"* 1 FETCH (FLAGS (Junk $Work))")
    other = Raw(server, "dave@example.test")
    lines = other.ok(b"k3 EXAMINE Keywords")
    flags = set(untagged(lines, b"FLAGS")[0][len(b"* FLAGS (") : -1].split())
    assert {b"$Work", b"Junk", b"$Label1", b"\\Seen"} <= flags, lines
    other.close()
    lines = r.ok(b"k4 SELECT Keywords")
    perm = next(ln for ln in lines if ln.startswith(b"* OK [PERMANENTFLAGS"))
    assert b"$Work" in perm and b"Junk" in perm and b"\\*" in perm, perm
    r.close()


def _search(r: Raw, tag: bytes, criteria: bytes) -> list[int]:
    lines = r.ok(tag + b" " + criteria)
    found = untagged(lines, b"SEARCH")
    assert len(found) == 1, lines
    return [int(n) for n in found[0].split()[2:]]


def test_search_with_or_not_parentheses_sets_larger_since(server: Posthorn) -> None:
    r = Raw(server, "dave@example.test")
    fresh(r, "Find")
    dates = ["01-Jan-2024", "15-Jun-2025", "01-Jan-2026", "20-Mar-2026", "02-Feb-2027"]
    uids = []
    for i, day in enumerate(dates):
        body = "x" * (100 * i)
        flags = "\\Flagged" if i % 2 else "\\Seen"
        uids.append(r.append("Find", message(f"find {i}", body), flags, f"{day} 12:00:00 +0000"))
    r.ok(b"s0 SELECT Find")
    size1, size2 = len(message("find 1", "x" * 100)), len(message("find 2", "x" * 200))
    assert _search(r, b"s1", b"SEARCH ALL") == [1, 2, 3, 4, 5]
    assert _search(r, b"s2", b'SEARCH OR FLAGGED SUBJECT "find 0"') == [1, 2, 4]
    assert _search(r, b"s3", b"SEARCH NOT FLAGGED") == [1, 3, 5]
    assert _search(r, b"s4", b'SEARCH (SEEN LARGER %d) NOT (SUBJECT "find 4")' % size1) == [3]
    assert _search(r, b"s5", b"SEARCH 2:4,5 NOT 3") == [2, 4, 5]
    assert _search(r, b"s6", b"SEARCH UID %d:%d" % (uids[1], uids[2])) == [2, 3]
    assert _search(r, b"s7", b"SEARCH LARGER %d" % (size2 - 1)) == [3, 4, 5]
    assert _search(r, b"s8", b"SEARCH SMALLER %d" % size2) == [1, 2]
    assert _search(r, b"s9", b"SEARCH SINCE 1-Jan-2026") == [3, 4, 5]
    assert _search(r, b"s10", b"SEARCH BEFORE 1-Jan-2026 OR SEEN FLAGGED") == [1, 2]
    assert _search(r, b"s11", b"SEARCH ON 20-Mar-2026") == [4]
    assert _search(r, b"s12", b"SEARCH OR OR 1 2 (5)") == [1, 2, 5]
    assert _search(r, b"s13", b"SEARCH SENTSINCE 23-Nov-2026 SENTBEFORE 24-Nov-2026") == [
        1, 2, 3, 4, 5
    ]  # fmt: skip
    assert _search(r, b"s14", b"SEARCH *") == [5]
    assert _search(r, b"s15", b"UID SEARCH NOT SEEN") == [uids[1], uids[3]]
    assert _search(r, b"s16", b"SEARCH CHARSET UTF-8 BODY xxxxx NOT 5") == [2, 3, 4]
    assert _search(r, b"s17", b'SEARCH HEADER Message-ID "find.3@"') == [4]
    lines = r.cmd(b"s18 SEARCH FROBNICATE")
    assert lines[-1].startswith(b"s18 BAD"), lines
    r.close()


def test_copy_preserves_flags_and_append_keeps_internal_date(server: Posthorn) -> None:
    r = Raw(server, "dave@example.test")
    fresh(r, "CopyFrom")
    fresh(r, "CopyTo")
    r.append("CopyFrom", message("c1"), "\\Seen \\Flagged $Important", "05-Mar-2021 14:07:09 +0100")
    r.append("CopyFrom", message("c2"), "\\Answered", "17-Jul-1996 02:44:25 -0700")
    r.ok(b"c1 SELECT CopyFrom")
    lines = r.ok(b"c2 FETCH 1:2 (INTERNALDATE)")
    assert lines == [
        b'* 1 FETCH (INTERNALDATE "05-Mar-2021 14:07:09 +0100")',
        b'* 2 FETCH (INTERNALDATE "17-Jul-1996 02:44:25 -0700")',
    ] or lines == [
        b'* 1 FETCH (INTERNALDATE " 5-Mar-2021 14:07:09 +0100")',
        b'* 2 FETCH (INTERNALDATE "17-Jul-1996 02:44:25 -0700")',
    ], lines
    lines = r.cmd(b"c3 COPY 1:2 CopyTo")
    assert re.match(rb"c3 OK \[COPYUID \d+ 1:2 1:2\]", lines[-1]), lines
    lines = r.ok(b"c4 EXAMINE CopyTo")
    assert b"$Important" in untagged(lines, b"FLAGS")[0], lines
    lines = r.ok(b"c5 FETCH 1:2 (FLAGS INTERNALDATE)")
    got = [fetched(ln)[1] for ln in lines]
    assert set(got[0][b"FLAGS"]) == {b"\\Seen", b"\\Flagged", b"$Important"}
    assert got[1][b"FLAGS"] == [b"\\Answered"]
    assert got[0][b"INTERNALDATE"].strip() == b"5-Mar-2021 14:07:09 +0100"  # RFC 3501 §6.4.7
    lines = r.cmd(b"c6 COPY 1 Nonexistent")
    assert lines[-1].startswith(b"c6 NO [TRYCREATE]"), lines
    r.close()


def test_expunge_numbering_with_several_messages(server: Posthorn) -> None:
    r = Raw(server, "dave@example.test")
    fresh(r, "Expunge")
    uids = [r.append("Expunge", message(f"e{i}")) for i in range(8)]
    r.ok(b"x1 SELECT Expunge")
    r.ok(b"x2 STORE 2,3,5,8 +FLAGS.SILENT (\\Deleted)")
    lines = r.ok(b"x3 EXPUNGE")
    # RFC 9051 §7.5.1: each EXPUNGE renumbers the ones after it; replay them as a client does.
    view = list(uids)
    for ln in lines:
        m = re.fullmatch(rb"\* (\d+) EXPUNGE", ln)
        assert m is not None, lines
        del view[int(m.group(1)) - 1]
    assert view == [uids[i] for i in (0, 3, 5, 6)], lines
    lines = r.ok(b"x4 FETCH 1:* (UID)")
    assert [int(fetched(ln)[1][b"UID"]) for ln in lines] == view
    lines = r.cmd(b"x5 FETCH 5 (UID)")
    assert lines[-1].startswith(b"x5 BAD") or lines[-1].startswith(b"x5 NO"), lines
    r.close()


def _list(r: Raw, tag: bytes, args: bytes) -> dict[bytes, set[bytes]]:
    out = {}
    for ln in r.ok(tag + b" LIST " + args):
        m = re.fullmatch(rb'\* LIST \(([^)]*)\) "/" (.*)', ln)
        assert m is not None, ln
        out[m.group(2).strip(b'"')] = set(m.group(1).split())
    return out


def test_list_wildcards_at_several_levels(server: Posthorn) -> None:
    r = Raw(server, "dave@example.test")
    for name in ("Lvl", "Lvl/A", "Lvl/A/B", "Lvl/A/B/C", "Lvl/D", "Lvlx"):
        fresh(r, name)
    assert set(_list(r, b"l1", b'"" "Lvl/%"')) == {b"Lvl/A", b"Lvl/D"}
    assert set(_list(r, b"l2", b'"" "Lvl/*"')) == {b"Lvl/A", b"Lvl/A/B", b"Lvl/A/B/C", b"Lvl/D"}
    assert set(_list(r, b"l3", b'"Lvl/" "%"')) == {b"Lvl/A", b"Lvl/D"}
    assert set(_list(r, b"l4", b'"" "Lvl/%/%"')) == {b"Lvl/A/B"}
    assert set(_list(r, b"l5", b'"" "Lvl%"')) == {b"Lvl", b"Lvlx"}
    assert set(_list(r, b"l6", b'"" "Lvl*"')) == {
        b"Lvl", b"Lvl/A", b"Lvl/A/B", b"Lvl/A/B/C", b"Lvl/D", b"Lvlx"
    }  # fmt: skip
    assert set(_list(r, b"l7", b'"" "*/B"')) == {b"Lvl/A/B"}
    top = _list(r, b"l8", b'"" "%"')
    assert b"\\HasChildren" in top[b"Lvl"] and b"\\HasNoChildren" in top[b"Lvlx"]
    assert b"INBOX" in top
    assert _list(r, b"l9", b'"" ""') == {b"": {b"\\Noselect"}}
    # A missing parent of an existing mailbox is listed, but cannot be selected.
    fresh(r, "Ghost/Child")
    ghost = _list(r, b"l10", b'"" "Ghost"')
    assert ghost == {b"Ghost": {b"\\HasChildren"}} or b"\\Noselect" in ghost[b"Ghost"], ghost
    assert _list(r, b"l11", b'"" "inbox"').keys() == {b"INBOX"}
    r.close()


def test_status_of_the_selected_mailbox(server: Posthorn) -> None:
    r = Raw(server, "dave@example.test")
    fresh(r, "Stat")
    r.append("Stat", message("st1"))
    r.ok(b"t1 SELECT Stat")
    other = Raw(server, "dave@example.test")
    other.append("Stat", message("st2"), "\\Seen")
    other.close()
    lines = r.ok(b"t2 STATUS Stat (MESSAGES UIDNEXT UNSEEN)")
    assert lines[0] == b"* STATUS Stat (MESSAGES 2 UIDNEXT 3 UNSEEN 1)", lines
    # The new message's EXISTS may come with this command (after the STATUS) or the next one.
    assert b"* 2 EXISTS" in lines + r.ok(b"t3 NOOP")
    r.append("Stat", message("st3"))  # into the selected mailbox: EXISTS with the APPEND
    lines = r.ok(b"t4 STATUS Stat (MESSAGES UIDNEXT UNSEEN)")
    assert b"* STATUS Stat (MESSAGES 3 UIDNEXT 4 UNSEEN 2)" in lines, lines
    r.close()


def test_rename_mailbox_with_children(server: Posthorn) -> None:
    r = Raw(server, "dave@example.test")
    fresh(r, "Parent/Kid/Grandkid")
    assert b"Parent" in _list(r, b"r0", b'"" "Parent"')  # superiors created (RFC 3501 §6.3.3)
    r.append("Parent/Kid", message("moved along"))
    r.ok(b"r1 SUBSCRIBE Parent/Kid")
    r.ok(b"r2 RENAME Parent Renamed")
    names = _list(r, b"r3", b'"" "*"')
    assert {b"Renamed", b"Renamed/Kid", b"Renamed/Kid/Grandkid"} <= names.keys()
    assert not any(n.startswith(b"Parent") for n in names), names
    lines = r.ok(b"r4 STATUS Renamed/Kid (MESSAGES)")
    assert lines == [b"* STATUS Renamed/Kid (MESSAGES 1)"]
    lines = r.cmd(b"r5 SELECT Parent/Kid")
    assert lines[-1].startswith(b"r5 NO"), lines
    assert r.cmd(b"r6 RENAME Nope Nope2")[-1].startswith(b"r6 NO")
    assert r.cmd(b"r7 RENAME Renamed/Kid Renamed")[-1].startswith(b"r7 NO")
    r.close()


def test_rename_inbox_moves_its_messages(server: Posthorn) -> None:
    r = Raw(server, "erin@example.test")
    r.append("INBOX", message("inbox one"))
    r.append("INBOX", message("inbox two"))
    r.ok(b"r1 RENAME INBOX OldInbox")  # RFC 3501 §6.3.5: INBOX stays, empty
    assert r.ok(b"r2 STATUS INBOX (MESSAGES)") == [b"* STATUS INBOX (MESSAGES 0)"]
    assert r.ok(b"r3 STATUS OldInbox (MESSAGES)") == [b"* STATUS OldInbox (MESSAGES 2)"]
    r.close()


def test_idle_done_and_logout(server: Posthorn) -> None:
    r = Raw(server, "dave@example.test")
    fresh(r, "Idle")
    r.ok(b"i1 SELECT Idle")
    r.send(b"i2 IDLE\r\n")
    assert r.response().startswith(b"+ ")
    other = Raw(server, "dave@example.test")
    other.append("Idle", message("wake up"))
    other.close()
    assert r.response() == b"* 1 EXISTS"
    assert r.response() == b"* 1 RECENT"  # IMAP4rev1 client (RFC 3501 §7.3.2)
    r.send(b"DONE\r\n")
    assert r.until_tagged(b"i2")[-1].startswith(b"i2 OK")
    lines = r.cmd(b"i3 LOGOUT")
    assert lines[0].startswith(b"* BYE") and lines[-1].startswith(b"i3 OK"), lines
    assert r.sock.recv(100) == b""  # the server closes the connection
    r.close()


def test_bad_commands_get_bad_and_the_session_continues(server: Posthorn) -> None:
    r = Raw(server)
    assert r.cmd(b"b1 FETCH 1 FLAGS")[-1].startswith(b"b1 BAD")  # not selected, not logged in
    assert r.cmd(b"b2 SELECT INBOX")[-1].startswith(b"b2 BAD")  # not logged in
    pw = PASSWORDS["dave@example.test"]
    r.ok(f'b3 LOGIN dave@example.test "{pw}"'.encode())
    assert r.cmd(b"b4 LOGIN x y")[-1].startswith(b"b4 BAD")  # already logged in
    assert r.cmd(b"b5 SELECT")[-1].startswith(b"b5 BAD")
    assert r.cmd(b"b6 FETCH 1 FLAGS")[-1].startswith(b"b6 BAD")  # nothing selected
    r.ok(b"b7 SELECT INBOX")
    assert r.cmd(b"b8 FETCH 1:* (FROB)")[-1].startswith(b"b8 BAD")
    assert r.cmd(b"b9 STORE 1:* +FLAGS (\\Bogus)")[-1].startswith(b"b9 BAD")
    assert r.cmd(b"b10 FETCH x:y FLAGS")[-1].startswith(b"b10 BAD")
    assert r.cmd(b"b11 UID")[-1].startswith(b"b11 BAD")
    assert r.cmd(b"b12 SEARCH (")[-1].startswith(b"b12 BAD")
    assert r.cmd(b"b13 ENABLE QRESYNC")[-1].startswith(b"b13 BAD")  # authenticated state only
    r.send(b"\r\n")  # an empty line: untagged BAD
    assert r.response().startswith(b"* BAD")
    r.ok(b"b14 NOOP")
    r.close()


# --- Thunderbird- and Apple-Mail-like sequences ------------------------------------------------


def _code(lines: list[bytes], name: bytes) -> int:
    found = [m for ln in lines if (m := re.search(rb"\[" + name + rb" (\d+)\]", ln))]
    assert len(found) == 1, lines
    return int(found[0].group(1))


def test_thunderbird_like_session(server: Posthorn) -> None:
    r = Raw(server)
    lines = r.ok(b'a0 ID ("name" "Thunderbird" "version" "128.5.0")')
    assert len(lines) == 1 and lines[0].startswith(b"* ID ("), lines
    assert b"CONDSTORE" not in r.greeting  # before login, only what login needs
    pw = PASSWORDS["erin@example.test"]
    plain = base64.b64encode(f"\0erin@example.test\0{pw}".encode())
    r.ok(b"a1 authenticate PLAIN " + plain)
    r.ok(b"a2 NAMESPACE")
    assert r.ok(b"a3 ENABLE CONDSTORE") == [b"* ENABLED CONDSTORE"]
    r.ok(b'a4 CREATE "Thunder/Bird"')
    r.ok(b'a5 SUBSCRIBE "Thunder/Bird"')
    lines = r.ok(b'a6 LIST (SUBSCRIBED) "" "*" RETURN (CHILDREN SPECIAL-USE)')
    listed = {ln.rsplit(b" ", 1)[1].strip(b'"'): ln for ln in lines}
    assert b"\\Subscribed" in listed[b"Thunder/Bird"], lines
    assert b"\\HasNoChildren" in listed[b"Thunder/Bird"], lines
    assert b"Thunder" not in listed or b"\\Subscribed" not in listed[b"Thunder"], lines
    lines = r.ok(b'a7 LIST (SPECIAL-USE) "" "*"')
    uses = {ln.rsplit(b" ", 1)[1].strip(b'"') for ln in lines}
    assert uses == {b"Sent", b"Drafts", b"Trash", b"Junk", b"Archive"}, lines
    for i in range(3):
        r.append("Thunder/Bird", message(f"tb {i}"), "\\Seen" if i else "")
    lines = r.ok(b'a8 select "Thunder/Bird" (CONDSTORE)')
    modseq = _code(lines, b"HIGHESTMODSEQ")
    # CONDSTORE: STORE answers carry MODSEQ (RFC 7162 §3.1.3), FETCH ... CHANGEDSINCE filters.
    lines = r.ok(b"a9 UID STORE 1 +FLAGS (\\Flagged)")
    assert re.fullmatch(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Flagged\) MODSEQ \((\d+)\)\)", lines[0])
    lines = r.ok(b"a10 UID fetch 1:* (FLAGS) (CHANGEDSINCE %d)" % modseq)
    assert len(lines) == 1 and lines[0].startswith(b"* 1 FETCH (UID 1 "), lines
    assert re.search(rb"MODSEQ \(\d+\)", lines[0]), lines
    # A conflicting STORE with UNCHANGEDSINCE fails for that message (RFC 7162 §3.1.3).
    lines = r.cmd(b"a11 UID STORE 1,2 (UNCHANGEDSINCE %d) +FLAGS (\\Answered)" % modseq)
    assert re.match(rb"a11 OK \[MODIFIED 1\]", lines[-1]), lines
    assert any(ln.startswith(b"* 2 FETCH (UID 2") for ln in lines), lines
    lines = r.ok(b'a12 getquotaroot "Thunder/Bird"')
    assert lines[0].startswith(b"* QUOTAROOT "), lines
    r.send(b"a13 IDLE\r\n")
    assert r.response().startswith(b"+")
    other = Raw(server, "erin@example.test")
    other.ok(b"o1 SELECT Thunder/Bird")
    other.ok(b"o2 STORE 3 +FLAGS (\\Deleted)")
    other.ok(b"o3 EXPUNGE")
    other.close()
    seen = [r.response()]
    while seen[-1] != b"* 3 EXPUNGE":
        assert re.fullmatch(
            rb"\* 3 FETCH \(FLAGS \([^)]*\\Deleted[^)]*\) MODSEQ \(\d+\)\)", seen[-1]
        ), seen
        seen.append(r.response())
    r.send(b"DONE\r\n")
    assert r.until_tagged(b"a13")[-1].startswith(b"a13 OK")
    r.ok(b"a14 UID STORE 1 +FLAGS (\\Deleted)")
    assert r.ok(b"a15 CLOSE") == []  # expunges silently (RFC 3501 §6.4.2)
    r.ok(b"a16 LOGOUT")
    r.close()


@dataclass
class Resync:
    """A QRESYNC client's view of a mailbox it last saw at ``modseq``, after which another
    client set \\Seen on ``uids[1]``, expunged ``uids[3]`` and appended ``new_uid``."""

    r: Raw
    name: bytes
    uids: list[int]
    validity: int
    modseq: int
    new_uid: int


def _resync_setup(server: Posthorn, name: str) -> Resync:
    r = Raw(server, "erin@example.test")
    r.ok(b"q0 CREATE " + name.encode())
    uids = [r.append(name, message(f"{name} {i}")) for i in range(5)]
    assert r.ok(b"q1 ENABLE QRESYNC") == [b"* ENABLED QRESYNC"]
    lines = r.ok(b"q2 SELECT %s (QRESYNC (1 1))" % name.encode())  # wrong UIDVALIDITY
    validity, modseq = _code(lines, b"UIDVALIDITY"), _code(lines, b"HIGHESTMODSEQ")
    assert not untagged(lines, b"VANISHED") and not untagged(lines, b"FETCH"), lines
    r.ok(b"q3 UNSELECT")
    other = Raw(server, "erin@example.test")
    other.ok(b"o1 SELECT " + name.encode())
    other.ok(b"o2 UID STORE %d +FLAGS (\\Seen)" % uids[1])
    other.ok(b"o3 UID STORE %d +FLAGS (\\Deleted)" % uids[3])
    other.ok(b"o4 EXPUNGE")
    new_uid = other.append(name, message(f"{name} new"))
    other.close()
    return Resync(r, name.encode(), uids, validity, modseq, new_uid)


def test_qresync_select_and_uid_fetch_vanished(server: Posthorn) -> None:
    x = _resync_setup(server, "Apple")
    r, uids = x.r, x.uids
    lines = r.ok(b"q4 STATUS Apple (UIDNEXT MESSAGES UNSEEN HIGHESTMODSEQ)")
    m = re.fullmatch(
        rb"\* STATUS Apple \(UIDNEXT (\d+) MESSAGES 5 UNSEEN 4 HIGHESTMODSEQ (\d+)\)", lines[0]
    )
    assert m is not None and int(m.group(1)) == x.new_uid + 1, lines
    assert int(m.group(2)) > x.modseq
    lines = r.ok(b"q5 SELECT Apple (QRESYNC (%d %d))" % (x.validity, x.modseq))
    assert b"* VANISHED (EARLIER) %d" % uids[3] in lines, lines
    changed = {int(fetched(ln)[1][b"UID"]): fetched(ln) for ln in untagged(lines, b"FETCH")}
    # RFC 7162 §3.2.5: changes since modseq, with UIDs (and MODSEQ): the flag change and the
    # new message.
    assert set(changed) == {uids[1], x.new_uid}, lines
    assert changed[uids[1]][0] == 2 and changed[uids[1]][1][b"FLAGS"] == [b"\\Seen"]
    assert all(b"MODSEQ" in f for _, f in changed.values())
    vanished_at = lines.index(b"* VANISHED (EARLIER) %d" % uids[3])
    assert all(lines.index(ln) > vanished_at for ln in untagged(lines, b"FETCH"))
    # The same through UID FETCH ... (CHANGEDSINCE n VANISHED), as Apple Mail does.
    lines = r.ok(b"q6 UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % x.modseq)
    assert lines[0] == b"* VANISHED (EARLIER) %d" % uids[3], lines
    assert {int(fetched(ln)[1][b"UID"]) for ln in lines[1:]} == {uids[1], x.new_uid}, lines
    r.close()


def test_qresync_known_uids_limit_the_report(server: Posthorn) -> None:
    x = _resync_setup(server, "Known")
    # RFC 7162 §3.2.5: "If the list of known UIDs was also provided, the server should only
    # report flag changes and expunges for the specified messages."
    lines = x.r.ok(
        b"q8 EXAMINE Known (QRESYNC (%d %d %d:%d))" % (x.validity, x.modseq, 1, x.uids[2])
    )
    assert not untagged(lines, b"VANISHED"), lines
    assert {int(fetched(ln)[1][b"UID"]) for ln in untagged(lines, b"FETCH")} == {x.uids[1]}, lines
    x.r.close()


def test_qresync_expunges_are_vanished(server: Posthorn) -> None:
    x = _resync_setup(server, "Vanish")
    r, uids = x.r, x.uids
    # With QRESYNC on, expunges are VANISHED (RFC 7162 §3.2.10), also from other sessions.
    r.ok(b"q10 SELECT Vanish")
    r.ok(b"q11 UID STORE %d +FLAGS.SILENT (\\Deleted)" % uids[0])
    lines = r.cmd(b"q12 EXPUNGE")
    assert lines[0] == b"* VANISHED %d" % uids[0], lines
    assert re.match(rb"q12 OK \[HIGHESTMODSEQ \d+\]", lines[-1]), lines
    other = Raw(server, "erin@example.test")
    other.ok(b"o5 SELECT Vanish")
    other.ok(b"o6 UID STORE %d +FLAGS (\\Deleted)" % uids[2])
    other.ok(b"o7 UID EXPUNGE %d" % uids[2])
    other.close()
    assert r.ok(b"q13 NOOP") == [b"* VANISHED %d" % uids[2]]
    lines = r.cmd(b"q14 FETCH 1 (FLAGS) (VANISHED)")  # VANISHED is for UID FETCH only
    assert lines[-1].startswith(b"q14 BAD"), lines
    r.ok(b"q15 UID STORE %d +FLAGS.SILENT (\\Deleted)" % uids[4])
    # RFC 7162 §3.2.8: a CLOSE that expunged reports the new HIGHESTMODSEQ in its tagged OK.
    lines = r.cmd(b"q16 CLOSE")
    assert re.fullmatch(rb"q16 OK \[HIGHESTMODSEQ \d+\].*", lines[-1]), lines
    r.close()


def test_qresync_needs_enable(server: Posthorn) -> None:
    r = Raw(server, "erin@example.test")
    # RFC 7162 §3.2.5: BAD without ENABLE QRESYNC; the mailbox stays unselected.
    assert r.cmd(b"e1 SELECT INBOX (QRESYNC (1 1))")[-1].startswith(b"e1 BAD")
    assert r.cmd(b"e2 FETCH 1 FLAGS")[-1].startswith(b"e2 BAD")
    r.ok(b"e3 SELECT INBOX")
    assert r.cmd(b"e4 UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)")[-1].startswith(b"e4 BAD")
    r.close()


def test_apple_mail_like_header_fetch(server: Posthorn) -> None:
    r = Raw(server, "erin@example.test")
    r.ok(b"m0 CREATE AppleHdr")
    r.append("AppleHdr", message("hdr", extra="X-Priority: 1\r\nCc: c@example.test\r\n"), "\\Seen")
    r.ok(b'm1 LIST "" ""')
    r.ok(b"m2 SELECT AppleHdr")
    lines = r.ok(
        b"m3 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc "
        b"Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To "
        b"Content-Type Reply-To)])"
    )
    (line,) = lines
    got = fetched(line)[1]
    assert got[b"UID"] == b"1" and got[b"FLAGS"] == [b"\\Seen"]
    (key,) = [k for k in got if k.startswith(b"BODY[HEADER.FIELDS")]
    assert (
        got[key]
        == (
            b"To: someone@example.test\r\nSubject: hdr\r\nMessage-ID: <hdr@example.test>\r\n"
            b"X-Priority: 1\r\nCc: c@example.test\r\n"
            b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
        )
        or b"From: Bob" in got[key]
    ), got[key]
    lines = r.ok(b"m4 UID SEARCH 1:* NOT DELETED")
    assert lines == [b"* SEARCH 1"], lines
    r.close()
