"""`posthorn import|export maildir|mbox` against a running server's data directory.

Trees and files are made here (Dovecot's Maildir++ layout; an mboxrd file with quoting cases),
imported with the real CLI while `posthorn serve` runs, checked through the store and over
IMAP, exported, and imported again: the round trip must give the same bytes, flags and dates.
"""

from __future__ import annotations

import asyncio
import imaplib
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posthorn.store.sqlite import SQLiteMailStore
from tests.e2e.harness import Posthorn

PASSWORD = "import-secret-1"
ACCOUNTS = ["md", "md2", "md3", "mb", "mb2", "mb3", "quota", "pre", "live"]

Snapshot = dict[str, list[tuple[bytes, frozenset[str], datetime]]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Posthorn]:
    ph = Posthorn(tmp_path_factory.mktemp("transfer"), services=("imap",)).start()
    for name in ACCOUNTS:
        extra = ("--quota", "1K") if name == "quota" else ()
        ph.cli(
            "user", "add", f"{name}@example.test", "--password-stdin", *extra,
            input=PASSWORD + "\n", check=True,
        )  # fmt: skip
    yield ph
    assert ph.stop() == 0
    assert not [ln for ln in ph.lines if "Traceback" in ln]


def snapshot(server: Posthorn, address: str) -> Snapshot:
    """Every mailbox's messages in UID order: bytes, flags, internal date (from the store)."""

    async def run() -> Snapshot:
        store = SQLiteMailStore(server.data_dir)
        await store.open()
        try:
            out: Snapshot = {}
            for box in await store.list_mailboxes(address):
                metas = await store.fetch(address, box.id)
                out[box.name] = [
                    (await store.read(address, box.id, m.uid), m.flags, m.internal_date)
                    for m in metas
                ]
            return out
        finally:
            await store.close()

    return asyncio.run(run())


def stamp(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def put(path: Path, data: bytes, when: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (stamp(when), stamp(when)))


def msg(subject: str, body: str = "Hello.\n") -> bytes:
    return (
        f"From: Carol <carol@remote.test>\nTo: someone@example.test\nSubject: {subject}\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <{subject}@remote.test>\n\n{body}"
    ).encode()


def make_maildir(root: Path, *, broken: bool = False) -> None:
    """Dovecot's layout: INBOX at the root, .Work and .Work.2026 folders, an mUTF-7 name."""
    for folder in ("", ".Work", ".Work.2026", ".Entw&APw-rfe"):
        for sub in ("cur", "new", "tmp"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
        if folder:
            (root / folder / "maildirfolder").touch()
    put(root / "cur/1600000000.M1P1.old:2,S", msg("seen"), "2020-09-13T12:26:40+00:00")
    put(root / "cur/1600000001.M1P1.old,S=1:2,FRS", msg("answered"), "2021-01-02T03:04:05+00:00")
    put(root / "new/1600000002.M1P1.old", msg("fresh"), "2022-02-03T04:05:06+00:00")
    put(root / "tmp/1600000003.M1P1.old", msg("in delivery"), "2022-02-03T04:05:06+00:00")
    (root / ".Work.2026/dovecot-keywords").write_text("0 $Forwarded\n1 project\n")
    put(
        root / ".Work.2026/cur/1600000004.M1P1.old:2,DTab",
        msg("draft", "From the start\n>From quoted\r\nend\n"),
        "2023-03-04T05:06:07+00:00",
    )
    put(root / ".Work/cur/1600000005.M1P1.old:2,", msg("work"), "2024-04-05T06:07:08+00:00")
    put(root / ".Entw&APw-rfe/cur/1600000006.M1P1.old:2,D", msg("e"), "2019-01-01T00:00:00+00:00")
    if broken:
        put(root / "cur/1600000007.M1P1.old:2,S", b"\x00\x01 binary junk", "2020-01-01T00:00:00Z")
        put(root / "cur/1600000008.M1P1.old:1,xyz", msg("bad name"), "2020-01-01T00:00:00Z")
        os.makedirs(root / ".bad..name/cur")


HEAD = (
    b"From: Carol <carol@remote.test>\nTo: someone@example.test\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\n"
)
MBOX = (
    # mboxrd quoting of three levels, state headers from mutt
    b"From carol@remote.test Mon Jan  2 03:04:05 2006\n"
    + HEAD
    + b"Subject: quoting\nStatus: RO\nX-Status: AF\nX-Keywords: $Label1\n\n"
    b">From here\n>>From one\n>>>From two\nFromage\n"
    b"\n"
    b"From MAILER-DAEMON Tue Feb  3 04:05:06 2015\n"
    + HEAD
    + b"Subject: unseen\nStatus: O\n\nHello.\n"
    b"\n"
    b"From bob@remote.test Wed Mar  4 05:06:07 2020\n"
    + HEAD
    + b"Subject: no final newline\n\nlast line without end"
)


def run(server: Posthorn, *args: str) -> tuple[int, str, str]:
    r = server.cli(*args)
    return r.returncode, r.stdout, r.stderr


def subjects(snap: Snapshot, mailbox: str) -> list[str]:
    found = []
    for data, _, _ in snap[mailbox]:
        m = re.search(rb"^Subject: (.*?)\r\n", data, re.M)
        found.append(m.group(1).decode() if m else "")
    return found


def test_maildir_import_maps_folders_flags_and_dates(server: Posthorn, tmp_path: Path) -> None:
    make_maildir(tmp_path / "Maildir", broken=True)
    code, out, err = run(server, "import", "maildir", "md@example.test", str(tmp_path / "Maildir"))
    assert code == 1, err  # something was skipped
    assert out.strip() == "imported 6 messages into 4 mailboxes, skipped 3"
    lines = err.splitlines()
    assert len(lines) == 3
    assert any("1600000007.M1P1.old:2,S: not a message" in ln for ln in lines)
    assert any("1600000008.M1P1.old:1,xyz: bad maildir file name" in ln for ln in lines)
    assert any(".bad..name: folder skipped" in ln for ln in lines)
    snap = snapshot(server, "md@example.test")
    assert subjects(snap, "INBOX") == ["seen", "answered", "fresh"]
    assert [f for _, f, _ in snap["INBOX"]] == [
        {"\\Seen"},
        {"\\Seen", "\\Answered", "\\Flagged"},
        frozenset(),
    ]
    assert [d for _, _, d in snap["INBOX"]] == [
        datetime(2020, 9, 13, 12, 26, 40, tzinfo=UTC),
        datetime(2021, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2022, 2, 3, 4, 5, 6, tzinfo=UTC),
    ]
    ((data, flags, _),) = snap["Work/2026"]
    assert flags == {"\\Draft", "\\Deleted", "$Forwarded", "project"}
    assert data.endswith(b"\r\n\r\nFrom the start\r\n>From quoted\r\nend\r\n")  # LF -> CRLF
    assert subjects(snap, "Entwürfe") == ["e"]
    assert subjects(snap, "Work") == ["work"]


def test_import_while_serving_is_seen_over_imap(server: Posthorn, tmp_path: Path) -> None:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    m.login("live@example.test", PASSWORD)
    m.select("INBOX")
    make_maildir(tmp_path / "Maildir")
    code, _, err = run(server, "import", "maildir", "live@example.test", str(tmp_path / "Maildir"))
    assert code == 0, err
    m.noop()
    typ, data = m.uid("FETCH", "1:*", "(FLAGS INTERNALDATE)")
    assert typ == "OK"
    text = b" ".join(d for d in data if isinstance(d, bytes)).decode()
    assert text.count("(UID") == 3  # the IDLE-free session saw the other process's commit
    assert 'UID 1 FLAGS (\\Seen \\Recent) INTERNALDATE "13-Sep-2020 12:26:40 +0000"' in text
    assert 'FLAGS (\\Answered \\Flagged \\Seen \\Recent) INTERNALDATE " 2-Jan-2021' in text
    assert 'UID 3 FLAGS (\\Recent) INTERNALDATE " 3-Feb-2022 04:05:06 +0000"' in text
    typ, data = m.select("Work/2026")
    assert typ == "OK"
    typ, data = m.fetch("1", "(FLAGS INTERNALDATE)")
    text = data[0].decode() if isinstance(data[0], bytes) else ""
    for flag in ("\\Draft", "\\Deleted", "$Forwarded", "project"):
        assert flag in text
    assert '" 4-Mar-2023 05:06:07 +0000"' in text
    m.logout()


def test_maildir_round_trip_is_exact(server: Posthorn, tmp_path: Path) -> None:
    make_maildir(tmp_path / "Maildir")
    assert run(server, "import", "maildir", "md2@example.test", str(tmp_path / "Maildir"))[0] == 0
    out = tmp_path / "export"
    code, stdout, err = run(server, "export", "maildir", "md2@example.test", str(out))
    assert code == 0, err
    assert stdout.strip().startswith("exported 6 messages from")
    assert (out / ".Work.2026/maildirfolder").exists()
    assert (out / ".Entw&APw-rfe/cur").is_dir()
    names = sorted(p.name for p in (out / ".Work.2026/cur").iterdir())
    assert len(names) == 1 and names[0].endswith(":2,DTab")
    assert "$Forwarded" in (out / ".Work.2026/dovecot-keywords").read_text()
    assert b"\r\n" not in next((out / "cur").iterdir()).read_bytes()  # LF on disk
    assert run(server, "import", "maildir", "md3@example.test", str(out))[0] == 0
    assert snapshot(server, "md3@example.test") == snapshot(server, "md2@example.test")


def test_mbox_import_quoting_flags_dates(server: Posthorn, tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    path.write_bytes(MBOX)
    code, out, err = run(server, "import", "mbox", "mb@example.test", str(path))
    assert code == 0, err
    assert out.strip() == "imported 3 messages into 1 mailboxes, skipped 0"
    snap = snapshot(server, "mb@example.test")
    assert subjects(snap, "INBOX") == ["quoting", "unseen", "no final newline"]
    (q, qf, qd), (_, uf, ud), (n, _, nd) = snap["INBOX"]
    assert b"\r\n\r\nFrom here\r\n>From one\r\n>>From two\r\nFromage\r\n" in q
    assert b"Status" not in q and b"X-Keywords" not in q  # state headers became flags
    assert qf == {"\\Seen", "\\Answered", "\\Flagged", "$Label1"}
    assert qd == datetime(2006, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert uf == frozenset() and ud == datetime(2015, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert n.endswith(b"\r\n\r\nlast line without end\r\n")
    assert nd == datetime(2020, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_mbox_round_trip_is_exact(server: Posthorn, tmp_path: Path) -> None:
    """mbox file → mb2 (INBOX and Work/2026) → export dir → mb3 → export again: same."""
    path = tmp_path / "mbox"
    path.write_bytes(MBOX)
    assert run(server, "import", "mbox", "mb2@example.test", str(path))[0] == 0
    code, _, err = run(
        server, "import", "mbox", "mb2@example.test", str(path), "--mailbox", "Work/2026"
    )
    assert code == 0, err
    first = tmp_path / "first"
    code, _, err = run(server, "export", "mbox", "mb2@example.test", str(first))
    assert code == 0, err
    assert (first / "INBOX").is_file() and (first / "Work.sbd/2026").is_file()
    assert (first / "Work").read_bytes() == b""  # the parent exists, with no messages
    exported = (first / "INBOX").read_bytes()
    # Without a Return-Path the envelope sender is not known: MAILER-DAEMON.
    assert exported.startswith(b"From MAILER-DAEMON Mon Jan  2 03:04:05 2006\n")
    assert b"\n\n>From here\n>>From one\n>>>From two\nFromage\n" in exported
    assert b"\nStatus: RO\nX-Status: AF\nX-Keywords: $Label1\n\n" in exported
    code, out, err = run(server, "import", "mbox", "mb3@example.test", str(first))
    assert code == 0, err
    assert "imported 6 messages into" in out
    assert snapshot(server, "mb3@example.test") == snapshot(server, "mb2@example.test")
    second = tmp_path / "second"
    assert run(server, "export", "mbox", "mb3@example.test", str(second))[0] == 0
    for f in first.rglob("*"):
        if f.is_file():
            assert (second / f.relative_to(first)).read_bytes() == f.read_bytes(), f


def test_broken_mbox_chunks_are_skipped(server: Posthorn, tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    path.write_bytes(
        MBOX.replace(b"From MAILER-DAEMON", b"From x Mon Jan  2 03:04:05 2006\nnot a header\n\n"
                     b"From MAILER-DAEMON")
    )  # fmt: skip
    code, out, err = run(server, "import", "mbox", "pre@example.test", str(path), "--mailbox", "B")
    assert code == 1
    assert out.strip() == "imported 3 messages into 1 mailboxes, skipped 1"
    assert re.fullmatch(rf"posthorn: {path}: message at byte \d+: not a message.*\n", err)


def test_mailbox_option_puts_the_tree_under_a_name(server: Posthorn, tmp_path: Path) -> None:
    make_maildir(tmp_path / "Maildir")
    code, _, err = run(
        server, "import", "maildir", "pre@example.test", str(tmp_path / "Maildir"),
        "--mailbox", "Old",
    )  # fmt: skip
    assert code == 0, err
    snap = snapshot(server, "pre@example.test")
    assert subjects(snap, "Old") == ["seen", "answered", "fresh"]
    assert subjects(snap, "Old/Work/2026") == ["draft"]
    assert subjects(snap, "Old/Entwürfe") == ["e"]
    assert snap["INBOX"] == []


def test_import_ignores_the_quota(server: Posthorn, tmp_path: Path) -> None:
    make_maildir(tmp_path / "Maildir")
    tree = str(tmp_path / "Maildir")
    code, out, err = run(server, "import", "maildir", "quota@example.test", tree)
    assert code == 0, err
    assert "imported 6 messages" in out  # well over the 1K quota


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("import", "maildir", "nobody@example.test", "{tmp}"), "no account nobody@example.test"),
        (("import", "mbox", "nobody@example.test", "{tmp}/x"), "no account nobody@example.test"),
        (("import", "maildir", "pre@example.test", "{tmp}/missing"), "missing: no such directory"),
        (("import", "maildir", "pre@example.test", "{tmp}"), "not a Maildir"),
        (("import", "mbox", "pre@example.test", "{tmp}/missing"), "no such file or directory"),
        (("import", "mbox", "pre@example.test", "{tmp}/notes.txt"), "not an mbox"),
        (("import", "mbox", "pre@example.test", "{tmp}/x", "--mailbox", "a//b"), "--mailbox"),
        (("export", "mbox", "nobody@example.test", "{tmp}/out"), "no account"),
        (("export", "maildir", "pre@example.test", "{tmp}"), "not an empty directory"),
        (("export", "mbox", "pre@example.test", "{tmp}/notes.txt"), "not an empty directory"),
    ],
)
def test_bad_input(server: Posthorn, tmp_path: Path, args: tuple[str, ...], problem: str) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    code, out, err = run(server, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and problem in err, err
    assert not (tmp_path / "out").exists()


def test_a_full_disk_stops_the_import_with_one_line(tmp_path: Path) -> None:
    """The data directory on a 1 MiB tmpfs: the import stops cleanly, what it stored stays."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)])
    assert done.returncode == 0, "tmpfs mount needs root (make test runs as root in CI)"
    try:
        ph = Posthorn(mount, services=())
        ph.cli("domain", "add", "example.test", check=True)
        ph.cli(
            "user", "add", "big@example.test", "--password-stdin", input="pw-big-12\n", check=True
        )
        box = tmp_path / "big.mbox"
        body = ("x" * 70 + "\n") * 1500  # ≈ 100 KB each: the disk fills after a few
        box.write_text(
            "".join(
                f"From a@example.test Mon Nov 23 10:00:00 2026\nSubject: {i}\n\n{body}\n"
                for i in range(30)
            )
        )
        result = ph.cli("import", "mbox", "big@example.test", str(box))
        assert result.returncode == 1, result.stderr
        assert "storage error, stopped" in result.stderr
        assert "Traceback" not in result.stderr
        listing = ph.cli("mail", "ls", "big@example.test")
        stored = len(listing.stdout.splitlines())
        assert 0 < stored < 30, listing
    finally:
        subprocess.run(["umount", str(mount)], check=True)
