"""`posthorn queue list` (posthorn.cli.queue) against a live queue in another "process"."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from posthorn.cli.queue import queue_group
from posthorn.delivery.local import LocalDelivery
from posthorn.directory import DirectoryDB, Hasher, HashParams
from posthorn.directory.db import DIRECTORY_FILENAME
from posthorn.directory.service import Directory
from posthorn.queue.envelope import Envelope, EnvelopeRecipient
from posthorn.queue.runner import QueueRunner
from posthorn.queue.spool import Spool
from posthorn.store.sqlite import SQLiteMailStore

CHEAP = HashParams(time_cost=1, memory_cost=8, parallelism=1)
BODY = b"From: alice@far.example\r\nSubject: hi\r\n\r\n" + b"x" * 500 + b"\r\n"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "posthorn.toml"
    path.write_text('[server]\ndata_dir = "data"\ndomains = ["ours.example"]\n')
    (tmp_path / "data").mkdir()
    with DirectoryDB(tmp_path / "data" / DIRECTORY_FILENAME, hasher=Hasher(CHEAP)) as db:
        db.add_domain("ours.example")
        db.add_account("bob@ours.example", "pw")
        db.add_account("dave@ours.example", "pw", quota_bytes=10)
        db.add_alias("team@ours.example", ["bob@ours.example", "friend@far.example"])
    return path


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


@dataclass
class Live:
    spool: Spool
    runner: QueueRunner


@pytest.fixture
async def live(config: Path, pool: ThreadPoolExecutor) -> AsyncIterator[Live]:
    data_dir = config.parent / "data"
    directory = await Directory.open(
        data_dir / DIRECTORY_FILENAME, hasher=Hasher(CHEAP, executor=pool)
    )
    store = SQLiteMailStore(data_dir / "store")
    await store.open()
    spool = Spool(data_dir)
    await spool.open()
    runner = QueueRunner(spool, LocalDelivery(store, directory))
    await runner.start()
    yield Live(spool, runner)
    await runner.stop()
    await spool.close()
    await store.close()
    await directory.close()


async def submit(spool: Spool, *rcpts: str, sender: str = "alice@far.example") -> str:
    writer = await spool.new_message()
    await writer.write(BODY)
    return await writer.commit(Envelope(sender, tuple(EnvelopeRecipient(r) for r in rcpts)))


def queue_list(config: Path, *args: str) -> str:
    result = CliRunner().invoke(queue_group, ["list", "-c", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


async def test_empty_queue(config: Path) -> None:
    assert queue_list(config) == "queue is empty\n"  # no queue database yet
    assert json.loads(queue_list(config, "--json")) == []


async def test_lists_waiting_messages_with_recipient_states(config: Path, live: Live) -> None:
    spool = live.spool
    deferred = await submit(spool, "dave@ours.example", "bob@ours.example")
    remote = await submit(spool, "team@ours.example")
    bounce = await submit(spool, "nobody@ours.example")
    delivered = await submit(spool, "bob@ours.example")
    await live.runner.settle()
    lines = {line.split("\t")[0]: line.split("\t") for line in queue_list(config).splitlines()}
    assert set(lines) == {deferred, remote, bounce}  # the delivered one is gone
    assert delivered not in lines

    _, state, size, created, sender, rcpts, attempts, next_try, error = lines[deferred]
    assert (state, size, sender) == ("deferred", str(len(BODY)), "<alice@far.example>")
    assert rcpts == "dave@ours.example (deferred), bob@ours.example (delivered)"
    assert attempts == "1" and next_try.endswith("Z") and created.endswith("Z")
    assert error == "4.2.2 mailbox full"

    state, rcpts, error = lines[remote][1], lines[remote][5], lines[remote][8]
    assert state == "remote"
    assert rcpts == (
        "team@ours.example (expanded), bob@ours.example (delivered),"
        " friend@far.example (remote pending)"
    )
    assert error == "-"

    state, rcpts, error = lines[bounce][1], lines[bounce][5], lines[bounce][8]
    assert state == "bounce-pending"
    assert rcpts == "nobody@ours.example (failed, bounce pending)"
    assert error.startswith("5.1.1 ")


async def test_json_and_not_yet_delivered(config: Path, live: Live) -> None:
    await live.runner.stop()
    qid = await submit(live.spool, "bob@ours.example", sender="")
    (record,) = json.loads(queue_list(config, "--json"))
    assert record["queue_id"] == qid and record["state"] == "active"
    assert record["sender"] == "" and record["size"] == len(BODY)
    (rcpt,) = record["recipients"]
    assert rcpt["address"] == "bob@ours.example"
    assert (rcpt["route"], rcpt["status"], rcpt["attempts"]) == ("local", "pending", 0)
    line = queue_list(config)
    assert line.split("\t")[4] == "<>"


def test_missing_data_dir_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\ndata_dir = "nowhere"\n')
    result = CliRunner().invoke(queue_group, ["list", "-c", str(path)])
    assert result.exit_code == 2
    assert "does not exist" in result.output
