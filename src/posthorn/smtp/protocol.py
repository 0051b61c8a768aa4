"""The SMTP command grammar, pure: command lines in, typed values out (STYLE.md point 1).

Owns: splitting a command line into verb and argument (RFC 5321 §4.1.1), the MAIL FROM and RCPT
TO paths and their ESMTP parameters (RFC 5321 §4.1.2, §4.1.1.11; SIZE RFC 1870, BODY RFC 6152 /
RFC 3030, SMTPUTF8 RFC 6531, DSN RFC 3461, AUTH= RFC 4954 §5), HELO/EHLO, AUTH, BDAT, xtext,
and the EHLO reply. Addresses are parsed by `posthorn.mail.address`, never here.

Invariants:

- Every parser either returns a value or raises `SMTPError` carrying one of the constants of
  `posthorn.smtp.codes` (tests compare against those); nothing else escapes, whatever the
  bytes. The particulars go to ``SMTPError.detail``, for the log.
- Parsers know nothing of the session: they accept every parameter posthorn can implement, and
  the session refuses those it did not advertise on this listener (RFC 5321 §4.1.1.11).
- Keywords are case-insensitive and upper-cased; parameter values keep their case except the
  enumerations (BODY, RET, NOTIFY), which are upper-cased. xtext values are decoded.
- Relay tricks: a source route in RCPT TO is refused (553 5.1.3); in MAIL FROM it is stripped,
  as RFC 5321 Appendix C allows, because a reverse path cannot make us relay. ``%``, ``!`` and
  quoted ``@`` local parts parse, flagged by `Address.has_routing_chars` for the relay check.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from posthorn.mail.address import (
    Address,
    AddressError,
    SourceRouteError,
    parse_address,
    parse_address_bytes,
)
from posthorn.queue.envelope import Notify
from posthorn.smtp.codes import (
    AUTH_CANCELLED,
    AUTH_SYNTAX,
    BAD_RECIPIENT_SYNTAX,
    BAD_SENDER_SYNTAX,
    BDAT_SYNTAX,
    COMMAND_UNRECOGNIZED,
    HELO_SYNTAX,
    LOCAL_ERROR,
    MAIL_SYNTAX,
    PARAM_UNRECOGNIZED,
    RCPT_SYNTAX,
    SMTPUTF8_REQUIRED,
    SOURCE_ROUTE_REFUSED,
    SYNTAX_ERROR_PARAMS,
    Reply,
    SMTPError,
)

__all__ = [
    "BODY_TYPES",
    "Command",
    "MailFrom",
    "MailParams",
    "RcptTo",
    "XtextError",
    "decode_sasl",
    "ehlo_lines",
    "helo_reply",
    "parse_auth",
    "parse_bdat",
    "parse_command",
    "parse_helo",
    "parse_mail_from",
    "parse_rcpt_to",
    "xtext_decode",
    "xtext_encode",
]

_MAX_VERB: Final = 20  # longest verb we would ever dispatch is 8 (STARTTLS); junk stops here
_MAX_SIZE_DIGITS: Final = 20  # RFC 1870 §3: size-value ::= 1*20DIGIT
_MAX_ENVID: Final = 100  # RFC 3461 §4.4
_MAX_ORCPT_PARAM: Final = 500  # RFC 3461 §4.2: "the entire ORCPT parameter MAY be up to 500"
_MAX_HELO: Final = 255  # RFC 5321 §4.5.3.1.2 domain length; literals are shorter
BODY_TYPES: Final = frozenset({"7BIT", "8BITMIME", "BINARYMIME"})  # RFC 6152 §2, RFC 3030 §3
_RET_VALUES: Final = frozenset({"FULL", "HDRS"})  # RFC 3461 §4.3

# RFC 5321 §4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
_KEYWORD: Final = re.compile(rb"[A-Za-z0-9][A-Za-z0-9-]*\Z")
# RFC 5321 §4.1.2 esmtp-value = 1*(%d33-60 / %d62-126), RFC 6531 §3.3 adds UTF8-non-ascii.
_VALUE: Final = re.compile(rb"[\x21-\x3c\x3e-\x7e\x80-\xff]+\Z")
_HELO_NAME: Final = re.compile(rb"[\x21-\x7e]+\Z")  # lenient: any printable ASCII token
# RFC 4422 §3.1: sasl-mech = 1*20mech-char; upper-case in the RFC, lower-case tolerated.
_SASL_MECH: Final = re.compile(rb"[A-Za-z0-9_-]{1,20}\Z")
_DIGITS: Final = re.compile(rb"[0-9]{1,%d}\Z" % _MAX_SIZE_DIGITS)
# RFC 5322 §3.2.3 atext, for the ORCPT addr-type = atom (RFC 3461 §4.2).
_ATOM: Final = re.compile(rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")
# RFC 3461 §4: xchar = %d33-42 / %d44-60 / %d62-126 (not "+" or "="); hexchar = "+" 2HEXDIG.
# Upper-case hex is the RFC's; lower-case is tolerated on input. RFC 6533 §3 lets UTF-8
# through as itself when SMTPUTF8 is in effect (utf8=True).
_XTEXT: Final = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-Fa-f]{2})*\Z")
_XTEXT_UTF8: Final = re.compile(r"(?:[!-*,-<>-~\x80-\ud7ff\ue000-\U0010ffff]|\+[0-9A-Fa-f]{2})*\Z")
_HEXCHAR: Final = re.compile(rb"\+([0-9A-Fa-f]{2})")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # never in a decoded value we keep


class XtextError(ValueError):
    """The text is not valid xtext (RFC 3461 §4), or does not decode to UTF-8."""


@dataclass(frozen=True, slots=True)
class Command:
    """One command line: ``verb`` upper-case ASCII letters, ``arg`` the bytes after one space."""

    verb: str
    arg: bytes


@dataclass(frozen=True, slots=True)
class MailParams:
    """The MAIL FROM parameters, validated. ``None`` / ``False`` means "not given"."""

    size: int | None = None  # RFC 1870 SIZE, declared octets
    body: str | None = None  # "7BIT" | "8BITMIME" | "BINARYMIME"
    smtputf8: bool = False  # RFC 6531 §3.4
    ret: str | None = None  # RFC 3461 §4.3: "FULL" | "HDRS"
    envid: str | None = None  # RFC 3461 §4.4, xtext-decoded
    auth: str | None = None  # RFC 4954 §5 AUTH=, xtext-decoded; "<>" means "unknown"


@dataclass(frozen=True, slots=True)
class MailFrom:
    """MAIL FROM: ``path`` is None for the null reverse path ``<>`` (RFC 5321 §4.5.5)."""

    path: Address | None
    params: MailParams


@dataclass(frozen=True, slots=True)
class RcptTo:
    """RCPT TO with its DSN parameters (RFC 3461 §4.1, §4.2); None means "not given"."""

    path: Address
    notify: frozenset[Notify] | None
    orcpt: str | None  # "addr-type;decoded", e.g. "rfc822;user@example.org"


# --- command line -----------------------------------------------------------------------------


def parse_command(line: bytes) -> Command:
    """Split a command line (without its CRLF) into verb and argument.

    RFC 5321 §4.1.1: a verb, then SP and the argument. Verbs are case-insensitive (§2.4) and
    are letters only; anything else (empty, digits, an HTTP request line's "/") is 500 5.5.2.
    Whether the verb is one we know is the session's dispatch table's business.
    """
    verb, _, arg = line.partition(b" ")
    if not (0 < len(verb) <= _MAX_VERB and verb.isalpha()):  # bytes.isalpha is ASCII-only
        raise SMTPError(COMMAND_UNRECOGNIZED, f"bad verb {verb[:_MAX_VERB]!r}")
    return Command(verb.decode("ascii").upper(), arg)


def parse_helo(arg: bytes) -> str:
    """The client's HELO/EHLO name (RFC 5321 §4.1.1.1: domain or address literal).

    Lenient, as the Internet requires: the name is not checked against the domain grammar
    (policy may do that), and words after the first are ignored. It must be one printable
    ASCII token of at most 255 octets, because it ends up in our Received header.
    """
    words = arg.split()
    if not words:
        raise SMTPError(HELO_SYNTAX, "empty HELO/EHLO argument")
    name = words[0]
    if len(name) > _MAX_HELO or not _HELO_NAME.match(name):
        raise SMTPError(HELO_SYNTAX, f"bad HELO/EHLO name {name[:60]!r}")
    return name.decode("ascii")


# --- MAIL FROM / RCPT TO ----------------------------------------------------------------------


def parse_mail_from(arg: bytes) -> MailFrom:
    """Parse the argument of MAIL (``FROM:<path> [params]``), RFC 5321 §4.1.1.2.

    ``FROM:`` is case-insensitive; spaces after the colon are tolerated (RFC 5321 has none,
    some clients send one). The angle brackets are required (§4.1.2 Reverse-path).
    """
    inside, params_raw = _split_path_arg(arg, b"FROM:", MAIL_SYNTAX, BAD_SENDER_SYNTAX)
    raw = _parse_params(params_raw)
    params = _mail_params(raw)
    return MailFrom(_reverse_path(inside, params.smtputf8), params)


def parse_rcpt_to(arg: bytes, *, smtputf8: bool, postmaster_domain: str | None = None) -> RcptTo:
    """Parse the argument of RCPT (``TO:<path> [params]``), RFC 5321 §4.1.1.3.

    ``smtputf8`` says whether the transaction's MAIL FROM carried SMTPUTF8 (RFC 6531 §3.4).
    ``<postmaster>`` without a domain (RFC 5321 §4.1.1.3 MUST accept it) becomes
    ``postmaster@postmaster_domain`` when the caller names its primary mail domain, and is
    a recipient syntax error otherwise.
    """
    inside, params_raw = _split_path_arg(arg, b"TO:", RCPT_SYNTAX, BAD_RECIPIENT_SYNTAX)
    raw = _parse_params(params_raw)
    notify: frozenset[Notify] | None = None
    orcpt: str | None = None
    for name, value in raw.items():
        if name == "NOTIFY":
            notify = _notify(_text_value(name, value, smtputf8=False))
        elif name == "ORCPT":
            orcpt = _orcpt(_text_value(name, value, smtputf8=smtputf8), smtputf8)
        else:
            raise SMTPError(PARAM_UNRECOGNIZED, f"unknown RCPT parameter {name}")
    path = _forward_path(inside, smtputf8, postmaster_domain)
    return RcptTo(path, notify, orcpt)


def _split_path_arg(
    arg: bytes, keyword: bytes, syntax: Reply, bad_path: Reply
) -> tuple[bytes, bytes]:
    """``b"FROM:<a@b> SIZE=1"`` -> ``(b"a@b", b" SIZE=1")``: path inside the brackets, params."""
    if arg[: len(keyword)].upper() != keyword:
        raise SMTPError(syntax, f"expected {keyword.decode()}")
    rest = arg[len(keyword) :].lstrip(b" ")
    if not rest.startswith(b"<"):
        raise SMTPError(bad_path, "path without angle brackets")  # RFC 5321 §4.1.2 Path
    end = _path_end(rest)
    if end < 0:
        raise SMTPError(bad_path, "unterminated path")
    params = rest[end + 1 :]
    if params and not params.startswith(b" "):
        raise SMTPError(bad_path, "no space between path and parameters")  # §4.1.1.2
    return rest[1:end], params


def _path_end(text: bytes) -> int:
    """Index of the ``>`` closing the path that starts ``text``, or -1.

    A quoted local part may hold ``>`` (RFC 5321 §4.1.2 Quoted-string), so quotes and their
    backslash escapes are skipped; the common unquoted case is one ``find``.
    """
    close = text.find(b">")
    if close < 0 or b'"' not in text[:close]:
        return close
    quoted = False
    i = 1
    while i < len(text):
        c = text[i]
        if quoted and c == 0x5C:  # backslash: quoted-pairSMTP, skip the escaped octet
            i += 2
            continue
        if c == 0x22:
            quoted = not quoted
        elif c == 0x3E and not quoted:
            return i
        i += 1
    return -1


def _parse_params(raw: bytes) -> dict[str, bytes | None]:
    """RFC 5321 §4.1.1.11 / §4.1.2: ``esmtp-param *(SP esmtp-param)``, keyword[=value].

    Returns upper-cased keywords to raw values (None for a bare keyword). A repeated keyword
    is a syntax error: nothing defines which of two SIZE= values would count.
    """
    params: dict[str, bytes | None] = {}
    for token in raw.split(b" "):
        if not token:
            continue  # tolerate runs of spaces
        key, eq, value = token.partition(b"=")
        if not _KEYWORD.match(key) or (eq and not _VALUE.match(value)):
            raise SMTPError(SYNTAX_ERROR_PARAMS, f"bad parameter {token[:60]!r}")
        name = key.decode("ascii").upper()
        if name in params:
            raise SMTPError(SYNTAX_ERROR_PARAMS, f"duplicate parameter {name}")
        params[name] = value if eq else None
    return params


def _mail_params(raw: dict[str, bytes | None]) -> MailParams:
    """Validate the MAIL FROM parameters into `MailParams`; 555 for unknown keywords."""
    smtputf8 = "SMTPUTF8" in raw
    if smtputf8 and raw["SMTPUTF8"] is not None:  # RFC 6531 §3.4: the parameter has no value
        raise SMTPError(SYNTAX_ERROR_PARAMS, "SMTPUTF8 takes no value")
    size: int | None = None
    body = ret = envid = auth = None
    for name, value in raw.items():
        if name == "SMTPUTF8":
            continue
        if name not in ("SIZE", "BODY", "RET", "ENVID", "AUTH"):
            raise SMTPError(PARAM_UNRECOGNIZED, f"unknown MAIL parameter {name}")
        text = _text_value(name, value, smtputf8=smtputf8 and name == "AUTH")
        if name == "SIZE":
            if not _DIGITS.match(text.encode("ascii")):  # RFC 1870 §3
                raise SMTPError(SYNTAX_ERROR_PARAMS, f"bad SIZE {text[:30]!r}")
            size = int(text)
        elif name == "BODY":
            body = _enum_value(name, text, BODY_TYPES)  # RFC 6152 §2, RFC 3030 §3
        elif name == "RET":
            ret = _enum_value(name, text, _RET_VALUES)  # RFC 3461 §4.3
        elif name == "ENVID":
            envid = _envid(text)
        else:
            auth = _auth_param(text, smtputf8)
    return MailParams(size, body, smtputf8, ret, envid, auth)


def _text_value(name: str, value: bytes | None, *, smtputf8: bool) -> str:
    """A parameter's value as text: present, ASCII (or UTF-8 when SMTPUTF8 allows it)."""
    if value is None:
        raise SMTPError(SYNTAX_ERROR_PARAMS, f"{name} needs a value")
    if value.isascii():
        return value.decode("ascii")
    if not smtputf8:  # RFC 6531 §3.3: UTF-8 in esmtp-value only within SMTPUTF8
        raise SMTPError(SYNTAX_ERROR_PARAMS, f"non-ASCII {name} value")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise SMTPError(SYNTAX_ERROR_PARAMS, f"{name} value is not UTF-8") from None


def _enum_value(name: str, text: str, allowed: frozenset[str]) -> str:
    upper = text.upper()
    if upper not in allowed:
        raise SMTPError(SYNTAX_ERROR_PARAMS, f"bad {name} value {text[:30]!r}")
    return upper


def _envid(text: str) -> str:
    """RFC 3461 §4.4: ENVID=xtext, at most 100 characters, printable US-ASCII once decoded."""
    if len(text) > _MAX_ENVID:
        raise SMTPError(SYNTAX_ERROR_PARAMS, f"ENVID longer than {_MAX_ENVID}")
    decoded = _decode_param("ENVID", text, utf8=False)
    if not decoded.isascii():
        raise SMTPError(SYNTAX_ERROR_PARAMS, "ENVID is not US-ASCII")
    return decoded


def _auth_param(text: str, smtputf8: bool) -> str:
    """RFC 4954 §5: AUTH=<> or AUTH=xtext(mailbox); we only record it, never trust it."""
    if text == "<>":
        return text
    return _decode_param("AUTH", text, utf8=smtputf8)


def _notify(text: str) -> frozenset[Notify]:
    """RFC 3461 §4.1: NOTIFY=NEVER, or a comma list of SUCCESS, FAILURE, DELAY."""
    try:
        values = frozenset(Notify(word.upper()) for word in text.split(","))
    except ValueError:
        raise SMTPError(SYNTAX_ERROR_PARAMS, f"bad NOTIFY value {text[:40]!r}") from None
    if Notify.NEVER in values and len(values) > 1:
        raise SMTPError(SYNTAX_ERROR_PARAMS, "NOTIFY=NEVER combined with other values")
    return values


def _orcpt(text: str, smtputf8: bool) -> str:
    """RFC 3461 §4.2: ORCPT=addr-type;xtext, at most 500 characters; kept decoded."""
    if len("ORCPT=") + len(text) > _MAX_ORCPT_PARAM:
        raise SMTPError(SYNTAX_ERROR_PARAMS, f"ORCPT longer than {_MAX_ORCPT_PARAM}")
    addr_type, semi, encoded = text.partition(";")
    if not semi or not addr_type.isascii() or not _ATOM.match(addr_type.encode("ascii")):
        raise SMTPError(SYNTAX_ERROR_PARAMS, f"bad ORCPT value {text[:40]!r}")
    # RFC 6533 §3: with SMTPUTF8 the address may carry UTF-8 (utf-8-addr-unitext).
    return f"{addr_type};{_decode_param('ORCPT', encoded, utf8=smtputf8)}"


def _decode_param(name: str, text: str, *, utf8: bool) -> str:
    try:
        decoded = xtext_decode(text, utf8=utf8)
    except XtextError:
        raise SMTPError(SYNTAX_ERROR_PARAMS, f"{name} is not valid xtext") from None
    # RFC 3461 §4.2/§4.4: printable characters only; controls would end up in DSN headers.
    if not decoded or _CONTROL.search(decoded):
        raise SMTPError(SYNTAX_ERROR_PARAMS, f"{name} decodes to empty or control characters")
    if not utf8 and not decoded.isascii():
        raise SMTPError(SYNTAX_ERROR_PARAMS, f"{name} decodes to non-ASCII")
    return decoded


def _reverse_path(inside: bytes, smtputf8: bool) -> Address | None:
    if not inside:
        return None  # RFC 5321 §4.5.5: the null reverse-path "<>"
    if not inside.isascii() and not smtputf8:  # RFC 6531 §3.4, §3.7.4.1
        raise SMTPError(SMTPUTF8_REQUIRED, "non-ASCII sender without SMTPUTF8")
    try:
        return parse_address_bytes(inside)
    except SourceRouteError as exc:
        # RFC 5321 §3.3 / Appendix C: a route in the reverse path SHOULD be ignored. Stripping
        # it is harmless: bounces go to the mailbox, never through the route.
        return _parse_or(exc.mailbox, BAD_SENDER_SYNTAX)
    except AddressError as exc:
        raise SMTPError(BAD_SENDER_SYNTAX, str(exc)) from None


def _forward_path(inside: bytes, smtputf8: bool, postmaster_domain: str | None) -> Address:
    if not inside.isascii() and not smtputf8:  # RFC 6531 §3.4, §3.7.4.1
        raise SMTPError(SMTPUTF8_REQUIRED, "non-ASCII recipient without SMTPUTF8")
    if inside.lower() == b"postmaster":  # RFC 5321 §4.1.1.3: "<Postmaster>", no domain
        if postmaster_domain is None:
            raise SMTPError(BAD_RECIPIENT_SYNTAX, "<postmaster> without a configured domain")
        try:
            return parse_address(f"{inside.decode('ascii')}@{postmaster_domain}")
        except AddressError as exc:  # our configuration, not the client's fault
            raise SMTPError(LOCAL_ERROR, f"bad postmaster_domain: {exc}") from None
    try:
        return parse_address_bytes(inside)
    except SourceRouteError as exc:
        # RFC 5321 Appendix C would strip it; a forward route asks us to relay, so refuse.
        raise SMTPError(SOURCE_ROUTE_REFUSED, str(exc)) from None
    except AddressError as exc:
        raise SMTPError(BAD_RECIPIENT_SYNTAX, str(exc)) from None


def _parse_or(text: str, reply: Reply) -> Address:
    try:
        return parse_address(text)
    except AddressError as exc:
        raise SMTPError(reply, str(exc)) from None


# --- xtext (RFC 3461 §4) ----------------------------------------------------------------------


def xtext_decode(text: str, *, utf8: bool = False) -> str:
    """Decode xtext: ``"a+2Bb"`` -> ``"a+b"``. Raises `XtextError`.

    Decoded octets are read as UTF-8, so `xtext_encode` round-trips every string. With
    ``utf8=True`` non-ASCII characters may also appear as themselves (RFC 6533 §3).
    """
    if not (_XTEXT_UTF8 if utf8 else _XTEXT).match(text):
        raise XtextError(f"not xtext: {text[:60]!r}")
    if "+" not in text:
        return text
    raw = _HEXCHAR.sub(lambda m: bytes.fromhex(m[1].decode("ascii")), text.encode("utf-8"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise XtextError(f"xtext does not decode to UTF-8: {text[:60]!r}") from None


def xtext_encode(text: str) -> str:
    """Encode as xtext: ``"+"``, ``"="``, controls, space and non-ASCII (as UTF-8) become
    ``+HH`` with upper-case hex (RFC 3461 §4). Lone surrogates raise UnicodeEncodeError."""
    out: list[str] = []
    for c in text:
        if "!" <= c <= "~" and c not in "+=":
            out.append(c)
        else:
            out.extend(f"+{b:02X}" for b in c.encode("utf-8"))
    return "".join(out)


# --- AUTH, BDAT -------------------------------------------------------------------------------


def parse_auth(arg: bytes) -> tuple[str, bytes | None]:
    """``b"PLAIN dGVzdA=="`` -> ``("PLAIN", b"dGVzdA==")`` (RFC 4954 §4).

    The mechanism is upper-cased (RFC 4422 §3.1 names are upper-case); the initial response
    stays base64 text for `decode_sasl`. ``"="`` is the empty initial response (b""); no
    initial response is None.
    """
    words = arg.rstrip(b" ").split(b" ")
    if len(words) > 2 or not _SASL_MECH.match(words[0]):
        raise SMTPError(SYNTAX_ERROR_PARAMS, f"bad AUTH argument {arg[:60]!r}")
    mechanism = words[0].decode("ascii").upper()
    if len(words) == 1:
        return mechanism, None
    initial = words[1]
    return mechanism, b"" if initial == b"=" else initial


def decode_sasl(response: bytes) -> bytes:
    """Decode one base64 SASL response line (RFC 4954 §4).

    ``*`` cancels the exchange (501, `AUTH_CANCELLED`); anything not strict base64 is
    `AUTH_SYNTAX`. An empty line is an empty response.
    """
    if response == b"*":
        raise SMTPError(AUTH_CANCELLED, "client cancelled AUTH")
    try:
        return base64.b64decode(response, validate=True)
    except (binascii.Error, ValueError):
        raise SMTPError(AUTH_SYNTAX, "bad base64 in AUTH response") from None


def parse_bdat(arg: bytes) -> tuple[int, bool]:
    """``b"1000 LAST"`` -> ``(1000, True)`` (RFC 3030 §2: chunk-size [SP "LAST"])."""
    words = arg.rstrip(b" ").split(b" ")
    if not 1 <= len(words) <= 2 or not _DIGITS.match(words[0]):
        raise SMTPError(BDAT_SYNTAX, f"bad BDAT argument {arg[:60]!r}")
    if len(words) == 2 and words[1].upper() != b"LAST":
        raise SMTPError(BDAT_SYNTAX, f"bad BDAT end marker {words[1][:20]!r}")
    return int(words[0]), len(words) == 2


# --- replies to HELO / EHLO -------------------------------------------------------------------


def helo_reply(hostname: str, greeting_name: str = "") -> Reply:
    """The 250 reply to HELO: our domain, then a greeting (RFC 5321 §4.1.1.1)."""
    text = f"{hostname} Hello {greeting_name}" if greeting_name else hostname
    return Reply(250, None, text)


def ehlo_lines(hostname: str, greeting_name: str, extensions: Sequence[str]) -> Reply:
    """The multi-line 250 reply to EHLO (RFC 5321 §4.1.1.1 ehlo-ok-rsp).

    First line: our ``hostname`` and ``"Hello <greeting_name>"`` (the client's EHLO name;
    empty leaves the greeting out); then one extension per line, e.g. ``"SIZE 10240000"``.
    No enhanced codes (RFC 2034 §3).
    """
    for ext in extensions:
        if not ext or "\n" in ext or "\r" in ext:
            raise ValueError(f"bad EHLO extension line {ext!r}")
    return Reply(250, None, "\n".join([helo_reply(hostname, greeting_name).text, *extensions]))
