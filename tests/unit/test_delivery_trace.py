"""Trace fields of local delivery (posthorn.delivery.trace): prefix and Delivered-To."""

from __future__ import annotations

from pathlib import Path

from posthorn.delivery.trace import delivered_to, prefix, read_header_block


def test_prefix_order_and_null_sender() -> None:
    received = b"Received: from a.example by mx.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    assert prefix("alice@a.example", "bob@ours.example", received) == (
        b"Return-Path: <alice@a.example>\r\nDelivered-To: bob@ours.example\r\n" + received
    )
    assert prefix("", "bob@ours.example", b"").startswith(b"Return-Path: <>\r\n")


def test_prefix_utf8_sender() -> None:
    assert prefix("j\u00f6rg@a.example", "b@o.example", b"").startswith(
        "Return-Path: <j\u00f6rg@a.example>".encode()
    )


def test_delivered_to_fields() -> None:
    header = (
        b"Received: x\r\n"
        b"Delivered-To: Bob@Ours.Example\r\n"
        b"delivered-to : <carol@ours.example>\r\n"
        b"Delivered-To:\r\n dave@ours.example\r\n"
        b"Delivered-To: not an address\r\n"
        b"X-Delivered-To: eve@ours.example\r\n"
        b"Subject: Delivered-To: frank@ours.example\r\n"
    )
    assert delivered_to(header) == {
        "bob@ours.example",
        "carol@ours.example",
        "dave@ours.example",
        "not an address",
    }


def test_delivered_to_none() -> None:
    assert delivered_to(b"Subject: hi\r\n") == frozenset()


def test_header_block_stops_at_the_body(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.write_bytes(b"Subject: a\r\n\r\nDelivered-To: bob@ours.example\r\n")
    block = read_header_block(path)
    assert block == b"Subject: a\r\n"
    assert delivered_to(block) == frozenset()
    path.write_bytes(b"Subject: a\nDelivered-To: x@y.example\n\nbody")
    assert delivered_to(read_header_block(path)) == {"x@y.example"}


def test_header_block_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.write_bytes(b"X: " + b"a" * 1000 + b"\r\n")
    assert len(read_header_block(path, limit=100)) == 100
