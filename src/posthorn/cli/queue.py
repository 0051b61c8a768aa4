"""`posthorn queue`: look into the mail queue.

The command opens ``data_dir/queue.sqlite3`` directly, so it works whether or not the server
runs (SQLite WAL: readers never wait for the server's writes). It never touches spool files.

``queue list`` prints one line per queued message, tab-separated: queue id, state, size,
accepted (UTC), sender (``<>`` for the null reverse path), recipients with their own state,
the most attempts any recipient had, the next retry, and the latest error. ``--json`` prints
the whole record instead, every recipient row included.

Message states: ``active`` (a local recipient waits for its first try), ``deferred`` (local
recipients wait for a retry), ``remote`` (only recipients for the outbound queue wait),
``bounce-pending`` (only DSNs owed for failed recipients are left), ``held``.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import click

from posthorn.cli.common import data_dir_exists, fail, with_config
from posthorn.config import Config
from posthorn.queue.db import list_messages, migrate
from posthorn.queue.records import (
    DSN_PENDING,
    MessageState,
    QueuedMessage,
    QueuedRecipient,
    Route,
    Status,
)
from posthorn.queue.schema import QUEUE_DB_NAME
from posthorn.queue.spool import SPOOL_DIR
from posthorn.store.sqlite.db import SchemaTooNew

BUSY_TIMEOUT = 10.0


def load_queue(config: Config) -> list[QueuedMessage]:
    data_dir_exists(config)
    path = config.server.data_dir / QUEUE_DB_NAME
    if not path.exists():
        return []
    try:
        with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)) as conn:
            migrate(conn)
            return list_messages(conn, config.server.data_dir / SPOOL_DIR)
    except SchemaTooNew as e:
        fail(f"{path}: {e} (written by a newer posthorn)")
    except sqlite3.Error as e:
        fail(f"cannot read the queue {path}: {e}")


def message_state(message: QueuedMessage) -> str:
    if message.state is MessageState.HELD:
        return "held"
    rows = message.recipients
    if any(r.route is Route.LOCAL and r.status is Status.PENDING for r in rows):
        return "active"
    if any(r.status is Status.DEFERRED for r in rows):
        return "deferred"
    if any(r.route is Route.REMOTE and r.status is Status.PENDING for r in rows):
        return "remote"
    if any(r.dsn == DSN_PENDING for r in rows):
        return "bounce-pending"
    if any(r.status is Status.HELD for r in rows):
        return "held"
    return "done"


def recipient_state(r: QueuedRecipient) -> str:
    if r.status is Status.PENDING and r.route is Route.REMOTE:
        return "remote pending"
    if r.status is Status.FAILED and r.dsn == DSN_PENDING:
        return "failed, bounce pending"
    return r.status.value


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_try(message: QueuedMessage) -> float | None:
    waiting = [
        r.next_try
        for r in message.recipients
        if r.route is Route.LOCAL and r.status in (Status.PENDING, Status.DEFERRED)
    ]
    return min(waiting, default=None)


def last_error(message: QueuedMessage) -> str:
    rows = [r for r in message.recipients if r.last_error]
    if not rows:
        return "-"
    latest = max(rows, key=lambda r: (r.updated, r.id))
    return " ".join((latest.last_error or "").split())


def message_line(message: QueuedMessage) -> str:
    rcpts = ", ".join(f"{r.address} ({recipient_state(r)})" for r in message.recipients)
    fields = (
        message.queue_id,
        message_state(message),
        str(message.size),
        when(message.created),
        f"<{message.envelope.mail_from}>",
        rcpts,
        str(max((r.attempts for r in message.recipients), default=0)),
        when(next_try(message)),
        last_error(message),
    )
    return "\t".join(fields)


def message_json(message: QueuedMessage) -> dict[str, Any]:
    env = message.envelope
    return {
        "queue_id": message.queue_id,
        "state": message_state(message),
        "size": message.size,
        "created": when(message.created),
        "sender": env.mail_from,
        "ret": env.ret,
        "envid": env.envid,
        "body": env.body,
        "smtputf8": env.smtputf8,
        "auth": env.auth,
        "client_ip": env.client_ip,
        "helo": env.helo,
        "protocol": env.protocol,
        "next_try": when(next_try(message)),
        "recipients": [
            {
                "id": r.id,
                "address": r.address,
                "route": r.route.value,
                "status": r.status.value,
                "state": recipient_state(r),
                "account": r.account,
                "tag": r.tag,
                "parent": r.parent,
                "notify": None if r.notify is None else sorted(n.value for n in r.notify),
                "orcpt": r.orcpt,
                "attempts": r.attempts,
                "next_try": when(r.next_try),
                "last_error": r.last_error,
                "dsn": r.dsn,
                "updated": when(r.updated),
            }
            for r in message.recipients
        ],
    }


@click.group("queue")
def queue_group() -> None:
    """Look into the mail queue."""


@queue_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print every record as JSON.")
@with_config
def queue_list(config: Config, as_json: bool) -> None:
    """One line per queued message: id, state, size, accepted, sender, recipients (with
    their state), attempts, next try, last error."""
    messages = load_queue(config)
    if as_json:
        click.echo(json.dumps([message_json(m) for m in messages], indent=2, ensure_ascii=False))
        return
    if not messages:
        click.echo("queue is empty")
        return
    for message in messages:
        click.echo(message_line(message))
