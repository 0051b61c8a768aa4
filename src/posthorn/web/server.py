"""uvicorn embedded in our event loop, on sockets we bound ourselves.

uvicorn normally owns signals; here `posthorn.server` owns them and tells this server to stop,
so the web side shuts down with everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    def __init__(
        self,
        app: ASGIApp,
        sockets: list[socket.socket],
        shutdown_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(shutdown_timeout)),
            server_header=False,
        )
        if ssl_context is not None:
            # Our context (TLS 1.2+, the server's certificate), not one uvicorn builds from
            # file names: uvicorn hands ``config.ssl`` to the listening sockets as it is.
            config.load()
            config.ssl = ssl_context
        self._server = _EmbeddedServer(config)
        self._sockets = sockets
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=self._sockets))
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what went wrong
                raise RuntimeError("web server stopped during start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
