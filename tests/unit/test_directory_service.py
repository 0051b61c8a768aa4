"""The server's async directory facade (posthorn.directory.service): login path, cache, threads."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from posthorn.directory.authcache import AuthCache
from posthorn.directory.db import DIRECTORY_FILENAME, DirectoryDB
from posthorn.directory.errors import BadAddress, DuplicateAccount, EmptyPassword, NoSuchAccount
from posthorn.directory.passwords import Hasher, HashParams
from posthorn.directory.resolve import LocalTarget, ResolveStatus
from posthorn.directory.service import Directory

CHEAP = HashParams(time_cost=1, memory_cost=8, parallelism=1)


class CountingHasher(Hasher):
    """A cheap hasher that records where each argon2 verify ran (injected, not patched)."""

    def __init__(self, params: HashParams, executor: ThreadPoolExecutor) -> None:
        super().__init__(params, executor)
        self.verify_threads: list[str] = []
        self.unknown_verifies = 0

    def verify(self, password_hash: str, password: str) -> bool:
        self.verify_threads.append(threading.current_thread().name)
        return super().verify(password_hash, password)

    def verify_unknown(self, password: str) -> bool:
        self.unknown_verifies += 1
        return super().verify_unknown(password)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="hash-pool") as executor:
        yield executor


@pytest.fixture
def hasher(pool: ThreadPoolExecutor) -> CountingHasher:
    return CountingHasher(CHEAP, pool)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    with DirectoryDB(tmp_path / DIRECTORY_FILENAME, hasher=Hasher(CHEAP)) as cli:
        cli.add_domain("ours.example")
        cli.add_account("bob@ours.example", "bob-pw")
        cli.add_alias("team@ours.example", ["bob@ours.example", "x@far.example"])
    return tmp_path / DIRECTORY_FILENAME


@pytest.fixture
async def directory(path: Path, hasher: CountingHasher) -> AsyncIterator[Directory]:
    opened = await Directory.open(path, hasher=hasher)
    yield opened
    await opened.close()


async def test_authenticate(directory: Directory, hasher: CountingHasher) -> None:
    account = await directory.authenticate("Bob@OURS.example", "bob-pw")
    assert account is not None and account.address == "bob@ours.example"
    assert await directory.authenticate("bob@ours.example", "wrong") is None
    assert await directory.authenticate("bob@ours.example", "") is None
    assert await directory.authenticate("nobody@ours.example", "bob-pw") is None
    assert await directory.authenticate("not an address", "bob-pw") is None
    assert hasher.unknown_verifies == 3  # failures cost a verify whatever the reason


async def test_verify_runs_in_the_pool_not_loop_or_db_thread(
    directory: Directory, hasher: CountingHasher
) -> None:
    await directory.authenticate("bob@ours.example", "bob-pw")
    assert hasher.verify_threads
    for name in hasher.verify_threads:
        assert name.startswith("hash-pool")
    assert threading.current_thread().name not in hasher.verify_threads
    assert "directory-db" not in hasher.verify_threads


async def test_cache_skips_argon2_for_repeat_logins(
    directory: Directory, hasher: CountingHasher
) -> None:
    assert await directory.authenticate("bob@ours.example", "bob-pw")
    assert len(hasher.verify_threads) == 1
    for _ in range(5):
        assert await directory.authenticate("BOB@ours.example", "bob-pw")
    assert len(hasher.verify_threads) == 1
    # a wrong password is never answered from the cache
    assert await directory.authenticate("bob@ours.example", "bob-pw2") is None
    assert len(hasher.verify_threads) == 2


async def test_disabled_account_fails_even_when_cached(directory: Directory, path: Path) -> None:
    assert await directory.authenticate("bob@ours.example", "bob-pw")
    with DirectoryDB(path, hasher=Hasher(CHEAP)) as cli:  # the CLI, another "process"
        cli.set_enabled("bob@ours.example", False)
    assert await directory.authenticate("bob@ours.example", "bob-pw") is None
    await directory.run(lambda db: db.set_enabled("bob@ours.example", True))
    assert await directory.authenticate("bob@ours.example", "bob-pw")


async def test_password_change_here_invalidates_the_cache(
    directory: Directory, hasher: CountingHasher
) -> None:
    assert await directory.authenticate("bob@ours.example", "bob-pw")
    await directory.set_password("Bob@ours.example", "new-pw")
    assert len(directory.cache) == 0
    assert await directory.authenticate("bob@ours.example", "bob-pw") is None
    assert await directory.authenticate("bob@ours.example", "new-pw")
    with pytest.raises(NoSuchAccount):
        await directory.set_password("nobody@ours.example", "pw")
    with pytest.raises(EmptyPassword):
        await directory.set_password("bob@ours.example", "")


async def test_password_change_by_the_cli_invalidates_the_cache(
    directory: Directory, path: Path
) -> None:
    assert await directory.authenticate("bob@ours.example", "bob-pw")
    with DirectoryDB(path, hasher=Hasher(CHEAP)) as cli:
        cli.set_password("bob@ours.example", "cli-pw")
    assert await directory.authenticate("bob@ours.example", "bob-pw") is None
    assert await directory.authenticate("bob@ours.example", "cli-pw")


async def test_deleted_account_fails_even_when_cached(directory: Directory) -> None:
    assert await directory.authenticate("bob@ours.example", "bob-pw")
    await directory.run(lambda db: db.delete_alias("team@ours.example"))
    await directory.run(lambda db: db.delete_account("bob@ours.example"))
    assert await directory.authenticate("bob@ours.example", "bob-pw") is None


async def test_outdated_hash_is_upgraded_on_login(path: Path, pool: ThreadPoolExecutor) -> None:
    stronger = Hasher(HashParams(time_cost=2, memory_cost=8, parallelism=1), executor=pool)
    directory = await Directory.open(path, hasher=stronger)
    try:
        old_hash = (await directory.find_account("bob@ours.example")).password_hash  # type: ignore[union-attr]
        assert stronger.needs_rehash(old_hash)
        account = await directory.authenticate("bob@ours.example", "bob-pw")
        assert account is not None and not stronger.needs_rehash(account.password_hash)
        stored = await directory.find_account("bob@ours.example")
        assert stored is not None and stored.password_hash == account.password_hash
        assert await directory.authenticate("bob@ours.example", "bob-pw")  # cached, new hash
    finally:
        await directory.close()


async def test_lookups_and_writes(directory: Directory) -> None:
    assert await directory.is_local_domain("OURS.example")
    assert not await directory.is_local_domain("far.example")
    assert not await directory.is_local_domain("not a domain")
    result = await directory.resolve("team@ours.example")
    assert result.status is ResolveStatus.OK
    assert result.local == (LocalTarget("bob@ours.example"),)
    assert result.remote == ("x@far.example",)
    with pytest.raises(BadAddress):
        await directory.resolve("bogus")
    account = await directory.add_account("carol@ours.example", "carol-pw", quota_bytes=10)
    assert account.quota_bytes == 10
    assert await directory.authenticate("carol@ours.example", "carol-pw")
    with pytest.raises(DuplicateAccount):
        await directory.add_account("Carol@ours.example", "pw")
    domains = await directory.run(lambda db: [d.name for d in db.list_domains()])
    assert domains == ["ours.example"]


async def test_admin_flag_reaches_the_login(directory: Directory) -> None:
    root = await directory.add_account("root@ours.example", "root-pw", admin=True)
    assert root.admin
    account = await directory.authenticate("root@ours.example", "root-pw")
    assert account is not None and account.admin
    bob = await directory.authenticate("bob@ours.example", "bob-pw")
    assert bob is not None and not bob.admin
    await directory.set_admin("bob@ours.example", True)
    found = await directory.find_account("bob@ours.example")  # no stale cached answer
    assert found is not None and found.admin
    bob = await directory.authenticate("bob@ours.example", "bob-pw")  # cached password
    assert bob is not None and bob.admin
    with pytest.raises(NoSuchAccount):
        await directory.set_admin("nobody@ours.example", True)


async def test_plaintext_passwords_are_not_hashed_on_the_db_thread(directory: Directory) -> None:
    with pytest.raises(TypeError, match="no hasher"):
        await directory.run(lambda db: db.add_account("dave@ours.example", "pw"))
    assert await directory.find_account("dave@ours.example") is None


async def test_open_in_data_dir_creates_and_migrates(
    tmp_path: Path, hasher: CountingHasher
) -> None:
    directory = await Directory.in_data_dir(
        tmp_path / "data", hasher=hasher, cache=AuthCache(ttl=1)
    )
    try:
        assert (tmp_path / "data" / DIRECTORY_FILENAME).exists()
        assert await directory.run(lambda db: db.list_domains()) == []
    finally:
        await directory.close()
        await directory.close()  # idempotent


async def test_default_hasher_uses_production_parameters_and_own_pool(tmp_path: Path) -> None:
    directory = await Directory.open(tmp_path / DIRECTORY_FILENAME)
    try:
        assert directory.hasher.params.memory_cost == 32768
        await directory.run(lambda db: db.add_domain("ours.example"))
        await directory.add_account("bob@ours.example", "pw")  # one real-cost hash, in the pool
        assert await directory.authenticate("bob@ours.example", "pw")
    finally:
        await directory.close()
