"""The relay decision for one RCPT TO: deliver here, relay for the client, or refuse.

A pure function over facts the caller has already gathered — the parsed recipient, whether its
domain is one of ours (the directory's answer), whether the session is authenticated — that
returns a `Verdict` and never raises (STYLE.md: checks return verdicts). The caller turns a
DENIED verdict into ``550 5.7.1`` (RFC 5321 §3.6.2: a relay declined for policy reasons SHOULD
get 550; RFC 3463 §3.8: X.7.1 "delivery not authorized") and logs ``reason``, which names the
rule and is meant for the log rather than the wire.

The rules, in order (RFC 2505 §2.1's algorithm: our domains are accepted, authorized clients
may relay, everything else is refused):

1. **Routing tricks from strangers are refused**, even for our own domains. ``user%other@ours``
   (the "%-hack"), ``other!user@ours`` (UUCP bang path) and ``"user@other"@ours`` (a quoted
   ``@``) ask the receiving host to pass the mail on. RFC 2505 §2.1: the relay test must remove
   or take into account "all kinds of SMTP source routing (both the official [@a,@b:u@c], the
   '%' hack and uucp-style '!' path)". RFC 5321 §2.3.11 lets only our host give the local part
   meaning, and we give these none, but a host behind us (a smart host, a forwarding target)
   still might. Postfix refuses the same with ``allow_untrusted_routing = no``. Source routes
   proper (``@a,@b:user@c``, RFC 5321 §3.6.1 / §4.1.1.3 / Appendix C) never get here: address
   parsing refuses them (`posthorn.mail.address.SourceRouteError`).
2. **Our domains are delivered locally** (RFC 5321 §4.1.1.3: at its ultimate destination the
   server "inserts it into the destination mailbox in accordance with its host mail
   conventions"). For an authenticated client that includes local parts with routing
   characters: they are looked up literally and never re-routed.
3. **Authenticated clients may relay** anywhere: that is what submission is for (RFC 5321
   §3.6.3, RFC 6409 §4.3 — the MSA requires authentication).
4. **Everything else is refused** (RFC 2505 §2.1 step c, "Else refuse to Relay"; RFC 5321
   §3.6.2). This includes address literals (``user@[192.0.2.1]``) unless the caller counts the
   literal as one of ours (RFC 5321 §4.1.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from posthorn.mail.address import Address

__all__ = ["RelayDecision", "Verdict", "relay_verdict"]


class RelayDecision(StrEnum):
    """What to do with one recipient."""

    LOCAL = "local"  # one of our domains: resolve in the directory, deliver here
    RELAY_ALLOWED = "relay"  # someone else's domain, and the client may relay: queue outbound
    DENIED = "denied"  # refuse the RCPT (550 5.7.1)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A `RelayDecision` and the rule that made it, for the log (not for the wire).

    The decisions are also reachable from this class, so a caller can write
    ``verdict.verdict is Verdict.DENIED`` as well as ``verdict.decision is
    RelayDecision.DENIED``; both spellings name the same enum members.
    """

    LOCAL: ClassVar[RelayDecision] = RelayDecision.LOCAL
    RELAY_ALLOWED: ClassVar[RelayDecision] = RelayDecision.RELAY_ALLOWED
    DENIED: ClassVar[RelayDecision] = RelayDecision.DENIED

    decision: RelayDecision
    reason: str

    @property
    def verdict(self) -> RelayDecision:
        """The same as `decision`."""
        return self.decision

    @property
    def accepted(self) -> bool:
        """True unless the recipient must be refused."""
        return self.decision is not RelayDecision.DENIED


_ROUTING_DENIED = Verdict(
    RelayDecision.DENIED,
    "routing characters (% ! @) in the local part, client not authenticated",
)
_LOCAL = Verdict(RelayDecision.LOCAL, "local domain")
_RELAY_AUTHENTICATED = Verdict(RelayDecision.RELAY_ALLOWED, "client is authenticated")
_RELAY_DENIED = Verdict(RelayDecision.DENIED, "relay denied: domain not local, not authenticated")


def relay_verdict(rcpt: Address, *, local_domain: bool, authenticated: bool) -> Verdict:
    """Decide for one recipient; see the module docstring for the rules and their sources.

    ``local_domain`` is whether ``rcpt.domain`` is one of ours (``Directory.is_local_domain``);
    ``authenticated`` whether the session has completed AUTH (or is otherwise trusted).
    """
    # Rule 1 — RFC 2505 §2.1: account for the '%' hack, '!' paths and quoted '@' before
    # treating the domain as ours; Postfix allow_untrusted_routing = no.
    if not authenticated and rcpt.has_routing_chars:
        return _ROUTING_DENIED
    # Rule 2 — RFC 5321 §4.1.1.3: final destination, delivered by our own conventions.
    if local_domain:
        return _LOCAL
    # Rule 3 — RFC 5321 §3.6.3, RFC 6409 §4.3: authenticated submission may relay.
    if authenticated:
        return _RELAY_AUTHENTICATED
    # Rule 4 — RFC 2505 §2.1 c) "Else refuse to Relay"; RFC 5321 §3.6.2: 550.
    return _RELAY_DENIED
