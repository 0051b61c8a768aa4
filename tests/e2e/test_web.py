"""The web API of a running `posthorn serve`, driven with curl and httpx.

Mail crosses protocols the way users see it: in over SMTP and read on the web; sent on the web
and read over IMAP; a change made over IMAP arrives on the web's event stream.
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Posthorn
from tests.e2e.mail import client_tls

PASSWORDS = {"alice@example.test": "pw-alice-web", "bob@example.test": "pw-bob-web"}
ALICE, BOB = "alice@example.test", "bob@example.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Posthorn]:
    ph = Posthorn(tmp_path_factory.mktemp("web"), services=("smtp", "imap", "http")).start()
    for address, password in PASSWORDS.items():
        ph.cli("user", "add", address, "--password-stdin", input=password + "\n", check=True)
    yield ph
    assert ph.stop() == 0
    tracebacks = [ln for ln in ph.lines if "Traceback" in ln]
    assert not tracebacks, "\n".join(tracebacks)


def base(server: Posthorn) -> str:
    return f"http://127.0.0.1:{server.ports['http']}"


def curl(server: Posthorn, jar: Path, *args: str) -> tuple[int, str, str]:
    """(status, headers, body) of one curl call sharing the cookie jar ``jar``."""
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-b", str(jar), "-c", str(jar), "-D", "-", *args],
        capture_output=True,
        check=True,
    ).stdout.decode()  # bytes: text mode would turn the CRLFs that separate head and body
    head, _, body = out.partition("\r\n\r\n")
    status = int(head.split(" ", 2)[1])
    return status, head, body


@contextlib.contextmanager
def web_client(server: Posthorn, account: str = ALICE) -> Iterator[httpx.Client]:
    """A logged-in client sending the CSRF token, as the pages' JavaScript does."""
    with httpx.Client(base_url=base(server), timeout=20) as client:
        response = client.post(
            "/api/login", json={"address": account, "password": PASSWORDS[account]}
        )
        assert response.status_code == 200, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrf"]
        yield client


def test_curl_login_csrf_and_logout(server: Posthorn, tmp_path: Path) -> None:
    jar = tmp_path / "cookies"
    url = base(server)
    status, head, body = curl(
        server,
        jar,
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps({"address": ALICE, "password": PASSWORDS[ALICE]}),
        f"{url}/api/login",
    )
    assert status == 200
    cookie = next(ln for ln in head.split("\r\n") if ln.lower().startswith("set-cookie:"))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "content-security-policy: default-src 'self'" in head.lower()
    csrf = json.loads(body)["csrf"]

    status, _, body = curl(server, jar, f"{url}/api/me")
    assert status == 200 and json.loads(body)["account"] == ALICE

    status, _, body = curl(
        server, jar, "-X", "POST", "-H", "Content-Type: application/json",
        "-d", '{"name": "FromCurl"}', f"{url}/api/mailboxes",
    )  # fmt: skip
    assert status == 403 and json.loads(body) == {"error": "CSRF token missing or wrong"}
    status, _, _ = curl(
        server, jar, "-X", "POST", "-H", "Content-Type: application/json",
        "-H", f"X-CSRF-Token: {csrf}", "-d", '{"name": "FromCurl"}', f"{url}/api/mailboxes",
    )  # fmt: skip
    assert status == 201

    status, _, _ = curl(
        server, jar, "-X", "POST", "-H", f"X-CSRF-Token: {csrf}", f"{url}/api/logout"
    )
    assert status == 200
    status, _, body = curl(server, jar, f"{url}/api/me")
    assert status == 401 and "error" in json.loads(body)


def test_smtp_in_web_read(server: Posthorn) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail(
            "zoe@far.example",
            [ALICE],
            b"From: Zoe <zoe@far.example>\r\nTo: alice@example.test\r\nSubject: via smtp\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n"
            b"<p onmouseover=alert(1)>Hi <img src=http://tracker.example/p.gif></p>\r\n",
        )
    with web_client(server) as client:
        deadline = time.monotonic() + 10
        found: list[dict[str, object]] = []
        while time.monotonic() < deadline and not found:
            listing = client.get("/api/mailboxes/INBOX/messages?q=via+smtp&in=subject").json()
            found = listing["messages"]
            time.sleep(0.1)
        assert found and found[0]["from"] == "Zoe <zoe@far.example>"
        read = client.get(f"/api/mailboxes/INBOX/messages/{found[0]['uid']}").json()
        assert "onmouseover" not in read["html"] and "Hi" in read["html"]
        assert read["remote_images_blocked"] is True


def test_web_send_arrives_over_imap(server: Posthorn) -> None:
    with web_client(server) as client:
        response = client.post(
            "/api/send",
            data={"to": BOB, "subject": "web to imap", "body": "sent from the browser"},
            files=[("attachments", ("report.bin", bytes(range(256)), "application/octet-stream"))],
        )
        assert response.status_code == 200, response.text
        assert response.json()["sent_uid"] is not None
    server.wait_for_log(r"event=message\.queued .*via=web")
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    try:
        m.login(BOB, PASSWORDS[BOB])
        deadline = time.monotonic() + 10
        data: list[bytes] = []
        while time.monotonic() < deadline:
            m.select("INBOX")
            _, hits = m.search(None, "SUBJECT", '"web to imap"')
            if hits[0]:
                _, fetched = m.fetch(hits[0].split()[0], "(RFC822)")
                item = fetched[0]
                assert isinstance(item, tuple)
                data = [item[1]]
                break
            time.sleep(0.1)
        assert data, "the message never arrived"
        assert b"From: alice@example.test" in data[0] and b"sent from the browser" in data[0]
        assert b'filename="report.bin"' in data[0]
    finally:
        m.logout()


def test_event_stream_sees_an_imap_append(server: Posthorn) -> None:
    with (
        web_client(server) as client,
        client.stream("GET", "/api/events", timeout=httpx.Timeout(10)) as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines) == "retry: 3000"
        m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
        try:
            m.login(ALICE, PASSWORDS[ALICE])
            m.append("INBOX", None, None, b"Subject: appended\r\n\r\nx\r\n")
        finally:
            m.logout()
        for line in lines:
            if line.startswith("data: "):
                assert json.loads(line[6:]) == {"mailbox": "INBOX", "kind": "new"}
                break


def test_web_over_tls_sets_a_secure_cookie(tmp_path: Path) -> None:
    """``[web] tls = true``: the http listener speaks HTTPS (TLS 1.2+) with the server's
    certificate, and the session cookie is marked Secure."""
    ph = Posthorn(tmp_path, extra="[web]\ntls = true\n", services=("http",)).start()
    try:
        ph.cli("user", "add", ALICE, "--password-stdin", input=PASSWORDS[ALICE] + "\n", check=True)
        url = f"https://127.0.0.1:{ph.ports['http']}"
        plain = subprocess.run(
            ["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{ph.ports['http']}/healthz"],
            capture_output=True,
            text=True,
        )
        assert plain.returncode != 0 or "ok" not in plain.stdout  # no plaintext HTTP
        old = subprocess.run(
            ["curl", "-sk", "--tlsv1.1", "--tls-max", "1.1", "--max-time", "5", f"{url}/healthz"],
            capture_output=True,
            text=True,
        )
        assert old.returncode != 0  # TLS 1.1 refused
        with httpx.Client(base_url=url, verify=client_tls(), timeout=10) as client:
            assert client.get("/healthz").json()["status"] == "ok"
            r = client.post("/api/login", json={"address": ALICE, "password": PASSWORDS[ALICE]})
            assert r.status_code == 200
            assert "secure" in r.headers["set-cookie"].lower()
    finally:
        assert ph.stop() == 0
