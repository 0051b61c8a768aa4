"""The operator's side of the queue: `posthorn queue show|retry|hold|release|delete|bounce`
(posthorn.cli.queue) against a real spool and queue database, the attempt log, and schema
migration 2 (posthorn.queue.schema, posthorn.queue.db)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from posthorn.cli.queue import queue_group
from posthorn.queue import db as queue_db
from posthorn.queue.db import BOUNCED_BY_ADMIN, UnknownMessage, migrate
from posthorn.queue.envelope import Envelope, EnvelopeRecipient, Notify
from posthorn.queue.records import (
    DSN_PENDING,
    DSN_SENT,
    MessageState,
    QueuedMessage,
    QueuedRecipient,
    Route,
    Status,
)
from posthorn.queue.schema import MIGRATIONS, QUEUE_DB_NAME
from posthorn.queue.spool import Spool
from posthorn.store.sqlite.db import apply_migrations

BODY = b"From: alice@far.example\r\nSubject: hi\r\n\r\nhello\r\n"
REMOTE = "mx.b.test [127.0.0.2]"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "posthorn.toml"
    path.write_text('[server]\ndata_dir = "data"\ndomains = ["ours.example"]\n')
    (tmp_path / "data").mkdir()
    return path


@pytest.fixture
async def spool(config: Path) -> AsyncIterator[Spool]:
    spool = Spool(config.parent / "data")
    await spool.open()
    yield spool
    await spool.close()


async def submit(
    spool: Spool, *rcpts: str, sender: str = "alice@far.example", notify: str | None = None
) -> QueuedMessage:
    n = None if notify is None else frozenset({Notify(notify)})
    writer = await spool.new_message()
    await writer.write(BODY)
    qid = await writer.commit(
        Envelope(sender, tuple(EnvelopeRecipient(r, n) for r in rcpts), ret="HDRS", envid="e1")
    )
    message = await spool.db.load(qid)
    assert message is not None
    return message


async def defer_remote(spool: Spool, message: QueuedMessage, *, retry_in: float = 3600) -> None:
    """What an outbound pass writes for a remote try that got a 4xx."""
    now = time.time()
    changed = [
        replace(
            r,
            route=Route.REMOTE,
            status=Status.DEFERRED,
            attempts=r.attempts + 1,
            last_error="4.7.1 greylisted, try later",
            remote=REMOTE,
            next_try=now + retry_in,
            updated=now,
        )
        for r in message.recipients
    ]
    assert await spool.db.apply(message.queue_id, changed, []) is None


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(queue_group, [*args, "-c", str(config)])


def ok(config: Path, *args: str) -> str:
    result = cli(config, *args)
    assert result.exit_code == 0, result.output
    return result.output


async def rows(spool: Spool, qid: str) -> tuple[QueuedRecipient, ...]:
    message = await spool.db.load(qid)
    assert message is not None
    return message.recipients


# the attempt log --------------------------------------------------------------------


async def test_apply_logs_every_try_and_only_tries(spool: Spool) -> None:
    message = await submit(spool, "bob@far.example", "carol@far.example")
    bob, carol = message.recipients
    now = time.time()
    # bob re-routed (not a try), carol tried and deferred
    rerouted = replace(bob, route=Route.REMOTE, updated=now)
    tried = replace(
        carol,
        attempts=1,
        status=Status.DEFERRED,
        last_error="4.2.2 mailbox full",
        next_try=now + 60,
        updated=now,
    )
    child = QueuedRecipient(
        id=0,
        address="dan@ours.example",
        route=Route.LOCAL,
        status=Status.DELIVERED,
        parent=carol.id,
        attempts=1,
        next_try=now,
        updated=now,
    )
    await spool.db.apply(message.queue_id, [rerouted, tried], [child])
    log = await spool.db.attempt_log(message.queue_id)
    assert [(a.address, a.status, a.reply, a.remote) for a in log] == [
        ("carol@far.example", Status.DEFERRED, "4.2.2 mailbox full", None),
        ("dan@ours.example", Status.DELIVERED, None, None),
    ]
    assert log[0].recipient_id == carol.id and log[0].at == now

    reloaded = await spool.db.load(message.queue_id)
    assert reloaded is not None
    await defer_remote(spool, replace(reloaded, recipients=reloaded.recipients[:2]))
    log = await spool.db.attempt_log(message.queue_id)
    assert len(log) == 4
    assert {(a.address, a.remote) for a in log[2:]} == {
        ("bob@far.example", REMOTE),
        ("carol@far.example", REMOTE),
    }
    by_address = {r.address: r for r in await rows(spool, message.queue_id)}
    assert by_address["bob@far.example"].remote == REMOTE
    assert by_address["bob@far.example"].attempts == 1
    assert by_address["carol@far.example"].attempts == 2


async def test_finished_message_takes_its_log_along(spool: Spool) -> None:
    message = await submit(spool, "bob@far.example")
    (bob,) = message.recipients
    done = replace(bob, status=Status.DELIVERED, attempts=1, remote=REMOTE, updated=time.time())
    assert await spool.db.apply(message.queue_id, [done], []) == message.spool_path.name
    with closing(sqlite3.connect(spool.db.path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 0


async def test_apply_to_a_deleted_message_writes_nothing(spool: Spool) -> None:
    message = await submit(spool, "bob@far.example")
    await spool.db.delete(message.queue_id)
    (bob,) = message.recipients
    child = replace(bob, id=0, parent=bob.id)
    assert await spool.db.apply(message.queue_id, [replace(bob, attempts=1)], [child]) is None
    with closing(sqlite3.connect(spool.db.path)) as conn:
        for table in ("messages", "recipients", "attempts"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0


# migration 2 ------------------------------------------------------------------------


def test_version_1_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_DB_NAME
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        assert apply_migrations(conn, MIGRATIONS[:1]) == 1
        conn.execute(
            "INSERT INTO messages VALUES ('Q1', 'a@x.example', x'', NULL, NULL, '7BIT', 0,"
            " NULL, '127.0.0.1', 'h', 'ESMTP', 5, 'Q1', 1.0, 'active')"
        )
        conn.execute(
            "INSERT INTO recipients (queue_id, address, route, status, attempts, next_try,"
            " updated) VALUES ('Q1', 'b@y.example', 'remote', 'deferred', 2, 9.0, 1.0)"
        )
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        assert migrate(conn) == 2
        columns = {r[1] for r in conn.execute("PRAGMA table_info(recipients)")}
        assert {"remote", "delay_dsn"} <= columns
        columns = {r[1] for r in conn.execute("PRAGMA table_info(attempts)")}
        assert columns == {"id", "recipient_id", "queue_id", "at", "status", "reply", "remote"}
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(attempts)")}
        assert "attempts_message" in indexes
        message = queue_db.load_message(conn, tmp_path, "Q1")
        assert message is not None
        (row,) = message.recipients
        assert (row.status, row.attempts, row.remote, row.delay_dsn) == (
            Status.DEFERRED,
            2,
            None,
            None,
        )
        assert queue_db.attempt_log(conn, "Q1") == []
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("UPDATE recipients SET delay_dsn = 'maybe'")


# hold / release ---------------------------------------------------------------------


async def test_hold_and_release(config: Path, spool: Spool) -> None:
    message = await submit(spool, "bob@far.example")
    qid = message.queue_id
    now = time.time() + 1
    assert (await spool.db.due(Route.LOCAL, now, 10))[0] == [qid]
    before = await spool.db.data_version()

    assert ok(config, "hold", qid) == f"{qid}: held\n"
    assert await spool.db.data_version() != before  # how the runner notices the CLI
    loaded = await spool.db.load(qid)
    assert loaded is not None and loaded.state is MessageState.HELD
    assert await spool.db.due(Route.LOCAL, now, 10) == ([], None)  # held: never due
    assert ok(config, "hold", qid) == f"{qid}: already held\n"
    assert ok(config, "list").split("\t")[1] == "held"

    assert ok(config, "release", qid) == f"{qid}: released\n"
    assert (await spool.db.due(Route.LOCAL, now, 10))[0] == [qid]
    assert ok(config, "release", qid) == f"{qid}: was not held\n"


async def test_queue_db_methods_report_unknown_ids(spool: Spool) -> None:
    for call in (
        spool.db.hold("NOSUCHID0000"),
        spool.db.release("NOSUCHID0000"),
        spool.db.retry("NOSUCHID0000", time.time()),
        spool.db.delete("NOSUCHID0000"),
        spool.db.bounce("NOSUCHID0000", time.time()),
        spool.db.attempt_log("NOSUCHID0000"),
    ):
        with pytest.raises(UnknownMessage, match="no queued message NOSUCHID0000"):
            await call


# retry ------------------------------------------------------------------------------


async def test_retry_one_and_all(config: Path, spool: Spool) -> None:
    first = await submit(spool, "bob@far.example", "carol@far.example")
    second = await submit(spool, "dan@far.example")
    await defer_remote(spool, first)
    await defer_remote(spool, second)
    start = time.time()
    assert (await spool.db.due(Route.REMOTE, start, 10))[0] == []

    assert ok(config, "retry", first.queue_id) == f"{first.queue_id}: 2 recipients due now\n"
    assert all(r.next_try <= time.time() for r in await rows(spool, first.queue_id))
    assert all(r.next_try > time.time() for r in await rows(spool, second.queue_id))
    assert (await spool.db.due(Route.REMOTE, time.time(), 10))[0] == [first.queue_id]
    # Already due: touched again all the same (the commit is what wakes a running server).
    assert ok(config, "retry", first.queue_id) == f"{first.queue_id}: 2 recipients due now\n"

    ok(config, "hold", second.queue_id)
    assert ok(config, "retry", "--all") == (
        "3 recipients of 2 messages due now (1 message held: release to deliver)\n"
    )
    (dan,) = await rows(spool, second.queue_id)
    assert dan.next_try <= time.time() and dan.attempts == 1  # counts untouched
    assert (await spool.db.due(Route.REMOTE, time.time(), 10))[0] == [first.queue_id]


async def test_retry_needs_exactly_one_of_id_and_all(config: Path, spool: Spool) -> None:
    message = await submit(spool, "bob@far.example")
    for args in (("retry",), ("retry", message.queue_id, "--all")):
        result = cli(config, *args)
        assert result.exit_code == 2
        assert "give a queue ID or --all" in result.output


# delete -----------------------------------------------------------------------------


async def test_delete_removes_rows_log_and_file(config: Path, spool: Spool) -> None:
    message = await submit(spool, "bob@far.example")
    keep = await submit(spool, "carol@far.example")
    await defer_remote(spool, message)
    assert message.spool_path.exists()

    assert ok(config, "delete", message.queue_id) == f"{message.queue_id}: deleted\n"
    assert not message.spool_path.exists()
    assert await spool.db.load(message.queue_id) is None
    with closing(sqlite3.connect(spool.db.path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 0
        left = conn.execute("SELECT DISTINCT queue_id FROM recipients").fetchall()
        assert left == [(keep.queue_id,)]
    assert keep.spool_path.exists()

    result = cli(config, "delete", message.queue_id)
    assert result.exit_code == 2
    assert result.output == f"posthorn: no queued message {message.queue_id}\n"


# bounce -----------------------------------------------------------------------------


async def test_bounce_owes_a_dsn_by_the_usual_rule(config: Path, spool: Spool) -> None:
    message = await submit(spool, "bob@far.example", "carol@far.example")
    bob, carol = message.recipients
    now = time.time()
    delivered = replace(bob, status=Status.DELIVERED, attempts=1, updated=now)
    await spool.db.apply(message.queue_id, [delivered], [])
    ok(config, "hold", message.queue_id)

    out = ok(config, "bounce", message.queue_id)
    assert out == f"{message.queue_id}: bounced 1 recipient (DSN pending for 1)\n"
    loaded = await spool.db.load(message.queue_id)
    assert loaded is not None
    assert loaded.state is MessageState.ACTIVE  # released, so the bouncer sends the DSN
    by_id = {r.id: r for r in loaded.recipients}
    assert by_id[bob.id].status is Status.DELIVERED and by_id[bob.id].dsn is None
    assert by_id[carol.id].status is Status.FAILED
    assert (by_id[carol.id].last_error, by_id[carol.id].dsn) == (BOUNCED_BY_ADMIN, DSN_PENDING)
    assert message.spool_path.exists()  # the DSN needs the envelope and content
    assert ok(config, "bounce", message.queue_id) == (
        f"{message.queue_id}: no recipient waiting; nothing bounced\n"
    )
    # the bouncer marks the DSN sent: nothing left, the message goes
    name = await spool.db.mark_notified(message.queue_id, [carol.id], [])
    assert name == message.spool_path.name


async def test_bounce_from_the_null_sender_owes_nothing(config: Path, spool: Spool) -> None:
    message = await submit(spool, "bob@far.example", sender="")
    await defer_remote(spool, message)
    out = ok(config, "bounce", message.queue_id)
    assert out == (
        f"{message.queue_id}: bounced 1 recipient (no DSN owed); removed from the queue\n"
    )
    assert await spool.db.load(message.queue_id) is None
    assert not message.spool_path.exists()


async def test_bounce_honours_notify_never(spool: Spool) -> None:
    never = await submit(spool, "bob@far.example", notify="NEVER")
    failure = await submit(spool, "bob@far.example", notify="FAILURE")
    done = await spool.db.bounce(never.queue_id, time.time())
    assert [r.dsn for r in done.rows] == [None]
    assert done.removed == never.spool_path.name
    done = await spool.db.bounce(failure.queue_id, time.time())
    assert [r.dsn for r in done.rows] == [DSN_PENDING] and done.removed is None


async def test_mark_notified(spool: Spool) -> None:
    message = await submit(spool, "bob@far.example")
    await defer_remote(spool, message)
    (bob,) = message.recipients
    assert await spool.db.mark_notified(message.queue_id, [], [bob.id]) is None
    (row,) = await rows(spool, message.queue_id)
    assert (row.delay_dsn, row.dsn, row.status) == (DSN_SENT, None, Status.DEFERRED)


# show, list, errors -----------------------------------------------------------------


async def test_show(config: Path, spool: Spool) -> None:
    message = await submit(spool, "bob@far.example")
    qid = message.queue_id
    out = ok(config, "show", qid)
    assert f"queue id:    {qid}\n" in out
    assert "state:       active\n" in out
    assert "sender:      <alice@far.example>\n" in out
    assert f"size:        {len(BODY)}\n" in out
    assert "dsn:         ret=HDRS envid=e1\n" in out
    assert f"recipient {message.recipients[0].id}: bob@far.example\n" in out
    assert "  status:     pending\n" in out
    assert out.endswith("attempts:    none yet\n")

    await defer_remote(spool, message)
    out = ok(config, "show", qid)
    assert "  status:     deferred\n" in out
    assert "  attempts:   1\n" in out
    assert "  last error: 4.7.1 greylisted, try later\n" in out
    assert f"  remote:     {REMOTE}\n" in out
    log = out.split("attempts:\n", 1)[1].splitlines()
    assert len(log) == 1
    assert log[0].endswith(
        f"Z  bob@far.example  deferred via {REMOTE}: 4.7.1 greylisted, try later"
    )
    assert f"bob@far.example (deferred, {REMOTE})" in ok(config, "list")

    record = json.loads(ok(config, "show", qid, "--json"))
    assert record["queue_id"] == qid and record["state"] == "deferred"
    assert record["recipients"][0]["remote"] == REMOTE
    assert record["recipients"][0]["delay_dsn"] is None
    (attempt,) = record["attempts"]
    assert attempt["status"] == "deferred" and attempt["remote"] == REMOTE


@pytest.mark.parametrize("command", ["show", "retry", "hold", "release", "delete", "bounce"])
async def test_unknown_id_is_bad_input(config: Path, spool: Spool, command: str) -> None:
    result = cli(config, command, "NOSUCHID0000")
    assert result.exit_code == 2
    assert result.output == "posthorn: no queued message NOSUCHID0000\n"


def test_no_queue_database_yet(config: Path) -> None:
    result = cli(config, "hold", "NOSUCHID0000")
    assert (result.exit_code, result.output) == (2, "posthorn: no queued message NOSUCHID0000\n")
    assert ok(config, "retry", "--all") == "nothing to retry: the queue is empty\n"
    assert not (config.parent / "data" / QUEUE_DB_NAME).exists()
