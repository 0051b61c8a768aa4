"""Structured logging: one logfmt line per event, with ids from contextvars.

Every line is ``ts=… level=… event=… key=value …``; a connection's or queue entry's id is set
once in a contextvar (`bind`) and then appears on every line logged while serving it, without
being passed down. Never log credentials: callers pass fields explicitly, and nothing here
formats arbitrary objects beyond ``str``.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "posthorn_log_context", default=()
)


@contextmanager
def bind(**fields: object) -> Iterator[None]:
    """Add ``fields`` to every line logged in this context (a connection, a queue run)."""
    token = _context.set(_context.get() + tuple((k, str(v)) for k, v in fields.items()))
    try:
        yield
    finally:
        _context.reset(token)


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\\\n\r\t') and value.isprintable():
        return value
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"ts={ts}.{int(record.msecs):03d}Z", f"level={record.levelname.lower()}"]
        parts.append(f"event={_quote(record.getMessage())}")
        for key, value in getattr(record, "ctx", ()):
            parts.append(f"{key}={_quote(value)}")
        for key, value in getattr(record, "fields", {}).items():
            parts.append(f"{key}={_quote(str(value))}")
        if record.exc_info:
            parts.append(f"traceback={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class Logger:
    """``log.info("listener.bound", service="smtp", addr=addr)``."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, event: str, fields: dict[str, object], exc: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(
                level, event, exc_info=exc, extra={"fields": fields, "ctx": _context.get()}
            )

    def debug(self, event: str, **fields: object) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: object) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: object) -> None:
        """An error with the current exception's traceback (for the log only, never the wire)."""
        self._log(logging.ERROR, event, fields, exc=True)


def get_logger(name: str) -> Logger:
    return Logger(name)


def setup(level: str = "info") -> None:
    """Send posthorn's lines to stderr; quiet the libraries' own chatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger("posthorn")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for noisy in ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
