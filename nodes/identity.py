"""Who a node is, apart from its role's own settings: what every role's shell takes
besides its section of the configuration (so no role needs the whole `NodeConfig`)."""
from __future__ import annotations

import msgspec

from zqnode.bus.config import BusConfig


class NodeIdentity(msgspec.Struct, frozen=True, kw_only=True):
    name: str                # the node's id on the bus
    repo: str                # its state directory
    bus: BusConfig           # how it reaches the hub, with which keys
