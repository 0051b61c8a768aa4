"""COMPRESS=DEFLATE framing: round trip, sync flushes, and the inflation bound."""

from __future__ import annotations

import zlib

import pytest

from posthorn.imap.compress import MAX_EXPANSION, CompressionBomb, Deflate


def test_each_batch_is_readable_on_its_own() -> None:
    d = Deflate()
    peer = zlib.decompressobj(wbits=-15)
    for line in (b"* OK one\r\n", b"a1 OK two\r\n"):
        assert peer.decompress(d.compress(line)) == line  # sync flush: nothing held back


def test_input_round_trip_and_junk() -> None:
    client = zlib.compressobj(wbits=-15)
    d = Deflate()
    data = client.compress(b"a NOOP\r\n") + client.flush(zlib.Z_SYNC_FLUSH)
    assert d.decompress(data[:3]) + d.decompress(data[3:]) == b"a NOOP\r\n"
    with pytest.raises(zlib.error):
        Deflate().decompress(b"\xff" * 20)


def test_a_bomb_is_refused() -> None:
    client = zlib.compressobj(level=9, wbits=-15)
    bomb = client.compress(b"\0" * (MAX_EXPANSION + 1)) + client.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 100_000
    with pytest.raises(CompressionBomb):
        Deflate().decompress(bomb)
