"""COMPRESS=DEFLATE (RFC 4978): raw deflate in both directions once the client asks for it.

Kept apart from the shell so the framing rules live in one place: every response batch ends
with a sync flush (the client must be able to read a whole response without waiting for more),
and input is inflated with a bound, so a few kilobytes of "zip bomb" cannot make the server
hold gigabytes before the command reader's own limits apply.
"""

from __future__ import annotations

import zlib

MAX_EXPANSION = 16 * 1024 * 1024  # octets one network read may inflate to


class CompressionBomb(Exception):
    """One read inflated past `MAX_EXPANSION`: no honest client sends that."""


class Deflate:
    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(wbits=-15)  # RFC 4978 §3: raw DEFLATE, no header
        self._deflater = zlib.compressobj(level=6, wbits=-15)

    def compress(self, data: bytes) -> bytes:
        return self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)

    def decompress(self, data: bytes) -> bytes:
        """Inflate one network read. Raises `CompressionBomb`, or `zlib.error` on junk."""
        out = self._inflater.decompress(data, MAX_EXPANSION)
        if self._inflater.unconsumed_tail:
            raise CompressionBomb
        return out
