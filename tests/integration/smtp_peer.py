"""Test doubles for the outbound SMTP client, all on 127.0.0.1 in the test's own event loop.

- `ScriptedPeer`: a small raw SMTP server whose every answer is chosen by the test, that
  records each read from the socket (so a test can see pipelined commands arrive together),
  and can misbehave on purpose: never greet, drop the connection mid-DATA.
- `AioPeer`: aiosmtpd, the independent implementation, with a handler that records MAIL/RCPT
  options and the data and refuses chosen recipients or the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from posthorn.smtp.data import DataReader

DEFAULT_EXTENSIONS = (
    "PIPELINING",
    "SIZE 1000000",
    "8BITMIME",
    "SMTPUTF8",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "CHUNKING",
    "BINARYMIME",
)


@dataclass
class PeerConfig:
    greeting: bytes = b"220 peer.test ESMTP ready\r\n"
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    ehlo_reply: bytes | None = None  # replaces the 250 EHLO reply (e.g. a 502)
    mail_reply: bytes = b"250 2.1.0 Sender ok\r\n"
    rcpt_replies: dict[str, bytes] = field(default_factory=dict)  # address -> reply
    data_init_reply: bytes = b"354 Go ahead\r\n"
    data_reply: bytes = b"250 2.0.0 Ok: queued as PEER1\r\n"
    silent: bool = False  # accept the connection, never say anything
    drop_in_data: bool = False  # close the connection after the first data bytes
    auth_replies: tuple[bytes, ...] = ()  # answers to AUTH and the lines that follow it


class ScriptedPeer:
    def __init__(self, config: PeerConfig | None = None) -> None:
        self.config = config or PeerConfig()
        self.reads: list[bytes] = []
        self.commands: list[bytes] = []
        self.messages: list[bytes] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._auth: list[bytes] = []

    async def start(self) -> ScriptedPeer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._dialogue(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        data = await reader.read(65536)
        if data:
            self.reads.append(data)
        return data

    async def _dialogue(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cfg = self.config
        if cfg.silent:
            await reader.read()  # until the client gives up
            return
        writer.write(cfg.greeting)
        buf = b""
        while True:
            out: list[bytes] = []
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                self.commands.append(line)
                verb = line.split(b" ", 1)[0].upper()
                reply = self._answer(line)
                if reply is None:
                    return
                if verb == b"DATA" and reply.startswith(b"354"):
                    writer.write(b"".join([*out, reply]))
                    out = []
                    result = await self._data(reader, writer, buf)
                    if result is None:
                        return
                    buf, reply = result
                elif verb == b"BDAT":
                    size = int(line.split()[1])
                    while len(buf) < size:
                        more = await self._read(reader)
                        if not more:
                            return
                        buf += more
                    self.messages.append(buf[:size])
                    buf = buf[size:]
                out.append(reply)
                if verb == b"QUIT":
                    writer.write(b"".join(out))
                    await writer.drain()
                    return
            if out:
                writer.write(b"".join(out))
                await writer.drain()
            data = await self._read(reader)
            if not data:
                return
            buf += data

    async def _data(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, buf: bytes
    ) -> tuple[bytes, bytes] | None:
        await writer.drain()
        dr = DataReader(10_000_000, max_line=100_000)
        parts = [dr.feed(buf)] if buf else []
        while not dr.done:
            data = await self._read(reader)
            if not data:
                return None
            if self.config.drop_in_data:
                writer.transport.abort()
                return None
            parts.append(dr.feed(data))
        self.messages.append(b"".join(parts))
        return dr.rest, self.config.data_reply

    def _answer(self, line: bytes) -> bytes | None:
        cfg = self.config
        if self._auth:
            return self._auth.pop(0)
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"AUTH" and cfg.auth_replies:
            self._auth = list(cfg.auth_replies)
            return self._auth.pop(0)
        if verb in (b"EHLO", b"HELO"):
            if cfg.ehlo_reply is not None and verb == b"EHLO":
                return cfg.ehlo_reply
            if verb == b"HELO":
                return b"250 peer.test\r\n"
            lines = ["peer.test Hello", *cfg.extensions]
            text = "".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n"
            return text.encode()
        if verb == b"MAIL":
            return cfg.mail_reply
        if verb == b"RCPT":
            address = line.split(b"<", 1)[1].split(b">", 1)[0].decode()
            return cfg.rcpt_replies.get(address, b"250 2.1.5 Recipient ok\r\n")
        if verb == b"DATA":
            return cfg.data_init_reply
        if verb == b"BDAT":
            return cfg.data_reply
        if verb in (b"RSET", b"NOOP"):
            return b"250 2.0.0 Ok\r\n"
        if verb == b"QUIT":
            return b"221 2.0.0 Bye\r\n"
        return b"502 5.5.1 Not implemented\r\n"


# --- aiosmtpd ---------------------------------------------------------------------------------


@dataclass
class Transaction:
    mail_from: str
    mail_options: list[str]
    rcpt_tos: list[str]
    rcpt_options: list[str]
    content: bytes


class Recorder:
    """An aiosmtpd handler (hooks found by name, as aiosmtpd wants)."""

    def __init__(
        self,
        *,
        extra_ehlo: tuple[str, ...] = (),
        refuse: dict[str, str] | None = None,
        data_reply: str = "250 2.0.0 OK",
    ) -> None:
        self.extra_ehlo = extra_ehlo
        self.refuse = refuse or {}
        self.data_reply = data_reply
        self.transactions: list[Transaction] = []
        self.ehlo_names: list[str] = []
        self.mail_options: list[list[str]] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.ehlo_names.append(hostname)
        return responses[:-1] + [f"250-{x}" for x in self.extra_ehlo] + responses[-1:]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        self.mail_options.append(list(options))
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.transactions.append(
            Transaction(
                envelope.mail_from,
                list(envelope.mail_options),
                list(envelope.rcpt_tos),
                list(envelope.rcpt_options),
                bytes(envelope.original_content or envelope.content),
            )
        )
        return self.data_reply

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append((data.login, data.password))
            ok = (data.login, data.password) == (b"relay-user", b"s3cret pass")
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)


class AioPeer:
    def __init__(self, handler: Recorder, **smtp_kwargs: Any) -> None:
        self.handler = handler
        self.kwargs = smtp_kwargs
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> AioPeer:
        kwargs = {"hostname": "aio.test", "decode_data": False, **self.kwargs}
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self.handler, **kwargs), "127.0.0.1", 0
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)


def trusting(cert_path: str) -> ssl.SSLContext:
    """A client context that verifies against our self-signed test certificate only."""
    return ssl.create_default_context(cafile=cert_path)
