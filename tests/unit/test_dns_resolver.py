"""posthorn.dns.Resolver against a real DNS server on loopback (tests.support.FakeDNS).

Nothing here queries real DNS: every Resolver is given the FakeDNS address explicitly.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator

import pytest

from posthorn.dns import (
    STATUS_DNS_TEMPFAIL,
    STATUS_NO_DOMAIN,
    STATUS_NO_ROUTE,
    STATUS_NULL_MX,
    DNSError,
    MXHost,
    Resolver,
    parse_nameserver,
)
from tests.support.dns_server import FakeDNS

ZONE = {
    "b.test": [("MX", "20 mx2.b.test"), ("MX", "10 mx1.b.test"), ("MX", "30 mx3.b.test")],
    "mx1.b.test": [("A", "127.0.0.11"), ("A", "127.0.0.12"), ("AAAA", "::1")],
    "mx2.b.test": [("AAAA", "::2")],
    "mx3.b.test": [],
    "equal.test": [("MX", "10 one.equal.test"), ("MX", "10 two.equal.test"), ("MX", "5 x.test")],
    "implicit.test": [("A", "127.0.0.5")],
    "implicit6.test": [("AAAA", "::5")],
    "nothing.test": [("TXT", '"v=spf1 -all"')],
    "null.test": [("MX", "0 .")],
    "mixed-null.test": [("MX", "0 ."), ("MX", "10 real.mixed-null.test")],
    "alias.test": [("CNAME", "b.test")],
    "hostalias.test": [("CNAME", "mx1.b.test")],
    "dangling.test": [("CNAME", "gone.test")],
    "xn--bcher-kva.test": [("MX", "10 mx.xn--bcher-kva.test")],
    "xn--caf-dma.test": [("A", "127.0.0.7")],
    "upper.test": [("MX", "10 MX1.Upper.TEST."), ("MX", "20 mx1.upper.test")],
}


@pytest.fixture
def fake_dns() -> Iterator[FakeDNS]:
    with FakeDNS(ZONE) as server:
        yield server


def resolver(
    server: FakeDNS,
    *,
    timeout: float = 2.0,
    rng: random.Random | None = None,
    cache_size: int = 1024,
) -> Resolver:
    return Resolver([server.address], timeout=timeout, rng=rng, cache_size=cache_size)


# -- MX -------------------------------------------------------------------------------------


async def test_mx_sorted_by_preference(fake_dns: FakeDNS) -> None:
    assert await resolver(fake_dns).mx("b.test") == [
        MXHost(10, "mx1.b.test"),
        MXHost(20, "mx2.b.test"),
        MXHost(30, "mx3.b.test"),
    ]
    assert fake_dns.queries == [("b.test", "MX")]


async def test_equal_preferences_shuffled_by_rng(fake_dns: FakeDNS) -> None:
    orders = set()
    for seed in range(20):
        hosts = await resolver(fake_dns, rng=random.Random(seed)).mx("equal.test")
        assert hosts[0] == MXHost(5, "x.test")  # lower preference always first
        assert {h.host for h in hosts[1:]} == {"one.equal.test", "two.equal.test"}
        orders.add(tuple(h.host for h in hosts[1:]))
    assert orders == {
        ("one.equal.test", "two.equal.test"),
        ("two.equal.test", "one.equal.test"),
    }


async def test_same_seed_same_order(fake_dns: FakeDNS) -> None:
    first = await resolver(fake_dns, rng=random.Random(7)).mx("equal.test")
    again = await resolver(fake_dns, rng=random.Random(7)).mx("equal.test")
    assert first == again


async def test_mx_hosts_lower_case_without_dot_and_deduplicated(fake_dns: FakeDNS) -> None:
    assert await resolver(fake_dns).mx("Upper.Test.") == [MXHost(10, "mx1.upper.test")]


async def test_implicit_mx_from_a_record(fake_dns: FakeDNS) -> None:
    hosts = await resolver(fake_dns).mx("implicit.test")
    assert hosts == [MXHost(0, "implicit.test", implicit=True)]
    assert ("implicit.test", "MX") in fake_dns.queries
    assert ("implicit.test", "A") in fake_dns.queries


async def test_implicit_mx_from_aaaa_record(fake_dns: FakeDNS) -> None:
    hosts = await resolver(fake_dns).mx("implicit6.test")
    assert hosts == [MXHost(0, "implicit6.test", implicit=True)]


async def test_no_mx_and_no_address_is_permanent(fake_dns: FakeDNS) -> None:
    with pytest.raises(DNSError) as info:
        await resolver(fake_dns).mx("nothing.test")
    assert info.value.temporary is False
    assert info.value.status == STATUS_NO_ROUTE == "5.4.4"
    assert info.value.message == "domain nothing.test has no MX and no A/AAAA record"


async def test_null_mx_is_permanent(fake_dns: FakeDNS) -> None:
    with pytest.raises(DNSError) as info:
        await resolver(fake_dns).mx("null.test")
    assert info.value.temporary is False
    assert info.value.status == STATUS_NULL_MX == "5.1.10"
    assert str(info.value) == "domain null.test does not accept mail (null MX)"
    # RFC 7505: no fallback to the domain's addresses.
    assert fake_dns.queries == [("null.test", "MX")]


async def test_dot_among_real_exchangers_is_skipped(fake_dns: FakeDNS) -> None:
    assert await resolver(fake_dns).mx("mixed-null.test") == [MXHost(10, "real.mixed-null.test")]


async def test_nxdomain_is_permanent(fake_dns: FakeDNS) -> None:
    with pytest.raises(DNSError) as info:
        await resolver(fake_dns).mx("nowhere.test")
    assert info.value.temporary is False
    assert info.value.status == STATUS_NO_DOMAIN == "5.1.2"
    assert info.value.message == "domain nowhere.test does not exist (NXDOMAIN)"


async def test_cname_to_missing_name_is_nxdomain(fake_dns: FakeDNS) -> None:
    with pytest.raises(DNSError) as info:
        await resolver(fake_dns).mx("dangling.test")
    assert (info.value.temporary, info.value.status) == (False, "5.1.2")


@pytest.mark.parametrize("rcode", ["SERVFAIL", "REFUSED"])
async def test_server_failure_is_temporary(fake_dns: FakeDNS, rcode: str) -> None:
    fake_dns.fail("b.test", rcode)
    with pytest.raises(DNSError) as info:
        await resolver(fake_dns).mx("b.test")
    assert info.value.temporary is True
    assert info.value.status == STATUS_DNS_TEMPFAIL == "4.4.3"
    assert info.value.message == (
        "DNS lookup for b.test failed: no name server answered (SERVFAIL or REFUSED)"
    )


async def test_dropped_query_times_out_temporarily(fake_dns: FakeDNS) -> None:
    fake_dns.drop("b.test")
    started = time.monotonic()
    with pytest.raises(DNSError) as info:
        await resolver(fake_dns, timeout=0.5).mx("b.test")
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.5
    assert (info.value.temporary, info.value.status) == (True, "4.4.3")
    assert info.value.message == "DNS lookup for b.test timed out"
    assert ("b.test", "MX") in fake_dns.queries


async def test_implicit_mx_with_failing_address_lookup_is_temporary(fake_dns: FakeDNS) -> None:
    fake_dns.fail("nothing.test", qtype="A")
    fake_dns.fail("nothing.test", qtype="AAAA")
    with pytest.raises(DNSError) as info:
        await resolver(fake_dns).mx("nothing.test")
    assert (info.value.temporary, info.value.status) == (True, "4.4.3")


async def test_cname_at_domain_is_followed(fake_dns: FakeDNS) -> None:
    assert [h.host for h in await resolver(fake_dns).mx("alias.test")] == [
        "mx1.b.test",
        "mx2.b.test",
        "mx3.b.test",
    ]


async def test_idn_domain_queried_as_a_label(fake_dns: FakeDNS) -> None:
    assert await resolver(fake_dns).mx("bücher.test") == [MXHost(10, "mx.xn--bcher-kva.test")]
    assert fake_dns.queries == [("xn--bcher-kva.test", "MX")]


async def test_idn_implicit_mx_names_the_a_label(fake_dns: FakeDNS) -> None:
    hosts = await resolver(fake_dns).mx("CAFÉ.test")
    assert hosts == [MXHost(0, "xn--caf-dma.test", implicit=True)]


@pytest.mark.parametrize("bad", ["a" * 64 + ".test", "a..test", ""])
async def test_unusable_domain_name_is_permanent_without_query(fake_dns: FakeDNS, bad: str) -> None:
    with pytest.raises(DNSError) as info:
        await resolver(fake_dns).mx(bad)
    assert (info.value.temporary, info.value.status) == (False, "5.1.2")
    assert fake_dns.queries == []


async def test_truncated_udp_answer_retried_over_tcp() -> None:
    many = [("MX", f"{n} mail-exchanger-number-{n:02}.big.test") for n in range(40)]
    with FakeDNS({"big.test": many}, udp_limit=512) as server:
        hosts = await resolver(server).mx("big.test")
        assert [h.preference for h in hosts] == list(range(40))
        assert hosts[39].host == "mail-exchanger-number-39.big.test"
        assert server.queries == [("big.test", "MX"), ("big.test", "MX")]
        assert server.tcp_queries == [("big.test", "MX")]


async def test_answers_are_cached_for_their_ttl() -> None:
    with FakeDNS(ZONE, ttl=60) as server:
        cached = resolver(server)
        await cached.mx("b.test")
        await cached.mx("b.test")
        assert server.queries == [("b.test", "MX")]
        uncached = resolver(server, cache_size=0)
        await uncached.mx("b.test")
        await uncached.mx("b.test")
        assert server.queries == [("b.test", "MX")] * 3


async def test_zero_ttl_negative_answers_are_not_kept(fake_dns: FakeDNS) -> None:
    # A long-lived resolver (posthorn serve) must see records a test adds later.
    cached = resolver(fake_dns)
    with pytest.raises(DNSError, match="NXDOMAIN"):
        await cached.mx("later.test")
    with pytest.raises(DNSError, match="no MX and no A/AAAA"):
        await cached.mx("nothing.test")
    fake_dns.set("later.test", [("MX", "10 mx.later.test")])
    fake_dns.set("nothing.test", [("A", "127.0.0.8")])
    assert await cached.mx("later.test") == [MXHost(10, "mx.later.test")]
    assert await cached.mx("nothing.test") == [MXHost(0, "nothing.test", implicit=True)]


# -- addresses ------------------------------------------------------------------------------


async def test_addresses_a_then_aaaa(fake_dns: FakeDNS) -> None:
    assert await resolver(fake_dns).addresses("mx1.b.test") == [
        "127.0.0.11",
        "127.0.0.12",
        "::1",
    ]
    assert sorted(fake_dns.queries) == [("mx1.b.test", "A"), ("mx1.b.test", "AAAA")]


async def test_addresses_aaaa_only(fake_dns: FakeDNS) -> None:
    assert await resolver(fake_dns).addresses("mx2.b.test") == ["::2"]


@pytest.mark.parametrize("host", ["mx3.b.test", "missing.b.test"])
async def test_addresses_none_is_empty(fake_dns: FakeDNS, host: str) -> None:
    assert await resolver(fake_dns).addresses(host) == []


async def test_addresses_server_failure_is_temporary(fake_dns: FakeDNS) -> None:
    fake_dns.fail("mx1.b.test")
    with pytest.raises(DNSError) as info:
        await resolver(fake_dns).addresses("mx1.b.test")
    assert (info.value.temporary, info.value.status) == (True, "4.4.3")
    assert "mx1.b.test" in info.value.message


async def test_addresses_timeout_is_temporary(fake_dns: FakeDNS) -> None:
    fake_dns.drop("mx1.b.test")
    with pytest.raises(DNSError) as info:
        await resolver(fake_dns, timeout=0.5).addresses("mx1.b.test")
    assert (info.value.temporary, info.value.message) == (
        True,
        "DNS lookup for mx1.b.test timed out",
    )


async def test_addresses_one_family_failing_keeps_the_other(fake_dns: FakeDNS) -> None:
    fake_dns.fail("mx1.b.test", qtype="AAAA")
    assert await resolver(fake_dns).addresses("mx1.b.test") == ["127.0.0.11", "127.0.0.12"]


async def test_addresses_follow_cname(fake_dns: FakeDNS) -> None:
    assert await resolver(fake_dns).addresses("hostalias.test") == [
        "127.0.0.11",
        "127.0.0.12",
        "::1",
    ]


async def test_addresses_of_ip_literal_need_no_query(fake_dns: FakeDNS) -> None:
    assert await resolver(fake_dns).addresses("127.0.0.9") == ["127.0.0.9"]
    assert await resolver(fake_dns).addresses("::1") == ["::1"]
    assert fake_dns.queries == []


# -- the loopback server itself ---------------------------------------------------------------


async def test_fake_dns_set_and_delete_change_answers(fake_dns: FakeDNS) -> None:
    fresh = resolver(fake_dns, cache_size=0)
    fake_dns.set("b.test", [("MX", "1 new.b.test")])
    assert await fresh.mx("b.test") == [MXHost(1, "new.b.test")]
    fake_dns.fail("b.test")
    fake_dns.set("b.test", [("MX", "2 newer.b.test")])  # set() clears the failure
    assert await fresh.mx("b.test") == [MXHost(2, "newer.b.test")]
    fake_dns.delete("b.test")
    with pytest.raises(DNSError, match="NXDOMAIN"):
        await fresh.mx("b.test")


def test_fake_dns_rejects_bad_records_and_rcodes() -> None:
    server = FakeDNS()
    with pytest.raises(ValueError, match=re.escape("bad record for 'x.test'")):
        server.set("x.test", [("A", "not-an-address")])
    with pytest.raises(ValueError, match="unknown rcode 'BOGUS'"):
        server.fail("x.test", "BOGUS")
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.address


def test_fake_dns_binds_loopback_udp_and_tcp() -> None:
    with FakeDNS() as server:
        host, port = server.address.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) == server.port > 0
    server.stop()  # a second stop is harmless


# -- nameserver strings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
        ("[2001:DB8::1]:53", ("2001:db8::1", 53)),
        (" 127.0.0.2:54 ", ("127.0.0.2", 54)),
    ],
)
def test_parse_nameserver(text: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("localhost:53", "'localhost' is not an IP address"),
        ("", "'' is not an IP address"),
        ("127.0.0.1:", "empty port"),
        ("127.0.0.1:0", "port must be 1-65535"),
        ("127.0.0.1:65536", "port must be 1-65535"),
        ("127.0.0.1:dns", "port must be 1-65535"),
        ("[::1", r"expected \[IPv6\]:port"),
        ("[::1]53", r"expected \[IPv6\]:port"),
        ("[::1]:", "empty port"),
        ("[127.0.0.1]:53", "brackets are for IPv6 addresses"),
        ("1.2.3.4.5", "'1.2.3.4.5' is not an IP address"),
    ],
)
def test_parse_nameserver_rejects(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"nameserver {text!r}: ") + why):
        parse_nameserver(text)


def test_resolver_takes_configured_nameservers() -> None:
    assert Resolver(["127.0.0.1:5353", "[::1]:54", "127.0.0.2"]).nameservers == [
        "127.0.0.1:5353",
        "[::1]:54",
        "127.0.0.2:53",
    ]
    with pytest.raises(ValueError, match="nameserver 'nope'"):
        Resolver(["nope"])
    with pytest.raises(TypeError, match="not one string"):
        Resolver("127.0.0.1")
