"""Fixtures of the store conformance suite: every `MailStore` implementation, one set of tests.

The tests in this directory speak only the `MailStore` protocol (posthorn.store.base). To run
them against another implementation, add one entry to `IMPLEMENTATIONS`: a function that gets
the test's temporary directory and returns a zero-argument factory of *unopened* stores that
all share the same data (so `StoreHarness.restart` can close one and open the next on it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from posthorn.store.base import MailStore

from .helpers import ACCOUNT

MakeStore = Callable[[], MailStore]


def _sqlite(tmp_path: Path) -> MakeStore:
    from posthorn.store.sqlite import SQLiteMailStore

    data_dir = tmp_path / "store"
    return lambda: SQLiteMailStore(data_dir)


IMPLEMENTATIONS: dict[str, Callable[[Path], MakeStore]] = {
    "sqlite": _sqlite,
    # "postgres": _postgres,   <- the scale-out store joins here
}


class StoreHarness:
    """One implementation's store on one test's data, with a restart (close + reopen)."""

    def __init__(self, make: MakeStore) -> None:
        self._make = make
        self._store: MailStore | None = None

    @property
    def store(self) -> MailStore:
        assert self._store is not None, "harness not started"
        return self._store

    async def start(self) -> MailStore:
        store = self._make()
        await store.open()
        self._store = store
        return store

    async def another(self) -> MailStore:
        """A second store opened on the same data, as another process would have it."""
        other = self._make()
        await other.open()
        return other

    async def restart(self) -> MailStore:
        """Close the store and open a fresh instance on the same data."""
        await self.close()
        return await self.start()

    async def close(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreHarness]:
    h = StoreHarness(IMPLEMENTATIONS[request.param](tmp_path))
    await h.start()
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture
async def store(harness: StoreHarness) -> MailStore:
    return harness.store


@pytest.fixture
async def inbox(store: MailStore) -> int:
    """The id of `ACCOUNT`'s INBOX (the account provisioned)."""
    await store.ensure_account(ACCOUNT)
    return (await store.get_mailbox(ACCOUNT, "INBOX")).id
