"""Message kinds the bus itself speaks: registration, liveness, introspection."""
from __future__ import annotations

from typing import Any

from zqnode.bus.codec import Msg

HUB = "hub"                      # the hub's own route name
ROLE_PREFIX = "@"                # route "@worker" = any live node of role worker
HUB_TOPICS = ("node.", "bus.")   # events only the hub publishes (it drops them from nodes)


class Register(Msg):
    role: str                    # the node's role (chain, manager, scheduler, worker, poster)
    name: str                    # the id others route to; without keys, the connection's routing id
    session: str                 # new per process start: a new one means "restarted"
    capabilities: dict[str, Any] = {}   # what the node offers, shown by `zqnode status`
    pid: int = 0                 # shown by `zqnode status`
    host: str = ""               # shown by `zqnode status`


class Registered(Msg):
    node_id: str
    events_in: str               # where the node's PUB connects (the hub's XSUB)
    events_out: str              # where the node's SUB connects (the hub's XPUB)
    heartbeat_s: float           # send the hub a Heartbeat this often
    liveness: int                # heartbeats missed before the hub counts the node down


class Heartbeat(Msg):
    """One-way, both directions. A node may refresh its capabilities with it."""
    capabilities: dict[str, Any] | None = None


class Goodbye(Msg):
    """A node leaving cleanly; the hub marks it down at once."""


class Ping(Msg):
    pass


class Pong(Msg):
    node_id: str
    role: str


class ListNodes(Msg):
    pass


class NodeInfo(Msg):
    node_id: str
    role: str
    state: str                   # "up" | "down" (silent) | "left" (said Goodbye)
    session: str
    last_heard: float            # hub clock, seconds
    since: float                 # when it entered its state, hub clock
    capabilities: dict[str, Any] = {}
    pid: int = 0
    host: str = ""


class NodeList(Msg):
    nodes: list[NodeInfo]
    now: float                   # hub clock when listed, to turn last_heard into an age


class HubInfo(Msg):
    pass


class Tap(Msg):
    """Ask the hub for a copy of every routed request and reply for `seconds` (admin
    keys only; ask again before it runs out). Copies come on the RPC socket as
    [hub, "tap", bus.rpc.KIND, from, to, envelope]."""
    seconds: float = 10.0


class Tapping(Msg):
    seconds: float               # the copies stop this long from now unless asked again


class HubInfoReply(Msg):
    events_in: str
    events_out: str
    heartbeat_s: float
    liveness: int


class NodeUp(Msg):
    """Event `node.up`: a node registered (or came back)."""
    node: NodeInfo


class NodeDown(Msg):
    """Event `node.down`: a node went silent, left, restarted (then a node.up follows), or
    its key was taken off the allow-list."""
    node_id: str
    role: str
    reason: str                  # "silent" | "left" | "restarted" | "revoked"
