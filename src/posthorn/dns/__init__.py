"""DNS lookups for mail: MX and address resolution for outbound delivery (RFC 5321 §5.1).

Built on dnspython's async resolver; nothing else in posthorn talks to DNS directly.
"""

from __future__ import annotations

from posthorn.dns.resolver import (
    STATUS_DNS_TEMPFAIL,
    STATUS_NO_DOMAIN,
    STATUS_NO_ROUTE,
    STATUS_NULL_MX,
    DNSError,
    MailResolver,
    MXHost,
    Resolver,
    parse_nameserver,
)

__all__ = [
    "STATUS_DNS_TEMPFAIL",
    "STATUS_NO_DOMAIN",
    "STATUS_NO_ROUTE",
    "STATUS_NULL_MX",
    "DNSError",
    "MXHost",
    "MailResolver",
    "Resolver",
    "parse_nameserver",
]
