"""The ASGI application. For now: the health endpoint that monitors and tests poll."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from posthorn import __version__


def create_app(hostname: str) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "hostname": hostname, "version": __version__})

    return Starlette(routes=[Route("/healthz", healthz)])
