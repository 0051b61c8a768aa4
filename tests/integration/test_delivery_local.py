"""Local delivery through the queue runner, with the real directory, store and spool.

Directory of these tests (cheap argon2 parameters):
ours.example: accounts bob, carol, dave (quota 100 bytes); aliases team -> bob, carol,
friend@far.example; catch-all @ours.example -> carol; loop1 -> loop2 -> loop1.
strict.example: account erin, no catch-all.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from posthorn.delivery.local import (
    ALIAS_LOOP,
    DELIVERED_TO_LOOP,
    MAILBOX_FULL,
    NO_SUCH_USER,
    TEMPORARY,
    LocalDelivery,
)
from posthorn.directory import DirectoryDB, Hasher, HashParams
from posthorn.directory.db import DIRECTORY_FILENAME
from posthorn.directory.service import Directory
from posthorn.queue.envelope import Envelope, EnvelopeRecipient, Notify
from posthorn.queue.records import DSN_PENDING, QueuedMessage, QueuedRecipient, Route, Status
from posthorn.queue.runner import QueueRunner
from posthorn.queue.schedule import RetryPolicy
from posthorn.queue.spool import Spool
from posthorn.store.sqlite import SQLiteMailStore

CHEAP = HashParams(time_cost=1, memory_cost=8, parallelism=1)
T0 = 1_700_000_000.0
SENDER = "alice@far.example"
RECEIVED = b"Received: from far.example by mx.ours.example with ESMTP; Tue, 14 Nov 2023\r\n"
BODY = b"From: alice@far.example\r\nSubject: hello\r\n\r\n" + b"Hi there.\r\n" * 100
POLICY = RetryPolicy(first=60, cap=600, lifetime=3600)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Post:
    """Directory + store + spool + runner on one data directory, restartable."""

    def __init__(self, data_dir: Path, pool: ThreadPoolExecutor, *, populate: bool = True) -> None:
        self.data_dir = data_dir
        self.pool = pool
        self.clock = Clock()
        if populate:
            self.populate()

    def populate(self) -> None:
        with DirectoryDB(self.data_dir / DIRECTORY_FILENAME, hasher=Hasher(CHEAP)) as db:
            db.add_domain("ours.example")
            db.add_domain("strict.example")
            for name in ("bob", "carol"):
                db.add_account(f"{name}@ours.example", "pw")
            db.add_account("dave@ours.example", "pw", quota_bytes=100)
            db.add_account("erin@strict.example", "pw")
            db.add_alias(
                "team@ours.example",
                ["bob@ours.example", "carol@ours.example", "friend@far.example"],
            )
            db.add_alias("@ours.example", ["carol@ours.example"])
            db.add_alias("loop1@strict.example", ["loop2@strict.example"])
            db.add_alias("loop2@strict.example", ["loop1@strict.example"])

    async def start(self, *, run: bool = True) -> None:
        self.directory = await Directory.open(
            self.data_dir / DIRECTORY_FILENAME, hasher=Hasher(CHEAP, executor=self.pool)
        )
        self.store = SQLiteMailStore(self.data_dir / "store")
        await self.store.open()
        self.spool = Spool(self.data_dir, clock=self.clock)
        await self.spool.open()
        self.runner = QueueRunner(
            self.spool, LocalDelivery(self.store, self.directory), retry=POLICY, poll=3600
        )
        if run:
            await self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop(grace=5)
        await self.spool.close()
        await self.store.close()
        await self.directory.close()

    async def submit(
        self, *rcpts: str | EnvelopeRecipient, body: bytes = BODY, sender: str = SENDER
    ) -> str:
        writer = await self.spool.new_message()
        await writer.write(body)
        recipients = tuple(
            r if isinstance(r, EnvelopeRecipient) else EnvelopeRecipient(r) for r in rcpts
        )
        return await writer.commit(Envelope(sender, recipients, received=RECEIVED))

    async def inbox(self, account: str) -> list[bytes]:
        await self.store.ensure_account(account)
        box = await self.store.get_mailbox(account, "INBOX")
        metas = await self.store.fetch(account, box.id)
        return [await self.store.read(account, box.id, m.uid) for m in metas]

    async def queued(self, qid: str) -> QueuedMessage | None:
        return await self.spool.db.load(qid)

    async def rows(self, qid: str) -> dict[str, QueuedRecipient]:
        message = await self.queued(qid)
        assert message is not None
        return {r.address: r for r in message.recipients}

    def spool_files(self) -> list[str]:
        return sorted(os.listdir(self.spool.dir))

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


@pytest.fixture
async def post(tmp_path: Path, pool: ThreadPoolExecutor) -> AsyncIterator[Post]:
    p = Post(tmp_path, pool)
    await p.start()
    yield p
    await p.stop()


def trace(account: str, sender: str = SENDER) -> bytes:
    return f"Return-Path: <{sender}>\r\nDelivered-To: {account}\r\n".encode() + RECEIVED


async def eventually(check: object, within: float = 5.0) -> None:
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_delivers_with_trace_prefix_and_removes_the_message(post: Post) -> None:
    qid = await post.submit("Bob@Ours.Example")
    await post.runner.settle()
    (stored,) = await post.inbox("bob@ours.example")
    assert stored == trace("bob@ours.example") + BODY
    assert await post.queued(qid) is None
    assert post.spool_files() == []  # the store has its own link or copy


async def test_a_commit_is_delivered_at_once_without_a_scan(post: Post) -> None:
    await post.runner.settle()  # the start-up scan is done; the next is an hour away
    await post.submit("bob@ours.example")

    async def delivered() -> bool:
        return len(await post.inbox("bob@ours.example")) == 1

    await eventually(delivered, within=2.0)


async def test_aliases_catch_all_plus_and_remote_targets(post: Post) -> None:
    qid = await post.submit(
        "team@ours.example",  # -> bob, carol, friend@far.example
        "bob+news@ours.example",  # plus address: bob, INBOX for now
        "whoever@ours.example",  # catch-all -> carol
        "x@elsewhere.example",  # not ours: the outbound queue's
    )
    await post.runner.settle()
    # One copy per account, however many recipients reached it.
    assert await post.inbox("bob@ours.example") == [trace("bob@ours.example") + BODY]
    assert await post.inbox("carol@ours.example") == [trace("carol@ours.example") + BODY]
    rows = await post.rows(qid)
    team = rows["team@ours.example"]
    assert team.status is Status.EXPANDED
    assert rows["bob@ours.example"].parent == team.id
    assert rows["bob@ours.example"].status is Status.DELIVERED
    plus = rows["bob+news@ours.example"]
    assert (plus.status, plus.account, plus.tag) == (Status.DELIVERED, "bob@ours.example", "news")
    catch_all = rows["whoever@ours.example"]
    assert (catch_all.status, catch_all.account) == (Status.DELIVERED, "carol@ours.example")
    # Remote targets wait in the same message for the outbound queue.
    friend = rows["friend@far.example"]
    assert (friend.route, friend.status, friend.parent) == (Route.REMOTE, Status.PENDING, team.id)
    foreign = rows["x@elsewhere.example"]
    assert (foreign.route, foreign.status, foreign.attempts) == (Route.REMOTE, Status.PENDING, 0)
    assert post.spool_files() == [qid]  # kept for the remote recipients


async def test_unknown_recipient_fails_and_owes_a_bounce(post: Post) -> None:
    qid = await post.submit("nobody@strict.example", "erin@strict.example")
    await post.runner.settle()
    assert len(await post.inbox("erin@strict.example")) == 1
    rows = await post.rows(qid)
    nobody = rows["nobody@strict.example"]
    assert (nobody.status, nobody.last_error, nobody.dsn) == (
        Status.FAILED,
        NO_SUCH_USER,
        DSN_PENDING,
    )
    assert NO_SUCH_USER.startswith("5.1.1 ")
    assert post.spool_files() == [qid]  # the bounce will need it


async def test_failure_without_a_bounce_owed_finishes_the_message(post: Post) -> None:
    never = EnvelopeRecipient("nobody@strict.example", frozenset({Notify.NEVER}))
    q1 = await post.submit(never, "erin@strict.example")
    q2 = await post.submit("nobody@strict.example", sender="")  # a bounce is never bounced
    await post.runner.settle()
    assert await post.queued(q1) is None and await post.queued(q2) is None
    assert post.spool_files() == []


async def test_alias_loop_fails(post: Post) -> None:
    qid = await post.submit("loop1@strict.example")
    await post.runner.settle()
    row = (await post.rows(qid))["loop1@strict.example"]
    assert (row.status, row.last_error) == (Status.FAILED, ALIAS_LOOP)
    assert ALIAS_LOOP.startswith("5.4.6 ")


async def test_delivered_to_loop_is_refused_for_that_account_only(post: Post) -> None:
    looped = b"Delivered-To: bob@ours.example\r\n" + BODY
    qid = await post.submit("bob@ours.example", "carol@ours.example", body=looped)
    await post.runner.settle()
    assert await post.inbox("bob@ours.example") == []
    assert await post.inbox("carol@ours.example") == [trace("carol@ours.example") + looped]
    rows = await post.rows(qid)
    assert (rows["bob@ours.example"].status, rows["bob@ours.example"].last_error) == (
        Status.FAILED,
        DELIVERED_TO_LOOP,
    )
    assert DELIVERED_TO_LOOP.startswith("5.4.6 ")
    assert rows["carol@ours.example"].status is Status.DELIVERED


async def test_over_quota_is_retried_until_delivered(post: Post) -> None:
    qid = await post.submit("dave@ours.example", "bob@ours.example")
    await post.runner.settle()
    rows = await post.rows(qid)
    dave = rows["dave@ours.example"]
    assert (dave.status, dave.last_error, dave.attempts) == (Status.DEFERRED, MAILBOX_FULL, 1)
    assert dave.next_try == T0 + 60
    assert MAILBOX_FULL.startswith("4.2.2 ")
    assert rows["bob@ours.example"].status is Status.DELIVERED  # one failure, not two
    assert await post.inbox("dave@ours.example") == []
    # Not yet due: nothing happens.
    post.advance(30)
    await post.runner.settle()
    assert (await post.rows(qid))["dave@ours.example"].attempts == 1
    # Still full at the retry: the next wait doubles.
    post.advance(31)
    await post.runner.settle()
    dave = (await post.rows(qid))["dave@ours.example"]
    assert (dave.attempts, dave.next_try) == (2, post.clock.now + 120)
    # The operator raises the quota; the next retry delivers and finishes the message.
    await post.directory.run(lambda db: db.set_quota("dave@ours.example", None))
    post.advance(120)
    await post.runner.settle()
    assert await post.inbox("dave@ours.example") == [trace("dave@ours.example") + BODY]
    assert len(await post.inbox("bob@ours.example")) == 1  # never delivered twice
    assert await post.queued(qid) is None
    assert post.spool_files() == []


async def test_retry_wakes_the_runner_on_its_own(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    post = Post(tmp_path, pool)
    post.clock.now = time.time()  # real time: the runner sleeps until next_try
    await post.start(run=False)
    post.runner.retry = RetryPolicy(first=0.2, cap=0.2, lifetime=3600)
    await post.runner.start()
    try:
        qid = await post.submit("dave@ours.example")
        await post.directory.run(lambda db: db.set_quota("dave@ours.example", None))

        async def delivered() -> bool:
            post.clock.now = time.time()
            return await post.queued(qid) is None

        await eventually(delivered, within=5.0)
        assert len(await post.inbox("dave@ours.example")) == 1
    finally:
        await post.stop()


async def test_expiry_fails_the_deferred_recipient(post: Post) -> None:
    qid = await post.submit("dave@ours.example")
    await post.runner.settle()
    post.advance(POLICY.lifetime)
    await post.runner.settle()
    dave = (await post.rows(qid))["dave@ours.example"]
    assert dave.status is Status.FAILED and dave.dsn == DSN_PENDING
    assert dave.last_error is not None and dave.last_error.startswith("4.2.2 mailbox full")
    assert "gave up" in dave.last_error


async def test_restart_delivers_what_was_accepted(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    post = Post(tmp_path, pool)
    await post.start(run=False)  # accepted, never delivered (as after kill -9)
    ids = [await post.submit("bob@ours.example") for _ in range(3)]
    await post.stop()
    post = Post(tmp_path, pool, populate=False)
    await post.start()
    try:
        await post.runner.settle()
        assert len(await post.inbox("bob@ours.example")) == 3
        for qid in ids:
            assert await post.queued(qid) is None
    finally:
        await post.stop()


async def test_store_failure_defers_and_never_fails(post: Post) -> None:
    await post.store.close()  # every store call now raises
    qid = await post.submit("bob@ours.example")
    await post.runner.settle()
    bob = (await post.rows(qid))["bob@ours.example"]
    assert (bob.status, bob.last_error) == (Status.DEFERRED, TEMPORARY)
    await post.store.open()
    post.advance(60)
    await post.runner.settle()
    assert await post.queued(qid) is None
    assert len(await post.inbox("bob@ours.example")) == 1


async def test_missing_spool_file_defers(post: Post) -> None:
    await post.runner.stop()
    qid = await post.submit("bob@ours.example")
    (post.spool.dir / qid).unlink()  # a damaged disk; never happens by itself
    await post.runner.start()
    await post.runner.settle()
    bob = (await post.rows(qid))["bob@ours.example"]
    assert (bob.status, bob.last_error) == (Status.DEFERRED, TEMPORARY)


async def test_deleted_account_fails_on_retry(post: Post) -> None:
    qid = await post.submit("dave@ours.example")
    await post.runner.settle()
    await post.directory.run(lambda db: db.delete_account("dave@ours.example"))
    post.advance(60)
    await post.runner.settle()
    dave = (await post.rows(qid))["dave@ours.example"]
    assert (dave.status, dave.last_error) == (Status.FAILED, NO_SUCH_USER)


async def test_many_messages_concurrently(post: Post) -> None:
    ids = await asyncio.gather(
        *(post.submit("bob@ours.example", "carol@ours.example") for _ in range(30))
    )
    await post.runner.settle()
    assert len(await post.inbox("bob@ours.example")) == 30
    assert len(await post.inbox("carol@ours.example")) == 30
    for qid in ids:
        assert await post.queued(qid) is None
    assert post.spool_files() == []


async def test_stop_lets_deliveries_finish(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    post = Post(tmp_path, pool)
    await post.start()
    ids = [await post.submit("bob@ours.example") for _ in range(5)]
    await post.stop()  # grace: in-flight ones finish; the rest wait for the next start
    post2 = Post(tmp_path, pool, populate=False)
    await post2.start()
    try:
        await post2.runner.settle()
        for qid in ids:
            assert await post2.queued(qid) is None
        # At least once each; a copy stored just before the stop may come twice.
        assert len(await post2.inbox("bob@ours.example")) >= 5
    finally:
        await post2.stop()
