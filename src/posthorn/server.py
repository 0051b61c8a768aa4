"""Composition root: the one place that knows every concrete class.

`Server` builds the directory, the store and the listeners from a `Config`, starts them, and
stops them in order: stop accepting, let in-flight sessions finish within
``server.shutdown_timeout``, cancel what is left, close the store. Nothing else in the package
constructs a concrete store or opens a listening socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Protocol

from posthorn.config import SERVICES, Config, ListenAddress
from posthorn.delivery.bounce import Bouncer
from posthorn.delivery.local import LocalDelivery
from posthorn.delivery.outbound import OutboundDelivery
from posthorn.directory import Directory, DirectoryDB
from posthorn.dns.resolver import Resolver
from posthorn.imap.server import IMAPServer, Timeouts
from posthorn.imap.session import Limits as IMAPLimits
from posthorn.log import get_logger
from posthorn.mail.address import normalize_domain
from posthorn.net.listen import ListenError, StreamListener, bind_socket, bound_address
from posthorn.net.tls import ensure_self_signed, server_context
from posthorn.policy.limits import AuthThrottle, ConnectionLimiter
from posthorn.pop3.server import POP3Server
from posthorn.pop3.session import Limits as POP3Limits
from posthorn.pop3.session import MaildropLocks, SizeCache
from posthorn.privileges import Identity, PrivilegeError, drop_to, give_data_dir, resolve_identity
from posthorn.queue.records import Route
from posthorn.queue.runner import QueueRunner
from posthorn.queue.schedule import RetryPolicy
from posthorn.queue.spool import Spool
from posthorn.smtp.server import SMTPServer
from posthorn.smtp.session import PROFILES, Limits
from posthorn.store.sqlite import SQLiteMailStore
from posthorn.web.app import create_app
from posthorn.web.context import WebContext
from posthorn.web.server import WebServer

log = get_logger("posthorn.server")


class StartError(Exception):
    """The server cannot start; the message is the one line the operator sees."""


class Service(Protocol):
    async def start(self) -> None: ...

    def stop_accepting(self) -> None: ...

    async def drain(self, grace: float) -> int: ...


@dataclass
class _Web:
    """Adapts the uvicorn-based web server to the `Service` shape."""

    server: WebServer
    stopping: asyncio.Event
    stopped: asyncio.Task[None] | None = field(default=None)

    async def start(self) -> None:
        await self.server.start()

    def stop_accepting(self) -> None:
        self.stopping.set()  # event streams end now rather than at the grace period's end
        self.stopped = asyncio.ensure_future(self.server.stop())

    async def drain(self, grace: float) -> int:
        if self.stopped is not None:
            await self.stopped
        return 0


@dataclass
class _Shutdown:
    """A listener whose sessions are also told the server is stopping (IMAP: BYE at once to
    clients that are only waiting, rather than after the grace period)."""

    listener: StreamListener
    on_stop: Callable[[], None]

    async def start(self) -> None:
        await self.listener.start()

    def stop_accepting(self) -> None:
        self.listener.stop_accepting()
        self.on_stop()

    async def drain(self, grace: float) -> int:
        return await self.listener.drain(grace)


def open_data_dir(data_dir: Path) -> IO[str]:
    """Create the data directory if needed and lock it against a second server.

    Returns the open lock file; the lock lasts as long as it stays open.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
        lock = (data_dir / "posthorn.lock").open("a+")
    except OSError as e:
        raise StartError(f"data directory {data_dir} is not writable: {e.strerror or e}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        pid = lock.read().strip() or "?"
        lock.close()
        raise StartError(
            f"data directory {data_dir} is in use by another posthorn serve (pid {pid})"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def ensure_domains(db: DirectoryDB, domains: tuple[str, ...]) -> None:
    """The domains named in the config exist in the directory (idempotent)."""
    for domain in domains:
        if not db.is_local_domain(normalize_domain(domain)):
            db.add_domain(domain)


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = config.server.data_dir
        self.store = SQLiteMailStore(self.data_dir)
        self.directory: Directory | None = None
        self.services: dict[str, Service] = {}
        self.bound: dict[str, list[ListenAddress]] = {}
        self._lock: IO[str] | None = None
        self.ssl_context: ssl.SSLContext | None = None
        self.spool: Spool | None = None
        self.runner: QueueRunner | None = None
        self.remote_runner: QueueRunner | None = None
        self.outbound: OutboundDelivery | None = None
        smtp = config.smtp
        self.smtp_connections = ConnectionLimiter(smtp.max_connections_per_ip, smtp.max_connections)
        self.auth_throttle = AuthThrottle()
        imap = config.imap
        self.imap_connections = ConnectionLimiter(imap.max_connections_per_ip, imap.max_connections)
        pop3 = config.pop3
        self.pop3_connections = ConnectionLimiter(pop3.max_connections_per_ip, pop3.max_connections)
        # Shared by pop3 and pop3s: one POP3 session per account, whichever port it came on.
        self.pop3_locks = MaildropLocks()
        self.pop3_sizes = SizeCache()

    def _builders(self) -> dict[str, Callable[[str, list[socket.socket]], Service]]:
        """Services with code behind them today; every other configured listener is reported
        as not available yet."""
        smtp = self._build_smtp
        return {
            "smtp": smtp,
            "submission": smtp,
            "submissions": smtp,
            "lmtp": smtp,
            "imap": self._build_imap,
            "imaps": self._build_imap,
            "pop3": self._build_pop3,
            "pop3s": self._build_pop3,
            "http": self._build_http,
        }

    def _build_smtp(self, service: str, sockets: list[socket.socket]) -> Service:
        cfg = self.config.smtp
        profile = PROFILES[service]
        if service == "smtp" and cfg.auth_on_smtp:
            profile = replace(profile, auth=True)
        assert self.directory is not None and self.spool is not None
        domains = self.config.server.domains
        smtp = SMTPServer(
            profile,
            hostname=self.config.server.hostname,
            accounts=self.directory,
            spool=self.spool,
            limits=Limits(
                max_message_size=cfg.max_message_size,
                max_recipients=cfg.max_recipients,
                max_bad_commands=cfg.max_bad_commands,
                plaintext_auth_on_loopback=self.config.auth.plaintext_on_loopback,
            ),
            throttle=self.auth_throttle,
            connections=self.smtp_connections,
            ssl_context=self.ssl_context,
            command_timeout=cfg.command_timeout,
            data_timeout=cfg.data_timeout,
            postmaster_domain=domains[0] if domains else self.config.server.hostname,
        )
        tls = self.ssl_context if profile.implicit_tls else None
        return StreamListener(service, sockets, smtp.handle, tls)

    def _build_imap(self, service: str, sockets: list[socket.socket]) -> Service:
        cfg = self.config.imap
        assert self.directory is not None
        implicit = service == "imaps"
        imap = IMAPServer(
            hostname=self.config.server.hostname,
            accounts=self.directory,
            store=self.store,
            limits=IMAPLimits(
                append_limit=cfg.append_limit,
                plaintext_auth_on_loopback=self.config.auth.plaintext_on_loopback,
            ),
            throttle=self.auth_throttle,
            connections=self.imap_connections,
            ssl_context=self.ssl_context,
            implicit_tls=implicit,
            timeouts=Timeouts(autologout=cfg.autologout, login=cfg.login_timeout),
        )
        tls = self.ssl_context if implicit else None
        return _Shutdown(StreamListener(service, sockets, imap.handle, tls), imap.shutdown)

    def _build_pop3(self, service: str, sockets: list[socket.socket]) -> Service:
        cfg = self.config.pop3
        assert self.directory is not None
        implicit = service == "pop3s"
        pop3 = POP3Server(
            accounts=self.directory,
            store=self.store,
            limits=POP3Limits(
                plaintext_auth_on_loopback=self.config.auth.plaintext_on_loopback,
                max_bad_commands=cfg.max_bad_commands,
            ),
            throttle=self.auth_throttle,
            connections=self.pop3_connections,
            locks=self.pop3_locks,
            sizes=self.pop3_sizes,
            ssl_context=self.ssl_context,
            implicit_tls=implicit,
            timeout=cfg.timeout,
        )
        tls = self.ssl_context if implicit else None
        return _Shutdown(StreamListener(service, sockets, pop3.handle, tls), pop3.shutdown)

    def _build_http(self, service: str, sockets: list[socket.socket]) -> Service:
        assert self.directory is not None and self.spool is not None
        ctx = WebContext(
            config=self.config,
            directory=self.directory,
            store=self.store,
            spool=self.spool,
            throttle=self.auth_throttle,
            kick=self._kick_runners,
        )
        app = create_app(ctx)
        tls = self.ssl_context if self.config.web.tls else None
        web = WebServer(app, sockets, self.config.server.shutdown_timeout, tls)
        return _Web(web, ctx.stopping)

    def _kick_runners(self) -> None:
        for runner in (self.runner, self.remote_runner):
            if runner is not None:
                runner.kick()

    async def start(self) -> None:
        # What needs root comes first: the service user is looked up (an unknown name stops
        # here), the data directory is locked, the listeners are bound (ports < 1024) and
        # the TLS key is read (a key only root may read still loads). Then the data
        # directory is handed to the service user and root is dropped, before any database
        # or message file is opened, so everything the server creates belongs to that user.
        identity = self._identity()
        self._lock = open_data_dir(self.data_dir)
        sockets = self._bind()
        try:
            self._tls_context()
            smarthost_context = self._smarthost_context()
            if identity is not None:
                self._drop_privileges(identity)
        except BaseException:
            for socks in sockets.values():
                for s in socks:
                    s.close()
            raise
        self.directory = await Directory.in_data_dir(self.data_dir)
        await self.store.open()
        # Domains first: recovered messages must route to them as local (not foreign).
        await self.directory.run(lambda db: ensure_domains(db, self.config.server.domains))
        self.spool = Spool(self.data_dir)
        await self.spool.open()
        out = self.config.outbound
        self.resolver = Resolver(out.nameservers)
        self.outbound = OutboundDelivery(
            out,
            hostname=self.config.server.hostname,
            resolver=self.resolver,
            smarthost_context=smarthost_context,
        )
        self.bouncer = Bouncer(
            self.spool,
            hostname=self.config.server.hostname,
            delay_warning=out.delay_warning,
            lifetime=out.lifetime,
        )
        self.runner = QueueRunner(
            self.spool,
            LocalDelivery(self.store, self.directory),
            retry=RetryPolicy(lifetime=out.lifetime),
            after_pass=self.bouncer.after_pass,
            # `posthorn queue bounce` leaves rows owing a DSN and nothing due: sweep for them.
            on_external_change=self.bouncer.sweep,
        )
        self.remote_runner = QueueRunner(
            self.spool,
            self.outbound,
            route=Route.REMOTE,
            retry=RetryPolicy(first=out.retry_first, cap=out.retry_max, lifetime=out.lifetime),
            after_pass=self.bouncer.after_pass,
            split=self.outbound.split,
            concurrency=out.max_connections,
        )
        self.runner.peers.append(self.remote_runner)
        self.remote_runner.peers.append(self.runner)
        await self.runner.start()
        await self.remote_runner.start()
        await self.bouncer.sweep()
        builders = self._builders()
        for service, socks in sockets.items():
            self.services[service] = builders[service](service, socks)
            await self.services[service].start()
            self.bound[service] = [bound_address(s) for s in socks]
            for addr in self.bound[service]:
                log.info("listener.bound", service=service, addr=addr)
        log.info("server.started", hostname=self.config.server.hostname, pid=os.getpid())

    def _identity(self) -> Identity | None:
        """Whom to run as after the start-up work, or None to stay as started.

        ``server.user`` set: started as root, that user (looked up now); already running as
        that user, nothing to do; running as anyone else, a `StartError` (the configured
        identity cannot be had). Unset and running as root: a warning, and root it stays.
        """
        cfg = self.config.server
        if not cfg.user:
            if os.geteuid() == 0:
                log.warning("server.running_as_root", hint="set server.user to drop root")
            return None
        try:
            identity = resolve_identity(cfg.user, cfg.group)
        except PrivilegeError as e:
            raise StartError(str(e)) from None
        if os.geteuid() == 0:
            return identity if identity.uid != 0 else None
        if (os.geteuid(), os.getegid()) == (identity.uid, identity.gid):
            return None
        raise StartError(
            f"server.user = {cfg.user!r}: posthorn serve must be started as root to switch"
            f" to it (running as uid {os.geteuid()})"
        )

    def _drop_privileges(self, identity: Identity) -> None:
        """Hand the data directory to ``identity``, become it, and check it can write there."""
        try:
            handover = give_data_dir(self.data_dir, identity)
        except OSError as e:
            raise StartError(
                f"cannot give data directory {self.data_dir} to user {identity.user}:"
                f" {e.strerror or e}"
            ) from None
        try:
            drop_to(identity)
        except PrivilegeError as e:
            raise StartError(str(e)) from None
        probe = self.data_dir / ".write-test"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise StartError(
                f"data directory {self.data_dir} is not writable by user {identity.user}"
                f" (check the directories above it too): {e.strerror or e}"
            ) from None
        log.info(
            "server.privileges_dropped",
            user=identity.user,
            uid=identity.uid,
            group=identity.group,
            gid=identity.gid,
            data_dir_changed=handover.changed,
            data_dir_skipped=handover.skipped,
        )

    def _bind(self) -> dict[str, list[socket.socket]]:
        builders = self._builders()
        sockets: dict[str, list[socket.socket]] = {}
        try:
            for service in SERVICES:
                addrs = self.config.listen.addresses(service)
                if not addrs:
                    continue
                if service not in builders:
                    for addr in addrs:
                        log.warning("listener.not_available_yet", service=service, addr=addr)
                    continue
                sockets[service] = [bind_socket(a, service) for a in addrs]
        except ListenError:
            for socks in sockets.values():
                for s in socks:
                    s.close()
            raise
        return sockets

    def _smarthost_context(self) -> ssl.SSLContext | None:
        ca = self.config.outbound.smarthost_ca
        if ca is None:
            return None
        try:
            ctx = ssl.create_default_context(cafile=str(ca))
        except (OSError, ssl.SSLError) as e:
            raise StartError(f"cannot load outbound.smarthost_ca {ca}: {e}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def _tls_context(self) -> None:
        tls = self.config.tls
        if tls.cert is not None and tls.key is not None:
            cert, key = tls.cert, tls.key
        else:
            cert, key = ensure_self_signed(self.data_dir, self.config.server.hostname)
        try:
            self.ssl_context = server_context(cert, key)
        except (OSError, ValueError) as e:
            raise StartError(f"cannot load TLS certificate {cert} / key {key}: {e}") from None

    async def stop(self) -> None:
        for service in self.services.values():
            service.stop_accepting()
        timeout = self.config.server.shutdown_timeout
        for name, service in self.services.items():
            cancelled = await service.drain(timeout)
            if cancelled:
                log.warning("listener.cancelled_sessions", service=name, count=cancelled)
            log.info("listener.stopped", service=name)
        if self.runner is not None:
            await self.runner.stop(timeout)
        if self.remote_runner is not None:
            await self.remote_runner.stop(timeout)
        if self.outbound is not None:
            await self.outbound.close()
        if self.spool is not None:
            await self.spool.close()
        await self.store.close()
        if self.directory is not None:
            await self.directory.close()
        if self._lock is not None:
            self._lock.close()
        log.info("server.stopped")


async def serve(config: Config, ready: Callable[[Server], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    server = Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await server.stop()
        raise
    if ready is not None:
        ready(server)
    await stop.wait()
    log.info("server.stopping")
    await server.stop()
