"""Web sessions, login/logout, CSRF, and the security headers every response carries.

Owns the `posthorn_session` cookie and what it points to (docs/web-api.md "Sessions, CSRF,
login"). Route modules ask `current_session(request)` (401 without a live session) and
`require_admin(request)` (403 for non-admins); they never look at cookies themselves.

Invariants:
- Sessions live only in this process's memory (`SessionStore`): a restart logs everyone out,
  and nothing about a session is ever written to disk. The id is 256 random bits; the CSRF token
  is a separate 256-bit secret, so leaking one (a log line, a Referer) never gives the other.
- A session ends after `IDLE_TIMEOUT` without a request, on logout, or when its account is
  disabled or deleted (checked on every request: the directory's look-up is cached).
- Every state-changing request (POST, PUT, PATCH, DELETE) carrying a live session must carry
  its CSRF token, in the ``X-CSRF-Token`` header or the ``csrf`` form field; `RequestGuard`
  checks this before any route runs, so a route cannot forget it. ``POST /api/login`` is the
  one exception (there is no session yet); it accepts JSON only, which a cross-site HTML form
  cannot send, and the cookie is ``SameSite=Strict``.
- Request bodies are bounded before a route reads them (`RequestGuard`): `JSON_LIMIT` for
  everything but multipart uploads, which get the message size limit plus some slack.
- Failed logins go through the `AuthThrottle` shared with SMTP, IMAP and POP3: a locked client
  gets 429 without its password being checked; a wrong password is answered after the delay.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posthorn.log import get_logger
from posthorn.web.context import WebContext

__all__ = [
    "CSRF_HEADER",
    "IDLE_TIMEOUT",
    "JSON_LIMIT",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "RequestGuard",
    "SecurityHeaders",
    "SessionStore",
    "WebSession",
    "auth_routes",
    "current_session",
    "error_response",
    "read_json",
    "require_admin",
]

log = get_logger(__name__)

SESSION_COOKIE: Final = "posthorn_session"
CSRF_HEADER: Final = "x-csrf-token"
CSRF_FIELD: Final = "csrf"
IDLE_TIMEOUT: Final = 12 * 3600.0
MAX_SESSIONS: Final = 100_000
"""Sessions kept at most; past it the least recently used goes (memory stays bounded even if
someone logs in in a loop)."""
JSON_LIMIT: Final = 1024 * 1024
"""Bytes of any request body except multipart uploads."""
UPLOAD_SLACK: Final = 1024 * 1024
"""Multipart bodies may exceed the message size limit by this much (form fields, boundaries);
the message built from them is checked against the limit itself."""
MAX_LOGIN_FIELD: Final = 1024
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_EXEMPT: Final = frozenset({"/api/login"})
CSRF_ERROR: Final = "CSRF token missing or wrong"

CSP: Final = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; object-src 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def error_response(status: int, text: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape of the API (docs/web-api.md): ``{"error": text}``."""
    return JSONResponse({"error": text}, status_code=status, headers=headers)


# --- sessions --------------------------------------------------------------------------------


@dataclass(slots=True)
class WebSession:
    """One logged-in browser. ``admin`` is as of login; `require_admin` asks the directory."""

    id: str
    account: str
    csrf: str
    admin: bool
    created: float
    last_seen: float


class SessionStore:
    """In-memory sessions by id, least recently used first. Not thread-safe (event loop only)."""

    def __init__(
        self,
        idle_timeout: float = IDLE_TIMEOUT,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, WebSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, account: str, admin: bool) -> WebSession:
        now = self._clock()
        self._purge(now)
        session = WebSession(
            id=secrets.token_urlsafe(32),
            account=account,
            csrf=secrets.token_urlsafe(32),
            admin=admin,
            created=now,
            last_seen=now,
        )
        self._sessions[session.id] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> WebSession | None:
        """The live session with this id (and it counts as used now), else None."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > self.idle_timeout:
            del self._sessions[session_id]
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def end_account(self, account: str) -> None:
        """Log an account out everywhere (disabled, deleted, password reset)."""
        for sid in [s.id for s in self._sessions.values() if s.account == account]:
            del self._sessions[sid]

    def _purge(self, now: float) -> None:
        while self._sessions:
            session = next(iter(self._sessions.values()))
            if now - session.last_seen <= self.idle_timeout:
                break
            del self._sessions[session.id]

    def has_session(self, request: Request) -> bool:
        """For the pages: does this request belong to a live session?"""
        return self.get(request.cookies.get(SESSION_COOKIE)) is not None


def _sessions(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.sessions
    return store


def _context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


def current_session(request: Request) -> WebSession:
    """The request's live session; `HTTPException` 401 without one.

    Whether the account still exists and is enabled is checked separately by `RequestGuard`
    (it is async); a route reached through the app has been through it."""
    session = _sessions(request).get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise HTTPException(401, "not logged in")
    return session


async def require_admin(request: Request) -> WebSession:
    """The session of an account that is an admin now; 401 without a session, 403 otherwise.

    Asks the directory every time rather than trusting the flag from login, so taking the
    flag away takes effect at once."""
    session = current_session(request)
    account = await _context(request).directory.find_account(session.account)
    if account is None or not account.enabled or not account.admin:
        raise HTTPException(403, "administrators only")
    return session


# --- login / logout / me ---------------------------------------------------------------------


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body; 400 (as `HTTPException`) for anything else."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "expected application/json")
    try:
        value = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "invalid JSON") from None
    if not isinstance(value, dict):
        raise HTTPException(400, "expected a JSON object")
    return value


def _client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _session_json(session: WebSession) -> dict[str, Any]:
    return {"account": session.account, "admin": session.admin, "csrf": session.csrf}


def _set_cookie(response: Response, request: Request, session: WebSession) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        max_age=None,  # a browser-session cookie; the server ends idle sessions itself
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


async def login(request: Request) -> Response:
    """Check the password (throttled like every other login) and start a session."""
    ctx = _context(request)
    body = await read_json(request)
    address, password = body.get("address"), body.get("password")
    if not isinstance(address, str) or not isinstance(password, str):
        raise HTTPException(400, "address and password are required")
    if len(address) > MAX_LOGIN_FIELD or len(password) > MAX_LOGIN_FIELD:
        raise HTTPException(400, "address or password too long")
    ip = _client_ip(request)
    if ctx.throttle.locked(ip, address):
        # Never check the password of a locked attempt: a lockout must not confirm a guess.
        log.warning("web.auth.locked", user=address, ip=ip)
        raise HTTPException(429, "too many failed logins; try again later")
    account = await ctx.directory.authenticate(address, password)
    if account is None:
        ctx.throttle.failure(ip, address)
        log.info("web.auth.failed", user=address, ip=ip)
        await asyncio.sleep(ctx.throttle.delay(ip, address))
        raise HTTPException(401, "wrong address or password")
    ctx.throttle.success(ip, address)
    await ctx.store.ensure_account(account.address)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        _sessions(request).end(old)  # a new login never reuses an id (session fixation)
    session = _sessions(request).create(account.address, account.admin)
    log.info("web.auth.ok", account=account.address, ip=ip)
    response = JSONResponse(_session_json(session))
    _set_cookie(response, request, session)
    return response


async def logout(request: Request) -> Response:
    session = current_session(request)
    _sessions(request).end(session.id)
    response = JSONResponse({"ok": True})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def me(request: Request) -> Response:
    """The session's account, its admin flag as the directory has it now, and the CSRF token
    (pages fetch it here rather than having it rendered into HTML)."""
    session = current_session(request)
    account = await _context(request).directory.find_account(session.account)
    session.admin = account is not None and account.admin
    return JSONResponse(_session_json(session))


def auth_routes() -> list[BaseRoute]:
    return [
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/me", me, methods=["GET"]),
    ]


# --- middleware ------------------------------------------------------------------------------


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every response that does not set them itself (a page may
    carry a policy of its own; the API's responses get this strict one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _TooLarge(Exception):
    pass


class RequestGuard:
    """Before any route: bound the body, drop sessions of disabled accounts, check CSRF.

    The body of a state-changing request is read here (bounded), checked, and replayed to the
    route, because the CSRF token of an HTML form is in the body."""

    def __init__(self, app: ASGIApp, *, sessions: SessionStore, ctx: WebContext) -> None:
        self.app = app
        self.sessions = sessions
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request = Request(scope)
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            account = await self.ctx.directory.find_account(session.account)
            if account is None or not account.enabled:
                self.sessions.end(session.id)
                session = None
        if scope["method"] not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        multipart = headers.get("content-type", "").startswith("multipart/form-data")
        limit = self.ctx.config.smtp.max_message_size + UPLOAD_SLACK if multipart else JSON_LIMIT
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await error_response(413, "request body too large")(scope, receive, send)
            return
        try:
            body = await _read_body(receive, limit)
        except _TooLarge:
            await error_response(413, "request body too large")(scope, receive, send)
            return
        if (
            session is not None
            and scope["path"] not in CSRF_EXEMPT
            and not await _csrf_ok(scope, headers, body, session.csrf)
        ):
            await error_response(403, CSRF_ERROR)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _csrf_ok(scope: Scope, headers: Headers, body: bytes, expected: str) -> bool:
    """The token from the header, else from the ``csrf`` form field, compared in constant
    time."""
    given = headers.get(CSRF_HEADER)
    if given is None:
        given = await _form_token(scope, headers, body)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def _form_token(scope: Scope, headers: Headers, body: bytes) -> str | None:
    ctype = headers.get("content-type", "")
    if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return None

    async def stream() -> Any:
        yield body

    parser: FormParser | MultiPartParser
    if ctype.startswith("multipart/"):
        parser = MultiPartParser(headers, stream(), max_files=1000, max_fields=1000)
    else:
        parser = FormParser(headers, stream())
    try:
        form = await parser.parse()
    except (MultiPartException, ValueError):
        return None
    try:
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    finally:
        await form.close()
