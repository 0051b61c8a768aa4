"""A short-lived memory of successful logins, so reconnecting clients skip argon2 (DESIGN.md,
"Cheap logins").

An IMAP client that opens five connections every few minutes would otherwise pay ≈50 ms of CPU
per connection. After a successful verify the login path calls `AuthCache.remember`; for the
next ``ttl`` seconds `AuthCache.check` answers the same (account, password) pair at once.

Invariants (what makes this safe):

- The plaintext password is never stored. Entries are keyed by an HMAC-SHA256 of it under a
  random key made per cache (so per process), useless outside this process.
- An entry is bound to the account's current password hash (an HMAC of it, its "identity"):
  when the hash changes — a new password set here, by the CLI in another process, or a rehash —
  the next check compares against the new hash from the database and misses. Callers still
  look the account up on every login; the cache replaces only the argon2 verify, so a disabled
  or deleted account fails at once whatever the cache holds.
- Only successes are cached; a wrong password always costs a full verify.
- Entries expire ``ttl`` seconds after the verify that made them (not sliding), and the cache
  holds at most ``max_entries`` (oldest evicted first).

Not thread-safe: use it from the event loop only (the hashing itself runs elsewhere).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["AuthCache"]


class AuthCache:
    """Successful (account, password) pairs for ``ttl`` seconds, bound to the password hash."""

    def __init__(
        self,
        ttl: float = 60.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        # (account, mac(password)) -> (mac(password_hash), expiry); insertion order = expiry order
        self._entries: OrderedDict[tuple[str, bytes], tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, account: str, password_hash: str, password: str) -> bool:
        """True when this password was verified for this account and hash within ``ttl``."""
        key = (account, self._mac(password))
        entry = self._entries.get(key)
        if entry is None:
            return False
        hash_identity, expires = entry
        if self._clock() >= expires:
            del self._entries[key]
            return False
        return hmac.compare_digest(hash_identity, self._mac(password_hash))

    def remember(self, account: str, password_hash: str, password: str) -> None:
        """Record a successful verify of ``password`` against ``password_hash``."""
        if self.ttl <= 0 or self.max_entries <= 0:
            return
        now = self._clock()
        key = (account, self._mac(password))
        self._entries.pop(key, None)
        self._entries[key] = (self._mac(password_hash), now + self.ttl)
        self._purge(now)

    def forget(self, account: str) -> None:
        """Drop every entry of ``account`` (its password changed or it was deleted/disabled)."""
        for key in [k for k in self._entries if k[0] == account]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def _purge(self, now: float) -> None:
        while self._entries:
            key, (_, expires) = next(iter(self._entries.items()))
            if expires > now and len(self._entries) <= self.max_entries:
                break
            del self._entries[key]

    def _mac(self, secret: str) -> bytes:
        data = secret.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, data, hashlib.sha256).digest()
