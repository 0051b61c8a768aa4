"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3), for clients that have not enabled UTF-8.

Printable US-ASCII except ``&`` stands for itself; ``&`` is written ``&-``; every other run of
characters is UTF-16BE in modified BASE64 (``,`` for ``/``, no padding) between ``&`` and ``-``.

`decode` accepts only the canonical form, so ``encode(decode(t)) == t`` for every ``t`` it
accepts: a name has exactly one spelling and two spellings can never name one mailbox.
"""

from __future__ import annotations

import binascii
import re

# RFC 3501 §5.1.3: printable US-ASCII (0x20-0x7e) represents itself, except "&".
_NEEDS_SHIFT = re.compile(r"[^\x20-\x7e]+|&")
_ENCODED = re.compile(r"(?:[\x20-\x25\x27-\x7e]|&[A-Za-z0-9+,]*-)*")
_SHIFT = re.compile(r"&([A-Za-z0-9+,]*)-")
_PRINTABLE = re.compile(r"[\x20-\x7e]")


def _shift(m: re.Match[str]) -> str:
    run = m.group()
    if run == "&":
        return "&-"
    b64 = binascii.b2a_base64(run.encode("utf-16-be"), newline=False)
    return "&" + b64.rstrip(b"=").replace(b"/", b",").decode("ascii") + "-"


def encode(name: str) -> str:
    """The modified UTF-7 form of ``name``. Raises ValueError for a lone surrogate."""
    return _NEEDS_SHIFT.sub(_shift, name)


def _unshift(m: re.Match[str]) -> str:
    b64 = m.group(1)
    if not b64:
        return "&"
    # Shortest form: the base64 holds whole UTF-16 units and its spare bits are zero.
    bits = len(b64) * 6
    if bits % 16 >= 6:
        raise ValueError("modified UTF-7: base64 run has a partial character")
    padded = b64.replace(",", "/") + "=" * (-len(b64) % 4)
    raw = binascii.a2b_base64(padded.encode("ascii"), strict_mode=True)
    if len(raw) % 2:
        raise ValueError("modified UTF-7: base64 run has a partial character")
    if binascii.b2a_base64(raw, newline=False).rstrip(b"=") != padded.rstrip("=").encode():
        raise ValueError("modified UTF-7: non-zero padding bits")
    text = raw.decode("utf-16-be")  # strict: a lone surrogate raises UnicodeDecodeError
    if _PRINTABLE.search(text):
        raise ValueError("modified UTF-7: printable ASCII must represent itself")
    return text


def decode(text: str) -> str:
    """The mailbox name that ``text`` spells. Raises ValueError unless ``text`` is canonical
    modified UTF-7 (bad base64, non-shortest forms such as ``&ACY-``, unterminated shifts,
    8-bit or control characters, two adjacent shifts)."""
    if _ENCODED.fullmatch(text) is None:
        raise ValueError("modified UTF-7: invalid character or unterminated shift")
    if "&" not in text:
        return text
    try:
        name = _SHIFT.sub(_unshift, text)
    except (binascii.Error, UnicodeDecodeError) as e:
        raise ValueError(f"modified UTF-7: {e}") from None
    if encode(name) != text:  # e.g. "&AOQ-&AOQ-" for what must be one shift "&AOQA5A-"
        raise ValueError("modified UTF-7: not in canonical form")
    return name
