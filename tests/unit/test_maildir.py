"""Maildir names, flags, keywords, folder names, and a tree written then read back."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posthorn.mail import maildir
from posthorn.mail.maildir import MaildirError


@pytest.mark.parametrize(
    ("name", "base", "letters"),
    [
        ("1700000000.M1P2.host", "1700000000.M1P2.host", ""),
        ("1700000000.M1P2.host:2,", "1700000000.M1P2.host", ""),
        ("1700000000.M1P2.host,S=12,W=13:2,FRS", "1700000000.M1P2.host,S=12,W=13", "FRS"),
        ("1.2.h:2,Sab", "1.2.h", "Sab"),
    ],
)
def test_split_name(name: str, base: str, letters: str) -> None:
    assert maildir.split_name(name) == (base, letters)


@pytest.mark.parametrize("name", [":2,S", "1.2.h:1,xyz", "1.2.h:2,S!", "1.2.h:3,", "1.2.h:"])
def test_bad_names(name: str) -> None:
    with pytest.raises(MaildirError, match="bad maildir file name"):
        maildir.split_name(name)


def test_flags_both_ways() -> None:
    assert maildir.flags_from_info("DFPRST") == {
        "\\Draft",
        "\\Flagged",
        "\\Answered",
        "\\Seen",
        "\\Deleted",
    }  # P (passed) has no IMAP flag
    every = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})
    assert maildir.info_from_flags(every) == "2,DFRST"  # ASCII order, as cr.yp.to asks
    assert maildir.info_from_flags(frozenset()) == "2,"
    assert maildir.info_from_flags({"\\Seen", "work"}, {"work": "b"}) == "2,Sb"


def test_keywords() -> None:
    words = maildir.parse_keywords("0 $Forwarded\n2 project\nbogus line\n30 toofar\n")
    assert words == ["$Forwarded", None, "project"]
    assert maildir.flags_from_info("Sacz", words) == {"\\Seen", "$Forwarded", "project"}
    assert maildir.parse_keywords(maildir.format_keywords(["a", "b"])) == ["a", "b"]


def test_uidlist_order() -> None:
    text = "3 V1 N4 Gabc\n3 :1.M1.h\n1 W20 :2.M1.h\n2 :3.M1.h:2,S\n"
    assert maildir.parse_uidlist(text) == {"1.M1.h": 3, "2.M1.h": 1, "3.M1.h": 2}
    assert maildir.parse_uidlist("1 1 2\n7 9.M1.h\n") == {"9.M1.h": 7}  # version 1


@pytest.mark.parametrize(
    ("folder", "mailbox"),
    [
        (".Work", "Work"),
        (".Work.2026", "Work/2026"),
        (".INBOX.lists", "INBOX/lists"),
        (".Entw&APw-rfe", "Entwürfe"),  # modified UTF-7 (RFC 3501 §5.1.3)
        (".&U,BTFw-.&ZeVnLIqe-", "台北/日本語"),
        (".a&-b", "a&b"),
        (".example\\2ecom", "example.com"),  # listescape: "." inside a level
        (".back\\5cslash", "back\\slash"),
    ],
)
def test_folder_names_both_ways(folder: str, mailbox: str) -> None:
    assert maildir.folder_to_mailbox(folder) == mailbox
    assert maildir.mailbox_to_folder(mailbox) == folder


def test_folder_names_kept_when_not_modified_utf7() -> None:
    assert maildir.folder_to_mailbox(".R&D") == "R&D"


@pytest.mark.parametrize("folder", ["Work", ".", "..", ".a..b", ".a."])
def test_bad_folder_names(folder: str) -> None:
    with pytest.raises(MaildirError):
        maildir.folder_to_mailbox(folder)


def test_unique_names_sort_in_write_order() -> None:
    a = maildir.unique_name(1700000000.25, 42, 9, "mail/host:1,x")
    b = maildir.unique_name(1700000000.25, 42, 10, "mail/host:1,x")
    assert a == "1700000000.M250000P42Q00000009.mail\\057host\\0721\\054x"
    assert a < b


def _touch(path: Path, data: bytes, when: int) -> None:
    path.write_bytes(data)
    os.utime(path, (when, when))


def test_read_a_dovecot_tree(tmp_path: Path) -> None:
    for d in ("", ".Work", ".Work.2026", ".Junk.mess", ".broken..name"):
        for sub in ("cur", "new", "tmp"):
            (tmp_path / d / sub).mkdir(parents=True, exist_ok=True)
    (tmp_path / ".notafolder").mkdir()  # no cur/ or new/
    _touch(tmp_path / "cur" / "1700000002.M1P1.h:2,S", b"Subject: b\n\n", 1_600_000_000)
    _touch(tmp_path / "new" / "1700000001.M1P1.h:2,S", b"Subject: a\n\n", 1_600_000_001)
    _touch(tmp_path / "tmp" / "1700000003.M1P1.h", b"Subject: in delivery\n\n", 1)
    (tmp_path / "cur" / ".hidden").write_bytes(b"x")
    folders, problems = maildir.list_folders(tmp_path)
    assert [f.mailbox for f in folders] == ["INBOX", "Junk/mess", "Work", "Work/2026"]
    assert [(p.name, "empty level" in why) for p, why in problems] == [(".broken..name", True)]
    files = maildir.list_messages(tmp_path)
    assert [f.name for f in files] == ["1700000001.M1P1.h:2,S", "1700000002.M1P1.h:2,S"]
    new = maildir.describe(files[0], [])
    assert new.flags == frozenset()  # in new/: unseen, whatever the name says
    cur = maildir.describe(files[1], [])
    assert cur.flags == {"\\Seen"}
    assert cur.internal_date == datetime.fromtimestamp(1_600_000_000, UTC)


def test_write_then_read(tmp_path: Path) -> None:
    root = tmp_path / "out"
    w = maildir.MaildirWriter(root)
    inbox = w.folder("INBOX")
    sub = w.folder("Work/2026.q1")
    when = datetime(2021, 5, 6, 7, 8, 9, tzinfo=UTC)
    flags = frozenset({"\\Seen", "\\Flagged", "$Label1"})
    path, dropped = w.write(sub, b"Subject: x\n\nbody\n", flags, when)
    w.write(inbox, b"Subject: y\n\n", frozenset(), when)
    many = frozenset(f"k{i:02d}" for i in range(30))
    _, dropped = w.write(sub, b"Subject: z\n\n", many, when)
    w.finish()
    assert len(dropped) == 30 - 25  # $Label1 took one of the 26 letters
    assert path.parent == root / ".Work.2026\\2eq1" / "cur"
    assert (root / ".Work.2026\\2eq1" / "maildirfolder").exists()
    assert not (root / "maildirfolder").exists()
    assert ",S=17,W=20:2,FSa" in path.name
    assert not any((root / ".Work.2026\\2eq1" / "tmp").iterdir())
    folders, _ = maildir.list_folders(root)
    assert [f.mailbox for f in folders] == ["INBOX", "Work/2026.q1"]
    keywords = maildir.read_keywords(sub)
    msgs = [maildir.describe(p, keywords) for p in maildir.list_messages(sub)]
    assert msgs[0].flags == flags
    assert msgs[0].internal_date == when
    assert msgs[1].flags == frozenset(sorted(many)[:25])
