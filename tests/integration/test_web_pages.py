"""The HTML pages (`posthorn.web.pages`): shells, redirects, static files, template safety.

Most tests drive the page routes on a bare Starlette app with Starlette's TestClient, the real
`SessionStore` deciding who has a session; one drives them through `create_app` over a real
directory and store, logging in through the API as a browser would. What the pages do in a
browser is for the Playwright tests; here: what the server sends, and that the templates and
scripts keep the rules the CSP and the browser tests rely on.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from posthorn.config import Config, ServerConfig
from posthorn.directory import DirectoryDB, Hasher, HashParams
from posthorn.directory.db import DIRECTORY_FILENAME
from posthorn.directory.service import Directory
from posthorn.policy.limits import AuthThrottle
from posthorn.queue.spool import Spool
from posthorn.store.sqlite import SQLiteMailStore
from posthorn.web.app import create_app
from posthorn.web.auth import CSP as API_CSP
from posthorn.web.auth import SESSION_COOKIE as AUTH_SESSION_COOKIE
from posthorn.web.auth import SessionStore
from posthorn.web.context import WebContext
from posthorn.web.pages import (
    PAGE_CSP,
    SESSION_COOKIE,
    STATIC_DIR,
    TEMPLATES_DIR,
    page_routes,
    templates_environment,
)

HOSTNAME = "mail.example.test"


def make_client(hostname: str = HOSTNAME) -> tuple[TestClient, SessionStore]:
    sessions = SessionStore()
    # The pages use nothing of the context but the hostname.
    ctx = cast(WebContext, SimpleNamespace(hostname=hostname))
    app = Starlette(routes=page_routes(ctx, has_session=sessions.has_session))
    return TestClient(app, follow_redirects=False), sessions


@pytest.fixture
def client() -> TestClient:
    return make_client()[0]


@pytest.fixture
def signed_in() -> TestClient:
    client, sessions = make_client()
    session = sessions.create("alice@example.test", admin=False)
    client.cookies.set(SESSION_COOKIE, session.id)
    return client


def test_cookie_name_is_the_auth_modules() -> None:
    assert SESSION_COOKIE == AUTH_SESSION_COOKIE


# --- through the whole app -------------------------------------------------------------------

ALICE, ALICE_PASSWORD = "alice@example.test", "pw-alice"


@pytest.fixture
async def app_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    cheap = Hasher(HashParams(time_cost=1, memory_cost=8, parallelism=1))
    with DirectoryDB(tmp_path / DIRECTORY_FILENAME, hasher=cheap) as db:
        db.add_domain("example.test")
        db.add_account(ALICE, ALICE_PASSWORD)
    directory = await Directory.open(tmp_path / DIRECTORY_FILENAME, hasher=cheap)
    store = SQLiteMailStore(tmp_path)
    await store.open()
    config = Config(server=ServerConfig(hostname=HOSTNAME, domains=("example.test",)))
    ctx = WebContext(config, directory, store, Spool(tmp_path), AuthThrottle())
    transport = httpx.ASGITransport(app=create_app(ctx))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await store.close()
        await directory.close()


async def test_the_app_serves_the_pages_for_a_session_only(app_client: httpx.AsyncClient) -> None:
    for path, target in (("/", "/login"), ("/admin", "/login?next=/admin")):
        response = await app_client.get(path)
        assert (response.status_code, response.headers["location"]) == (303, target)
    login_page = await app_client.get("/login")
    assert login_page.status_code == 200
    assert 'data-testid="login-submit"' in login_page.text

    answer = await app_client.post(
        "/api/login", json={"address": ALICE, "password": ALICE_PASSWORD}
    )
    assert answer.status_code == 200
    webmail = await app_client.get("/")
    assert webmail.status_code == 200
    assert 'data-page="webmail"' in webmail.text
    # The page's own policy survives the app's SecurityHeaders (it lets a reader who asked see
    # remote images in the sandboxed frame); API answers keep the strict one.
    assert webmail.headers["content-security-policy"] == PAGE_CSP
    assert (await app_client.get("/api/me")).headers["content-security-policy"] == API_CSP
    assert 'data-page="admin"' in (await app_client.get("/admin")).text
    script = await app_client.get("/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))

    csrf = answer.json()["csrf"]
    assert (await app_client.post("/api/logout", headers={"X-CSRF-Token": csrf})).status_code == 200
    assert (await app_client.get("/")).status_code == 303


# --- redirects and shells ------------------------------------------------------------------


@pytest.mark.parametrize(("path", "target"), [("/", "/login"), ("/admin", "/login?next=/admin")])
def test_pages_without_a_session_redirect_to_login(
    client: TestClient, path: str, target: str
) -> None:
    response = client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == target


def test_a_stale_session_cookie_redirects_too(client: TestClient) -> None:
    client.cookies.set(SESSION_COOKIE, "not-a-live-session")
    assert client.get("/").status_code == 303


def test_webmail_shell_for_a_session(signed_in: TestClient) -> None:
    response = signed_in.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    body = response.text
    assert 'data-page="webmail"' in body
    for testid in ("compose", "message-list", "folder-list", "send", "reply", "show-images"):
        assert f'data-testid="{testid}"' in body
    assert '<script src="/static/app.js' in body


def test_admin_shell_for_a_session(signed_in: TestClient) -> None:
    # Non-admins get the shell too; admin.js asks /api/me and shows the 403 notice.
    response = signed_in.get("/admin")
    assert response.status_code == 200
    body = response.text
    assert 'data-page="admin"' in body
    assert 'data-testid="admin-forbidden"' in body
    for tab in ("domains", "accounts", "aliases", "queue", "dns"):
        assert f'data-testid="tab-{tab}"' in body
    assert '<script src="/static/admin.js' in body


def test_login_page(client: TestClient) -> None:
    response = client.get("/login")
    assert response.status_code == 200
    body = response.text
    assert 'data-page="login"' in body
    assert 'data-testid="login-submit"' in body
    assert 'data-next="/"' in body


@pytest.mark.parametrize(
    ("wanted", "next_page"),
    [("/admin", "/admin"), ("https://evil.example/", "/"), ("//evil.example", "/"), ("", "/")],
)
def test_login_next_is_only_ever_one_of_our_pages(
    client: TestClient, wanted: str, next_page: str
) -> None:
    body = client.get("/login", params={"next": wanted}).text
    assert f'data-next="{next_page}"' in body


def test_login_shows_the_form_even_with_a_session(signed_in: TestClient) -> None:
    # No redirect from /login: a stale cookie must never bounce between / and /login.
    assert signed_in.get("/login").status_code == 200


def test_pages_carry_a_strict_script_policy(signed_in: TestClient) -> None:
    headers = signed_in.get("/").headers
    policy = dict(
        [*part.strip().split(" ", 1), ""][:2]
        for part in headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"


def test_page_methods_other_than_get_are_refused(signed_in: TestClient) -> None:
    assert signed_in.post("/").status_code == 405


# --- static files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", ("text/javascript", "application/javascript")),
        ("admin.js", ("text/javascript", "application/javascript")),
        ("style.css", ("text/css",)),
    ],
)
def test_static_files_are_served_with_their_types(
    client: TestClient, name: str, content_type: tuple[str, ...]
) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] in content_type
    assert response.content == (STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize(
    "path", ["/static/missing.js", "/static/../pages.py", "/static/%2e%2e/pages.py"]
)
def test_static_serves_nothing_else(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


# --- template and script rules ---------------------------------------------------------------


class _Scan(HTMLParser):
    """Collects what the CSP and the security rules care about in a page or template."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[dict[str, str | None]] = []
        self.script_text: list[str] = []
        self.handlers: list[str] = []
        self.iframes: list[dict[str, str | None]] = []
        self.ids: set[str] = set()
        self.testids: set[str] = set()
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        self.handlers += [
            f"{name}={value}"
            for name, value in attrs
            if value and value.strip().lower().startswith("javascript:")
        ]
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if values.get("data-testid"):
            self.testids.add(str(values["data-testid"]))
        if tag == "script":
            self.scripts.append(values)
            self._in_script = True
        if tag == "iframe":
            self.iframes.append(values)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.script_text.append(data)


def scan(text: str) -> _Scan:
    parser = _Scan()
    parser.feed(text)
    parser.close()
    return parser


TEMPLATES = sorted(TEMPLATES_DIR.glob("*.html"))


def test_there_are_templates() -> None:
    names = {path.name for path in TEMPLATES}
    assert {"base.html", "login.html", "webmail.html", "admin.html"} <= names


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_no_inline_script_in_any_template(template: Path) -> None:
    found = scan(template.read_text())
    assert found.script_text == []
    assert found.handlers == []
    for script in found.scripts:
        assert str(script.get("src", "")).startswith("/static/")


@pytest.mark.parametrize("path", ["/login", "/", "/admin"])
def test_no_inline_script_in_any_rendered_page(signed_in: TestClient, path: str) -> None:
    found = scan(signed_in.get(path).text)
    assert found.scripts, "each page loads its script from /static"
    assert found.script_text == []
    assert found.handlers == []
    for script in found.scripts:
        assert str(script["src"]).startswith("/static/")


def test_the_reading_pane_is_a_sandbox_without_scripts(signed_in: TestClient) -> None:
    frames = scan(signed_in.get("/").text).iframes
    assert len(frames) == 1
    assert frames[0]["sandbox"] == ""  # present and empty: no allow-scripts, nothing allowed
    assert frames[0].get("src") is None  # content only ever through srcdoc, set by app.js


def test_templates_autoescape() -> None:
    env = templates_environment()
    assert env.from_string("{{ value }}").render(value="<b>&\"'") == "&lt;b&gt;&amp;&#34;&#39;"
    page = env.get_template("login.html").render(
        hostname="<script>alert(1)</script>", version="1", next_page="/"
    )
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_hostile_hostname_stays_text_in_the_pages() -> None:
    client, sessions = make_client(hostname='"><script>x()</script>')
    client.cookies.set(SESSION_COOKIE, sessions.create("a@example.test", admin=True).id)
    for path in ("/login", "/", "/admin"):
        found = scan(client.get(path).text)
        assert found.script_text == []
        assert all(str(s.get("src", "")).startswith("/static/") for s in found.scripts)


def _js(name: str) -> str:
    return (STATIC_DIR / name).read_text()


def test_scripts_never_use_innerhtml_or_eval() -> None:
    for name in ("app.js", "admin.js"):
        code = _js(name)
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert banned not in code, f"{name} uses {banned}"
        assert "localStorage" not in code and "sessionStorage" not in code  # the CSRF token too


def test_state_changing_calls_send_the_csrf_header() -> None:
    code = _js("app.js")
    assert 'headers["X-CSRF-Token"] = csrf' in code
    # Every fetch of the pages goes through api(), except the attachment downloads (GET).
    assert code.count("fetch(") == 2
    assert "fetch(url, { credentials" in code
    assert "fetch(" not in _js("admin.js")


def _page_ids(*templates: str) -> set[str]:
    found: set[str] = set()
    for name in templates:
        found |= scan((TEMPLATES_DIR / name).read_text()).ids
    return found


@pytest.mark.parametrize(
    ("script", "templates"),
    [
        ("app.js", ("base.html", "login.html", "webmail.html", "_ask.html")),
        ("admin.js", ("base.html", "admin.html", "_ask.html")),
    ],
)
def test_every_element_a_script_looks_up_exists(script: str, templates: tuple[str, ...]) -> None:
    wanted = set(re.findall(r'\$\(\s*"([\w-]+)"\s*\)', _js(script)))
    assert wanted, "the scripts look elements up with $(id)"
    assert wanted - _page_ids(*templates) == set()


def _documented_testids() -> str:
    return "".join(
        re.match(r"/\*.*?\*/", _js(name), re.DOTALL).group(0)  # type: ignore[union-attr]
        for name in ("app.js", "admin.js")
    )


def test_every_testid_in_the_templates_is_documented_for_the_browser_tests() -> None:
    documented = set(re.findall(r"[\w-]+", _documented_testids()))
    for template in TEMPLATES:
        missing = scan(template.read_text()).testids - documented
        assert missing == set(), f"{template.name}: {sorted(missing)} not listed in app.js/admin.js"


def test_every_testid_the_scripts_create_is_documented() -> None:
    documented = set(re.findall(r"[\w-]+", _documented_testids()))
    for name in ("app.js", "admin.js"):
        created = set(re.findall(r'"data-testid":\s*"([\w-]+)"', _js(name)))
        created |= set(re.findall(r'button\([^,]+,\s*"([\w-]+)"', _js(name)))
        assert created - documented == set(), name
