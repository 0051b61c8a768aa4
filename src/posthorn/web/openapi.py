"""The OpenAPI 3.1 description served at ``/api/openapi.json``.

Built from the app's own route table, so every ``/api`` route — the admin module's and any
added later included — is listed without a second list to keep in step; each operation's
summary is the first line of its handler's docstring. Request bodies of the routes that take
one are described here (`BODIES`); the contract in prose is docs/web-api.md.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from typing import Any, Final

from starlette.routing import BaseRoute, Route

from posthorn import __version__

__all__ = ["BODIES", "openapi_document"]

_PARAM: Final = re.compile(r"{([^}:]+)(?::([^}]+))?}")
_ERROR: Final = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }
    },
}


def _json(properties: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": properties, "required": list(required)}
            }
        },
    }


_STR: Final = {"type": "string"}
_STRS: Final = {"type": "array", "items": _STR}
_FILE: Final = {"type": "string", "format": "binary"}
_COMPOSE: Final = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    **{
                        name: _STR for name in ("to", "cc", "bcc", "subject", "body", "in_reply_to")
                    },
                    "references": _STR,
                    "draft_uid": {"type": "integer"},
                    "attachments": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                    },
                },
            }
        }
    },
}
BODIES: Final[dict[tuple[str, str], dict[str, Any]]] = {
    ("POST", "/api/login"): _json({"address": _STR, "password": _STR}, ("address", "password")),
    ("POST", "/api/mailboxes"): _json({"name": _STR}, ("name",)),
    ("PATCH", "/api/mailboxes/{name}"): _json({"name": _STR}, ("name",)),
    ("POST", "/api/mailboxes/{name}/messages/{uid}/flags"): _json({"add": _STRS, "remove": _STRS}),
    ("POST", "/api/mailboxes/{name}/messages/{uid}/move"): _json({"to": _STR}, ("to",)),
    ("POST", "/api/send"): _COMPOSE,
    ("POST", "/api/drafts"): _COMPOSE,
}


def openapi_document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The document for every `Route` under ``/api`` in ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", route.path)
        params = [
            {
                "name": m.group(1),
                "in": "path",
                "required": True,
                "schema": {"type": "integer" if m.group(2) == "int" else "string"},
            }
            for m in _PARAM.finditer(route.path)
        ]
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation: dict[str, Any] = {
                "summary": _summary(route),
                "responses": {"200": {"description": "success"}, "4XX": _ERROR},
            }
            if params:
                operation["parameters"] = params
            body = BODIES.get((method, path))
            if body is not None:
                operation["requestBody"] = body
            if path not in ("/api/login", "/api/openapi.json"):
                operation["security"] = [{"session": []}]
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "posthorn web API",
            "version": __version__,
            "description": "Webmail and admin JSON API. State-changing requests need the "
            "session's CSRF token in the X-CSRF-Token header (from /api/login or /api/me).",
        },
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "posthorn_session"}
            }
        },
        "paths": dict(sorted(paths.items())),
    }


def _summary(route: Route) -> str:
    doc = inspect.getdoc(route.endpoint) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ")
    return first or (route.name or route.path).replace("_", " ")
