"""The asyncio shell around `Session`: read, feed, write, time out. Nothing else.

Reading is buffered by hand so that pipelined commands (RFC 2920) are answered in one write
when the client is waiting, DATA is scanned in large chunks rather than line by line, and the
bytes after the end-of-data marker go back to the command reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time

from posthorn.log import get_logger
from posthorn.net.tls import describe_tls
from posthorn.policy.limits import AuthThrottle, ConnectionLimiter
from posthorn.smtp import codes
from posthorn.smtp.codes import Reply
from posthorn.smtp.session import (
    Accounts,
    Connection,
    Limits,
    Next,
    Outcome,
    Profile,
    Session,
    Spool,
)

log = get_logger("posthorn.smtp")

MAX_COMMAND_LINE = 1000  # octets with CRLF; RFC 5321 §4.5.3.1.4 asks for at least 512
MAX_SASL_LINE = 12288  # RFC 4954 §4
READ_SIZE = 256 * 1024


class _Closed(Exception):
    """The client went away, or must be sent away (timeout, too many errors)."""


class _LineTooLong(Exception):
    pass


class SMTPServer:
    """Serves one listener's connections with one `Profile`."""

    def __init__(
        self,
        profile: Profile,
        *,
        hostname: str,
        accounts: Accounts,
        spool: Spool,
        limits: Limits,
        throttle: AuthThrottle,
        connections: ConnectionLimiter,
        ssl_context: ssl.SSLContext | None,
        command_timeout: float,
        data_timeout: float,
        postmaster_domain: str | None = None,
    ) -> None:
        self.profile = profile
        self.hostname = hostname
        self.accounts = accounts
        self.spool = spool
        self.limits = limits
        self.throttle = throttle
        self.connections = connections
        self.ssl_context = ssl_context
        self.command_timeout = command_timeout
        self.data_timeout = data_timeout
        self.postmaster_domain = postmaster_domain

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = str(writer.get_extra_info("peername")[0])
        if not self.connections.try_acquire(ip):
            log.warning("connection.refused", ip=ip, reason="too many connections")
            writer.write(codes.TOO_MANY_CONNECTIONS.to_bytes())
            await writer.drain()
            return
        try:
            conn = Connection(ip, ipaddress.ip_address(ip).is_loopback, describe_tls(writer))
            session = Session(
                self.profile,
                conn,
                hostname=self.hostname,
                accounts=self.accounts,
                spool=self.spool,
                limits=self.limits,
                throttle=self.throttle,
                tls_available=self.ssl_context is not None,
                postmaster_domain=self.postmaster_domain,
            )
            log.info("connection.open", ip=ip, tls=conn.tls or "no")
            await _Dialogue(self, session, reader, writer).run()
        finally:
            self.connections.release(ip)


class _Dialogue:
    """One connection's read/feed/write loop."""

    def __init__(
        self,
        server: SMTPServer,
        session: Session,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.session = session
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.out: list[bytes] = []

    async def run(self) -> None:
        try:
            self.send([self.session.greeting()])
            while True:
                outcome = await self._next_command()
                if outcome is None or not await self._act(outcome):
                    break
            await self.flush()
        except _Closed:
            pass
        except asyncio.CancelledError:
            # Shutdown took too long for this session: say so before going (RFC 5321 §3.8).
            self.out = [codes.SHUTTING_DOWN.to_bytes()]
            await asyncio.shield(self._final_flush())
            raise
        finally:
            await self.session.abort()

    async def _next_command(self) -> Outcome | None:
        limit = MAX_SASL_LINE if self.session.in_sasl else MAX_COMMAND_LINE
        try:
            line = await self.read_line(limit)
        except _LineTooLong:
            return await self._guarded(self._line_too_long())
        if line is None:
            return None
        return await self._guarded(self.session.command(line))

    async def _line_too_long(self) -> Outcome:
        return Outcome([codes.LINE_TOO_LONG])

    async def _guarded(self, step: object) -> Outcome:
        """Run a session step; a bug becomes 451 4.3.0 and a logged traceback."""
        try:
            return await step  # type: ignore[misc,no-any-return]
        except (asyncio.CancelledError, _Closed):
            raise
        except Exception:
            log.exception("smtp.internal_error")
            await self.session.abort()
            return Outcome([codes.LOCAL_ERROR])

    async def _act(self, outcome: Outcome) -> bool:
        """Carry out an outcome; False ends the connection."""
        if outcome.delay:
            await self.flush()
            await asyncio.sleep(outcome.delay)
        if outcome.next is Next.BDAT:
            return await self._bdat(outcome)
        self.send(outcome.replies)
        if outcome.next is Next.CLOSE:
            return False
        if outcome.next is Next.STARTTLS:
            await self._starttls()
        elif outcome.next is Next.DATA:
            await self._data()
        return True

    # --- I/O ---------------------------------------------------------------------------------

    def send(self, replies: list[Reply]) -> None:
        self.out.extend(r.to_bytes() for r in replies)

    async def flush(self) -> None:
        if self.out:
            data, self.out = b"".join(self.out), []
            self.writer.write(data)
            await self.writer.drain()

    async def _final_flush(self) -> None:
        with contextlib.suppress(OSError, TimeoutError, ConnectionError):
            await asyncio.wait_for(self.flush(), 2)

    async def fill(self, wait: float) -> None:
        """Read more into the buffer; a reply waiting is sent first (RFC 2920 §3.1)."""
        await self.flush()
        try:
            data = await asyncio.wait_for(self.reader.read(READ_SIZE), wait)
        except TimeoutError:
            log.info("connection.timeout")
            self.out = [codes.TIMEOUT.to_bytes()]
            await self._final_flush()
            raise _Closed from None
        if not data:
            raise _Closed
        self.buf += data

    async def read_line(self, limit: int) -> bytes | None:
        """One line without its line end; `_LineTooLong` after skipping an over-long one.
        The command timeout covers the whole line (RFC 5321 §4.5.3.2.7), so a client sending
        a byte at a time cannot hold the session open by restarting it with every read."""
        too_long = False
        deadline = time.monotonic() + self.server.command_timeout
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[: end + 1]
                if too_long or end + 1 > limit:
                    raise _LineTooLong
                return line[:-1] if line.endswith(b"\r") else line
            if len(self.buf) > limit:  # keep memory bounded while skipping the rest
                too_long = True
                self.buf.clear()
            try:
                await self.fill(self._remaining_line(deadline))
            except _Closed:
                if self.out:
                    raise
                return None

    # --- content ------------------------------------------------------------------------

    async def _data(self) -> None:
        deadline = time.monotonic() + self.server.data_timeout
        while True:
            if self.buf:
                chunk, self.buf = bytes(self.buf), bytearray()
                await self._guarded_content(chunk)
                if self.session.content_done:
                    break
            await self.fill(self._remaining(deadline))
        self.buf[:0] = self.session.content_rest()
        self.send((await self._guarded(self.session.end_of_content())).replies)

    async def _bdat(self, outcome: Outcome) -> bool:
        deadline = time.monotonic() + self.server.data_timeout
        left = outcome.size
        while left:
            if not self.buf:
                await self.fill(self._remaining(deadline))
            take = min(left, len(self.buf))
            chunk = bytes(self.buf[:take])
            del self.buf[:take]
            left -= take
            if not outcome.discard:
                await self._guarded_content(chunk)
        if outcome.discard:
            self.send(outcome.replies)
        else:
            self.send((await self._guarded(self.session.end_of_content())).replies)
        return True

    async def _guarded_content(self, chunk: bytes) -> None:
        try:
            await self.session.content(chunk)
        except (asyncio.CancelledError, _Closed):
            raise
        except Exception:
            log.exception("smtp.spool_error")
            self.session.content_failed()

    def _remaining_line(self, deadline: float) -> float:
        return max(0.0, deadline - time.monotonic())

    def _remaining(self, deadline: float) -> float:
        return max(0.0, min(self.server.command_timeout, deadline - time.monotonic()))

    async def _starttls(self) -> None:
        await self.flush()
        # RFC 3207 §4.2 / CVE-2011-0411: nothing sent before the handshake may be acted on.
        self.buf.clear()
        ctx = self.server.ssl_context
        assert ctx is not None
        try:
            await asyncio.wait_for(self.writer.start_tls(ctx), self.server.command_timeout)
        except (ssl.SSLError, OSError, TimeoutError) as e:
            log.info("tls.failed", error=type(e).__name__)
            raise _Closed from None
        await self.session.tls_started(describe_tls(self.writer) or "TLS")
