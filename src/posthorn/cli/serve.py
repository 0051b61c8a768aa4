"""`posthorn serve` and `posthorn check-config`."""

from __future__ import annotations

import asyncio

import click

from posthorn import log
from posthorn.cli.common import EXIT_FAILED, fail, with_config
from posthorn.config import SERVICES, Config


@click.command("serve")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning"]))
@with_config
def serve_command(config: Config, log_level: str) -> None:
    """Run every configured service until SIGTERM or SIGINT."""
    # Imported here: the server pulls in the web stack, which admin commands never need.
    from posthorn.net.listen import ListenError
    from posthorn.server import StartError, serve

    log.setup(log_level)
    try:
        asyncio.run(serve(config))
    except (StartError, ListenError) as e:
        fail(str(e), EXIT_FAILED)


@click.command("check-config")
@with_config
def check_config_command(config: Config) -> None:
    """Validate the configuration: print every problem (exit 2) or a summary (exit 0)."""
    source = config.source or "(no file: local default)"
    click.echo(f"config: {source}")
    click.echo(f"hostname: {config.server.hostname}")
    click.echo(f"data_dir: {config.server.data_dir}")
    click.echo(f"domains: {', '.join(config.server.domains) or '(none)'}")
    for service in SERVICES:
        addrs = config.listen.addresses(service)
        click.echo(f"listen.{service}: {', '.join(map(str, addrs)) if addrs else 'disabled'}")
    cert = f"{config.tls.cert} / {config.tls.key}" if config.tls.cert else "self-signed"
    click.echo(f"tls: {cert}")
    click.echo(f"auth.plaintext_on_loopback: {str(config.auth.plaintext_on_loopback).lower()}")
    click.echo("config OK")
