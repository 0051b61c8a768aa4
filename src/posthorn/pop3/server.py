"""The asyncio shell around the POP3 `Session`: read, feed, write, time out. Nothing else.

Lines go through `LineReader` (bounded before buffering) to the session; pipelined commands
(RFC 2449 §6.6) are answered in order and their responses written together. The shell owns
what needs the socket: STLS's handshake, AUTH's continuation lines, the autologout timer
(RFC 1939 §3: at least 10 minutes; expiry closes without entering UPDATE, so nothing is
deleted) and the answer to a server shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time

from posthorn.log import bind, get_logger
from posthorn.net.tls import describe_tls
from posthorn.policy.limits import AuthThrottle, ConnectionLimiter
from posthorn.pop3 import protocol
from posthorn.pop3.protocol import MAX_COMMAND_LINE, LineReader, LineTooLong
from posthorn.pop3.session import (
    Accounts,
    Connection,
    Limits,
    MaildropLocks,
    Next,
    Outcome,
    Session,
    SizeCache,
)
from posthorn.sasl import MAX_RESPONSE_LINE
from posthorn.store.base import MailStore

log = get_logger("posthorn.pop3")

READ_SIZE = 64 * 1024
FLUSH_AT = 64 * 1024  # buffered response octets that trigger a write (RETR of a big message)
TLS_HANDSHAKE_TIMEOUT = 60.0

_SHUTDOWN = protocol.err("server shutting down", "SYS/TEMP")


class _Closed(Exception):
    """The client went away, or must be sent away."""


class POP3Server:
    """Serves one listener's connections (``pop3`` with STLS, or ``pop3s``)."""

    def __init__(
        self,
        *,
        accounts: Accounts,
        store: MailStore,
        limits: Limits,
        throttle: AuthThrottle,
        connections: ConnectionLimiter,
        locks: MaildropLocks,
        sizes: SizeCache,
        ssl_context: ssl.SSLContext | None,
        implicit_tls: bool,
        timeout: float = 600.0,
    ) -> None:
        self.accounts = accounts
        self.store = store
        self.limits = limits
        self.throttle = throttle
        self.connections = connections
        self.locks = locks
        self.sizes = sizes
        self.ssl_context = ssl_context
        self.implicit_tls = implicit_tls
        self.timeout = timeout
        self.closing = False
        self.waiting: set[_Dialogue] = set()  # sessions waiting for the client to speak

    def shutdown(self) -> None:
        """Server stopping: sessions waiting for a command are told at once and closed
        (without UPDATE: nothing is deleted); a RETR in progress finishes first."""
        self.closing = True
        for dialogue in list(self.waiting):
            if dialogue.pending_read is not None:
                dialogue.pending_read.cancel()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = str(writer.get_extra_info("peername")[0])
        if not self.connections.try_acquire(ip):
            log.warning("connection.refused", ip=ip, reason="too many connections")
            writer.write(protocol.err("too many connections", "SYS/TEMP"))
            with contextlib.suppress(OSError, ConnectionError):
                await writer.drain()
            return
        try:
            bind(service="pop3", ip=ip)
            conn = Connection(ip, ipaddress.ip_address(ip).is_loopback, describe_tls(writer))
            log.info("connection.open", tls=conn.tls or "no")
            await _Dialogue(self, conn, reader, writer).run()
        finally:
            self.connections.release(ip)
            with contextlib.suppress(Exception):
                writer.close()


class _Dialogue:
    def __init__(
        self,
        server: POP3Server,
        conn: Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.out: list[bytes] = []
        self.out_size = 0
        self.session = Session(
            conn,
            accounts=server.accounts,
            store=server.store,
            limits=server.limits,
            throttle=server.throttle,
            locks=server.locks,
            sizes=server.sizes,
            tls_available=server.ssl_context is not None and not server.implicit_tls,
            emit=self.emit,
        )
        self.lines = LineReader()
        self.pending_read: asyncio.Future[bytes] | None = None

    async def emit(self, data: bytes) -> None:
        self.out.append(data)
        self.out_size += len(data)
        if self.out_size >= FLUSH_AT:
            await self.flush()

    async def flush(self) -> None:
        if self.out:
            data, self.out, self.out_size = b"".join(self.out), [], 0
            try:
                self.writer.write(data)
                await self.writer.drain()  # back-pressure: a slow client slows RETR down
            except (OSError, ConnectionError):
                raise _Closed from None

    async def run(self) -> None:
        try:
            await self.emit(self.session.greeting())
            while await self._step():
                pass
            await self.flush()
        except _Closed:
            await self._final_flush()
        except asyncio.CancelledError:
            self.out = [_SHUTDOWN]
            await asyncio.shield(self._final_flush())
            raise
        finally:
            if self.pending_read is not None:
                self.pending_read.cancel()
            await self.session.close()  # releases the maildrop; deletes nothing

    async def _step(self) -> bool:
        """Answer one command line; False ends the connection."""
        outcome = await self._guarded(self.session.line(await self._line(MAX_COMMAND_LINE)))
        while True:
            if outcome.delay:
                await self.flush()
                await asyncio.sleep(outcome.delay)
            if outcome.next is Next.CLOSE:
                return False
            if outcome.next is Next.STLS:
                await self._stls()
            elif outcome.next is Next.SASL:
                line = await self._line(MAX_RESPONSE_LINE)
                outcome = await self._guarded(self.session.sasl_line(line))
                continue
            return True

    async def _guarded(self, step: object) -> Outcome:
        """A bug ends the connection with -ERR, logged, never a silent hang; nothing is
        deleted (no UPDATE)."""
        try:
            return await step  # type: ignore[misc,no-any-return]
        except (asyncio.CancelledError, _Closed):
            raise
        except Exception:
            log.exception("pop3.internal_error")
            self.out.append(protocol.err("internal error; please report", "SYS/TEMP"))
            return Outcome(Next.CLOSE)

    async def _line(self, limit: int) -> bytes | LineTooLong:
        # One deadline for the whole line: a client sending a byte a second must not keep
        # the session (and its maildrop lock) forever by restarting the timer each read.
        deadline = time.monotonic() + self.server.timeout
        while True:
            line = self.lines.next_line(limit)
            if line is not None:
                return line
            data = await self._read(max(0.0, deadline - time.monotonic()))
            if not data:
                raise _Closed
            self.lines.feed(data)

    async def _read(self, wait: float) -> bytes:
        """Next chunk from the socket (b"" at EOF); on timeout or shutdown, -ERR and close."""
        await self.flush()
        if self.pending_read is None:
            self.pending_read = asyncio.ensure_future(self.reader.read(READ_SIZE))
        self._check_closing()
        self.server.waiting.add(self)
        try:
            done, _ = await asyncio.wait({self.pending_read}, timeout=wait)
        finally:
            self.server.waiting.discard(self)
        self._check_closing()
        if not done:
            log.info("connection.autologout")
            self.out.append(protocol.err("autologout: idle too long"))
            raise _Closed
        task, self.pending_read = self.pending_read, None
        try:
            return task.result()
        except (OSError, ConnectionError):
            return b""

    def _check_closing(self) -> None:
        if self.server.closing:
            self.out.append(_SHUTDOWN)
            raise _Closed

    async def _stls(self) -> None:
        await self.flush()
        # RFC 2595 §4 / CVE-2011-0411: anything pipelined after STLS is discarded.
        self.lines.discard()
        ctx = self.server.ssl_context
        assert ctx is not None
        try:
            await asyncio.wait_for(self.writer.start_tls(ctx), TLS_HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, OSError, TimeoutError) as e:
            log.info("tls.failed", error=type(e).__name__)
            raise _Closed from None
        self.session.tls_started(describe_tls(self.writer) or "TLS")

    async def _final_flush(self) -> None:
        with contextlib.suppress(OSError, TimeoutError, ConnectionError, _Closed):
            await asyncio.wait_for(self.flush(), 2)
