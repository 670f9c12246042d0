"""A node's configuration: one TOML file (`--config`) decoded into msgspec structs,
with command-line options on top. A wrong key or value fails at start, naming the
file, the key's path and the reason:

    node.toml: $.bus.heartbeat_s: heartbeat_s must be positive
    node.toml: $.worker.taks: unknown key (worker keys: tasks, table, limits, ...)

`zqnode config default --role R` prints every key with its description
(nodes.configdoc), docs/config.md lists them all."""
from __future__ import annotations

import os
import pathlib
import re
import socket
import tomllib
import typing

import msgspec

from zqnode.bus.config import BusConfig
from zqnode.nodes.chain.config import ChainConfig
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.manager.config import ManagerConfig
from zqnode.nodes.poster.config import PosterConfig
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.scheduler.config import SchedulerConfig
from zqnode.nodes.worker.config import WorkerConfig


class ConfigError(ValueError):
    pass


class NodeConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    role: str                        # bus | chain | manager | scheduler | worker | poster
    name: str = ""                   # the node's id on the bus; "": ROLE-HOSTNAME (the hub: hub)
    repo: str = ""                   # its state directory; "": ~/.zqnode/NAME
    metrics_listen: str = ""         # HOST:PORT serving Prometheus /metrics; "": none
    bus: BusConfig = msgspec.field(default_factory=BusConfig)             # every node
    chain: ChainConfig = msgspec.field(default_factory=ChainConfig)       # the chain role
    poster: PosterConfig = msgspec.field(default_factory=PosterConfig)    # the poster role
    manager: ManagerConfig = msgspec.field(default_factory=ManagerConfig)         # the manager role
    scheduler: SchedulerConfig = msgspec.field(default_factory=SchedulerConfig)   # the scheduler role
    worker: WorkerConfig = msgspec.field(default_factory=WorkerConfig)            # the worker role
    sealing: SealingConfig = msgspec.field(default_factory=SealingConfig)   # the manager role (its sector state machine)

    def __post_init__(self) -> None:
        if self.metrics_listen:
            from zqnode.nodes.observe.http import ListenError, parse_listen
            try:
                parse_listen(self.metrics_listen)
            except ListenError as e:
                raise ValueError(str(e)) from None
        if not self.name:
            self.name = default_name(self.role)
        if not self.repo:
            self.repo = str(pathlib.Path("~/.zqnode").expanduser() / self.name)
        if not self.bus.key_dir and not os.environ.get("ZQNODE_KEY_DIR"):
            self.bus.key_dir = self.repo       # a node's keys live in its repo

    @property
    def identity(self) -> NodeIdentity:
        return NodeIdentity(name=self.name, repo=self.repo, bus=self.bus)


def default_name(role: str) -> str:
    """A node's name when none is given; the hub's is `hub`, so its repo (and keys) are
    ~/.zqnode/hub, where `zqnode keys init --role bus` puts them."""
    return "hub" if role == "bus" else f"{role}-{socket.gethostname()}"


def load(path: str | None, *, environ: typing.Mapping[str, str] | None = None,
         **overrides) -> NodeConfig:
    """The file's settings (if any), then non-empty `overrides` (from the command line:
    role, name, repo, metrics_listen, and `bus` = the bus address). A worker also takes
    Lotus-style resource overrides from the environment (`environ`, default os.environ)."""
    data: dict = {}
    where = path or "options"
    if path:
        try:
            data = tomllib.loads(pathlib.Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text file (TOML is UTF-8)") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
    bus_address = overrides.pop("bus", None)
    wanted, written = overrides.get("role"), data.get("role")
    if wanted and written and wanted != written:
        raise ConfigError(f"{where}: $.role: the file is for a {written} node, not a {wanted}")
    data.update({k: v for k, v in overrides.items() if v})
    if bus_address:
        if not isinstance(data.get("bus", {}), dict):
            raise ConfigError(f"{where}: $.bus: expected a table, got {type(data['bus']).__name__}")
        data.setdefault("bus", {})["address"] = bus_address
    try:
        cfg = msgspec.convert(data, NodeConfig)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{where}: {explain(str(e), data)}") from None
    check_resources(cfg, where)
    env = resource_env_from(os.environ if environ is None else environ)
    if env and cfg.role == "worker":
        _check_env(env, "environment")
        cfg.worker.resource_env = {**cfg.worker.resource_env, **env}
    return cfg


# -- errors that name the key ---------------------------------------------------------------
_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]*)`$")


def explain(message: str, data: dict | None = None) -> str:
    """msgspec's "reason - at `$.a.b`" as "$.a.b: reason", naming the key even when a
    section's check (its __post_init__) raised or a table's value is wrong (msgspec says
    `limits[...]`; `data`, what was decoded, has the key), and listing the keys a section
    has when one is unknown."""
    m = _AT.match(message)
    reason, path = m["reason"].strip(), (m["path"] or "").lstrip(".")
    if data is not None and "[...]" in path:
        path = _name_table_keys(path, data)
    cls = _struct_at(path)
    unknown = _UNKNOWN.match(reason)
    if unknown:
        key = unknown["key"]
        known = ", ".join(f.name for f in msgspec.structs.fields(cls)) if cls else ""
        where = f"{path} " if path else ""
        return (f"$.{_join(path, key)}: unknown key"
                + (f" ({where}keys: {known})" if known else ""))
    missing = _MISSING.match(reason)
    if missing:
        return f"$.{_join(path, missing['key'])}: missing"
    if cls is not None:                 # a section's own check: find the key it names
        named = [f.name for f in msgspec.structs.fields(cls)
                 if re.search(rf"(?<![\w.]){re.escape(f.name)}(?!\w)", reason)]
        if len(named) == 1:
            path = _join(path, named[0])
    reason = reason.replace("`object`", "a table")
    return f"$.{path}: {reason}" if path else reason


def _name_table_keys(path: str, data: dict) -> str:
    """`worker.limits[...]` as `worker.limits.PC1`: the first key of that table whose value
    does not convert to the table's value type."""
    head, _, rest = path.partition("[...]")
    table: object = data
    for part in filter(None, re.split(r"\.|\[(\d+)\]", head)):
        key = int(part) if part.isdigit() else part
        try:
            table = table[key]                  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return path
    value_type = _value_type_at(head)
    if not isinstance(table, dict) or value_type is None:
        return path
    for key, value in table.items():
        try:
            msgspec.convert(value, value_type)
        except msgspec.ValidationError:
            return f"{head}.{key}{rest}"
    return path


def _value_type_at(path: str):
    """The value type of the table (dict) field a `a.b` path names, or None."""
    parent, _, name = path.rpartition(".")
    cls = _struct_at(parent)
    tp = typing.get_type_hints(cls).get(name) if cls is not None else None
    return typing.get_args(tp)[-1] if typing.get_origin(tp) is dict else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _struct_at(path: str) -> type | None:
    """The struct type a `$.a.b[0].c` path leads to (None when it is not a struct)."""
    tp: object = NodeConfig
    for part in filter(None, re.split(r"\.|\[\d+\]", path)):
        hints = typing.get_type_hints(tp) if isinstance(tp, type) else {}
        if part not in hints:
            return None
        tp = hints[part]
        while typing.get_origin(tp) in (list, dict):
            tp = typing.get_args(tp)[-1]
    return tp if isinstance(tp, type) and issubclass(tp, msgspec.Struct) else None


# -- Lotus-style resource overrides ----------------------------------------------------------
SDR_VARS = ("FIL_PROOFS_USE_MULTICORE_SDR", "FIL_PROOFS_MULTICORE_SDR_PRODUCERS")


def resource_env_from(environ: typing.Mapping[str, str]) -> dict[str, str]:
    """The variables of `environ` that are Lotus resource overrides (TASK[_SIZE]_FIELD
    for a known task and field, and the multicore SDR switches)."""
    from zqnode.nodes.scheduler.resources import FIELDS
    from zqnode.nodes.wire.tasks import TASK_TYPES
    pattern = re.compile(r"(?P<task>[A-Z0-9]+?)_(?:\d+[KMG]_)?(?P<field>%s)\Z"
                         % "|".join(sorted(FIELDS, key=len, reverse=True)))
    out = {}
    for name, value in environ.items():
        m = pattern.match(name)
        if name in SDR_VARS or (m is not None and m["task"] in TASK_TYPES):
            out[name] = value
    return out


def check_resources(cfg: NodeConfig, where: str) -> None:
    """Resource overrides are checked at start (a bad value names the variable)."""
    for key, env, strict in (("$.worker.resource_env", cfg.worker.resource_env, False),
                             ("$.scheduler.resource_env", cfg.scheduler.resource_env, True)):
        _check_env(env, f"{where}: {key}", strict)


def _check_env(env: typing.Mapping[str, str], where: str, strict: bool = False) -> None:
    from zqnode.nodes.scheduler.errors import ResourceEnvError
    from zqnode.nodes.scheduler.resources import parse_resource_env
    try:
        parse_resource_env(env, strict=strict)
    except ResourceEnvError as e:
        raise ConfigError(f"{where}: {e}") from None
