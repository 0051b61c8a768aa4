"""Delivery status notifications: the bounce, delay and success reports the queue sends.

`build_dsn` turns what the outbound agent learned about a message into one complete RFC 5322
message (CRLF line ends): a ``multipart/report; report-type=delivery-status`` (RFC 6522) with a
short human-readable text, the machine-readable ``message/delivery-status`` (RFC 3464) and the
original message or its header block. Pure code: values in, bytes out; the bouncer decides when
to send one, and sends it from the null reverse path (RFC 5321 §4.5.5).

Invariants:
- Only caller errors raise (`ValueError`: an action/status mismatch, no recipients, a null
  sender). Whatever the original holds — binary junk, NULs, no header, no blank line — gives a
  well-formed report.
- Every header field and status field is free of CR, LF and other controls (text from a remote
  server cannot inject fields) and folded to lines of at most 998 octets (RFC 5322 §2.1.1).
- The boundary occurs in none of the parts (RFC 2046 §5.1.1).
- The report is 7-bit unless a part needs 8 bits; then the top level says
  ``Content-Transfer-Encoding: 8bit`` (RFC 2045 §6.4), so the sender knows to ask for 8BITMIME.
  Nothing in it ever needs BINARYMIME.
- With SMTPUTF8, or any non-ASCII address, the report uses the RFC 6533 global types and raw
  UTF-8; otherwise every field is ASCII.
"""

from __future__ import annotations

import binascii
import re
import secrets
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, formataddr, parseaddr
from typing import Final

from posthorn.mail.headers import find_body
from posthorn.smtp.trace import message_id as new_message_id

__all__ = ["ACTIONS", "DSNRecipient", "build_dsn"]

# RFC 3464 §2.3.3 action values, and the status class each one requires (RFC 3463 §3.1:
# 2 success, 4 persistent transient failure, 5 permanent failure).
ACTIONS: Final = {"failed": "5", "delayed": "4", "delivered": "2", "relayed": "2", "expanded": "2"}
# RFC 3463 §2: status-code = class "." subject "." detail, each 1-3 digits.
_STATUS: Final = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}\Z")
# RFC 3464 §2.1.2 address-type / mta-name-type / diagnostic-type are atoms; in practice
# letters, digits and "-" ("rfc822", "utf-8", "dns", "smtp", "X-Postfix").
_TYPE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_SMTP_REPLY: Final = re.compile(r"[2-5][0-9][0-9](?:[ -]|\Z)")
_CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f]+")

_SUBJECTS: Final = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "delivered": "Successful Mail Delivery Report",
}
_INTROS: Final = {
    "failed": "Your message could not be delivered to one or more recipients.",
    "delayed": (
        "Your message could not be delivered yet to one or more recipients. Delivery will be"
        " retried; you do not need to send it again."
    ),
    "delivered": "Your message was delivered to the recipients below.",
}
_FOLD_AT: Final = 78  # RFC 5322 §2.1.1: lines SHOULD be at most 78 characters
_MAX_WORD: Final = 900  # a longer word is split so no line exceeds 998 octets
_MAX_LINE: Final = 998  # RFC 5322 §2.1.1 / RFC 5321 §4.5.3.1.6, without the CRLF


@dataclass(frozen=True, slots=True)
class DSNRecipient:
    """One per-recipient block of RFC 3464 §2.3, validated on construction.

    The typed fields take ``"type; value"``; a bare value gets the usual type (``rfc822`` for
    addresses, ``dns`` for the remote MTA, ``smtp`` for a diagnostic that starts with a reply
    code and ``X-Posthorn`` for any other). ``action`` is case-insensitive; the status class must
    agree with it (failed 5.x.x, delayed 4.x.x, delivered/relayed/expanded 2.x.x), and
    ``will_retry_until`` is only meaningful for a delay (§2.3.8). Naive datetimes are UTC.
    """

    final_recipient: str  # §2.3.2, "rfc822; bob@b.test"
    action: str  # §2.3.3
    status: str  # §2.3.4, "5.1.1"
    original_recipient: str | None = None  # §2.3.1, the ORCPT as received
    remote_mta: str | None = None  # §2.3.5, "dns; mx.b.test"
    diagnostic: str | None = None  # §2.3.6, "smtp; 550 5.1.1 <bob@b.test>: no such user"
    last_attempt: datetime | None = None  # §2.3.7
    will_retry_until: datetime | None = None  # §2.3.8

    def __post_init__(self) -> None:
        action = self.action.strip().lower()
        if action not in ACTIONS:
            raise ValueError(f"unknown DSN action {self.action!r}")
        if not _STATUS.match(self.status):
            raise ValueError(f"malformed DSN status {self.status!r}")
        if self.status[0] != ACTIONS[action]:
            raise ValueError(f"status {self.status} does not fit action {action!r}")
        if self.will_retry_until is not None and action != "delayed":
            raise ValueError("Will-Retry-Until only belongs to a delayed recipient")
        if not _clean(self.final_recipient).strip():
            raise ValueError("a DSN recipient needs a Final-Recipient")
        object.__setattr__(self, "action", action)


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    recipients: Sequence[DSNRecipient],
    original: bytes,
    arrival_date: datetime,
    envelope_id: str | None = None,
    return_content: bool = False,
    from_address: str | None = None,
    now: datetime | None = None,
    message_id: str | None = None,
    smtputf8: bool = False,
) -> bytes:
    """The complete DSN message for ``recipients`` of ``original``, addressed to ``sender``.

    ``reporting_mta`` is our host name; ``sender`` the envelope sender the report goes to
    (never the null path: a bounce is not bounced, RFC 5321 §4.5.5). ``return_content`` is
    RET=FULL: the whole original is returned, else only its header block (RFC 3461 §4.3 leaves
    the default to the MTA; we choose headers). An original that could only travel as binary
    (NUL octets, lines over 998 octets) is returned as headers even with RET=FULL, and the text
    says so, because a report that needs BINARYMIME would rarely reach the sender.
    ``from_address`` is a whole From value; ``now`` and ``message_id`` exist for tests.
    """
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    if not _clean(sender).strip():
        raise ValueError("a DSN is never sent to the null reverse path")
    host = _clean(reporting_mta).strip()
    from_value = _clean(from_address or f"Mail Delivery System <MAILER-DAEMON@{host}>")
    utf8 = smtputf8 or not all(
        address.isascii() for address in (sender, parseaddr(from_value)[1], *_addresses(recipients))
    )
    original = _crlf(original)
    header_end, _ = find_body(original, 0, len(original))
    headers_only = _ensure_crlf(original[:header_end])
    whole = return_content and _encoding(original) != "binary"

    text = _human_text(host, recipients, return_content=return_content, whole=whole)
    status = _delivery_status(host, arrival_date, envelope_id, recipients, utf8=utf8)
    parts = [
        _part(
            'text/plain; charset="utf-8"',
            "Notification",
            _text_body(text, utf8=utf8),
        ),
        _part(
            "message/global-delivery-status" if utf8 else "message/delivery-status",
            "Delivery report",
            status,
        ),
        _original_part(original if whole else headers_only, whole=whole, utf8=utf8),
    ]
    boundary = _boundary(parts)
    worst = _worst(recipients)
    head = [
        ("From", from_value if utf8 else _ascii_from(from_value)),
        ("To", _clean(sender).strip()),
        ("Subject", _SUBJECTS[worst]),
        ("Date", format_datetime(_utc(now or datetime.now(UTC)))),
        ("Message-ID", _clean(message_id) if message_id else new_message_id(host)),
        # RFC 3834 §5: an automatic reply, so responders and vacation scripts stay quiet.
        ("Auto-Submitted", "auto-replied"),
        ("MIME-Version", "1.0"),
        # RFC 6522 §3: the report type names the second part's type.
        ("Content-Type", f'multipart/report; report-type=delivery-status; boundary="{boundary}"'),
    ]
    if any(_is_8bit(body) for _, body in parts):
        head.append(("Content-Transfer-Encoding", "8bit"))  # RFC 2045 §6.4
    out = [_field(name, value) for name, value in head]
    out.append(b"\r\nThis is a MIME-encapsulated message.\r\n")
    delimiter = b"\r\n--" + boundary.encode("ascii")
    for part_head, body in parts:
        out.append(delimiter + b"\r\n" + part_head + b"\r\n" + body)
    out.append(delimiter + b"--\r\n")
    return b"".join(out)


# --- the three parts --------------------------------------------------------------------------


def _human_text(
    host: str, recipients: Sequence[DSNRecipient], *, return_content: bool, whole: bool
) -> str:
    """Short plain text in the manner of Postfix's bounces: what happened, to whom, and why."""
    lines = [f"This is the mail system at host {host}.", ""]
    lines += textwrap.wrap(_INTROS[_worst(recipients)], _FOLD_AT - 6)
    if whole:
        lines.append("Your message is attached below.")
    elif return_content:
        lines.append("Your message holds binary data, so only its headers are attached below.")
    else:
        lines.append("The headers of your message are attached below.")
    for r in recipients:
        _, address = _typed(r.final_recipient, "rfc822")
        what = f"<{address}>: {_ACTION_TEXT[r.action]} ({r.status})"
        if r.will_retry_until is not None:
            what += f", retried until {format_datetime(_utc(r.will_retry_until))}"
        lines += ["", *_wrap(what, "")]
        if r.diagnostic is not None:
            reason = _typed(r.diagnostic, _diagnostic_type(r.diagnostic))[1]
            if r.remote_mta is not None:
                reason = f"host {_typed(r.remote_mta, 'dns')[1]} said: {reason}"
            lines += _wrap(reason, "    ")
    return "\r\n".join(lines) + "\r\n"


_ACTION_TEXT: Final = {
    "failed": "delivery failed",
    "delayed": "delivery delayed",
    "delivered": "delivered",
    "relayed": "relayed to a server that sends no reports",
    "expanded": "delivered and forwarded to further recipients",
}


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(
        text,
        _FOLD_AT,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_on_hyphens=False,
    ) or [indent]


def _text_body(text: str, *, utf8: bool) -> bytes:
    # Without SMTPUTF8 the report stays 7-bit; remote replies are the only source of non-ASCII.
    return text.encode("utf-8", "replace") if utf8 else _ascii(text).encode("ascii")


def _delivery_status(
    host: str,
    arrival_date: datetime,
    envelope_id: str | None,
    recipients: Sequence[DSNRecipient],
    *,
    utf8: bool,
) -> bytes:
    """RFC 3464 §2.1: per-message fields, then one block per recipient, blank-line separated."""
    # §2.2: Original-Envelope-Id, Reporting-MTA, ..., Arrival-Date, in the grammar's order.
    fields: list[tuple[str, str]] = []
    if envelope_id is not None and _clean(envelope_id).strip():
        fields.append(("Original-Envelope-Id", _clean(envelope_id).strip()))  # §2.2.1
    fields.append(("Reporting-MTA", f"dns; {host}"))  # §2.2.2
    fields.append(("Arrival-Date", format_datetime(_utc(arrival_date))))  # §2.2.5
    blocks = [fields]
    for r in recipients:
        blocks.append(_recipient_fields(r, utf8=utf8))
    text = "\r\n".join(
        "".join(_field(n, v if utf8 else _ascii(v)).decode("utf-8") for n, v in block)
        for block in blocks
    )
    return text.encode("utf-8")


def _recipient_fields(r: DSNRecipient, *, utf8: bool) -> list[tuple[str, str]]:
    """RFC 3464 §2.3 fields in the grammar's order."""
    fields: list[tuple[str, str]] = []
    if r.original_recipient is not None and _clean(r.original_recipient).strip():
        # §2.3.1: the ORCPT as given; only an invalid rfc822 type on a UTF-8 address changes.
        kind, value = _typed(r.original_recipient, "rfc822")
        if utf8 and not value.isascii() and kind.lower() == "rfc822":
            kind = "utf-8"
        fields.append(("Original-Recipient", f"{kind}; {value}"))
    kind, value = _typed(r.final_recipient, "rfc822")
    if utf8 and kind.lower() == "rfc822":
        kind = "utf-8"  # RFC 6533 §3: the utf-8 address type
    fields.append(("Final-Recipient", f"{kind}; {value}"))  # §2.3.2
    fields.append(("Action", r.action))  # §2.3.3
    fields.append(("Status", r.status))  # §2.3.4
    if r.remote_mta is not None and _clean(r.remote_mta).strip():
        kind, value = _typed(r.remote_mta, "dns")
        fields.append(("Remote-MTA", f"{kind}; {value}"))  # §2.3.5
    if r.diagnostic is not None and _clean(r.diagnostic).strip():
        kind, value = _typed(r.diagnostic, _diagnostic_type(r.diagnostic))
        fields.append(("Diagnostic-Code", f"{kind}; {value}"))  # §2.3.6
    if r.last_attempt is not None:
        fields.append(("Last-Attempt-Date", format_datetime(_utc(r.last_attempt))))  # §2.3.7
    if r.will_retry_until is not None:
        fields.append(("Will-Retry-Until", format_datetime(_utc(r.will_retry_until))))  # §2.3.8
    return fields


def _original_part(content: bytes, *, whole: bool, utf8: bool) -> tuple[bytes, bytes]:
    """The returned message: message/rfc822 whole (RFC 3464 §2.1), or its headers (RFC 6522 §4).

    message/rfc822 allows only the identity encodings (RFC 2046 §5.2.1), so it is only built
    for content `_encoding` finds 8-bit clean; a header block that is not gets quoted-printable,
    which both header types allow (RFC 6522 §4, RFC 6533 §6).
    """
    if whole:
        kind = "message/global" if utf8 else "message/rfc822"  # RFC 6532 §3.7
        return _part(kind, "Undelivered Message", content, _encoding(content))
    kind = "message/global-headers" if utf8 else "text/rfc822-headers"  # RFC 6533 §6
    encoding = _encoding(content)
    if encoding == "binary":
        return _part(kind, "Undelivered Message Headers", _qp(content), "quoted-printable")
    return _part(kind, "Undelivered Message Headers", content, encoding)


def _part(
    content_type: str, description: str, body: bytes, encoding: str | None = None
) -> tuple[bytes, bytes]:
    """``(header block, body)`` of one body part; the encoding is derived unless given."""
    encoding = encoding or ("8bit" if _is_8bit(body) else "7bit")
    head = [
        ("Content-Type", content_type),
        ("Content-Description", description),
        ("Content-Transfer-Encoding", encoding),
    ]
    return b"".join(_field(n, v) for n, v in head), body


def _boundary(parts: Sequence[tuple[bytes, bytes]]) -> str:
    """A boundary no part contains (RFC 2046 §5.1.1); random, so a retry almost never loops."""
    while True:
        boundary = _new_boundary()
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in body or marker in head for head, body in parts):
            return boundary


def _new_boundary() -> str:
    # RFC 2046 §5.1.1 bchars. "=_" never occurs in quoted-printable text (RFC 2045 §6.7), and
    # 128 random bits make a clash with any other content vanishingly rare.
    return f"=_posthorn_{secrets.token_hex(16)}"


# --- small helpers ----------------------------------------------------------------------------


def _worst(recipients: Sequence[DSNRecipient]) -> str:
    actions = {r.action for r in recipients}
    if "failed" in actions:
        return "failed"
    return "delayed" if "delayed" in actions else "delivered"


def _addresses(recipients: Sequence[DSNRecipient]) -> list[str]:
    out = [_typed(r.final_recipient, "rfc822")[1] for r in recipients]
    out += [_typed(r.original_recipient, "rfc822")[1] for r in recipients if r.original_recipient]
    return out


def _typed(value: str, default_type: str) -> tuple[str, str]:
    """RFC 3464 ``type ";" value`` split; a value without a type gets ``default_type``."""
    text = _clean(value).strip()
    kind, sep, rest = text.partition(";")
    if sep and _TYPE.match(kind.strip()):
        return kind.strip(), rest.strip()
    return default_type, text


def _diagnostic_type(diagnostic: str) -> str:
    return "smtp" if _SMTP_REPLY.match(_clean(diagnostic).strip()) else "X-Posthorn"


def _clean(text: str) -> str:
    """One line of text: runs of CR, LF and other controls become a space (no injection)."""
    return _CONTROLS.sub(" ", text)


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def _ascii_from(value: str) -> str:
    """A From value fit for a 7-bit header: a non-ASCII display name as an RFC 2047 word."""
    if value.isascii():
        return value
    name, address = parseaddr(value)
    return formataddr((name, _ascii(address)), charset="utf-8")


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _field(name: str, value: str) -> bytes:
    """``name: value`` CRLF, folded at spaces near 78 characters (RFC 5322 §2.2.3).

    A word too long for one line is cut, so no line passes 998 octets (§2.1.1).
    """
    head = f"{name}:"
    words = [
        w[i : i + _MAX_WORD] for w in value.split(" ") if w for i in range(0, len(w), _MAX_WORD)
    ]
    lines: list[str] = []
    line = head
    for word in words:
        if line != head and len(line) + 1 + len(word) > _FOLD_AT:
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


def _crlf(data: bytes) -> bytes:
    """Bare CR and LF become CRLF: the report is in SMTP's canonical form (RFC 5321 §2.3.8)."""
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data.replace(b"\n", b"\r\n")


def _ensure_crlf(data: bytes) -> bytes:
    return data if not data or data.endswith(b"\r\n") else data + b"\r\n"


def _is_8bit(data: bytes) -> bool:
    return not data.isascii()


def _encoding(data: bytes) -> str:
    """RFC 2045 §2.7-§2.9: "7bit", "8bit" or "binary" for CRLF-normalised ``data``."""
    if b"\0" in data or max(map(len, data.split(b"\r\n")), default=0) > _MAX_LINE:
        return "binary"
    return "8bit" if _is_8bit(data) else "7bit"


def _qp(data: bytes) -> bytes:
    """Quoted-printable (RFC 2045 §6.7) with CRLF line ends, for a header block with junk."""
    lines = data.split(b"\r\n")
    return b"\r\n".join(binascii.b2a_qp(line).replace(b"=\n", b"=\r\n") for line in lines)
