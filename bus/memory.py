"""The bus in memory, for tests and simulations: the same frames, envelopes, routing
(`bus.hub.Router`) and peers as over ZeroMQ, with no sockets, so whole clusters run
under `trio.testing.MockClock(autojump_threshold=0)`. Addresses are `mem://NAME`.

Delivery is a direct call of the receiving link's callbacks, like the owner task of a
zmq socket calling them with a batch of one.
"""
from __future__ import annotations

from typing import Callable

import trio

from zqnode.bus.config import BusConfig
from zqnode.bus.hub import NoRoute, Router

_hubs: dict[str, "MemoryHub"] = {}
_hub_changed = trio.lowlevel.ParkingLot()


class MemoryHub(Router):
    def __init__(self, cfg: BusConfig | None = None):
        super().__init__(cfg or BusConfig(address="mem://bus"))
        self.address = self.cfg.address
        self.links: dict[bytes, MemoryLink] = {}

    def deliver(self, identity: bytes, frames: list) -> None:
        link = self.links.get(identity)
        if link is None:
            raise NoRoute()
        link.on_rpc([frames[1:]])              # the DEALER sees [from, role, envelope, ...]

    def emit(self, frames: list) -> None:
        topic = frames[0]
        for link in self.links.values():
            if link.wants(topic):
                link.on_events([frames])

    def attach(self, link: "MemoryLink") -> None:
        self.links[link.identity.encode()] = link    # like ROUTER_HANDOVER

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        if self.address in _hubs:
            raise OSError(f"hub cannot bind {self.address}: address in use")
        self.start_core(self.address + ".events-in", self.address + ".events-out")
        _hubs[self.address] = self
        _hub_changed.unpark_all()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.tick_loop)
                task_status.started(self.address)
                await trio.sleep_forever()
        finally:
            del _hubs[self.address]
            self.links.clear()


class MemoryLink:
    def __init__(self, address: str, identity: str, cfg: BusConfig, ctx,
                 on_rpc: Callable[[list], None], on_events: Callable[[list], None],
                 credentials=None):
        self.address, self.identity, self.cfg = address, identity, cfg
        self.on_rpc, self.on_events = on_rpc, on_events
        self.prefixes: dict[bytes, int] = {}
        self._hub: MemoryHub | None = None

    def close(self) -> None:
        if self._hub is not None and self._hub.links.get(self.identity.encode()) is self:
            del self._hub.links[self.identity.encode()]

    async def _current_hub(self) -> MemoryHub:
        """The hub at our address, waiting while there is none (like zmq's IMMEDIATE)."""
        while (hub := _hubs.get(self.address)) is None:
            await _hub_changed.park()
        if hub is not self._hub:
            self._hub = hub
            hub.attach(self)
        return hub

    async def reset(self) -> None:
        self._hub = None                     # re-attach to whatever hub is there now

    async def send(self, frames: list) -> None:
        hub = await self._current_hub()
        hub.route([self.identity.encode(), *frames])
        await trio.lowlevel.checkpoint()

    async def connect_events(self, events_in: str, events_out: str, publish: bool = True) -> None:
        await self._current_hub()

    async def publish(self, frames: list) -> None:
        hub = await self._current_hub()
        hub.forward_event(None, frames)
        await trio.lowlevel.checkpoint()

    def wants(self, topic: bytes) -> bool:
        return any(topic.startswith(p) for p in self.prefixes)

    def subscribe(self, prefix: bytes) -> None:
        self.prefixes[prefix] = self.prefixes.get(prefix, 0) + 1

    def unsubscribe(self, prefix: bytes) -> None:
        n = self.prefixes.get(prefix, 0) - 1
        if n > 0:
            self.prefixes[prefix] = n
        else:
            self.prefixes.pop(prefix, None)
