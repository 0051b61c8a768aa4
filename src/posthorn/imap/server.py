"""The asyncio shell around the IMAP `Session`: read, feed, write, time out. Nothing else.

Bytes go through `CommandReader` (which bounds lines and literals before buffering them) and
complete commands go to the session. The shell owns what needs the socket: sending the
literal continuation, STARTTLS, AUTHENTICATE's response lines, IDLE's wait for DONE or a
change, and the autologout timer (RFC 9051 §5.4: at least 30 minutes once logged in).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Any

from posthorn.imap.compress import CompressionBomb, Deflate
from posthorn.imap.session import Accounts, Connection, Limits, Next, Outcome, Session, State
from posthorn.imap.values import Command
from posthorn.imap.wire import CommandReader, Continue, LineTooLong, Reject
from posthorn.log import bind, get_logger
from posthorn.net.tls import describe_tls
from posthorn.policy.limits import AuthThrottle, ConnectionLimiter
from posthorn.sasl import MAX_RESPONSE_LINE
from posthorn.store.base import MailStore

log = get_logger("posthorn.imap")

READ_SIZE = 64 * 1024
FLUSH_AT = 64 * 1024  # buffered response octets that trigger a write while answering


class _Closed(Exception):
    """The client went away, or must be sent away."""


@dataclass(frozen=True)
class Timeouts:
    autologout: float = 1800.0  # RFC 9051 §5.4
    login: float = 60.0  # before authentication: no reason to wait long


class IMAPServer:
    """Serves one listener's connections (``imap`` with STARTTLS, or ``imaps``)."""

    def __init__(
        self,
        *,
        hostname: str,
        accounts: Accounts,
        store: MailStore,
        limits: Limits,
        throttle: AuthThrottle,
        connections: ConnectionLimiter,
        ssl_context: ssl.SSLContext | None,
        implicit_tls: bool,
        timeouts: Timeouts = Timeouts(),
    ) -> None:
        self.hostname = hostname
        self.accounts = accounts
        self.store = store
        self.limits = limits
        self.throttle = throttle
        self.connections = connections
        self.ssl_context = ssl_context
        self.implicit_tls = implicit_tls
        self.timeouts = timeouts
        self.closing = False
        self.waiting: set[_Dialogue] = set()  # sessions waiting for the client to speak

    def shutdown(self) -> None:
        """Server stopping: sessions waiting for a command get BYE now, not after the grace
        period (RFC 9051 §7.1.5); sessions in the middle of a command finish it first."""
        self.closing = True
        for dialogue in list(self.waiting):
            if dialogue.pending_read is not None:
                dialogue.pending_read.cancel()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = str(writer.get_extra_info("peername")[0])
        if not self.connections.try_acquire(ip):
            log.warning("connection.refused", ip=ip, reason="too many connections")
            writer.write(b"* BYE [UNAVAILABLE] too many connections\r\n")
            with contextlib.suppress(OSError, ConnectionError):
                await writer.drain()
            return
        try:
            bind(service="imap", ip=ip)
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
        server: IMAPServer,
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
            hostname=server.hostname,
            accounts=server.accounts,
            store=server.store,
            limits=server.limits,
            throttle=server.throttle,
            tls_available=server.ssl_context is not None and not server.implicit_tls,
            emit=self.emit,
        )
        self.commands = CommandReader(literal_limit=self.session.literal_limit)
        self.pending_read: asyncio.Future[bytes] | None = None
        self._deadline: float | None = None
        self.deflate: Deflate | None = None

    # --- output ----------------------------------------------------------------------------

    async def emit(self, data: bytes) -> None:
        self.out.append(data)
        self.out_size += len(data)
        if self.out_size >= FLUSH_AT:
            await self.flush()

    async def flush(self) -> None:
        if self.out:
            data, self.out, self.out_size = b"".join(self.out), [], 0
            if self.deflate is not None:
                data = self.deflate.compress(data)
            try:
                self.writer.write(data)
                await self.writer.drain()
            except (OSError, ConnectionError):
                raise _Closed from None

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.emit(self.session.greeting())
            while await self._step():
                pass
            await self.flush()
        except _Closed:
            await self._final_flush()
        except asyncio.CancelledError:
            self.out = [b"* BYE [UNAVAILABLE] server shutting down\r\n"]
            await asyncio.shield(self._final_flush())
            raise
        finally:
            if self.pending_read is not None:
                self.pending_read.cancel()
            await self.session.close()

    async def _step(self) -> bool:
        """Handle one event from the command reader; False ends the connection."""
        event = self.commands.next_event()
        if event is None:
            await self._fill()
            return True
        self._deadline = None  # the next command gets a fresh timer
        if isinstance(event, Continue):
            await self.emit(b"+ OK\r\n")
            await self.flush()
            return True
        if isinstance(event, Reject):
            code = f"[{event.code}] " if event.code else ""
            tag = event.tag or "*"
            await self.emit(f"{tag} {event.status} {code}{event.text}\r\n".encode())
            if event.close:
                await self.emit(b"* BYE closing connection\r\n")
                return False
            return True
        return await self._command(event)

    async def _command(self, command: Command) -> bool:
        outcome = await self._guarded(command)
        while True:
            if outcome.delay:
                await asyncio.sleep(outcome.delay)
            if outcome.next is Next.CLOSE:
                return False
            if outcome.next is Next.STARTTLS:
                await self._starttls()
                return True
            if outcome.next is Next.COMPRESS:
                await self.flush()  # the tagged OK goes out uncompressed (RFC 4978 §3)
                self.deflate = Deflate()
                return True
            if outcome.next is Next.SASL:
                line = await self._line(MAX_RESPONSE_LINE)
                if isinstance(line, LineTooLong):
                    line = b"*"  # RFC 9051 §6.2.2: treat as a cancelled exchange
                outcome = await self._guarded_call(self.session.sasl_line(line))
                continue
            if outcome.next is Next.IDLE:
                outcome = await self._idle()
                continue
            return True

    async def _guarded(self, command: Command) -> Outcome:
        return await self._guarded_call(self.session.command(command))

    async def _guarded_call(self, step: object) -> Outcome:
        """A bug ends the connection with BYE [SERVERBUG], logged, never a silent hang."""
        try:
            return await step  # type: ignore[misc,no-any-return]
        except (asyncio.CancelledError, _Closed):
            raise
        except Exception:
            log.exception("imap.internal_error")
            self.out.append(b"* BYE [SERVERBUG] internal error; please report\r\n")
            return Outcome(Next.CLOSE)

    def _timeout(self) -> float:
        if self.session.state is State.NOT_AUTHENTICATED:
            return self.server.timeouts.login
        return self.server.timeouts.autologout

    async def _read(self, wait: float) -> bytes:
        """Next chunk from the socket (b"" at EOF); on timeout, BYE and close."""
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
            self.out.append(b"* BYE [UNAVAILABLE] autologout: idle too long\r\n")
            await self._final_flush()
            raise _Closed
        return self._take_read()

    def _check_closing(self) -> None:
        if self.server.closing:
            self.out.append(b"* BYE [UNAVAILABLE] server shutting down\r\n")
            raise _Closed

    def _take_read(self) -> bytes:
        task, self.pending_read = self.pending_read, None
        assert task is not None
        try:
            data = task.result()
        except (OSError, ConnectionError):
            return b""
        if self.deflate is not None and data:
            try:
                data = self.deflate.decompress(data)
            except (CompressionBomb, zlib.error):
                log.warning("imap.bad_compressed_input")
                raise _Closed from None
        return data

    async def _fill(self) -> None:
        # One deadline per command, not per read: a client dribbling a byte a second must
        # not hold the connection open forever.
        if self._deadline is None:
            self._deadline = time.monotonic() + self._timeout()
        data = await self._read(max(0.0, self._deadline - time.monotonic()))
        if not data:
            raise _Closed
        self.commands.feed(data)

    async def _line(self, limit: int) -> bytes | LineTooLong:
        while True:
            line = self.commands.next_line(limit)
            if line is not None:
                self._deadline = None
                return line
            await self._fill()

    async def _idle(self) -> Outcome:
        """RFC 2177: report changes as they happen until the client says DONE."""
        await self.flush()
        while True:
            line = self.commands.next_line(64)
            if line is not None:
                if isinstance(line, LineTooLong):
                    line = b""
                return await self._guarded_call(self.session.idle_done(line))
            if self.pending_read is None:
                self.pending_read = asyncio.ensure_future(self.reader.read(READ_SIZE))
            self._check_closing()
            change: asyncio.Future[None] = asyncio.ensure_future(self.session.idle_wait())
            self.server.waiting.add(self)
            try:
                waits: set[asyncio.Future[Any]] = {self.pending_read, change}
                done, _ = await asyncio.wait(
                    waits,
                    timeout=self.server.timeouts.autologout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                self.server.waiting.discard(self)
                if not change.done():
                    change.cancel()
            self._check_closing()
            if not done:
                self.out.append(b"* BYE [UNAVAILABLE] autologout: idle too long\r\n")
                await self._final_flush()
                raise _Closed
            if change in done and not change.cancelled():
                outcome = await self._guarded_call(self._idle_updates())
                if outcome.next is Next.CLOSE:
                    return outcome
                await self.flush()
            if self.pending_read in done:
                data = self._take_read()
                if not data:
                    raise _Closed
                self.commands.feed(data)

    async def _idle_updates(self) -> Outcome:
        await self.session.idle_updates()
        return Outcome()

    async def _starttls(self) -> None:
        await self.flush()
        # RFC 9051 §6.2.1 / CVE-2011-0411: anything pipelined after STARTTLS is discarded.
        self.commands.discard()
        ctx = self.server.ssl_context
        assert ctx is not None
        try:
            await asyncio.wait_for(self.writer.start_tls(ctx), self.server.timeouts.login)
        except (ssl.SSLError, OSError, TimeoutError) as e:
            log.info("tls.failed", error=type(e).__name__)
            raise _Closed from None
        self.session.tls_started(describe_tls(self.writer) or "TLS")

    async def _final_flush(self) -> None:
        with contextlib.suppress(OSError, TimeoutError, ConnectionError, _Closed):
            await asyncio.wait_for(self.flush(), 2)
