"""The relay decision (posthorn.policy.relay): RFC 2505 §2.1, RFC 5321 §3.6, §4.1.1.3."""

from __future__ import annotations

import pytest

from posthorn.mail.address import SourceRouteError, parse_address
from posthorn.policy.relay import RelayDecision, Verdict, relay_verdict

LOCAL = RelayDecision.LOCAL
RELAY = RelayDecision.RELAY_ALLOWED
DENIED = RelayDecision.DENIED

# (recipient, domain is ours, client authenticated, expected decision)
TABLE = [
    # plain recipients
    ("bob@ours.example", True, False, LOCAL),
    ("bob@ours.example", True, True, LOCAL),
    ("bob@other.example", False, False, DENIED),  # the open-relay test
    ("bob@other.example", False, True, RELAY),
    ('"john smith"@ours.example', True, False, LOCAL),  # quoted, but no routing characters
    ("bob+tag@ours.example", True, False, LOCAL),
    ("bob@[192.0.2.1]", False, False, DENIED),  # address literal not counted as ours
    ("bob@[192.0.2.1]", False, True, RELAY),
    ("bob@[192.0.2.1]", True, False, LOCAL),  # caller says the literal is ours
    # the %-hack: user%other@ours
    ("user%other.example@ours.example", True, False, DENIED),
    ("user%other.example@ours.example", True, True, LOCAL),  # looked up literally, not routed
    ("user%other.example@other.example", False, False, DENIED),
    ("user%other.example@other.example", False, True, RELAY),
    # a quoted "@": "user@other"@ours
    ('"user@other.example"@ours.example', True, False, DENIED),
    ('"user@other.example"@ours.example', True, True, LOCAL),
    ('"user@other.example"@other.example', False, False, DENIED),
    # UUCP bang path: other!user@ours
    ("other.example!user@ours.example", True, False, DENIED),
    ("other.example!user@ours.example", True, True, LOCAL),
    ("a!b!user@ours.example", True, False, DENIED),
    # combinations
    ("a!user%b@ours.example", True, False, DENIED),
    ('"a%b!c@d"@ours.example', True, False, DENIED),
]


@pytest.mark.parametrize(("text", "local_domain", "authenticated", "decision"), TABLE)
def test_relay_table(
    text: str, local_domain: bool, authenticated: bool, decision: RelayDecision
) -> None:
    verdict = relay_verdict(
        parse_address(text), local_domain=local_domain, authenticated=authenticated
    )
    assert verdict.decision is decision
    assert verdict.accepted is (decision is not DENIED)
    assert verdict.reason


def test_routing_tricks_are_never_local_for_strangers() -> None:
    for text in (
        "user%other.example@ours.example",
        '"user@other.example"@ours.example',
        "other.example!user@ours.example",
    ):
        address = parse_address(text)
        assert address.domain == "ours.example"
        verdict = relay_verdict(address, local_domain=True, authenticated=False)
        assert verdict == Verdict(DENIED, verdict.reason)
        assert "routing" in verdict.reason


def test_reasons_name_the_rule() -> None:
    address = parse_address("bob@other.example")
    denied = relay_verdict(address, local_domain=False, authenticated=False)
    relayed = relay_verdict(address, local_domain=False, authenticated=True)
    assert "relay denied" in denied.reason
    assert "authenticated" in relayed.reason
    local = relay_verdict(parse_address("bob@ours.example"), local_domain=True, authenticated=False)
    assert local.reason == "local domain"


def test_source_routes_never_reach_the_relay_check() -> None:
    # RFC 5321 §4.1.1.3 / Appendix C: refused at parse time, so there is no Address to judge.
    with pytest.raises(SourceRouteError):
        parse_address("<@ours.example:user@other.example>")


def test_verdict_aliases() -> None:
    verdict = relay_verdict(parse_address("bob@x.example"), local_domain=False, authenticated=False)
    assert verdict.verdict is Verdict.DENIED is RelayDecision.DENIED is verdict.decision
    assert (Verdict.LOCAL, Verdict.RELAY_ALLOWED) == (LOCAL, RELAY)


def test_decision_values_are_log_friendly() -> None:
    assert [str(d) for d in RelayDecision] == ["local", "relay", "denied"]
