"""The DNS records an operator publishes so the world can send mail to a domain of ours.

Pure: no resolver, no I/O. The web admin (``GET /api/admin/dns/{domain}``) and the CLI
(``posthorn dns records DOMAIN``) both show what `records_for` returns, so the two can never
disagree. We only *say* what to publish; we never look at what is published, because the
answer would depend on caches and on where the question is asked from.

What is published, and why:

- **MX** ``DOMAIN. IN MX 10 HOSTNAME.``: RFC 5321 §5.1, senders deliver to the hosts in the
  domain's MX records. One MX, preference 10 (any number works with one host; 10 leaves room to
  add a backup either side).
- **SPF** ``DOMAIN. IN TXT "v=spf1 mx -all"``: RFC 7208, only the hosts named by the MX may
  send as the domain; ``-all`` asks receivers to reject the rest. Mail for the domain and mail
  from it go through the same server here, so ``mx`` names exactly the right hosts.
- **A / AAAA** ``HOSTNAME. IN A ADDRESS``: an MX must name a host with address records, never a
  CNAME (RFC 2181 §10.3, RFC 5321 §5.1). We only know an address when the server is told to
  listen on a specific one for SMTP (the ``listen.smtp`` setting); a wildcard or loopback
  listener says nothing about the public address, so then there is no hint.
- DKIM and DMARC follow when posthorn signs mail.

Names are absolute (trailing dot) A-labels, as a zone file needs them: a name without the dot
would be read relative to the zone's ``$ORIGIN`` and end up as ``example.org.example.org.``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from posthorn.mail.address import domain_to_unicode, normalize_domain

__all__ = ["MX_PREFERENCE", "SPF_POLICY", "DNSRecord", "hint_addresses", "records_for"]

MX_PREFERENCE: Final = 10
SPF_POLICY: Final = "v=spf1 mx -all"


@dataclass(frozen=True, slots=True)
class DNSRecord:
    """One record to publish. ``value`` is what a DNS provider's form asks for (TXT unquoted);
    `zone_line` is the same record as a line of a zone file."""

    type: str
    name: str  # absolute, A-labels, trailing dot
    value: str
    why: str

    def zone_line(self) -> str:
        # RFC 1035 §5.1: a TXT string with spaces is written as a quoted <character-string>.
        value = f'"{_escape_txt(self.value)}"' if self.type == "TXT" else self.value
        return f"{self.name} IN {self.type} {value}"

    def as_json(self) -> dict[str, str]:
        return {"type": self.type, "name": self.name, "value": self.value, "why": self.why}


def records_for(domain: str, hostname: str, addresses: Iterable[str] = ()) -> list[DNSRecord]:
    """The records for mail ``domain`` served by ``hostname`` (the server's own name), with an
    A/AAAA hint per entry of ``addresses`` (see `hint_addresses`).

    ``domain`` and ``hostname`` may come in any spelling (U-labels, any case, a trailing dot on
    the hostname); raises `posthorn.mail.address.AddressError` for a name that is not a domain.
    """
    zone = _absolute(normalize_domain(domain.removesuffix(".")))
    host = _absolute(normalize_domain(hostname.removesuffix(".")))
    shown = domain_to_unicode(zone[:-1])
    records = [
        DNSRecord(
            "MX",
            zone,
            f"{MX_PREFERENCE} {host}",
            f"mail for {shown} is delivered to {host[:-1]} (RFC 5321 §5.1)",
        ),
        DNSRecord(
            "TXT",
            zone,
            SPF_POLICY,
            f"SPF: only the MX hosts may send mail as {shown}; receivers may reject the rest"
            " (RFC 7208)",
        ),
    ]
    for text in addresses:
        address = ipaddress.ip_address(text)
        why = (
            f"{host[:-1]} must have an address (an MX names a host, never a CNAME: RFC 2181"
            " §10.3); this is the address posthorn listens on for SMTP"
        )
        if address.is_private:
            why += " — a private address: publish the public one instead if behind NAT"
        records.append(DNSRecord("A" if address.version == 4 else "AAAA", host, str(address), why))
    return records


def hint_addresses(listen_hosts: Iterable[str]) -> list[str]:
    """The specific addresses among the SMTP listeners' hosts, deduplicated, in order.

    Wildcards (``0.0.0.0``, ``::``), loopback, link-local and multicast addresses are left out:
    none of them is an address another MTA could reach us at.
    """
    found: list[str] = []
    for host in listen_hosts:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            continue
        if (
            address.is_unspecified
            or address.is_loopback
            or address.is_link_local
            or address.is_multicast
        ):
            continue
        if str(address) not in found:
            found.append(str(address))
    return found


def _absolute(name: str) -> str:
    return f"{name}."


def _escape_txt(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
