"""The ASGI application: every web route in one Starlette app (docs/web-api.md).

`create_app` is the web side's composition root. It owns the order things run in:

1. `SecurityHeaders` (outermost, so refusals carry the headers too);
2. `RequestGuard`: body limits, sessions of disabled accounts, CSRF on state-changing requests;
3. the routes: ``/healthz``, ``/api/openapi.json``, login/logout/me (`posthorn.web.auth`), the
   mail API (`posthorn.web.mail_api`), the admin API (`posthorn.web.admin_api`), then the pages
   (`posthorn.web.pages`), which come last because they own ``/`` and ``/static``.

Errors are answered in one place (`_http_error`, `_store_error`, `_server_error`): always
``{"error": text}`` with a 4xx/5xx status, never a traceback. A page request (not ``/api``)
that needs a session and has none is redirected to ``/login`` instead of getting a 401.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from posthorn import __version__
from posthorn.log import get_logger
from posthorn.store.base import (
    MailboxExists,
    MailboxNotAllowed,
    NoSuchMailbox,
    NoSuchMessage,
    QuotaExceeded,
    StoreError,
)
from posthorn.web.admin_api import admin_routes
from posthorn.web.auth import (
    RequestGuard,
    SecurityHeaders,
    SessionStore,
    auth_routes,
    error_response,
)
from posthorn.web.context import WebContext
from posthorn.web.mail_api import mail_routes
from posthorn.web.openapi import openapi_document
from posthorn.web.pages import page_routes

__all__ = ["create_app"]

log = get_logger(__name__)

_STORE_STATUS: dict[type[StoreError], tuple[int, str]] = {
    NoSuchMailbox: (404, "no such mailbox"),
    NoSuchMessage: (404, "no such message"),
    MailboxExists: (409, "a mailbox with that name exists"),
    MailboxNotAllowed: (400, "not allowed on this mailbox"),
    QuotaExceeded: (507, "over quota"),
}


def create_app(ctx: WebContext, *, sessions: SessionStore | None = None) -> Starlette:
    """The app for ``ctx``; ``sessions`` lets tests share or inspect the session store."""
    sessions = sessions if sessions is not None else SessionStore()

    async def healthz(request: Request) -> JSONResponse:
        """Liveness for monitors and tests."""
        return JSONResponse({"status": "ok", "hostname": ctx.hostname, "version": __version__})

    async def openapi(request: Request) -> JSONResponse:
        """This API's OpenAPI 3.1 description."""
        return JSONResponse(openapi_document(app.routes))

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/api/openapi.json", openapi, methods=["GET"]),
        *auth_routes(),
        *mail_routes(ctx),
        *admin_routes(ctx),
        *page_routes(ctx, has_session=sessions.has_session),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(RequestGuard, sessions=sessions, ctx=ctx),
        ],
        exception_handlers={
            HTTPException: _http_error,
            StoreError: _store_error,
            Exception: _server_error,
        },
    )
    app.state.ctx = ctx
    app.state.sessions = sessions
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 401 and request.method == "GET" and not _is_api(request):
        return RedirectResponse("/login", status_code=303)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _store_error(request: Request, exc: Exception) -> Response:
    for kind, (status, text) in _STORE_STATUS.items():
        if isinstance(exc, kind):
            return error_response(status, text)
    return await _server_error(request, exc)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("web.error", path=request.url.path, method=request.method)
    return error_response(500, "internal error")


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")
