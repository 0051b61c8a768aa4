"""What the web app may use: the running server's components, passed in explicitly.

`posthorn.server` builds one `WebContext` and hands it to `posthorn.web.app.create_app`; route
modules take what they need from it. Nothing in `posthorn.web` opens a store or a database
on its own (one composition root: `posthorn.server`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from posthorn.config import Config
from posthorn.directory import Directory
from posthorn.policy.limits import AuthThrottle
from posthorn.queue.spool import Spool
from posthorn.store.base import MailStore


@dataclass(frozen=True)
class WebContext:
    config: Config
    directory: Directory
    store: MailStore
    spool: Spool  # sending queues here, as submission does; ``spool.db`` is the queue
    throttle: AuthThrottle  # shared with SMTP AUTH, IMAP and POP3 logins
    # Set when the server stops: long-lived responses (the event stream) end at once instead
    # of holding the shutdown for its whole grace period.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Wakes the queue runners now (after an admin's retry): this process's own commits do not
    # move the queue database's data_version, which is how the runners notice the CLI's.
    kick: Callable[[], None] = field(default=lambda: None)

    @property
    def hostname(self) -> str:
        return self.config.server.hostname
