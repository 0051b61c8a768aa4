"""MX and address lookups for outbound mail, on dnspython's async resolver.

Owns the translation from DNS answers to the two things outbound delivery needs: the ordered
list of mail exchangers for a domain (RFC 5321 §5.1, RFC 7505) and the addresses of one of
them. Every failure is a `DNSError` that says whether to retry later and which RFC 3463
status to report; anything not known to be permanent is temporary, so a resolver hiccup
defers mail instead of bouncing it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import idna

# RFC 3463 status codes reported for DNS outcomes.
STATUS_NULL_MX = "5.1.10"  # RFC 7505 §3 null MX; X.1.10 registered by RFC 7505 §6
STATUS_NO_DOMAIN = "5.1.2"  # RFC 3463 §3.2 X.1.2 bad destination system address
STATUS_NO_ROUTE = "5.4.4"  # RFC 3463 §3.5 X.4.4 unable to route
STATUS_DNS_TEMPFAIL = "4.4.3"  # RFC 3463 §3.5 X.4.3 directory server failure

DEFAULT_PORT = 53
# dnspython's own per-server default; the whole lookup is bounded by ``timeout`` (lifetime).
_PER_SERVER_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class MXHost:
    """One mail exchanger to try, in order.

    ``host`` is lower-case A-labels without the trailing dot; for an implicit MX
    (RFC 5321 §5.1, no MX records) it is the domain itself and ``implicit`` is true.
    """

    preference: int
    host: str
    implicit: bool = False


class DNSError(Exception):
    """A lookup that gave no usable answer.

    ``temporary``: retry later (SERVFAIL, REFUSED, timeout, no server answered); otherwise
    permanent (NXDOMAIN, null MX, no MX and no address). ``status`` is the RFC 3463 code to
    report; ``message`` a short human text naming the domain, fit for a DSN.
    """

    def __init__(self, message: str, *, temporary: bool, status: str) -> None:
        super().__init__(message)
        self.message = message
        self.temporary = temporary
        self.status = status

    def __repr__(self) -> str:
        return f"DNSError({self.message!r}, temporary={self.temporary!r}, status={self.status!r})"


class MailResolver(Protocol):
    """What outbound delivery needs from DNS; `Resolver` is the real one, tests may fake it.

    Both methods raise `DNSError` only; names may be U-labels, any case, with a final dot.
    """

    async def mx(self, domain: str) -> list[MXHost]:
        """Mail exchangers in the order to try them (never empty: failures raise)."""
        ...

    async def addresses(self, host: str) -> list[str]:
        """IP addresses of one exchanger, ``[]`` if it has none (try the next one)."""
        ...


def parse_nameserver(text: str) -> tuple[str, int]:
    """Split ``addr``, ``addr:port``, ``[v6]:port`` or a bare IPv6 address into (addr, port).

    Only IP addresses are accepted: a resolver's own address cannot need DNS to find.
    Raises ValueError naming the bad string.
    """
    spec = text.strip()
    port_text = ""
    if spec.startswith("["):
        addr, sep, rest = spec[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"nameserver {text!r}: expected [IPv6]:port")
        port_text = rest[1:] if rest else ""
        if rest and not port_text:
            raise ValueError(f"nameserver {text!r}: empty port")
    elif spec.count(":") == 1:
        addr, _, port_text = spec.partition(":")
        if not port_text:
            raise ValueError(f"nameserver {text!r}: empty port")
    else:
        addr = spec  # IPv4 without a port, or a bare IPv6 address (port 53)
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise ValueError(f"nameserver {text!r}: {addr!r} is not an IP address") from None
    if spec.startswith("[") and ip.version != 6:
        raise ValueError(f"nameserver {text!r}: brackets are for IPv6 addresses")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"nameserver {text!r}: port must be 1-65535")
        port = int(port_text)
    return str(ip), port


def to_dns_name(domain: str) -> dns.name.Name:
    """The absolute DNS name of a mail domain; a U-label domain becomes A-labels (RFC 5891).

    Raises a permanent `DNSError` (5.1.2) for a name that cannot be a host name.
    """
    text = domain.strip().rstrip(".")
    try:
        if not text.isascii():
            text = idna.encode(text, uts46=True).decode("ascii")
        if not text:
            raise ValueError("empty name")
        return dns.name.from_text(text.lower(), origin=dns.name.root)
    except (UnicodeError, ValueError, dns.exception.DNSException) as exc:
        raise DNSError(
            f"bad domain name {domain!r}: {exc}", temporary=False, status=STATUS_NO_DOMAIN
        ) from None


def _host_text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _temporary(domain: str, exc: BaseException) -> DNSError:
    if isinstance(exc, dns.exception.Timeout):
        why = "timed out"
    elif isinstance(exc, dns.resolver.NoNameservers):
        why = "failed: no name server answered (SERVFAIL or REFUSED)"
    else:
        why = f"failed ({type(exc).__name__})"
    return DNSError(f"DNS lookup for {domain} {why}", temporary=True, status=STATUS_DNS_TEMPFAIL)


class Resolver:
    """MX and A/AAAA lookups for outbound delivery; one instance is shared by all deliveries.

    ``nameservers`` are ``"addr"``, ``"addr:port"`` or ``"[v6]:port"`` strings; empty means
    the system's ``/etc/resolv.conf``. ``timeout`` bounds each whole lookup (all servers and
    retries). Queries go over UDP and are repeated over TCP when the answer is truncated
    (dnspython does this). ``rng`` shuffles equal MX preferences; seed it for repeatable
    tests. A small cache is kept because every message to a domain repeats its MX lookup;
    ``cache_size=0`` turns it off.
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = 5.0,
        rng: random.Random | None = None,
        cache_size: int = 1024,
    ) -> None:
        if isinstance(nameservers, str):
            raise TypeError("nameservers must be a sequence of strings, not one string")
        servers = [parse_nameserver(s) for s in nameservers]
        resolver = dns.asyncresolver.Resolver(configure=not servers)
        if servers:
            # Per-server ports need Nameserver objects (dnspython >= 2.4).
            resolver.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in servers]
        # Mail domains are absolute (RFC 5321 §2.3.5): never append search domains.
        resolver.search = []
        resolver.use_search_by_default = False
        resolver.lifetime = timeout
        resolver.timeout = min(_PER_SERVER_TIMEOUT, timeout)
        resolver.cache = dns.resolver.LRUCache(cache_size) if cache_size > 0 else None
        self._resolver = resolver
        self._rng = rng if rng is not None else random.Random()  # not for crypto

    @property
    def nameservers(self) -> list[str]:
        """The servers in use, as ``addr:port`` / ``[v6]:port`` (for logs and tests)."""
        out = []
        for ns in self._resolver.nameservers:
            if isinstance(ns, dns.nameserver.Do53Nameserver):
                host = f"[{ns.address}]" if ":" in ns.address else ns.address
                out.append(f"{host}:{ns.port}")
            else:
                out.append(str(ns))
        return out

    async def mx(self, domain: str) -> list[MXHost]:
        """The mail exchangers of ``domain``, in the order to try them.

        RFC 5321 §5.1: sorted by preference, equal preferences in random order; no MX
        records means the domain itself (implicit MX) if it has an address. A CNAME at the
        domain is followed. Raises `DNSError`: permanent for NXDOMAIN (5.1.2), null MX
        (5.1.10), no MX and no address (5.4.4); temporary (4.4.3) otherwise.
        """
        name = to_dns_name(domain)
        shown = _host_text(name)
        try:
            answer = await self._resolver.resolve(name, dns.rdatatype.MX, search=False)
        except dns.resolver.NXDOMAIN:
            raise DNSError(
                f"domain {shown} does not exist (NXDOMAIN)",
                temporary=False,
                status=STATUS_NO_DOMAIN,
            ) from None
        except dns.resolver.NoAnswer:
            return await self._implicit_mx(shown)
        except dns.exception.DNSException as exc:
            raise _temporary(shown, exc) from None
        # RFC 5321 §5.1: MX ordering; duplicate exchanges keep their best preference.
        best: dict[str, int] = {}
        null_mx = False
        for rr in answer:
            if rr.exchange == dns.name.root:
                null_mx = True
                continue
            host = _host_text(rr.exchange)
            best[host] = min(rr.preference, best.get(host, rr.preference))
        # RFC 7505 §3: a lone MX whose exchange is "." (the root) means "accepts no mail".
        # A "." among real exchangers is a misconfiguration; it is skipped, not obeyed.
        if null_mx and not best:
            raise DNSError(
                f"domain {shown} does not accept mail (null MX)",
                temporary=False,
                status=STATUS_NULL_MX,
            )
        # RFC 5321 §5.1: "randomize" among equal preferences: a random secondary sort key.
        keyed = sorted((pref, self._rng.random(), host) for host, pref in best.items())
        return [MXHost(pref, host) for pref, _, host in keyed]

    async def _implicit_mx(self, domain: str) -> list[MXHost]:
        # RFC 5321 §5.1: no MX records → the domain itself, preference 0, if it has an address.
        if await self.addresses(domain):
            return [MXHost(0, domain, implicit=True)]
        raise DNSError(
            f"domain {domain} has no MX and no A/AAAA record",
            temporary=False,
            status=STATUS_NO_ROUTE,
        )

    async def addresses(self, host: str) -> list[str]:
        """The IP addresses of an MX host: its A records, then its AAAA records.

        Both are queried concurrently. NXDOMAIN or no records gives ``[]`` (the caller tries
        the next MX). A temporary failure of one family is ignored when the other has
        addresses; when neither gives any and one failed temporarily, raises a temporary
        `DNSError` (4.4.3). An IP address literal is returned as it is, without a query.
        """
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        name = to_dns_name(host)
        results = await asyncio.gather(
            self._family(name, dns.rdatatype.A),
            self._family(name, dns.rdatatype.AAAA),
            return_exceptions=True,
        )
        found: list[str] = []
        failure: BaseException | None = None
        for result in results:
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):  # CancelledError and friends
                    raise result
                failure = failure or result
            else:
                found.extend(a for a in result if a not in found)
        if not found and failure is not None:
            if isinstance(failure, DNSError):
                raise failure
            raise _temporary(_host_text(name), failure) from None
        return found

    async def _family(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> list[str]:
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise _temporary(_host_text(name), exc) from None
        return [rr.address for rr in answer]
