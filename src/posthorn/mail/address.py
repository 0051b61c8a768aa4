"""Mail addresses as SMTP envelopes and the command line use them: parse, normalise, render.

Pure code, no I/O. Everything that names a mailbox in posthorn (RCPT TO, MAIL FROM, AUTH
identities, `posthorn user add`) goes through `parse_address`, so one set of rules decides what
an address is and which spellings are the same key.

Grammar (RFC 5321 §4.1.2, extended for internationalised mail by RFC 6531 §3.3)::

    Mailbox      = Local-part "@" ( Domain / address-literal )
    Local-part   = Dot-string / Quoted-string
    Dot-string   = Atom *("." Atom)            ; atext as RFC 5322, plus UTF8-non-ascii
    Quoted-string = DQUOTE *(qtextSMTP / quoted-pairSMTP) DQUOTE

Invariants of a parsed `Address`:

- ``local`` is the *content* of the local part: quotes and backslash escapes removed, so
  ``"john"@x`` and ``john@x`` give the same value (RFC 5322 §3.4.1: the forms are equivalent).
  Its original letter case is kept, because a remote server may treat case as significant
  (RFC 5321 §2.4); `Address.canonical` is the lower-cased key *we* use for our own accounts.
- ``domain`` is lower-case ASCII: A-labels for IDNs (IDNA2008 with the UTS #46 mapping, RFC 5890
  / 5891), so ``Bücher.example`` and ``xn--bcher-kva.example`` are the same value; or a
  normalised address literal such as ``[192.0.2.1]`` / ``[IPv6:2001:db8::1]`` (RFC 5321 §4.1.3).
- Rendered lengths are within RFC 5321 §4.5.3.1: local part ≤ 64 octets, domain ≤ 255 octets
  (in practice 253 characters, the DNS name limit that idna enforces), path
  (``<local@domain>``) ≤ 256 octets, all measured on the rendered UTF-8/A-label form, so
  ``parse_address(str(a)) == a`` always holds.

Relay tricks: source routes (``@a,@b:user@c``) are refused with `SourceRouteError`; an unquoted
second ``@`` is refused; ``%``, ``!`` and a quoted ``@`` in a local part are legal syntax and are
flagged by `Address.has_routing_chars` so the SMTP layer can refuse them for relaying.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

import idna

__all__ = [
    "MAX_DOMAIN_OCTETS",
    "MAX_LOCAL_OCTETS",
    "MAX_PATH_OCTETS",
    "Address",
    "AddressError",
    "AddressTooLong",
    "SourceRouteError",
    "domain_to_unicode",
    "normalize_domain",
    "parse_address",
    "parse_address_bytes",
    "render_local",
    "split_plus",
]

MAX_LOCAL_OCTETS: Final = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN_OCTETS: Final = 255  # RFC 5321 §4.5.3.1.2
MAX_PATH_OCTETS: Final = 256  # RFC 5321 §4.5.3.1.3, angle brackets included
_MAX_INPUT_CHARS: Final = 1024  # refuse absurd input before doing any real work

# RFC 5322 §3.2.3 atext, ASCII part; RFC 6531 §3.3 adds every non-ASCII character.
_ATEXT_ASCII: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~"
)
_ROUTING_CHARS: Final = frozenset("%!@")
_LDH_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")


class AddressError(ValueError):
    """The text is not an acceptable mailbox; the message names the problem."""


class AddressTooLong(AddressError):
    """A part exceeds the RFC 5321 §4.5.3.1 size limits."""


class SourceRouteError(AddressError):
    """The path carries a source route (``@a,@b:user@c``, RFC 5321 §4.1.2 ``A-d-l``).

    RFC 5321 Appendix C lets a server strip the route; posthorn refuses it instead. ``route``
    and ``mailbox`` hold the two halves as given, in case a caller wants to decide otherwise.
    """

    def __init__(self, message: str, route: str, mailbox: str) -> None:
        super().__init__(message)
        self.route = route
        self.mailbox = mailbox


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox ``local@domain``. Build it with `parse_address`; the constructor trusts its
    arguments to satisfy the module invariants.

    Equality is exact on ``local`` (remote local parts are case-sensitive, RFC 5321 §2.4); use
    `canonical` as the key for our own accounts and aliases.
    """

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{render_local(self.local)}@{self.domain}"

    @property
    def canonical(self) -> str:
        """The directory key: local part lower-cased (and NFC-normalised), A-label domain.

        Local parts are compared case-insensitively for our own mailboxes, as typical
        Postfix/Dovecot setups do; RFC 5321 §2.4 allows the receiving host to decide.
        """
        folded = unicodedata.normalize("NFC", self.local.lower())
        return f"{render_local(folded)}@{self.domain}"

    @property
    def domain_unicode(self) -> str:
        """The domain with U-labels, for display (address literals unchanged)."""
        return domain_to_unicode(self.domain)

    @property
    def display(self) -> str:
        """``local@domain`` with a Unicode domain, for people rather than protocols."""
        return f"{render_local(self.local)}@{self.domain_unicode}"

    @property
    def is_ascii(self) -> bool:
        """True when the address can travel without SMTPUTF8 (RFC 6531 §3.4).

        The domain is always ASCII here (A-labels), so only the local part decides.
        """
        return self.local.isascii()

    @property
    def is_literal(self) -> bool:
        """True for an address literal domain such as ``[192.0.2.1]``."""
        return self.domain.startswith("[")

    @property
    def has_routing_chars(self) -> bool:
        """True when the local part holds ``%``, ``!`` or (quoted) ``@``.

        These are the old ``user%host@relay`` / ``host!user@relay`` routing conventions; a
        server that passes such an address on can be abused as a relay, so the SMTP layer
        refuses them for anything but local delivery.
        """
        return not _ROUTING_CHARS.isdisjoint(self.local)


def split_plus(local: str, sep: str = "+") -> tuple[str, str | None]:
    """Plus-addressing: ``"bob+lists"`` -> ``("bob", "lists")``, ``"bob"`` -> ``("bob", None)``.

    Splits at the first ``sep``. A local part that starts with ``sep`` has no base and is not
    split. ``"bob+"`` gives ``("bob", "")``: an empty tag, distinct from no tag.
    """
    if not sep:
        raise ValueError("the plus-addressing separator must not be empty")
    base, found, tag = local.partition(sep)
    if not found or not base:
        return local, None
    return base, tag


def parse_address_bytes(raw: bytes) -> Address:
    """`parse_address` for wire bytes: the named point where envelope bytes become text.

    RFC 6531 §3.3: non-ASCII in an address is UTF-8; anything else is refused here.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AddressError(
            f"address is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    return parse_address(text)


def parse_address(text: str) -> Address:
    """Parse ``local@domain`` (optionally inside ``<>``) into a normalised `Address`.

    Raises `AddressError` (or its subclasses `AddressTooLong`, `SourceRouteError`) with a
    message naming the problem, and nothing else. Surrounding whitespace is not stripped: the
    caller decides whether its input may carry any.
    """
    if len(text) > _MAX_INPUT_CHARS:
        raise AddressTooLong(f"address is too long ({len(text)} characters)")
    inner = _strip_angle_brackets(text)
    if inner.startswith("@"):
        _refuse_source_route(inner)
    if inner.startswith('"'):
        local, domain_text = _split_quoted(inner)
    else:
        local, domain_text = _split_dot_string(inner)
    domain = normalize_domain(domain_text)
    rendered = render_local(local)
    local_octets = len(rendered.encode("utf-8"))
    if local_octets > MAX_LOCAL_OCTETS:
        raise AddressTooLong(
            f"local part is too long ({local_octets} octets, at most {MAX_LOCAL_OCTETS})"
        )
    path_octets = local_octets + len(domain) + 3  # "<" local "@" domain ">"
    if path_octets > MAX_PATH_OCTETS:
        raise AddressTooLong(
            f"address is too long ({path_octets} octets with <>, at most {MAX_PATH_OCTETS})"
        )
    return Address(local, domain)


def render_local(local: str) -> str:
    """The wire form of a local part: a dot-string when possible, else a quoted string.

    RFC 5321 §4.1.2: the quoted form SHOULD NOT be used unless necessary.
    """
    if _is_dot_string(local):
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def normalize_domain(text: str) -> str:
    """A domain (or address literal) in its canonical form: lower-case A-labels.

    RFC 5890/5891 via the ``idna`` package (IDNA2008, UTS #46 mapping on), so every spelling
    of one name gives one string. Raises `AddressError` naming the problem.
    """
    if not text:
        raise AddressError("empty domain")
    if len(text) > _MAX_INPUT_CHARS:
        raise AddressTooLong(f"domain is too long ({len(text)} characters)")
    if text.startswith("["):
        return _normalize_literal(text)
    if text.endswith("."):
        # RFC 5321 §4.1.2 Domain has no trailing dot (it would be an absolute DNS name).
        raise AddressError(f"bad domain {_shorten(text)}: trailing dot")
    try:
        ascii_domain = idna.encode(text, uts46=True).decode("ascii")
    except (UnicodeError, ValueError) as exc:  # idna.IDNAError is a UnicodeError
        # idna enforces 63-octet labels and the 253-character DNS name limit itself.
        kind = AddressTooLong if "too long" in str(exc) else AddressError
        raise kind(f"bad domain {_shorten(text)}: {exc}") from None
    # RFC 5321 §4.1.2 sub-domain = Let-dig [Ldh-str]; idna's own checks are not all STD3.
    for label in ascii_domain.split("."):
        if not _LDH_LABEL.match(label):
            raise AddressError(
                f"bad domain {_shorten(text)}: label {label!r} is not letters/digits/hyphens"
            )
    if len(ascii_domain) > MAX_DOMAIN_OCTETS:
        raise AddressTooLong(
            f"domain is too long ({len(ascii_domain)} octets, at most {MAX_DOMAIN_OCTETS})"
        )
    return ascii_domain


def domain_to_unicode(domain: str) -> str:
    """U-label form of a normalised domain, for display; falls back to the input if odd."""
    if domain.startswith("[") or "xn--" not in domain:
        return domain
    try:
        return idna.decode(domain)
    except (UnicodeError, ValueError):
        return domain


# --- internals --------------------------------------------------------------------------------


def _strip_angle_brackets(text: str) -> str:
    if not text:
        raise AddressError("empty address")
    if text.startswith("<") or text.endswith(">"):
        if not (text.startswith("<") and text.endswith(">")):
            raise AddressError("unbalanced angle brackets")
        text = text[1:-1]
        if not text:
            raise AddressError("empty address (<> is the null path, not a mailbox)")
    return text


def _refuse_source_route(inner: str) -> None:
    # RFC 5321 §4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">"; A-d-l = At-domain *( "," At-domain )
    route, colon, mailbox = inner.partition(":")
    if colon:
        raise SourceRouteError(
            f"source routes are not accepted ({route}:); send to {mailbox!r} directly",
            route=route,
            mailbox=mailbox,
        )
    raise AddressError("empty local part")


def _split_quoted(inner: str) -> tuple[str, str]:
    """Quoted-string local part (RFC 5321 §4.1.2, RFC 6531 §3.3): returns (content, domain)."""
    out: list[str] = []
    i = 1
    n = len(inner)
    while i < n:
        c = inner[i]
        if c == '"':
            break
        if c == "\\":
            # quoted-pairSMTP = %d92 %d32-126
            if i + 1 >= n or not (" " <= inner[i + 1] <= "~"):
                raise AddressError("bad backslash escape in quoted local part")
            out.append(inner[i + 1])
            i += 2
            continue
        # qtextSMTP = %d32-33 / %d35-91 / %d93-126 / UTF8-non-ascii
        if not (" " <= c <= "~" or _is_allowed_non_ascii(c)):
            raise AddressError(f"character {_describe(c)} not allowed in quoted local part")
        out.append(c)
        i += 1
    else:
        raise AddressError("unterminated quoted local part")
    rest = inner[i + 1 :]
    if not rest.startswith("@"):
        raise AddressError("expected '@' after quoted local part")
    local = "".join(out)
    if not local:
        raise AddressError("empty local part")
    return local, rest[1:]


def _split_dot_string(inner: str) -> tuple[str, str]:
    """Dot-string local part: returns (local, domain text)."""
    local, at, domain_text = inner.rpartition("@")
    if not at:
        raise AddressError(f"no '@' in {_shorten(inner)}")
    if not local:
        raise AddressError("empty local part")
    if "@" in local:
        raise AddressError("more than one '@' (an '@' in a local part must be quoted)")
    for c in local:
        if c != "." and c not in _ATEXT_ASCII and not _is_allowed_non_ascii(c):
            raise AddressError(f"character {_describe(c)} not allowed in local part")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise AddressError("local part starts or ends with '.' or has '..'")
    return local, domain_text


def _is_dot_string(local: str) -> bool:
    if not local or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return all(c == "." or c in _ATEXT_ASCII or _is_allowed_non_ascii(c) for c in local)


def _is_allowed_non_ascii(c: str) -> bool:
    # RFC 6531 §3.3 UTF8-non-ascii: any non-ASCII character that UTF-8 can carry. We also
    # refuse C1 controls (category Cc) and lone surrogates (Cs), which are never mail text.
    return c >= "\x80" and unicodedata.category(c) not in ("Cc", "Cs")


def _shorten(text: str) -> str:
    """``repr`` for an error message, cut to a readable length."""
    return repr(text) if len(text) <= 60 else repr(text[:57]) + "..."


def _describe(c: str) -> str:
    return f"{c!r} (U+{ord(c):04X})"


def _normalize_literal(text: str) -> str:
    """RFC 5321 §4.1.3 address-literal: ``[IPv4]`` or ``[IPv6:addr]``; general ones refused."""
    if not text.endswith("]") or len(text) < 3:
        raise AddressError(f"bad address literal {_shorten(text)}")
    body = text[1:-1]
    if body[:5].lower() == "ipv6:":
        v6 = body[5:]
        if "%" in v6:
            raise AddressError(f"bad address literal {_shorten(text)}: zone index not allowed")
        try:
            return f"[IPv6:{ipaddress.IPv6Address(v6).compressed}]"
        except ValueError as exc:
            raise AddressError(f"bad address literal {_shorten(text)}: {exc}") from None
    if ":" in body:
        raise AddressError(f"unsupported address literal {_shorten(text)} (only IPv4 and IPv6:)")
    try:
        return f"[{ipaddress.IPv4Address(body)}]"
    except ValueError as exc:
        raise AddressError(f"bad address literal {_shorten(text)}: {exc}") from None
