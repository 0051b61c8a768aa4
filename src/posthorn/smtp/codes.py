"""SMTP replies: the `Reply` value, the `SMTPError` that carries one, and every reply we send.

This module owns what goes on the wire as a reply (STYLE.md points 7 and 9): code, enhanced status
code and text live here as named constants, tests assert against them, and nothing else in
posthorn spells a reply code. Problems are raised as ``SMTPError(CONSTANT)`` where they are found
and become bytes once, at the session boundary, through `Reply.to_bytes`.

Invariants:

- ``Reply.code`` is a three-digit reply code (RFC 5321 §4.2); ``enhanced`` is ``None`` or a
  ``class.subject.detail`` status code (RFC 3463 §2) whose class digit matches the reply's.
- Reply text is never taken from an exception message or a check's internals; a rejection names
  the problem class, not which policy decided it (STYLE.md point 7). `SMTPError.detail` is the
  place for the particulars, and it goes to the log only.
- `Reply.to_bytes` cannot emit anything but well-formed reply lines: CR, LF and other control
  characters in ``text`` can never inject a line of their own.

Enhanced codes are omitted on 1xx/3xx replies, on the greeting and on the HELO/EHLO reply
(RFC 2034 §3); the constants for those carry ``enhanced=None``.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, replace
from typing import Final

__all__ = [
    "AUTH_ALREADY_DONE",
    "AUTH_CANCELLED",
    "AUTH_CONTINUE",
    "AUTH_FAILED",
    "AUTH_LINE_TOO_LONG",
    "AUTH_MECHANISM_UNKNOWN",
    "AUTH_OK",
    "AUTH_REQUIRED",
    "AUTH_SYNTAX",
    "AUTH_TOO_WEAK",
    "BAD_DESTINATION_SYNTAX",
    "BAD_RECIPIENT_SYNTAX",
    "BAD_SENDER_SYNTAX",
    "BAD_SEQUENCE",
    "BARE_LF",
    "BARE_LINE_ENDING",
    "BDAT_SYNTAX",
    "BINARYMIME_NEEDS_BDAT",
    "CANNOT_VRFY",
    "CHUNK_OK",
    "CLOSING",
    "COMMAND_UNRECOGNIZED",
    "CONTENT_REJECTED",
    "ENCRYPTION_REQUIRED",
    "HELO_SYNTAX",
    "HELP",
    "INSUFFICIENT_STORAGE",
    "LINE_TOO_LONG",
    "LOCAL_ERROR",
    "MAIL_SYNTAX",
    "MESSAGE_TOO_BIG",
    "NOT_IMPLEMENTED",
    "NO_SUCH_USER",
    "NO_VALID_RECIPIENTS",
    "OK",
    "PARAM_NOT_IMPLEMENTED",
    "PARAM_UNRECOGNIZED",
    "QUEUED",
    "RCPT_OK",
    "RCPT_SYNTAX",
    "RELAY_DENIED",
    "ROUTING_LOOP",
    "SENDER_NOT_OWNED",
    "SENDER_OK",
    "SERVICE_READY",
    "SHUTTING_DOWN",
    "SMTPUTF8_REQUIRED",
    "SOURCE_ROUTE_REFUSED",
    "STARTTLS_REQUIRED",
    "START_DATA",
    "START_TLS",
    "SYNTAX_ERROR_PARAMS",
    "TEMP_AUTH_FAIL",
    "TIMEOUT",
    "TLS_NOT_AVAILABLE",
    "TOO_MANY_BAD",
    "TOO_MANY_CONNECTIONS",
    "TOO_MANY_RECIPIENTS",
    "TRANSACTION_FAILED",
    "Reply",
    "SMTPError",
    "auth_challenge",
    "queued",
]

_ENHANCED: Final = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")  # RFC 3463 §2 status-code
# RFC 5321 §4.2 textstring = 1*(%d09 / %d32-126); RFC 6531 §3.7.4.2 allows UTF-8 besides.
# Anything else (CR, LF inside a line, NUL, DEL, C1 controls) becomes a space.
_UNSAFE_TEXT: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: ``code`` (RFC 5321 §4.2), ``enhanced`` (RFC 3463) and ``text``.

    ``text`` may hold ``"\\n"`` to make a multi-line reply; each line is sent with the code and
    (when enabled) the enhanced code in front of it.
    """

    code: int
    enhanced: str | None
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        # RFC 3463 §2: the class digit is the reply code's first digit (2, 4 or 5).
        if self.enhanced is not None and (
            not _ENHANCED.match(self.enhanced) or self.enhanced[0] != str(self.code)[0]
        ):
            raise ValueError(f"bad enhanced status code {self.enhanced!r} for {self.code}")

    def __str__(self) -> str:
        """One line for logs: ``"550 5.1.1 text"`` with line breaks shown as ``" / "``."""
        head = f"{self.code} {self.enhanced}" if self.enhanced else str(self.code)
        return f"{head} {self.text}".rstrip().replace("\n", " / ")

    def to_bytes(self, *, enhanced: bool = True) -> bytes:
        """The reply as wire bytes, CRLF-terminated.

        RFC 5321 §4.2.1: every line but the last is ``code "-" text``, the last ``code SP
        text``. RFC 2034 §3: with ENHANCEDSTATUSCODES the enhanced code starts the text of
        every line. ``enhanced=False`` leaves it out (a client that never said EHLO).
        """
        prefix = f"{self.enhanced} " if enhanced and self.enhanced else ""
        lines = self.text.split("\n")
        last = len(lines) - 1
        out: list[str] = []
        for i, line in enumerate(lines):
            body = (prefix + _UNSAFE_TEXT.sub(" ", line)).rstrip(" ")
            sep = " " if i == last else "-"
            # An empty last line still gets its space: "334 " is what SASL clients expect.
            out.append(f"{self.code}{sep}{body}\r\n")
        return "".join(out).encode("utf-8", "replace")

    def with_text(self, text: str) -> Reply:
        """The same code and enhanced code with other text."""
        return replace(self, text=text)

    def with_id(self, queue_id: str) -> Reply:
        """The reply naming a queue or connection id (STYLE.md point 13).

        A 2xx reply becomes ``"Ok: queued as ID"`` (the form Postfix made familiar, and the
        one `QUEUED` is written for); any other reply gets ``" (ID)"`` at the end of its last
        line, so an error can be matched to its log lines.
        """
        if self.code < 300:
            return replace(self, text=f"{self.text}: queued as {queue_id}")
        return replace(self, text=f"{self.text} ({queue_id})")


class SMTPError(Exception):
    """A problem with a wire reply, raised where it is found (STYLE.md point 7).

    ``reply`` is what the client sees; ``detail`` is for the log only (it may name the check or
    the offending input, which the wire reply deliberately does not).
    """

    def __init__(self, reply: Reply, detail: str | None = None) -> None:
        super().__init__(detail or str(reply))
        self.reply = reply
        self.detail = detail


# --- 2xx: success ----------------------------------------------------------------------------
# RFC 5321 §4.3.1: the greeting starts with our domain; the session sets the text with
# with_text(f"{hostname} ESMTP ...") and RFC 2034 §3 keeps enhanced codes off it.
SERVICE_READY: Final = Reply(220, None, "ESMTP ready")
START_TLS: Final = Reply(220, "2.0.0", "Ready to start TLS")  # RFC 3207 §4
CLOSING: Final = Reply(221, "2.0.0", "Bye")  # RFC 5321 §4.1.1.10
HELP: Final = Reply(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321")  # §4.1.1.8
AUTH_OK: Final = Reply(235, "2.7.0", "Authentication successful")  # RFC 4954 §6
OK: Final = Reply(250, "2.0.0", "Ok")  # RSET, NOOP; RFC 3463 X.0.0
QUEUED: Final = Reply(250, "2.0.0", "Ok")  # after DATA / BDAT LAST: see queued(queue_id)
CHUNK_OK: Final = Reply(250, "2.0.0", "Ok: chunk received")  # BDAT without LAST, RFC 3030 §2
SENDER_OK: Final = Reply(250, "2.1.0", "Sender ok")  # RFC 3463 X.1.0 "other address status"
RCPT_OK: Final = Reply(250, "2.1.5", "Recipient ok")  # RFC 3463 X.1.5 "destination valid"
# RFC 5321 §3.5.3 / §7.3: VRFY may be answered with 252 instead of revealing accounts.
CANNOT_VRFY: Final = Reply(
    252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery"
)

# --- 3xx: go on ------------------------------------------------------------------------------
AUTH_CONTINUE: Final = Reply(334, None, "")  # RFC 4954 §4: text is the base64 challenge
START_DATA: Final = Reply(354, None, "End data with <CR><LF>.<CR><LF>")  # RFC 5321 §4.3.2

# --- 4xx: temporary failure ------------------------------------------------------------------
# RFC 3463 X.3.2 "system not accepting network messages".
SHUTTING_DOWN: Final = Reply(421, "4.3.2", "Service shutting down, try again later")
TIMEOUT: Final = Reply(421, "4.4.2", "Timeout exceeded")  # RFC 3463 X.4.2 "bad connection"
TOO_MANY_BAD: Final = Reply(421, "4.7.0", "Too many errors")  # RFC 3463 X.7.0 security
TOO_MANY_CONNECTIONS: Final = Reply(421, "4.7.0", "Too many connections")
LOCAL_ERROR: Final = Reply(451, "4.3.0", "Internal error")  # STYLE.md point 7; X.3.0
INSUFFICIENT_STORAGE: Final = Reply(452, "4.3.1", "Insufficient system storage")  # X.3.1
# RFC 5321 §4.5.3.1.10: too many recipients is 452; RFC 3463 X.5.3.
TOO_MANY_RECIPIENTS: Final = Reply(452, "4.5.3", "Too many recipients")
TEMP_AUTH_FAIL: Final = Reply(454, "4.7.0", "Temporary authentication failure")  # RFC 4954 §6
TLS_NOT_AVAILABLE: Final = Reply(454, "4.7.0", "TLS not available")  # RFC 3207 §4
# RFC 3463 X.4.6 "routing loop detected": an alias loop in our own tables. Temporary, because
# it is our configuration that is wrong and can be fixed before the sender gives up
# (DESIGN.md "Delivery semantics": temporary unless known to be permanent).
ROUTING_LOOP: Final = Reply(451, "4.4.6", "Routing loop detected")

# --- 5xx: permanent failure, command level ---------------------------------------------------
# RFC 3463 X.5.2 "syntax error: ... could not be interpreted ... or is unrecognized".
COMMAND_UNRECOGNIZED: Final = Reply(500, "5.5.2", "Command unrecognized")
# RFC 5321 §4.2.2 lists "command line too long" under 500; also used for over-long DATA lines
# (RFC 5321 §4.5.3.1.6: 1000 octets including CRLF).
LINE_TOO_LONG: Final = Reply(500, "5.5.2", "Line too long")
AUTH_LINE_TOO_LONG: Final = Reply(500, "5.5.6", "Authentication exchange line is too long")
# RFC 3463 X.5.4 "invalid command arguments".
SYNTAX_ERROR_PARAMS: Final = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
HELO_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: EHLO hostname")
MAIL_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
RCPT_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]")
BDAT_SYNTAX: Final = Reply(501, "5.5.4", "Syntax: BDAT size [LAST]")
BAD_SENDER_SYNTAX: Final = Reply(501, "5.1.7", "Bad sender address syntax")  # RFC 3463 X.1.7
BAD_RECIPIENT_SYNTAX: Final = Reply(501, "5.1.3", "Bad recipient address syntax")  # X.1.3
AUTH_CANCELLED: Final = Reply(501, "5.7.0", "Authentication cancelled")  # RFC 4954 §4 "*"
# RFC 4954 §4: a response that is not base64 (or not the mechanism's syntax) is 501.
AUTH_SYNTAX: Final = Reply(501, "5.5.2", "Cannot decode response")
NOT_IMPLEMENTED: Final = Reply(502, "5.5.1", "Command not implemented")  # RFC 3463 X.5.1
BAD_SEQUENCE: Final = Reply(503, "5.5.1", "Bad sequence of commands")  # RFC 5321 §4.2.4
AUTH_ALREADY_DONE: Final = Reply(503, "5.5.1", "Already authenticated")  # RFC 4954 §4
# RFC 3030 §3: DATA after MAIL FROM ... BODY=BINARYMIME is a sequence error.
BINARYMIME_NEEDS_BDAT: Final = Reply(503, "5.5.1", "BINARYMIME requires BDAT")
PARAM_NOT_IMPLEMENTED: Final = Reply(504, "5.5.4", "Command parameter not implemented")
AUTH_MECHANISM_UNKNOWN: Final = Reply(504, "5.5.4", "Unrecognized authentication type")
AUTH_REQUIRED: Final = Reply(530, "5.7.0", "Authentication required")  # RFC 4954 §6
STARTTLS_REQUIRED: Final = Reply(530, "5.7.0", "Must issue a STARTTLS command first")  # 3207 §4
AUTH_TOO_WEAK: Final = Reply(534, "5.7.9", "Authentication mechanism is too weak")  # 4954 §6
AUTH_FAILED: Final = Reply(535, "5.7.8", "Authentication credentials invalid")  # RFC 4954 §6
ENCRYPTION_REQUIRED: Final = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)  # RFC 4954 §6
# RFC 5321 §4.1.1.11 / §4.3.2: parameter not recognized or not implemented.
PARAM_UNRECOGNIZED: Final = Reply(
    555, "5.5.4", "MAIL FROM/RCPT TO parameters not recognized or not implemented"
)

# --- 5xx: permanent failure, addresses and policy --------------------------------------------
NO_SUCH_USER: Final = Reply(550, "5.1.1", "Recipient address rejected: user unknown")  # X.1.1
RELAY_DENIED: Final = Reply(554, "5.7.1", "Relay access denied")  # RFC 3463 X.7.1
SENDER_NOT_OWNED: Final = Reply(553, "5.7.1", "Sender address not owned by user")  # X.7.1
# RFC 5321 §4.2.3: 553 "mailbox name not allowed (e.g., mailbox syntax incorrect)"; X.1.3.
BAD_DESTINATION_SYNTAX: Final = Reply(553, "5.1.3", "Recipient address not allowed")
# RFC 5321 §4.1.1.3 / Appendix C let a server strip a source route; for a forward path it is
# a relay trick, so posthorn refuses it (the reverse path's route is stripped, see protocol.py).
SOURCE_ROUTE_REFUSED: Final = Reply(553, "5.1.3", "Source routes are not accepted")
# RFC 6531 §3.7.4.1 with RFC 6533's X.6.7 "non-ASCII addresses not permitted".
SMTPUTF8_REQUIRED: Final = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
# RFC 1870 §6 / RFC 3463 X.3.4 "message too big for system".
MESSAGE_TOO_BIG: Final = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
# RFC 5321 §3.3: DATA with no accepted recipient.
NO_VALID_RECIPIENTS: Final = Reply(554, "5.5.1", "No valid recipients")
TRANSACTION_FAILED: Final = Reply(554, "5.5.0", "Transaction failed")  # RFC 3463 X.5.0
CONTENT_REJECTED: Final = Reply(554, "5.6.0", "Message content rejected")  # RFC 3463 X.6.0
# SMTP smuggling defence (see data.py): RFC 5321 §2.3.8 forbids CR and LF except as CRLF. 554 is
# the RFC 5321 §4.3.2 reply for a message refused after its data; X.6.0 says the content is at
# fault and that resending it unchanged will fail again.
BARE_LINE_ENDING: Final = Reply(
    554, "5.6.0", "Message contains bare CR or LF (RFC 5321 section 2.3.8)"
)
BARE_LF: Final = BARE_LINE_ENDING


def queued(queue_id: str) -> Reply:
    """``250 2.0.0 Ok: queued as ID``, the reply that promises durability (DESIGN.md)."""
    return QUEUED.with_id(queue_id)


def auth_challenge(challenge: bytes) -> Reply:
    """``334`` with the base64 of a SASL server challenge (RFC 4954 §4); b"" gives ``"334 "``."""
    return AUTH_CONTINUE.with_text(base64.b64encode(challenge).decode("ascii"))
