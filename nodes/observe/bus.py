"""Counting a node's bus traffic without touching the bus's code.

`instrument_peer(peer)` (before the peer runs) wraps, on that one Peer object:

- the batch callbacks its link calls with what arrives (RPC and events): messages and
  bytes by kind, counted with one dict update per message (the kind is read from the
  envelope's bytes, no decoding);
- its link's `send` and `publish` (wrapped at its first call, once the link exists):
  the same for what goes out;
- `call_with_buffers` (which `call` uses): the time to the reply, by kind and outcome;
- every handler: its time by kind and outcome, and the request's cause id set for the
  log lines the handler writes (nodes.observe.logs).

`instrument_hub(hub)` counts what the hub routes, per batch of its socket (or per
message for the in-memory hub). The tables are plain dicts keyed by the kind's bytes;
the collector turns them into labelled samples only when `/metrics` is scraped.
"""
from __future__ import annotations

import time
from typing import Callable

from bus.codec import RemoteError
from bus.peer import CallTimeout, Peer, Refused
from nodes.observe import catalog as K
from nodes.observe.logs import CAUSE

_KIND = b"\xa4kind"                # msgpack: the 4-char string "kind", a tagged body's first key
_TAP = b"bus.rpc."
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


def _events_in(table: dict, batch: list) -> None:
    for frames in batch:
        topic = frames[0]
        _count(table, frames, 3 if topic[:8] == _TAP else 1)


class _PeerProbe:
    """What instrument_peer attaches to a peer (kept alive by the peer's wrappers)."""

    def __init__(self, peer: Peer):
        self.peer = peer
        self.traffic = Traffic(peer.node_id)
        self.link = None

    def watch_link(self) -> None:
        link = self.peer.link
        if link is None or link is self.link:
            return
        self.link = link
        send, publish = link.send, link.publish
        rpc_out, event_out = self.traffic.rpc_out, self.traffic.event_out

        async def counted_send(frames: list) -> None:
            _count(rpc_out, frames, 1)
            await send(frames)

        async def counted_publish(frames: list) -> None:
            _count(event_out, frames, 1)
            await publish(frames)

        link.send, link.publish = counted_send, counted_publish


def instrument_peer(peer: Peer) -> Traffic:
    """Count `peer`'s traffic, time its calls and handlers (see the module's docstring).
    Call it once, after the handlers are registered and before the peer runs."""
    if getattr(peer, "_observed", None) is not None:
        return peer._observed.traffic
    probe = _PeerProbe(peer)
    peer._observed = probe
    node, traffic = peer.node_id, probe.traffic

    on_rpc, on_events = peer._on_rpc_batch, peer._on_events_batch
    rpc_in, event_in = traffic.rpc_in, traffic.event_in

    def counted_rpc(batch: list) -> None:
        for frames in batch:
            _count(rpc_in, frames, 2)
        on_rpc(batch)

    def counted_events(batch: list) -> None:
        _events_in(event_in, batch)
        on_events(batch)

    peer._on_rpc_batch, peer._on_events_batch = counted_rpc, counted_events

    call = peer.call_with_buffers

    async def timed_call(to, msg, *, buffers=(), timeout=None, cause=""):
        probe.watch_link()
        started = time.perf_counter()
        try:
            reply = await call(to, msg, buffers=buffers, timeout=timeout, cause=cause)
        except CallTimeout:
            _observe_call(node, msg, "timeout", started)
            raise
        except RemoteError:
            _observe_call(node, msg, "error", started)
            raise
        _observe_call(node, msg, "ok", started)     # (a cancelled call has no outcome)
        return reply

    peer.call_with_buffers = timed_call

    publish = peer.publish

    async def watched_publish(topic, msg, *, buffers=(), cause=""):
        probe.watch_link()
        await publish(topic, msg, buffers=buffers, cause=cause)

    peer.publish = watched_publish
    for kind, handler in list(peer._handlers.items()):
        peer._handlers[kind] = _timed_handler(node, kind.__name__, handler)
    K.REGISTRY.add_collector(_collect_peer, probe)
    return traffic


def _observe_call(node: str, msg, outcome: str, started: float) -> None:
    K.RPC_SECONDS.labels(node, type(msg).__name__, outcome).observe(time.perf_counter() - started)


def _timed_handler(node: str, kind: str, handler: Callable):
    async def timed(req):
        if req.cause:
            CAUSE.set(req.cause)       # this request's task: its log lines carry the cause
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await handler(req)
        except Refused:
            outcome = "refused"
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            K.HANDLER_SECONDS.labels(node, kind, outcome).observe(time.perf_counter() - started)
    return timed


def _collect_peer(probe: _PeerProbe) -> None:
    peer = probe.peer
    node = peer.node_id
    probe.traffic.collect()
    K.BUS_PENDING.labels(node).set(len(peer._pending))
    K.BUS_HANDLERS.labels(node).set(peer._active_handlers)
    K.BUS_SUB_QUEUE.labels(node).set(sum(len(s._queue) for s in peer._subs))
    K.BUS_DROPPED.labels(node).set(sum(s.dropped for s in peer._subs))
    K.BUS_REGISTRATIONS.labels(node).set(peer.registrations)
    if peer.register:
        K.NODE_INFO.labels(node, peer.role).set(1)


# -- the hub ----------------------------------------------------------------------------------
class _HubProbe:
    def __init__(self, hub, node: str):
        self.hub, self.node = hub, node
        self.traffic = Traffic(node)


def instrument_hub(hub, node: str = "hub") -> Traffic:
    """Count what `hub` (a ZmqHub or MemoryHub, before it runs) routes, by kind."""
    probe = hub._observed = _HubProbe(hub, node)
    table = probe.traffic.rpc_in
    if hasattr(hub, "_route_batch"):                  # ZmqHub: its socket's batches
        plain, secure = hub._route_batch, hub._route_batch_secure

        def counted(batch: list) -> None:
            for msg in batch:
                _count(table, msg, 2)
            plain(batch)

        def counted_secure(batch: list) -> None:
            for _, msg in batch:
                _count(table, msg, 2)
            secure(batch)

        hub._route_batch, hub._route_batch_secure = counted, counted_secure
    else:                                             # MemoryHub: links call route directly
        route = hub.route

        def counted_route(msg: list, user=None) -> None:
            _count(table, msg, 2)
            route(msg, user)

        hub.route = counted_route
    K.REGISTRY.add_collector(_collect_hub, probe)
    return probe.traffic


def _collect_hub(probe: _HubProbe) -> None:
    hub, node = probe.hub, probe.node
    probe.traffic.collect()
    K.NODE_INFO.labels(node, "bus").set(1)
    K.HUB_ROUTED.labels(node).set(hub.routed)
    K.HUB_OPEN.labels(node).set(sum(len(v) for v in hub._open.values()))
    if hub.core is not None:
        counts: dict[tuple[str, str], int] = {}
        for rec in hub.core.nodes.values():
            counts[(rec.role, rec.state)] = counts.get((rec.role, rec.state), 0) + 1
        for (role, state), n in counts.items():
            K.HUB_NODES.labels(node, role, state).set(n)
