"""The outbound SMTP client: one connection to a next-hop MTA, one or more transactions on it.

Owns: the client side of RFC 5321 (greeting, EHLO with HELO fallback, MAIL/RCPT/DATA, RSET,
QUIT, the timeouts of §4.5.3.2), STARTTLS (RFC 3207), AUTH PLAIN/LOGIN (RFC 4954), PIPELINING
(RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), DSN parameters (RFC
3461) and CHUNKING/BINARYMIME (RFC 3030). Routing, retries and bounces are the delivery agent's;
this module only reports what the next hop said.

Why our own and not aiosmtplib: it does not pipeline, and its per-recipient options and results
are awkward; both matter for a relay (DESIGN.md "Libraries").

Layout (STYLE.md point 1): the wire format is the pure `posthorn.smtp.replies` (replies parsed,
commands built, the message dot-stuffed); `Client` only reads, writes, decides and times out.

Invariants:

- Errors are temporary unless known to be permanent (DESIGN.md "Delivery semantics"): a
  timeout, a dropped connection, a garbled reply, a TLS or AUTH problem are all temporary;
  permanent are only a 5xx from the server and the extension checks before MAIL (SIZE,
  SMTPUTF8, 8BITMIME, BINARYMIME) that would fail the same way on every retry.
- A recipient is reported accepted only after the final reply to the data (250 after
  ``CRLF.CRLF`` or BDAT LAST). Any failure before that raises `SMTPClientError`, so the caller
  can never take an interrupted transaction for a delivery.
- After a failed transaction the connection is either back in a clean state (RSET answered)
  or closed; `Client.usable` says which.
- Credentials never appear in logs or exception texts, and are never sent without TLS except
  to a loopback peer when the caller explicitly allows it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import functools
import ipaddress
import os
import ssl
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, NoReturn

from posthorn.log import get_logger
from posthorn.queue.envelope import Notify
from posthorn.smtp.codes import Reply
from posthorn.smtp.replies import (
    DotStuffer,
    Extensions,
    ReplyError,
    ReplyReader,
    mail_command,
    parse_ehlo,
    rcpt_command,
    size_limit,
)

__all__ = [
    "Client",
    "OutRecipient",
    "RecipientResult",
    "SMTPClientError",
    "SendResult",
    "TLSMode",
    "Timeouts",
]

log = get_logger("posthorn.smtp.client")

READ_SIZE: Final = 64 * 1024
CHUNK_SIZE: Final = 256 * 1024  # message octets read from the spool file per write
QUIT_TIMEOUT: Final = 10.0  # nothing depends on the answer to QUIT
CLOSE_TIMEOUT: Final = 2.0


class TLSMode(enum.Enum):
    """STARTTLS policy. OPPORTUNISTIC: when offered, unauthenticated (RFC 7435), falling back
    to plaintext if the handshake fails; REQUIRED: never send in the clear."""

    NONE = "none"
    OPPORTUNISTIC = "opportunistic"
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait at each stage; the defaults are RFC 5321 §4.5.3.2's minimums.

    ``ehlo`` also bounds STARTTLS, the TLS handshake, AUTH and RSET; ``data_block`` bounds
    each write of message data.
    """

    connect: float = 30
    greeting: float = 300  # §4.5.3.2.1
    ehlo: float = 300
    mail: float = 300  # §4.5.3.2.2
    rcpt: float = 300  # §4.5.3.2.3
    data_init: float = 120  # §4.5.3.2.4
    data_block: float = 180  # §4.5.3.2.5
    data_end: float = 600  # §4.5.3.2.6


@dataclass(frozen=True, slots=True)
class OutRecipient:
    """One recipient to send to, with its DSN parameters as the queue keeps them (RFC 3461:
    ``orcpt`` is ``addr-type;address``, decoded)."""

    address: str
    notify: frozenset[Notify] | None = None
    orcpt: str | None = None


def _diagnostic(code: int | None, status: str | None, text: str) -> str:
    """RFC 3464 §2.3.6 Diagnostic-Code: ``smtp; 550 5.1.1 text`` for a reply the server sent;
    ``X-Posthorn; text`` when we decided without one (no reply code may be invented)."""
    text = " ".join(text.split())
    if code is None:
        return f"X-Posthorn; {text}"
    head = f"{code} {status}" if status else str(code)
    return f"smtp; {head} {text}".rstrip()


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """The final answer for one recipient: its RCPT refusal, or the reply after the data.

    ``status`` is the server's enhanced status code (RFC 3463), None when it sent none; `text`
    is the reply text on one line.
    """

    address: str
    code: int
    status: str | None
    text: str

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300

    @property
    def temporary(self) -> bool:
        """Not accepted and not a 5xx: retry later (anything odd counts as temporary)."""
        return not self.accepted and not 500 <= self.code < 600

    @property
    def dsn_status(self) -> str:
        """The RFC 3464 Status: the server's enhanced code, or the reply class with ``.0.0``."""
        return self.status or f"{self.code // 100 if self.code // 100 in (2, 4, 5) else 4}.0.0"

    def diagnostic(self) -> str:
        return _diagnostic(self.code, self.status, self.text)

    @classmethod
    def from_reply(cls, address: str, reply: Reply) -> RecipientResult:
        return cls(address, reply.code, reply.enhanced, _one_line(reply.text))


@dataclass(frozen=True, slots=True)
class SendResult:
    """``recipients`` in the order given. ``dsn_relayed``: the server offered DSN (RFC 3461
    §4), so NOTIFY/ORCPT went on with the message and success notices are its business now."""

    recipients: list[RecipientResult]
    dsn_relayed: bool


class SMTPClientError(Exception):
    """The whole session or transaction failed: every recipient not yet answered shares this.

    ``stage`` is where: connect, greeting, ehlo, starttls, auth, size, smtputf8, 8bitmime,
    binarymime, mail, rcpt or data. ``code``/``status`` are the server's reply when there was
    one; ``status`` is always set for failures we diagnose ourselves.
    """

    def __init__(
        self,
        stage: str,
        text: str,
        *,
        temporary: bool = True,
        code: int | None = None,
        status: str | None = None,
    ) -> None:
        super().__init__(f"{stage}: {_diagnostic(code, status, text)}")
        self.stage = stage
        self.text = text
        self.temporary = temporary
        self.code = code
        self.status = status

    @classmethod
    def from_reply(
        cls, stage: str, reply: Reply, *, temporary: bool | None = None
    ) -> SMTPClientError:
        """From a reply the server sent: permanent only for a 5xx (unless ``temporary``)."""
        if temporary is None:
            temporary = not 500 <= reply.code < 600
        return cls(
            stage,
            _one_line(reply.text),
            temporary=temporary,
            code=reply.code,
            status=reply.enhanced,
        )

    @property
    def dsn_status(self) -> str:
        """The RFC 3464 Status: ``status``, else by class (``4.0.0``/``5.0.0``)."""
        return self.status or ("4.0.0" if self.temporary else "5.0.0")

    def diagnostic(self) -> str:
        return _diagnostic(self.code, self.status, self.text)


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")).strip()


# --- the client ------------------------------------------------------------------------------


class _HandshakeFailed(Exception):
    """The TLS handshake after STARTTLS failed: opportunistic TLS reconnects in plaintext."""

    def __init__(self, error: SMTPClientError) -> None:
        super().__init__(str(error))
        self.error = error


@functools.cache
def _default_context(verify: bool) -> ssl.SSLContext:
    """A client context, made once (loading the CA store is slow). Without ``verify``:
    opportunistic TLS, which protects against passive listeners only (RFC 7435 §1.3)."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # DESIGN.md "Security defaults"
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Client:
    """One SMTP connection; make it with `connect`, then `send` (and `reset`) any number of
    times, then `quit`. Not for concurrent use: one transaction at a time."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        server_name: str,
        timeouts: Timeouts,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = ReplyReader()
        self._ready: deque[Reply] = deque()
        self._closed = False
        self._busy = False
        self.timeouts = timeouts
        self.server_name = server_name
        peer = writer.get_extra_info("peername")
        self.peer_ip: str = str(peer[0]) if peer else ""
        self.remote = f"{server_name} [{self.peer_ip}]"  # for Remote-MTA and the logs
        self.extensions: Extensions = {}
        self.tls: str | None = _describe_tls(writer)

    # --- opening -----------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        address: str,
        port: int,
        *,
        hostname_for_ehlo: str,
        server_name: str,
        tls: TLSMode,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
        allow_plain_auth: bool = False,
        timeouts: Timeouts = Timeouts(),
        local_address: str | None = None,
    ) -> Client:
        """Connect, read the greeting, EHLO, STARTTLS, EHLO again, AUTH.

        ``tls_context`` None gives a default one: unverified for OPPORTUNISTIC (RFC 7435),
        verified against ``server_name`` for REQUIRED and for ``implicit_tls`` with REQUIRED.
        Raises `SMTPClientError`; on a failed handshake after STARTTLS, OPPORTUNISTIC tries
        once more on a new connection without TLS (what Postfix does for "may").
        """
        if not hostname_for_ehlo or not hostname_for_ehlo.isascii() or " " in hostname_for_ehlo:
            raise ValueError(f"bad EHLO name {hostname_for_ehlo!r}")
        if implicit_tls and tls is TLSMode.NONE:
            raise ValueError("implicit_tls needs a TLS mode other than NONE")
        if tls_context is None and tls is not TLSMode.NONE:
            tls_context = _default_context(verify=tls is TLSMode.REQUIRED)
        args = _OpenArgs(
            address,
            port,
            hostname_for_ehlo,
            server_name,
            tls,
            tls_context,
            implicit_tls,
            auth,
            allow_plain_auth,
            timeouts,
            local_address,
        )
        try:
            return await cls._open(args, starttls=tls is not TLSMode.NONE)
        except _HandshakeFailed as failed:
            if tls is not TLSMode.OPPORTUNISTIC:
                raise failed.error from None
            log.info("smtp_client.tls_fallback", remote=server_name, error=failed.error.text)
        try:
            return await cls._open(args, starttls=False)
        except _HandshakeFailed as failed:  # pragma: no cover - no STARTTLS, no handshake
            raise failed.error from None

    @classmethod
    async def _open(cls, a: _OpenArgs, *, starttls: bool) -> Client:
        where = f"{a.server_name} [{a.address}]:{a.port}"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    a.address,
                    a.port,
                    ssl=a.tls_context if a.implicit_tls else None,
                    server_hostname=a.server_name if a.implicit_tls else None,
                    local_addr=(a.local_address, 0) if a.local_address else None,
                    limit=2 * READ_SIZE,
                ),
                a.timeouts.connect,
            )
        except TimeoutError:
            raise SMTPClientError(
                "connect", f"connection to {where} timed out", status="4.4.1"
            ) from None
        except ssl.SSLError as e:  # implicit TLS (port 465): RFC 3463 X.7.5 cryptographic
            raise SMTPClientError(
                "connect", f"TLS handshake with {where} failed: {_ssl_reason(e)}", status="4.7.5"
            ) from None
        except OSError as e:  # RFC 3463 X.4.1 "no answer from host"
            reason = e.strerror or type(e).__name__
            raise SMTPClientError(
                "connect", f"cannot connect to {where}: {reason}", status="4.4.1"
            ) from None
        client = cls(reader, writer, server_name=a.server_name, timeouts=a.timeouts)
        try:
            await client._start(a, starttls=starttls)
        except BaseException:
            client._close()
            raise
        log.debug("smtp_client.ready", remote=client.remote, tls=client.tls or "no")
        return client

    async def _start(self, a: _OpenArgs, *, starttls: bool) -> None:
        greeting = await self._read("greeting", self.timeouts.greeting)
        if greeting.code != 220:  # RFC 5321 §3.1: 554 means "no service here"; say QUIT
            await self._quit_after_refusal()
            raise SMTPClientError.from_reply("greeting", greeting)
        await self._ehlo(a.hostname_for_ehlo)
        if starttls and not a.implicit_tls:
            if "STARTTLS" in self.extensions:
                assert a.tls_context is not None
                await self._starttls(a, required=a.tls is TLSMode.REQUIRED)
            elif a.tls is TLSMode.REQUIRED:
                # RFC 3463 X.7.4 "security features not supported". Temporary: the remote's
                # configuration can be fixed before the message expires (Postfix does the same).
                raise SMTPClientError(
                    "starttls",
                    f"TLS is required, but {self.remote} does not offer STARTTLS",
                    status="4.7.4",
                )
        if a.auth is not None:
            await self._auth(a.auth, a.allow_plain_auth)

    async def _ehlo(self, name: str) -> None:
        """RFC 5321 §4.1.1.1; a 5xx to EHLO means an old server: HELO, no extensions (§3.2)."""
        reply = await self._command(f"EHLO {name}\r\n".encode("ascii"), "ehlo", self.timeouts.ehlo)
        if reply.code == 250:
            self.extensions = parse_ehlo(reply)
            return
        if 500 <= reply.code < 600:
            reply = await self._command(
                f"HELO {name}\r\n".encode("ascii"), "ehlo", self.timeouts.ehlo
            )
            if reply.code == 250:
                self.extensions = {}
                return
        raise SMTPClientError.from_reply("ehlo", reply)

    async def _starttls(self, a: _OpenArgs, *, required: bool) -> None:
        """RFC 3207 §4: STARTTLS, the handshake, and EHLO again (§4.2: forget all we knew)."""
        reply = await self._command(b"STARTTLS\r\n", "starttls", self.timeouts.ehlo)
        if reply.code != 220:
            if required:
                raise SMTPClientError.from_reply("starttls", reply, temporary=True)
            return  # RFC 3207 §4.1: go on without TLS
        if self._ready or self._parser.buffered:
            # RFC 3207 §4.2 (CVE-2011-0411's client side): bytes sent before the handshake
            # could be replies an attacker injected in the clear.
            self._fail("starttls", "server sent data after its STARTTLS reply", "4.5.0")
        assert a.tls_context is not None
        try:
            await asyncio.wait_for(
                self._writer.start_tls(a.tls_context, server_hostname=a.server_name),
                self.timeouts.ehlo,
            )
        except (ssl.SSLError, OSError, TimeoutError) as e:
            self._close()
            reason = _ssl_reason(e) if isinstance(e, ssl.SSLError) else type(e).__name__
            raise _HandshakeFailed(
                SMTPClientError(
                    "starttls", f"TLS handshake with {self.remote} failed: {reason}", status="4.7.5"
                )
            ) from None
        # Plaintext that slipped into the reader's buffer between the 220 and the handshake
        # would otherwise be read as if it came over TLS (RFC 3207 §4.2). StreamReader has no
        # public way to ask, hence the private attribute.
        if getattr(self._reader, "_buffer", b""):
            self._fail("starttls", "server sent data after its STARTTLS reply", "4.5.0")
        self.tls = _describe_tls(self._writer)
        self.extensions = {}
        await self._ehlo(a.hostname_for_ehlo)

    async def _auth(self, credentials: tuple[str, str], allow_plain: bool) -> None:
        """RFC 4954: AUTH PLAIN (RFC 4616) with an initial response, else AUTH LOGIN.

        Every AUTH failure is temporary: wrong credentials are our configuration, fixable
        before the message expires, never the message's fault.
        """
        loopback = _is_loopback(self.peer_ip)
        if self.tls is None and not (allow_plain and loopback):
            # RFC 4954 §4 / RFC 8314: a password goes only over an encrypted connection.
            # RFC 3463 X.7.11 "encryption required for requested authentication mechanism".
            raise SMTPClientError(
                "auth",
                f"refusing to send credentials to {self.remote} without TLS",
                status="4.7.11",
            )
        if "AUTH" not in self.extensions:
            raise SMTPClientError("auth", f"{self.remote} does not offer AUTH", status="4.7.0")
        mechanisms = self.extensions["AUTH"].upper().split()
        user, password = (s.encode("utf-8") for s in credentials)
        t = self.timeouts.ehlo
        if "PLAIN" in mechanisms:
            initial = _b64(b"\0" + user + b"\0" + password)
            reply = await self._command(b"AUTH PLAIN " + initial + b"\r\n", "auth", t)
        elif "LOGIN" in mechanisms:
            reply = await self._command(b"AUTH LOGIN\r\n", "auth", t)
            for secret in (user, password):
                if reply.code != 334:
                    break
                reply = await self._command(_b64(secret) + b"\r\n", "auth", t)
        else:
            raise SMTPClientError(
                "auth",
                f"{self.remote} offers no mechanism we support (PLAIN, LOGIN)",
                status="4.7.0",
            )
        if reply.code == 334:  # the server wants more than the mechanism has: cancel (§4)
            reply = await self._command(b"*\r\n", "auth", t)
        if reply.code != 235:
            raise SMTPClientError.from_reply("auth", reply, temporary=True)

    # --- state -------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Connected, between transactions, and the server has not closed its side."""
        return (
            not self._closed
            and not self._busy
            and not self._writer.is_closing()
            and not self._reader.at_eof()
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.quit()

    # --- sending -----------------------------------------------------------------------------

    async def send(
        self,
        mail_from: str,
        recipients: Sequence[OutRecipient],
        message: Path | bytes,
        *,
        size: int,
        body: str = "7BIT",
        smtputf8: bool = False,
        ret: str | None = None,
        envid: str | None = None,
        prefix: bytes = b"",
    ) -> SendResult:
        """One mail transaction (RFC 5321 §3.3). Per-recipient results, or `SMTPClientError`.

        ``message`` is the whole message (a spool file path or bytes) with CRLF line ends;
        ``size`` is what SIZE= declares. ``prefix`` goes before the message: the trace field
        this MTA adds (``Envelope.received``, RFC 5321 §4.4), which the spool file lacks.

        The transaction is refused before MAIL when the server lacks something the message
        needs: permanent, since the same server will lack it on the next try. No downgrading
        conversion is done (RFC 6152 §3 allows returning the message instead: converting
        8-bit MIME safely means re-encoding every part).
        """
        if not recipients:
            raise ValueError("no recipients")
        if not self.usable:
            raise SMTPClientError(
                "mail", f"connection to {self.remote} is not usable", status="4.4.2"
            )
        utf8 = (
            smtputf8 or not mail_from.isascii() or any(not r.address.isascii() for r in recipients)
        )
        self._check_needs(size, body, utf8)
        mail = mail_command(
            mail_from,
            extensions=self.extensions,
            size=size,
            body=body,
            smtputf8=utf8,
            ret=ret,
            envid=envid,
        )
        dsn = "DSN" in self.extensions
        rcpts = [
            rcpt_command(r.address, r.notify, r.orcpt, dsn=dsn, smtputf8=utf8) for r in recipients
        ]
        try:
            # Opened before MAIL: a missing file fails before any transaction starts.
            content = _Content(message, prefix)
        except OSError as e:
            raise SMTPClientError("data", _unreadable(e), status="4.3.0") from None
        self._busy = True
        try:
            results = await self._transaction(mail, rcpts, recipients, content, body)
        except SMTPClientError:
            raise
        except OSError as e:  # reading the spool file failed mid-DATA: only closing is safe
            self._close()
            raise SMTPClientError("data", _unreadable(e), status="4.3.0") from None
        except BaseException:  # cancelled mid-transaction: the state is unknown
            self._close()
            raise
        finally:
            self._busy = False
            content.close()
        return SendResult(results, dsn)

    def _check_needs(self, size: int, body: str, utf8: bool) -> None:
        """Refuse before MAIL what this server cannot take (all permanent)."""
        ext = self.extensions
        limit = size_limit(ext)
        if limit is not None and size > limit:  # RFC 1870 §6.1
            raise SMTPClientError(
                "size",
                f"message size {size} exceeds the limit {limit} of {self.remote}",
                temporary=False,
                status="5.3.4",
            )
        if utf8 and "SMTPUTF8" not in ext:  # RFC 6531 §3.4: MUST NOT send it; bounce instead
            raise SMTPClientError(
                "smtputf8",
                f"{self.remote} does not support SMTPUTF8",
                temporary=False,
                status="5.6.7",
            )
        if body == "8BITMIME" and "8BITMIME" not in ext:  # RFC 6152 §3; X.6.3 (RFC 3463)
            raise SMTPClientError(
                "8bitmime",
                f"{self.remote} does not support 8BITMIME",
                temporary=False,
                status="5.6.3",
            )
        if body == "BINARYMIME" and not ("BINARYMIME" in ext and "CHUNKING" in ext):
            raise SMTPClientError(  # RFC 3030 §3: BINARYMIME needs CHUNKING too
                "binarymime",
                f"{self.remote} does not support BINARYMIME",
                temporary=False,
                status="5.6.3",
            )

    async def _transaction(
        self,
        mail: bytes,
        rcpts: list[bytes],
        recipients: Sequence[OutRecipient],
        content: _Content,
        body: str,
    ) -> list[RecipientResult]:
        t = self.timeouts
        bdat = body == "BINARYMIME"
        data_reply: Reply | None = None
        if "PIPELINING" in self.extensions:
            # RFC 2920 §3.1: MAIL, every RCPT and DATA (the last command of the group) in one
            # write; then every reply, in order, each checked.
            await self._write(
                b"".join([mail, *rcpts, b"" if bdat else b"DATA\r\n"]), "mail", t.mail
            )
            mail_reply = await self._read("mail", t.mail)
            rcpt_replies = [await self._read("rcpt", t.rcpt) for _ in rcpts]
            if not bdat:
                data_reply = await self._read("data", t.data_init)
        else:
            mail_reply = await self._command(mail, "mail", t.mail)
            rcpt_replies = []
            if mail_reply.code == 250:
                rcpt_replies = [await self._command(r, "rcpt", t.rcpt) for r in rcpts]
        if mail_reply.code != 250:
            await self._abandon(data_reply)
            raise SMTPClientError.from_reply("mail", mail_reply)
        results = [
            RecipientResult.from_reply(r.address, reply)
            for r, reply in zip(recipients, rcpt_replies, strict=True)
        ]
        if not any(r.accepted for r in results):
            await self._abandon(data_reply)
            return results
        if bdat:
            final = await self._bdat(content)
        else:
            if data_reply is None:
                data_reply = await self._command(b"DATA\r\n", "data", t.data_init)
            if data_reply.code != 354:  # RFC 5321 §4.1.1.4: refused for every recipient
                await self._abandon(None)
                final = data_reply
            else:
                final = await self._data(content)
        return [RecipientResult.from_reply(r.address, final) if r.accepted else r for r in results]

    async def _data(self, content: _Content) -> Reply:
        """The message, dot-stuffed, then ``CRLF.CRLF`` and the final reply (RFC 5321 §4.1.1.4)."""
        stuffer = DotStuffer()
        for chunk in content.chunks():
            out = stuffer.feed(chunk)
            if out:
                await self._write(out, "data", self.timeouts.data_block)
        await self._write(stuffer.finish(), "data", self.timeouts.data_block)
        return await self._read("data", self.timeouts.data_end)

    async def _bdat(self, content: _Content) -> Reply:
        """RFC 3030 §2: the whole message as one ``BDAT n LAST`` chunk, octets unchanged."""
        await self._write(
            f"BDAT {content.size} LAST\r\n".encode("ascii"), "data", self.timeouts.data_block
        )
        for chunk in content.chunks():
            await self._write(chunk, "data", self.timeouts.data_block)
        return await self._read("data", self.timeouts.data_end)

    async def _abandon(self, data_reply: Reply | None) -> None:
        """End a transaction that will carry no message, leaving the session clean.

        RFC 2920 §3.1: a pipelined DATA may be accepted even though no RCPT was; then an
        empty message (a lone ".") must be sent before RSET.
        """
        with contextlib.suppress(SMTPClientError):  # the outcome is known; only `usable` isn't
            if data_reply is not None and data_reply.code == 354:
                await self._write(b".\r\n", "data", self.timeouts.data_block)
                await self._read("data", self.timeouts.data_end)
            await self._rset()

    async def _rset(self) -> None:
        """RSET (RFC 5321 §4.1.1.5); anything but 250 leaves the state unknown: close."""
        reply = await self._command(b"RSET\r\n", "rset", self.timeouts.mail)
        if reply.code != 250:
            self._close()

    async def reset(self) -> None:
        """RSET between two messages on a reused connection. Never raises: when it fails the
        connection is closed and `usable` is False."""
        if not self.usable:
            return
        with contextlib.suppress(SMTPClientError):
            await self._rset()

    async def quit(self) -> None:
        """QUIT (RFC 5321 §4.1.1.10) and close. Never raises."""
        if self._closed:
            return
        try:
            if not self._busy and not self._writer.is_closing():
                self._writer.write(b"QUIT\r\n")
                async with asyncio.timeout(QUIT_TIMEOUT):
                    await self._writer.drain()
                    while not self._ready:
                        data = await self._reader.read(READ_SIZE)
                        if not data:
                            break
                        self._ready.extend(self._parser.feed(data))
        except (OSError, TimeoutError, ReplyError):
            pass
        finally:
            self._close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._writer.wait_closed()

    async def _quit_after_refusal(self) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            self._writer.write(b"QUIT\r\n")
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._writer.drain()

    # --- I/O -----------------------------------------------------------------------------------

    async def _command(self, line: bytes, stage: str, wait: float) -> Reply:
        await self._write(line, stage, wait)
        return await self._read(stage, wait)

    async def _write(self, data: bytes, stage: str, wait: float) -> None:
        if self._closed:
            self._fail(stage, f"connection to {self.remote} already closed", "4.4.2")
        try:
            self._writer.write(data)
            async with asyncio.timeout(wait):
                await self._writer.drain()
        except TimeoutError:
            self._fail(stage, f"timeout after {wait:g}s sending to {self.remote}", "4.4.2")
        except OSError as e:  # ConnectionError and ssl.SSLError are OSErrors
            self._fail(stage, f"connection to {self.remote} lost: {type(e).__name__}", "4.4.2")

    async def _read(self, stage: str, wait: float) -> Reply:
        """The next reply. A 421 means the server is closing (RFC 5321 §3.8): it ends the
        session, whatever the stage."""
        try:
            async with asyncio.timeout(wait):
                while not self._ready:
                    data = await self._reader.read(READ_SIZE)
                    if not data:
                        self._fail(stage, f"connection closed by {self.remote}", "4.4.2")
                    self._ready.extend(self._parser.feed(data))
        except TimeoutError:
            self._fail(stage, f"timeout after {wait:g}s waiting for {self.remote}", "4.4.2")
        except ReplyError as e:  # RFC 3463 X.5.0 "other or undefined protocol status"
            self._fail(stage, f"bad reply from {self.remote}: {e}", "4.5.0")
        except OSError as e:
            self._fail(stage, f"connection to {self.remote} lost: {type(e).__name__}", "4.4.2")
        reply = self._ready.popleft()
        if reply.code == 421:
            self._close()
            raise SMTPClientError.from_reply(stage, reply)
        return reply

    def _fail(self, stage: str, text: str, status: str) -> NoReturn:
        """The connection is no good any more: close it and fail the stage, temporarily."""
        self._close()
        raise SMTPClientError(stage, text, status=status)

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.close()


@dataclass(frozen=True, slots=True)
class _OpenArgs:
    address: str
    port: int
    hostname_for_ehlo: str
    server_name: str
    tls: TLSMode
    tls_context: ssl.SSLContext | None
    implicit_tls: bool
    auth: tuple[str, str] | None
    allow_plain_auth: bool
    timeouts: Timeouts
    local_address: str | None


class _Content:
    """The message to send: ``prefix`` then an open spool file or bytes, read in
    `CHUNK_SIZE` pieces."""

    def __init__(self, message: Path | bytes, prefix: bytes = b"") -> None:
        self._prefix = prefix
        self._file = None
        self._bytes = b""
        if isinstance(message, bytes):
            self._bytes = message
            size = len(message)
        else:
            self._file = open(message, "rb")  # noqa: SIM115 (closed in close())
            size = os.fstat(self._file.fileno()).st_size
        self.size = len(prefix) + size

    def chunks(self) -> Iterator[bytes]:
        if self._prefix:
            yield self._prefix
        # Plain reads: the spool file is local and usually in the page cache.
        if self._file is None:
            view = memoryview(self._bytes)
            for start in range(0, len(view), CHUNK_SIZE):
                yield bytes(view[start : start + CHUNK_SIZE])
            return
        self._file.seek(0)
        while chunk := self._file.read(CHUNK_SIZE):
            yield chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _unreadable(e: OSError) -> str:
    return f"cannot read the message: {e.strerror or type(e).__name__}"


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _ssl_reason(e: ssl.SSLError) -> str:
    return str(e.reason or e.strerror or type(e).__name__)


def _describe_tls(writer: asyncio.StreamWriter) -> str | None:
    obj = writer.get_extra_info("ssl_object")
    if obj is None:
        return None
    cipher = obj.cipher()
    return f"{obj.version()} {cipher[0] if cipher else ''}".strip()
