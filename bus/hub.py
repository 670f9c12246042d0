"""The bus hub (role `bus`): RPC routing, the registry and liveness of
`bus.hubcore`, node.up/node.down events, and a tap of routed RPC.

`Router` is the routing logic; `ZmqHub` runs it over a ZeroMQ ROUTER with an XSUB/XPUB
event forwarder, and `bus.memory.MemoryHub` runs it in memory for simulations. The hub
is stateless: restarting it costs the peers one re-registration, never data.
"""
from __future__ import annotations

import errno
import logging
import uuid

import trio
import zmq

from bus.address import event_endpoints
from bus.codec import (BadMessage, BodyDecoder, Error, ErrorCode, Msg, decode_envelope,
                       encode_envelope, peek_kind)
from bus.config import BusConfig, configure
from bus.hubcore import HubCore, HubSettings
from bus.protocol import HUB, Goodbye, Heartbeat, HubInfo, ListNodes, Ping, Register
from bus.zsock import ZSocket

log = logging.getLogger("zqnode.bus.hub")

HUB_B = HUB.encode()
TAP_PREFIX = "bus.rpc."
_hub_requests = BodyDecoder([Register, Heartbeat, Goodbye, Ping, ListNodes, HubInfo])


class Busy(Exception):
    """The target's queue is full."""


class NoRoute(Exception):
    """No such peer is connected."""


class Router:
    """What a hub does with each message, whatever carries it. Subclasses provide
    `deliver(identity, frames)` (raising Busy or NoRoute) and `emit(frames)` (events)."""

    def __init__(self, cfg: BusConfig):
        self.cfg = cfg
        self.core: HubCore | None = None
        self._seq: dict[str, int] = {}
        self.tap_on = False
        self.routed = 0                       # messages routed, for tests and metrics

    def deliver(self, identity: bytes, frames: list) -> None:
        raise NotImplementedError

    def emit(self, frames: list) -> None:
        raise NotImplementedError

    def start_core(self, events_in: str, events_out: str) -> None:
        c = self.cfg
        self.core = HubCore(HubSettings(events_in=events_in, events_out=events_out,
                                        heartbeat_s=c.heartbeat_s, liveness=c.liveness,
                                        forget_after_s=c.forget_after_s))

    # -- one message: [from, to, envelope, *buffers] --------------------------------
    def route(self, msg: list) -> None:
        if len(msg) < 3:
            self._error(msg[0], None, ErrorCode.BAD_FRAMES,
                        f"expected frames [route, envelope, *buffers], got {len(msg) - 1}")
            return
        frm, to, env_frame = msg[0], msg[1], msg[2]
        size = sum(map(len, msg))
        if len(env_frame) > self.cfg.max_envelope_bytes or size > self.cfg.max_message_bytes:
            self._error(frm, env_frame, ErrorCode.TOO_LARGE,
                        f"message of {size} bytes is over the limit ({self.cfg.max_message_bytes}"
                        f" bytes, envelope {self.cfg.max_envelope_bytes})")
            return
        try:
            sender, route = frm.decode(), to.decode()
        except UnicodeDecodeError:
            self._error(frm, env_frame, ErrorCode.BAD_FRAMES, "route is not utf-8")
            return
        self.core.heard(sender, trio.current_time())
        if to == HUB_B:
            self._hub_request(frm, env_frame)
            return
        target = self.core.resolve(route)
        if target is None:
            self._error(frm, env_frame, ErrorCode.NO_ROUTE, f"no live node of role {route[1:]!r}")
            return
        tb = target.encode()
        try:
            self.deliver(tb, [tb, frm, *msg[2:]])
        except Busy:
            self._error(frm, env_frame, ErrorCode.BUSY, f"{target} is not keeping up", retry=True)
            return
        except NoRoute:
            self._error(frm, env_frame, ErrorCode.NO_ROUTE, f"no node {target!r} is connected")
            return
        self.routed += 1
        if self.tap_on:
            self._tap(frm, tb, env_frame)

    def _hub_request(self, frm: bytes, env_frame: bytes) -> None:
        try:
            env = decode_envelope(env_frame)
            body = _hub_requests.decode(env)
        except BadMessage as e:
            self._error(frm, env_frame, e.code, e.message)
            return
        reply, events = self.core.request(frm.decode(), body, trio.current_time())
        if reply is not None and (env.id or isinstance(reply, Error)):
            self._send(frm, reply, id=env.id, reply=True)   # one-way messages hear only errors
        for topic, ev in events:
            self.publish(topic, ev)

    def _error(self, frm: bytes, env_frame: bytes | None, code: str, message: str,
               retry: bool = False) -> None:
        """Answer a message we cannot route or accept, unless it was itself a reply."""
        env = None
        if env_frame is not None:             # bounded by zmq's MAXMSGSIZE: safe to decode
            try:
                env = decode_envelope(env_frame)
            except BadMessage:
                pass
        log.warning("refused message from %r: %s: %s", frm, code, message)
        if env is not None and env.reply:
            return
        self._send(frm, Error(code=code, message=message, retry=retry),
                   id=env.id if env else 0, reply=True)

    def _send(self, to: bytes, msg: Msg, **kw) -> None:
        try:
            self.deliver(to, [to, HUB_B, encode_envelope(HUB, msg, **kw)])
        except (Busy, NoRoute) as e:        # gone or not keeping up: it will re-sync
            log.debug("hub could not send %s to %r: %s", type(msg).__name__, to, e)

    # -- time -------------------------------------------------------------------
    async def tick_loop(self) -> None:
        beat = encode_envelope(HUB, Heartbeat())
        while True:
            await trio.sleep(self.cfg.heartbeat_s)
            targets, events = self.core.tick(trio.current_time())
            for node_id in targets:
                tb = node_id.encode()
                try:
                    self.deliver(tb, [tb, HUB_B, beat])
                except (Busy, NoRoute):
                    pass                    # its liveness decides, not one lost beat
            for topic, ev in events:
                self.publish(topic, ev)

    # -- events -----------------------------------------------------------------
    def publish(self, topic: str, msg: Msg) -> None:
        seq = self._seq[topic] = self._seq.get(topic, 0) + 1
        log.info("%s %s", topic, msg)
        self.emit([topic.encode(), encode_envelope(HUB, msg, seq=seq)])

    def _tap(self, frm: bytes, to: bytes, env_frame: bytes) -> None:
        """Copy a routed message onto `bus.rpc.<kind>` as [topic, from, to, envelope];
        buffers are left out: a tail shows the traffic, it does not carry sector data."""
        try:
            env = decode_envelope(env_frame)
        except BadMessage:
            return
        kind = peek_kind(env.body) or "unknown"
        self.emit([(TAP_PREFIX + kind).encode(), frm, to, env_frame])

    def note_subscriptions(self, prefixes) -> None:
        """Tap only while someone subscribes to something a tap topic could match."""
        t = TAP_PREFIX.encode()
        self.tap_on = any(t.startswith(p) or p.startswith(t) for p in prefixes)


class ZmqHub(Router):
    """The hub over ZeroMQ. Events are forwarded by libzmq's own proxy in a thread (no
    Python per event); the hub's own events and the tap go in through an XPUB connected
    to that proxy, which also tells the hub what is subscribed."""

    def __init__(self, cfg: BusConfig | None = None, *, ctx: zmq.Context | None = None):
        super().__init__(cfg or BusConfig())
        self.ctx = ctx or zmq.Context.instance()
        self.address = self.cfg.address       # the bound address once running
        self._subs: set[bytes] = set()

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
        cfg, ctx = self.cfg, self.ctx
        router = configure(ctx.socket(zmq.ROUTER), cfg, linger_ms=0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)   # never drop silently: we answer
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)    # a restarted node takes its id back
        xsub = configure(ctx.socket(zmq.XSUB), cfg, linger_ms=0)
        xpub = configure(ctx.socket(zmq.XPUB), cfg, linger_ms=0)
        own = configure(ctx.socket(zmq.XPUB), cfg, linger_ms=0)
        ctrl_a, ctrl_b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        sockets = [router, xsub, xpub, own, ctrl_a, ctrl_b]
        try:
            router.bind(cfg.address)
            self.address = router.getsockopt(zmq.LAST_ENDPOINT).decode()
            ev_in, ev_out = event_endpoints(cfg.address)
            xsub.bind(ev_in)
            xpub.bind(ev_out)
            ev_in = xsub.getsockopt(zmq.LAST_ENDPOINT).decode()
            ev_out = xpub.getsockopt(zmq.LAST_ENDPOINT).decode()
            inproc = f"inproc://zqnode-hub-{uuid.uuid4().hex}"
            xsub.bind(inproc + "-events")
            own.connect(inproc + "-events")
            ctrl_a.bind(inproc + "-ctrl")
            ctrl_b.connect(inproc + "-ctrl")
        except zmq.ZMQError as e:
            for s in sockets:
                s.close(linger=0)
            raise OSError(f"hub cannot bind {cfg.address}: {e}") from None
        self.start_core(ev_in, ev_out)
        log.info("hub listening rpc=%s events_in=%s events_out=%s", self.address, ev_in, ev_out)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._forward_events, xsub, xpub, ctrl_a, ctrl_b)
                # assigned before the owners start: their first batch may route at once
                self._router = ZSocket(router, on_batch=self._route_batch)
                self._events = ZSocket(own, on_batch=self._subscriptions)
                async with self._router.running(), self._events.running():
                    nursery.start_soon(self.tick_loop)
                    task_status.started(self.address)
                    await trio.sleep_forever()
        finally:
            for s in sockets:
                if not s.closed:
                    s.close(linger=0)

    def _route_batch(self, batch: list) -> None:
        for msg in batch:
            self.route(msg)

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
