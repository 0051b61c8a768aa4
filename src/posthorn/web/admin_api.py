"""The admin JSON API (docs/web-api.md "Admin"): domains, accounts, aliases, the queue, DNS.

Every route needs a session of an account with the admin flag now (401 without a session,
403 for others: `posthorn.web.auth.require_admin`, which asks the directory on every request,
so taking the flag away takes effect at once). Every write needs the session's CSRF token as
well; `posthorn.web.auth.RequestGuard` checks it before any route runs.

What the routes do is what the ``posthorn`` CLI does, through the same functions, so the two
cannot drift apart:

- directory writes are `DirectoryDB` operations run as one job each on the directory's
  database thread (`Directory.run`); passwords are hashed in the hashing pool first
  (`Directory.add_account`, `Directory.set_password`), never on that thread;
- a refused change is the directory's own `DirectoryError`, whose message (the one the CLI
  prints) becomes ``{"error": message}``: 404 when the thing named in the URL does not
  exist, 409 when the change conflicts with what exists, 400 for the rest;
- queue records are shown in the shape of ``posthorn queue list|show --json``
  (`posthorn.cli.queue.message_json`), and changed by the `QueueDB` operator functions the
  CLI runs; a deleted message's spool file is removed only after its rows' deletion commits.

Invariants: passwords and password hashes are never in a response or a log line; an admin
cannot take away their own admin flag, disable or delete their own account here (the one
way back in would be the shell); every change is logged with the admin who made it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeAlias

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from posthorn.cli.queue import attempt_json, last_error, message_json
from posthorn.directory import (
    Account,
    AddressInUse,
    Alias,
    DirectoryDB,
    DirectoryError,
    Domain,
    DomainInUse,
    DuplicateAccount,
    DuplicateDomain,
    NoSuchAccount,
    NoSuchAlias,
    UnknownDomain,
    format_size,
    parse_size,
)
from posthorn.log import get_logger
from posthorn.queue.db import UnknownMessage
from posthorn.queue.records import QueuedMessage
from posthorn.web.auth import SessionStore, read_json, require_admin
from posthorn.web.context import WebContext
from posthorn.web.dns_records import hint_addresses, records_for

__all__ = ["admin_routes"]

log = get_logger(__name__)

Handler: TypeAlias = Callable[[Request, str], Awaitable[Response]]
"""A route's body: the request and the acting admin's address (authorised already)."""

_CONFLICT: Final = (DuplicateDomain, DuplicateAccount, AddressInUse, DomainInUse)
_NOT_FOUND: Final = (NoSuchAccount, NoSuchAlias)


class BadRequest(Exception):
    """Input the API refuses before it reaches the directory; ``message`` is shown as is."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def admin_routes(ctx: WebContext) -> list[BaseRoute]:
    """The routes of docs/web-api.md "Admin", every one behind `_guarded`."""
    api = _AdminAPI(ctx)
    table: list[tuple[str, str, Handler]] = [
        ("/api/admin/domains", "GET", api.list_domains),
        ("/api/admin/domains", "POST", api.add_domain),
        ("/api/admin/domains/{name}", "DELETE", api.delete_domain),
        ("/api/admin/accounts", "GET", api.list_accounts),
        ("/api/admin/accounts", "POST", api.add_account),
        ("/api/admin/accounts/{address}", "GET", api.get_account),
        ("/api/admin/accounts/{address}", "PATCH", api.change_account),
        ("/api/admin/accounts/{address}", "DELETE", api.delete_account),
        ("/api/admin/aliases", "GET", api.list_aliases),
        ("/api/admin/aliases", "POST", api.add_alias),
        ("/api/admin/aliases/{source}", "DELETE", api.delete_alias),
        ("/api/admin/queue", "GET", api.list_queue),
        ("/api/admin/queue/{queue_id}", "GET", api.show_queued),
        ("/api/admin/queue/{queue_id}/retry", "POST", api.retry_queued),
        ("/api/admin/queue/{queue_id}", "DELETE", api.delete_queued),
        ("/api/admin/dns/{domain}", "GET", api.dns_records),
    ]
    return [Route(path, _guarded(handler), methods=[method]) for path, method, handler in table]


def _guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Authorise (an admin session), run, and turn refusals into JSON errors."""

    async def endpoint(request: Request) -> Response:
        session = await require_admin(request)  # HTTPException: 401 no session, 403 not admin
        try:
            return await handler(request, session.account)
        except BadRequest as e:
            return _error(e.status, e.message)
        except UnknownMessage as e:
            return _error(404, str(e))
        except DirectoryError as e:
            status = 404 if isinstance(e, _NOT_FOUND) else 409 if isinstance(e, _CONFLICT) else 400
            return _error(status, e.message)

    endpoint.__name__ = handler.__name__
    return endpoint


class _AdminAPI:
    """The route bodies; each gets the request and the acting admin's address."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.directory = ctx.directory

    # --- domains ------------------------------------------------------------------------

    async def list_domains(self, request: Request, admin: str) -> Response:
        def job(db: DirectoryDB) -> list[dict[str, Any]]:
            return [_domain_json(d, *db.domain_usage(d.name)) for d in db.list_domains()]

        return JSONResponse(await self.directory.run(job))

    async def add_domain(self, request: Request, admin: str) -> Response:
        body = await read_json(request)
        name = _string(body, "name")
        domain = await self.directory.run(lambda db: db.add_domain(name))
        log.info("web.admin.domain_added", domain=domain.name, by=admin)
        return JSONResponse(_domain_json(domain, 0, 0), status_code=201)

    async def delete_domain(self, request: Request, admin: str) -> Response:
        name = request.path_params["name"]
        try:
            domain = await self.directory.run(lambda db: _delete_domain(db, name))
        except UnknownDomain as e:
            raise BadRequest(e.message, 404) from None  # the domain named in the URL
        log.info("web.admin.domain_deleted", domain=domain, by=admin)
        return JSONResponse({"deleted": domain})

    # --- accounts -----------------------------------------------------------------------

    async def list_accounts(self, request: Request, admin: str) -> Response:
        domain = request.query_params.get("domain")
        accounts = await self.directory.run(lambda db: db.list_accounts(domain))
        return JSONResponse([_account_json(a) for a in accounts])

    async def get_account(self, request: Request, admin: str) -> Response:
        address = request.path_params["address"]
        account = await self.directory.run(lambda db: db.get_account(address))
        return JSONResponse(_account_json(account))

    async def add_account(self, request: Request, admin: str) -> Response:
        body = await read_json(request)
        address = _string(body, "address")
        password = _string(body, "password")
        quota = _quota(body) if "quota" in body else None
        is_admin = _bool(body, "admin") if "admin" in body else False
        # Hashing (≈50 ms, in the pool) comes first; an empty password is refused before it.
        account = await self.directory.add_account(
            address, password, quota_bytes=quota, admin=is_admin
        )
        await self.ctx.store.ensure_account(account.address)  # as `posthorn user add`
        log.info("web.admin.account_added", account=account.address, admin=is_admin, by=admin)
        return JSONResponse(_account_json(account), status_code=201)

    async def change_account(self, request: Request, admin: str) -> Response:
        """Any of enabled / password / quota / admin; all checked before anything changes."""
        body = await read_json(request)
        unknown = sorted(set(body) - {"enabled", "password", "quota", "admin"})
        if unknown:
            raise BadRequest(f"unknown field {unknown[0]!r}")
        enabled = _bool(body, "enabled") if "enabled" in body else None
        password = _string(body, "password") if "password" in body else None
        quota_given = "quota" in body
        quota = _quota(body) if quota_given else None
        is_admin = _bool(body, "admin") if "admin" in body else None
        address = request.path_params["address"]
        key = (await self.directory.run(lambda db: db.get_account(address))).address
        if key == admin and (enabled is False or is_admin is False):
            raise BadRequest(
                "you cannot disable your own account or take away your own admin flag here"
                " (another admin can, or `posthorn user` in a shell)"
            )
        if password is not None:
            await self.directory.set_password(key, password)
            if key != admin:
                _sessions(request).end_account(key)  # a reset often answers a compromise

        def job(db: DirectoryDB) -> Account:
            if enabled is not None:
                db.set_enabled(key, enabled)
            if quota_given:
                db.set_quota(key, quota)
            if is_admin is not None:
                db.set_admin(key, is_admin)
            return db.get_account(key)

        account = await self.directory.run(job)
        changed = [name for name in ("enabled", "password", "quota", "admin") if name in body]
        log.info("web.admin.account_changed", account=key, fields=",".join(changed), by=admin)
        return JSONResponse(_account_json(account))

    async def delete_account(self, request: Request, admin: str) -> Response:
        """The account and all its mail, as `posthorn user del`."""
        address = request.path_params["address"]
        key = (await self.directory.run(lambda db: db.get_account(address))).address
        if key == admin:
            raise BadRequest("you cannot delete your own account here")
        await self.directory.run(lambda db: db.delete_account(key))
        _sessions(request).end_account(key)
        await self.ctx.store.delete_account(key)
        log.info("web.admin.account_deleted", account=key, by=admin)
        return JSONResponse({"deleted": key})

    # --- aliases ------------------------------------------------------------------------

    async def list_aliases(self, request: Request, admin: str) -> Response:
        domain = request.query_params.get("domain")
        aliases = await self.directory.run(lambda db: db.list_aliases(domain))
        return JSONResponse([_alias_json(a) for a in aliases])

    async def add_alias(self, request: Request, admin: str) -> Response:
        """Adds targets to the alias (creating it); the answer has all its targets."""
        body = await read_json(request)
        source = _string(body, "source")
        targets = body.get("targets")
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise BadRequest("targets must be a list of addresses")
        alias = await self.directory.run(lambda db: db.add_alias(source, targets))
        log.info("web.admin.alias_added", alias=alias.source, by=admin)
        return JSONResponse(_alias_json(alias), status_code=201)

    async def delete_alias(self, request: Request, admin: str) -> Response:
        source = request.path_params["source"]
        alias = await self.directory.run(lambda db: _delete_alias(db, source))
        log.info("web.admin.alias_deleted", alias=alias, by=admin)
        return JSONResponse({"deleted": alias})

    # --- queue --------------------------------------------------------------------------

    async def list_queue(self, request: Request, admin: str) -> Response:
        messages = await self.ctx.spool.db.list_all()
        return JSONResponse([_queue_summary(m) for m in messages])

    async def show_queued(self, request: Request, admin: str) -> Response:
        """The record with every recipient row and the attempt log (``queue show --json``)."""
        queue_id = request.path_params["queue_id"]
        message = await self.ctx.spool.db.load(queue_id)
        if message is None:
            raise UnknownMessage(queue_id)
        attempts = await self.ctx.spool.db.attempt_log(queue_id)
        record = _queue_summary(message) | {"attempts": [attempt_json(a) for a in attempts]}
        return JSONResponse(record)

    async def retry_queued(self, request: Request, admin: str) -> Response:
        """Make the waiting recipients due now (a held message stays held, as in the CLI)."""
        queue_id = request.path_params["queue_id"]
        done = await self.ctx.spool.db.retry(queue_id, time.time())
        self.ctx.kick()
        log.info("web.admin.queue_retry", queue_id=queue_id, recipients=done.recipients, by=admin)
        return JSONResponse(
            {"queue_id": queue_id, "recipients": done.recipients, "held": done.held > 0}
        )

    async def delete_queued(self, request: Request, admin: str) -> Response:
        """Out of the queue without delivery or DSN; the file goes after the commit."""
        queue_id = request.path_params["queue_id"]
        name = await self.ctx.spool.db.delete(queue_id)
        try:
            await self.ctx.spool.remove_file(name)
        except OSError:
            # The message is out of the queue either way; the next start sweeps the file.
            log.exception("web.admin.spool_file_left", queue_id=queue_id, file=name)
        log.info("web.admin.queue_delete", queue_id=queue_id, by=admin)
        return JSONResponse({"deleted": queue_id})

    # --- DNS ----------------------------------------------------------------------------

    async def dns_records(self, request: Request, admin: str) -> Response:
        """What to publish for one of our domains (`posthorn.web.dns_records`)."""
        name = request.path_params["domain"]
        try:
            domain = await self.directory.run(lambda db: db.get_domain(name))
        except UnknownDomain as e:
            # The domain named in the URL is not ours: not found, with the directory's words.
            raise BadRequest(e.message, 404) from None
        config = self.ctx.config
        hosts = hint_addresses(listener.host for listener in config.listen.smtp)
        records = records_for(domain.name, config.server.hostname, hosts)
        return JSONResponse([r.as_json() for r in records])


# --- directory jobs that need two steps in one transaction ------------------------------


def _delete_domain(db: DirectoryDB, name: str) -> str:
    domain = db.get_domain(name).name  # UnknownDomain names it; the key is what we report
    db.delete_domain(domain)
    return domain


def _delete_alias(db: DirectoryDB, source: str) -> str:
    alias = db.get_alias(source)
    db.delete_alias(alias.source)
    return alias.source


def _sessions(request: Request) -> SessionStore:
    """The app's sessions (`posthorn.web.app` keeps them in ``app.state``)."""
    sessions: SessionStore = request.app.state.sessions
    return sessions


# --- JSON in ------------------------------------------------------------------------------


def _string(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def _bool(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value


def _quota(body: Mapping[str, Any]) -> int | None:
    """Bytes (a number), null for unlimited, or the CLI's spelling: "500M", "unlimited"."""
    value = body.get("quota")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadRequest('quota must be a number of bytes, a size like "500M", or null')
    try:
        # A number goes through the same parser, so its limits and messages are the CLI's.
        return parse_size(str(value))
    except DirectoryError as e:
        raise BadRequest(f"quota: {e.message}") from None  # the CLI says "--quota: ..."


# --- JSON out -----------------------------------------------------------------------------


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _domain_json(domain: Domain, accounts: int, aliases: int) -> dict[str, Any]:
    return {
        "name": domain.name,
        "unicode": domain.unicode,
        "created": _iso(domain.created.timestamp()),
        "accounts": accounts,
        "aliases": aliases,
    }


def _account_json(account: Account) -> dict[str, Any]:
    """Never the password hash."""
    return {
        "address": account.address,
        "domain": account.domain,
        "quota": account.quota_bytes,
        "quota_text": format_size(account.quota_bytes),
        "enabled": account.enabled,
        "admin": account.admin,
        "created": _iso(account.created.timestamp()),
    }


def _alias_json(alias: Alias) -> dict[str, Any]:
    return {"source": alias.source, "targets": list(alias.targets), "catch_all": alias.is_catch_all}


def _queue_summary(message: QueuedMessage) -> dict[str, Any]:
    """``queue list --json``'s record plus the latest error over all rows (None if none)."""
    error = last_error(message)
    return message_json(message) | {"last_error": None if error == "-" else error}


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
