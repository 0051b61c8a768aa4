"""`posthorn domain|user|alias`: the directory, administered from the shell.

Each command is one short transaction on the data directory's databases, so it works while the
server runs. Errors from the directory (`DirectoryError`) already name the problem; they become
one line on stderr and exit 2, with nothing changed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from posthorn.cli.common import fail, with_config
from posthorn.config import Config
from posthorn.directory import (
    DirectoryDB,
    DirectoryError,
    format_size,
    generate_password,
    parse_size,
)
from posthorn.store.sqlite import SQLiteMailStore


@contextmanager
def directory(config: Config) -> Iterator[DirectoryDB]:
    """The directory database, with its errors turned into clean exits."""
    try:
        db = DirectoryDB.in_data_dir(config.server.data_dir)
    except OSError as e:
        fail(f"cannot open the directory in {config.server.data_dir}: {e.strerror or e}")
    try:
        yield db
    except DirectoryError as e:
        fail(str(e))
    finally:
        db.close()


def read_password_stdin() -> str:
    """One line from stdin; the trailing newline is not part of the password."""
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        fail("empty password on standard input")
    return password


def quota_arg(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_size(text)
    except DirectoryError as e:
        fail(f"--quota: {e}")


async def _store_account(config: Config, address: str, *, delete: bool) -> None:
    store = SQLiteMailStore(config.server.data_dir)
    await store.open()
    try:
        if delete:
            await store.delete_account(address)
        else:
            await store.ensure_account(address)
    finally:
        await store.close()


# --- domain ---------------------------------------------------------------------------------


@click.group("domain")
def domain_group() -> None:
    """Mail domains this server receives for."""


@domain_group.command("add")
@click.argument("name")
@with_config
def domain_add(config: Config, name: str) -> None:
    with directory(config) as db:
        domain = db.add_domain(name)
    click.echo(f"domain {domain.unicode} added")


@domain_group.command("list")
@with_config
def domain_list(config: Config) -> None:
    with directory(config) as db:
        for domain in db.list_domains():
            accounts, aliases = db.domain_usage(domain.name)
            click.echo(f"{domain.unicode}\taccounts={accounts}\taliases={aliases}")


@domain_group.command("del")
@click.argument("name")
@with_config
def domain_del(config: Config, name: str) -> None:
    with directory(config) as db:
        db.delete_domain(name)
    click.echo(f"domain {name} deleted")


# --- user -----------------------------------------------------------------------------------


@click.group("user")
def user_group() -> None:
    """Accounts: an address with a password, a quota and mailboxes."""


@user_group.command("add")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--quota", default=None, help="Storage quota: 500M, 2G, bytes, or unlimited.")
@click.option("--admin", is_flag=True, help="Let the account use the web admin pages.")
@with_config
def user_add(
    config: Config, address: str, password_stdin: bool, quota: str | None, admin: bool
) -> None:
    """Create an account. Without --password-stdin a strong password is generated and printed."""
    password = read_password_stdin() if password_stdin else generate_password()
    quota_bytes = quota_arg(quota)
    with directory(config) as db:
        account = db.add_account(address, password, quota_bytes=quota_bytes, admin=admin)
    asyncio.run(_store_account(config, account.address, delete=False))
    role = ", admin" if account.admin else ""
    click.echo(f"account {account.address} added (quota {format_size(account.quota_bytes)}{role})")
    if not password_stdin:
        click.echo(f"password: {password}")


@user_group.command("list")
@with_config
def user_list(config: Config) -> None:
    with directory(config) as db:
        for account in db.list_accounts():
            state = "enabled" if account.enabled else "disabled"
            # A fourth column only for admins: the three-column lines stay as scripts know them.
            role = "\tadmin" if account.admin else ""
            click.echo(
                f"{account.address}\tquota={format_size(account.quota_bytes)}\t{state}{role}"
            )


@user_group.command("del")
@click.argument("address")
@with_config
def user_del(config: Config, address: str) -> None:
    """Delete the account and all its mail."""
    with directory(config) as db:
        key = db.get_account(address).address
        db.delete_account(key)
    asyncio.run(_store_account(config, key, delete=True))
    click.echo(f"account {key} deleted")


@user_group.command("passwd")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_config
def user_passwd(config: Config, address: str, password_stdin: bool) -> None:
    """Set a new password (generated and printed unless --password-stdin)."""
    with directory(config) as db:
        key = db.get_account(address).address
        password = read_password_stdin() if password_stdin else generate_password()
        db.set_password(key, password)
    click.echo(f"password of {key} changed")
    if not password_stdin:
        click.echo(f"password: {password}")


@user_group.command("quota")
@click.argument("address")
@click.argument("size")
@with_config
def user_quota(config: Config, address: str, size: str) -> None:
    """Set the storage quota: 500M, 2G, a number of bytes, or unlimited."""
    with directory(config) as db:
        db.set_quota(address, parse_size(size))
        account = db.get_account(address)
    click.echo(f"quota of {account.address} is {format_size(account.quota_bytes)}")


@user_group.command("enable")
@click.argument("address")
@with_config
def user_enable(config: Config, address: str) -> None:
    with directory(config) as db:
        db.set_enabled(address, True)
    click.echo(f"account {address} enabled")


@user_group.command("disable")
@click.argument("address")
@with_config
def user_disable(config: Config, address: str) -> None:
    """Refuse logins (mail is still accepted and stored)."""
    with directory(config) as db:
        db.set_enabled(address, False)
    click.echo(f"account {address} disabled")


@user_group.command("admin")
@click.argument("address")
@click.argument("state", type=click.Choice(["on", "off"]))
@with_config
def user_admin(config: Config, address: str, state: str) -> None:
    """Grant (on) or take away (off) the web admin pages."""
    with directory(config) as db:
        db.set_admin(address, state == "on")
        key = db.get_account(address).address
    click.echo(f"account {key} is {'an admin' if state == 'on' else 'not an admin'}")


# --- alias ----------------------------------------------------------------------------------


@click.group("alias")
def alias_group() -> None:
    """Aliases: an address (or @domain, the catch-all) delivered to other addresses."""


@alias_group.command("add")
@click.argument("source")
@click.argument("targets", nargs=-1, required=True)
@with_config
def alias_add(config: Config, source: str, targets: tuple[str, ...]) -> None:
    with directory(config) as db:
        alias = db.add_alias(source, targets)
    click.echo(f"alias {alias.source} -> {', '.join(alias.targets)}")


@alias_group.command("list")
@with_config
def alias_list(config: Config) -> None:
    with directory(config) as db:
        for alias in db.list_aliases():
            click.echo(f"{alias.source}\t{', '.join(alias.targets)}")


@alias_group.command("del")
@click.argument("source")
@with_config
def alias_del(config: Config, source: str) -> None:
    with directory(config) as db:
        db.delete_alias(source)
    click.echo(f"alias {source} deleted")
