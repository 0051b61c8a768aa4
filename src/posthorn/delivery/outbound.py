"""Outbound delivery: a queued message's remote recipients to the next hop, over SMTP.

Routing, per recipient domain, in this order (issue 6, DESIGN.md): our own domains never get
here (submission and local delivery route them locally); a configured route
(``[outbound.routes]``: a mail hub that knows which inner server holds which domain); the smart
host when one is configured; otherwise the domain's MX records (RFC 5321 §5.1), by preference,
the next one tried on a connection failure or a 4xx.

The result is one `Attempt` per due row, always, like local delivery's: accepted rows are
delivered, 5xx rows failed, everything else deferred (the runner's retry policy takes it from
there). A failure before a transaction starts — DNS, connect, greeting, STARTTLS — never
counts as a delivery. Crash safety: the runner records the attempts right after this returns;
a crash in between sends the message again (a duplicate at most for the rows in flight).

Replies are recorded as ``"X.Y.Z <remote> said: <code> <text>"`` so that the DSN can take the
status (first word), the Remote-MTA and the diagnostic back out of one string
(`split_reply`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from posthorn.config import HostPort, OutboundConfig
from posthorn.dns.resolver import DNSError, MXHost, Resolver
from posthorn.log import get_logger
from posthorn.queue.records import Attempt, QueuedMessage, QueuedRecipient, Status
from posthorn.smtp.client import (
    Client,
    OutRecipient,
    SendResult,
    SMTPClientError,
    Timeouts,
    TLSMode,
)

log = get_logger(__name__)

IDLE_SECONDS = 30.0  # a connection kept for the next message to the same host (Postfix: 2 s..)
MAX_IDLE_PER_HOST = 4


@dataclass(frozen=True, slots=True)
class Hop:
    """One next hop to try: a host (name or IP) and how to talk to it."""

    host: str
    port: int
    tls: TLSMode
    implicit_tls: bool = False
    auth: tuple[str, str] | None = None
    via: str = "mx"  # "mx" | "route" | "smarthost": for logs and the Remote-MTA


def split_reply(reply: str | None) -> tuple[str, str | None, str | None]:
    """``(status, remote, diagnostic)`` from a recorded reply (see the module docstring)."""
    if not reply:
        return "4.0.0", None, None
    status, _, rest = reply.partition(" ")
    if " said: " in rest:
        remote, _, said = rest.partition(" said: ")
        return status, remote, f"smtp; {said}"
    return status, None, None


class _Pool:
    """Idle SMTP connections by (address, port, tls), reused for the next message there."""

    def __init__(self, clock: Callable[[], float], max_idle: int = MAX_IDLE_PER_HOST) -> None:
        self._max_idle = max_idle
        self._idle: dict[tuple[str, int, str], list[tuple[Client, float]]] = {}
        self._clock = clock
        self._closing: set[asyncio.Task[None]] = set()

    def _quit(self, client: Client) -> None:
        """QUIT in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(client.quit())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def take(self, key: tuple[str, int, str]) -> Client | None:
        entries = self._idle.get(key)
        now = self._clock()
        while entries:
            client, since = entries.pop()
            if client.usable and now - since < IDLE_SECONDS:
                return client
            self._quit(client)
        return None

    def give(self, key: tuple[str, int, str], client: Client) -> None:
        entries = self._idle.setdefault(key, [])
        if len(entries) >= self._max_idle or not client.usable:
            self._quit(client)
            return
        entries.append((client, self._clock()))
        asyncio.get_running_loop().call_later(IDLE_SECONDS, self._expire, key)

    def _expire(self, key: tuple[str, int, str]) -> None:
        now = self._clock()
        entries = self._idle.get(key, [])
        keep = []
        for client, since in entries:
            if now - since >= IDLE_SECONDS - 0.01:
                self._quit(client)
            else:
                keep.append((client, since))
        self._idle[key] = keep

    async def close(self) -> None:
        clients = [c for entries in self._idle.values() for c, _ in entries]
        self._idle.clear()
        await asyncio.gather(*(c.quit() for c in clients), return_exceptions=True)


class OutboundDelivery:
    """Delivers remote rows (`posthorn.queue.runner.QueueRunner` with ``Route.REMOTE``)."""

    def __init__(
        self,
        config: OutboundConfig,
        *,
        hostname: str,
        resolver: Resolver,
        smarthost_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.hostname = hostname
        self.resolver = resolver
        self.smarthost_context = smarthost_context
        # As many idle connections per host as sessions may run to one destination.
        self._pool = _Pool(clock, max(MAX_IDLE_PER_HOST, config.max_per_destination))
        self._all = asyncio.Semaphore(config.max_connections)
        self._per_destination: dict[str, asyncio.Semaphore] = {}
        self.timeouts = Timeouts(
            connect=config.connect_timeout,
            greeting=config.command_timeout,
            ehlo=config.command_timeout,
            mail=config.command_timeout,
            rcpt=config.command_timeout,
            data_init=min(120.0, config.command_timeout),
            data_block=min(180.0, config.command_timeout),
            data_end=2 * config.command_timeout,
        )

    async def close(self) -> None:
        await self._pool.close()

    @staticmethod
    def split(due: Sequence[QueuedRecipient]) -> list[list[QueuedRecipient]]:
        """Rows by destination domain: the runner records each group as soon as it is done."""
        groups: dict[str, list[QueuedRecipient]] = {}
        for row in due:
            groups.setdefault(row.address.rpartition("@")[2].lower(), []).append(row)
        return list(groups.values())

    async def deliver(
        self, message: QueuedMessage, due: Sequence[QueuedRecipient]
    ) -> list[Attempt]:
        results = await asyncio.gather(
            *(
                self._domain(message, rows[0].address.rpartition("@")[2].lower(), rows)
                for rows in self.split(due)
            )
        )
        return [a for attempts in results for a in attempts]

    # --- one destination domain --------------------------------------------------------------

    def _destination(self, domain: str) -> tuple[str, list[Hop] | None]:
        """The concurrency key and, for a route or the smart host, the hop (no DNS needed
        to know it); ``None`` means "look up the domain's MX records"."""
        route = self.config.route(domain)
        if route is not None:
            return f"route:{route}", [self._hop(route, "route")]
        if self.config.smarthost is not None:
            return "smarthost", [self._hop(self.config.smarthost, "smarthost")]
        return f"mx:{domain}", None

    def _hop(self, where: HostPort, via: str) -> Hop:
        if via != "smarthost":
            return Hop(where.host, where.port, TLSMode.OPPORTUNISTIC, via=via)
        cfg = self.config
        auth = (cfg.smarthost_user, cfg.smarthost_password) if cfg.smarthost_user else None
        mode = {
            "required": TLSMode.REQUIRED,
            "opportunistic": TLSMode.OPPORTUNISTIC,
            "implicit": TLSMode.REQUIRED,
        }[cfg.smarthost_tls]
        implicit = cfg.smarthost_tls == "implicit"
        return Hop(where.host, where.port, mode, implicit, auth, via="smarthost")

    async def _domain(
        self, message: QueuedMessage, domain: str, rows: list[QueuedRecipient]
    ) -> list[Attempt]:
        key, hops = self._destination(domain)
        limit = self._per_destination.setdefault(
            key, asyncio.Semaphore(self.config.max_per_destination)
        )
        async with limit, self._all:
            if hops is None:
                try:
                    mxs = await self.resolver.mx(domain)
                except DNSError as e:
                    status = Status.DEFERRED if e.temporary else Status.FAILED
                    return [Attempt(r.id, status, f"{e.status} {e}") for r in rows]
                hops = [self._mx_hop(mx) for mx in mxs]
            return await self._try_hops(message, hops, rows)

    def _mx_hop(self, mx: MXHost) -> Hop:
        return Hop(mx.host, self.config.mx_port, TLSMode.OPPORTUNISTIC, via="mx")

    async def _try_hops(
        self, message: QueuedMessage, hops: list[Hop], rows: list[QueuedRecipient]
    ) -> list[Attempt]:
        attempts: list[Attempt] = []
        pending = list(rows)
        last = "4.4.1 no answer from any mail server"
        for hop in hops:
            try:
                addresses = await self._addresses(hop.host)
            except DNSError as e:
                last = f"{e.status} {e}"
                continue
            if not addresses:
                last = f"4.4.4 {hop.host}: no address"
                continue
            for address in addresses:
                outcome = await self._send_via(message, hop, address, pending)
                if isinstance(outcome, str):
                    last = outcome
                    continue
                done, pending, last = outcome
                attempts.extend(done)
                if not pending:
                    return attempts
                break  # RFC 5321 §5.1: 4xx from this host: the next MX host, not address
        # A permanent answer from the last host tried (a 5xx greeting, SIZE, SMTPUTF8) fails
        # the rest; anything else is tried again later.
        status = Status.FAILED if last.startswith("5") else Status.DEFERRED
        attempts.extend(Attempt(r.id, status, last) for r in pending)
        return attempts

    async def _addresses(self, host: str) -> list[str]:
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            return await self.resolver.addresses(host)

    async def _send_via(
        self,
        message: QueuedMessage,
        hop: Hop,
        address: str,
        rows: list[QueuedRecipient],
    ) -> tuple[list[Attempt], list[QueuedRecipient], str] | str:
        """One SMTP transaction. Returns the attempts made final here, the rows left for the
        next host and the reason they were left; or, when no transaction took place, only the
        reason (the caller tries the next address or host)."""
        key = (address, hop.port, hop.tls.value)
        client = self._pool.take(key)
        try:
            if client is None:
                client = await Client.connect(
                    address,
                    hop.port,
                    hostname_for_ehlo=self.hostname,
                    server_name=hop.host,
                    tls=hop.tls,
                    tls_context=self.smarthost_context if hop.via == "smarthost" else None,
                    implicit_tls=hop.implicit_tls,
                    auth=hop.auth,
                    timeouts=self.timeouts,
                )
            result = await self._send(client, message, rows)
        except SMTPClientError as e:
            log.info("outbound.failed", host=hop.host, addr=address, stage=e.stage, error=str(e))
            if client is not None:
                await client.quit()
            if e.code is None:  # our own decision (TLS, SIZE, a timeout): no remote reply
                return f"{e.dsn_status} {hop.host} [{address}]: {e.text}"
            return f"{e.dsn_status} {hop.host} said: {e.diagnostic().removeprefix('smtp; ')}"
        except (OSError, TimeoutError) as e:
            if client is not None:
                await client.quit()
            return f"4.4.1 {hop.host} [{address}]: {type(e).__name__}: {e}"
        # A finished transaction leaves the session clean (RFC 5321 §4.1.1.4): no RSET needed;
        # the client sent one itself when no recipient was accepted.
        self._pool.give(key, client)
        return self._settle(client.remote, rows, result)

    async def _send(
        self, client: Client, message: QueuedMessage, rows: list[QueuedRecipient]
    ) -> SendResult:
        env = message.envelope
        return await client.send(
            env.mail_from,
            [OutRecipient(r.address, r.notify, r.orcpt) for r in rows],
            message.spool_path,
            size=message.size + len(env.received),
            body=env.body,
            smtputf8=env.smtputf8,
            ret=env.ret,
            envid=env.envid,
            prefix=env.received,  # our trace field (RFC 5321 §4.4); the spool file lacks it
        )

    def _settle(
        self, remote: str, rows: list[QueuedRecipient], result: SendResult
    ) -> tuple[list[Attempt], list[QueuedRecipient], str]:
        done: list[Attempt] = []
        left: list[QueuedRecipient] = []
        last = ""
        for row, r in zip(rows, result.recipients, strict=True):
            said = r.diagnostic().removeprefix("smtp; ")
            reply = f"{r.dsn_status} {remote} said: {said}"
            if r.accepted:
                log.info("outbound.delivered", to=row.address, remote=remote)
                done.append(
                    Attempt(
                        row.id,
                        Status.DELIVERED,
                        reply,
                        remote=remote,
                        dsn_relayed=result.dsn_relayed,
                    )
                )
            elif r.temporary:
                left.append(row)
                last = reply
            else:
                done.append(Attempt(row.id, Status.FAILED, reply, remote=remote))
        return done, left, last
