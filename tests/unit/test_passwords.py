"""argon2id hashing (posthorn.directory.passwords) and the auth cache (…authcache)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from posthorn.directory.authcache import AuthCache
from posthorn.directory.errors import EmptyPassword
from posthorn.directory.passwords import (
    PRODUCTION_PARAMS,
    Hasher,
    HashParams,
    generate_password,
    hash_password,
    needs_rehash,
    verify_password,
)

CHEAP = HashParams(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def hasher() -> Hasher:
    return Hasher(CHEAP)


def test_production_parameters_hash_verify_and_cost() -> None:
    """The real parameters, once: PHC string carries them, and a verify costs tens of ms."""
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$v=19$m=32768,t=2,p=1$")
    assert verify_password(hashed, "correct horse")
    assert not verify_password(hashed, "Correct horse")
    assert not needs_rehash(hashed)
    started = time.perf_counter()
    verify_password(hashed, "correct horse")
    elapsed = time.perf_counter() - started
    assert 0.005 < elapsed < 2.0  # ≈50 ms here; generous bounds for slow CI machines
    assert HashParams(time_cost=2, memory_cost=32768, parallelism=1) == PRODUCTION_PARAMS


def test_hash_is_salted(hasher: Hasher) -> None:
    first, second = hasher.hash("pw"), hasher.hash("pw")
    assert first != second
    assert hasher.verify(first, "pw") and hasher.verify(second, "pw")


@pytest.mark.parametrize(
    "bad_hash",
    ["", "not a hash", "$argon2id$v=19$m=8,t=1,p=1$broken", "{SHA512-CRYPT}$6$abc", "!"],
)
def test_verify_is_false_never_raises_for_malformed_hashes(hasher: Hasher, bad_hash: str) -> None:
    assert hasher.verify(bad_hash, "pw") is False
    assert hasher.needs_rehash(bad_hash) is True


def test_verify_false_for_wrong_and_odd_passwords(hasher: Hasher) -> None:
    hashed = hasher.hash("pässwörd")
    assert hasher.verify(hashed, "pässwörd")
    assert not hasher.verify(hashed, "passwort")
    assert not hasher.verify(hashed, "")
    assert not hasher.verify(hashed, "\ud800")  # a surrogate UTF-8 cannot carry


def test_surrogateescape_passwords_are_their_original_bytes(hasher: Hasher) -> None:
    raw = b"caf\xe9"  # Latin-1 bytes from a client that did not send UTF-8
    hashed = hasher.hash(raw.decode("utf-8", "surrogateescape"))
    assert hasher.verify(hashed, raw.decode("utf-8", "surrogateescape"))
    assert not hasher.verify(hashed, "café")


def test_empty_password_is_refused(hasher: Hasher) -> None:
    with pytest.raises(EmptyPassword):
        hasher.hash("")


def test_needs_rehash_when_parameters_change(hasher: Hasher) -> None:
    cheap_hash = hasher.hash("pw")
    assert not hasher.needs_rehash(cheap_hash)
    stronger = Hasher(HashParams(time_cost=2, memory_cost=8, parallelism=1))
    assert stronger.needs_rehash(cheap_hash)
    assert stronger.verify(cheap_hash, "pw")  # old hashes keep working: params are in the hash


def test_verify_unknown_is_always_false(hasher: Hasher) -> None:
    assert hasher.verify_unknown("posthorn timing equaliser") is False
    assert hasher.verify_unknown("anything") is False


async def test_async_variants_run_in_the_given_pool_not_the_loop() -> None:
    seen: list[str] = []

    class Recording(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            def wrapped():
                seen.append(threading.current_thread().name)
                return fn(*args, **kwargs)

            return super().submit(wrapped)

    with Recording(max_workers=1, thread_name_prefix="argon2-test") as pool:
        hasher = Hasher(CHEAP, executor=pool)
        hashed = await hasher.hash_async("pw")
        assert await hasher.verify_async(hashed, "pw")
        assert not await hasher.verify_async(hashed, "nope")
        assert not await hasher.verify_unknown_async("pw")
        with pytest.raises(EmptyPassword):
            await hasher.hash_async("")
    assert len(seen) == 4
    assert all(name.startswith("argon2-test") for name in seen)
    assert threading.current_thread().name not in seen


async def test_verifies_run_concurrently_off_the_loop() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        hasher = Hasher(CHEAP, executor=pool)
        hashed = hasher.hash("pw")
        results = await asyncio.gather(*(hasher.verify_async(hashed, "pw") for _ in range(8)))
    assert results == [True] * 8


def test_generate_password() -> None:
    passwords = {generate_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert len(password) == 20
        assert not set(password) & set("0Oo1lI")
        assert password.isalnum() and password.isascii()
    assert len(generate_password(32)) == 32
    with pytest.raises(ValueError, match="at least 12"):
        generate_password(8)


# --- AuthCache --------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_hit_needs_same_account_hash_and_password() -> None:
    cache = AuthCache(ttl=60, clock=FakeClock())
    cache.remember("bob@x.org", "$hash1", "secret")
    assert cache.check("bob@x.org", "$hash1", "secret")
    assert not cache.check("bob@x.org", "$hash1", "Secret")
    assert not cache.check("bob@x.org", "$hash2", "secret")  # password changed elsewhere
    assert not cache.check("alice@x.org", "$hash1", "secret")


def test_cache_never_holds_the_plaintext() -> None:
    cache = AuthCache()
    cache.remember("bob@x.org", "$argon2id$stored-hash", "hunter2-plaintext")
    entries = repr(cache._entries)  # white-box: what the process memory holds
    assert "hunter2" not in entries
    assert b"hunter2" not in entries.encode()
    assert "stored-hash" not in entries
    other = AuthCache()  # a different process-level key: macs differ
    other.remember("bob@x.org", "$argon2id$stored-hash", "hunter2-plaintext")
    assert list(other._entries) != list(cache._entries)


def test_cache_entries_expire_after_ttl_not_sliding() -> None:
    clock = FakeClock()
    cache = AuthCache(ttl=60, clock=clock)
    cache.remember("bob@x.org", "$h", "pw")
    clock.now += 59
    assert cache.check("bob@x.org", "$h", "pw")
    clock.now += 1
    assert not cache.check("bob@x.org", "$h", "pw")
    assert len(cache) == 0


def test_cache_forget_and_bounded_size() -> None:
    clock = FakeClock()
    cache = AuthCache(ttl=60, max_entries=3, clock=clock)
    cache.remember("bob@x.org", "$h", "pw1")
    cache.remember("bob@x.org", "$h", "pw2")  # e.g. two app passwords later
    cache.remember("alice@x.org", "$h", "pw")
    cache.forget("bob@x.org")
    assert len(cache) == 1
    assert cache.check("alice@x.org", "$h", "pw")
    for i in range(5):
        clock.now += 1
        cache.remember(f"u{i}@x.org", "$h", "pw")
    assert len(cache) == 3
    assert not cache.check("alice@x.org", "$h", "pw")  # oldest evicted
    assert cache.check("u4@x.org", "$h", "pw")


def test_cache_disabled_by_zero_ttl() -> None:
    cache = AuthCache(ttl=0)
    cache.remember("bob@x.org", "$h", "pw")
    assert not cache.check("bob@x.org", "$h", "pw")
