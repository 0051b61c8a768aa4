"""A remote MTA for tests: aiosmtpd on a loopback address, scripted to accept, defer or refuse.

It stands in for the outside world (another organisation's mail server, a smart host); it is
never used in place of posthorn's own components.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]
    rcpt_options: list[str]
    tls: bool
    login: str | None


@dataclass
class Script:
    """Answers by recipient: a reply for RCPT (``"550 5.1.1 no such user"``) and one for DATA.
    Replies listed in ``*_once`` are used once, then the default (``"250 OK"``) applies.
    ``data_delay`` (seconds) is slept after the message arrived, before the DATA reply."""

    rcpt: dict[str, str] = field(default_factory=dict)
    rcpt_once: dict[str, list[str]] = field(default_factory=dict)
    data_once: list[str] = field(default_factory=list)
    data_delay: float = 0.0


class _Handler:
    def __init__(self, mta: RemoteMTA) -> None:
        self.mta = mta

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.mta.lock:
            self.mta.mails.append(address)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        script = self.mta.script
        with self.mta.lock:
            self.mta.rcpts.append(address)
        once = script.rcpt_once.get(address)
        if once:
            return once.pop(0)
        reply = script.rcpt.get(address, "250 OK")
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return reply

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        script = self.mta.script
        mta = self.mta
        with mta.lock:
            mta.data_started.append(list(envelope.rcpt_tos))
            mta.in_data += 1
            mta.max_in_data = max(mta.max_in_data, mta.in_data)
        try:
            if script.data_delay:
                await asyncio.sleep(script.data_delay)
        finally:
            with mta.lock:
                mta.in_data -= 1
        if script.data_once:
            return script.data_once.pop(0)
        with self.mta.lock:
            self.mta.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content or envelope.content,
                    list(envelope.mail_options),
                    list(envelope.rcpt_options),
                    session.ssl is not None,
                    self.mta.logins.get(id(session)),
                )
            )
        return "250 2.0.0 OK queued"


class _CountingSMTP(SMTP):
    """aiosmtpd's SMTP, telling its RemoteMTA when a connection opens and closes."""

    def __init__(self, handler: Any, mta: RemoteMTA, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._mta = mta
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._counted:  # a second call after STARTTLS is the same connection
            self._counted = True
            with self._mta.lock:
                self._mta.connections += 1
                self._mta.open_now += 1
                self._mta.max_open = max(self._mta.max_open, self._mta.open_now)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            with self._mta.lock:
                self._mta.open_now -= 1
        super().connection_lost(error)


class _Controller(Controller):
    def __init__(self, mta: RemoteMTA, handler: _Handler, **kwargs: Any) -> None:
        self._mta = mta
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, self._mta, **self.SMTP_kwargs)


class RemoteMTA:
    """``utf8=False`` does not offer SMTPUTF8; ``size_limit`` (octets) is offered as SIZE and
    enforced. What it saw is counted: ``connections`` (in all), ``max_open`` (at once),
    ``mails`` (MAIL FROM addresses, ``<>`` the null one), ``rcpts`` (RCPT TO addresses,
    accepted or not), ``data_started`` (the accepted recipients of each DATA, when it
    began), ``max_in_data`` (DATA phases at once)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        script: Script | None = None,
        tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        utf8: bool = True,
        size_limit: int | None = None,
    ) -> None:
        self.script = script or Script()
        self.received: list[Received] = []
        self.logins: dict[int, str] = {}  # id(session) -> the user that logged in
        self.lock = threading.Lock()
        self.connections = 0
        self.open_now = 0
        self.max_open = 0
        self.mails: list[str] = []
        self.rcpts: list[str] = []
        self.data_started: list[list[str]] = []
        self.in_data = 0
        self.max_in_data = 0
        kwargs: dict[str, Any] = {"decode_data": False, "enable_SMTPUTF8": utf8}
        if size_limit is not None:
            kwargs["data_size_limit"] = size_limit
        if tls is not None:
            kwargs["tls_context"] = tls
        if credentials is not None:
            kwargs["authenticator"] = _authenticator(self, *credentials)
            kwargs["auth_required"] = True
        self.controller = _Controller(self, _Handler(self), hostname=host, port=port, **kwargs)

    def __enter__(self) -> RemoteMTA:
        self.controller.start()
        # start() opened one connection of its own to check the server answers: not counted.
        deadline = time.monotonic() + 5
        while self.open_now and time.monotonic() < deadline:
            time.sleep(0.01)
        with self.lock:
            self.connections = self.max_open = self.open_now
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def messages_to(self, rcpt: str) -> list[Received]:
        with self.lock:
            return [m for m in self.received if rcpt in m.rcpt_tos]


def _authenticator(mta: RemoteMTA, user: str, password: str) -> Callable[..., AuthResult]:
    def check(server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == user
            and data.password.decode() == password
        )
        if ok:
            mta.logins[id(session)] = user
        return AuthResult(success=ok, handled=False)

    return check
