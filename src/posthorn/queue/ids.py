"""Queue ids: the short name a queued message has in replies, logs, the spool and the CLI.

A queue id is 12 characters of Crockford base32 (digits and upper-case letters without I, L,
O, U), 60 bits: the upper 45 are milliseconds since the Unix epoch (good until the year 3084),
the lower 15 a per-process counter that starts at a random value. So ids sort by creation time
(exactly within one process, roughly across processes) and read well in ``250 2.0.0 Ok: queued as
ID`` (RFC 5321 §4.2 lets the text after the code say anything; STYLE.md point 13).

Invariants: within one process ids are unique and strictly ascending (in a new millisecond the
counter starts at a random value below half its range and counts up; should it overflow, the
time part borrows the next millisecond rather than repeat; a clock that steps back is ignored
until it catches up). Across
processes an id clash is improbable, not impossible; the spool creates each file with
``O_EXCL`` and the queue database has the id as primary key, so a clash fails loudly and is
never a silent overwrite.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Final

ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH: Final = 12
_COUNTER_BITS: Final = 15
_COUNTER_MASK: Final = (1 << _COUNTER_BITS) - 1
_TIME_MASK: Final = (1 << (ID_LENGTH * 5 - _COUNTER_BITS)) - 1
_VALID: Final = frozenset(ALPHABET)


def encode(value: int, length: int = ID_LENGTH) -> str:
    """``value`` in ``length`` base32 digits, most significant first."""
    out = []
    for _ in range(length):
        out.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def is_queue_id(text: str) -> bool:
    """Whether ``text`` has the shape of a queue id (also used to recognise spool files)."""
    return len(text) == ID_LENGTH and all(c in _VALID for c in text)


class QueueIdSource:
    """Makes queue ids. One per process is enough; thread-safe. ``clock`` returns seconds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def new(self) -> str:
        with self._lock:
            ms = int(self._clock() * 1000) & _TIME_MASK
            if ms > self._last_ms:
                # A fresh millisecond: start low and random, leaving room to count upwards.
                self._counter = secrets.randbits(_COUNTER_BITS - 1)
            else:
                ms = self._last_ms
                self._counter += 1
                if self._counter > _COUNTER_MASK:
                    # Every counter value of this millisecond is taken: borrow the next one.
                    ms += 1
                    self._counter = 0
            self._last_ms = ms
            return encode((ms << _COUNTER_BITS) | self._counter)
