"""The `posthorn` command: serve, check-config, check, and the admin commands.

Admin commands open the data directory's databases directly, so they work whether or not the
server is running (SQLite in WAL mode lets both at once).
"""

from __future__ import annotations

import click

from posthorn import __version__
from posthorn.cli.admin import alias_group, domain_group, user_group
from posthorn.cli.check import check_command
from posthorn.cli.dns import dns_group
from posthorn.cli.mail import mail_group
from posthorn.cli.queue import queue_group
from posthorn.cli.serve import check_config_command, serve_command
from posthorn.cli.transfer import export_group, import_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="posthorn")
def cli() -> None:
    """posthorn: the whole post office in one package."""


cli.add_command(serve_command)
cli.add_command(check_config_command)
cli.add_command(check_command)
cli.add_command(domain_group)
cli.add_command(user_group)
cli.add_command(alias_group)
cli.add_command(dns_group)
cli.add_command(mail_group)
cli.add_command(queue_group)
cli.add_command(import_group)
cli.add_command(export_group)


def main() -> None:
    cli(prog_name="posthorn")
