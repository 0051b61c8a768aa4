"""Admin input to directory keys: the checks every `DirectoryDB` operation starts with.

Each function turns text typed by an administrator (or sent by the web admin) into the stored
form of `posthorn.directory.schema`, or raises a `DirectoryError` whose message names the
problem. Pure: no database access, so a failure here costs no transaction.
"""

from __future__ import annotations

from posthorn.directory.errors import BadAddress, BadPasswordHash, BadSize
from posthorn.mail.address import Address, AddressError, normalize_domain, parse_address

__all__ = [
    "alias_source",
    "alias_target",
    "check_hash",
    "check_quota",
    "domain_name",
    "mailbox_key",
    "parse",
]


def parse(text: str) -> Address:
    """`parse_address`, with its error as `BadAddress`."""
    try:
        return parse_address(text)
    except AddressError as exc:
        raise BadAddress(f"bad address {text!r}: {exc}") from None


def mailbox_key(text: str, what: str) -> tuple[str, str]:
    """(canonical key, domain) for an account or alias source address."""
    parsed = parse(text)
    if parsed.is_literal:
        raise BadAddress(f"an {what} cannot be at an address literal ({text!r})")
    if parsed.has_routing_chars:
        raise BadAddress(f"an {what} address may not contain '%', '!' or '@' in the local part")
    return parsed.canonical, parsed.domain


def alias_source(text: str) -> tuple[str, str]:
    """(key, domain) for an alias source: an address, or ``@domain`` for a catch-all."""
    if text.startswith("@"):
        domain = domain_name(text[1:])
        return "@" + domain, domain
    return mailbox_key(text, "alias")


def alias_target(text: str) -> Address:
    """An alias target: always a full address, local or remote."""
    if text.startswith("@"):
        raise BadAddress(f"alias target {text!r} must be a full address (local@domain)")
    try:
        return parse_address(text)
    except AddressError as exc:
        raise BadAddress(f"bad alias target {text!r}: {exc}") from None


def domain_name(text: str) -> str:
    """A mail domain's stored form (A-labels); address literals are not mail domains."""
    try:
        domain = normalize_domain(text)
    except AddressError as exc:
        raise BadAddress(str(exc)) from None
    if domain.startswith("["):
        raise BadAddress(f"an address literal is not a mail domain ({text!r})")
    return domain


def check_quota(quota_bytes: int | None) -> None:
    """Quotas are bytes >= 0, or None for unlimited."""
    if quota_bytes is not None and quota_bytes < 0:
        raise BadSize(f"quota must not be negative ({quota_bytes})")


def check_hash(password_hash: str) -> None:
    """A hash handed in ready-made must be one `Hasher` can verify."""
    if not password_hash.startswith("$argon2"):
        raise BadPasswordHash("the password hash is not an argon2 hash ($argon2id$...)")
