"""A node's configuration: one TOML file (`--config`) decoded into msgspec structs,
with command-line options on top. A wrong key or value fails at start, naming the
file and the key."""
from __future__ import annotations

import os
import pathlib
import socket
import tomllib

import msgspec

from bus.config import BusConfig
from nodes.chain.config import ChainConfig
from nodes.manager.config import ManagerConfig
from nodes.poster.config import PosterConfig
from nodes.sealing.config import SealingConfig
from nodes.scheduler.config import SchedulerConfig
from nodes.worker.config import WorkerConfig


class ConfigError(ValueError):
    pass


class NodeConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    role: str
    name: str = ""                   # default: ROLE-HOSTNAME
    repo: str = ""                   # default: ~/.zqnode/NAME
    bus: BusConfig = msgspec.field(default_factory=BusConfig)
    chain: ChainConfig = msgspec.field(default_factory=ChainConfig)   # role chain
    poster: PosterConfig = msgspec.field(default_factory=PosterConfig)   # role poster
    manager: ManagerConfig = msgspec.field(default_factory=ManagerConfig)         # role manager
    scheduler: SchedulerConfig = msgspec.field(default_factory=SchedulerConfig)   # role scheduler
    worker: WorkerConfig = msgspec.field(default_factory=WorkerConfig)            # role worker
    sealing: SealingConfig = msgspec.field(default_factory=SealingConfig)   # role manager (the sector state machine)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{self.role}-{socket.gethostname()}"
        if not self.repo:
            self.repo = str(pathlib.Path("~/.zqnode").expanduser() / self.name)
        if not self.bus.key_dir and not os.environ.get("ZQNODE_KEY_DIR"):
            self.bus.key_dir = self.repo       # a node's keys live in its repo


def load(path: str | None, **overrides) -> NodeConfig:
    """The file's settings (if any), then non-empty `overrides` (from the command line:
    role, name, repo, and `bus` = the bus address)."""
    data: dict = {}
    if path:
        try:
            data = tomllib.loads(pathlib.Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
    bus_address = overrides.pop("bus", None)
    data.update({k: v for k, v in overrides.items() if v})
    if bus_address:
        data.setdefault("bus", {})["address"] = bus_address
    try:
        return msgspec.convert(data, NodeConfig)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{path or 'options'}: {e}") from None
