"""Header fields this MTA writes: the Received trace field, and Message-ID / Date for submission.

Pure functions over values; the session decides when to call them.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime
from email.utils import format_datetime, formatdate

# RFC 5322 §2.2: a header field name is printable ASCII except ":", at the start of a line.
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


def received_field(
    *,
    helo: str,
    client_ip: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    tls: str | None = None,
    when: datetime | None = None,
) -> bytes:
    """A Received field (RFC 5321 §4.4) without a "for" clause, CRLF-terminated.

    ``protocol`` is the RFC 3848 WITH keyword (ESMTP, ESMTPS, ESMTPSA, LMTP, ...). The
    authenticated identity is deliberately not written: it would leak account names to
    every recipient.
    """
    helo_text = _clean(helo) or "unknown"
    date = format_datetime(when) if when is not None else formatdate(time.time(), localtime=False)
    tls_part = f"\r\n\t({_clean(tls)})" if tls else ""
    return (
        f"Received: from {helo_text} ([{client_ip}])\r\n"
        f"\tby {hostname} (posthorn) with {protocol} id {queue_id}{tls_part};\r\n"
        f"\t{date}\r\n"
    ).encode("utf-8", "replace")


def _clean(text: str | None) -> str:
    """No CR, LF or NUL from a client may reach a header field (header injection)."""
    if not text:
        return ""
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def field_names(header_block: bytes) -> set[bytes]:
    """Lower-cased names of the fields in a header block (continuation lines skipped)."""
    return {m.group(1).lower() for m in _FIELD_NAME.finditer(header_block)}


def message_id(hostname: str) -> str:
    """A new Message-ID (RFC 5322 §3.6.4): unique by time and 96 random bits."""
    return f"<{int(time.time() * 1000):x}.{secrets.token_hex(12)}@{hostname}>"


def submission_fields(header_block: bytes, hostname: str) -> bytes:
    """The Message-ID and Date fields a submitted message lacks (RFC 6409 §8.2, §8.3)."""
    names = field_names(header_block)
    added = b""
    if b"message-id" not in names:
        added += f"Message-ID: {message_id(hostname)}\r\n".encode()
    if b"date" not in names:
        added += f"Date: {formatdate(time.time(), localtime=False)}\r\n".encode()
    return added
