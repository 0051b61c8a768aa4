"""Recipient resolution as a pure function (posthorn.directory.resolve) over a dict lookup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from posthorn.directory.resolve import (
    MAX_ALIAS_DEPTH,
    LocalTarget,
    Resolution,
    ResolveStatus,
    resolve,
)
from posthorn.mail.address import parse_address


@dataclass
class Dicts:
    domains: set[str] = field(default_factory=lambda: {"ours.example", "xn--bcher-kva.example"})
    accounts: set[str] = field(default_factory=set)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    calls: int = 0

    def is_local_domain(self, domain: str) -> bool:
        return domain in self.domains

    def is_account(self, address: str) -> bool:
        self.calls += 1
        return address in self.accounts

    def alias_targets(self, source: str) -> Sequence[str]:
        self.calls += 1
        return self.aliases.get(source, [])


def run(lookup: Dicts, recipient: str) -> Resolution:
    return resolve(parse_address(recipient), lookup)


def test_foreign_domain() -> None:
    result = run(Dicts(accounts={"bob@ours.example"}), "bob@elsewhere.example")
    assert result.status is ResolveStatus.FOREIGN
    assert not result.is_local_domain and not result.deliverable
    assert result.local == () and result.remote == ()


def test_account_case_insensitive_and_idn() -> None:
    lookup = Dicts(accounts={"bob@ours.example", "jürgen@xn--bcher-kva.example"})
    assert run(lookup, "BOB@Ours.Example").local == (LocalTarget("bob@ours.example"),)
    result = run(lookup, "Jürgen@BÜCHER.example")
    assert result.deliverable
    assert result.local == (LocalTarget("jürgen@xn--bcher-kva.example"),)


def test_unknown_user_in_our_domain() -> None:
    result = run(Dicts(), "nobody@ours.example")
    assert result.status is ResolveStatus.UNKNOWN
    assert result.is_local_domain
    assert result.unknown == ("nobody@ours.example",)


def test_alias_to_local_and_remote_targets() -> None:
    lookup = Dicts(
        accounts={"bob@ours.example", "alice@ours.example"},
        aliases={
            "team@ours.example": ["bob@ours.example", "Alice@OURS.example", "Ext@Far.example"]
        },
    )
    result = run(lookup, "team@ours.example")
    assert result.status is ResolveStatus.OK
    assert result.local == (LocalTarget("bob@ours.example"), LocalTarget("alice@ours.example"))
    assert result.remote == ("Ext@far.example",)  # remote local-part case kept


def test_nested_aliases_and_dedup() -> None:
    lookup = Dicts(
        accounts={"bob@ours.example", "carol@ours.example"},
        aliases={
            "all@ours.example": ["dev@ours.example", "ops@ours.example", "bob@ours.example"],
            "dev@ours.example": ["bob@ours.example", "carol@ours.example", "x@far.example"],
            "ops@ours.example": ["carol@ours.example", "x@far.example"],
        },
    )
    result = run(lookup, "all@ours.example")
    assert result.local == (LocalTarget("bob@ours.example"), LocalTarget("carol@ours.example"))
    assert result.remote == ("x@far.example",)


def test_diamond_is_expanded_once() -> None:
    # 2**12 paths through a diamond chain, but each alias is expanded only once.
    aliases = {
        f"l{i}@ours.example": [f"l{i + 1}@ours.example", f"r{i + 1}@ours.example"]
        for i in range(12)
    }
    aliases |= {f"r{i}@ours.example": [f"l{i}@ours.example"] for i in range(1, 13)}
    lookup = Dicts(accounts={"l12@ours.example"}, aliases=aliases)
    result = resolve(parse_address("l0@ours.example"), lookup, max_depth=30)
    assert result.local == (LocalTarget("l12@ours.example"),)
    assert lookup.calls < 200


def test_unknown_alias_members_are_reported_not_fatal() -> None:
    lookup = Dicts(
        accounts={"bob@ours.example"},
        aliases={"team@ours.example": ["bob@ours.example", "typo@ours.example", "bad target"]},
    )
    result = run(lookup, "team@ours.example")
    assert result.status is ResolveStatus.OK
    assert result.unknown == ("typo@ours.example", "bad target")


def test_alias_with_only_unknown_members_is_unknown() -> None:
    lookup = Dicts(aliases={"team@ours.example": ["gone@ours.example"]})
    assert run(lookup, "team@ours.example").status is ResolveStatus.UNKNOWN


def test_loop_is_an_error_result() -> None:
    lookup = Dicts(
        accounts={"bob@ours.example"},
        aliases={
            "a@ours.example": ["bob@ours.example", "b@ours.example"],
            "b@ours.example": ["c@ours.example"],
            "c@ours.example": ["A@ours.example"],
        },
    )
    result = run(lookup, "a@ours.example")
    assert result.status is ResolveStatus.LOOP
    assert not result.deliverable
    assert result.local == ()
    assert result.detail == "a@ours.example -> b@ours.example -> c@ours.example -> a@ours.example"


def test_depth_limit() -> None:
    def chain(n: int) -> Dicts:
        aliases = {f"a{i}@ours.example": [f"a{i + 1}@ours.example"] for i in range(n)}
        return Dicts(accounts={f"a{n}@ours.example"}, aliases=aliases)

    ok = run(chain(MAX_ALIAS_DEPTH), "a0@ours.example")  # 10 nested aliases: fine
    assert ok.local == (LocalTarget(f"a{MAX_ALIAS_DEPTH}@ours.example"),)
    deep = run(chain(MAX_ALIAS_DEPTH + 1), "a0@ours.example")
    assert deep.status is ResolveStatus.TOO_DEEP
    assert deep.detail.startswith("a0@ours.example -> a1@ours.example")
    assert deep.local == ()


def test_catch_all_only_when_nothing_matches_exactly() -> None:
    lookup = Dicts(
        accounts={"bob@ours.example", "postmaster@ours.example"},
        aliases={
            "@ours.example": ["postmaster@ours.example"],
            "sales@ours.example": ["bob@ours.example"],
        },
    )
    assert run(lookup, "bob@ours.example").local == (LocalTarget("bob@ours.example"),)
    assert run(lookup, "sales@ours.example").local == (LocalTarget("bob@ours.example"),)
    assert run(lookup, "random@ours.example").local == (LocalTarget("postmaster@ours.example"),)


def test_catch_all_to_itself_is_a_loop() -> None:
    lookup = Dicts(aliases={"@ours.example": ["nobody@ours.example"]})
    result = run(lookup, "x@ours.example")
    assert result.status is ResolveStatus.LOOP
    assert result.detail == "@ours.example -> @ours.example"


def test_plus_addressing() -> None:
    lookup = Dicts(
        accounts={"bob@ours.example", "bob+exact@ours.example"},
        aliases={
            "list@ours.example": ["bob+lists@ours.example"],
            "@ours.example": ["bob@ours.example"],
        },
    )
    tagged = run(lookup, "Bob+Shopping@ours.example")
    assert tagged.local == (LocalTarget("bob@ours.example", "Shopping"),)
    assert tagged.tag == "Shopping"
    exact = run(lookup, "bob+exact@ours.example")  # an account that happens to contain "+"
    assert exact.local == (LocalTarget("bob+exact@ours.example"),)
    assert exact.tag is None
    via_alias = run(lookup, "list@ours.example")
    assert via_alias.local == (LocalTarget("bob@ours.example", "lists"),)
    assert via_alias.tag is None  # the recipient itself had no tag
    # plus on an alias base: the alias expands, its targets do not inherit the tag
    assert run(lookup, "list+x@ours.example").local == (LocalTarget("bob@ours.example", "lists"),)
    assert run(lookup, "list+x@ours.example").tag == "x"
    # no base match: catch-all, and the tag is not the account's
    catch = run(lookup, "nobody+x@ours.example")
    assert catch.local == (LocalTarget("bob@ours.example"),)
    assert catch.tag is None


def test_plus_addressing_other_separator() -> None:
    lookup = Dicts(accounts={"bob@ours.example"})
    result = resolve(parse_address("bob-news@ours.example"), lookup, sep="-")
    assert result.local == (LocalTarget("bob@ours.example", "news"),)
    assert run(lookup, "bob-news@ours.example").status is ResolveStatus.UNKNOWN
