"""Abuse limits (posthorn.policy.limits): connections per client, failed-login delay and lockout."""

from __future__ import annotations

from typing import Any

import pytest

from posthorn.policy.limits import AuthThrottle, ConnectionLimiter, ThrottleLimits, client_key

V4 = "192.0.2.7"
V4_OTHER = "198.51.100.9"


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **overrides: Any) -> AuthThrottle:
    return AuthThrottle(ThrottleLimits(**overrides), clock=clock)


def fail(throttle: AuthThrottle, ip: str, account: str | None, times: int) -> None:
    for _ in range(times):
        throttle.failure(ip, account)


# --- client_key --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2::5", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:0:0:0:5", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::5", "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # dual-stack socket: the IPv4 client
        ("::1", "::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("/run/posthorn.sock", "/run/posthorn.sock"),
        ("", ""),
    ],
)
def test_client_key(ip: str, key: str) -> None:
    assert client_key(ip) == key


def test_client_key_prefix_is_configurable() -> None:
    assert client_key("2001:db8:1:2::5", 48) == "2001:db8:1::/48"
    assert client_key("2001:db8:1:2::5", 128) == "2001:db8:1:2::5/128"


# --- ConnectionLimiter -------------------------------------------------------------------------


def test_connection_limit_per_ip() -> None:
    limiter = ConnectionLimiter(max_per_ip=2, max_total=10)
    assert limiter.try_acquire(V4)
    assert limiter.try_acquire(V4)
    assert not limiter.try_acquire(V4)
    assert limiter.try_acquire(V4_OTHER)  # another client is unaffected
    assert (limiter.count(V4), limiter.count(V4_OTHER), limiter.total) == (2, 1, 3)
    limiter.release(V4)
    assert limiter.try_acquire(V4)


def test_connection_limit_total() -> None:
    limiter = ConnectionLimiter(max_per_ip=5, max_total=3)
    assert all(limiter.try_acquire(f"192.0.2.{i}") for i in range(3))
    assert not limiter.try_acquire("192.0.2.99")
    assert limiter.total == 3
    limiter.release("192.0.2.0")
    assert limiter.try_acquire("192.0.2.99")


def test_refused_acquire_takes_nothing() -> None:
    limiter = ConnectionLimiter(max_per_ip=1, max_total=1)
    assert limiter.try_acquire(V4)
    assert not limiter.try_acquire(V4)
    assert not limiter.try_acquire(V4_OTHER)
    assert (limiter.total, len(limiter)) == (1, 1)


def test_connection_limit_groups_ipv6_by_64() -> None:
    limiter = ConnectionLimiter(max_per_ip=2, max_total=100)
    assert limiter.try_acquire("2001:db8:1:2::1")
    assert limiter.try_acquire("2001:db8:1:2::abcd")
    assert not limiter.try_acquire("2001:db8:1:2:ffff::1")  # same /64
    assert limiter.try_acquire("2001:db8:1:3::1")  # next /64
    limiter.release("2001:db8:1:2::9999")  # any address of the /64 releases its slot
    assert limiter.try_acquire("2001:db8:1:2::77")


def test_ipv4_mapped_counts_as_ipv4() -> None:
    limiter = ConnectionLimiter(max_per_ip=1, max_total=100)
    assert limiter.try_acquire(V4)
    assert not limiter.try_acquire(f"::ffff:{V4}")


def test_release_frees_memory_and_ignores_extras() -> None:
    limiter = ConnectionLimiter(max_per_ip=3, max_total=3)
    limiter.try_acquire(V4)
    limiter.release(V4)
    limiter.release(V4)  # unmatched: ignored, never negative
    limiter.release(V4_OTHER)
    assert (limiter.total, len(limiter), limiter.count(V4)) == (0, 0, 0)
    assert all(limiter.try_acquire(V4) for _ in range(3))


@pytest.mark.parametrize(("per_ip", "total"), [(0, 1), (1, 0)])
def test_connection_limits_must_be_positive(per_ip: int, total: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConnectionLimiter(per_ip, total)


# --- AuthThrottle: delay -----------------------------------------------------------------------


def test_delay_grows_then_caps(clock: FakeClock) -> None:
    throttle = make(clock, max_failures_per_account=100, max_failures_per_ip=100)
    delays = []
    for _ in range(8):
        delays.append(throttle.delay(V4, "bob@example.org"))
        throttle.failure(V4, "bob@example.org")
    assert delays == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_delay_schedule_is_configurable() -> None:
    limits = ThrottleLimits(free_failures=0, base_delay=0.5, max_delay=3.0)
    assert [limits.delay_for(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert ThrottleLimits().delay_for(10_000) == 8.0  # no overflow for absurd counts


def test_delay_follows_the_client_across_accounts(clock: FakeClock) -> None:
    throttle = make(clock)
    fail(throttle, V4, "a@example.org", 1)
    fail(throttle, V4, "b@example.org", 1)
    fail(throttle, V4, "c@example.org", 1)
    assert throttle.delay(V4, "d@example.org") == 2.0  # three failures from this client
    assert throttle.delay(V4) == 2.0
    assert throttle.delay(V4_OTHER, "d@example.org") == 0.0


def test_delay_fades_after_the_window(clock: FakeClock) -> None:
    throttle = make(clock, window=600)
    fail(throttle, V4, "bob@example.org", 3)
    clock.advance(300)
    fail(throttle, V4, "bob@example.org", 1)
    assert throttle.delay(V4, "bob@example.org") == 4.0
    clock.advance(301)  # the first three have left the window
    assert throttle.delay(V4, "bob@example.org") == 0.0


# --- AuthThrottle: lockout ---------------------------------------------------------------------


def test_account_lockout_after_five_and_expiry(clock: FakeClock) -> None:
    throttle = make(clock)
    fail(throttle, V4, "bob@example.org", 4)
    assert not throttle.locked(V4, "bob@example.org")
    throttle.failure(V4, "bob@example.org")
    assert throttle.locked(V4, "bob@example.org")
    assert not throttle.locked(V4, "alice@example.org")  # the client may try other accounts
    assert not throttle.locked(V4)
    clock.advance(15 * 60 - 1)
    assert throttle.locked(V4, "bob@example.org")
    clock.advance(1)
    assert not throttle.locked(V4, "bob@example.org")
    assert throttle.delay(V4, "bob@example.org") == 0.0  # counting starts afresh


def test_account_lockout_is_per_client(clock: FakeClock) -> None:
    # Knowing someone's address must not let a stranger lock them out of their mailbox.
    throttle = make(clock)
    fail(throttle, V4, "bob@example.org", 5)
    assert throttle.locked(V4, "bob@example.org")
    assert not throttle.locked(V4_OTHER, "bob@example.org")


def test_ip_lockout_after_ten_across_accounts(clock: FakeClock) -> None:
    throttle = make(clock)
    for i in range(9):
        throttle.failure(V4, f"user{i}@example.org")
    assert not throttle.locked(V4, "new@example.org")
    throttle.failure(V4, "user9@example.org")
    assert throttle.locked(V4, "new@example.org")  # every account, even unseen ones
    assert throttle.locked(V4)
    assert not throttle.locked(V4_OTHER, "new@example.org")
    clock.advance(15 * 60)
    assert not throttle.locked(V4, "new@example.org")


def test_failures_without_account_count_for_the_client(clock: FakeClock) -> None:
    throttle = make(clock, max_failures_per_ip=3)
    fail(throttle, V4, None, 3)
    assert throttle.locked(V4, "bob@example.org")


def test_failures_outside_the_window_do_not_lock(clock: FakeClock) -> None:
    throttle = make(clock, window=900)
    for _ in range(10):
        throttle.failure(V4, "bob@example.org")  # would lock at 5 if close together...
        clock.advance(300)  # ...but at most 3 are ever within 15 minutes
        assert not throttle.locked(V4, "bob@example.org")


def test_lockout_and_window_are_configurable(clock: FakeClock) -> None:
    throttle = make(clock, max_failures_per_account=2, lockout=60, window=30)
    throttle.failure(V4, "bob@example.org")
    clock.advance(31)
    throttle.failure(V4, "bob@example.org")
    assert not throttle.locked(V4, "bob@example.org")  # first one fell out of the window
    throttle.failure(V4, "bob@example.org")
    assert throttle.locked(V4, "bob@example.org")
    clock.advance(60)
    assert not throttle.locked(V4, "bob@example.org")


def test_lock_covers_the_whole_ipv6_64(clock: FakeClock) -> None:
    throttle = make(clock)
    for i in range(10):
        throttle.failure(f"2001:db8:1:2::{i + 1:x}", f"u{i}@example.org")  # hopping addresses
    assert throttle.locked("2001:db8:1:2:dead:beef::1", "bob@example.org")
    assert not throttle.locked("2001:db8:1:3::1", "bob@example.org")


def test_ipv6_pair_lock_hopping_addresses(clock: FakeClock) -> None:
    throttle = make(clock)
    for i in range(5):
        throttle.failure(f"2001:db8::{i + 1:x}", "bob@example.org")
    assert throttle.locked("2001:db8::ffff", "bob@example.org")


def test_account_names_are_folded(clock: FakeClock) -> None:
    throttle = make(clock)
    for name in ("bob@example.org", "BOB@example.org", "Bob@EXAMPLE.ORG", "bob@Example.Org"):
        throttle.failure(V4, name)
    throttle.failure(V4, "bOb@example.org")
    assert throttle.locked(V4, "bob@example.org")


def test_unicode_domain_spellings_share_a_tally(clock: FakeClock) -> None:
    throttle = make(clock, max_failures_per_account=2)
    throttle.failure(V4, "jörg@bücher.example")
    throttle.failure(V4, "JÖRG@xn--bcher-kva.example")
    assert throttle.locked(V4, "jörg@BÜCHER.example")


def test_non_address_names_are_case_folded(clock: FakeClock) -> None:
    throttle = make(clock, max_failures_per_account=2)
    throttle.failure(V4, "Admin")
    throttle.failure(V4, "ADMIN")
    assert throttle.locked(V4, "admin")


# --- AuthThrottle: success ---------------------------------------------------------------------


def test_success_clears_the_account_tally_for_that_client(clock: FakeClock) -> None:
    throttle = make(clock)
    fail(throttle, V4, "bob@example.org", 4)
    assert throttle.delay(V4, "bob@example.org") == 4.0
    throttle.success(V4, "bob@example.org")
    fail(throttle, V4, "bob@example.org", 4)
    assert not throttle.locked(V4, "bob@example.org")  # 4 since the success, not 8


def test_success_does_not_clear_the_client_tally(clock: FakeClock) -> None:
    # A client guessing at many accounts stays slowed down when one guess works.
    throttle = make(clock)
    for i in range(5):
        throttle.failure(V4, f"user{i}@example.org")
    throttle.success(V4, "user0@example.org")
    assert throttle.delay(V4, "user0@example.org") == 8.0
    for i in range(5):
        throttle.failure(V4, f"other{i}@example.org")
    assert throttle.locked(V4, "user0@example.org")


# --- AuthThrottle: account-wide limit (distributed guessing) -----------------------------------


def test_distributed_guessing_locks_the_account_except_for_trusted_clients(
    clock: FakeClock,
) -> None:
    throttle = make(clock, max_failures_per_account_total=20)
    home = "203.0.113.5"
    throttle.success(home, "bob@example.org")  # the owner's usual device
    for i in range(20):  # a botnet: one guess per address, below every per-client limit
        throttle.failure(f"10.0.{i}.1", "bob@example.org")
    assert throttle.locked("10.99.0.1", "bob@example.org")  # any new client is refused
    assert not throttle.locked(home, "bob@example.org")  # the owner still gets in
    assert throttle.delay(home, "bob@example.org") == 0.0
    assert not throttle.locked("10.99.0.1", "alice@example.org")
    clock.advance(15 * 60)
    assert not throttle.locked("10.99.0.1", "bob@example.org")


def test_account_wide_failures_slow_untrusted_clients(clock: FakeClock) -> None:
    throttle = make(clock)
    throttle.success("203.0.113.5", "bob@example.org")
    for i in range(4):
        throttle.failure(f"10.0.{i}.1", "bob@example.org")
    assert throttle.delay("10.99.0.1", "bob@example.org") == 4.0
    assert throttle.delay("203.0.113.5", "bob@example.org") == 0.0


def test_trust_expires(clock: FakeClock) -> None:
    throttle = make(clock, max_failures_per_account_total=3, trust_period=3600)
    home = "203.0.113.5"
    throttle.success(home, "bob@example.org")
    clock.advance(3600)
    fail(throttle, "10.0.0.1", "bob@example.org", 1)
    fail(throttle, "10.0.0.2", "bob@example.org", 1)
    fail(throttle, "10.0.0.3", "bob@example.org", 1)
    assert throttle.locked(home, "bob@example.org")


def test_trust_can_be_switched_off(clock: FakeClock) -> None:
    throttle = make(clock, max_failures_per_account_total=2, trust_period=0)
    throttle.success(V4, "bob@example.org")
    fail(throttle, "10.0.0.1", "bob@example.org", 1)
    fail(throttle, "10.0.0.2", "bob@example.org", 1)
    assert throttle.locked(V4, "bob@example.org")
    assert len(throttle) == 5  # 2 clients + 2 (account, client) pairs + 1 account; no trust


# --- AuthThrottle: bounded memory --------------------------------------------------------------


def test_tallies_expire(clock: FakeClock) -> None:
    throttle = make(clock, window=900, lockout=900, trust_period=0)
    for i in range(50):
        throttle.failure(f"10.0.0.{i}", f"user{i}@example.org")
    assert len(throttle) == 150  # per client, per pair, per account
    clock.advance(900)
    throttle.failure(V4, "bob@example.org")  # any write purges what can no longer matter
    assert len(throttle) == 3


def test_locks_outlive_a_short_window(clock: FakeClock) -> None:
    throttle = make(clock, window=60, lockout=900, max_failures_per_account=2)
    fail(throttle, V4, "bob@example.org", 2)
    clock.advance(600)
    throttle.failure(V4_OTHER, "alice@example.org")  # triggers a purge
    assert throttle.locked(V4, "bob@example.org")


def test_entries_are_capped(clock: FakeClock) -> None:
    throttle = make(clock, max_entries=100)
    for i in range(1000):
        throttle.failure(f"10.0.{i // 256}.{i % 256}", f"user{i}@example.org")
        clock.advance(0.01)
    assert len(throttle) <= 300  # three tables of at most 100
    throttle.failure("10.0.3.231", "user999@example.org")  # the newest tallies were kept:
    assert throttle.delay("10.0.3.231", "user999@example.org") == 1.0  # this is its 2nd failure


def test_trusted_entries_are_capped(clock: FakeClock) -> None:
    throttle = make(clock, max_entries=10)
    for i in range(100):
        throttle.success(f"10.0.0.{i}", "bob@example.org")
    assert len(throttle) == 10


def test_cap_drops_the_least_recently_failed(clock: FakeClock) -> None:
    throttle = make(clock, max_entries=3, max_failures_per_ip=2)
    fail(throttle, "10.0.0.1", None, 2)  # locked
    clock.advance(1)
    for i in range(2, 5):
        throttle.failure(f"10.0.0.{i}", None)
    assert not throttle.locked("10.0.0.1")  # evicted by three newer clients


# --- ThrottleLimits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("max_failures_per_ip", 0, "at least 1"),
        ("max_failures_per_account", 0, "at least 1"),
        ("max_failures_per_account_total", -1, "at least 1"),
        ("max_entries", 0, "at least 1"),
        ("window", -1.0, "not be negative"),
        ("lockout", -1.0, "not be negative"),
        ("free_failures", -1, "not be negative"),
        ("ipv6_prefix", 129, "0..128"),
    ],
)
def test_limits_are_validated(field: str, value: Any, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        ThrottleLimits(**{field: value})
