"""Recipient resolution: which of our accounts (and which remote addresses) a recipient means.

A pure function over three look-ups (`Lookup`), so it is tested with dictionaries and used by
`DirectoryDB.resolve` with SQL behind the same three questions. Local delivery (aliases →
Sieve → quota → store) and the SMTP RCPT check both start here.

Matching one address in one of our domains, first hit wins (the order Postfix's virtual maps
use):

1. an alias whose source is exactly the address;
2. an account with exactly that address;
3. plus-addressing: ``bob+tag@d`` when 1 and 2 found nothing: an alias, then an account, for
   ``bob@d``; the tag is kept so delivery can file the message by it later;
4. the domain's catch-all alias ``@d``.

Aliases expand recursively; every target in a domain of ours is matched again, every other
target is a remote address (forwarding). Tags are not propagated to alias targets.

Invariants: the result is a value, never an exception, for any directory content —
a loop (an alias reached again through its own expansion, including a catch-all reached from
itself) gives `ResolveStatus.LOOP`, a chain of more than `MAX_ALIAS_DEPTH` nested aliases gives
`ResolveStatus.TOO_DEEP`; both deliver to nobody and name the chain in ``detail``. Each account
appears at most once in ``local`` (first tag wins) and each remote address once in ``remote``;
an alias reached twice through different branches is expanded once. Keys handed to `Lookup`
are `Address.canonical` strings or ``"@" + domain``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from posthorn.mail.address import Address, AddressError, parse_address, split_plus

__all__ = [
    "MAX_ALIAS_DEPTH",
    "LocalTarget",
    "Lookup",
    "Resolution",
    "ResolveStatus",
    "resolve",
]

MAX_ALIAS_DEPTH: Final = 10


class Lookup(Protocol):
    """The three questions resolution asks. Implementations must not raise for unknown keys."""

    def is_local_domain(self, domain: str) -> bool:
        """``domain`` (normalised A-label form) is one of ours."""
        ...

    def is_account(self, address: str) -> bool:
        """An account exists with this canonical address."""
        ...

    def alias_targets(self, source: str) -> Sequence[str]:
        """Targets of the alias ``source`` (canonical address or ``"@domain"``); empty if none."""
        ...


class ResolveStatus(enum.Enum):
    OK = "ok"  # at least one local account or remote address to deliver to
    FOREIGN = "foreign"  # the recipient's domain is not ours: a relay question, not ours here
    UNKNOWN = "unknown"  # our domain, but nothing matched (or every alias target is unknown)
    LOOP = "loop"  # alias loop
    TOO_DEEP = "too_deep"  # more than MAX_ALIAS_DEPTH nested aliases


@dataclass(frozen=True, slots=True)
class LocalTarget:
    """Deliver to ``account`` (canonical address); ``tag`` is the plus tag that reached it."""

    account: str
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    recipient: Address
    status: ResolveStatus
    tag: str | None = None
    """The recipient's own plus tag when rule 3 matched it, else None."""
    local: tuple[LocalTarget, ...] = ()
    remote: tuple[str, ...] = ()
    """Remote targets as ``str(Address)``: local-part case kept (RFC 5321 §2.4)."""
    unknown: tuple[str, ...] = ()
    """Addresses in our domains that matched nothing (the recipient, or alias members)."""
    detail: str = ""
    """For LOOP / TOO_DEEP: the alias chain, for the log."""

    @property
    def is_local_domain(self) -> bool:
        return self.status is not ResolveStatus.FOREIGN

    @property
    def deliverable(self) -> bool:
        return self.status is ResolveStatus.OK


class _Stop(Exception):
    def __init__(self, status: ResolveStatus, chain: tuple[str, ...]) -> None:
        super().__init__(status.value)
        self.status = status
        self.chain = chain


@dataclass(frozen=True, slots=True)
class _Match:
    kind: str  # "account" | "alias" | "none"
    key: str
    tag: str | None = None
    targets: Sequence[str] = ()


@dataclass(slots=True)
class _Expansion:
    lookup: Lookup
    sep: str
    max_depth: int
    local: dict[str, LocalTarget] = field(default_factory=dict)
    remote: dict[str, None] = field(default_factory=dict)
    unknown: dict[str, None] = field(default_factory=dict)
    expanded: set[str] = field(default_factory=set)

    def match(self, address: Address) -> _Match:
        key = address.canonical
        found = self._exact(key)
        if found is not None:
            return found
        base, tag = split_plus(address.local, self.sep)
        if tag is not None:
            found = self._exact(Address(base, address.domain).canonical, tag)
            if found is not None:
                return found
        catch_all = "@" + address.domain
        targets = self.lookup.alias_targets(catch_all)
        if targets:
            return _Match("alias", catch_all, None, targets)
        return _Match("none", key)

    def _exact(self, key: str, tag: str | None = None) -> _Match | None:
        targets = self.lookup.alias_targets(key)
        if targets:
            return _Match("alias", key, tag, targets)
        if self.lookup.is_account(key):
            return _Match("account", key, tag)
        return None

    def expand(self, address: Address, path: tuple[str, ...]) -> _Match:
        found = self.match(address)
        if found.kind == "account":
            self.local.setdefault(found.key, LocalTarget(found.key, found.tag))
        elif found.kind == "none":
            self.unknown[str(address)] = None
        elif found.key in path:
            raise _Stop(ResolveStatus.LOOP, (*path, found.key))
        elif len(path) >= self.max_depth:
            raise _Stop(ResolveStatus.TOO_DEEP, (*path, found.key))
        elif found.key not in self.expanded:
            self.expanded.add(found.key)
            for text in found.targets:
                self._target(text, (*path, found.key))
        return found

    def _target(self, text: str, path: tuple[str, ...]) -> None:
        try:
            target = parse_address(text)
        except AddressError:
            # Stored targets are validated on the way in; a bad one is reported, not fatal.
            self.unknown[text] = None
            return
        if self.lookup.is_local_domain(target.domain):
            self.expand(target, path)
        else:
            self.remote[str(target)] = None


def resolve(
    recipient: Address,
    lookup: Lookup,
    *,
    sep: str = "+",
    max_depth: int = MAX_ALIAS_DEPTH,
) -> Resolution:
    """Resolve ``recipient`` against ``lookup``; see the module docstring for the rules."""
    if not lookup.is_local_domain(recipient.domain):
        return Resolution(recipient, ResolveStatus.FOREIGN)
    state = _Expansion(lookup, sep, max_depth)
    try:
        top = state.expand(recipient, ())
    except _Stop as stop:
        return Resolution(recipient, stop.status, detail=" -> ".join(stop.chain))
    status = ResolveStatus.OK if state.local or state.remote else ResolveStatus.UNKNOWN
    return Resolution(
        recipient,
        status,
        tag=top.tag,
        local=tuple(state.local.values()),
        remote=tuple(state.remote),
        unknown=tuple(state.unknown),
    )
