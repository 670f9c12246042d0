"""A node's bus traffic as metrics: meters (bus.meter) the peer and the hub call.

`instrument_peer(peer)` (before the peer runs) gives it a PeerMeter: messages and bytes
by kind in and out (one dict update per message; the kind is read from the envelope's
bytes, no decoding), each call's time to its reply and each handler's time, by kind and
outcome, and the request's cause id set for the log lines its handler writes
(nodes.observe.logs). `instrument_hub(hub)` counts what the hub routes. The tables are
plain dicts keyed by the kind's bytes; the collector turns them into labelled samples
only when `/metrics` is scraped.
"""
from __future__ import annotations

from zqnode.bus.peer import Peer
from zqnode.nodes.observe import catalog as K
from zqnode.nodes.observe.logs import CAUSE

_KIND = b"\xa4kind"                # msgpack: the 4-char string "kind", a tagged body's first key
_TAP_ROLE = b"tap"
_SEARCH = 512                      # the kind is near the envelope's start (after the sender)


def kind_of(envelope: bytes) -> bytes:
    """The message kind from an envelope's bytes, without decoding it (b"?" when absent)."""
    i = envelope.find(_KIND, 0, _SEARCH)
    if i < 0:
        return b"?"
    head = envelope[i + 5]
    if 0xA0 <= head <= 0xBF:                          # fixstr
        return envelope[i + 6:i + 6 + (head & 0x1F)] or b"?"
    if head == 0xD9:                                  # str8
        return envelope[i + 7:i + 7 + envelope[i + 6]] or b"?"
    return b"?"


def _count(table: dict, frames: list, at: int) -> None:
    """One message into `table` (kind -> [messages, bytes]); `at`: the envelope's frame."""
    try:
        env = frames[at]
        kind = kind_of(env if type(env) is bytes else bytes(env))
    except (IndexError, TypeError):
        kind = b"?"
    size = 0
    for f in frames:
        size += len(f)
    entry = table.get(kind)
    if entry is None:
        table[kind] = [1, size]
    else:
        entry[0] += 1
        entry[1] += size


class Traffic:
    """A node's counts: (channel, direction) -> kind -> [messages, bytes]."""

    def __init__(self, node: str):
        self.node = node
        self.rpc_in: dict[bytes, list] = {}
        self.rpc_out: dict[bytes, list] = {}
        self.event_in: dict[bytes, list] = {}
        self.event_out: dict[bytes, list] = {}

    def tables(self):
        return (("rpc", "in", self.rpc_in), ("rpc", "out", self.rpc_out),
                ("event", "in", self.event_in), ("event", "out", self.event_out))

    def collect(self) -> None:
        for channel, direction, table in self.tables():
            for kind, (messages, size) in table.items():
                name = kind.decode(errors="replace")
                K.BUS_MESSAGES.labels(self.node, channel, direction, name).set(messages)
                K.BUS_BYTES.labels(self.node, channel, direction, name).set(size)


class PeerMeter:
    """What instrument_peer gives a peer (a bus.meter.Meter)."""

    def __init__(self, peer: Peer):
        self.peer = peer
        self.traffic = Traffic(peer.node_id)
        self.problems_seen: set[str] = set()        # reported 0 once they clear

    def rpc_in(self, batch: list) -> None:
        table = self.traffic.rpc_in
        for frames in batch:          # a tapped copy: [hub, tap, topic, from, to, envelope]
            _count(table, frames, 5 if frames[1] == _TAP_ROLE else 2)

    def events_in(self, batch: list) -> None:
        table = self.traffic.event_in
        for frames in batch:
            _count(table, frames, 0)

    def rpc_out(self, frames: list) -> None:
        _count(self.traffic.rpc_out, frames, 1)

    def event_out(self, frames: list) -> None:
        _count(self.traffic.event_out, frames, 0)

    def called(self, kind: str, outcome: str, seconds: float) -> None:
        K.RPC_SECONDS.labels(self.peer.node_id, kind, outcome).observe(seconds)

    def serving(self, request) -> None:
        if request.cause:
            CAUSE.set(request.cause)    # the handler's task: its log lines carry the cause

    def served(self, kind: str, outcome: str, seconds: float) -> None:
        K.HANDLER_SECONDS.labels(self.peer.node_id, kind, outcome).observe(seconds)


def instrument_peer(peer: Peer) -> Traffic:
    """Meter `peer`'s traffic for /metrics (see the module's docstring); once per peer."""
    if isinstance(peer.meter, PeerMeter):
        return peer.meter.traffic
    peer.meter = meter = PeerMeter(peer)
    K.REGISTRY.add_collector(_collect_peer, peer)
    return meter.traffic


def _collect_peer(peer: Peer) -> None:
    node, stats = peer.node_id, peer.stats()
    peer.meter.traffic.collect()
    K.BUS_PENDING.labels(node).set(stats["pending_calls"])
    K.BUS_HANDLERS.labels(node).set(stats["active_handlers"])
    K.BUS_SUB_QUEUE.labels(node).set(stats["subscription_queue"])
    K.BUS_DROPPED.labels(node).set(stats["events_dropped"])
    K.BUS_REGISTRATIONS.labels(node).set(stats["registrations"])
    if peer.register:
        K.NODE_INFO.labels(node, peer.role).set(1)
    problems = peer.capabilities.get("problems") or {}
    seen = peer.meter.problems_seen
    seen.update(problems)
    for key in seen:
        K.NODE_PROBLEMS.labels(node, key).set(1 if key in problems else 0)


# -- the hub ----------------------------------------------------------------------------------
class HubMeter:
    """What instrument_hub gives a hub (a bus.meter.HubMeter)."""

    def __init__(self, hub, node: str):
        self.hub, self.node = hub, node
        self.traffic = Traffic(node)

    def routed(self, msg: list) -> None:
        _count(self.traffic.rpc_in, msg, 2)


def instrument_hub(hub, node: str = "hub") -> Traffic:
    """Count what `hub` (a ZmqHub or MemoryHub, before it runs) routes, by kind."""
    hub.meter = meter = HubMeter(hub, node)
    K.REGISTRY.add_collector(_collect_hub, meter)
    return meter.traffic


def _collect_hub(meter: HubMeter) -> None:
    hub, node = meter.hub, meter.node
    meter.traffic.collect()
    K.NODE_INFO.labels(node, "bus").set(1)
    K.HUB_ROUTED.labels(node).set(hub.routed)
    K.HUB_OPEN.labels(node).set(hub.open_requests())
    if hub.core is not None:
        records = hub.core.nodes.values()
        counts = {(r.role, state): 0 for r in records for state in K.HUB_NODE_STATES}   # 0 is news too
        for rec in records:
            counts[(rec.role, rec.state)] += 1
        for (role, state), n in counts.items():
            K.HUB_NODES.labels(node, role, state).set(n)
