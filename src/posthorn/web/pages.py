"""The HTML pages: server-rendered shells that ``static/app.js`` and ``static/admin.js`` fill
from the JSON API (docs/web-api.md).

Owns `/login`, `/` (webmail), `/admin` and `/static/*`. The pages carry no mail data and no
secrets: everything a page shows comes from `/api/*`, which does its own authentication and
CSRF checks. So a page's only decision is whether to send a visitor without a session to
`/login` (docs/web-api.md: "No session → a redirect to /login for pages").

Invariants:
- Templates are rendered with autoescape on, for every file, whatever its extension.
- No template contains an inline ``<script>``: the CSP allows scripts from ``'self'`` only.
- Message HTML is never part of a page: the reading pane shows it in a sandboxed ``<iframe>``
  (``sandbox=""``, no ``allow-scripts``) through ``srcdoc``, set by JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from posthorn import __version__
from posthorn.web.context import WebContext

__all__ = ["PAGE_CSP", "SESSION_COOKIE", "SessionCheck", "cookie_present", "page_routes"]

SESSION_COOKIE: Final = "posthorn_session"  # docs/web-api.md "Sessions, CSRF, login"

_HERE: Final = Path(__file__).parent
TEMPLATES_DIR: Final = _HERE / "templates"
STATIC_DIR: Final = _HERE / "static"

# Scripts only from our own /static. The reading pane's srcdoc iframe inherits this policy, so
# it also decides what a message may load: inline styles (mail depends on them) and, once the
# reader asks for them (the API then leaves remote <img> sources in), images from anywhere.
# Nothing else remote: no fonts, no CSS, no frames, no connections.
PAGE_CSP: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: https: http:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": PAGE_CSP,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# Where /login may send the reader back to: pages only, never an outside address.
_NEXT_PAGES: Final = frozenset({"/", "/admin"})

SessionCheck = Callable[[Request], bool]
"""Whether a request belongs to a live session. `posthorn.web.app` passes the session store's
check; the pages never look into sessions themselves."""


def cookie_present(request: Request) -> bool:
    """The fallback check: a session cookie is there at all. Enough for pages (they hold no
    data, and the first API call of a stale session gets a 401 and goes to /login), but the
    app should pass the session store's real check so a stale cookie redirects at once."""
    return bool(request.cookies.get(SESSION_COOKIE))


def templates_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every template, not only *.html
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def page_routes(ctx: WebContext, *, has_session: SessionCheck = cookie_present) -> list[BaseRoute]:
    """The page routes and `/static`, for `posthorn.web.app.create_app` to mount."""
    env = templates_environment()
    common = {"hostname": ctx.hostname, "version": __version__}

    def render(name: str, **values: object) -> HTMLResponse:
        html = env.get_template(name).render(**common, **values)
        return HTMLResponse(html, headers=_PAGE_HEADERS)

    def to_login(request: Request) -> Response:
        target = "/login" if request.url.path == "/" else f"/login?next={request.url.path}"
        return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})

    async def login(request: Request) -> Response:
        wanted = request.query_params.get("next", "/")
        next_page = wanted if wanted in _NEXT_PAGES else "/"
        # Always the form, even with a session cookie: with `cookie_present` a stale cookie
        # would otherwise bounce between / (whose API calls get 401) and /login forever.
        return render("login.html", next_page=next_page)

    async def webmail(request: Request) -> Response:
        if not has_session(request):
            return to_login(request)
        return render("webmail.html")

    async def admin(request: Request) -> Response:
        # Non-admins get the shell too: admin.js asks /api/me and explains the 403. Whether
        # someone is an admin is the API's decision (every /api/admin route checks it).
        if not has_session(request):
            return to_login(request)
        return render("admin.html")

    return [
        Route("/login", login, methods=["GET"], name="login"),
        Route("/", webmail, methods=["GET"], name="webmail"),
        Route("/admin", admin, methods=["GET"], name="admin"),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
