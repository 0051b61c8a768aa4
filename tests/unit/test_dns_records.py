"""The DNS records to publish for a domain (posthorn.web.dns_records): exact values and lines."""

from __future__ import annotations

import pytest

from posthorn.mail.address import AddressError
from posthorn.web.dns_records import DNSRecord, hint_addresses, records_for


def test_mx_and_spf_exactly() -> None:
    mx, spf = records_for("example.org", "mail.example.org")
    assert (mx.type, mx.name, mx.value) == ("MX", "example.org.", "10 mail.example.org.")
    assert (spf.type, spf.name, spf.value) == ("TXT", "example.org.", "v=spf1 mx -all")
    assert mx.zone_line() == "example.org. IN MX 10 mail.example.org."
    assert spf.zone_line() == 'example.org. IN TXT "v=spf1 mx -all"'
    assert "RFC 5321" in mx.why and "mail.example.org" in mx.why
    assert "RFC 7208" in spf.why


def test_names_are_normalised_a_labels() -> None:
    mx, spf = records_for("Bücher.Example", "MAIL.Bücher.example.")
    assert mx.name == spf.name == "xn--bcher-kva.example."
    assert mx.value == "10 mail.xn--bcher-kva.example."
    assert "bücher.example" in spf.why  # people read the why; the names are for the zone


def test_address_hints() -> None:
    records = records_for("example.org", "mail.example.org", ["198.51.100.7", "2001:db8::25"])
    a, aaaa = records[2:]
    assert (a.type, a.name, a.value) == ("A", "mail.example.org.", "198.51.100.7")
    assert (aaaa.type, aaaa.name, aaaa.value) == ("AAAA", "mail.example.org.", "2001:db8::25")
    assert a.zone_line() == "mail.example.org. IN A 198.51.100.7"
    assert "CNAME" in a.why


def test_private_address_hint_warns_about_nat() -> None:
    (hint,) = records_for("example.org", "mail.example.org", ["10.0.0.5"])[2:]
    assert "private" in hint.why and "NAT" in hint.why
    (public,) = records_for("example.org", "mail.example.org", ["8.8.8.8"])[2:]
    assert "private" not in public.why


def test_hint_addresses_keeps_only_specific_reachable_ones() -> None:
    hosts = ["0.0.0.0", "::", "127.0.0.1", "::1", "169.254.1.1", "fe80::1", "224.0.0.1",
             "198.51.100.7", "198.51.100.7", "2001:db8::25", "localhost"]  # fmt: skip
    assert hint_addresses(hosts) == ["198.51.100.7", "2001:db8::25"]
    assert hint_addresses([]) == []


def test_txt_quoting() -> None:
    record = DNSRecord("TXT", "x.example.", 'a "quoted" \\ value', "why")
    assert record.zone_line() == 'x.example. IN TXT "a \\"quoted\\" \\\\ value"'
    assert record.as_json() == {
        "type": "TXT",
        "name": "x.example.",
        "value": 'a "quoted" \\ value',
        "why": "why",
    }


@pytest.mark.parametrize(("domain", "hostname"), [("bad domain", "mail.x"), ("x.org", "a..b")])
def test_bad_names_are_refused(domain: str, hostname: str) -> None:
    with pytest.raises(AddressError):
        records_for(domain, hostname)
