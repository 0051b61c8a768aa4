"""Abuse limits: concurrent connections per client, and failed logins with delay and lockout.

Pure bookkeeping, shared by SMTP, IMAP and POP3: no I/O, no asyncio, no threads (use one
instance from one event loop). Time comes from an injectable ``clock`` (`time.monotonic` by
default) so tests can move it.

Who is "one client" (`client_key`): an IPv4 address, or an IPv6 /64. One IPv6 subscriber is
normally given at least a whole /64 (RFC 4291 §2.5.1: 64-bit interface identifiers; RFC 6177
on end-site assignments) and can pick any address in it, so counting per IPv6 address would
give an attacker 2**64 fresh counters. IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``, what a
dual-stack socket reports, RFC 4291 §2.5.5.2) count as the IPv4 address. Text that is not an IP
address (a Unix socket, say) is its own key.

`AuthThrottle` keeps three tallies of failed logins within a sliding ``window``:

- per client (``max_failures_per_ip``): one source guessing at many accounts;
- per account *and* client (``max_failures_per_account``): one source guessing one password.
  A success clears it; a lockout here shuts out that source only, so nobody can lock a user
  out of their own mailbox just by knowing the address (which is public);
- per account over all clients (``max_failures_per_account_total``, set higher): a botnet
  spreading its guesses thin. Reaching it locks the account for every client *except* those
  that logged in to it successfully within ``trust_period`` — the owner's usual devices.

The answer delay grows with the largest relevant tally (0 s for the first ``free_failures``,
then ``base_delay`` doubling up to ``max_delay``). The caller answers a locked attempt with a
temporary failure (SMTP ``454 4.7.0``, RFC 4954 §6) *without checking the password*, so a
lockout never confirms a guess, and does not report it as a failure (only checked attempts
count). Account names are folded as the directory folds them, so ``Bob@Example.org`` and
``bob@example.org`` share a tally, and unknown accounts are tallied like real ones, so the
throttle does not reveal which exist.

Memory is bounded: tallies expire once they can no longer matter (``max(window, lockout)``
after their last failure), and each table keeps at most ``max_entries``, dropping the least
recently failed first. A flood of more distinct clients than that can push a lock out early,
so size ``max_entries`` above the number of attackers you expect at once.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from posthorn.mail.address import AddressError, parse_address

__all__ = ["AuthThrottle", "ConnectionLimiter", "ThrottleLimits", "client_key"]

K = TypeVar("K", bound=Hashable)

_MAX_ACCOUNT_CHARS: Final = 320  # longer names are cut before use as a key (SASL caps at 255)
_MAX_DOUBLINGS: Final = 62  # keeps 2.0 ** n finite whatever the configuration


def client_key(ip: str, ipv6_prefix: int = 64) -> str:
    """The key a client is counted under: the IPv4 address, or the IPv6 network around it.

    ``"192.0.2.7"`` -> ``"192.0.2.7"``; ``"2001:db8:1:2::5"`` -> ``"2001:db8:1:2::/64"``;
    ``"::ffff:192.0.2.7"`` -> ``"192.0.2.7"``; a zone index (``fe80::1%eth0``) is ignored;
    anything that is not an IP address is returned unchanged.
    """
    try:
        address = ipaddress.ip_address(ip.partition("%")[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
    return str(address)


class ConnectionLimiter:
    """Concurrent connections: at most ``max_per_ip`` per client (`client_key`) and
    ``max_total`` overall.

    Call `release` exactly once for every `try_acquire` that returned True (in a ``finally``).
    Memory holds one entry per client with open connections, so at most ``max_total``.
    """

    def __init__(self, max_per_ip: int, max_total: int, *, ipv6_prefix: int = 64) -> None:
        if max_per_ip < 1 or max_total < 1:
            raise ValueError("connection limits must be at least 1")
        self.max_per_ip = max_per_ip
        self.max_total = max_total
        self.ipv6_prefix = ipv6_prefix
        self._open: dict[str, int] = {}
        self._total = 0

    @property
    def total(self) -> int:
        """Connections held now, all clients together."""
        return self._total

    def count(self, ip: str) -> int:
        """Connections held now by the client ``ip`` belongs to."""
        return self._open.get(client_key(ip, self.ipv6_prefix), 0)

    def __len__(self) -> int:
        """Clients with at least one connection held."""
        return len(self._open)

    def try_acquire(self, ip: str) -> bool:
        """Take a slot for a new connection from ``ip``; False (nothing taken) when full."""
        key = client_key(ip, self.ipv6_prefix)
        held = self._open.get(key, 0)
        if held >= self.max_per_ip or self._total >= self.max_total:
            return False
        self._open[key] = held + 1
        self._total += 1
        return True

    def release(self, ip: str) -> None:
        """Give back a slot taken by `try_acquire`; a release without one is ignored."""
        key = client_key(ip, self.ipv6_prefix)
        held = self._open.get(key, 0)
        if held <= 0:
            return
        if held == 1:
            del self._open[key]
        else:
            self._open[key] = held - 1
        self._total -= 1


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    """Tuning for `AuthThrottle`; times in seconds. The defaults follow common practice
    (fail2ban's and Dovecot's orders of magnitude): 10 failures per client or 5 per account
    and client in 15 minutes lock for 15 minutes."""

    free_failures: int = 2
    base_delay: float = 1.0
    max_delay: float = 8.0
    window: float = 15 * 60.0
    max_failures_per_ip: int = 10
    max_failures_per_account: int = 5
    max_failures_per_account_total: int = 50
    lockout: float = 15 * 60.0
    trust_period: float = 7 * 24 * 3600.0
    max_entries: int = 10_000
    ipv6_prefix: int = 64

    def __post_init__(self) -> None:
        counts = {
            "max_failures_per_ip": self.max_failures_per_ip,
            "max_failures_per_account": self.max_failures_per_account,
            "max_failures_per_account_total": self.max_failures_per_account_total,
            "max_entries": self.max_entries,
        }
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        times = {
            "base_delay": self.base_delay,
            "max_delay": self.max_delay,
            "window": self.window,
            "lockout": self.lockout,
            "trust_period": self.trust_period,
        }
        for name, seconds in times.items():
            if seconds < 0:
                raise ValueError(f"{name} must not be negative, not {seconds}")
        if self.free_failures < 0:
            raise ValueError(f"free_failures must not be negative, not {self.free_failures}")
        if not 0 <= self.ipv6_prefix <= 128:
            raise ValueError(f"ipv6_prefix must be within 0..128, not {self.ipv6_prefix}")

    def delay_for(self, failures: int) -> float:
        """Seconds to wait before answering after ``failures`` recent failures."""
        if failures < self.free_failures:
            return 0.0
        doublings = min(failures - self.free_failures, _MAX_DOUBLINGS)
        return min(self.base_delay * 2.0**doublings, self.max_delay)


class AuthThrottle:
    """Failed logins per client, per account and client, and per account; see the module
    docstring for the rules. ``account`` is the login name as the client sent it.

    Typical use by a login handler::

        if throttle.locked(ip, name):
            reply 454 4.7.0 (temporary), without looking at the password
        await asyncio.sleep(throttle.delay(ip, name))
        account = await directory.authenticate(name, password)
        throttle.success(ip, name) if account else throttle.failure(ip, name)

    ``account=None`` asks about the client alone (before a name is known).
    """

    def __init__(
        self, limits: ThrottleLimits | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits if limits is not None else ThrottleLimits()
        self._clock = clock
        lim = self.limits
        horizon = max(lim.window, lim.lockout)
        self._by_ip = _Tallies[str](lim.max_failures_per_ip, lim, horizon)
        self._by_pair = _Tallies[tuple[str, str]](lim.max_failures_per_account, lim, horizon)
        self._by_account = _Tallies[str](lim.max_failures_per_account_total, lim, horizon)
        # (account, client) -> end of trust, in order of the last success
        self._trusted: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        """Entries held across all tables (for tests and metrics)."""
        return len(self._by_ip) + len(self._by_pair) + len(self._by_account) + len(self._trusted)

    def locked(self, ip: str, account: str | None = None) -> bool:
        """True when an attempt from ``ip`` (as ``account``) must be refused unchecked."""
        now = self._clock()
        client = client_key(ip, self.limits.ipv6_prefix)
        if self._by_ip.is_locked(client, now):
            return True
        if account is None:
            return False
        name = _account_key(account)
        if self._by_pair.is_locked((name, client), now):
            return True
        return self._by_account.is_locked(name, now) and not self._is_trusted(name, client, now)

    def delay(self, ip: str, account: str | None = None) -> float:
        """Seconds to wait before answering the next attempt from ``ip`` (as ``account``)."""
        now = self._clock()
        client = client_key(ip, self.limits.ipv6_prefix)
        failures = self._by_ip.count(client, now)
        if account is not None:
            name = _account_key(account)
            failures = max(failures, self._by_pair.count((name, client), now))
            if not self._is_trusted(name, client, now):
                failures = max(failures, self._by_account.count(name, now))
        return self.limits.delay_for(failures)

    def failure(self, ip: str, account: str | None = None) -> None:
        """Record a checked attempt that failed (wrong password, unknown or disabled account)."""
        now = self._clock()
        client = client_key(ip, self.limits.ipv6_prefix)
        self._by_ip.record(client, now)
        if account is not None:
            name = _account_key(account)
            self._by_pair.record((name, client), now)
            self._by_account.record(name, now)

    def success(self, ip: str, account: str) -> None:
        """Record a successful login: clear ``account``'s tally for this client and trust the
        client for ``account`` for ``trust_period``. The client's own tally (failures against
        other accounts) and the account-wide tally stay."""
        now = self._clock()
        client = client_key(ip, self.limits.ipv6_prefix)
        key = (_account_key(account), client)
        self._by_pair.clear(key)
        if self.limits.trust_period <= 0:
            return
        self._trusted.pop(key, None)
        self._trusted[key] = now + self.limits.trust_period
        while self._trusted:
            oldest, until = next(iter(self._trusted.items()))
            if until > now and len(self._trusted) <= self.limits.max_entries:
                break
            del self._trusted[oldest]

    def _is_trusted(self, name: str, client: str, now: float) -> bool:
        until = self._trusted.get((name, client))
        return until is not None and until > now


@dataclass(slots=True)
class _Tally:
    failures: deque[float] = field(default_factory=deque)  # times, oldest first
    locked_until: float = float("-inf")
    last: float = float("-inf")


class _Tallies(Generic[K]):
    """Failures per key in a sliding window; ``threshold`` of them lock the key.

    Kept in order of the last failure, so the entries that expire first are at the front.
    """

    def __init__(self, threshold: int, limits: ThrottleLimits, horizon: float) -> None:
        self._threshold = threshold
        self._window = limits.window
        self._lockout = limits.lockout
        self._max_entries = limits.max_entries
        self._horizon = horizon  # after this long without a failure a tally is irrelevant
        self._tallies: OrderedDict[K, _Tally] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tallies)

    def count(self, key: K, now: float) -> int:
        tally = self._tallies.get(key)
        if tally is None:
            return 0
        since = now - self._window
        return sum(1 for t in tally.failures if t > since)

    def is_locked(self, key: K, now: float) -> bool:
        tally = self._tallies.get(key)
        return tally is not None and tally.locked_until > now

    def record(self, key: K, now: float) -> None:
        tally = self._tallies.pop(key, None)
        if tally is None:
            tally = _Tally()
        since = now - self._window
        while tally.failures and tally.failures[0] <= since:
            tally.failures.popleft()
        tally.failures.append(now)
        tally.last = now
        if len(tally.failures) >= self._threshold:
            # Lock, and start counting afresh for when the lock ends.
            tally.locked_until = now + self._lockout
            tally.failures.clear()
        self._tallies[key] = tally
        self._purge(now)

    def clear(self, key: K) -> None:
        self._tallies.pop(key, None)

    def _purge(self, now: float) -> None:
        while self._tallies:
            key, tally = next(iter(self._tallies.items()))
            if tally.last + self._horizon > now and len(self._tallies) <= self._max_entries:
                break
            del self._tallies[key]


def _account_key(account: str) -> str:
    """The directory's spelling of a login name (`Address.canonical`), else case-folded."""
    account = account[:_MAX_ACCOUNT_CHARS]
    try:
        return parse_address(account).canonical
    except AddressError:
        return account.casefold()
