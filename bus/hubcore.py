"""The hub's pure core: the node registry, liveness and route resolution.

No sockets and no clock: the shells (`bus.hub` over zmq, `bus.memory` in memory) feed
it what they hear with the current time and carry out what it returns. Routing a
message costs one dict lookup here; the registry only matters for hub requests, role
routes and liveness.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from zqnode.bus.codec import EVENT_SEP, Error, ErrorCode, Msg
from zqnode.bus.protocol import (ROLE_PREFIX, Goodbye, Heartbeat, HubInfo, HubInfoReply, ListNodes,
                                 NodeDown, NodeInfo, NodeList, NodeUp, Ping, Pong, Register,
                                 Registered)

Event = tuple[str, Msg]          # (topic, message) the hub publishes


def event_stamp(node_id: str, role: str) -> bytes:
    """What the hub writes after an event's topic (bus.codec: topic \0 sender \0 role
    \0 envelope). Names and roles hold no \0 (registration refuses them), so nothing a
    node writes can pass for a stamp."""
    return EVENT_SEP + node_id.encode() + EVENT_SEP + role.encode()


@dataclass
class HubSettings:
    events_in: str = ""
    events_out: str = ""
    heartbeat_s: float = 1.0
    liveness: int = 3            # beats missed before a node is declared down
    forget_after_s: float = 600.0  # a down node is listed this long, then forgotten


@dataclass
class NodeRecord:
    node_id: str
    role: str
    session: str
    capabilities: dict[str, Any]
    pid: int
    host: str
    last_heard: float
    since: float
    state: str = "up"
    user: str | None = None      # the key that registered it (curve security), else None
    stamp: bytes = field(init=False, repr=False)   # what the hub adds to its events' topic

    def __post_init__(self) -> None:
        self.stamp = event_stamp(self.node_id, self.role)

    def info(self) -> NodeInfo:
        return NodeInfo(node_id=self.node_id, role=self.role, state=self.state,
                        session=self.session, last_heard=self.last_heard, since=self.since,
                        capabilities=self.capabilities, pid=self.pid, host=self.host)


@dataclass
class HubCore:
    settings: HubSettings
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    _rr: dict[str, int] = field(default_factory=dict)   # round-robin position per role

    # -- the hot path -----------------------------------------------------------
    def heard(self, node_id: str, now: float) -> None:
        rec = self.nodes.get(node_id)
        if rec is not None:
            rec.last_heard = now

    def resolve(self, to: str) -> str | None:
        """The node id a route names. A role route picks the live nodes of the role in
        turn; a node id is passed through (the transport knows if it is connected)."""
        if not to.startswith(ROLE_PREFIX):
            return to
        role = to[len(ROLE_PREFIX):]
        live = [n for n in self.nodes.values() if n.role == role and n.state == "up"]
        if not live:
            return None
        i = self._rr.get(role, 0) % len(live)
        self._rr[role] = i + 1
        return live[i].node_id

    # -- requests addressed to the hub --------------------------------------------
    def request(self, sender: str, msg: Msg, now: float,
                user: str | None = None) -> tuple[Msg | None, list[Event]]:
        """Handle a message sent to the hub. Returns (reply or None, events). `user` is
        the caller's authenticated key (curve security): a name registered with one key
        cannot be registered with another while the hub remembers it."""
        s = self.settings
        if isinstance(msg, Register):
            return self._register(sender, msg, now, user)
        if isinstance(msg, Heartbeat):
            rec = self.nodes.get(sender)
            if rec is None:
                return Error(code=ErrorCode.NOT_REGISTERED, message="unknown node: register first"), []
            events = []
            if msg.capabilities is not None:
                rec.capabilities = msg.capabilities
            if rec.state != "up":      # heard again after being declared down
                rec.state, rec.since = "up", now
                events.append(("node.up", NodeUp(node=rec.info())))
            return None, events
        if isinstance(msg, Goodbye):
            rec = self.nodes.get(sender)
            if rec is None or rec.state != "up":
                return None, []
            rec.state, rec.since = "left", now      # not "down": it stopped on purpose
            return None, [("node.down", NodeDown(node_id=rec.node_id, role=rec.role, reason="left"))]
        if isinstance(msg, Ping):
            return Pong(node_id="hub", role="bus"), []
        if isinstance(msg, ListNodes):
            return NodeList(nodes=[r.info() for r in self.nodes.values()], now=now), []
        if isinstance(msg, HubInfo):
            return HubInfoReply(events_in=s.events_in, events_out=s.events_out,
                                heartbeat_s=s.heartbeat_s, liveness=s.liveness), []
        return Error(code=ErrorCode.UNKNOWN_KIND,
                     message=f"the hub does not handle {type(msg).__name__}"), []

    def _register(self, sender: str, msg: Register, now: float,
                  user: str | None) -> tuple[Msg, list[Event]]:
        s = self.settings
        if msg.name != sender:
            return Error(code=ErrorCode.INVALID,
                         message=f"name {msg.name!r} differs from the connection's identity {sender!r}"), []
        if "\x00" in msg.name or "\x00" in msg.role or not msg.role:
            return Error(code=ErrorCode.INVALID, message="a node's name and role hold no NUL "
                         "byte, and a role is not empty"), []
        events: list[Event] = []
        old = self.nodes.get(sender)
        if old is not None and old.user != user:
            return Error(code=ErrorCode.PERMISSION,
                         message=f"node name {sender!r} is registered with another key"), []
        if old is not None and old.state == "up" and old.session != msg.session:
            events.append(("node.down", NodeDown(node_id=sender, role=old.role, reason="restarted")))
        if old is None or old.session != msg.session or old.state != "up":
            rec = NodeRecord(node_id=sender, role=msg.role, session=msg.session,
                             capabilities=msg.capabilities, pid=msg.pid, host=msg.host,
                             last_heard=now, since=now, user=user)
            self.nodes[sender] = rec
            events.append(("node.up", NodeUp(node=rec.info())))
        else:                              # the same process registering again: refresh
            old.capabilities, old.last_heard = msg.capabilities, now
        reply = Registered(node_id=sender, events_in=s.events_in, events_out=s.events_out,
                           heartbeat_s=s.heartbeat_s, liveness=s.liveness)
        return reply, events

    def revoke(self, allowed: Callable[[str], bool], now: float) -> list[Event]:
        """Forget the nodes whose key is no longer allowed (a node that was up goes down
        with reason "revoked"); their names are free for other keys again."""
        events: list[Event] = []
        for rec in [r for r in self.nodes.values() if r.user is not None and not allowed(r.user)]:
            if rec.state == "up":
                events.append(("node.down", NodeDown(node_id=rec.node_id, role=rec.role,
                                                     reason="revoked")))
            del self.nodes[rec.node_id]
        return events

    # -- time -------------------------------------------------------------------
    def tick(self, now: float) -> tuple[list[str], list[Event]]:
        """Every heartbeat period: who to send a heartbeat, and who went silent."""
        s = self.settings
        silent_after = s.heartbeat_s * s.liveness
        beat, events, forget = [], [], []
        for rec in self.nodes.values():
            if rec.state == "up":
                if now - rec.last_heard > silent_after:
                    rec.state, rec.since = "down", now
                    events.append(("node.down", NodeDown(node_id=rec.node_id, role=rec.role,
                                                         reason="silent")))
                else:
                    beat.append(rec.node_id)
            elif now - rec.since > s.forget_after_s:
                forget.append(rec.node_id)
        for node_id in forget:
            del self.nodes[node_id]
        return beat, events
