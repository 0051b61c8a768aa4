"""Byte-level POP3 dialogues against the real session, store and directory, without sockets.

`Dialogue.send` feeds client octets through the real `LineReader` into the real `Session` and
returns everything the server would have written, exactly as bytes. The directory, store and
throttle come from `tests.integration.imap_driver.open_world`, so IMAP and POP3 dialogues can
share one world.
"""

from __future__ import annotations

from posthorn.pop3.protocol import MAX_COMMAND_LINE, LineReader
from posthorn.pop3.session import (
    Connection,
    Limits,
    MaildropLocks,
    Next,
    Outcome,
    Session,
    SizeCache,
)
from posthorn.sasl import MAX_RESPONSE_LINE
from tests.integration.imap_driver import PASSWORD, World

USER = "alice@example.test"


class POP3World:
    """What every POP3 session of one process shares besides the store and directory."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.locks = MaildropLocks()
        self.sizes = SizeCache()


class Dialogue:
    def __init__(
        self,
        pw: POP3World,
        *,
        tls: str | None = None,
        loopback: bool = True,
        limits: Limits | None = None,
        tls_available: bool = True,
    ) -> None:
        self.out: list[bytes] = []
        self.session = Session(
            Connection("127.0.0.1" if loopback else "192.0.2.1", loopback, tls),
            accounts=pw.world.directory,
            store=pw.world.store,
            limits=limits or Limits(plaintext_auth_on_loopback=True),
            throttle=pw.world.throttle,
            locks=pw.locks,
            sizes=pw.sizes,
            tls_available=tls_available,
            emit=self._emit,
        )
        self.reader = LineReader()
        self.mode = Next.CONTINUE
        self.closed = False
        self.delays: list[float] = []

    async def _emit(self, data: bytes) -> None:
        self.out.append(data)

    def greeting(self) -> bytes:
        return self.session.greeting()

    async def send(self, data: bytes) -> bytes:
        """Feed octets; return what the server answers before it needs more input."""
        self.reader.feed(data)
        while not self.closed:
            limit = MAX_RESPONSE_LINE if self.mode is Next.SASL else MAX_COMMAND_LINE
            line = self.reader.next_line(limit)
            if line is None:
                break
            if self.mode is Next.SASL:
                await self._outcome(await self.session.sasl_line(line))
            else:
                await self._outcome(await self.session.line(line))
        out, self.out = b"".join(self.out), []
        return out

    async def _outcome(self, outcome: Outcome) -> None:
        if outcome.delay:
            self.delays.append(outcome.delay)
        self.mode = Next.SASL if outcome.next is Next.SASL else Next.CONTINUE
        if outcome.next is Next.CLOSE:
            self.closed = True
            await self.session.close()
        if outcome.next is Next.STLS:
            self.reader.discard()
            self.session.tls_started("TLSv1.3")

    async def cmd(self, line: str | bytes) -> bytes:
        data = line.encode() if isinstance(line, str) else line
        return await self.send(data + b"\r\n")

    async def login(self, user: str = USER, password: str = PASSWORD) -> bytes:
        assert await self.cmd(f"USER {user}") == b"+OK send PASS\r\n"
        out = await self.cmd(f"PASS {password}")
        assert out.startswith(b"+OK maildrop locked"), out
        return out

    async def drop(self) -> None:
        """The connection goes away without QUIT."""
        self.closed = True
        await self.session.close()
