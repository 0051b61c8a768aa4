"""A real DNS server on loopback for tests, built on dnslib (UDP and TCP on one port).

It acts as a recursive resolver for a tiny in-memory zone: names it knows get their records
(CNAMEs chased for the asker, as a recursive server does), names it does not know get
NXDOMAIN, and names can be made to fail with an rcode or to never answer (a timeout).
It runs in background threads of the test process, so sync tests, async tests and
``posthorn serve`` subprocesses (``[outbound] nameservers = [dns.address]``) can all query it.
It binds 127.0.0.1 only: no test ever reaches real DNS.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib import DNSError as DNSLibError
from dnslib.server import DNSHandler, DNSLogger, DNSServer

_MAX_CNAME_CHAIN = 8

Records = Mapping[str, Iterable[tuple[str, str]]]


def _key(name: str) -> str:
    return name.strip().rstrip(".").lower()


class _Quiet(DNSLogger):  # type: ignore[misc]
    """dnslib logs every packet to stdout by default; tests want silence."""

    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data")


class _Zone:
    """The dnslib resolver: answers from the FakeDNS's tables (called from server threads)."""

    def __init__(self, owner: FakeDNS) -> None:
        self.owner = owner

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        qname = _key(str(request.q.qname))
        qtype = QTYPE[request.q.qtype]
        return self.owner._answer(request, qname, qtype, handler.protocol)


class _Handler(DNSHandler):  # type: ignore[misc]
    """DNSHandler whose truncated UDP answers keep the question section.

    dnslib's own ``truncate()`` drops it, and dnspython rightly rejects an answer that does
    not echo the question (RFC 1035 §4.1.1: TC set, the rest as much as fits).
    """

    udplen = 0

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply: DNSRecord = self.server.resolver.resolve(request, self)
        packed: bytes = reply.pack()
        if self.protocol == "udp" and self.udplen and len(packed) > self.udplen:
            short = DNSRecord(header=reply.header, q=request.q)
            short.header.tc = 1
            packed = short.pack()
        return packed


class FakeDNS:
    """A loopback DNS server serving ``records``; use as a context manager or start()/stop().

    ``records`` maps lower-case names to ``(type, zone-file rdata)`` pairs, e.g.
    ``{"b.test": [("MX", "10 mx1.b.test")], "mx1.b.test": [("A", "127.0.0.2")]}``;
    ``("MX", "0 .")`` is a null MX. A name present with an empty list exists but has no
    records (NOERROR/NODATA); a name not present is NXDOMAIN.

    ``ttl`` is every record's TTL and, through an SOA in the authority section, the negative
    caching time (RFC 2308 §5). The default 0 makes a long-lived resolver (a ``posthorn
    serve`` process) see set()/delete() at once; without an SOA dnspython would cache a
    negative answer for 300 s. ``udp_limit`` (bytes, 0 = none) truncates larger UDP answers
    so the client must retry over TCP.
    """

    def __init__(self, records: Records | None = None, *, ttl: int = 0, udp_limit: int = 0) -> None:
        self._lock = threading.Lock()
        self._ttl = ttl
        # RFC 2308 §3: negative answers carry the SOA; the root is an ancestor of every name.
        self._soa = RR.fromZone(f". {ttl} IN SOA fake-dns.test. hostmaster.test. 1 60 60 60 {ttl}")
        self._records: dict[str, list[RR]] = {}
        # keyed by (name, qtype); qtype "*" matches every type
        self._failures: dict[tuple[str, str], str] = {}
        self._dropped: set[tuple[str, str]] = set()
        self.queries: list[tuple[str, str]] = []
        self.tcp_queries: list[tuple[str, str]] = []
        self._udp_limit = udp_limit
        self._servers: list[DNSServer] = []
        self._threads: list[threading.Thread] = []
        self.port = 0
        for name, rrs in (records or {}).items():
            self.set(name, rrs)

    # -- the zone -------------------------------------------------------------------------

    def set(self, name: str, rrs: Iterable[tuple[str, str]]) -> None:
        """Replace the records of ``name`` (and clear any fail()/drop() on it)."""
        key = _key(name)
        parsed: list[RR] = []
        for rtype, rdata in rrs:
            zone_line = f"{key or '.'}. {self._ttl} IN {rtype.upper()} {rdata}"
            try:
                parsed.extend(RR.fromZone(zone_line))
            except Exception as exc:
                raise ValueError(f"bad record for {name!r}: {rtype} {rdata!r}: {exc}") from exc
        with self._lock:
            self._records[key] = parsed
            self._clear(key)

    def delete(self, name: str) -> None:
        """Forget ``name`` entirely: it answers NXDOMAIN from now on."""
        key = _key(name)
        with self._lock:
            self._records.pop(key, None)
            self._clear(key)

    def _clear(self, key: str) -> None:
        for entry in [e for e in self._failures if e[0] == key]:
            del self._failures[entry]
        self._dropped = {e for e in self._dropped if e[0] != key}

    def fail(self, name: str, rcode: str = "SERVFAIL", qtype: str = "*") -> None:
        """Answer queries for ``name`` (of ``qtype``, default all) with ``rcode``.

        ``rcode`` is a name such as SERVFAIL, REFUSED or NXDOMAIN.
        """
        if rcode.upper() not in RCODE.reverse:
            raise ValueError(f"unknown rcode {rcode!r}")
        with self._lock:
            self._failures[(_key(name), qtype.upper())] = rcode.upper()

    def drop(self, name: str, qtype: str = "*") -> None:
        """Never answer queries for ``name`` (of ``qtype``, default all): a client timeout."""
        with self._lock:
            self._dropped.add((_key(name), qtype.upper()))

    def _answer(self, request: DNSRecord, qname: str, qtype: str, protocol: str) -> DNSRecord:
        with self._lock:
            self.queries.append((qname, qtype))
            if protocol == "tcp":
                self.tcp_queries.append((qname, qtype))
            if (qname, qtype) in self._dropped or (qname, "*") in self._dropped:
                # DNSHandler catches dnslib's DNSError and sends nothing back.
                raise DNSLibError(f"dropped query for {qname}")
            reply = request.reply()
            failure = self._failures.get((qname, qtype)) or self._failures.get((qname, "*"))
            if failure is not None:
                reply.header.rcode = getattr(RCODE, failure)
                return reply
            name, wanted = qname, []
            for _ in range(_MAX_CNAME_CHAIN):
                rrs = self._records.get(name)
                if rrs is None:
                    reply.header.rcode = RCODE.NXDOMAIN
                    break
                wanted = [rr for rr in rrs if qtype in ("ANY", QTYPE[rr.rtype])]
                cnames = [rr for rr in rrs if rr.rtype == QTYPE.CNAME]
                if wanted or not cnames:
                    for rr in wanted:
                        reply.add_answer(rr)
                    break
                # RFC 1034 §3.6.2: a recursive server returns the CNAME and chases its target.
                reply.add_answer(cnames[0])
                name = _key(str(cnames[0].rdata.label))
            if not wanted:
                reply.add_auth(*self._soa)
            return reply

    # -- the server -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the form posthorn's ``[outbound] nameservers`` takes."""
        if not self.port:
            raise RuntimeError("FakeDNS is not started")
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeDNS:
        """Bind UDP and TCP on one ephemeral loopback port and serve in daemon threads."""
        if self._servers:
            return self
        handler: Any = type("_LimitedHandler", (_Handler,), {"udplen": self._udp_limit})
        zone, logger = _Zone(self), _Quiet()
        for _ in range(50):
            udp = DNSServer(zone, address="127.0.0.1", port=0, logger=logger, handler=handler)
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    zone, address="127.0.0.1", port=port, tcp=True, logger=logger, handler=handler
                )
            except OSError as exc:
                udp.server.server_close()
                if exc.errno == errno.EADDRINUSE:
                    continue  # the TCP twin of this UDP port is taken: pick another port
                raise
            break
        else:
            raise RuntimeError("no loopback port free for both UDP and TCP")
        for server in (udp, tcp):
            # A short poll interval makes stop() take milliseconds instead of half a second.
            thread = threading.Thread(
                target=server.server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name=f"fake-dns-{port}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        self._servers = [udp, tcp]
        self.port = port
        return self

    def stop(self) -> None:
        """Stop serving and close both sockets; safe to call twice."""
        for server in self._servers:
            server.stop()
            server.server.server_close()
        for thread in self._threads:
            thread.join()
        self._servers, self._threads = [], []

    def __enter__(self) -> FakeDNS:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
