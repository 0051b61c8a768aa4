"""SASL mechanisms as sans-I/O exchanges, shared by SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH.

This module owns the mechanism side of SASL (RFC 4422) and nothing else: it turns decoded client
responses into server challenges and, at the end, into `Credentials`. It never touches a socket
or the directory; the protocol layer owns the framing and calls `decode_response` on each client
line:

- SMTP (RFC 4954 §4): ``AUTH mech [initial]``; challenges go out as ``334 <base64>``.
- IMAP (RFC 9051 §6.2.2, RFC 4959 SASL-IR): ``AUTHENTICATE mech [initial]``; ``+ <base64>``.
- POP3 (RFC 5034 §4): ``AUTH mech [initial]``; ``+ <base64>``.

One exchange per attempt::

    exchange = new_exchange(mechanism)            # UnknownMechanism -> SMTP 504 5.5.4
    initial = decode_response(arg) if arg is not None else None
    result = exchange.start(initial)
    while isinstance(result, bytes):              # a challenge: send it base64-encoded
        result = exchange.step(decode_response(await read_line()))
    # SASLCancelled / SASLError -> SMTP 501 (RFC 4954 §4), IMAP BAD, POP3 -ERR
    if not authzid_allowed(result): ...           # refuse: we do not support proxy auth
    account = await directory.authenticate(result.authcid, result.password)

Invariants:

- `SASLError` messages are safe to log: they never contain the password, nor the raw client
  data that might hold one. `Credentials` leaves the password out of its ``repr``.
- Identities and passwords are UTF-8 (RFC 4616 §2); bytes that are not valid
  UTF-8 or that hold NUL are refused. Lengths are bounded (`MAX_IDENTITY_OCTETS`,
  `MAX_PASSWORD_OCTETS`).
- Strings are passed on as sent. We do not apply SASLprep (RFC 4013, RECOMMENDED by RFC 4616
  §2): the directory hashes and verifies passwords byte for byte, and preparing them here but
  not where they are set would lock out anyone whose password SASLprep changes.
- Calling `start` twice, or `step` before `start` or after the `Credentials` came back, is a
  bug in the caller and raises `RuntimeError`, not `SASLError`.

Mechanisms: PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login-00, obsolete but still what
many clients send). Both send the password in the clear: offer them only under TLS (RFC 4954
§4, RFC 9051 §6.2.2, RFC 8314). SCRAM-SHA-256 would need stored SCRAM keys; our hashes are
argon2, so it is not offered.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from posthorn.mail.address import AddressError, parse_address

__all__ = [
    "MAX_IDENTITY_OCTETS",
    "MAX_PASSWORD_OCTETS",
    "MAX_RESPONSE_LINE",
    "MECHANISMS",
    "Credentials",
    "Exchange",
    "LoginExchange",
    "PlainExchange",
    "SASLCancelled",
    "SASLError",
    "UnknownMechanism",
    "authzid_allowed",
    "decode_response",
    "new_exchange",
]

MECHANISMS: Final[tuple[str, ...]] = ("PLAIN", "LOGIN")

# RFC 4616 §2: servers MUST accept identities and passwords of up to 255 octets. We accept 255
# for identities (an address is at most 254, RFC 5321 §4.5.3.1.3) and more for passwords, which
# password managers make long.
MAX_IDENTITY_OCTETS: Final = 255
MAX_PASSWORD_OCTETS: Final = 1024
# One base64 client line, CRLF excluded: room for the largest PLAIN message (255 + 255 + 1024
# octets and two NULs, 2048 characters encoded) and then some. RFC 4954 §4 lets the AUTH
# command line itself reach 12288 octets; a line over this limit is refused before decoding.
MAX_RESPONSE_LINE: Final = 4096

_NUL: Final = b"\x00"
_State = Literal["new", "username", "password", "message", "done"]
# draft-murchison-sasl-login-00 §2 names the prompts "User Name" and "Password"; every
# deployed server sends these (and one widely used client insists on them).
_LOGIN_USERNAME_CHALLENGE: Final = b"Username:"
_LOGIN_PASSWORD_CHALLENGE: Final = b"Password:"


class SASLError(Exception):
    """The client's SASL data is malformed. The message is safe to log (never the password).

    SMTP answers 501 (RFC 4954 §4; §6 gives 5.5.2 for data that is not base64), IMAP ``BAD``
    (RFC 9051 §6.2.2), POP3 ``-ERR`` (RFC 5034 §4).
    """


class SASLCancelled(SASLError):
    """The client sent ``*`` to cancel the exchange (RFC 4954 §4: answer 501, Postfix says
    ``501 5.7.0``; RFC 9051 §6.2.2: tagged BAD; RFC 5034 §4: -ERR). A `SASLError`, so one
    ``except SASLError`` covers both."""


class UnknownMechanism(SASLError, KeyError):
    """`new_exchange` was given a mechanism we do not offer (RFC 4954 §4: 504 5.5.4).

    Both a `SASLError` and a `KeyError`; catch it before a plain ``except SASLError`` when the
    reply differs (SMTP: 504 here, 501 for malformed data).
    """

    def __init__(self, mechanism: str) -> None:
        shown = mechanism if len(mechanism) <= 20 else mechanism[:20] + "..."
        super().__init__(f"unsupported SASL mechanism {shown!r}")
        self.mechanism = mechanism

    def __str__(self) -> str:  # KeyError.__str__ would add a second pair of quotes
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a finished exchange yields: who logs in, with which password, acting as whom.

    ``authcid`` is the authentication identity (RFC 4422 §2, the login name), ``authzid`` the
    requested authorization identity, ``""`` when the client gave none. The password is kept
    out of ``repr`` so a logged value cannot leak it.
    """

    authcid: str
    password: str = field(repr=False)
    authzid: str = ""


class Exchange(Protocol):
    """One server-side SASL exchange. Not reusable: make a new one per AUTH attempt.

    Results are either the next challenge (raw bytes; the caller base64-encodes it, an empty
    challenge included: SMTP ``334 ``, IMAP/POP3 ``+ ``) or the final `Credentials`, which the
    caller still has to verify. Malformed client data raises `SASLError`.
    """

    @property
    def mechanism(self) -> str:
        """The registered mechanism name, upper case (``"PLAIN"``)."""
        ...

    def start(self, initial: bytes | None) -> bytes | Credentials:
        """Begin; ``initial`` is the decoded initial response, None when the client sent none
        (RFC 4954 ``=``, an empty initial response, decodes to ``b""``, which is not None)."""
        ...

    def step(self, response: bytes) -> bytes | Credentials:
        """Feed the decoded client response to the last challenge."""
        ...


def new_exchange(mechanism: str) -> Exchange:
    """A fresh exchange for ``mechanism`` (case-insensitive); `UnknownMechanism` otherwise."""
    factory = _FACTORIES.get(mechanism.upper())
    if factory is None:
        raise UnknownMechanism(mechanism)
    return factory()


def decode_response(line: bytes) -> bytes:
    """Base64-decode one client line (a trailing CRLF or LF is ignored).

    RFC 4954 §4 / RFC 9051 §6.2.2 / RFC 5034 §4: ``*`` cancels (`SASLCancelled`); ``=`` is an
    empty initial response; anything that is not strict RFC 4648 §4 base64 (characters outside
    the alphabet, missing or misplaced padding, whitespace) is a `SASLError`.
    """
    if line.endswith(b"\n"):
        line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    if line == b"*":
        raise SASLCancelled("client cancelled the authentication exchange")
    if line == b"=":
        return b""
    if len(line) > MAX_RESPONSE_LINE:
        raise SASLError(f"SASL response too long ({len(line)} characters)")
    try:
        return base64.b64decode(line, validate=True)
    except binascii.Error:
        # The text may be a password sent unencoded: never echo it.
        raise SASLError("SASL response is not valid base64") from None


def authzid_allowed(credentials: Credentials) -> bool:
    """False when the client asks to act as someone other than itself (proxy authorization).

    RFC 4616 §2 / RFC 4422 §3.4.1: an empty authzid means "the identity derived from the
    credentials"; a non-empty one must be refused unless the server lets the authcid act for
    it. We never do, so the only authzid accepted is the authcid itself — compared as the
    directory would (case-insensitive local part, IDNA domain) when both parse as addresses.
    Check before verifying the password and answer like a failed login (SMTP 535 5.7.8).
    """
    if not credentials.authzid or credentials.authzid == credentials.authcid:
        return True
    try:
        return (
            parse_address(credentials.authzid).canonical
            == parse_address(credentials.authcid).canonical
        )
    except AddressError:
        return False


# --- the mechanisms ---------------------------------------------------------------------------


class PlainExchange:
    """PLAIN, RFC 4616: one message ``[authzid] NUL authcid NUL passwd``.

    Without an initial response the server sends an empty challenge (RFC 4954 §4: ``334 ``
    with no text) and the message comes as the response.
    """

    mechanism: Final = "PLAIN"

    def __init__(self) -> None:
        self._state: _State = "new"

    def start(self, initial: bytes | None) -> bytes | Credentials:
        if self._state != "new":
            raise RuntimeError("PLAIN exchange already started")
        if initial is None:
            self._state = "message"
            return b""
        self._state = "done"
        return _parse_plain(initial)

    def step(self, response: bytes) -> bytes | Credentials:
        if self._state != "message":
            raise RuntimeError(f"PLAIN exchange cannot take a response now ({self._state})")
        self._state = "done"
        return _parse_plain(response)


class LoginExchange:
    """LOGIN, draft-murchison-sasl-login-00 §2: ``Username:`` then ``Password:``.

    An initial response is taken as the user name (as Cyrus SASL and Dovecot do, and as
    Outlook sends ``AUTH LOGIN <user>``). LOGIN carries no authorization identity.
    """

    mechanism: Final = "LOGIN"

    def __init__(self) -> None:
        self._state: _State = "new"
        self._authcid = ""

    def start(self, initial: bytes | None) -> bytes | Credentials:
        if self._state != "new":
            raise RuntimeError("LOGIN exchange already started")
        if initial is None:
            self._state = "username"
            return _LOGIN_USERNAME_CHALLENGE
        self._authcid = _text(initial, "user name", MAX_IDENTITY_OCTETS)
        self._state = "password"
        return _LOGIN_PASSWORD_CHALLENGE

    def step(self, response: bytes) -> bytes | Credentials:
        if self._state == "username":
            self._authcid = _text(response, "user name", MAX_IDENTITY_OCTETS)
            self._state = "password"
            return _LOGIN_PASSWORD_CHALLENGE
        if self._state == "password":
            password = _text(response, "password", MAX_PASSWORD_OCTETS)
            self._state = "done"
            return Credentials(authcid=self._authcid, password=password)
        raise RuntimeError(f"LOGIN exchange cannot take a response now ({self._state})")


_FACTORIES: Final[dict[str, Callable[[], Exchange]]] = {
    "PLAIN": PlainExchange,
    "LOGIN": LoginExchange,
}


def _parse_plain(message: bytes) -> Credentials:
    # RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd; each part is 1*SAFE
    # (any UTF-8 character but NUL), so exactly two NULs, authcid and passwd non-empty.
    parts = message.split(_NUL)
    if len(parts) != 3:
        raise SASLError(f"PLAIN message must hold exactly 2 NULs, found {len(parts) - 1}")
    raw_authzid, raw_authcid, raw_password = parts
    authzid = (
        _text(raw_authzid, "authorization identity", MAX_IDENTITY_OCTETS) if raw_authzid else ""
    )
    authcid = _text(raw_authcid, "authentication identity", MAX_IDENTITY_OCTETS)
    password = _text(raw_password, "password", MAX_PASSWORD_OCTETS)
    return Credentials(authcid=authcid, password=password, authzid=authzid)


def _text(raw: bytes, what: str, limit: int) -> str:
    """The named decoding point for SASL strings: non-empty, bounded, NUL-free UTF-8.

    The error names the field, never its content (it may be, or contain, a password).
    """
    if not raw:
        raise SASLError(f"empty {what}")
    if len(raw) > limit:
        raise SASLError(f"{what} too long ({len(raw)} octets, at most {limit})")
    if _NUL in raw:
        raise SASLError(f"NUL in {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SASLError(f"{what} is not valid UTF-8 (at octet {exc.start})") from None
