"""The points where a peer or a hub tells an observer about its traffic (nodes.observe
counts it for /metrics). The bus calls a meter at these points and never depends on
what it does; without one (the default) each point costs one attribute test."""
from __future__ import annotations

from typing import Protocol


class Meter(Protocol):
    # frames as they cross the socket: RPC in [sender, role, envelope, *buffers] (a tapped
    # copy of an RPC: [hub, tap, topic, from, to, envelope]), RPC out [to, envelope,
    # *buffers], events in and out as bus.codec has them (the envelope in the first frame,
    # after the topic)
    def rpc_in(self, batch: list) -> None: ...
    def events_in(self, batch: list) -> None: ...
    def rpc_out(self, frames: list) -> None: ...
    def event_out(self, frames: list) -> None: ...

    def called(self, kind: str, outcome: str, seconds: float) -> None:
        """A call ended: outcome ok | error (a typed error reply) | timeout."""

    def serving(self, request) -> None:
        """In the handler's task, just before the handler runs (bus.peer.Request)."""

    def served(self, kind: str, outcome: str, seconds: float) -> None:
        """A handler ended: outcome ok | refused | error."""


class HubMeter(Protocol):
    def routed(self, msg: list) -> None:
        """A message the hub is about to route: [connection, to, envelope, *buffers]."""
