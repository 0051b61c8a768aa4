"""`Directory`: the server's asynchronous face of the account directory.

Three places run code, and each kind of work has its own:

- the **event loop** only awaits and keeps the `AuthCache`;
- the **database thread** (one `posthorn.store.sqlite.db.SQLiteThread` owning the directory's
  connection) runs `DirectoryDB` operations as coarse jobs — a look-up, a resolution, a write;
- the **hashing pool** (a thread pool, `Hasher`'s executor) runs argon2, so a burst of logins
  delays neither the event loop nor other directory jobs.

`Directory.authenticate` is the login path: look the account up (database thread), answer from
the auth cache when this exact password was verified against this exact hash within the last
minute, else verify (hashing pool); a successful verify whose hash has old parameters is
upgraded in place (compare-and-set, so a concurrent password change wins). Unknown, disabled
and malformed accounts cost one verify too, so timing does not reveal which accounts exist.

The CLI does not use this class: it opens `DirectoryDB` directly, in its own process, on the
same file (WAL + busy timeout make that safe; see `posthorn.directory.db`).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from posthorn.directory.authcache import AuthCache
from posthorn.directory.db import BUSY_TIMEOUT, DIRECTORY_FILENAME, Account, DirectoryDB
from posthorn.directory.passwords import PRODUCTION_PARAMS, Hasher
from posthorn.directory.resolve import Resolution
from posthorn.directory.schema import migrate
from posthorn.log import get_logger
from posthorn.mail.address import Address, AddressError, normalize_domain
from posthorn.store.sqlite.db import SQLiteThread

__all__ = ["Directory"]

T = TypeVar("T")
VERSION_CHECK_INTERVAL = 0.05
log = get_logger(__name__)


def _job(conn: sqlite3.Connection, fn: Callable[[DirectoryDB], T]) -> T:
    """Runs on the database thread: ``fn`` on a `DirectoryDB` attached to its connection."""
    return fn(DirectoryDB.attach(conn))


class Directory:
    """The account directory for the server process. Build it with `Directory.open`."""

    def __init__(
        self,
        thread: SQLiteThread,
        hasher: Hasher,
        cache: AuthCache,
        *,
        owned_pool: ThreadPoolExecutor | None = None,
        reader: DirectoryDB | None = None,
    ) -> None:
        self._thread = thread
        self._reader = reader
        self._lookups: dict[tuple[str, str], Any] = {}
        self._lookup_version = -1
        self._version_checked = -1.0
        self.hasher = hasher
        self.cache = cache
        self._owned_pool = owned_pool

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        hasher: Hasher | None = None,
        cache: AuthCache | None = None,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> Directory:
        """Open (creating and migrating if needed) the directory database at ``path``.

        Without a ``hasher``, one with `PRODUCTION_PARAMS` is made on a private pool of one
        thread per CPU (argon2 is CPU-bound: more threads only add latency); `close` shuts it.
        """
        pool: ThreadPoolExecutor | None = None
        if hasher is None:
            pool = ThreadPoolExecutor(
                max_workers=os.cpu_count() or 2, thread_name_prefix="posthorn-argon2"
            )
            hasher = Hasher(PRODUCTION_PARAMS, executor=pool)
        thread = SQLiteThread(
            Path(path), name="directory", busy_timeout=busy_timeout, setup=migrate
        )
        try:
            await thread.start()
        except BaseException:
            if pool is not None:
                pool.shutdown(wait=False)
            raise
        reader = DirectoryDB.reader(Path(path), busy_timeout=1.0)
        return cls(
            thread,
            hasher,
            cache if cache is not None else AuthCache(),
            owned_pool=pool,
            reader=reader,
        )

    @classmethod
    async def in_data_dir(
        cls, data_dir: str | Path, *, hasher: Hasher | None = None, cache: AuthCache | None = None
    ) -> Directory:
        """`open` on ``data_dir/directory.sqlite3`` (the data directory is made if missing)."""
        directory = Path(data_dir)
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        return await cls.open(directory / DIRECTORY_FILENAME, hasher=hasher, cache=cache)

    async def close(self) -> None:
        """Finish queued jobs, close the database and the private hashing pool. Idempotent."""
        await self._thread.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self.cache.clear()
        if self._owned_pool is not None:
            self._owned_pool.shutdown(wait=True)
            self._owned_pool = None

    async def run(self, fn: Callable[[DirectoryDB], T]) -> T:
        """Run ``fn(db)`` on the database thread as one all-or-nothing job.

        For any `DirectoryDB` operation without a method here, e.g.
        ``await directory.run(lambda db: db.list_aliases("example.org"))``. Pass
        ``password_hash=`` rather than a plaintext password (use `add_account` /
        `set_password` here, which hash in the pool).
        """
        try:
            return await self._thread.run(_job, fn)
        finally:
            self._version_checked = -1.0  # our own write: look again before the next answer

    # --- the login path -------------------------------------------------------------------

    async def read(self, fn: Callable[[DirectoryDB], T]) -> T:
        """Run a read-only ``fn(db)`` inline on the read connection (see `DirectoryDB.reader`),
        or on the database thread when there is none."""
        if self._reader is None:
            return await self.run(fn)
        return fn(self._reader)

    async def _cached(
        self, key: tuple[str, str], fn: Callable[[DirectoryDB], T], *, exact: bool = False
    ) -> T:
        """``fn`` through a cache that any commit to the directory empties.

        ``PRAGMA data_version`` changes when another connection (the database thread, or the
        CLI in another process) commits; it is checked at most every `VERSION_CHECK_INTERVAL`
        seconds, so a cached answer is at most that much older than the last change; ``exact``
        checks it now (account look-ups: a password change or a disabled account must count
        at once).
        """
        if self._reader is None:
            return await self.run(fn)
        now = time.monotonic()
        if exact or now - self._version_checked > VERSION_CHECK_INTERVAL:
            # At most one pragma per interval: under load, 30 look-ups per message each taking
            # the pragma's trip through SQLite (and the GIL) were the loop's biggest cost.
            self._version_checked = now
            version = self._reader.data_version()
            if version != self._lookup_version:
                self._lookups.clear()
                self._lookup_version = version
        if len(self._lookups) > 10_000:
            self._lookups.clear()
        try:
            return self._lookups[key]  # type: ignore[no-any-return]
        except KeyError:
            value = self._lookups[key] = fn(self._reader)
            return value

    async def authenticate(self, address: str, password: str) -> Account | None:
        """The account when ``password`` is right and the account is enabled, else None."""
        account = await self.read(lambda db: db.find_account(address))
        if account is None or not account.enabled or not password:
            await self.hasher.verify_unknown_async(password)
            return None
        if self.cache.check(account.address, account.password_hash, password):
            return account
        if not await self.hasher.verify_async(account.password_hash, password):
            return None
        if self.hasher.needs_rehash(account.password_hash):
            account = await self._rehash(account, password)
        self.cache.remember(account.address, account.password_hash, password)
        return account

    async def _rehash(self, account: Account, password: str) -> Account:
        new_hash = await self.hasher.hash_async(password)
        old_hash = account.password_hash
        try:
            replaced = await self.run(
                lambda db: db.replace_password_hash(account.address, old_hash, new_hash)
            )
        except sqlite3.Error:
            # The login succeeded; upgrading the hash is a nicety that can wait for the next one.
            log.exception("directory.rehash_failed", account=account.address)
            return account
        return replace(account, password_hash=new_hash) if replaced else account

    # --- look-ups and the writes that hash --------------------------------------------------

    async def resolve(self, address: str | Address) -> Resolution:
        """See `DirectoryDB.resolve`; `BadAddress` for a malformed string."""
        return await self._cached(("resolve", str(address)), lambda db: db.resolve(address))

    async def is_local_domain(self, domain: str) -> bool:
        """Any spelling of a domain (U- or A-labels, any case); False if it does not parse."""
        try:
            name = normalize_domain(domain)
        except AddressError:
            return False
        return await self.read(lambda db: db.is_local_domain(name))

    async def find_account(self, address: str) -> Account | None:
        return await self._cached(
            ("account", address), lambda db: db.find_account(address), exact=True
        )

    async def add_account(
        self,
        address: str,
        password: str,
        *,
        quota_bytes: int | None = None,
        enabled: bool = True,
        admin: bool = False,
    ) -> Account:
        """`DirectoryDB.add_account`, hashing in the pool first."""
        new_hash = await self.hasher.hash_async(password)
        return await self.run(
            lambda db: db.add_account(
                address,
                password_hash=new_hash,
                quota_bytes=quota_bytes,
                enabled=enabled,
                admin=admin,
            )
        )

    async def set_admin(self, address: str, admin: bool) -> None:
        """`DirectoryDB.set_admin` on the database thread."""
        await self.run(lambda db: db.set_admin(address, admin))

    async def set_password(self, address: str, password: str) -> None:
        """`DirectoryDB.set_password`, hashing in the pool first; forgets cached logins."""
        account = await self.run(lambda db: db.get_account(address))  # fail before hashing
        new_hash = await self.hasher.hash_async(password)
        await self.run(lambda db: db.set_password(address, password_hash=new_hash))
        self.cache.forget(account.address)
