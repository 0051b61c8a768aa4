"""Encodings of the SQLite store: UID ranges, flags, dates, mailbox names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from posthorn.store.base import SYSTEM_FLAGS, MailboxNotAllowed
from posthorn.store.sqlite.common import (
    FLAG_BITS,
    FlagDecoder,
    decode_date,
    encode_date,
    encode_flags,
    in_ranges,
    normalise_ranges,
    uid_filter,
)
from posthorn.store.sqlite.mailboxes import normalise_name


def test_normalise_ranges() -> None:
    assert normalise_ranges([(5, 3), (1, 1), (2, 2), (10, 12), (11, 20), (0, 0)]) == [
        (1, 5),
        (10, 20),
    ]
    assert normalise_ranges([]) == []


def test_uid_filter_and_in_ranges() -> None:
    assert uid_filter(None) == ("1", [], False)
    assert uid_filter([]) == ("0", [], False)
    sql, params, post = uid_filter([(1, 2), (4, 4)])
    assert sql == "(uid BETWEEN ? AND ? OR uid BETWEEN ? AND ?)" and params == [1, 2, 4, 4]
    assert not post
    many = [(u, u) for u in range(1, 400, 3)]
    sql, params, post = uid_filter(many)
    assert post and params == [1, 397]
    spans = normalise_ranges(many)
    assert [u for u in range(1, 401) if in_ranges(u, spans)] == list(range(1, 400, 3))


def test_every_system_flag_has_a_bit() -> None:
    assert set(FLAG_BITS) == set(SYSTEM_FLAGS)
    assert sorted(FLAG_BITS.values()) == [1 << i for i in range(len(FLAG_BITS))]


def test_flags() -> None:
    bits, keywords = encode_flags({"\\seen", "\\DELETED", "\\Recent", "b", "a"})
    assert keywords == '["a", "b"]'
    decode = FlagDecoder()
    assert decode(bits, keywords) == frozenset({"\\Seen", "\\Deleted", "a", "b"})
    assert decode(bits, keywords) is decode(bits, keywords)
    assert encode_flags([]) == (0, None)


def test_dates() -> None:
    zoned = datetime(2026, 11, 23, 12, 0, 1, 250, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert decode_date(*encode_date(zoned)) == zoned
    assert decode_date(*encode_date(zoned)).utcoffset() == timedelta(hours=5, minutes=30)
    naive = datetime(2000, 1, 1)
    assert decode_date(*encode_date(naive)) == naive.replace(tzinfo=UTC)
    old = datetime(1960, 5, 5, tzinfo=UTC)
    assert decode_date(*encode_date(old)) == old
    assert encode_date(None)[0] % 1_000_000 == 0


@pytest.mark.parametrize(
    ("given", "stored"),
    [("inbox", "INBOX"), ("InBox/", "INBOX"), ("a/b/", "a/b"), ("inbox/x", "inbox/x")],
)
def test_mailbox_names(given: str, stored: str) -> None:
    assert normalise_name(given) == stored


@pytest.mark.parametrize("bad", ["", "/", "a//b", "/a"])
def test_bad_mailbox_names(bad: str) -> None:
    with pytest.raises(MailboxNotAllowed):
        normalise_name(bad)
