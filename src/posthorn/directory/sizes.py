"""Quota sizes as people type them: ``500M``, ``1G``, ``1024``, ``0``, ``unlimited``.

Units are binary (K = 1024, M = 1024², G = 1024³, T = 1024⁴), as Dovecot reads quota rules; an
optional ``B`` / ``iB`` is accepted (``500MB``, ``500MiB`` mean the same). ``unlimited`` is
``None``. ``0`` is a real quota of zero bytes (nothing can be stored), not "unlimited": the word
is the only way to say that, so neither reading of ``0`` can surprise.

Invariant: ``parse_size(format_size(n)) == n`` for every ``n`` that `parse_size` returns.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

from posthorn.directory.errors import BadSize

__all__ = ["MAX_SIZE", "format_size", "parse_size"]

MAX_SIZE: Final = 2**63 - 1  # what an SQLite INTEGER holds
_UNITS: Final = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE: Final = re.compile(r"(\d{1,30})(?:\.(\d{1,12}))?\s*([kmgt]?)(?:i?b)?", re.ASCII)
_HINT: Final = "expected a number with an optional K, M, G or T suffix, or 'unlimited'"


def parse_size(text: str) -> int | None:
    """Bytes for ``text``, or ``None`` for ``unlimited``; `BadSize` names what is wrong."""
    cleaned = text.strip().lower()
    if not cleaned:
        raise BadSize(f"empty size: {_HINT}")
    if cleaned == "unlimited":
        return None
    match = _SIZE.fullmatch(cleaned)
    if match is None:
        raise BadSize(f"bad size {text!r}: {_HINT}")
    whole, fraction, unit = match.groups()
    if fraction is not None and not unit:
        raise BadSize(f"bad size {text!r}: a fraction needs a unit (bytes are whole)")
    number = Decimal(f"{whole}.{fraction}" if fraction is not None else whole)
    size = int(number * _UNITS[unit])  # a fractional byte rounds down
    if size > MAX_SIZE:
        raise BadSize(f"size {text!r} is too large")
    return size


def format_size(size: int | None) -> str:
    """The shortest exact spelling of ``size`` in the `parse_size` syntax."""
    if size is None:
        return "unlimited"
    for suffix, factor in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{suffix}"
    return str(size)
