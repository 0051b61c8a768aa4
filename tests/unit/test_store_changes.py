"""ChangeFeed: per-account fan-out, bounded buffers, ChangesLost instead of silent loss."""

from __future__ import annotations

import asyncio

import pytest

from posthorn.store.base import Change, ChangeKind, ChangesLost
from posthorn.store.changes import ChangeFeed


def change(uid: int, account: str = "a@x") -> Change:
    return Change(account, 1, ChangeKind.NEW, (uid,), uid + 1)


async def test_fan_out_per_account_in_order() -> None:
    feed = ChangeFeed()
    a1, a2, b = feed.subscribe("a@x"), feed.subscribe("a@x"), feed.subscribe("b@x")
    feed.publish([change(1), change(2, "b@x"), change(3)])
    assert [a1.get_nowait(), a1.get_nowait(), a1.get_nowait()] == [change(1), change(3), None]
    assert [await a2.get(), await a2.get()] == [change(1), change(3)]
    assert b.get_nowait() == change(2, "b@x")
    assert b.get_nowait() is None


async def test_get_waits_for_a_publish() -> None:
    feed = ChangeFeed()
    sub = feed.subscribe("a@x")
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    feed.publish([change(7)])
    assert await asyncio.wait_for(waiter, 1) == change(7)


async def test_overflow_raises_once_then_resumes() -> None:
    feed = ChangeFeed(maxsize=3)
    sub = feed.subscribe("a@x")
    feed.publish(change(i) for i in range(1, 4))  # exactly full: fine
    assert sub.get_nowait() == change(1)
    feed.publish(change(i) for i in range(4, 10))  # overflows
    with pytest.raises(ChangesLost):
        await sub.get()
    assert sub.get_nowait() is None  # reported once; the reader resyncs from the store
    feed.publish([change(10)])
    assert await sub.get() == change(10)


async def test_overflow_of_one_subscriber_does_not_affect_another() -> None:
    feed = ChangeFeed(maxsize=2)
    slow, fast = feed.subscribe("a@x"), feed.subscribe("a@x")
    for i in range(5):
        feed.publish([change(i)])
        assert fast.get_nowait() == change(i)
    with pytest.raises(ChangesLost):
        slow.get_nowait()


async def test_close_unsubscribes_and_wakes_the_reader() -> None:
    feed = ChangeFeed()
    sub = feed.subscribe("a@x")
    assert feed.subscriber_count("a@x") == 1
    waiter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    sub.close()
    sub.close()
    assert feed.subscriber_count("a@x") == 0
    with pytest.raises(ChangesLost):
        await asyncio.wait_for(waiter, 1)
    feed.publish([change(1)])
    with pytest.raises(ChangesLost):
        sub.get_nowait()


async def test_closing_the_feed_closes_every_subscription() -> None:
    feed = ChangeFeed()
    a, b = feed.subscribe("a@x"), feed.subscribe("b@x")
    feed.publish([change(1)])
    feed.close()
    assert a.get_nowait() == change(1)  # what was buffered is still delivered
    for sub in (a, b):
        with pytest.raises(ChangesLost):
            await sub.get()


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ChangeFeed(maxsize=0)
