"""Helpers for browser tests: headless Debian Chromium through Playwright, a watched page,
screenshots under the run's artifacts, and a loopback HTTP server that records every request.

Nothing here talks to anything but 127.0.0.1: Chromium runs with background networking,
component updates and sync off, and the only servers are `posthorn serve` and `Recorder`.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Playwright

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright's own download does not work here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
REPO = Path(__file__).resolve().parents[2]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# A 1x1 transparent PNG, what the recorder answers for any *.png.
PIXEL_PNG = (
    b"\x89PNG\r\n\x1a\n"
    + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
    + _png_chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\x00"))
    + _png_chunk(b"IEND", b"")
)


def launch(p: Playwright) -> Browser:
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def screenshots_dir() -> Path:
    """``$POSTHORN_ARTIFACTS/screenshots``, by default ``test-artifacts/screenshots`` in the
    repository (ignored by git)."""
    root = os.environ.get("POSTHORN_ARTIFACTS")
    path = (Path(root) if root else REPO / "test-artifacts") / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    path = screenshots_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@dataclass
class Watched:
    """A page with everything it said recorded: console errors, uncaught exceptions and
    JavaScript dialogs (alert/confirm/prompt: dismissed, but remembered)."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def attach(self) -> Watched:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda err: self.page_errors.append(str(err)))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda request: self.requests.append(request.url))
        return self

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} @ {message.location.get('url', '')}")

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def unexpected_console_errors(self, *allowed: str) -> list[str]:
        """Console errors not containing any of the ``allowed`` fragments."""
        return [e for e in self.console_errors if not any(a in e for a in allowed)]


@contextlib.contextmanager
def watched_page(browser: Browser, base_url: str, **context_args: Any) -> Iterator[Watched]:
    """A fresh context (no cookies) and one watched page in it. On the way out: no uncaught
    exception and no JavaScript dialog happened."""
    context = browser.new_context(base_url=base_url, accept_downloads=True, **context_args)
    context.set_default_timeout(10_000)
    try:
        watched = Watched(context.new_page()).attach()
        yield watched
        assert not watched.page_errors, watched.page_errors
        assert not watched.dialogs, watched.dialogs
    finally:
        context.close()


class Recorder:
    """A loopback HTTP server recording the path of every request it gets. ``pages`` maps a
    path to the HTML to serve there; any ``*.png`` gets a pixel; anything else a 404."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.pages: dict[str, str] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.paths.append(self.path)
                path = self.path.split("?", 1)[0]
                if path in recorder.pages:
                    self._answer(200, "text/html; charset=utf-8", recorder.pages[path].encode())
                elif path.endswith(".png"):
                    self._answer(200, "image/png", PIXEL_PNG)
                else:
                    self._answer(404, "text/plain", b"not here\n")

            def do_POST(self) -> None:
                recorder.paths.append(self.path)
                self._answer(404, "text/plain", b"not here\n")

            def _answer(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def seen(self, fragment: str) -> list[str]:
        return [p for p in list(self.paths) if fragment in p]


_HOLD_ANSWERS = """{
  const original = window.fetch;
  const [suffix, method, ms] = ARGS;
  window.fetch = async (url, options) => {
    const response = await original(url, options);
    const sent = ((options && options.method) || "GET").toUpperCase();
    if (String(url).endsWith(suffix) && sent === method) {
      await new Promise((done) => setTimeout(done, ms));
    }
    return response;
  };
}"""


def hold_answers(page: Page, url_suffix: str, method: str = "GET", ms: int = 800) -> None:
    """Make the page's fetch() hand over the answers to ``method`` requests for URLs ending in
    ``url_suffix`` ``ms`` late (the request itself goes out at once): a deterministic way to
    let answers cross, or to act while one is on its way."""
    args = json.dumps([url_suffix, method.upper(), ms])
    page.add_init_script(_HOLD_ANSWERS.replace("ARGS", args))


def eventually(check: Callable[[], Any], timeout: float = 10, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.1)
