"""`zqnode keys`: CurveZMQ key pairs for nodes, and the hub's allow-list.

    zqnode keys init --role worker --name w1 [--repo DIR] [--hub-key KEY|FILE]
    zqnode keys show [--repo DIR]                      # this node's public key
    zqnode keys allow KEY|FILE --role worker [--name w1] [--repo HUBDIR]
    zqnode keys list [--repo HUBDIR]
    zqnode keys revoke KEY|FILE [--repo HUBDIR]

Each takes --json (one object; `list`: an array).

Key directories default as the bus finds them (bus.keys.key_dir): $ZQNODE_KEY_DIR, else
~/.zqnode/NAME for a node, ~/.zqnode/hub for the hub, ~/.zqnode/client for the CLI.
A running hub reloads its allow-list by itself within a second.
"""
from __future__ import annotations

import os
import pathlib

import click

from zqnode.bus import keys
from zqnode.bus.permissions import ADMIN, READER
from zqnode.nodes.cli.common import emit_json, json_option
from zqnode.nodes.config import default_name

CLIENT_ROLES = (ADMIN, READER)


def _default_name(role: str) -> str:
    """Where `zqnode start` (and the CLI, for client roles) will look for the keys."""
    return "client" if role in CLIENT_ROLES else default_name(role)


def _dir(repo: str, name: str) -> pathlib.Path:
    return pathlib.Path(repo or os.environ.get("ZQNODE_KEY_DIR", "") or f"~/.zqnode/{name}").expanduser()


def _key_arg(text: str) -> str:
    """A public key given as itself or as a file holding it (a node.pub)."""
    try:
        if os.path.isfile(text):
            return keys.read_public_key(text)
        return keys.check_public_key(text)
    except keys.KeyFileError as e:
        raise click.ClickException(str(e)) from None


hub_repo_option = click.option("--repo", default="", help="The hub's key directory "
                               "[default: $ZQNODE_KEY_DIR, else ~/.zqnode/hub].")


@click.group("keys")
def keys_group() -> None:
    """Curve key pairs for nodes and the hub's allow-list of public keys."""


@keys_group.command("init")
@click.option("--role", required=True, help="bus (the hub), a node role (worker, ...), or "
              "reader / admin for a person's CLI key.")
@click.option("--name", default="", help="Node name [default: ROLE-HOSTNAME; hub; client].")
@click.option("--repo", default="", help="Key directory [default: $ZQNODE_KEY_DIR, else ~/.zqnode/NAME].")
@click.option("--hub-key", default="", help="The hub's public key (or its node.pub file): "
              "written to hub.pub here.")
@click.option("--force", is_flag=True, help="Replace an existing key pair.")
@json_option
def init(role: str, name: str, repo: str, hub_key: str, force: bool, as_json: bool) -> None:
    """Make this node's key pair (node.key is 0600) and print its public key."""
    try:
        keys.check_role(role)
        name = keys.check_name(name or _default_name(role))
        d = _dir(repo, name)
        public = keys.init_key_pair(d, overwrite=force)
        if hub_key:
            (d / keys.HUB_FILE).write_text(_key_arg(hub_key) + "\n")
    except keys.KeyFileError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        emit_json({"key": public, "role": role, "name": name, "dir": str(d),
                   "hub_key": bool(hub_key)})
        return
    click.echo(f"public key {public} in {d / keys.PUBLIC_FILE}")
    if role == "bus":
        click.echo(f"peers need this key: copy {d / keys.PUBLIC_FILE} to their key directory as "
                   f"{keys.HUB_FILE}, or set bus.hub_key")
    else:
        pin = f" --name {name}" if role not in CLIENT_ROLES else ""
        click.echo(f"on the hub: zqnode keys allow '{public}' --role {role}{pin}")
        if not hub_key:
            click.echo(f"and put the hub's public key in {d / keys.HUB_FILE} (or set bus.hub_key)")


@keys_group.command("show")
@click.option("--repo", default="", help="Key directory [default: $ZQNODE_KEY_DIR, else ~/.zqnode/hub].")
@json_option
def show(repo: str, as_json: bool) -> None:
    """Print the public key of the key pair in a directory."""
    d = _dir(repo, "hub")
    try:
        public = keys.read_key_pair(d)[0].decode()
    except keys.KeyFileError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        emit_json({"key": public, "dir": str(d)})
        return
    click.echo(public)


# A Z85 key may begin with "-" (1 in 85): taken as KEY, not as an unknown option.
_KEY_FIRST = {"ignore_unknown_options": True}


@keys_group.command("allow", context_settings=_KEY_FIRST)
@click.argument("key")
@click.option("--role", required=True, help="The role this key acts as: a node role, reader or admin.")
@click.option("--name", default="", help="Pin the key to this node name (recommended for nodes).")
@hub_repo_option
@json_option
def allow(key: str, role: str, name: str, repo: str, as_json: bool) -> None:
    """Let KEY (or the key in file KEY) onto the bus with ROLE."""
    path = _dir(repo, "hub") / keys.ALLOW_FILE
    try:
        entry = keys.Allowed(_key_arg(key), keys.check_role(role), keys.check_name(name) if name else "")
        keys.AllowList.load(path).with_key(entry).save(path)
    except keys.KeyFileError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        emit_json({"key": entry.key, "role": role, "name": name, "allow_list": str(path)})
        return
    click.echo(f"allowed {entry.key} as {role}" + (f" (name {name})" if name else "") + f" in {path}")


@keys_group.command("list")
@hub_repo_option
@json_option
def list_keys(repo: str, as_json: bool) -> None:
    """The hub's allow-list."""
    path = _dir(repo, "hub") / keys.ALLOW_FILE
    try:
        entries = sorted(keys.AllowList.load(path).entries.values(), key=lambda e: (e.role, e.name, e.key))
    except keys.KeyFileError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        emit_json([{"key": e.key, "role": e.role, "name": e.name} for e in entries])
        return
    click.echo(f"{'KEY':<40} {'ROLE':<10} NAME")
    for e in entries:
        click.echo(f"{e.key:<40} {e.role:<10} {e.name or '-'}")


@keys_group.command("revoke", context_settings=_KEY_FIRST)
@click.argument("key")
@hub_repo_option
@json_option
def revoke(key: str, repo: str, as_json: bool) -> None:
    """Take KEY off the allow-list: its nodes are dropped and it cannot connect again."""
    path = _dir(repo, "hub") / keys.ALLOW_FILE
    try:
        k = _key_arg(key)
        keys.AllowList.load(path).without(k).save(path)
    except keys.KeyFileError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        emit_json({"key": k, "allow_list": str(path)})
        return
    click.echo(f"revoked {k} in {path}")


COMMANDS = [keys_group]
