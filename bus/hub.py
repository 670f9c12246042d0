"""The bus hub (role `bus`): RPC routing, the registry and liveness of
`bus.hubcore`, node.up/node.down events, event forwarding, and a tap of routed RPC.

`Router` is the routing logic; `ZmqHub` runs it over a ZeroMQ ROUTER and an XSUB/XPUB
pair, and `bus.memory.MemoryHub` runs it in memory for simulations. The hub is
stateless: restarting it costs the peers one re-registration, never data.

Who sent a message is the hub's word, never the sender's. With curve security
(`bus.auth`), every connection carries the key that passed the handshake; the hub
assigns connection ids itself (nodes set no zmq identity, and ROUTER_HANDOVER is off,
so no connection can take over another's), binds a node name to a connection when
that key registers it, and stamps each message it delivers with the sender's name and
the role of its key. Events are stamped too: the hub forwards an event only when the
node its envelope names is registered with the key the event came with (its
connection's ZAP User-Id), with that node's name and role (bus.codec's event frames). A reply is delivered only when it comes from the node its request was
routed to. Without security, the connection id is the node's name and the stamped
role is the one it registered with (an unregistered client: admin).
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import pathlib

import trio
import zmq

from zqnode.bus import keys
from zqnode.bus.address import event_endpoints, split
from zqnode.bus.auth import DOMAIN_EVENTS_IN, DOMAIN_EVENTS_OUT, DOMAIN_RPC, Authenticator
from zqnode.bus.codec import (EVENT_SEP, BadMessage, BodyDecoder, Envelope, Error, ErrorCode, Msg,
                              decode_envelope, encode_envelope, event_frames, peek_kind)
from zqnode.bus.config import BusConfig, configure
from zqnode.bus.hubcore import HubCore, HubSettings, event_stamp
from zqnode.bus.keys import AllowList
from zqnode.bus.permissions import ADMIN, READER
from zqnode.bus.protocol import (HUB, HUB_TOPICS, ROLE_PREFIX, Goodbye, Heartbeat, HubInfo, ListNodes, Ping,
                                 Register, Registered, Tap, Tapping)
from zqnode.bus.ratelog import RateLimitedLog
from zqnode.bus.zsock import ZSocket

log = logging.getLogger("zqnode.bus.hub")

HUB_B = HUB.encode()
HUB_ROLE_B = b"bus"
TAP_ROLE_B = b"tap"              # the role frame of tapped copies (only the hub writes it)
TAP_PREFIX = "bus.rpc."
CLIENT_PREFIX = "~"              # curve: "~<key id>.<hex connection id>" names an unregistered client
MAX_CACHED_CONNECTIONS = 8192    # the per-connection stamp cache is dropped beyond this
MAX_TAPS = 16                    # connections tapping at once
REPLY_WINDOW_S = 600.0           # a request's reply is taken this long after it was routed
_HUB_TOPICS_B = tuple(t.encode() for t in HUB_TOPICS)
_HUB_STAMP = event_stamp(HUB, HUB_ROLE_B.decode())
_hub_requests = BodyDecoder([Register, Heartbeat, Goodbye, Ping, ListNodes, HubInfo, Tap])


class Busy(Exception):
    """The target's queue is full."""


class NoRoute(Exception):
    """No such peer is connected."""


class _Conn:
    """One connection as the hub stamps it: sender name and role, and the key (curve).
    `unregistered_node`: a node's key that has not registered on this connection (yet,
    or again after a hub restart): it may talk only to the hub until it does."""
    __slots__ = ("name", "name_b", "role", "role_b", "user", "unregistered_node")

    def __init__(self, name: str, role: str, user: str | None, unregistered_node: bool = False):
        self.name, self.name_b, self.role, self.role_b = name, name.encode(), role, role.encode()
        self.user, self.unregistered_node = user, unregistered_node


class Router:
    """What a hub does with each message, whatever carries it. Subclasses provide
    `deliver(identity, frames)` (raising Busy or NoRoute) and `emit(frames)` (events)."""

    def __init__(self, cfg: BusConfig):
        self.cfg = cfg
        self.core: HubCore | None = None
        self._seq: dict[str, int] = {}
        self._taps: dict[bytes, float] = {}   # connection -> when its tap runs out
        self.routed = 0                       # messages routed, for tests and metrics
        self.forwarded = 0                    # events forwarded, for tests
        self.refused_events = 0               # events dropped for their sender or topic
        self.meter = None                     # a bus.meter.HubMeter, set before run
        self.allow: AllowList | None = None   # set: curve security, names bound to keys
        self._conns: dict[bytes, _Conn] = {}  # connection id -> stamp (a cache)
        self._bound: dict[str, bytes] = {}    # curve: node name -> its connection id
        self._names: dict[bytes, str] = {}    # curve: connection id -> registered name
        self._open: dict[str, dict[int, tuple[str, float, str]]] = {}  # caller -> id -> (target, when, key)
        self._open_by_key: dict[str, int] = {}   # key (or name without keys) -> its open requests
        self.bad_input = RateLimitedLog(log)

    @property
    def tap_on(self) -> bool:
        return bool(self._taps)

    def open_requests(self) -> int:
        """Requests routed whose replies have not come back (yet)."""
        return sum(len(v) for v in self._open.values())

    def deliver(self, identity: bytes, frames: list) -> None:
        raise NotImplementedError

    def emit(self, frames: list) -> None:
        raise NotImplementedError

    def start_core(self, events_in: str, events_out: str) -> None:
        c = self.cfg
        self.core = HubCore(HubSettings(events_in=events_in, events_out=events_out,
                                        heartbeat_s=c.heartbeat_s, liveness=c.liveness,
                                        forget_after_s=c.forget_after_s))

    # -- one message: [connection, to, envelope, *buffers] ----------------------------
    def route(self, msg: list, user: str | None = None) -> None:
        """Route one message; `user` is its connection's key under curve security."""
        if self.meter is not None:
            self.meter.routed(msg)
        conn = msg[0]
        if len(msg) < 3:
            self._error(conn, None, ErrorCode.BAD_FRAMES,
                        f"expected frames [route, envelope, *buffers], got {len(msg) - 1}")
            return
        to, env_frame = msg[1], msg[2]
        size = sum(map(len, msg))
        if len(env_frame) > self.cfg.max_envelope_bytes or size > self.cfg.max_message_bytes:
            self._error(conn, _envelope_or_none(env_frame), ErrorCode.TOO_LARGE,
                        f"message of {size} bytes is over the limit ({self.cfg.max_message_bytes}"
                        f" bytes, envelope {self.cfg.max_envelope_bytes})")
            return
        try:
            env = decode_envelope(env_frame)
        except BadMessage as e:
            self._error(conn, e.envelope, e.code, e.message)
            return
        peer = self._conns.get(conn)
        if peer is None or peer.user != user:
            if len(self._conns) >= MAX_CACHED_CONNECTIONS:
                self._conns.clear()
            peer = self._identify(conn, user, env)
            if peer is None:
                return
        now = trio.current_time()
        self.core.heard(peer.name, now)
        if to == HUB_B:
            self._hub_request(conn, peer, env, now)
            return
        if peer.unregistered_node:            # else its requests would carry a "~" name
            self._error(conn, env, ErrorCode.NOT_REGISTERED, "a node's key must register "
                        "before it sends to other nodes", retry=True)
            return
        try:
            route = to.decode()
        except UnicodeDecodeError:
            self._error(conn, env, ErrorCode.BAD_FRAMES, "route is not utf-8")
            return
        target = self.core.resolve(route)
        if target is None:
            self._error(conn, env, ErrorCode.NO_ROUTE, f"no live node of role {route[1:]!r}")
            return
        tconn = target.encode() if self.allow is None else self._conn_of(target)
        if tconn is None:
            self._error(conn, env, ErrorCode.NO_ROUTE, f"no node {target!r} is connected")
            return
        opened = None
        if env.reply:                         # answers a request: the caller's slot frees
            waiting = self._open.get(target)
            asked = waiting.get(env.id) if waiting is not None else None
            if asked is None or asked[0] != peer.name:
                self._error(conn, env, ErrorCode.PERMISSION, f"a reply to {target!r} for a "
                            f"request it did not send to {peer.name!r} (or that timed out)")
                return
            self._close_open(target, waiting, env.id)
        elif target.startswith(CLIENT_PREFIX):
            self._error(conn, env, ErrorCode.NO_ROUTE, f"{target!r} is a client: it serves no requests")
            return
        elif env.id:
            owner = peer.user or peer.name        # the limit holds for all of a key's connections
            held = self._open_by_key.get(owner, 0)
            if held >= self.cfg.hub_max_inflight_per_sender:
                self._error(conn, env, ErrorCode.BUSY, f"{peer.name} has {held} requests open "
                            "through the hub" + (" (with its key)" if peer.user else ""), retry=True)
                return
            opened = self._open.get(peer.name)
            if opened is None:
                opened = {}
        try:
            self.deliver(tconn, [tconn, peer.name_b, peer.role_b, *msg[2:]])
        except Busy:
            self._error(conn, env, ErrorCode.BUSY, f"{target} is not keeping up", retry=True)
            return
        except NoRoute:
            self._error(conn, env, ErrorCode.NO_ROUTE, f"no node {target!r} is connected")
            return
        if opened is not None:
            if not opened:
                self._open[peer.name] = opened
            if env.id not in opened:          # the same id again replaces its entry
                self._open_by_key[owner] = self._open_by_key.get(owner, 0) + 1
            opened[env.id] = (target, now, owner)
        self.routed += 1
        if self._taps:
            self._tap(peer.name_b, target.encode(), env, env_frame, now)

    def _identify(self, conn: bytes, user: str | None, env: Envelope) -> _Conn | None:
        """The stamp of a connection not in the cache, or None (refused and answered)."""
        if self.allow is not None:
            role = self.allow.role_of(user) if user else None
            if role is None:
                self._error(conn, env, ErrorCode.PERMISSION,
                            "this connection's key is not on the hub's allow-list (any more)")
                return None
            name = self._names.get(conn)
            if name is None:
                peer = self._conns[conn] = _Conn(client_name(user, conn), role, user,
                                                 unregistered_node=role not in (ADMIN, READER))
                return peer
        else:
            try:
                name = conn.decode()
            except UnicodeDecodeError:
                self._error(conn, env, ErrorCode.BAD_FRAMES, "identity is not utf-8")
                return None
            rec = self.core.nodes.get(name)
            role = rec.role if rec is not None else ADMIN
        peer = self._conns[conn] = _Conn(name, role, user)
        return peer

    def _conn_of(self, name: str) -> bytes | None:
        if self.allow is None:
            return name.encode()
        conn = self._bound.get(name)
        if conn is None and name.startswith(CLIENT_PREFIX):
            try:
                conn = bytes.fromhex(name.rpartition(".")[2])
            except ValueError:
                return None
        return conn

    # -- requests to the hub itself --------------------------------------------------
    def _hub_request(self, conn: bytes, peer: _Conn, env: Envelope, now: float) -> None:
        try:
            body = _hub_requests.decode(env)
        except BadMessage as e:
            self._error(conn, env, e.code, e.message)
            return
        if isinstance(body, Register):
            reply, events = self._register(conn, peer, body, now)
        elif isinstance(body, Tap):
            reply, events = self._tap_request(conn, peer, body, now), []
        else:
            reply, events = self.core.request(peer.name, body, now)
        if reply is not None and (env.id or isinstance(reply, Error)):
            self._send(conn, reply, id=env.id, reply=True)   # one-way messages hear only errors
        for topic, ev in events:
            self.publish(topic, ev)

    def _register(self, conn: bytes, peer: _Conn, msg: Register, now: float):
        if self.allow is None:
            reply, events = self.core.request(peer.name, msg, now)
            self._conns.pop(conn, None)       # stamped with its registered role from now on
            return reply, events
        refusal = self._may_register(peer, msg)
        if refusal:
            self.bad_input.warning(("register", peer.user), "refused registration of %r (%s) "
                                   "by key %s: %s", msg.name, msg.role, peer.user, refusal)
            return Error(code=ErrorCode.PERMISSION, message=refusal), []
        reply, events = self.core.request(msg.name, msg, now, user=peer.user)
        if isinstance(reply, Registered):
            old = self._bound.get(msg.name)
            if old is not None and old != conn:       # the node reconnected: the old one is stale
                self._names.pop(old, None)
                self._conns.pop(old, None)
            old_name = self._names.get(conn)
            if old_name is not None and old_name != msg.name:
                self._bound.pop(old_name, None)
            self._bound[msg.name], self._names[conn] = conn, msg.name
            self._conns.pop(conn, None)
        return reply, events

    def _may_register(self, peer: _Conn, msg: Register) -> str:
        """Why this key may not register this node ("" when it may)."""
        name = msg.name
        if not name or name == HUB or name[0] in (ROLE_PREFIX, CLIENT_PREFIX) or len(name) > 255:
            return f"bad node name {name!r}"
        if peer.role == READER:
            return "a reader key cannot register a node"
        if msg.role in (ADMIN, READER):
            return f"{msg.role!r} is a key's role, not a node's"
        if peer.role != ADMIN and msg.role != peer.role:
            return f"this key is allowed as {peer.role!r}, not {msg.role!r}"
        pinned = self.allow.pinned(name)
        if pinned is not None and pinned != peer.user:
            return f"name {name!r} is pinned to another key"
        own = self.allow.entries[peer.user].name
        if own and own != name:
            return f"this key may register only as {own!r}"
        return ""

    def _tap_request(self, conn: bytes, peer: _Conn, msg: Tap, now: float) -> Msg:
        """The tap shows every request body: admin keys only, for a bounded lease."""
        if peer.role != ADMIN:
            return Error(code=ErrorCode.PERMISSION, message="only an admin key may tap the bus's RPC")
        if conn not in self._taps and len(self._taps) >= MAX_TAPS:
            return Error(code=ErrorCode.BUSY, message=f"{MAX_TAPS} connections tap already", retry=True)
        seconds = min(max(msg.seconds, 0.0), 60.0)
        self._taps[conn] = now + seconds
        return Tapping(seconds=seconds)

    def allow_changed(self, allow: AllowList) -> None:
        """A new allow-list: stamps are recomputed, revoked keys' nodes are dropped."""
        self.allow = allow
        self._conns.clear()
        self._taps.clear()                    # an admin key may have been taken off
        events = self.core.revoke(lambda key: key in allow.entries, trio.current_time())
        self._forget_unbound()
        for topic, ev in events:
            self.publish(topic, ev)

    def _forget_unbound(self) -> None:
        for name in [n for n in self._bound if n not in self.core.nodes]:
            self._names.pop(self._bound.pop(name), None)

    # -- refusals ---------------------------------------------------------------------
    def _error(self, conn: bytes, env: Envelope | None, code: str, message: str,
               retry: bool = False) -> None:
        """Answer a message we cannot route or accept, unless it was itself a reply."""
        self.bad_input.warning(conn, "refused a message from %r: %s: %s", conn, code, message)
        if env is not None and env.reply:
            return
        self._send(conn, Error(code=code, message=message, retry=retry),
                   id=env.id if env else 0, reply=True)

    def _send(self, conn: bytes, msg: Msg, **kw) -> None:
        try:
            self.deliver(conn, [conn, HUB_B, HUB_ROLE_B, encode_envelope(HUB, msg, **kw)])
        except (Busy, NoRoute) as e:        # gone or not keeping up: it will re-sync
            log.debug("hub could not send %s to %r: %s", type(msg).__name__, conn, e)

    # -- time -------------------------------------------------------------------
    async def tick_loop(self) -> None:
        beat = encode_envelope(HUB, Heartbeat())
        while True:
            await trio.sleep(self.cfg.heartbeat_s)
            now = trio.current_time()
            targets, events = self.core.tick(now)
            for node_id in targets:
                conn = self._conn_of(node_id)
                if conn is None:
                    continue
                try:
                    self.deliver(conn, [conn, HUB_B, HUB_ROLE_B, beat])
                except (Busy, NoRoute):
                    pass                    # its liveness decides, not one lost beat
            down = set()
            for topic, ev in events:
                self.publish(topic, ev)
                down.add(getattr(ev, "node_id", None))
            self._expire_open(now, down)
            if self.allow is not None:
                self._forget_unbound()

    def _expire_open(self, now: float, down: set) -> None:
        """Requests open through the hub are forgotten when their target goes down or
        after REPLY_WINDOW_S (or twice the call timeout, if longer): a reply after that
        is refused, so a caller that waits longer than that (some operator commands take
        a --timeout) gets its answer within it."""
        oldest = now - max(REPLY_WINDOW_S, 2 * self.cfg.call_timeout_s)
        for caller in list(self._open):
            opened = self._open[caller]
            for rid in [r for r, (target, t, _) in opened.items() if t < oldest or target in down]:
                self._close_open(caller, opened, rid)

    def _close_open(self, caller: str, opened: dict, rid: int) -> None:
        """Forget one open request (answered, timed out, its target gone)."""
        owner = opened.pop(rid)[2]
        left = self._open_by_key[owner] - 1
        if left:
            self._open_by_key[owner] = left
        else:
            del self._open_by_key[owner]
        if not opened:
            del self._open[caller]

    # -- events -----------------------------------------------------------------
    def publish(self, topic: str, msg: Msg) -> None:
        """The hub's own event (node.up, node.down)."""
        seq = self._seq[topic] = self._seq.get(topic, 0) + 1
        log.info("%s %s", topic, msg)
        self.emit(event_frames(topic.encode() + _HUB_STAMP, encode_envelope(HUB, msg, seq=seq)))

    def forward_event(self, user: str | None, frames: list) -> None:
        stamped = self.stamp_event(user, frames)
        if stamped is not None:
            self.emit(stamped)

    def stamp_event(self, user: str | None, frames: list) -> list | None:
        """A node's event [topic \0 envelope, *buffers] that came with key `user` (None
        without security), with the name and role of the node its envelope names written
        after the topic, if that node is registered with that key; None (dropped) when
        it is not, or the topic is the hub's. (Nothing is decoded.)"""
        first = frames[0]
        end = first.find(EVENT_SEP)
        node = envelope_sender(first, end + 1) if end > 0 else None
        if node is None:
            self._refuse_event(user or "?", "that is not [topic \\0 envelope, *buffers]")
            return None
        rec = self.core.nodes.get(node)
        if rec is None or rec.user != user:
            self._refuse_event(user or node, "from a publisher that is not a node registered "
                               f"with its key (it says {node[:60]!r})")
            return None
        if first.startswith(_HUB_TOPICS_B):
            self._refuse_event(node, f"on the hub's topic {bytes(first[:end])[:40]!r}")
            return None
        if len(frames) > 1 and sum(map(len, frames)) > self.cfg.max_message_bytes:
            self._refuse_event(node, f"over {self.cfg.max_message_bytes} bytes")
            return None
        self.forwarded += 1
        frames[0] = first[:end] + rec.stamp + first[end:]
        return frames

    def _refuse_event(self, who: str, why: str) -> None:
        self.refused_events += 1
        self.bad_input.warning(("event", who), "dropped an event %s", why)

    def _tap(self, frm: bytes, to: bytes, env: Envelope, env_frame: bytes, now: float) -> None:
        """Send each tapping connection a copy of a routed message (buffers left out:
        a tail shows the traffic, it does not carry sector data)."""
        kind = peek_kind(env.body) or "unknown"
        topic = (TAP_PREFIX + kind).encode()
        for conn, until in list(self._taps.items()):
            if until < now:
                del self._taps[conn]
                continue
            try:
                self.deliver(conn, [conn, HUB_B, TAP_ROLE_B, topic, frm, to, env_frame])
            except Busy:
                pass                          # a tail that does not keep up misses copies
            except NoRoute:
                del self._taps[conn]


def envelope_sender(frame: bytes, at: int = 0) -> str | None:
    """The `sender` the envelope at `frame[at:]` claims, read from its head without
    decoding the rest (the hub checks it against the key; the subscriber decodes the
    envelope), or None when it does not start like an envelope. Per event, this is what
    the hub spends instead of a decode."""
    if len(frame) < at + 2 or frame[at] & 0xF0 != 0x90:   # fixarray: the envelope's fields
        return None
    head = frame[at + 1]
    if 0xA0 <= head <= 0xBF:                               # fixstr
        name = frame[at + 2:at + 2 + (head & 0x1F)]
    elif head == 0xD9 and len(frame) > at + 2:             # str8
        name = frame[at + 3:at + 3 + frame[at + 2]]
    else:
        return None
    try:
        return name.decode()
    except UnicodeDecodeError:
        return None


def client_name(user: str, conn: bytes) -> str:
    """The name a curve client (a key that registers no node) is stamped with: its key's
    id, which peers key their replay windows and limits by (so they hold across
    reconnects), then its connection, which replies are routed to."""
    return f"{CLIENT_PREFIX}{hashlib.sha256(user.encode()).hexdigest()[:16]}.{conn.hex()}"


def _envelope_or_none(frame: bytes) -> Envelope | None:
    try:
        return decode_envelope(frame)     # bounded by zmq's MAXMSGSIZE: safe to decode
    except BadMessage:
        return None


class ZmqHub(Router):
    """The hub over ZeroMQ: a ROUTER for RPC, and an XSUB (publishers connect) with an
    XPUB (subscribers connect) for events, all owned by this Trio task. Each event is
    stamped here from its connection's metadata (no body is decoded); subscriptions
    coming in on the XPUB go up the XSUB, so publishers send only what someone wants.

    With curve security the hub needs its key pair (bus.key_dir, see bus.keys) and reads
    its allow-list; it then runs in a zmq context of its own, whose ZAP handler it is."""

    def __init__(self, cfg: BusConfig | None = None, *, ctx: zmq.Context | None = None):
        super().__init__(cfg or BusConfig())
        self._given_ctx = ctx
        self.ctx = ctx or zmq.Context.instance()
        self.address = self.cfg.address       # the bound address once running
        self.auth: Authenticator | None = None
        self._dropped_log = RateLimitedLog(log, interval_s=10.0)

    def deliver(self, identity: bytes, frames: list) -> None:
        try:
            self._router.send_nowait(frames)
        except zmq.Again:
            raise Busy() from None
        except zmq.ZMQError as e:
            if e.errno == errno.EHOSTUNREACH:
                raise NoRoute() from None
            raise

    def emit(self, frames: list) -> None:
        try:
            self._xpub.send_nowait(frames)
        except zmq.Again:
            self._dropped_log.warning("events", "event %r dropped: subscribers not keeping up",
                                      bytes(frames[0]))

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.cfg
        creds = keys.hub_credentials(cfg)     # KeyFileError (an OSError) says what is missing
        own_ctx = zmq.Context() if creds is not None and self._given_ctx is None else None
        ctx = own_ctx or self.ctx
        sockets: list[zmq.Socket] = []
        try:
            if creds is not None:             # the ZAP handler first: without one, libzmq
                self.auth = Authenticator(    # lets every CURVE client in
                    ctx, keys.allow_list_path(cfg), on_change=self.allow_changed)
                self.auth.bind()
                self.allow = self.auth.allow
            router = configure(ctx.socket(zmq.ROUTER), cfg, linger_ms=0)
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)   # never drop silently: we answer
            if creds is None:
                router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted node takes its id back
            xsub = configure(ctx.socket(zmq.XSUB), cfg, linger_ms=0)
            xpub = configure(ctx.socket(zmq.XPUB), cfg, linger_ms=0)
            sockets = [router, xsub, xpub]
            if creds is not None:
                for sock, domain in ((router, DOMAIN_RPC), (xsub, DOMAIN_EVENTS_IN),
                                     (xpub, DOMAIN_EVENTS_OUT)):
                    sock.setsockopt(zmq.ZAP_DOMAIN, domain)
                    sock.setsockopt(zmq.CURVE_SERVER, 1)
                    sock.setsockopt(zmq.CURVE_SECRETKEY, creds.secret)
            _bind(router, cfg.address)
            self.address = router.getsockopt(zmq.LAST_ENDPOINT).decode()
            ev_in, ev_out = event_endpoints(cfg.address)
            _bind(xsub, ev_in)
            _bind(xpub, ev_out)
            ev_in = xsub.getsockopt(zmq.LAST_ENDPOINT).decode()
            ev_out = xpub.getsockopt(zmq.LAST_ENDPOINT).decode()
        except (zmq.ZMQError, OSError) as e:
            for s in sockets:
                s.close(linger=0)
            if self.auth is not None:
                self.auth.close()
            if own_ctx is not None:
                own_ctx.destroy(linger=0)
            if isinstance(e, keys.KeyFileError):
                raise
            raise OSError(f"hub cannot bind {cfg.address}: {e}") from None
        self.start_core(ev_in, ev_out)
        log.info("hub listening rpc=%s events_in=%s events_out=%s security=%s", self.address,
                 ev_in, ev_out, cfg.security_mode())
        try:
            async with trio.open_nursery() as nursery:
                if self.auth is not None:
                    await nursery.start(self.auth.run)
                # assigned before the owners start: their first batch may route at once
                if creds is not None:
                    self._router = ZSocket(router, on_batch=self._route_batch_secure,
                                           properties=("User-Id",))
                    self._xsub = ZSocket(xsub, on_batch=self._forward_batch_secure,
                                         properties=("User-Id",))
                else:
                    self._router = ZSocket(router, on_batch=self._route_batch)
                    self._xsub = ZSocket(xsub, on_batch=self._forward_batch)
                self._xpub = ZSocket(xpub, on_batch=self._subscriptions)
                async with self._router.running(), self._xsub.running(), self._xpub.running():
                    nursery.start_soon(self.tick_loop)
                    task_status.started(self.address)
                    await trio.sleep_forever()
        finally:
            for s in sockets:                 # the curve servers before their ZAP handler
                if not s.closed:
                    s.close(linger=0)
            if self.auth is not None:
                self.auth.close()
            if own_ctx is not None:
                own_ctx.destroy(linger=0)

    def _route_batch(self, batch: list) -> None:
        for msg in batch:
            self.route(msg)

    def _route_batch_secure(self, batch: list) -> None:
        for (user,), msg in batch:
            self.route(msg, user)

    def _forward_batch(self, batch: list) -> None:
        stamp = self.stamp_event
        self._emit_batch([stamp(None, frames) for frames in batch])

    def _forward_batch_secure(self, batch: list) -> None:
        stamp = self.stamp_event
        self._emit_batch([stamp(user, frames) for (user,), frames in batch])

    def _emit_batch(self, out: list) -> None:
        """Send a drained batch on (one look at the socket's state for all of it)."""
        try:
            self._xpub.send_batch_nowait([frames for frames in out if frames is not None])
        except zmq.Again:
            self._dropped_log.warning("events", "events dropped: subscribers not keeping up")

    def _subscriptions(self, batch: list) -> None:
        """(Un)subscriptions from subscribers, passed up to the publishers."""
        for frames in batch:
            if frames[0][:1] in (b"\x00", b"\x01"):
                try:
                    self._xsub.send_nowait(frames[:1])
                except zmq.Again:
                    log.warning("a subscription change was not passed on: publishers busy")


def _bind(sock: zmq.Socket, endpoint: str) -> None:
    """Bind; an ipc socket file is made 0600 (and a missing directory 0700), so only
    this user's processes reach a hub that has no keys to check."""
    scheme, path = split(endpoint)
    if scheme != "ipc":
        sock.bind(endpoint)
        return
    parent = pathlib.Path(path).parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True)
    old = os.umask(0o177)
    try:
        sock.bind(endpoint)
    finally:
        os.umask(old)
