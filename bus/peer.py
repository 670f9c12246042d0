"""A node's side of the bus: registration and liveness, RPC client and server, and
publish/subscribe with per-publisher sequence numbers.

    peer = Peer(name="worker-1", role="worker", cfg=BusConfig(address=...))
    peer.on(Ping, handler)                     # before run
    await nursery.start(peer.run)              # returns once registered
    reply = await peer.call("@scheduler", msg, timeout=5)
    await peer.publish("sector.state", msg, cause="s-1000-1")
    with peer.subscribe("chain.head", roles=["chain"]) as sub:
        async for event in sub: ...

The transport is picked by the address: tcp/ipc/inproc over ZeroMQ, mem:// in memory.

Serving is guarded (see bus.permissions for the roles): a request whose caller's role
(stamped by the hub) may not send its kind is refused with `permission`; a request id
this node already took from the same caller is refused with `replay` and does nothing
twice (the last `replay_window` ids per caller are kept); a caller with
`max_inflight_per_sender` requests already running here gets `busy`. A caller is its
stamped name, or for a curve client its key (so both hold across reconnects). Bad
input is answered with a typed error and logged at most once per sender per interval;
so is a handler's failure.

What comes back is checked too: a reply is taken only from the node the call went to
(for a role route, a node of that role; the hub checks the exact node), and an event
only with the stamp the hub gave it; `subscribe(roles=...)` takes a topic only from
the roles that own it, and the hub's topics (node.*, bus.*) only from the hub.
"""
from __future__ import annotations

import itertools
import logging
import os
import random
import socket
import time
import uuid
from collections import OrderedDict, deque
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping

import trio

from zqnode.bus import keys
from zqnode.bus.address import reachable, split
from zqnode.bus.codec import (BadMessage, BodyDecoder, BusError, Envelope, Error, ErrorCode, Msg,
                              RemoteError, any_decoder, decode_envelope, encode_envelope, event_frames,
                              split_event)
from zqnode.bus.config import BusConfig
from zqnode.bus.hub import CLIENT_PREFIX, HUB_B, HUB_ROLE_B, TAP_PREFIX, TAP_ROLE_B
from zqnode.bus.permissions import (ADMIN_B, ANYONE, ANY_RULE, NODES_RULE, READER_B, Rule, compile_rule,
                                    compile_table, describe)
from zqnode.bus.protocol import (HUB, HUB_TOPICS, ROLE_PREFIX, Goodbye, Heartbeat, HubInfo, Ping, Pong,
                                 Register, Registered, Tap)
from zqnode.bus.ratelog import RateLimitedLog
from zqnode.bus.zsock import BATCH

log = logging.getLogger("zqnode.bus.peer")

MAX_TRACKED_CALLERS = 1024       # replay windows kept (least recently heard dropped first)
TAP_LEASE_S = 10.0               # a tap is asked for this long, and again a third of the way
_TAP_B = TAP_PREFIX.encode()
_CLIENT_B = CLIENT_PREFIX.encode()
_HUB_TOPICS_B = tuple(t.encode() for t in HUB_TOPICS)


class CallTimeout(BusError, TimeoutError):
    pass


class HandshakeRefused(CallTimeout):
    """The hub refused this node's curve handshake (key not allowed, or wrong hub key)."""


class Refused(BusError):
    """Raise in a handler to answer with a typed error instead of a result."""

    def __init__(self, code: str, message: str, retry: bool = False):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.retry = code, message, retry


@contextmanager
def refusing(*rules: tuple[type[Exception] | tuple[type[Exception], ...], str]):
    """In a handler: the block's errors of the given types answer the caller as typed errors.
    Each rule is (exception type or types, error code), the first match wins; the message
    is the exception's `error` attribute where it has one, else its text. Other errors
    pass through."""
    try:
        yield
    except Exception as e:
        code = next((c for types, c in rules if isinstance(e, types)), None)
        if code is None:
            raise
        raise Refused(code, getattr(e, "error", None) or str(e)) from None


@dataclass(slots=True)
class Request:
    body: Msg
    sender: str                  # stamped by the hub, not claimed by the sender
    id: int
    cause: str
    buffers: list
    role: str = ""               # the sender's role, stamped by the hub (bus.permissions)


@dataclass(slots=True)
class Event:
    topic: str
    sender: str                  # stamped by the hub: the node that published it
    seq: int
    body: Msg | None             # None for a raw subscription
    envelope: Envelope
    buffers: list = field(default_factory=list)
    gap: int = 0                 # events of this publisher and topic missed before this one
    reset: bool = False          # the publisher restarted its numbering
    to: str = ""                 # tapped RPC (bus.rpc.*): the route it took
    role: str = ""               # the sender's role, stamped by the hub

    @property
    def cause(self) -> str:
        return self.envelope.cause


Handler = Callable[[Request], Awaitable[Msg | tuple[Msg, list] | None]]


@asynccontextmanager
async def open_link(address: str, identity: str, cfg: BusConfig, ctx, on_rpc, on_events,
                    credentials: keys.Credentials | None = None):
    """The transport the address names, calling `on_rpc(batch)` / `on_events(batch)`
    with what arrives, closed on exit. `credentials`: curve keys (bus.keys)."""
    if split(address)[0] == "mem":
        from zqnode.bus.memory import MemoryLink
        link = MemoryLink(address, identity, cfg, ctx, on_rpc, on_events)
        try:
            yield link
        finally:
            link.close()
        return
    from zqnode.bus.zlink import open_zmq_link
    async with open_zmq_link(address, identity, cfg, ctx, on_rpc, on_events, credentials) as link:
        yield link


class _Pending:
    """A call waiting for its reply from `to` (a node id, "@role" or "hub")."""
    __slots__ = ("done", "body", "buffers", "to")

    def __init__(self, to: str):
        self.done = trio.Event()
        self.body: Msg | None = None
        self.buffers: list = []
        self.to = to

    def answered_by(self, frm: bytes, role: bytes) -> bool:
        """Whether a reply stamped `frm` (`role`) may answer this call. The hub answers
        any call (its errors: no route, busy, ...)."""
        if frm == HUB_B:
            return True
        to = self.to
        if to.startswith(ROLE_PREFIX):
            return role == to[1:].encode()
        return frm == to.encode()


class Subscription:
    """Events whose topic starts with one of the prefixes, in arrival order. Gaps in a
    publisher's sequence (dropped under load, or missed while away) are marked on the
    next event so the consumer can ask the owner for a snapshot. `roles`: the roles
    whose events are taken (None: any); the hub's topics are taken only from the hub.
    Tapped RPC copies (bus.rpc.*) come from the hub on the RPC socket."""

    def __init__(self, peer: "Peer", prefixes: tuple[bytes, ...], decoder: BodyDecoder | None,
                 limit: int, roles: Iterable[str] | None = None):
        self._peer, self.prefixes, self._decoder = peer, prefixes, decoder
        self.roles = None if roles is None else frozenset(r.encode() for r in roles)
        self.taps = any(_TAP_B.startswith(p) or p.startswith(_TAP_B) for p in prefixes)
        self._queue: deque[list] = deque()
        self._limit = limit
        self._lot = trio.lowlevel.ParkingLot()
        self._taken = 0
        self._last: dict[tuple[str, str], int] = {}
        self.dropped = 0

    def offer(self, frames: list) -> None:
        """An event as the hub forwards it (a list, bus.codec), or a tapped copy
        (topic bus.rpc.KIND, from, to, envelope) (a tuple: only Peer._on_tap makes them)."""
        if len(self._queue) >= self._limit:
            self.dropped += 1          # the sequence numbers will show the gap
            return
        self._queue.append(frames)
        if self._lot:
            self._lot.unpark_all()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self._peer._unsubscribe(self)

    def __aiter__(self):
        return self

    async def __anext__(self) -> Event:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            while not self._queue:
                await self._lot.park()
            ev = self._decode(self._queue.popleft())
            if ev is not None:
                break
        self._taken += 1
        # One scheduler pass per batch, not per event, and a batch as large as the one the
        # socket's owner drains per pass: a consumer taking less each pass falls behind
        # and its queue overflows while the process idles.
        if self._taken % BATCH == 0 or not self._queue:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return ev

    async def receive(self) -> Event:
        return await self.__anext__()

    def _decode(self, frames: list) -> Event | None:
        to = ""
        try:
            if type(frames) is tuple:                   # a copy the hub sent us (Peer._on_tap)
                topic_b = frames[0]
                sender, to, env = frames[1].decode(), frames[2].decode(), decode_envelope(frames[3])
                role_b, bufs = HUB_ROLE_B, []
            else:
                topic_b, sender_b, role_b, env_b = split_event(frames[0])   # the hub's stamp
                sender = sender_b.decode()
                if (self.roles is not None or topic_b.startswith(_HUB_TOPICS_B)) and \
                        not self._accepts(topic_b, sender, role_b):
                    return None
                env, bufs = decode_envelope(env_b), frames[1:]
            topic, role = topic_b.decode(), role_b.decode()
            body = self._decoder.decode(env) if self._decoder is not None else None
        except (BadMessage, IndexError, ValueError) as e:       # UnicodeDecodeError too
            topic = bytes(frames[0][:64]).partition(b"\x00")[0].decode(errors="replace")
            self._peer._bad_input.warning(("event", topic), "undecodable event on %r: %s", topic, e)
            return None
        gap, reset = 0, False
        if env.seq:
            key = (sender, topic)
            last = self._last.get(key)
            if last is not None:
                if env.seq > last + 1:
                    gap = env.seq - last - 1
                elif env.seq <= last:
                    reset = True
            self._last[key] = env.seq
        return Event(topic=topic, sender=sender, seq=env.seq, body=body, envelope=env,
                     buffers=bufs, gap=gap, reset=reset, to=to, role=role)

    def _accepts(self, topic: bytes, sender: str, role: bytes) -> bool:
        if topic.startswith(_HUB_TOPICS_B):
            ok = sender == HUB and role == HUB_ROLE_B
        else:
            ok = self.roles is None or role in self.roles
        if not ok:
            self._peer._bad_input.warning(("event-from", sender, topic), "ignored %r from %s "
                                          "(role %r): not a publisher of that topic", topic,
                                          sender, role.decode(errors="replace"))
        return ok


class Peer:
    def __init__(self, *, name: str, role: str, cfg: BusConfig | None = None,
                 capabilities: dict[str, Any] | None = None, ctx=None, register: bool = True,
                 permissions: Mapping[type[Msg], Rule] | None = None):
        if not name or name == HUB or name[0] in ("@", CLIENT_PREFIX):
            raise ValueError(f"bad node name {name!r}: not empty, not 'hub', no leading '@' or '~'")
        self.node_id, self.role = name, role
        self.register = register       # False: a client (tail, ping) that is not a node
        self.cfg = cfg or BusConfig()
        self.ctx = ctx
        self.session = uuid.uuid4().hex
        self.capabilities = capabilities or {}
        self._caps_dirty = False
        self._handlers: dict[type[Msg], Handler] = {Ping: self._pong}
        self._rules: dict[type[Msg], object] = {Ping: compile_rule(ANYONE)}
        self._rules.update(compile_table(permissions))
        self._req_decoder: BodyDecoder | None = None
        self._pending: dict[int, _Pending] = {}
        self._tapping = False          # a task keeps asking the hub for tapped copies
        # ids differ across restarts, so a caller's window never mistakes a new process's
        # requests for replays (and stay below 2^53: exact in JSON tools)
        self._ids = itertools.count(random.randrange(1, 1 << 52))
        # caller -> the request ids taken from it, oldest first (OrderedDicts: all in C)
        self._seen: OrderedDict[bytes, OrderedDict[int, None]] = OrderedDict()
        self._running_from: dict[bytes, int] = {}                  # caller -> handlers running
        self._bad_input = RateLimitedLog(log)
        self._handler_failures = RateLimitedLog(log, interval_s=60.0)
        self._inflight_lot = trio.lowlevel.ParkingLot()
        self._active_handlers = 0
        self._pub_seq: dict[str, int] = {}
        self._subs: list[Subscription] = []
        self._last_heard = 0.0
        self._need_register = False
        self.registrations = 0         # how many times we registered (re-registrations show)
        self.link = None
        self._nursery: trio.Nursery | None = None
        self.meter = None              # a bus.meter.Meter, set before run, to observe traffic

    # -- set-up -----------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Gauges for an observer: calls awaiting replies, handlers running, events queued
        in subscriptions and dropped by them, registrations so far."""
        return {"pending_calls": len(self._pending), "active_handlers": self._active_handlers,
                "subscription_queue": sum(len(s._queue) for s in self._subs),
                "events_dropped": sum(s.dropped for s in self._subs),
                "registrations": self.registrations}

    def on(self, kind: type[Msg], handler: Handler, *, allow: Rule | None = None) -> None:
        """Serve requests of `kind`. Register handlers before `run`. `allow`: who may
        send it (bus.permissions; default: what the permission table says, else NODES)."""
        if self._req_decoder is not None:
            raise RuntimeError("register handlers before the peer runs")
        self._handlers[kind] = handler
        if allow is not None:
            self._rules[kind] = compile_rule(allow)

    def allow(self, table: Mapping[type[Msg], Rule]) -> None:
        """Declare who may send which kinds (bus.permissions); kinds not listed: NODES."""
        if self._req_decoder is not None:
            raise RuntimeError("declare permissions before the peer runs")
        self._rules.update(compile_table(table))

    def update_capabilities(self, capabilities: dict[str, Any]) -> None:
        """Sent to the hub with the next heartbeat (e.g. fresh resource figures)."""
        self.capabilities = capabilities
        self._caps_dirty = True

    def set_problem(self, key: str, text: str = "") -> None:
        """Report a condition an operator must see (`text`), or clear it (""): listed by
        the hub with the node (capabilities["problems"]), shown by `zqnode status`."""
        problems = dict(self.capabilities.get("problems") or {})
        if (problems.get(key) or "") == text:
            return
        if text:
            problems[key] = text
        else:
            del problems[key]
        self.update_capabilities({**self.capabilities, "problems": problems})

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        # KeyFileError (an OSError) before connecting when curve keys are missing
        creds = keys.peer_credentials(self.cfg, self.node_id if self.register else "client")
        self._req_decoder = BodyDecoder(self._handlers)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            async with open_link(self.cfg.address, self.node_id, self.cfg, self.ctx,
                                 self._on_rpc_batch, self._on_events_batch, creds) as link:
                self.link = link
                if not self.register:
                    await self._connect_as_client()
                    task_status.started(self)
                    await trio.sleep_forever()
                await self._register()
                nursery.start_soon(self._liveness_loop)
                task_status.started(self)
                try:
                    await trio.sleep_forever()
                finally:
                    with trio.CancelScope(shield=True) as cs:
                        cs.deadline = trio.current_time() + 0.5
                        await self.notify(HUB, Goodbye())

    # -- RPC client ---------------------------------------------------------------
    async def call(self, to: str, msg: Msg, *, buffers: Iterable = (), timeout: float | None = None,
                   cause: str = "") -> Msg:
        """Ask `to` (a node id, "@role" or "hub") and return its reply. Raises
        RemoteError for an error reply and CallTimeout when no reply comes in time."""
        body, _ = await self.call_with_buffers(to, msg, buffers=buffers, timeout=timeout, cause=cause)
        return body

    async def call_with_buffers(self, to: str, msg: Msg, *, buffers: Iterable = (),
                                timeout: float | None = None, cause: str = "") -> tuple[Msg, list]:
        timeout = self.cfg.call_timeout_s if timeout is None else timeout
        rid = next(self._ids)
        slot = _Pending(to)
        started = time.perf_counter()
        try:
            with trio.fail_after(timeout):
                while len(self._pending) >= self.cfg.max_inflight_calls:
                    await self._inflight_lot.park()    # back-pressure, not an unbounded queue
                self._pending[rid] = slot
                await self._send([to.encode(), encode_envelope(self.node_id, msg, id=rid, cause=cause),
                                  *buffers])
                await slot.done.wait()
        except trio.TooSlowError:
            self._called(msg, "timeout", started)
            raise CallTimeout(f"{to} did not answer {type(msg).__name__} "
                              f"within {timeout:g}s") from None
        finally:
            if self._pending.pop(rid, None) is not None and self._inflight_lot:
                self._inflight_lot.unpark(count=1)
        if isinstance(slot.body, Error):
            self._called(msg, "error", started)
            raise RemoteError(slot.body.code, slot.body.message, peer=to, retry=slot.body.retry)
        self._called(msg, "ok", started)
        return slot.body, slot.buffers

    def _called(self, msg: Msg, outcome: str, started: float) -> None:
        if self.meter is not None:
            self.meter.called(type(msg).__name__, outcome, time.perf_counter() - started)

    def _send(self, frames: list) -> Awaitable[None]:
        """The link's send (awaited by the caller: no extra coroutine on the hot path)."""
        if self.meter is not None:
            self.meter.rpc_out(frames)
        return self.link.send(frames)

    async def notify(self, to: str, msg: Msg, *, buffers: Iterable = (), cause: str = "") -> None:
        """One-way message: no reply, no delivery guarantee beyond the transport's."""
        await self._send([to.encode(), encode_envelope(self.node_id, msg, cause=cause), *buffers])

    # -- events -----------------------------------------------------------------
    async def publish(self, topic: str, msg: Msg, *, buffers: Iterable = (), cause: str = "") -> None:
        seq = self._pub_seq[topic] = self._pub_seq.get(topic, 0) + 1
        frames = event_frames(topic, encode_envelope(self.node_id, msg, seq=seq, cause=cause), buffers)
        if self.meter is not None:
            self.meter.event_out(frames)
        await self.link.publish(frames)

    def subscribe(self, *prefixes: str, kinds: Iterable[type[Msg]] | None = None,
                  raw: bool = False, limit: int = 10_000,
                  roles: Iterable[str] | None = None) -> Subscription:
        """Events under the topic prefixes ("" = everything). Bodies are decoded with
        `kinds` (default: every registered kind) unless `raw`. `roles`: take events only
        from nodes of these roles (the owners of the topic); None: from any. A prefix
        that covers bus.rpc. asks the hub for tapped RPC copies too (admin keys only)."""
        pre = tuple(p.encode() for p in (prefixes or ("",)))
        decoder = None if raw else (BodyDecoder(kinds) if kinds else any_decoder())
        sub = Subscription(self, pre, decoder, limit, roles)
        self._subs.append(sub)
        for p in pre:
            self.link.subscribe(p)
        if sub.taps and not self._tapping:
            self._tapping = True
            self._nursery.start_soon(self._tap_loop)
        return sub

    async def _tap_loop(self) -> None:
        """Keep the hub's tap lease while a subscription wants tapped copies."""
        try:
            while any(sub.taps for sub in self._subs):
                try:
                    await self.call(HUB, Tap(seconds=TAP_LEASE_S), timeout=TAP_LEASE_S / 3)
                except RemoteError as e:
                    if not e.retry:
                        log.warning("no RPC tap: %s", e.message)
                        return
                except CallTimeout:
                    pass
                await trio.sleep(TAP_LEASE_S / 3)
        finally:
            self._tapping = False

    def _on_tap(self, frames: list) -> None:
        """A tapped copy [topic, from, to, envelope] from the hub."""
        topic = frames[0]
        for sub in self._subs:
            if sub.taps and any(topic.startswith(p) for p in sub.prefixes):
                sub.offer(tuple(frames))

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
            for p in sub.prefixes:
                self.link.unsubscribe(p)

    def _on_events_batch(self, batch: list) -> None:
        if self.meter is not None:
            self.meter.events_in(batch)
        for frames in batch:
            topic = frames[0]
            for sub in self._subs:
                if any(topic.startswith(p) for p in sub.prefixes):
                    sub.offer(frames)

    # -- RPC server and replies -----------------------------------------------------
    def _on_rpc_batch(self, batch: list) -> None:
        self._last_heard = trio.current_time()
        if self.meter is not None:
            self.meter.rpc_in(batch)
        for frames in batch:
            self._on_rpc(frames)

    def _on_rpc(self, frames: list) -> None:
        # [sender, role, envelope, *buffers]: sender and role stamped by the hub
        if len(frames) < 3:
            self._bad_input.warning("frames", "dropped a message of %d frames", len(frames))
            return
        frm, role = frames[0], frames[1]
        if role == TAP_ROLE_B and frm == HUB_B:
            self._on_tap(frames[2:])
            return
        try:
            env = decode_envelope(frames[2])
        except BadMessage as e:
            self._answer_error(frm, e.envelope, e.code, e.message)
            return
        if env.reply:
            self._on_reply(frm, role, env, frames[3:])
            return
        if frm == HUB_B:
            return                                   # the hub's heartbeat: liveness only
        try:
            body = self._req_decoder.decode(env)
        except BadMessage as e:
            self._answer_error(frm, env, e.code, e.message)
            return
        rule = self._rules.get(type(body), NODES_RULE)
        if rule is not ANY_RULE and role != ADMIN_B and (
                (role == READER_B or not role) if rule is NODES_RULE else role not in rule):
            self._answer_error(frm, env, ErrorCode.PERMISSION,
                               f"role {role.decode(errors='replace')!r} may not send "
                               f"{type(body).__name__} to {self.node_id} (allowed: {describe(rule)})")
            return
        # a curve client is "~KEYID.CONNECTION": its key is the caller, across connections
        caller = frm.partition(b".")[0] if frm[:1] == _CLIENT_B else frm
        window = None
        if env.id:
            window = self._seen.get(caller)
            if window is None:
                window = self._seen[caller] = OrderedDict()
                if len(self._seen) > MAX_TRACKED_CALLERS:
                    self._seen.popitem(last=False)
            else:
                self._seen.move_to_end(caller)
                if env.id in window:
                    self._answer_error(frm, env, ErrorCode.REPLAY,
                                       f"request {env.id} was already received; not run again")
                    return
        running = self._running_from.get(caller, 0)
        if running >= self.cfg.max_inflight_per_sender:
            self._answer_error(frm, env, ErrorCode.BUSY, f"{self.node_id} is already serving "
                               f"{running} requests from this sender", retry=True)
            return
        if self._active_handlers >= self.cfg.max_concurrent_handlers:
            self._answer_error(frm, env, ErrorCode.BUSY,
                               f"{self.node_id} is serving {self._active_handlers} requests", retry=True)
            return
        if window is not None:
            window[env.id] = None
            if len(window) > self.cfg.replay_window:
                window.popitem(last=False)
        req = Request(body=body, sender=frm.decode(errors="replace"), id=env.id, cause=env.cause,
                      buffers=frames[3:], role=role.decode(errors="replace"))
        self._active_handlers += 1
        self._running_from[caller] = running + 1
        self._nursery.start_soon(self._serve, frm, caller, req)

    def _on_reply(self, frm: bytes, role: bytes, env: Envelope, buffers: list) -> None:
        slot = self._pending.get(env.id)
        from_hub = frm == HUB_B
        if slot is None and not (from_hub and env.id == 0):
            return                                   # late reply to a call that gave up
        if slot is not None and not slot.answered_by(frm, role):
            self._bad_input.warning(("reply", frm), "ignored a reply from %r to a call to %r",
                                    frm, slot.to)
            return
        try:
            body = any_decoder().decode(env)
        except BadMessage as e:
            body = Error(code=e.code, message=f"undecodable reply: {e.message}")
        if from_hub and isinstance(body, Error):
            if body.code == ErrorCode.NOT_REGISTERED:
                if self.register:
                    self._need_register = True       # the hub restarted and forgot us
            elif slot is None:
                self._bad_input.warning("hub", "hub refused a one-way message: %s: %s",
                                        body.code, body.message)
        if slot is None:
            return
        slot.body = body
        slot.buffers = buffers
        slot.done.set()

    async def _serve(self, frm: bytes, caller: bytes, req: Request) -> None:
        meter, started, outcome = self.meter, time.perf_counter(), "ok"
        if meter is not None:
            meter.serving(req)
        try:
            out = await self._handlers[type(req.body)](req)
        except Refused as e:
            out, outcome = Error(code=e.code, message=e.message, retry=e.retry), "refused"
        except Exception as e:                       # a handler bug must not kill the node
            kind = type(req.body).__name__              # (its traceback once a minute)
            self._handler_failures.warning(kind, "handler for %s failed", kind, exc_info=True)
            out, outcome = Error(code=ErrorCode.HANDLER, message=f"{type(e).__name__}: {e}"), "error"
        finally:
            if meter is not None:
                meter.served(type(req.body).__name__, outcome, time.perf_counter() - started)
            self._active_handlers -= 1
            n = self._running_from.pop(caller) - 1
            if n:
                self._running_from[caller] = n
        if req.id == 0 or out is None:
            return                                   # one-way: nobody waits for an answer
        body, bufs = out if isinstance(out, tuple) else (out, [])
        try:
            await self._send([frm, encode_envelope(self.node_id, body, id=req.id, reply=True,
                                                   cause=req.cause), *bufs])
        except trio.ClosedResourceError:
            pass

    def _answer_error(self, frm: bytes, env: Envelope | None, code: str, message: str,
                      retry: bool = False) -> None:
        self._bad_input.warning(frm, "refused a message from %r: %s: %s", frm, code, message)
        if env is not None and (env.reply or env.id == 0):
            return
        data = [frm, encode_envelope(self.node_id, Error(code=code, message=message, retry=retry),
                                     id=env.id if env else 0, reply=True)]
        self._nursery.start_soon(self._send_quietly, data)

    async def _send_quietly(self, frames: list) -> None:
        with trio.move_on_after(self.cfg.heartbeat_s):
            try:
                await self._send(frames)
            except trio.ClosedResourceError:
                pass

    async def _pong(self, req: Request) -> Pong:
        return Pong(node_id=self.node_id, role=self.role)

    # -- registration and liveness ---------------------------------------------------
    async def _register(self) -> None:
        """Register with the hub, retrying with back-off while it is away."""
        delay = 0.25
        wait = max(self.cfg.heartbeat_s * self.cfg.liveness, 1.0)
        while True:
            try:
                reg = await self.call(HUB, Register(
                    role=self.role, name=self.node_id, session=self.session,
                    capabilities=self.capabilities, pid=os.getpid(), host=socket.gethostname()),
                    timeout=wait)
                break
            except CallTimeout:
                failure = getattr(self.link, "auth_failure", None)
                if failure and self.registrations == 0:
                    raise HandshakeRefused(failure) from None   # fix the keys, then start again
                log.info("hub at %s not answering; retrying in %.2gs", self.cfg.address, delay)
            except RemoteError as e:
                if not e.retry:
                    raise
            await trio.sleep(delay)
            delay = min(delay * 2, self.cfg.reconnect_max_s)
            await self.link.reset()                  # a fresh connection (Paranoid Pirate)
        assert isinstance(reg, Registered)
        await self.link.connect_events(reachable(reg.events_in, self.cfg.address),
                                       reachable(reg.events_out, self.cfg.address))
        self._caps_dirty = False
        self._last_heard = trio.current_time()
        self.registrations += 1
        log.info("registered with the hub at %s as %s (%s)", self.cfg.address, self.node_id, self.role)

    async def _connect_as_client(self) -> None:
        try:
            info = await self.call(HUB, HubInfo(), timeout=max(self.cfg.heartbeat_s * self.cfg.liveness, 1.0))
        except CallTimeout:
            failure = getattr(self.link, "auth_failure", None)
            if failure:
                raise HandshakeRefused(failure) from None
            raise CallTimeout(f"no hub answers at {self.cfg.address}") from None
        await self.link.connect_events(reachable(info.events_in, self.cfg.address),
                                       reachable(info.events_out, self.cfg.address), publish=False)

    async def _liveness_loop(self) -> None:
        hb, liveness = self.cfg.heartbeat_s, self.cfg.liveness
        while True:
            await trio.sleep(hb)
            if trio.current_time() - self._last_heard > hb * liveness:
                log.warning("hub silent for %.1fs: reconnecting", trio.current_time() - self._last_heard)
                await self.link.reset()
                await self._register()
                continue
            if self._need_register:                  # the hub restarted and forgot us
                self._need_register = False
                await self._register()
                continue
            caps = self.capabilities if self._caps_dirty else None
            self._caps_dirty = False
            with trio.move_on_after(hb):
                await self.notify(HUB, Heartbeat(capabilities=caps))
