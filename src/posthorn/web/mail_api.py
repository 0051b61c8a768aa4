"""The webmail JSON API: mailboxes, messages, sending, drafts and the change stream.

Owns the ``/api/mailboxes``, ``/api/send``, ``/api/drafts`` and ``/api/events`` routes of
docs/web-api.md. Every route acts for the session's account only: mailboxes are looked up by
name within that account, so another account's data cannot be named at all.

Invariants:
- Reading a message never changes it (no implicit ``\\Seen``; the client sets it).
- Sending goes the way SMTP submission goes (DESIGN.md "The data path"): the message is built
  (`posthorn.web.compose`), written to the spool and committed with an `Envelope` of the same
  shape as submission's (``auth`` = the account, the same `received_field`), and only after
  the commit is it copied to Sent. If that copy fails the message is still sent (``sent_uid``
  is then null): queued mail is never taken back.
- Trace field: ``with ESMTPA`` (``ESMTPSA`` over HTTPS), the RFC 3848 words for authenticated
  submission, with HELO ``webmail``; downstream filters that trust authenticated submission
  recognise it, and no new WITH keyword is invented.
- Errors are `HTTPException`s or store errors, turned into ``{"error"}`` by the app.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any, Final
from urllib.parse import quote

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from posthorn.imap.search import And, Candidate, Header, Key, Or, Text, header_text, run_search
from posthorn.log import get_logger
from posthorn.queue.envelope import Envelope, EnvelopeRecipient
from posthorn.smtp.trace import received_field
from posthorn.store.base import (
    ChangeKind,
    ChangesLost,
    FlagMode,
    Mailbox,
    MessageMeta,
    NoSuchMailbox,
    NoSuchMessage,
    StoreError,
    canonical_flag,
)
from posthorn.web.auth import WebSession, current_session, read_json
from posthorn.web.compose import (
    Attachment,
    Composed,
    ComposeError,
    Composition,
    build_message,
    safe_filename,
)
from posthorn.web.context import WebContext
from posthorn.web.reading import (
    attachments,
    body_texts,
    displayable,
    format_addresses,
    leaf_bytes,
    leaves,
    locate,
    served_type,
)
from posthorn.web.sanitize import sanitize_html

__all__ = ["KEEPALIVE", "MAX_ATTACHMENTS", "MAX_PER_PAGE", "mail_routes"]

log = get_logger(__name__)

MAX_PER_PAGE: Final = 200
MAX_ATTACHMENTS: Final = 50
MAX_MAILBOX_NAME: Final = 255
MAX_SEARCH: Final = 500
KEEPALIVE: Final = 15.0
"""Seconds between comment lines on an idle event stream (proxies close silent ones)."""
COMPOSE_FIELDS: Final = ("to", "cc", "bcc", "subject", "body", "in_reply_to", "references")
_KEYWORD: Final = re.compile(r"^[A-Za-z0-9$_.+-]{1,64}$")  # RFC 9051 atom, conservatively
_SYSTEM_FLAGS: Final = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})
_SEARCH_FIELDS: Final = ("all", "from", "to", "subject", "body")


def mail_routes(ctx: WebContext) -> list[BaseRoute]:
    """The routes, bound to ``ctx``. Specific paths come first: mailbox names may contain
    ``/``, so ``{name:path}`` would otherwise swallow ``.../messages/...``."""
    api = MailAPI(ctx)
    base = "/api/mailboxes/{name:path}"
    msg = base + "/messages/{uid:int}"
    return [
        Route("/api/mailboxes", api.list_mailboxes, methods=["GET"]),
        Route("/api/mailboxes", api.create_mailbox, methods=["POST"]),
        Route(msg + "/raw", api.raw, methods=["GET"]),
        Route(msg + "/parts/{part}", api.part, methods=["GET"]),
        Route(msg + "/flags", api.flags, methods=["POST"]),
        Route(msg + "/move", api.move, methods=["POST"]),
        Route(msg, api.read, methods=["GET"]),
        Route(msg, api.delete, methods=["DELETE"]),
        Route(base + "/messages", api.messages, methods=["GET"]),
        Route(base, api.rename_mailbox, methods=["PATCH"]),
        Route(base, api.delete_mailbox, methods=["DELETE"]),
        Route("/api/send", api.send, methods=["POST"]),
        Route("/api/drafts", api.save_draft, methods=["POST"]),
        Route("/api/events", api.events, methods=["GET"]),
    ]


class MailAPI:
    """The route handlers; one instance per app, holding only the context."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.store = ctx.store

    # --- mailboxes ---------------------------------------------------------------------------

    async def list_mailboxes(self, request: Request) -> Response:
        """Every mailbox with its message and unread counts, INBOX first."""
        account = current_session(request).account
        out = []
        for mb in await self.store.list_mailboxes(account):
            status = await self.store.status(account, mb.id)
            out.append(
                {
                    "name": mb.name,
                    "special_use": mb.special_use,
                    "total": status.messages,
                    "unread": status.unseen,
                }
            )
        return JSONResponse(out)

    async def create_mailbox(self, request: Request) -> Response:
        account = current_session(request).account
        name = _mailbox_name((await read_json(request)).get("name"))
        mb = await self.store.create_mailbox(account, name)
        return JSONResponse({"name": mb.name, "special_use": mb.special_use}, status_code=201)

    async def rename_mailbox(self, request: Request) -> Response:
        """Rename (children follow). INBOX is refused: renaming it would empty it (RFC 9051
        §6.3.6), which is never what a webmail user means."""
        account = current_session(request).account
        old = await self._mailbox(account, request)
        new = _mailbox_name((await read_json(request)).get("name"))
        if old.name == "INBOX":
            raise HTTPException(400, "INBOX cannot be renamed")
        await self.store.rename_mailbox(account, old.name, new)
        return JSONResponse({"name": new})

    async def delete_mailbox(self, request: Request) -> Response:
        account = current_session(request).account
        mb = await self._mailbox(account, request)
        if mb.name == "INBOX":
            raise HTTPException(400, "INBOX cannot be deleted")
        await self.store.delete_mailbox(account, mb.name)
        return JSONResponse({"deleted": mb.name})

    async def _mailbox(self, account: str, request: Request) -> Mailbox:
        name = request.path_params["name"]
        try:
            return await self.store.get_mailbox(account, name)
        except NoSuchMailbox:
            raise HTTPException(404, "no such mailbox") from None

    async def _special(self, account: str, use: str, default: str) -> Mailbox:
        """The account's mailbox with this RFC 6154 special use; made if it is missing."""
        for mb in await self.store.list_mailboxes(account):
            if mb.special_use == use:
                return mb
        try:
            return await self.store.get_mailbox(account, default)
        except NoSuchMailbox:
            return await self.store.create_mailbox(account, default, use)

    # --- message lists ----------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        """One page of the mailbox, by internal date, optionally filtered by a search."""
        account = current_session(request).account
        mb = await self._mailbox(account, request)
        params = request.query_params
        page = _int_param(params.get("page"), 1, 1, 1_000_000, "page")
        per_page = _int_param(params.get("per_page"), 50, 1, MAX_PER_PAGE, "per_page")
        order = params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise HTTPException(400, "order must be asc or desc")
        field = params.get("in", "all")
        if field not in _SEARCH_FIELDS:
            raise HTTPException(400, "in must be one of " + ", ".join(_SEARCH_FIELDS))
        metas = await self.store.fetch(account, mb.id, with_info=True)
        if params.get("unread") in ("1", "true"):
            metas = [m for m in metas if "\\Seen" not in m.flags]
        query = params.get("q", "").strip()
        if query:
            if len(query) > MAX_SEARCH:
                raise HTTPException(400, "search text too long")
            metas = await self._search(account, mb, metas, query, field)
        metas.sort(key=lambda m: (m.internal_date, m.uid), reverse=order == "desc")
        start = (page - 1) * per_page
        return JSONResponse(
            {
                "total": len(metas),
                "page": page,
                "per_page": per_page,
                "messages": [_summary(m) for m in metas[start : start + per_page]],
            }
        )

    async def _search(
        self, account: str, mb: Mailbox, metas: list[MessageMeta], text: str, field: str
    ) -> list[MessageMeta]:
        """IMAP SEARCH semantics (`posthorn.imap.search`): case-insensitive substring of the
        decoded header field or body text; "all" is FROM or TO or CC or SUBJECT or BODY."""
        needle = text.casefold()
        keys: dict[str, Key] = {
            "from": Header("from", needle),
            "to": Header("to", needle),
            "subject": Header("subject", needle),
            "body": Text(needle),
        }
        if field == "all":
            key: Key = Or(
                Or(keys["from"], Or(keys["to"], Header("cc", needle))),
                Or(keys["subject"], keys["body"]),
            )
        else:
            key = And((keys[field],))
        candidates = [Candidate(i + 1, m) for i, m in enumerate(metas)]
        matches = await run_search(key, candidates, _SearchContext(self.ctx, account, mb.id, metas))
        return [c.meta for c in matches]

    # --- one message ------------------------------------------------------------------------

    async def _meta(self, account: str, mb: Mailbox, uid: int) -> MessageMeta:
        found = await self.store.fetch(account, mb.id, [(uid, uid)], with_info=True)
        if not found:
            raise HTTPException(404, "no such message")
        return found[0]

    async def _message(self, request: Request) -> tuple[str, Mailbox, MessageMeta, bytes]:
        account = current_session(request).account
        mb = await self._mailbox(account, request)
        uid = request.path_params["uid"]
        meta = await self._meta(account, mb, uid)
        try:
            data = await self.store.read(account, mb.id, uid)
        except NoSuchMessage:
            raise HTTPException(404, "no such message") from None
        return account, mb, meta, data

    async def read(self, request: Request) -> Response:
        """Headers, text, sanitised HTML and the attachment list. Does not set \\Seen."""
        _, mb, meta, data = await self._message(request)
        info, base = locate(data, meta)
        env = info.envelope
        text, html = body_texts(data, base, info)
        images = request.query_params.get("images") in ("1", "true")
        blocked = False
        if html is not None:
            prefix = f"/api/mailboxes/{quote(mb.name, safe='')}/messages/{meta.uid}/parts/"
            cids = {
                leaf.part.id.strip().strip("<>"): prefix + leaf.number
                for leaf in leaves(info.body)
                if leaf.part.id
            }
            clean = sanitize_html(html, allow_remote_images=images, cid_url=cids.get)
            html, blocked = clean.html, clean.remote_images_blocked
        return JSONResponse(
            {
                "uid": meta.uid,
                "flags": sorted(meta.flags),
                "headers": {
                    "from": format_addresses(env.from_),
                    "to": format_addresses(env.to),
                    "cc": format_addresses(env.cc),
                    "bcc": format_addresses(env.bcc),
                    "subject": _decoded(env.subject),
                    "date": _decoded(env.date),
                    "message_id": env.message_id,
                    "in_reply_to": env.in_reply_to,
                    "references": " ".join(info.references),
                },
                "text": text,
                "html": html,
                "remote_images_blocked": blocked,
                "attachments": [
                    {
                        "part": leaf.number,
                        "filename": safe_filename(leaf.filename or f"part-{leaf.number}"),
                        "content_type": leaf.content_type,
                        "size": len(leaf_bytes(data, base, leaf)),
                    }
                    for leaf in attachments(info)
                ],
            }
        )

    async def raw(self, request: Request) -> Response:
        _, _, meta, data = await self._message(request)
        return Response(
            data,
            media_type="message/rfc822",
            headers={"Content-Disposition": f'attachment; filename="message-{meta.uid}.eml"'},
        )

    async def part(self, request: Request) -> Response:
        """One leaf part, decoded, always as a download with a safe name (RFC 6266)."""
        _, _, meta, data = await self._message(request)
        info, base = locate(data, meta)
        number = request.path_params["part"]
        leaf = next((lf for lf in leaves(info.body) if lf.number == number), None)
        if leaf is None:
            raise HTTPException(404, "no such part")
        name = safe_filename(leaf.filename or f"part-{leaf.number}")
        return Response(
            leaf_bytes(data, base, leaf),
            media_type=served_type(leaf),
            headers={
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def flags(self, request: Request) -> Response:
        """Add and remove flags (system flags and keywords; never \\Recent)."""
        account = current_session(request).account
        mb = await self._mailbox(account, request)
        uid = request.path_params["uid"]
        body = await read_json(request)
        add, remove = _flag_list(body.get("add", [])), _flag_list(body.get("remove", []))
        await self._meta(account, mb, uid)
        for flags, mode in ((add, FlagMode.ADD), (remove, FlagMode.REMOVE)):
            if flags:
                await self.store.store_flags(account, mb.id, [(uid, uid)], flags, mode)
        meta = await self._meta(account, mb, uid)
        return JSONResponse({"uid": uid, "flags": sorted(meta.flags)})

    async def move(self, request: Request) -> Response:
        account = current_session(request).account
        mb = await self._mailbox(account, request)
        uid = request.path_params["uid"]
        target = (await read_json(request)).get("to")
        if not isinstance(target, str) or not target:
            raise HTTPException(400, "to (a mailbox name) is required")
        try:
            dest = await self.store.get_mailbox(account, target)
        except NoSuchMailbox:
            raise HTTPException(404, "no such target mailbox") from None
        if dest.id == mb.id:
            raise HTTPException(400, "the message is already in that mailbox")
        new_uid = await self._move(account, mb, uid, dest)
        return JSONResponse({"mailbox": dest.name, "uid": new_uid})

    async def _move(self, account: str, mb: Mailbox, uid: int, dest: Mailbox) -> int:
        await self._meta(account, mb, uid)
        result = await self.store.move(account, mb.id, [(uid, uid)], dest.id)
        if not result.mapping:
            raise HTTPException(404, "no such message")
        return result.mapping[0][1]

    async def delete(self, request: Request) -> Response:
        """To Trash; from Trash itself, expunged for good."""
        account = current_session(request).account
        mb = await self._mailbox(account, request)
        uid = request.path_params["uid"]
        trash = await self._special(account, "\\Trash", "Trash")
        if mb.id == trash.id:
            await self._meta(account, mb, uid)
            await self.store.expunge(account, mb.id, [(uid, uid)], only_deleted=False)
            return JSONResponse({"expunged": True})
        new_uid = await self._move(account, mb, uid, trash)
        return JSONResponse({"expunged": False, "mailbox": trash.name, "uid": new_uid})

    # --- composing ---------------------------------------------------------------------------

    async def _composition(self, request: Request) -> tuple[Composition, int | None]:
        limit = self.ctx.config.smtp.max_message_size
        async with request.form(
            max_files=MAX_ATTACHMENTS, max_fields=50, max_part_size=limit
        ) as form:
            texts = {name: _text_field(form, name) for name in COMPOSE_FIELDS}
            draft_text = _text_field(form, "draft_uid").strip()
            draft_uid = None
            if draft_text:
                if not draft_text.isdigit():
                    raise HTTPException(400, "draft_uid must be a number")
                draft_uid = int(draft_text)
            files: list[Attachment] = []
            for item in form.getlist("attachments"):
                if not isinstance(item, UploadFile):
                    if item:
                        raise HTTPException(400, "attachments must be files")
                    continue
                data = await item.read()
                if not item.filename and not data:
                    continue  # an empty file input
                files.append(
                    Attachment(
                        item.filename or "attachment",
                        item.content_type or "application/octet-stream",
                        data,
                    )
                )
        return Composition(**texts, attachments=tuple(files)), draft_uid

    def _build(self, session: WebSession, form: Composition, *, draft: bool) -> Composed:
        try:
            composed = build_message(
                form, sender=session.account, hostname=self.ctx.hostname, draft=draft
            )
        except ComposeError as e:
            raise HTTPException(400, str(e)) from None
        if len(composed.data) > self.ctx.config.smtp.max_message_size:
            raise HTTPException(413, "message too large")
        return composed

    async def send(self, request: Request) -> Response:
        """Queue the message through the spool as submission does, then file it in Sent."""
        session = current_session(request)
        form, draft_uid = await self._composition(request)
        composed = self._build(session, form, draft=False)
        if len(composed.recipients) > self.ctx.config.smtp.max_recipients:
            raise HTTPException(400, "too many recipients")
        for rcpt in composed.recipients:
            resolution = await self.ctx.directory.resolve(rcpt)
            # Like RCPT TO on submission: a local address that delivers nowhere is refused now
            # rather than bounced later; remote ones are relayed for the authenticated account.
            if resolution.is_local_domain and not resolution.deliverable:
                raise HTTPException(400, f"no such recipient: {rcpt}")
        queue_id = await self._queue(request, session, composed)
        sent_uid: int | None = None
        try:
            sent = await self._special(session.account, "\\Sent", "Sent")
            result = await self.store.append(
                session.account, sent.id, composed.data, flags=frozenset({"\\Seen"})
            )
            sent_uid = result.uid
        except StoreError:
            log.exception("web.sent_copy_failed", account=session.account, queue=queue_id)
        if draft_uid is not None:
            await self._drop_draft(session.account, draft_uid)
        return JSONResponse({"queue_id": queue_id, "sent_uid": sent_uid})

    async def _queue(self, request: Request, session: WebSession, composed: Composed) -> str:
        ip = request.client.host if request.client is not None else ""
        tls = request.url.scheme == "https"
        protocol = "ESMTPSA" if tls else "ESMTPA"  # RFC 3848; see the module docstring
        writer = await self.ctx.spool.new_message()
        try:
            await writer.write(composed.data)
            queue_id = await writer.commit(
                Envelope(
                    mail_from=session.account,
                    recipients=tuple(EnvelopeRecipient(str(a)) for a in composed.recipients),
                    received=received_field(
                        helo="webmail",
                        client_ip=ip,
                        hostname=self.ctx.hostname,
                        protocol=protocol,
                        queue_id=writer.queue_id,
                    ),
                    body="8BITMIME" if composed.eight_bit else "7BIT",
                    smtputf8=composed.smtputf8,
                    auth=session.account,
                    client_ip=ip,
                    helo="webmail",
                    protocol=protocol,
                )
            )
        except BaseException:
            await writer.abort()
            raise
        log.info(
            "message.queued",
            queue=queue_id,
            size=len(composed.data),
            recipients=len(composed.recipients),
            via="web",
        )
        return queue_id

    async def save_draft(self, request: Request) -> Response:
        """Append to Drafts with \\Draft \\Seen; a ``draft_uid`` it replaces is removed."""
        session = current_session(request)
        form, draft_uid = await self._composition(request)
        composed = self._build(session, form, draft=True)
        drafts = await self._special(session.account, "\\Drafts", "Drafts")
        result = await self.store.append(
            session.account, drafts.id, composed.data, flags=frozenset({"\\Draft", "\\Seen"})
        )
        if draft_uid is not None and draft_uid != result.uid:
            await self._drop_draft(session.account, draft_uid)
        return JSONResponse({"uid": result.uid})

    async def _drop_draft(self, account: str, uid: int) -> None:
        """Remove a replaced draft; only messages flagged \\Draft, so a wrong number cannot
        delete anything else."""
        drafts = await self._special(account, "\\Drafts", "Drafts")
        found = await self.store.fetch(account, drafts.id, [(uid, uid)])
        if found and "\\Draft" in found[0].flags:
            await self.store.expunge(account, drafts.id, [(uid, uid)], only_deleted=False)

    # --- change stream -----------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """Server-sent events from the store's change feed (RFC-less: the WHATWG HTML
        "server-sent events" format). The subscription closes when the client goes away."""
        session = current_session(request)
        sub = self.store.subscribe(session.account)
        return StreamingResponse(
            self._event_stream(session.account, sub),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _event_stream(self, account: str, sub: Any) -> AsyncIterator[str]:
        names: dict[int, str] = {}
        stopping = asyncio.ensure_future(self.ctx.stopping.wait())
        getter: asyncio.Future[Any] | None = None
        lost_in_a_row = 0
        try:
            yield "retry: 3000\n: connected\n\n"
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(sub.get())
                done, _ = await asyncio.wait(
                    {getter, stopping}, timeout=KEEPALIVE, return_when=asyncio.FIRST_COMPLETED
                )
                if stopping in done:
                    return
                if getter not in done:
                    yield ": keepalive\n\n"
                    continue
                task, getter = getter, None
                try:
                    change = task.result()
                except ChangesLost:
                    lost_in_a_row += 1
                    if lost_in_a_row > 1:
                        return  # closed (store shut down), not an overflow
                    yield _event("resync", {"mailbox": None})
                    continue
                lost_in_a_row = 0
                if change.kind is ChangeKind.MAILBOXES or change.mailbox_id not in names:
                    names = {mb.id: mb.name for mb in await self.store.list_mailboxes(account)}
                yield _event(
                    "change", {"mailbox": names.get(change.mailbox_id), "kind": change.kind.value}
                )
        finally:
            for fut in (getter, stopping):
                if fut is not None:
                    fut.cancel()
            sub.close()


class _SearchContext:
    """What `run_search` needs, for one mailbox of one account (like the IMAP session's)."""

    def __init__(self, ctx: WebContext, account: str, mailbox_id: int, metas: list[MessageMeta]):
        self.store, self.account, self.mailbox_id = ctx.store, account, mailbox_id
        self.largest_seq = len(metas)
        self.largest_uid = max((m.uid for m in metas), default=0)
        self.saved: list[int] = []

    async def headers(self, uids: Any) -> dict[int, bytes]:
        return await self.store.read_headers(self.account, self.mailbox_id, list(uids))

    async def message(self, uid: int) -> bytes:
        return await self.store.read(self.account, self.mailbox_id, uid)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _summary(meta: MessageMeta) -> dict[str, Any]:
    info = meta.info
    env = info.envelope if info is not None else None
    return {
        "uid": meta.uid,
        "from": format_addresses(env.from_) if env else "",
        "to": format_addresses(env.to) if env else "",
        "subject": _decoded(env.subject if env else None),
        "date": meta.internal_date.isoformat(),
        "flags": sorted(meta.flags),
        "size": meta.size,
        "seen": "\\Seen" in meta.flags,
        "flagged": "\\Flagged" in meta.flags,
        "attachments": len(attachments(info)) if info is not None else 0,
    }


def _decoded(value: str | None) -> str:
    if not value:
        return ""
    return displayable(header_text(value.encode("utf-8", "surrogateescape")).strip())


def _mailbox_name(value: object) -> str:
    """A name a user may create: RFC 9051 §6.3.4 minus wildcards, control characters, empty
    hierarchy levels."""
    if not isinstance(value, str) or not value.strip():
        raise HTTPException(400, "name is required")
    name = value.strip()
    if len(name) > MAX_MAILBOX_NAME:
        raise HTTPException(400, "name too long")
    if any(c in name for c in "*%") or not name.isprintable():
        raise HTTPException(400, "name contains characters that are not allowed")
    if name.startswith("/") or name.endswith("/") or "//" in name:
        raise HTTPException(400, "name has an empty hierarchy level")
    if name.upper() == "INBOX":
        raise HTTPException(409, "INBOX exists")
    return name


def _int_param(text: str | None, default: int, low: int, high: int, name: str) -> int:
    if text is None or text == "":
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise HTTPException(400, f"{name} must be a number from {low} to {high}")
    return int(text)


def _flag_list(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise HTTPException(400, "add and remove must be lists of flags")
    out = set()
    for flag in value:
        canonical = canonical_flag(flag)
        if canonical not in _SYSTEM_FLAGS and not _KEYWORD.match(canonical):
            raise HTTPException(400, f"not a flag that can be set: {flag!r}")
        out.add(canonical)
    return frozenset(out)


def _text_field(form: FormData, name: str) -> str:
    value = form.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HTTPException(400, f"{name} must be text")
    return value
