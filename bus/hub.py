"""The bus hub (role `bus`): RPC routing, the registry and liveness of
`bus.hubcore`, node.up/node.down events, and a tap of routed RPC.

`Router` is the routing logic; `ZmqHub` runs it over a ZeroMQ ROUTER with an XSUB/XPUB
event forwarder, and `bus.memory.MemoryHub` runs it in memory for simulations. The hub
is stateless: restarting it costs the peers one re-registration, never data.

Who sent a message is the hub's word, never the sender's. With curve security
(`bus.auth`), every connection carries the key that passed the handshake; the hub
assigns connection ids itself (nodes set no zmq identity, and ROUTER_HANDOVER is off,
so no connection can take over another's), binds a node name to a connection when
that key registers it, and stamps each message it delivers with the sender's name and
the role of its key. Without security, the connection id is the node's name and the
stamped role is the one it registered with (an unregistered client: admin).
"""
from __future__ import annotations

import errno
import logging
import os
import pathlib
import uuid

import trio
import zmq

from bus import keys
from bus.address import event_endpoints, split
from bus.auth import DOMAIN_EVENTS_IN, DOMAIN_EVENTS_OUT, DOMAIN_RPC, Authenticator
from bus.codec import (BadMessage, BodyDecoder, Envelope, Error, ErrorCode, Msg, decode_envelope,
                       encode_envelope, peek_kind)
from bus.config import BusConfig, configure
from bus.hubcore import HubCore, HubSettings
from bus.keys import AllowList
from bus.permissions import ADMIN, READER
from bus.protocol import (HUB, ROLE_PREFIX, Goodbye, Heartbeat, HubInfo, ListNodes, Ping, Register,
                          Registered)
from bus.ratelog import RateLimitedLog
from bus.zsock import ZSocket

log = logging.getLogger("zqnode.bus.hub")

HUB_B = HUB.encode()
HUB_ROLE_B = b"bus"
TAP_PREFIX = "bus.rpc."
CLIENT_PREFIX = "~"              # curve: "~<hex connection id>" names an unregistered client
MAX_CACHED_CONNECTIONS = 8192    # the per-connection stamp cache is dropped beyond this
_hub_requests = BodyDecoder([Register, Heartbeat, Goodbye, Ping, ListNodes, HubInfo])


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
        self.tap_on = False
        self.routed = 0                       # messages routed, for tests and metrics
        self.meter = None                     # a bus.meter.HubMeter, set before run
        self.allow: AllowList | None = None   # set: curve security, names bound to keys
        self._conns: dict[bytes, _Conn] = {}  # connection id -> stamp (a cache)
        self._bound: dict[str, bytes] = {}    # curve: node name -> its connection id
        self._names: dict[bytes, str] = {}    # curve: connection id -> registered name
        self._open: dict[str, dict[int, tuple[str, float]]] = {}  # caller -> id -> (target, when)
        self.bad_input = RateLimitedLog(log)

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
            self._error(conn, None, e.code, e.message)
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
            if waiting is not None and waiting.pop(env.id, None) is not None and not waiting:
                del self._open[target]
        elif env.id:
            opened = self._open.get(peer.name)
            if opened is None:
                opened = {}
            elif len(opened) >= self.cfg.hub_max_inflight_per_sender:
                self._error(conn, env, ErrorCode.BUSY, f"{peer.name} has {len(opened)} requests "
                            "open through the hub", retry=True)
                return
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
            opened[env.id] = (target, now)
        self.routed += 1
        if self.tap_on:
            self._tap(peer.name_b, target.encode(), env, env_frame)

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
                peer = self._conns[conn] = _Conn(CLIENT_PREFIX + conn.hex(), role, user,
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
                conn = bytes.fromhex(name[1:])
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

    def allow_changed(self, allow: AllowList) -> None:
        """A new allow-list: stamps are recomputed, revoked keys' nodes are dropped."""
        self.allow = allow
        self._conns.clear()
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
        after twice the call timeout (a caller gives up by then)."""
        oldest = now - 2 * self.cfg.call_timeout_s
        for caller in list(self._open):
            opened = self._open[caller]
            for rid in [r for r, (target, t) in opened.items() if t < oldest or target in down]:
                del opened[rid]
            if not opened:
                del self._open[caller]

    # -- events -----------------------------------------------------------------
    def publish(self, topic: str, msg: Msg) -> None:
        seq = self._seq[topic] = self._seq.get(topic, 0) + 1
        log.info("%s %s", topic, msg)
        self.emit([topic.encode(), encode_envelope(HUB, msg, seq=seq)])

    def _tap(self, frm: bytes, to: bytes, env: Envelope, env_frame: bytes) -> None:
        """Copy a routed message onto `bus.rpc.<kind>` as [topic, from, to, envelope];
        buffers are left out: a tail shows the traffic, it does not carry sector data."""
        kind = peek_kind(env.body) or "unknown"
        self.emit([(TAP_PREFIX + kind).encode(), frm, to, env_frame])

    def note_subscriptions(self, prefixes) -> None:
        """Tap only while someone subscribes to something a tap topic could match."""
        t = TAP_PREFIX.encode()
        self.tap_on = any(t.startswith(p) or p.startswith(t) for p in prefixes)


def _envelope_or_none(frame: bytes) -> Envelope | None:
    try:
        return decode_envelope(frame)     # bounded by zmq's MAXMSGSIZE: safe to decode
    except BadMessage:
        return None


class ZmqHub(Router):
    """The hub over ZeroMQ. Events are forwarded by libzmq's own proxy in a thread (no
    Python per event); the hub's own events and the tap go in through an XPUB connected
    to that proxy, which also tells the hub what is subscribed.

    With curve security the hub needs its key pair (bus.key_dir, see bus.keys) and reads
    its allow-list; it then runs in a zmq context of its own, whose ZAP handler it is."""

    def __init__(self, cfg: BusConfig | None = None, *, ctx: zmq.Context | None = None):
        super().__init__(cfg or BusConfig())
        self._given_ctx = ctx
        self.ctx = ctx or zmq.Context.instance()
        self.address = self.cfg.address       # the bound address once running
        self._subs: set[bytes] = set()
        self.auth: Authenticator | None = None

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
            self._events.send_nowait(frames)
        except zmq.Again:
            log.warning("event %r dropped: subscribers not keeping up", frames[0])

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
            own = configure(ctx.socket(zmq.XPUB), cfg, linger_ms=0)
            ctrl_a, ctrl_b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
            sockets = [router, xsub, xpub, own, ctrl_a, ctrl_b]
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
            inproc = f"inproc://zqnode-hub-{uuid.uuid4().hex}"
            xsub.bind(inproc + "-events")
            own.connect(inproc + "-events")
            ctrl_a.bind(inproc + "-ctrl")
            ctrl_b.connect(inproc + "-ctrl")
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
                nursery.start_soon(self._forward_events, xsub, xpub, ctrl_a, ctrl_b)
                # assigned before the owners start: their first batch may route at once
                if creds is not None:
                    self._router = ZSocket(router, on_batch=self._route_batch_secure, user_id=True)
                else:
                    self._router = ZSocket(router, on_batch=self._route_batch)
                self._events = ZSocket(own, on_batch=self._subscriptions)
                async with self._router.running(), self._events.running():
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
        for user, msg in batch:
            self.route(msg, user)

    def _subscriptions(self, batch: list) -> None:
        for (frame, *_) in batch:
            if frame[:1] == b"\x01":
                self._subs.add(frame[1:])
            elif frame[:1] == b"\x00":
                self._subs.discard(frame[1:])
        self.note_subscriptions(self._subs)

    async def _forward_events(self, xsub, xpub, ctrl_a, ctrl_b) -> None:
        """libzmq forwards events in a thread; TERMINATE over the control pair stops it
        when the hub stops, and we wait for the thread before the sockets close."""
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def forward() -> None:
            try:
                zmq.proxy_steerable(xsub, xpub, None, ctrl_a)
            except zmq.ZMQError:
                pass

        trio.lowlevel.start_thread_soon(forward, lambda _: token.run_sync_soon(done.set))
        try:
            await trio.sleep_forever()
        finally:
            ctrl_b.send(b"TERMINATE")
            with trio.CancelScope(shield=True):
                await done.wait()


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
