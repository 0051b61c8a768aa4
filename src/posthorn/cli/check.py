"""`posthorn check`: verify the store and the queue, read-only, while the server runs or not.

Prints one line per finding (``problem: WHERE: WHAT (PATH)``; ``note: …`` for harmless
leftovers) and a summary line; ``--json`` prints one object instead. Exit status: 0 when no
problem was found (notes allowed), 1 when there was at least one, 2 for bad input (no data
directory, a bad config file).

What it checks, and why each matters, is in `posthorn.store.sqlite.check` and
`posthorn.queue.check`; the order here is cheapest-first so a damaged database is reported
even when the later row-by-row checks cannot read it.
"""

from __future__ import annotations

import json

import click

from posthorn.cli.common import EXIT_FAILED, data_dir_exists, with_config
from posthorn.config import Config
from posthorn.directory.db import DIRECTORY_FILENAME
from posthorn.queue.check import check_queue
from posthorn.queue.schema import QUEUE_DB_NAME
from posthorn.store.sqlite.check import PROBLEM, Finding, check_database, check_store
from posthorn.store.sqlite.store import BLOB_DIR, DB_NAME


@click.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--quick", is_flag=True, help="SQLite quick_check instead of integrity_check (faster)."
)
@click.option("--deep", is_flag=True, help="Also parse every message file (slow).")
@with_config
def check_command(config: Config, as_json: bool, quick: bool, deep: bool) -> None:
    """Verify the message store and the mail queue; say exactly what is wrong."""
    data_dir_exists(config)
    data_dir = config.server.data_dir
    findings: list[Finding] = []
    for name in (DB_NAME, QUEUE_DB_NAME, DIRECTORY_FILENAME):
        findings += check_database(data_dir / name, quick=quick)
    from posthorn.mail.mime import parse_message

    store = check_store(data_dir, DB_NAME, BLOB_DIR, deep=deep, parse=parse_message)
    queue = check_queue(data_dir)
    findings += store.findings + queue.findings
    problems = [f for f in findings if f.severity == PROBLEM]
    if as_json:
        doc = {
            "ok": not problems,
            "messages": store.messages,
            "blobs": store.blobs,
            "queued": queue.queued,
            "findings": [f.to_json() for f in findings],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        for f in findings:
            click.echo(f.line())
        verdict = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        click.echo(
            f"checked {store.messages} messages, {store.blobs} message files,"
            f" {queue.queued} queued: {verdict if problems else 'ok'}"
        )
    if problems:
        raise SystemExit(EXIT_FAILED)
