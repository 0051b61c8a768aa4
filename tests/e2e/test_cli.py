"""The admin CLI against a running server's data directory: changes, listings, clean errors."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Posthorn

MESSAGE = (
    b"From: Carol <carol@remote.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@remote.test>\r\n"
    b"\r\n"
    b"Hello Alice.\r\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Posthorn]:
    ph = Posthorn(tmp_path_factory.mktemp("cli"), services=("http",)).start()
    yield ph
    assert ph.stop() == 0


def test_domains(server: Posthorn) -> None:
    assert "example.test" in server.cli("domain", "list", check=True).stdout
    out = server.cli("domain", "add", "Other.Test", check=True).stdout
    assert "other.test" in out
    listing = server.cli("domain", "list", check=True).stdout
    assert re.search(r"^other\.test\s", listing, re.M)
    assert server.cli("domain", "del", "other.test", check=True).returncode == 0
    assert "other.test" not in server.cli("domain", "list", check=True).stdout


def test_user_add_generated_and_stdin_passwords(server: Posthorn) -> None:
    out = server.cli("user", "add", "alice@example.test", check=True).stdout
    password = re.search(r"^password: (\S+)$", out, re.M)
    assert password is not None and len(password.group(1)) >= 16
    out = server.cli(
        "user",
        "add",
        "Bob@Example.Test",
        "--password-stdin",
        "--quota",
        "1M",
        input="s3cret-pass\n",
        check=True,
    ).stdout
    assert "password:" not in out
    listing = server.cli("user", "list", check=True).stdout
    assert re.search(r"^alice@example\.test\tquota=unlimited\tenabled$", listing, re.M)
    assert re.search(r"^bob@example\.test\tquota=1M\tenabled$", listing, re.M)
    # New accounts get the default mailboxes with their special-use attributes.
    boxes = server.cli("mail", "mailboxes", "alice@example.test", check=True).stdout
    for name, use in [
        ("INBOX", "-"),
        ("Sent", "\\Sent"),
        ("Drafts", "\\Drafts"),
        ("Trash", "\\Trash"),
        ("Junk", "\\Junk"),
        ("Archive", "\\Archive"),
    ]:
        assert re.search(rf"^{name}\t{re.escape(use)}\t0\t0\t0$", boxes, re.M), boxes


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("user", "add", "not-an-address"), None, "not-an-address"),
        (("user", "add", "x@nowhere.test"), None, "nowhere.test"),
        (("user", "add", "alice@example.test"), None, "already exists"),
        (("user", "add", "carl@example.test", "--password-stdin"), "\n", "empty password"),
        (("user", "add", "carl@example.test", "--quota", "lots"), None, "--quota"),
        (("user", "del", "nobody@example.test"), None, "no account"),
        (("user", "passwd", "nobody@example.test"), None, "no account"),
        (("alias", "add", "x@nowhere.test", "alice@example.test"), None, "nowhere.test"),
        (("alias", "add", "list@example.test", "bad target"), None, "bad target"),
        (("domain", "add", "bad_domain!"), None, "bad_domain!"),
        (("domain", "del", "example.test"), None, "still has"),
        (("mail", "ls", "nobody@example.test"), None, "no account"),
        (("mail", "ls", "alice@example.test", "Nope"), None, "Nope"),
        (("user", "admin", "nobody@example.test", "on"), None, "no account"),
        (("dns", "records", "nowhere.test"), None, "domain nowhere.test does not exist"),
        (("dns", "records", "bad_domain!"), None, "bad_domain!"),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(
    server: Posthorn, args: tuple[str, ...], stdin: str | None, message: str
) -> None:
    server.cli("user", "add", "alice@example.test", input=None)  # exists either way
    before = [
        server.cli(*c).stdout for c in (("user", "list"), ("alias", "list"), ("domain", "list"))
    ]
    result = server.cli(*args, input=stdin)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    after = [
        server.cli(*c).stdout for c in (("user", "list"), ("alias", "list"), ("domain", "list"))
    ]
    assert after == before


def test_aliases(server: Posthorn) -> None:
    server.cli("user", "add", "alice@example.test")
    server.cli(
        "alias", "add", "team@example.test", "alice@example.test", "x@remote.test", check=True
    )
    server.cli("alias", "add", "@example.test", "alice@example.test", check=True)
    listing = server.cli("alias", "list", check=True).stdout
    assert re.search(r"^team@example\.test\talice@example\.test, x@remote\.test$", listing, re.M)
    assert re.search(r"^@example\.test\talice@example\.test$", listing, re.M)
    server.cli("alias", "del", "team@example.test", check=True)
    assert "team@" not in server.cli("alias", "list", check=True).stdout


def test_mail_append_ls_cat(server: Posthorn, tmp_path: Path) -> None:
    server.cli("user", "add", "alice@example.test")
    msg = tmp_path / "msg.eml"
    msg.write_bytes(MESSAGE)
    out = server.cli("mail", "append", "alice@example.test", "INBOX", str(msg), check=True).stdout
    uid = int(re.search(r"UID (\d+)", out).group(1))  # type: ignore[union-attr]
    listing = server.cli("mail", "ls", "alice@example.test", check=True).stdout
    line = next(ln for ln in listing.splitlines() if ln.startswith(f"{uid}\t"))
    fields = line.split("\t")
    assert fields[1] == "-"
    assert fields[2] == str(len(MESSAGE))
    assert fields[4] == "carol@remote.test"
    assert fields[5] == "Grüße"
    raw = subprocess.run(
        [
            sys.executable,
            "-m",
            "posthorn",
            "mail",
            "cat",
            "alice@example.test",
            "INBOX",
            str(uid),
            "-c",
            str(server.config_path),
        ],
        capture_output=True,
        check=True,
    ).stdout
    assert raw == MESSAGE
    missing = server.cli("mail", "cat", "alice@example.test", "INBOX", "9999")
    assert missing.returncode == 2


def test_quota_and_passwd_and_delete(server: Posthorn) -> None:
    server.cli("user", "add", "dave@example.test", "--password-stdin", input="pw-one\n", check=True)
    out = server.cli("user", "passwd", "dave@example.test", check=True).stdout
    assert re.search(r"^password: \S{16,}$", out, re.M)
    server.cli("user", "quota", "dave@example.test", "10", check=True)
    big = server.cli("mail", "append", "dave@example.test", "INBOX", input="x" * 100)
    assert big.returncode == 2 and "quota" in big.stderr.lower()
    server.cli("user", "disable", "dave@example.test", check=True)
    assert "dave@example.test\tquota=10\tdisabled" in server.cli("user", "list").stdout
    server.cli("user", "del", "dave@example.test", check=True)
    assert "dave@" not in server.cli("user", "list").stdout


def test_admin_flag(server: Posthorn) -> None:
    added = server.cli(
        "user", "add", "root@example.test", "--admin", "--password-stdin", input="root-pw\n"
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "account root@example.test added (quota unlimited, admin)"
    server.cli("user", "add", "erin@example.test", check=True)
    listing = server.cli("user", "list", check=True).stdout
    assert re.search(r"^root@example\.test\tquota=unlimited\tenabled\tadmin$", listing, re.M)
    assert re.search(r"^erin@example\.test\tquota=unlimited\tenabled$", listing, re.M)
    out = server.cli("user", "admin", "Erin@Example.Test", "on", check=True).stdout
    assert out.strip() == "account erin@example.test is an admin"
    assert "erin@example.test\tquota=unlimited\tenabled\tadmin" in server.cli("user", "list").stdout
    server.cli("user", "admin", "erin@example.test", "off", check=True)
    assert re.search(r"^erin@example\.test\t.*enabled$", server.cli("user", "list").stdout, re.M)
    bad = server.cli("user", "admin", "erin@example.test", "maybe")
    assert bad.returncode == 2 and "maybe" in bad.stderr


def test_dns_records(server: Posthorn) -> None:
    out = server.cli("dns", "records", "Example.Test", check=True).stdout
    lines = [line for line in out.splitlines() if not line.startswith(";")]
    assert lines == [
        "example.test. IN MX 10 mail.example.test.",
        'example.test. IN TXT "v=spf1 mx -all"',
    ]
    comments = [line for line in out.splitlines() if line.startswith(";")]
    assert len(comments) == 2 and "RFC 5321" in comments[0] and "RFC 7208" in comments[1]
