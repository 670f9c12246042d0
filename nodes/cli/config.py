"""`zqnode config ...`: a node's configuration file.

    zqnode config default --role worker > worker.toml   every key, its default, what it does
    zqnode config check worker.toml [--role worker]     as a node would load it at start
    zqnode config check worker.toml --json              the configuration in effect
"""
from __future__ import annotations

import click

from zqnode.nodes.cli.common import emit_json, json_option, plain
from zqnode.nodes.config import ConfigError, load
from zqnode.nodes.configdoc import ROLE_SECTIONS, default_toml


@click.group("config")
def config_group() -> None:
    """A node's TOML configuration: its defaults, and checking a file."""


@config_group.command("default")
@click.option("--role", required=True, type=click.Choice(list(ROLE_SECTIONS)))
def default(role: str) -> None:
    """Print a role's default configuration, each key with its description."""
    click.echo(default_toml(role), nl=False)


@config_group.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--role", default="", help="The role [default: the file's `role`].")
@json_option
def check(path: str, role: str, as_json: bool) -> None:
    """Load a file as `zqnode start` would; a wrong key or value is named."""
    try:
        cfg = load(path, role=role)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    if cfg.role not in ROLE_SECTIONS:
        raise click.ClickException(f"{path}: $.role: unknown role {cfg.role!r} "
                                   f"(roles: {', '.join(ROLE_SECTIONS)})")
    if as_json:
        shown = plain(cfg)
        for section in {"chain", "poster", "manager", "scheduler", "worker", "sealing"} - set(
                ROLE_SECTIONS[cfg.role]):
            shown.pop(section, None)           # sections this role does not read
        emit_json(shown)
        return
    click.echo(f"{path}: ok ({cfg.role} {cfg.name}, repo {cfg.repo}, bus {cfg.bus.address})")


COMMANDS = [config_group]
