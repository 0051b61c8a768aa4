"""`posthorn queue`: look into the mail queue and act on it, while the server runs.

The commands open ``data_dir/queue.sqlite3`` directly, on a connection of their own, so they
work whether or not the server runs (SQLite WAL: readers never wait for the server's writes;
a change waits at most ``BUSY_TIMEOUT`` for the server's current transaction). The server's
runner notices a change through ``PRAGMA data_version`` (`posthorn.queue.db.data_version`).
Every change is one transaction of the same functions the server uses (`posthorn.queue.db`).

``queue list`` prints one line per queued message, tab-separated: queue id, state, size,
accepted (UTC), sender (``<>`` for the null reverse path), recipients with their own state
(and the remote MTA tried last, when there is one), the most attempts any recipient had, the
next retry, and the latest error. ``--json`` prints the whole record instead, every recipient
row included. ``queue show ID`` prints one message: envelope, every recipient row, and the
attempt log (``--json`` too).

``retry``, ``hold``, ``release``, ``delete`` and ``bounce`` print one line saying what they
did. A queue id that is not queued is bad input (one line, exit 2), as everywhere in the CLI.
``delete`` is the one command that touches the spool: it removes the message's file after
the deletion of its rows committed (a crash in between leaves a file the server sweeps).

Message states: ``active`` (a local recipient waits for its first try), ``deferred``
(recipients wait for a retry), ``remote`` (only recipients for the outbound queue wait),
``bounce-pending`` (only DSNs owed for failed recipients are left), ``held`` (by ``queue
hold``: nothing is tried until ``queue release``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from posthorn.cli.common import EXIT_BAD_INPUT, data_dir_exists, fail, with_config
from posthorn.config import Config
from posthorn.fsync import fsync_dir
from posthorn.queue import db as queue_db
from posthorn.queue.db import UnknownMessage, list_messages, migrate
from posthorn.queue.records import (
    DSN_PENDING,
    LoggedAttempt,
    MessageState,
    QueuedMessage,
    QueuedRecipient,
    Route,
    Status,
)
from posthorn.queue.schema import QUEUE_DB_NAME
from posthorn.queue.spool import SPOOL_DIR
from posthorn.store.sqlite.db import SchemaTooNew

T = TypeVar("T")

BUSY_TIMEOUT = 10.0


def queue_path(config: Config) -> Path:
    data_dir_exists(config)
    return config.server.data_dir / QUEUE_DB_NAME


def spool_dir(config: Config) -> Path:
    return config.server.data_dir / SPOOL_DIR


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection of our own, the schema brought up to date; errors end the command."""
    try:
        with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)) as conn:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            # The server made the file WAL; FULL makes our COMMIT as durable as its own.
            conn.execute("PRAGMA synchronous = FULL")
            migrate(conn)
            yield conn
    except SchemaTooNew as e:
        fail(f"{path}: {e} (written by a newer posthorn)")
    except sqlite3.Error as e:
        fail(f"cannot use the queue {path}: {e}")


def transaction(
    config: Config,
    queue_id: str | None,
    job: Callable[[sqlite3.Connection], T],
    *,
    write: bool = True,
) -> T:
    """Run ``job(conn)`` in one transaction: a write transaction (``BEGIN IMMEDIATE``: it
    waits for the server's current one), or a read snapshot that never blocks the server.
    ``queue_id`` names the message for the error when it is not queued (no queue database
    yet means nothing is)."""
    path = queue_path(config)
    if not path.exists():
        fail(f"no queued message {queue_id}" if queue_id else "the queue is empty")
    with connect(path) as conn:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = job(conn)
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, UnknownMessage):
                fail(str(e))
            raise
        return result


def load_queue(config: Config) -> list[QueuedMessage]:
    path = queue_path(config)
    if not path.exists():
        return []
    with connect(path) as conn:
        return list_messages(conn, spool_dir(config))


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


def status_text(r: QueuedRecipient) -> str:
    """The row's status for people."""
    if r.status is Status.PENDING and r.route is Route.REMOTE:
        return "remote pending"
    if r.status is Status.FAILED and r.dsn == DSN_PENDING:
        return "failed, bounce pending"
    return r.status.value


def recipient_state(r: QueuedRecipient) -> str:
    """`status_text`, with the remote MTA tried last when there is one (``queue list``)."""
    return status_text(r) if r.remote is None else f"{status_text(r)}, {r.remote}"


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_try(message: QueuedMessage) -> float | None:
    if message.state is MessageState.HELD:
        return None
    waiting = [
        r.next_try for r in message.recipients if r.status in (Status.PENDING, Status.DEFERRED)
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
                "state": status_text(r),
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
                "remote": r.remote,
                "delay_dsn": r.delay_dsn,
            }
            for r in message.recipients
        ],
    }


def attempt_json(a: LoggedAttempt) -> dict[str, Any]:
    return {
        "at": when(a.at),
        "recipient_id": a.recipient_id,
        "address": a.address,
        "status": a.status.value,
        "reply": a.reply,
        "remote": a.remote,
    }


def _dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def show_lines(message: QueuedMessage, log: list[LoggedAttempt]) -> Iterator[str]:
    """``queue show``: the envelope, one block per recipient row, then the attempt log."""
    env = message.envelope
    by_id = {r.id: r for r in message.recipients}
    yield f"queue id:    {message.queue_id}"
    yield f"state:       {message_state(message)}"
    yield f"sender:      <{env.mail_from}>"
    yield f"size:        {message.size}"
    yield f"accepted:    {when(message.created)}"
    yield f"dsn:         ret={_dash(env.ret)} envid={_dash(env.envid)}"
    yield f"body:        {env.body}{', smtputf8' if env.smtputf8 else ''}"
    yield (
        f"client:      {_dash(env.client_ip)} helo={_dash(env.helo)}"
        f" protocol={env.protocol} auth={_dash(env.auth)}"
    )
    for r in message.recipients:
        yield f"recipient {r.id}: {r.address}"
        parent = by_id.get(r.parent) if r.parent is not None else None
        if parent is not None:
            yield f"  via alias:  {parent.address}"
        yield f"  route:      {r.route.value}"
        yield f"  status:     {status_text(r)}"
        yield f"  attempts:   {r.attempts}"
        yield f"  next try:   {'-' if r.status.final else when(r.next_try)}"
        yield f"  last error: {' '.join((r.last_error or '-').split())}"
        yield f"  remote:     {_dash(r.remote)}"
        notify = None if r.notify is None else ",".join(sorted(n.value for n in r.notify))
        yield f"  notify:     {_dash(notify)} orcpt={_dash(r.orcpt)}"
        yield f"  dsn:        {_dash(r.dsn)} delay_dsn={_dash(r.delay_dsn)}"
    if not log:
        yield "attempts:    none yet"
        return
    yield "attempts:"
    for a in log:
        via = f" via {a.remote}" if a.remote else ""
        reply = f": {' '.join(a.reply.split())}" if a.reply else ""
        yield f"  {when(a.at)}  {a.address}  {a.status.value}{via}{reply}"


def _show(
    conn: sqlite3.Connection, spool: Path, queue_id: str
) -> tuple[QueuedMessage, list[LoggedAttempt]]:
    message = queue_db.load_message(conn, spool, queue_id)
    if message is None:
        raise UnknownMessage(queue_id)
    return message, queue_db.attempt_log(conn, queue_id)


def _remove_spool_file(spool: Path, name: str) -> None:
    """After the rows' deletion committed (a queue row exists only while its file does)."""
    try:
        (spool / name).unlink(missing_ok=True)
        fsync_dir(spool)
    except OSError as e:
        # The message is out of the queue either way; the server's next start sweeps it.
        click.echo(f"posthorn: could not remove the spool file {spool / name}: {e}", err=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@click.group("queue")
def queue_group() -> None:
    """Look into the mail queue and act on it (works while the server runs)."""


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


@queue_group.command("show")
@click.argument("queue_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@with_config
def queue_show(config: Config, queue_id: str, as_json: bool) -> None:
    """One message: envelope, every recipient (route, status, attempts, next try, last error,
    remote MTA, DSN), and the attempt log."""
    spool = spool_dir(config)
    message, log = transaction(
        config, queue_id, lambda conn: _show(conn, spool, queue_id), write=False
    )
    if as_json:
        record = message_json(message) | {"attempts": [attempt_json(a) for a in log]}
        click.echo(json.dumps(record, indent=2, ensure_ascii=False))
        return
    for line in show_lines(message, log):
        click.echo(line)


@queue_group.command("retry")
@click.argument("queue_id", required=False)
@click.option("--all", "every", is_flag=True, help="Every queued message.")
@with_config
def queue_retry(config: Config, queue_id: str | None, every: bool) -> None:
    """Try the waiting recipients of ID (or of every message) now. A held message stays
    held."""
    if every == (queue_id is not None):
        fail("give a queue ID or --all (not both)", EXIT_BAD_INPUT)
    now = datetime.now(UTC).timestamp()
    if queue_id is None and not queue_path(config).exists():
        click.echo("nothing to retry: the queue is empty")
        return
    done = transaction(config, queue_id, lambda conn: queue_db.retry(conn, queue_id, now))
    held = f" ({_plural(done.held, 'message')} held: release to deliver)" if done.held else ""
    if queue_id is None:
        click.echo(
            f"{_plural(done.recipients, 'recipient')} of {_plural(done.messages, 'message')}"
            f" due now{held}"
        )
    elif done.recipients == 0:
        click.echo(f"{queue_id}: no recipient waiting for a retry")
    else:
        held = " (held: `posthorn queue release` to deliver)" if done.held else ""
        click.echo(f"{queue_id}: {_plural(done.recipients, 'recipient')} due now{held}")


@queue_group.command("hold")
@click.argument("queue_id")
@with_config
def queue_hold(config: Config, queue_id: str) -> None:
    """Stop delivering ID until `queue release` (a delivery already running finishes)."""
    changed = transaction(config, queue_id, lambda conn: queue_db.hold(conn, queue_id))
    click.echo(f"{queue_id}: held" if changed else f"{queue_id}: already held")


@queue_group.command("release")
@click.argument("queue_id")
@with_config
def queue_release(config: Config, queue_id: str) -> None:
    """Deliver a held message again (its recipients keep their retry times)."""
    changed = transaction(config, queue_id, lambda conn: queue_db.release(conn, queue_id))
    click.echo(f"{queue_id}: released" if changed else f"{queue_id}: was not held")


@queue_group.command("delete")
@click.argument("queue_id")
@with_config
def queue_delete(config: Config, queue_id: str) -> None:
    """Remove ID from the queue without delivering it or telling the sender."""
    name = transaction(config, queue_id, lambda conn: queue_db.delete(conn, queue_id))
    _remove_spool_file(spool_dir(config), name)
    click.echo(f"{queue_id}: deleted")


@queue_group.command("bounce")
@click.argument("queue_id")
@with_config
def queue_bounce(config: Config, queue_id: str) -> None:
    """Fail every waiting recipient of ID now; the sender gets a DSN where one is owed."""
    now = datetime.now(UTC).timestamp()
    spool = spool_dir(config)
    done = transaction(config, queue_id, lambda conn: queue_db.bounce(conn, spool, queue_id, now))
    if done.removed is not None:
        _remove_spool_file(spool, done.removed)
    if not done.rows:
        click.echo(f"{queue_id}: no recipient waiting; nothing bounced")
        return
    owed = sum(1 for r in done.rows if r.dsn == DSN_PENDING)
    dsn = f"DSN pending for {owed}" if owed else "no DSN owed"
    gone = "; removed from the queue" if done.removed is not None else ""
    click.echo(f"{queue_id}: bounced {_plural(len(done.rows), 'recipient')} ({dsn}){gone}")
