"""A remote MTA for tests: aiosmtpd on a loopback address, scripted to accept, defer or refuse.

It stands in for the outside world (another organisation's mail server, a smart host); it is
never used in place of posthorn's own components.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
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
    Replies listed in ``*_once`` are used once, then the default (``"250 OK"``) applies."""

    rcpt: dict[str, str] = field(default_factory=dict)
    rcpt_once: dict[str, list[str]] = field(default_factory=dict)
    data_once: list[str] = field(default_factory=list)
    data_delay: float = 0.0


class _Handler:
    def __init__(self, mta: RemoteMTA) -> None:
        self.mta = mta

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        script = self.mta.script
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
        if script.data_delay:
            await asyncio.sleep(script.data_delay)
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


class RemoteMTA:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        script: Script | None = None,
        tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.script = script or Script()
        self.received: list[Received] = []
        self.logins: dict[int, str] = {}  # id(session) -> the user that logged in
        self.lock = threading.Lock()
        kwargs: dict[str, Any] = {"decode_data": False, "enable_SMTPUTF8": True}
        if tls is not None:
            kwargs["tls_context"] = tls
        if credentials is not None:
            kwargs["authenticator"] = _authenticator(self, *credentials)
            kwargs["auth_required"] = True
        self.controller = Controller(_Handler(self), hostname=host, port=port, **kwargs)

    def __enter__(self) -> RemoteMTA:
        self.controller.start()
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
