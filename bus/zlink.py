"""A node's connection to a hub over ZeroMQ: one DEALER for RPC (identity = node id,
IMMEDIATE so nothing queues for a hub that is not there), a PUB into the hub's XSUB and
a SUB on its XPUB. `bus.memory.MemoryLink` has the same interface: the node hands it
two synchronous callbacks, `on_rpc(batch)` and `on_events(batch)`, called with every
batch of messages that arrives."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Callable

import trio
import zmq

from bus.config import BusConfig, configure
from bus.zsock import ZSocket


@asynccontextmanager
async def open_zmq_link(address: str, identity: str, cfg: BusConfig, ctx: zmq.Context | None,
                        on_rpc: Callable[[list], None], on_events: Callable[[list], None]):
    async with trio.open_nursery() as nursery:
        link = ZmqLink(address, identity, cfg, ctx, on_rpc, on_events, nursery)
        try:
            await link.reset()
            yield link
        finally:
            link.close()


class ZmqLink:
    def __init__(self, address: str, identity: str, cfg: BusConfig, ctx: zmq.Context | None,
                 on_rpc: Callable[[list], None], on_events: Callable[[list], None],
                 nursery: trio.Nursery):
        self.address, self.identity, self.cfg = address, identity, cfg
        self._on_rpc, self._on_events = on_rpc, on_events
        self._nursery = nursery
        self.ctx = ctx or zmq.Context.instance()
        self._rpc: ZSocket | None = None
        self._pub: ZSocket | None = None
        self._sub: ZSocket | None = None
        self._events_at: tuple[str, str] | None = None
        self._prefixes: dict[bytes, int] = {}
        self._events_ready = trio.Event()

    def close(self) -> None:
        for zs in (self._rpc, self._pub, self._sub):
            if zs is not None:
                zs.close()

    async def _open(self, kind: int, setup, on_batch=None) -> ZSocket:
        sock = configure(self.ctx.socket(kind), self.cfg)
        try:
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
            s.setsockopt(zmq.IDENTITY, self.identity.encode())
            s.setsockopt(zmq.IMMEDIATE, 1)
            s.connect(self.address)
        old, self._rpc = self._rpc, await self._open(zmq.DEALER, setup, self._on_rpc)
        if old is not None:
            old.close(linger=0)

    async def send(self, frames: list) -> None:
        while True:
            rpc = self._rpc
            try:
                return await rpc.send(frames)
            except trio.ClosedResourceError:
                if self._rpc is rpc:
                    raise                    # closed for good, not replaced

    # -- events -----------------------------------------------------------------
    async def connect_events(self, events_in: str, events_out: str) -> None:
        if self._events_at == (events_in, events_out):
            return
        for zs in (self._pub, self._sub):
            if zs is not None:
                zs.close(linger=0)
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
