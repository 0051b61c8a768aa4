"""What every `posthorn` command shares: the -c option, config loading, and clean errors.

Bad input ends with one line on stderr naming the problem and exit code 2; nothing is changed.
A failure to start the server is exit code 1. Tracebacks are for bugs only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from posthorn.config import Config, ConfigError, load_config

P = ParamSpec("P")
R = TypeVar("R")

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"posthorn: {message}", err=True)
    raise SystemExit(code)


def config_option(fn: Callable[P, R]) -> Callable[P, R]:
    """``-c/--config FILE`` on every command (also ``$POSTHORN_CONFIG``)."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="POSTHORN_CONFIG",
        default=None,
        help="Configuration file (TOML). Without one, the local default applies.",
    )(fn)


def get_config(config_path: Path | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as e:
        for problem in e.problems:
            click.echo(f"posthorn: {problem}", err=True)
        raise SystemExit(EXIT_BAD_INPUT) from None


def with_config(fn: Callable[..., R]) -> Callable[..., R]:
    """Add ``-c`` and pass the loaded `Config` as the command's first argument."""

    @functools.wraps(fn)
    def wrapper(*args: Any, config_path: Path | None = None, **kwargs: Any) -> R:
        return fn(get_config(config_path), *args, **kwargs)

    return config_option(wrapper)


def data_dir_exists(config: Config) -> None:
    if not config.server.data_dir.is_dir():
        fail(
            f"data directory {config.server.data_dir} does not exist"
            " (start `posthorn serve` once, or check -c)"
        )
