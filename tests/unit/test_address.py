"""Envelope address parsing (posthorn.mail.address): RFC 5321 §4.1.2, §4.5.3.1, RFC 6531, IDNA."""

from __future__ import annotations

import pytest

from posthorn.mail.address import (
    Address,
    AddressError,
    AddressTooLong,
    SourceRouteError,
    domain_to_unicode,
    normalize_domain,
    parse_address,
    parse_address_bytes,
    render_local,
    split_plus,
)

# --- accepted forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "local", "domain"),
    [
        ("user@example.org", "user", "example.org"),
        ("<user@example.org>", "user", "example.org"),
        ("First.Last@Example.ORG", "First.Last", "example.org"),
        ("a!#$%&'*+-/=?^_`{|}~z@example.org", "a!#$%&'*+-/=?^_`{|}~z", "example.org"),
        ("user@localhost", "user", "localhost"),
        ("user@1.2.3.4.example", "user", "1.2.3.4.example"),
        ('"john"@example.org', "john", "example.org"),  # needless quotes dropped
        ('"john smith"@example.org', "john smith", "example.org"),
        ('"a\\"b\\\\c"@example.org', 'a"b\\c', "example.org"),
        ('"a\\bc"@example.org', "abc", "example.org"),  # quoted-pair of an ordinary char
        ('".leading..dots."@example.org', ".leading..dots.", "example.org"),
        ("user@[192.0.2.1]", "user", "[192.0.2.1]"),
        ("user@[IPv6:2001:DB8::1]", "user", "[IPv6:2001:db8::1]"),
        ("user@[ipv6:0:0:0:0:0:0:0:1]", "user", "[IPv6:::1]"),
    ],
)
def test_parse_accepts(text: str, local: str, domain: str) -> None:
    assert parse_address(text) == Address(local, domain)


def test_idn_domain_is_one_key_whatever_the_spelling() -> None:
    # RFC 5890/5891 + UTS #46: U-labels, A-labels, any case -> one lower-case A-label form.
    spellings = [
        "a@Bücher.example",
        "a@BÜCHER.EXAMPLE",
        "a@xn--bcher-kva.example",
        "a@XN--BCHER-KVA.Example",
    ]
    parsed = {parse_address(s) for s in spellings}
    assert parsed == {Address("a", "xn--bcher-kva.example")}
    (address,) = parsed
    assert address.domain_unicode == "bücher.example"
    assert address.display == "a@bücher.example"
    assert str(address) == "a@xn--bcher-kva.example"
    assert address.is_ascii


def test_idn_mapping_and_ideographic_full_stop() -> None:
    fullwidth = "\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25"  # "EXAMPLE" in fullwidth forms
    assert parse_address(f"x@{fullwidth}\u3002com").domain == "example.com"  # U+3002 is a dot
    assert parse_address("x@faß.de").domain == "xn--fa-hia.de"  # IDNA2008: ß is kept, not "ss"


def test_utf8_local_part_rfc6531() -> None:
    address = parse_address("用户@例子.广告")
    assert address.local == "用户"
    assert address.domain == "xn--fsqu00a.xn--4rr70v"
    assert not address.is_ascii
    assert address.display == "用户@例子.广告"
    quoted = parse_address('"Jürgen Müller"@example.de')
    assert quoted.local == "Jürgen Müller"
    assert str(quoted) == '"Jürgen Müller"@example.de'


def test_parse_bytes_is_the_decoding_point() -> None:
    assert parse_address_bytes(b"<J\xc3\xbcrgen@example.de>") == Address("Jürgen", "example.de")
    with pytest.raises(AddressError, match=r"not valid UTF-8 \(byte 0xfc at offset 1\)"):
        parse_address_bytes(b"J\xfcrgen@example.de")  # Latin-1, not UTF-8


def test_canonical_lowercases_local_part_only_in_the_key() -> None:
    address = parse_address("Bob.Smith@Example.ORG")
    assert address.local == "Bob.Smith"  # remote servers may care about case (RFC 5321 §2.4)
    assert address.canonical == "bob.smith@example.org"
    assert parse_address("BOB.SMITH@example.org") != address
    assert parse_address("BOB.SMITH@example.org").canonical == address.canonical
    assert parse_address("ÄRGER@example.org").canonical == "ärger@example.org"
    # NFC: a decomposed "e + combining acute" and the precomposed "é" are one key.
    assert parse_address("e\u0301@x.org").canonical == parse_address("\u00e9@x.org").canonical


def test_str_round_trips() -> None:
    for text in ['"a b"@x.org', '"a\\"b"@x.org', "ü@bücher.example", "u@[IPv6:::1]", '"a@b"@c']:
        address = parse_address(text)
        assert parse_address(str(address)) == address


def test_render_local_quotes_only_when_needed() -> None:
    assert render_local("plain.name") == "plain.name"
    assert render_local("two  spaces") == '"two  spaces"'
    assert render_local("a..b") == '"a..b"'
    assert render_local('q"uo\\te') == '"q\\"uo\\\\te"'


# --- rejected forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty address"),
        ("<>", "null path"),
        ("<user@example.org", "unbalanced angle brackets"),
        ("user@example.org>", "unbalanced angle brackets"),
        ("userexample.org", "no '@'"),
        ("@example.org", "empty local part"),
        ('""@example.org', "empty local part"),
        ("user@", "empty domain"),
        ("a.@example.org", "starts or ends with '.'"),
        (".a@example.org", "starts or ends with '.'"),
        ("a..b@example.org", "'..'"),
        ("a b@example.org", "' ' (U+0020) not allowed in local part"),
        ("a\tb@example.org", "U+0009"),
        ("a\x00@example.org", "U+0000"),
        ("a\x85@example.org", "U+0085"),  # C1 control
        ("a\udcff@example.org", "U+DCFF"),  # lone surrogate: cannot be UTF-8
        ("a(comment)@example.org", "'(' (U+0028)"),
        ('a"b"@example.org', "'\"' (U+0022)"),
        ('"unterminated@example.org', "unterminated quoted local part"),
        ('"a"b@example.org', "expected '@' after quoted local part"),
        ('"a\x01"@example.org', "U+0001"),
        ('"a\\\x7f"@example.org', "bad backslash escape"),
        ("user@exa mple.org", "bad domain"),
        ("user@foo_bar.org", "bad domain"),
        ("user@-a.org", "bad domain"),
        ("user@a..org", "bad domain"),
        ("user@example.org.", "trailing dot"),
        ("user@ab--cd.org", "bad domain"),  # RFC 5891 §4.2.3.1 hyphens in 3rd/4th position
        ("user@xn--zz.org", "bad domain"),  # invalid A-label
        ("user@😀.org", "bad domain"),  # not IDNA2008-valid
        ("user@℀.org", "bad domain"),  # maps to "a/c"
        ("user@[1.2.3]", "bad address literal"),
        ("user@[01.2.3.4]", "bad address literal"),
        ("user@[IPv6:fe80::1%eth0]", "zone index"),
        ("user@[x-tag:stuff]", "unsupported address literal"),
        ("user@[1.2.3.4", "bad address literal"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text)
    assert message in str(info.value)


def test_length_limits_rfc5321_4_5_3_1() -> None:
    assert parse_address("a" * 64 + "@x.org").local == "a" * 64
    with pytest.raises(AddressTooLong, match=r"local part is too long \(65 octets"):
        parse_address("a" * 65 + "@x.org")
    with pytest.raises(AddressTooLong, match=r"local part is too long \(66 octets"):
        parse_address("ä" * 33 + "@x.org")  # octets, not characters
    with pytest.raises(AddressTooLong, match="local part"):
        parse_address('"' + "a b" * 21 + '"@x.org')  # 63 + 2 quotes
    label = "d" * 63
    domain_253 = ".".join([label, label, label, "d" * 61])
    assert len(normalize_domain(domain_253)) == 253
    # path: "<" + 64 + "@" + 189 + ">" = 256 octets fits exactly; one more does not
    domain_189 = ".".join([label, label, "d" * 61])
    assert parse_address("a" * 64 + "@" + domain_189)
    with pytest.raises(AddressTooLong, match=r"address is too long \(257 octets"):
        parse_address("a" * 64 + "@" + domain_189 + "d")
    with pytest.raises(AddressTooLong, match="too long"):
        normalize_domain(".".join([label] * 5))
    with pytest.raises(AddressTooLong, match="too long"):
        normalize_domain("d" * 64 + ".org")  # a label is at most 63 octets
    with pytest.raises(AddressTooLong):
        parse_address("a" * 5000 + "@x.org")


# --- relay tricks -----------------------------------------------------------------------------


def test_source_route_is_refused_and_named() -> None:
    with pytest.raises(SourceRouteError) as info:
        parse_address("<@relay1.example,@relay2.example:user@target.example>")
    assert "source route" in str(info.value)
    assert info.value.route == "@relay1.example,@relay2.example"
    assert info.value.mailbox == "user@target.example"
    with pytest.raises(SourceRouteError):
        parse_address("@relay.example:user@target.example")


def test_second_unquoted_at_is_refused() -> None:
    with pytest.raises(AddressError, match="more than one '@'") as info:
        parse_address("user@victim.example@ours.example")
    assert not isinstance(info.value, SourceRouteError)


@pytest.mark.parametrize(
    "text",
    [
        "user%victim.example@ours.example",
        "victim.example!user@ours.example",
        '"user@victim.example"@ours.example',
    ],
)
def test_routing_characters_parse_but_are_flagged(text: str) -> None:
    address = parse_address(text)
    assert address.domain == "ours.example"
    assert address.has_routing_chars


def test_ordinary_address_has_no_routing_chars() -> None:
    assert not parse_address("user+tag@ours.example").has_routing_chars


# --- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("bob+lists", ("bob", "lists")),
        ("bob", ("bob", None)),
        ("bob+a+b", ("bob", "a+b")),
        ("bob+", ("bob", "")),
        ("+bob", ("+bob", None)),
        ("+", ("+", None)),
    ],
)
def test_split_plus(local: str, expected: tuple[str, str | None]) -> None:
    assert split_plus(local) == expected


def test_split_plus_other_separator() -> None:
    assert split_plus("bob-lists", sep="-") == ("bob", "lists")
    with pytest.raises(ValueError, match="separator"):
        split_plus("bob", sep="")


def test_address_literal_flags() -> None:
    address = parse_address("postmaster@[192.0.2.1]")
    assert address.is_literal
    assert address.domain_unicode == "[192.0.2.1]"
    assert not parse_address("a@example.org").is_literal


def test_domain_to_unicode_passes_odd_input_through() -> None:
    assert domain_to_unicode("example.org") == "example.org"
    assert domain_to_unicode("xn--zz.example") == "xn--zz.example"
