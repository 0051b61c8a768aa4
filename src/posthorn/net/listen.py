"""Listening sockets and the connections accepted on them.

Sockets are bound before anything starts serving, so a taken port fails the start with one
line naming it (`ListenError`) rather than a traceback half-way through. A `StreamListener`
remembers its live connection tasks so shutdown can stop accepting, give in-flight sessions a
bounded time to finish, and then cancel the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
from collections.abc import Awaitable, Callable

from posthorn.config import ListenAddress
from posthorn.log import bind, get_logger

log = get_logger("posthorn.net")

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ListenError(Exception):
    """A listener could not be bound; the message names the service and address."""


def bind_socket(addr: ListenAddress, service: str, *, backlog: int = 512) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((addr.host, addr.port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        reason = "address already in use" if e.errno == errno.EADDRINUSE else e.strerror or str(e)
        raise ListenError(f"cannot listen on {addr} for {service}: {reason}") from None
    return sock


def bound_address(sock: socket.socket) -> ListenAddress:
    host, port = sock.getsockname()[:2]
    return ListenAddress(host, port)


class StreamListener:
    """One service's sockets, serving each accepted connection with ``handler``."""

    def __init__(
        self,
        service: str,
        sockets: list[socket.socket],
        handler: StreamHandler,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.service = service
        self.sockets = sockets
        self._handler = handler
        self._ssl = ssl_context
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_id = 0

    async def start(self) -> None:
        for sock in self.sockets:
            tls: dict[str, object] = (
                {"ssl": self._ssl, "ssl_handshake_timeout": 30} if self._ssl is not None else {}
            )
            server = await asyncio.start_server(self._serve, sock=sock, **tls)  # type: ignore[arg-type]
            self._servers.append(server)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._next_id += 1
        peer = writer.get_extra_info("peername")
        try:
            with bind(service=self.service, conn=f"{self.service[0]}{self._next_id}"):
                try:
                    await self._handler(reader, writer)
                    await _linger(reader, writer)
                except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                    pass
                except Exception:
                    log.exception("connection.error", peer=peer)
        except asyncio.CancelledError:
            # `drain` cancelled a session that outlived the grace period; it has said goodbye.
            # Ending normally keeps asyncio's stream callback from logging a bogus traceback.
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()

    async def drain(self, grace: float) -> int:
        """Wait up to ``grace`` seconds for open connections, then cancel the rest (counted)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        left = list(self._tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=1)
        return len(left)


LINGER_SECONDS = 1.0
LINGER_OCTETS = 1 << 20


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close gracefully: stop sending, then read and drop what the client still sends, briefly.

    Closing a socket with unread input makes the kernel send a reset, which can destroy our
    last reply (a 421, a BYE) in the client's buffer before it reads it. Bounded in time and
    octets, so a client cannot keep the connection this way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER_SECONDS
    total = 0
    with contextlib.suppress(Exception):
        if writer.can_write_eof():
            writer.write_eof()
        while total < LINGER_OCTETS:
            left = deadline - loop.time()
            if left <= 0:
                break
            data = await asyncio.wait_for(reader.read(65536), left)
            if not data:
                break
            total += len(data)
