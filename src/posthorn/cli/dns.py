"""`posthorn dns records DOMAIN`: the DNS records to publish for a domain, as zone-file lines.

The records come from `posthorn.web.dns_records` (the web admin shows the same ones); the
domain must be one of ours, so a typo is caught here rather than published. Each record is
preceded by a comment line saying why it is needed, so the output can be pasted into a zone
file as it is.
"""

from __future__ import annotations

import click

from posthorn.cli.admin import directory
from posthorn.cli.common import with_config
from posthorn.config import Config
from posthorn.web.dns_records import hint_addresses, records_for


@click.group("dns")
def dns_group() -> None:
    """What to publish in DNS for the domains this server receives for."""


@dns_group.command("records")
@click.argument("domain")
@with_config
def dns_records(config: Config, domain: str) -> None:
    """Print the records to publish for DOMAIN (MX, SPF, the hostname's address when known)."""
    with directory(config) as db:
        name = db.get_domain(domain).name
    hosts = [listener.host for listener in config.listen.smtp]
    for record in records_for(name, config.server.hostname, hint_addresses(hosts)):
        click.echo(f"; {record.why}")
        click.echo(record.zone_line())
