"""A node's connection to a hub over ZeroMQ: one DEALER for RPC (IMMEDIATE so nothing
queues for a hub that is not there), a PUB into the hub's XSUB and a SUB on its XPUB.
`bus.memory.MemoryLink` has the same interface: the node hands it two synchronous
callbacks, `on_rpc(batch)` and `on_events(batch)`, called with every batch of messages
that arrives.

Without security the DEALER's zmq identity is the node id. With curve `credentials`
every socket is a CURVE client of the hub's key and the DEALER sets no identity: the
hub names connections itself and binds the node id when the key registers it. A
monitor on the DEALER turns a refused handshake into `auth_failure` (and a log line),
so a node whose key is not allowed says so instead of waiting in silence."""
from __future__ import annotations

import logging
import struct
from contextlib import asynccontextmanager
from typing import Callable

import trio
import zmq

from zqnode.bus.config import BusConfig, configure
from zqnode.bus.keys import Credentials
from zqnode.bus.ratelog import RateLimitedLog
from zqnode.bus.zsock import ZSocket

log = logging.getLogger("zqnode.bus.link")

_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                     | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


@asynccontextmanager
async def open_zmq_link(address: str, identity: str, cfg: BusConfig, ctx: zmq.Context | None,
                        on_rpc: Callable[[list], None], on_events: Callable[[list], None],
                        credentials: Credentials | None = None):
    async with trio.open_nursery() as nursery:
        link = ZmqLink(address, identity, cfg, ctx, on_rpc, on_events, nursery, credentials)
        try:
            await link.reset()
            yield link
        finally:
            link.close()


class ZmqLink:
    def __init__(self, address: str, identity: str, cfg: BusConfig, ctx: zmq.Context | None,
                 on_rpc: Callable[[list], None], on_events: Callable[[list], None],
                 nursery: trio.Nursery, credentials: Credentials | None = None):
        self.address, self.identity, self.cfg = address, identity, cfg
        self.credentials = credentials
        self.auth_failure: str | None = None   # why the hub refused our last handshake
        self._monitor: ZSocket | None = None
        self._auth_log = RateLimitedLog(log, interval_s=30.0)
        self._on_rpc, self._on_events = on_rpc, on_events
        self._nursery = nursery
        self.ctx = ctx or zmq.Context.instance()
        self._rpc: ZSocket | None = None
        self._pub: ZSocket | None = None
        self._sub: ZSocket | None = None
        self._events_at: tuple[str, str] | None = None
        self._prefixes: dict[bytes, int] = {}
        self._events_ready = trio.Event()
        self._events_in = ""

    def close(self) -> None:
        for zs in (self._monitor, self._rpc, self._pub, self._sub):
            if zs is not None:
                zs.close()

    async def _open(self, kind: int, setup, on_batch=None, monitor: bool = False) -> ZSocket:
        sock = configure(self.ctx.socket(kind), self.cfg)
        try:
            c = self.credentials
            if c is not None:
                sock.setsockopt(zmq.CURVE_SERVERKEY, c.server)
                sock.setsockopt(zmq.CURVE_PUBLICKEY, c.public)
                sock.setsockopt(zmq.CURVE_SECRETKEY, c.secret)
                if monitor:              # before connecting: the first handshake counts
                    if self._monitor is not None:
                        self._monitor.close(linger=0)
                    self._monitor = ZSocket(sock.get_monitor_socket(_HANDSHAKE_EVENTS),
                                            on_batch=self._on_monitor)
                    await self._nursery.start(self._monitor.run)
            setup(sock)
        except zmq.ZMQError as e:
            sock.close(linger=0)
            raise OSError(f"cannot connect to the bus at {self.address}: {e}") from None
        zs = ZSocket(sock, on_batch=on_batch)
        await self._nursery.start(zs.run)
        return zs

    # -- RPC --------------------------------------------------------------------
    async def reset(self) -> None:
        """A fresh RPC connection (after the hub went silent). The new socket is in
        place before the old one closes, so a receiver moves over without a gap."""
        def setup(s: zmq.Socket) -> None:
            if self.credentials is None:
                s.setsockopt(zmq.IDENTITY, self.identity.encode())
            s.setsockopt(zmq.IMMEDIATE, 1)
            s.connect(self.address)
        old, self._rpc = self._rpc, await self._open(zmq.DEALER, setup, self._on_rpc, monitor=True)
        if old is not None:
            old.close(linger=0)

    def _on_monitor(self, batch: list) -> None:
        for frames in batch:
            if len(frames[0]) < 6:
                continue
            event, value = struct.unpack("=hi", frames[0][:6])
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.auth_failure = None
                continue
            pub = self.credentials.public.decode()
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.auth_failure = (f"the hub at {self.address} refused this node's key {pub} "
                                     f"(ZAP {value}): allow it on the hub with `zqnode keys allow`")
            else:
                self.auth_failure = (f"the curve handshake with the hub at {self.address} failed: "
                                     "is bus.hub_key (or hub.pub) the hub's public key?")
            self._auth_log.warning(event, "%s", self.auth_failure)

    async def send(self, frames: list) -> None:
        while True:
            rpc = self._rpc
            try:
                return await rpc.send(frames)
            except trio.ClosedResourceError:
                if self._rpc is rpc:
                    raise                    # closed for good, not replaced

    # -- events -----------------------------------------------------------------
    async def connect_events(self, events_in: str, events_out: str, publish: bool = True) -> None:
        """Connect the event sockets. `publish=False` (clients) opens the PUB only at the
        first publish: under curve a reader's key may not publish at all."""
        if self._events_at == (events_in, events_out):
            return
        for zs in (self._pub, self._sub):
            if zs is not None:
                zs.close(linger=0)
        self._pub = None
        self._events_in = events_in
        if publish:
            self._pub = await self._open(zmq.PUB, lambda s: s.connect(events_in))

        def sub_setup(s: zmq.Socket) -> None:
            for prefix in self._prefixes:
                s.setsockopt(zmq.SUBSCRIBE, prefix)
            s.connect(events_out)
        self._sub = await self._open(zmq.SUB, sub_setup, self._on_events)
        self._events_at = (events_in, events_out)
        self._events_ready.set()

    async def publish(self, frames: list) -> None:
        if not self._events_ready.is_set():
            await self._events_ready.wait()
        if self._pub is None:
            events_in = self._events_in
            pub = await self._open(zmq.PUB, lambda s: s.connect(events_in))
            if self._pub is None:
                self._pub = pub
            else:                            # another publish opened one meanwhile
                pub.close(linger=0)
        await self._pub.send(frames)         # PUB never blocks: a full queue drops

    def subscribe(self, prefix: bytes) -> None:
        self._prefixes[prefix] = self._prefixes.get(prefix, 0) + 1
        if self._prefixes[prefix] == 1 and self._sub is not None:
            self._sub.setsockopt(zmq.SUBSCRIBE, prefix)

    def unsubscribe(self, prefix: bytes) -> None:
        n = self._prefixes.get(prefix, 0) - 1
        if n > 0:
            self._prefixes[prefix] = n
            return
        self._prefixes.pop(prefix, None)
        if self._sub is not None and not self._sub.closed:
            self._sub.setsockopt(zmq.UNSUBSCRIBE, prefix)
