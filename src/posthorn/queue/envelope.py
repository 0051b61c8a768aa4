"""The envelope of a queued message: the narrow interface between receiving and delivering.

The SMTP side fills it in while a session runs and hands it to the spool with the message
bytes; the queue keeps it durably beside them; delivery reads it back. Nothing else passes
between the two sides (DESIGN.md "Ownership").

DSN parameters (RFC 3461) are kept exactly as accepted, already validated, so the outbound
queue can relay them and build reports from them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Notify(enum.Enum):
    """RFC 3461 §4.1 NOTIFY values."""

    NEVER = "NEVER"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    DELAY = "DELAY"


@dataclass(frozen=True, slots=True)
class EnvelopeRecipient:
    """One RCPT TO, as accepted.

    ``address`` is the forward path as given (``str(Address)``: local-part case kept, domain in
    A-labels). ``notify`` is None when the client gave no NOTIFY (the default applies: FAILURE,
    and DELAY at our discretion). ``orcpt`` is the ORCPT value ``addr-type;xtext-decoded``.
    """

    address: str
    notify: frozenset[Notify] | None = None
    orcpt: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """Everything the queue needs besides the bytes.

    ``mail_from`` is ``""`` for the null reverse path (bounces; RFC 5321 §4.5.5).
    ``received`` is the complete trace header field this MTA adds (RFC 5321 §4.4), CRLF-
    terminated, *without* a "for" clause; delivery prepends it (per recipient it may add
    ``Return-Path`` and ``Delivered-To`` too) rather than the receiver rewriting the spool file.
    ``auth`` is the authenticated account that submitted the message, if any.
    """

    mail_from: str
    recipients: tuple[EnvelopeRecipient, ...]
    received: bytes = b""
    ret: str | None = None  # RFC 3461 §4.3: "FULL" or "HDRS"
    envid: str | None = None  # RFC 3461 §4.4, xtext-decoded
    body: str = "7BIT"  # RFC 6152 / RFC 3030 BODY= : 7BIT, 8BITMIME, BINARYMIME
    smtputf8: bool = False  # RFC 6531
    auth: str | None = None
    client_ip: str = ""
    helo: str = ""
    protocol: str = "ESMTP"  # RFC 3848 WITH value: ESMTP, ESMTPS, ESMTPSA, LMTP, ...
