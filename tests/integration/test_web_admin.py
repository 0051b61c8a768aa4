"""The admin JSON API (posthorn.web.admin_api) through the real app, with a real directory,
message store and spool in a temporary data directory.

The components are opened on a blocking portal's event loop and the `TestClient` runs its
requests on that same loop, so the app uses them exactly as the server would. Two clients
with their own cookie jars: an admin and a plain user.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest
from anyio.from_thread import BlockingPortal
from starlette.testclient import TestClient

from posthorn.config import Config, ListenAddress, ListenConfig, ServerConfig
from posthorn.directory import Directory, DirectoryDB, Hasher, HashParams
from posthorn.policy.limits import AuthThrottle
from posthorn.queue.envelope import Envelope, EnvelopeRecipient
from posthorn.queue.records import QueuedMessage, Route, Status
from posthorn.queue.spool import Spool
from posthorn.store.sqlite import SQLiteMailStore
from posthorn.web.app import create_app
from posthorn.web.context import WebContext

CHEAP = HashParams(time_cost=1, memory_cost=8, parallelism=1)
ROOT_PW = "root-secret-pw"
ALICE_PW = "alice-secret-pw"
NEW_PW = "carol-secret-pw"
CSRF_ERROR = {"error": "CSRF token missing or wrong"}
BODY = b"From: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


@dataclass
class Web:
    ctx: WebContext
    portal: BlockingPortal
    admin: TestClient
    user: TestClient
    anonymous: TestClient
    csrf: dict[str, str]  # the admin's header
    user_csrf: dict[str, str]

    def call(self, fn: Any, *args: Any) -> Any:
        """Run a coroutine function on the app's event loop."""
        return self.portal.call(fn, *args)


async def _open(data_dir: Path) -> WebContext:
    with DirectoryDB.in_data_dir(data_dir, hasher=Hasher(CHEAP)) as db:
        db.add_domain("example.test")
        db.add_account("root@example.test", ROOT_PW, admin=True)
        db.add_account("alice@example.test", ALICE_PW)
    directory = await Directory.in_data_dir(data_dir, hasher=Hasher(CHEAP))
    store = SQLiteMailStore(data_dir)
    await store.open()
    for account in ("root@example.test", "alice@example.test"):
        await store.ensure_account(account)
    spool = Spool(data_dir)
    await spool.open()
    config = Config(
        server=ServerConfig(
            hostname="mail.example.test", data_dir=data_dir, domains=("example.test",)
        ),
        listen=ListenConfig(
            smtp=(ListenAddress("198.51.100.7", 25), ListenAddress("127.0.0.1", 2525))
        ),
    )
    return WebContext(config, directory, store, spool, AuthThrottle())


async def _close(ctx: WebContext) -> None:
    await ctx.spool.close()
    await ctx.store.close()
    await ctx.directory.close()


def _client(app: Any, portal: BlockingPortal) -> TestClient:
    client = TestClient(app, base_url="http://testserver")
    client.portal = portal  # every request on the loop the components were opened on
    return client


def login(client: TestClient, address: str, password: str) -> dict[str, str]:
    response = client.post("/api/login", json={"address": address, "password": password})
    assert response.status_code == 200, response.text
    return {"X-CSRF-Token": response.json()["csrf"]}


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    with anyio.from_thread.start_blocking_portal() as portal:
        ctx = portal.call(_open, tmp_path)
        try:
            app = create_app(ctx)
            admin, user, anonymous = (_client(app, portal) for _ in range(3))
            csrf = login(admin, "root@example.test", ROOT_PW)
            user_csrf = login(user, "alice@example.test", ALICE_PW)
            yield Web(ctx, portal, admin, user, anonymous, csrf, user_csrf)
        finally:
            portal.call(_close, ctx)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert "password_hash" not in response.text and "$argon2" not in response.text
    return response.json()


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert isinstance(message, str)
    return message


# --- who may do what ---------------------------------------------------------------------

ROUTES = [
    ("GET", "/api/admin/domains", None),
    ("POST", "/api/admin/domains", {"name": "new.test"}),
    ("DELETE", "/api/admin/domains/example.test", None),
    ("GET", "/api/admin/accounts", None),
    ("POST", "/api/admin/accounts", {"address": "x@example.test", "password": "pw"}),
    ("GET", "/api/admin/accounts/alice@example.test", None),
    ("PATCH", "/api/admin/accounts/alice@example.test", {"admin": True}),
    ("DELETE", "/api/admin/accounts/alice@example.test", None),
    ("GET", "/api/admin/aliases", None),
    ("POST", "/api/admin/aliases", {"source": "a@example.test", "targets": ["x@far.test"]}),
    ("DELETE", "/api/admin/aliases/a@example.test", None),
    ("GET", "/api/admin/queue", None),
    ("GET", "/api/admin/queue/QID", None),
    ("POST", "/api/admin/queue/QID/retry", None),
    ("DELETE", "/api/admin/queue/QID", None),
    ("GET", "/api/admin/dns/example.test", None),
]


def send(
    client: TestClient,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    response: httpx.Response = client.request(method, path, json=body, headers=headers)
    return response


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_is_for_admins_only(
    web: Web, method: str, path: str, body: dict[str, Any] | None
) -> None:
    before = ok(web.admin.get("/api/admin/accounts")), ok(web.admin.get("/api/admin/domains"))
    assert send(web.anonymous, method, path, body).status_code == 401
    # A plain user, with a valid session and its CSRF token: still no.
    assert send(web.user, method, path, body, web.user_csrf).status_code == 403
    assert "error" in send(web.user, method, path, body, web.user_csrf).json()
    after = ok(web.admin.get("/api/admin/accounts")), ok(web.admin.get("/api/admin/domains"))
    assert after == before
    # The admin gets through (what the route then says depends on the data).
    answer = send(web.admin, method, path, body, web.csrf)
    assert answer.status_code not in (401, 403, 405, 500), answer.text


@pytest.mark.parametrize(("method", "path", "body"), [r for r in ROUTES if r[0] != "GET"])
def test_writes_need_the_csrf_token(
    web: Web, method: str, path: str, body: dict[str, Any] | None
) -> None:
    before = ok(web.admin.get("/api/admin/accounts")), ok(web.admin.get("/api/admin/domains"))
    assert send(web.admin, method, path, body).json() == CSRF_ERROR
    assert send(web.admin, method, path, body).status_code == 403
    wrong = {"X-CSRF-Token": web.user_csrf["X-CSRF-Token"]}  # another session's token
    assert send(web.admin, method, path, body, wrong).status_code == 403
    after = ok(web.admin.get("/api/admin/accounts")), ok(web.admin.get("/api/admin/domains"))
    assert after == before


def test_taking_the_flag_away_takes_effect_at_once(web: Web) -> None:
    ok(
        web.admin.patch(
            "/api/admin/accounts/alice@example.test", json={"admin": True}, headers=web.csrf
        )
    )
    assert ok(web.user.get("/api/admin/domains"))[0]["name"] == "example.test"
    ok(
        web.admin.patch(
            "/api/admin/accounts/alice@example.test", json={"admin": False}, headers=web.csrf
        )
    )
    assert web.user.get("/api/admin/domains").status_code == 403


# --- domains -------------------------------------------------------------------------------


def test_domains(web: Web) -> None:
    c, h = web.admin, web.csrf
    (domain,) = ok(c.get("/api/admin/domains"))
    assert domain["name"] == "example.test" and domain["accounts"] == 2 and domain["aliases"] == 0
    added = ok(c.post("/api/admin/domains", json={"name": "Bücher.Test"}, headers=h), 201)
    assert added["name"] == "xn--bcher-kva.test" and added["unicode"] == "bücher.test"
    assert added["accounts"] == 0
    names = [d["name"] for d in ok(c.get("/api/admin/domains"))]
    assert names == ["example.test", "xn--bcher-kva.test"]
    # The CLI's messages, with a status saying what kind of refusal it is.
    dup = c.post("/api/admin/domains", json={"name": "bücher.test"}, headers=h)
    assert error(dup, 409) == "domain bücher.test (xn--bcher-kva.test) already exists"
    assert "bad_domain!" in error(
        c.post("/api/admin/domains", json={"name": "bad_domain!"}, headers=h), 400
    )
    assert error(c.post("/api/admin/domains", json={}, headers=h), 400) == "name must be a string"
    in_use = c.delete("/api/admin/domains/example.test", headers=h)
    assert "still has 2 accounts and 0 aliases; delete them first" in error(in_use, 409)
    assert ok(c.delete("/api/admin/domains/B%C3%BCcher.test", headers=h)) == {
        "deleted": "xn--bcher-kva.test"
    }
    gone = c.delete("/api/admin/domains/xn--bcher-kva.test", headers=h)
    assert "does not exist" in error(gone, 404)


def test_request_body_must_be_a_json_object(web: Web) -> None:
    c, h = web.admin, web.csrf
    assert c.post("/api/admin/domains", json=["x"], headers=h).status_code == 400
    bad = c.post(
        "/api/admin/domains", content=b"{", headers=h | {"Content-Type": "application/json"}
    )
    assert bad.status_code == 400 and "error" in bad.json()


# --- accounts ------------------------------------------------------------------------------


def test_add_account_and_log_in_with_it(web: Web, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c, h = web.admin, web.csrf
    body = {"address": "Carol@Example.Test", "password": NEW_PW, "quota": "1G", "admin": True}
    carol = ok(c.post("/api/admin/accounts", json=body, headers=h), 201)
    assert carol == {
        "address": "carol@example.test",
        "domain": "example.test",
        "quota": 1024**3,
        "quota_text": "1G",
        "enabled": True,
        "admin": True,
        "created": carol["created"],
    }
    assert NEW_PW not in str(carol)
    # Its mailboxes exist, as after `posthorn user add`.
    boxes = web.call(web.ctx.store.list_mailboxes, "carol@example.test")
    assert "INBOX" in [b.name for b in boxes]
    other = _client(web.admin.app, web.portal)
    login(other, "carol@example.test", NEW_PW)
    assert other.get("/api/admin/queue").status_code == 200  # an admin from the start
    listed = ok(c.get("/api/admin/accounts"))
    assert [a["address"] for a in listed] == [
        "alice@example.test",
        "carol@example.test",
        "root@example.test",
    ]
    assert ok(c.get("/api/admin/accounts?domain=example.test")) == listed
    assert ok(c.get("/api/admin/accounts/CAROL@example.test")) == carol
    # Quota as bytes, or null for unlimited; admin defaults to false.
    dave = {"address": "dave@example.test", "password": "pw-d", "quota": 5000}
    assert ok(c.post("/api/admin/accounts", json=dave, headers=h), 201)["quota"] == 5000
    erin = ok(
        c.post(
            "/api/admin/accounts",
            json={"address": "erin@example.test", "password": "pw-e", "quota": None},
            headers=h,
        ),
        201,
    )
    assert erin["quota"] is None and erin["quota_text"] == "unlimited" and not erin["admin"]
    for record in caplog.records:
        text = record.getMessage() + str(getattr(record, "fields", ""))
        assert NEW_PW not in text and ROOT_PW not in text and "$argon2" not in text


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"address": "alice@example.test", "password": "pw"}, 409, "already exists"),
        ({"address": "x@nowhere.test", "password": "pw"}, 400, "nowhere.test does not exist"),
        ({"address": "not-an-address", "password": "pw"}, 400, "not-an-address"),
        ({"address": "x@example.test", "password": ""}, 400, "the password must not be empty"),
        ({"address": "x@example.test"}, 400, "password must be a string"),
        ({"address": "x@example.test", "password": "p", "quota": "lots"}, 400, "quota: bad size"),
        ({"address": "x@example.test", "password": "p", "quota": -1}, 400, "quota: bad size"),
        ({"address": "x@example.test", "password": "p", "quota": True}, 400, "quota must be"),
        ({"address": "x@example.test", "password": "p", "admin": "yes"}, 400, "admin must be"),
    ],
)
def test_add_account_refusals(web: Web, body: dict[str, Any], status: int, message: str) -> None:
    before = ok(web.admin.get("/api/admin/accounts"))
    answer = web.admin.post("/api/admin/accounts", json=body, headers=web.csrf)
    assert message in error(answer, status)
    assert ok(web.admin.get("/api/admin/accounts")) == before


def test_change_account(web: Web) -> None:
    c, h = web.admin, web.csrf
    url = "/api/admin/accounts/Alice@Example.Test"
    changed = ok(c.patch(url, json={"quota": "500M", "admin": True}, headers=h))
    assert changed["quota"] == 500 * 1024**2 and changed["admin"] and changed["enabled"]
    assert ok(c.patch(url, json={"quota": None}, headers=h))["quota"] is None
    # A password reset: the new one works, the old one does not, her sessions end.
    ok(c.patch(url, json={"password": NEW_PW}, headers=h))
    assert web.user.get("/api/me").status_code == 401
    fresh = _client(web.admin.app, web.portal)
    assert fresh.post(
        "/api/login", json={"address": "alice@example.test", "password": ALICE_PW}
    ).status_code in (401, 429)
    login(fresh, "alice@example.test", NEW_PW)
    # Disabled: logins refused, the open session ends.
    assert ok(c.patch(url, json={"enabled": False}, headers=h))["enabled"] is False
    assert fresh.get("/api/me").status_code == 401
    assert ok(c.get(url))["enabled"] is False
    assert ok(c.patch(url, json={"enabled": True}, headers=h))["enabled"] is True


@pytest.mark.parametrize(
    ("address", "body", "status", "message"),
    [
        ("nobody@example.test", {"enabled": False}, 404, "no account nobody@example.test"),
        ("alice@example.test", {"enabled": "no"}, 400, "enabled must be true or false"),
        ("alice@example.test", {"password": ""}, 400, "the password must not be empty"),
        ("alice@example.test", {"quota": "lots"}, 400, "quota: bad size"),
        ("alice@example.test", {"colour": "red"}, 400, "unknown field 'colour'"),
        ("root@example.test", {"admin": False}, 400, "your own admin flag"),
        ("root@example.test", {"enabled": False}, 400, "disable your own account"),
    ],
)
def test_change_account_refusals(
    web: Web, address: str, body: dict[str, Any], status: int, message: str
) -> None:
    before = ok(web.admin.get("/api/admin/accounts"))
    answer = web.admin.patch(f"/api/admin/accounts/{address}", json=body, headers=web.csrf)
    assert message in error(answer, status)
    assert ok(web.admin.get("/api/admin/accounts")) == before


def test_delete_account_deletes_its_mail(web: Web) -> None:
    c, h = web.admin, web.csrf
    assert ok(c.delete("/api/admin/accounts/ALICE@example.test", headers=h)) == {
        "deleted": "alice@example.test"
    }
    assert web.call(web.ctx.store.list_mailboxes, "alice@example.test") == []
    assert web.user.get("/api/me").status_code == 401  # her session ended with the account
    assert [a["address"] for a in ok(c.get("/api/admin/accounts"))] == ["root@example.test"]
    gone = c.delete("/api/admin/accounts/alice@example.test", headers=h)
    assert error(gone, 404) == "no account alice@example.test"
    own = c.delete("/api/admin/accounts/root@example.test", headers=h)
    assert "your own account" in error(own, 400)


# --- aliases -------------------------------------------------------------------------------


def test_aliases(web: Web) -> None:
    c, h = web.admin, web.csrf
    team = {"source": "Team@Example.Test", "targets": ["alice@example.test", "X@Far.Test"]}
    assert ok(c.post("/api/admin/aliases", json=team, headers=h), 201) == {
        "source": "team@example.test",
        "targets": ["alice@example.test", "X@far.test"],
        "catch_all": False,
    }
    more = {"source": "team@example.test", "targets": ["root@example.test", "alice@example.test"]}
    assert ok(c.post("/api/admin/aliases", json=more, headers=h), 201)["targets"] == [
        "alice@example.test",
        "X@far.test",
        "root@example.test",
    ]
    catch_all = {"source": "@example.test", "targets": "root@example.test"}
    assert ok(c.post("/api/admin/aliases", json=catch_all, headers=h), 201)["catch_all"]
    assert [a["source"] for a in ok(c.get("/api/admin/aliases"))] == [
        "@example.test",
        "team@example.test",
    ]
    assert ok(c.get("/api/admin/domains"))[0]["aliases"] == 2
    assert ok(c.delete("/api/admin/aliases/@example.test", headers=h)) == {
        "deleted": "@example.test"
    }
    assert ok(c.delete("/api/admin/aliases/TEAM@example.test", headers=h)) == {
        "deleted": "team@example.test"
    }
    assert ok(c.get("/api/admin/aliases")) == []
    assert error(c.delete("/api/admin/aliases/team@example.test", headers=h), 404) == (
        "no alias team@example.test"
    )


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"source": "alice@example.test", "targets": ["x@far.test"]}, 409, "is an account"),
        ({"source": "a@nowhere.test", "targets": ["x@far.test"]}, 400, "does not exist"),
        ({"source": "a@example.test", "targets": ["a@example.test"]}, 400, "cannot point"),
        ({"source": "a@example.test", "targets": []}, 400, "needs at least one target"),
        ({"source": "a@example.test", "targets": ["bad target"]}, 400, "bad target"),
        ({"source": "a@example.test", "targets": [1]}, 400, "targets must be a list"),
        ({"targets": ["x@far.test"]}, 400, "source must be a string"),
    ],
)
def test_alias_refusals(web: Web, body: dict[str, Any], status: int, message: str) -> None:
    answer = web.admin.post("/api/admin/aliases", json=body, headers=web.csrf)
    assert message in error(answer, status)
    assert ok(web.admin.get("/api/admin/aliases")) == []


# --- the queue -----------------------------------------------------------------------------


async def _queue_deferred(spool: Spool) -> QueuedMessage:
    """A message for a remote recipient that got a 4xx an hour ago, as an outbound pass
    leaves it (its attempt logged)."""
    writer = await spool.new_message()
    await writer.write(BODY)
    rcpts = (EnvelopeRecipient("bob@far.test"),)
    qid = await writer.commit(Envelope("alice@example.test", rcpts, auth="alice@example.test"))
    message = await spool.db.load(qid)
    assert message is not None
    now = time.time()
    changed = [
        replace(
            r,
            route=Route.REMOTE,
            status=Status.DEFERRED,
            attempts=1,
            last_error="4.7.1 greylisted, try later",
            remote="mx.far.test [192.0.2.9]",
            next_try=now + 3600,
            updated=now,
        )
        for r in message.recipients
    ]
    await spool.db.apply(qid, changed, [])
    loaded = await spool.db.load(qid)
    assert loaded is not None
    return loaded


def test_queue_list_show_retry_delete(web: Web) -> None:
    c, h = web.admin, web.csrf
    assert ok(c.get("/api/admin/queue")) == []
    message = web.call(_queue_deferred, web.ctx.spool)
    qid = message.queue_id
    (listed,) = ok(c.get("/api/admin/queue"))
    assert listed["queue_id"] == qid and listed["state"] == "deferred"
    assert listed["sender"] == "alice@example.test" and listed["size"] == len(BODY)
    assert listed["last_error"] == "4.7.1 greylisted, try later"
    (rcpt,) = listed["recipients"]
    assert rcpt["address"] == "bob@far.test" and rcpt["attempts"] == 1
    assert rcpt["remote"] == "mx.far.test [192.0.2.9]"
    shown = ok(c.get(f"/api/admin/queue/{qid}"))
    assert {k: v for k, v in shown.items() if k != "attempts"} == listed
    (attempt,) = shown["attempts"]
    assert attempt["address"] == "bob@far.test" and attempt["status"] == "deferred"
    assert attempt["reply"] == "4.7.1 greylisted, try later"
    assert attempt["remote"] == "mx.far.test [192.0.2.9]"
    # Retry: the waiting row is due now.
    before = time.time()
    assert ok(c.post(f"/api/admin/queue/{qid}/retry", headers=h)) == {
        "queue_id": qid,
        "recipients": 1,
        "held": False,
    }
    (row,) = web.call(web.ctx.spool.db.load, qid).recipients
    assert row.next_try <= time.time() and row.next_try >= before - 1
    # Delete: rows and file gone, nothing sent.
    assert message.spool_path.exists()
    assert ok(c.delete(f"/api/admin/queue/{qid}", headers=h)) == {"deleted": qid}
    assert not message.spool_path.exists()
    assert ok(c.get("/api/admin/queue")) == []
    for method, path in [
        ("GET", f"/api/admin/queue/{qid}"),
        ("POST", f"/api/admin/queue/{qid}/retry"),
        ("DELETE", f"/api/admin/queue/{qid}"),
    ]:
        assert error(send(c, method, path, headers=h), 404) == f"no queued message {qid}"


# --- DNS -----------------------------------------------------------------------------------


def test_dns_records_exactly(web: Web) -> None:
    records = ok(web.admin.get("/api/admin/dns/Example.Test"))
    assert [(r["type"], r["name"], r["value"]) for r in records] == [
        ("MX", "example.test.", "10 mail.example.test."),
        ("TXT", "example.test.", "v=spf1 mx -all"),
        # From the SMTP listener on a specific address; the loopback one says nothing.
        ("A", "mail.example.test.", "198.51.100.7"),
    ]
    assert all(r["why"] for r in records)
    missing = web.admin.get("/api/admin/dns/nowhere.test")
    assert error(missing, 404) == "domain nowhere.test does not exist; add it first"
    assert "bad_domain!" in error(web.admin.get("/api/admin/dns/bad_domain!"), 400)
