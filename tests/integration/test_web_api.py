"""The web JSON API (docs/web-api.md) over real HTTP against the real app and components.

The app runs in uvicorn (`posthorn.web.server.WebServer`) on an ephemeral loopback port, in
the test's own event loop, over a real `Directory`, `SQLiteMailStore`, `Spool` and a local
`QueueRunner` in a temporary data directory; httpx is the client. Real HTTP (not an in-process
transport) because the event stream must be read while it is open, and cookies should travel
as a browser's would.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.routing import Route

from posthorn.config import Config, ServerConfig, SMTPConfig
from posthorn.delivery.local import LocalDelivery
from posthorn.directory import DirectoryDB, Hasher, HashParams
from posthorn.directory.db import DIRECTORY_FILENAME
from posthorn.directory.service import Directory
from posthorn.policy.limits import AuthThrottle, ThrottleLimits
from posthorn.queue.runner import QueueRunner
from posthorn.queue.spool import Spool
from posthorn.store.sqlite import SQLiteMailStore
from posthorn.web.app import create_app
from posthorn.web.auth import CSP, CSRF_ERROR, SESSION_COOKIE, SessionStore
from posthorn.web.context import WebContext
from posthorn.web.server import WebServer

CHEAP = HashParams(time_cost=1, memory_cost=8, parallelism=1)
ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
PASSWORDS = {ALICE: "pw-alice", BOB: "pw-bob", CAROL: "pw-carol"}
MAX_SIZE = 2 * 1024 * 1024
LOGIN_DELAY = 0.3


@dataclass
class World:
    directory: Directory
    store: SQLiteMailStore
    spool: Spool
    sessions: SessionStore
    url: str
    app: Any

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=20)

    async def mailbox_id(self, account: str, name: str) -> int:
        return (await self.store.get_mailbox(account, name)).id

    async def append(
        self,
        account: str,
        data: bytes,
        *,
        mailbox: str = "INBOX",
        flags: frozenset[str] = frozenset(),
        when: datetime | None = None,
    ) -> int:
        box = await self.mailbox_id(account, mailbox)
        result = await self.store.append(account, box, data, flags=flags, internal_date=when)
        return result.uid

    async def messages(self, account: str, mailbox: str) -> list[bytes]:
        box = await self.mailbox_id(account, mailbox)
        return [
            await self.store.read(account, box, m.uid) for m in await self.store.fetch(account, box)
        ]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    pool = ThreadPoolExecutor(2)
    with DirectoryDB(tmp_path / DIRECTORY_FILENAME, hasher=Hasher(CHEAP)) as db:
        db.add_domain("example.test")
        db.add_account(ALICE, PASSWORDS[ALICE])
        db.add_account(BOB, PASSWORDS[BOB])
        db.add_account(CAROL, PASSWORDS[CAROL], admin=True)
    directory = await Directory.open(
        tmp_path / DIRECTORY_FILENAME, hasher=Hasher(CHEAP, executor=pool)
    )
    store = SQLiteMailStore(tmp_path)
    await store.open()
    for account in PASSWORDS:
        await store.ensure_account(account)
    spool = Spool(tmp_path)
    await spool.open()
    runner = QueueRunner(spool, LocalDelivery(store, directory))
    await runner.start()
    config = Config(
        server=ServerConfig(hostname="mail.example.test", domains=("example.test",)),
        smtp=SMTPConfig(max_message_size=MAX_SIZE),
    )
    throttle = AuthThrottle(
        ThrottleLimits(
            free_failures=0,
            base_delay=LOGIN_DELAY,
            max_delay=LOGIN_DELAY,
            max_failures_per_account=3,
        )
    )
    ctx = WebContext(config, directory, store, spool, throttle)
    sessions = SessionStore()
    app = create_app(ctx, sessions=sessions)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = WebServer(app, [sock], shutdown_timeout=1)
    await server.start()
    try:
        yield World(directory, store, spool, sessions, f"http://127.0.0.1:{port}", app)
    finally:
        ctx.stopping.set()
        await server.stop()
        await runner.stop()
        await spool.close()
        await store.close()
        await directory.close()
        pool.shutdown()


async def login(client: httpx.AsyncClient, account: str = ALICE) -> dict[str, Any]:
    """Log in and send the CSRF token with every later request, as app.js does."""
    response = await client.post(
        "/api/login", json={"address": account, "password": PASSWORDS[account]}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    client.headers["X-CSRF-Token"] = body["csrf"]
    return body


def message(
    subject: str = "hello",
    *,
    sender: str = "Zoe Sender <zoe@far.example>",
    to: str = ALICE,
    body: str = "plain body\r\n",
    extra: str = "",
) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}@x>\r\n"
        f"{extra}\r\n{body}"
    ).encode()


def mb(name: str) -> str:
    return quote(name, safe="")


# --- sessions -------------------------------------------------------------------------------


async def test_login_me_logout_and_the_cookie(world: World) -> None:
    async with world.client() as client:
        assert (await client.get("/api/me")).status_code == 401
        refused = await client.post("/api/login", data={"address": ALICE, "password": "x"})
        assert refused.status_code == 415  # JSON only: a cross-site form cannot log anyone in

        response = await client.post(
            "/api/login", json={"address": ALICE, "password": PASSWORDS[ALICE]}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["account"] == ALICE and body["admin"] is False
        assert len(body["csrf"]) >= 43
        cookie = response.headers["set-cookie"]
        attrs = [a.strip().lower() for a in cookie.split(";")]
        name, _, value = cookie.split(";")[0].partition("=")
        assert name == SESSION_COOKIE and len(value) >= 43  # 256 bits, URL-safe base64
        assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs
        assert "secure" not in attrs  # plain HTTP here; Secure comes with TLS
        for header, expected in (
            ("content-security-policy", CSP),
            ("x-frame-options", "DENY"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
        ):
            assert response.headers[header] == expected

        me = await client.get("/api/me")
        assert me.json() == body

        no_token = await client.post("/api/logout")
        assert no_token.status_code == 403 and no_token.json() == {"error": CSRF_ERROR}
        out = await client.post("/api/logout", headers={"X-CSRF-Token": body["csrf"]})
        assert out.status_code == 200
        assert len(world.sessions) == 0
        client.cookies.set(SESSION_COOKIE, value)  # the old cookie is dead on the server too
        gone = await client.get("/api/me")
        assert gone.status_code == 401 and "error" in gone.json()


async def test_admin_flag_and_disabled_account(world: World) -> None:
    async with world.client() as admin, world.client() as alice:
        assert (await login(admin, CAROL))["admin"] is True
        await login(alice)
        assert (await alice.get("/api/admin/domains")).status_code == 403
        assert (await admin.get("/api/admin/domains")).status_code == 200
        await world.directory.run(lambda db: db.set_enabled(ALICE, False))
        assert (await alice.get("/api/me")).status_code == 401


async def test_failed_login_is_delayed_then_locked(world: World) -> None:
    async with world.client() as client:
        for _ in range(3):
            started = time.monotonic()
            response = await client.post("/api/login", json={"address": BOB, "password": "wrong"})
            assert response.status_code == 401
            assert response.json() == {"error": "wrong address or password"}
            assert time.monotonic() - started >= LOGIN_DELAY * 0.9
        started = time.monotonic()
        locked = await client.post("/api/login", json={"address": BOB, "password": PASSWORDS[BOB]})
        assert locked.status_code == 429 and "error" in locked.json()
        assert time.monotonic() - started < LOGIN_DELAY  # refused without a check or a wait
        assert "set-cookie" not in locked.headers


async def test_every_state_changing_route_needs_the_csrf_token(world: World) -> None:
    uid = await world.append(ALICE, message())
    unsafe = [
        (method, route.path)
        for route in world.app.routes
        if isinstance(route, Route) and route.path.startswith("/api/")
        for method in sorted(route.methods or ())
        if method in ("POST", "PUT", "PATCH", "DELETE") and route.path != "/api/login"
    ]
    assert len(unsafe) >= 15  # mail, logout and admin writes
    async with world.client() as client:
        token = (await login(client))["csrf"]
        del client.headers["X-CSRF-Token"]
        for method, template in unsafe:
            path = re.sub(r"{uid:int}", str(uid), template)
            path = re.sub(r"{[^}]+}", "INBOX", path)
            for headers in ({}, {"X-CSRF-Token": "wrong" + token}):
                response = await client.request(method, path, json={}, headers=headers)
                assert response.status_code == 403, (method, path, response.text)
                assert response.json() == {"error": CSRF_ERROR}
        # The form field works for HTML forms.
        draft = await client.post("/api/drafts", data={"csrf": token, "subject": "via form"})
        assert draft.status_code == 200, draft.text
        bad = await client.post("/api/drafts", data={"csrf": "nope", "subject": "x"})
        assert bad.status_code == 403
    assert len(await world.messages(ALICE, "INBOX")) == 1  # nothing was changed


async def test_bodies_are_bounded_and_errors_are_json(world: World) -> None:
    async with world.client() as client:
        await login(client)
        big = await client.post(
            "/api/mailboxes",
            content=b'{"name": "' + b"x" * (1024 * 1024 + 1) + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert big.status_code == 413 and big.json() == {"error": "request body too large"}
        missing = await client.get("/api/nothing-here")
        assert missing.status_code == 404 and "error" in missing.json()
        bad_json = await client.post(
            "/api/mailboxes", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert bad_json.status_code == 400 and bad_json.json() == {"error": "invalid JSON"}


# --- mailboxes --------------------------------------------------------------------------------


async def test_mailbox_crud(world: World) -> None:
    await world.append(ALICE, message("one"))
    await world.append(ALICE, message("two"), flags=frozenset({"\\Seen"}))
    async with world.client() as client:
        await login(client)
        boxes = (await client.get("/api/mailboxes")).json()
        assert boxes[0] == {"name": "INBOX", "special_use": None, "total": 2, "unread": 1}
        assert {b["name"]: b["special_use"] for b in boxes}["Trash"] == "\\Trash"

        created = await client.post("/api/mailboxes", json={"name": "Projects/2024"})
        assert created.status_code == 201 and created.json()["name"] == "Projects/2024"
        again = await client.post("/api/mailboxes", json={"name": "Projects/2024"})
        assert again.status_code == 409 and "error" in again.json()
        assert (await client.post("/api/mailboxes", json={"name": "a*b"})).status_code == 400

        renamed = await client.patch(f"/api/mailboxes/{mb('Projects/2024')}", json={"name": "P/25"})
        assert renamed.status_code == 200
        names = [b["name"] for b in (await client.get("/api/mailboxes")).json()]
        assert "P/25" in names and "Projects/2024" not in names

        assert (await client.delete(f"/api/mailboxes/{mb('P/25')}")).status_code == 200
        assert (await client.delete(f"/api/mailboxes/{mb('P/25')}")).status_code == 404
        inbox = await client.delete("/api/mailboxes/INBOX")
        assert inbox.status_code == 400 and "error" in inbox.json()
        names = [b["name"] for b in (await client.get("/api/mailboxes")).json()]
        assert "P/25" not in names and "INBOX" in names

    # Another account's mailboxes cannot be named at all.
    await world.store.create_mailbox(BOB, "Secret")
    async with world.client() as client:
        await login(client)
        assert (await client.get(f"/api/mailboxes/{mb('Secret')}/messages")).status_code == 404


# --- message lists ----------------------------------------------------------------------------


async def test_message_list_paging_sorting_unread(world: World) -> None:
    base = datetime(2024, 3, 1, tzinfo=UTC)
    uids = []
    for i in range(5):
        flags = frozenset({"\\Seen"}) if i % 2 else frozenset()
        extra = ""
        body = f"body {i}\r\n"
        if i == 4:
            extra = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"
            body = (
                "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
                "--b\r\nContent-Type: application/pdf\r\n"
                'Content-Disposition: attachment; filename="a.pdf"\r\n\r\n%PDF\r\n--b--\r\n'
            )
        # Appended out of date order: the list sorts by internal date, not by UID.
        when = base + timedelta(days=(i * 3) % 5)
        uids.append(
            await world.append(
                ALICE, message(f"m{i}", body=body, extra=extra), flags=flags, when=when
            )
        )
    by_date = [uids[i] for i in sorted(range(5), key=lambda i: (i * 3) % 5)]
    async with world.client() as client:
        await login(client)
        page1 = (await client.get("/api/mailboxes/INBOX/messages?per_page=2")).json()
        assert page1["total"] == 5 and page1["page"] == 1 and page1["per_page"] == 2
        assert [m["uid"] for m in page1["messages"]] == by_date[::-1][:2]
        page3 = (await client.get("/api/mailboxes/INBOX/messages?per_page=2&page=3")).json()
        assert [m["uid"] for m in page3["messages"]] == by_date[::-1][4:]
        asc = (await client.get("/api/mailboxes/INBOX/messages?order=asc")).json()
        assert [m["uid"] for m in asc["messages"]] == by_date

        first = next(m for m in asc["messages"] if m["uid"] == uids[4])
        assert first["from"] == "Zoe Sender <zoe@far.example>" and first["to"] == ALICE
        assert first["subject"] == "m4" and first["attachments"] == 1
        assert first["seen"] is False and first["flagged"] is False
        assert first["date"].startswith("2024-03-03") and first["size"] > 0
        assert set(first) >= {"uid", "from", "to", "subject", "date", "flags", "size"}

        seen = {m["uid"]: m["seen"] for m in asc["messages"]}
        assert seen == {uid: bool(i % 2) for i, uid in enumerate(uids)}
        unread = (await client.get("/api/mailboxes/INBOX/messages?unread=1")).json()
        assert {m["uid"] for m in unread["messages"]} == {uids[0], uids[2], uids[4]}

        for query in ("per_page=0", "per_page=1000", "page=x", "order=up", "in=cc"):
            bad = await client.get(f"/api/mailboxes/INBOX/messages?{query}")
            assert bad.status_code == 400 and "error" in bad.json()


async def test_search_by_from_to_subject_body(world: World) -> None:
    a = await world.append(ALICE, message("Quarterly report", body="numbers inside\r\n"))
    b = await world.append(
        ALICE,
        message(
            "=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
            sender="Bob <bob@example.test>",
            to="Team <team@example.test>",
            body="the secret word is Pineapple\r\n",
        ),
    )
    c = await world.append(
        ALICE,
        message(
            "lunch",
            extra="MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n",
            body="YmFzZTY0IGhpZGRlbiB0ZXJt\r\n",  # "base64 hidden term"
        ),
    )

    async def found(query: str) -> set[int]:
        response = await client.get(f"/api/mailboxes/INBOX/messages?{query}")
        assert response.status_code == 200, response.text
        return {m["uid"] for m in response.json()["messages"]}

    async with world.client() as client:
        await login(client)
        assert await found("q=bob%40example&in=from") == {b}
        assert await found("q=zoe&in=from") == {a, c}
        assert await found("q=team%40&in=to") == {b}
        assert await found("q=QUARTERLY&in=subject") == {a}
        assert await found("q=gr%C3%BC%C3%9Fe&in=subject") == {b}  # RFC 2047 decoded
        assert await found("q=pineapple&in=body") == {b}
        assert await found("q=hidden+term&in=body") == {c}  # base64 decoded
        assert await found("q=pineapple&in=subject") == set()
        assert await found("q=lunch") == {c}  # all fields
        assert await found("q=numbers") == {a}


# --- reading ----------------------------------------------------------------------------------

HOSTILE_HTML = """<html><head><style>body { background: url(http://evil.example/css.png) }</style>
<link rel="stylesheet" href="http://evil.example/x.css"></head><body>
<script>alert('script')</script>
<p onclick="alert('click')">Hello <b>reader</b></p>
<img src="x" onerror="alert('onerror')">
<a href="javascript:alert('js')">js link</a>
<a href="https://good.example/page">good link</a>
<div style="color: red; background-image: url('http://evil.example/bg.png')">styled</div>
<img src="http://tracker.example/pixel.gif" alt="pixel">
<form action="http://evil.example/"><input name="q"></form>
</body></html>"""


def html_message(html: str) -> bytes:
    return (
        "From: zoe@far.example\r\nTo: alice@example.test\r\nSubject: html\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n"
        "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain version\r\n"
        "--alt\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        + html.replace("=", "=3D").replace("\n", "\r\n")
        + "\r\n--alt--\r\n"
    ).encode()


async def test_read_text_and_sanitised_html(world: World) -> None:
    uid = await world.append(ALICE, html_message(HOSTILE_HTML))
    async with world.client() as client:
        await login(client)
        response = await client.get(f"/api/mailboxes/INBOX/messages/{uid}")
        assert response.status_code == 200
        body = response.json()
        assert body["uid"] == uid and body["flags"] == []  # reading does not set \Seen
        assert body["headers"]["from"] == "zoe@far.example"
        assert body["headers"]["subject"] == "html"
        assert body["text"].strip() == "plain version"
        html = body["html"]
        assert "Hello <b>reader</b>" in html and "good.example/page" in html
        for bad in ("<script", "alert(", "onerror", "onclick", "javascript:", "<style", "<link"):
            assert bad not in html, bad
        assert "evil.example" not in html and "<form" not in html and "<input" not in html
        assert 'target="_blank"' in html and "noopener" in html
        assert 'style="color:red"' in html
        # The remote image is blocked but kept for "show images".
        assert body["remote_images_blocked"] is True
        assert 'src="" data-src="http://tracker.example/pixel.gif"' in html
        assert ' src="http://tracker.example' not in html

        shown = (await client.get(f"/api/mailboxes/INBOX/messages/{uid}?images=1")).json()
        assert 'src="http://tracker.example/pixel.gif"' in shown["html"]
        assert shown["remote_images_blocked"] is False
        assert "evil.example" not in shown["html"]  # CSS URLs stay out either way

        meta = await world.store.fetch(ALICE, await world.mailbox_id(ALICE, "INBOX"))
        assert "\\Seen" not in meta[0].flags
        assert (await client.get("/api/mailboxes/INBOX/messages/999")).status_code == 404


async def test_attachments_download_byte_exact_with_safe_names(world: World) -> None:
    payload = bytes(range(256)) * 40
    import base64

    encoded = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    data = (
        "From: zoe@far.example\r\nTo: alice@example.test\r\nSubject: files\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=mix\r\n\r\n"
        "--mix\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        "--mix\r\nContent-Type: application/octet-stream\r\n"
        'Content-Disposition: attachment; filename="../../etc/passwd"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}"
        "--mix\r\nContent-Type: text/html\r\n"
        "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.html\r\n\r\n"
        "<script>alert(1)</script>\r\n"
        "--mix--\r\n"
    ).encode()
    uid = await world.append(ALICE, data)
    async with world.client() as client:
        await login(client)
        body = (await client.get(f"/api/mailboxes/INBOX/messages/{uid}")).json()
        assert body["text"].strip() == "see attached" and body["html"] is None
        assert body["attachments"] == [
            {
                "part": "2",
                "filename": "passwd",
                "content_type": "application/octet-stream",
                "size": len(payload),
            },
            {"part": "3", "filename": "résumé.html", "content_type": "text/html", "size": 25},
        ]
        part = await client.get(f"/api/mailboxes/INBOX/messages/{uid}/parts/2")
        assert part.status_code == 200 and part.content == payload
        assert part.headers["content-disposition"] == "attachment; filename*=UTF-8''passwd"
        assert part.headers["x-content-type-options"] == "nosniff"
        active = await client.get(f"/api/mailboxes/INBOX/messages/{uid}/parts/3")
        assert active.headers["content-type"] == "application/octet-stream"  # not text/html
        assert active.headers["content-disposition"].endswith("r%C3%A9sum%C3%A9.html")
        assert (await client.get(f"/api/mailboxes/INBOX/messages/{uid}/parts/9")).status_code == 404

        raw = await client.get(f"/api/mailboxes/INBOX/messages/{uid}/raw")
        assert raw.headers["content-type"] == "message/rfc822" and raw.content == data


# --- changing messages ------------------------------------------------------------------------


async def test_flags_move_and_delete_to_trash(world: World) -> None:
    uid = await world.append(ALICE, message("work"))
    await world.store.create_mailbox(ALICE, "Archive/2024")
    async with world.client() as client:
        await login(client)
        url = f"/api/mailboxes/INBOX/messages/{uid}"
        flagged = await client.post(url + "/flags", json={"add": ["\\seen", "\\Flagged", "$Work"]})
        assert flagged.json()["flags"] == ["$Work", "\\Flagged", "\\Seen"]
        unflag = await client.post(url + "/flags", json={"remove": ["\\Flagged"]})
        assert unflag.json()["flags"] == ["$Work", "\\Seen"]
        for bad in (["\\Recent"], ["a b"], "x"):
            response = await client.post(url + "/flags", json={"add": bad})
            assert response.status_code == 400

        moved = await client.post(url + "/move", json={"to": "Archive/2024"})
        assert moved.status_code == 200 and moved.json()["mailbox"] == "Archive/2024"
        new_uid = moved.json()["uid"]
        assert (await client.get(url)).status_code == 404
        assert (await client.post(url + "/move", json={"to": "Nowhere"})).status_code == 404
        archived = f"/api/mailboxes/{mb('Archive/2024')}/messages/{new_uid}"
        kept = (await client.get(archived)).json()
        assert kept["flags"] == ["$Work", "\\Seen"]

        deleted = await client.delete(archived)
        assert deleted.json()["mailbox"] == "Trash" and deleted.json()["expunged"] is False
        trash_uid = deleted.json()["uid"]
        assert len(await world.messages(ALICE, "Trash")) == 1
        assert await world.messages(ALICE, "Archive/2024") == []
        final = await client.delete(f"/api/mailboxes/Trash/messages/{trash_uid}")
        assert final.json() == {"expunged": True}
        assert await world.messages(ALICE, "Trash") == []


# --- sending ----------------------------------------------------------------------------------


async def wait_for(world: World, account: str, mailbox: str, count: int) -> list[bytes]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = await world.messages(account, mailbox)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{account} {mailbox}: fewer than {count} messages")


async def test_send_through_the_queue_to_local_accounts_with_bcc(world: World) -> None:
    async with world.client() as client:
        await login(client)
        response = await client.post(
            "/api/send",
            data={
                "to": "Bob <bob@example.test>",
                "bcc": CAROL,
                "subject": "Grüße from the web",
                "body": "Hello Bob,\nsee the file.\n",
                "in_reply_to": "<orig@x>",
            },
            files=[("attachments", ("../../notes.txt", b"\x00\x01binary\xff", "text/plain"))],
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert re.fullmatch(r"[A-Za-z0-9]+", result["queue_id"])
        assert isinstance(result["sent_uid"], int)

    delivered = (await wait_for(world, BOB, "INBOX", 1))[0]
    carol = (await wait_for(world, CAROL, "INBOX", 1))[0]
    for data in (delivered, carol):
        parsed = message_from_bytes(data)
        assert parsed["From"] == ALICE and "bob@example.test" in parsed["To"]
        header = data.split(b"\r\n\r\n")[0].replace(b"Delivered-To: carol@example.test", b"")
        assert parsed["Bcc"] is None and b"carol@example.test" not in header
        assert parsed["In-Reply-To"] == "<orig@x>" and parsed["References"] == "<orig@x>"
        assert parsed["Message-ID"] and parsed["Date"]
        assert "with ESMTPA" in data.decode("utf-8", "replace")
    parsed = message_from_bytes(delivered)
    files = [p for p in parsed.walk() if p.get_filename()]
    assert [f.get_filename() for f in files] == ["notes.txt"]
    assert files[0].get_payload(decode=True) == b"\x00\x01binary\xff"

    sent_box = await world.mailbox_id(ALICE, "Sent")
    sent = await world.store.fetch(ALICE, sent_box)
    assert [m.uid for m in sent] == [result["sent_uid"]] and "\\Seen" in sent[0].flags
    sent_bytes = await world.store.read(ALICE, sent_box, sent[0].uid)
    assert message_from_bytes(sent_bytes)["Message-ID"] == parsed["Message-ID"]


async def test_send_refuses_header_injection_and_bad_recipients(world: World) -> None:
    async with world.client() as client:
        await login(client)
        cases: list[tuple[dict[str, str], int]] = [
            ({"to": BOB, "subject": "hi\r\nBcc: victim@far.example"}, 400),
            ({"to": f"{BOB}\r\nBcc: victim@far.example", "subject": "hi"}, 400),
            ({"to": BOB, "subject": "hi", "in_reply_to": "<a@b>\nX-Evil: 1"}, 400),
            ({"to": "not an address", "subject": "hi"}, 400),
            ({"to": "nobody@example.test", "subject": "hi"}, 400),
            ({"subject": "no recipients"}, 400),
            ({"to": BOB, "body": "x" * (MAX_SIZE + 10)}, 413),
        ]
        for form, status in cases:
            response = await client.post("/api/send", data=form)
            assert response.status_code == status, (form, response.text)
            assert "error" in response.json()
    await asyncio.sleep(0.2)
    assert await world.messages(BOB, "INBOX") == []
    assert await world.messages(ALICE, "Sent") == []


async def test_drafts_saved_replaced_and_removed_on_send(world: World) -> None:
    async with world.client() as client:
        await login(client)
        first = await client.post(
            "/api/drafts", data={"to": "bob@", "bcc": CAROL, "subject": "unfinished"}
        )
        assert first.status_code == 200, first.text
        uid1 = first.json()["uid"]
        drafts = await world.mailbox_id(ALICE, "Drafts")
        meta = (await world.store.fetch(ALICE, drafts))[0]
        assert meta.flags == frozenset({"\\Draft", "\\Seen"})
        saved = message_from_bytes(await world.store.read(ALICE, drafts, uid1))
        assert saved["Subject"] == "unfinished" and saved["Bcc"] == CAROL

        second = await client.post(
            "/api/drafts",
            data={"to": BOB, "subject": "finished", "draft_uid": str(uid1)},
        )
        uid2 = second.json()["uid"]
        assert [m.uid for m in await world.store.fetch(ALICE, drafts)] == [uid2]
        read = (await client.get(f"/api/mailboxes/Drafts/messages/{uid2}")).json()
        assert read["headers"]["to"] == BOB and read["headers"]["subject"] == "finished"

        sent = await client.post(
            "/api/send", data={"to": BOB, "subject": "finished", "draft_uid": str(uid2)}
        )
        assert sent.status_code == 200
        assert await world.store.fetch(ALICE, drafts) == []
    await wait_for(world, BOB, "INBOX", 1)


# --- change stream and description ----------------------------------------------------------


async def test_events_stream_reports_new_mail(world: World) -> None:
    async with world.client() as client:
        await login(client)
        async with client.stream("GET", "/api/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()

            async def until(prefix: str) -> str:
                async for line in lines:
                    if line.startswith(prefix):
                        return line
                raise AssertionError("stream ended")

            await asyncio.wait_for(until(": connected"), 5)
            await world.append(ALICE, message("live"))
            event = await asyncio.wait_for(until("event: "), 5)
            data = await asyncio.wait_for(until("data: "), 5)
            assert event == "event: change"
            assert json.loads(data[len("data: ") :]) == {"mailbox": "INBOX", "kind": "new"}
            await world.append(BOB, message("not for alice"), mailbox="INBOX")
            await world.store.create_mailbox(ALICE, "Fresh")
            event = await asyncio.wait_for(until("event: "), 5)
            data = await asyncio.wait_for(until("data: "), 5)
            assert json.loads(data[len("data: ") :])["kind"] == "mailboxes"  # not Bob's mail
    # The subscription is closed once the client goes away.
    for _ in range(100):
        if not world.store._feed.subscriber_count(ALICE):
            break
        await asyncio.sleep(0.05)
    assert world.store._feed.subscriber_count(ALICE) == 0


async def test_openapi_lists_the_routes(world: World) -> None:
    async with world.client() as client:
        doc = (await client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for path, method in (
        ("/api/login", "post"),
        ("/api/me", "get"),
        ("/api/mailboxes", "get"),
        ("/api/mailboxes", "post"),
        ("/api/mailboxes/{name}", "patch"),
        ("/api/mailboxes/{name}/messages", "get"),
        ("/api/mailboxes/{name}/messages/{uid}", "get"),
        ("/api/mailboxes/{name}/messages/{uid}", "delete"),
        ("/api/mailboxes/{name}/messages/{uid}/parts/{part}", "get"),
        ("/api/mailboxes/{name}/messages/{uid}/flags", "post"),
        ("/api/mailboxes/{name}/messages/{uid}/move", "post"),
        ("/api/send", "post"),
        ("/api/drafts", "post"),
        ("/api/events", "get"),
        ("/api/admin/domains", "get"),
    ):
        assert method in paths[path], (path, method)
    uid_param = paths["/api/mailboxes/{name}/messages/{uid}"]["get"]["parameters"][1]
    assert uid_param == {
        "name": "uid",
        "in": "path",
        "required": True,
        "schema": {"type": "integer"},
    }
    assert "multipart/form-data" in paths["/api/send"]["post"]["requestBody"]["content"]
