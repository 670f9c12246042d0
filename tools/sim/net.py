"""The bus between simulated nodes: request/answer calls with a latency, nodes that go
down, and (with chaos) slow and lost messages.

`net.call(src, dst, fn, *args, ...)` runs fn(*args) at node `dst` after the latency
and hands its return value to `ack` at `src` one latency later. A request or answer
that is lost, or a `dst` that is down, is what the sender sees as a time-out: it tries
again after `timeout` (plus its back-off), `tries` times in all (None: until answered,
as the real nodes do for returns, reports and enqueues), then `give_up()`. A retry is a
new request: handlers must be idempotent, as the real ones are. A sender that went down
or restarted (another session) meanwhile neither retries nor hears the answer."""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .loop import Loop


class Node:
    """What the bus knows of a node: its name, whether it is up, its session."""

    def __init__(self, name: str):
        self.name = name
        self.up = True
        self.session = 1


@dataclass
class NetChaos:
    slow_p: float = 0.0                # share of messages delayed ...
    slow_s: tuple[float, float] = (0.5, 10.0)   # ... by this many seconds (uniform)
    lost_p: float = 0.0                # share of requests or answers lost


class Net:
    def __init__(self, loop: Loop, rng: random.Random, latency: float = 0.001,
                 chaos: NetChaos | None = None):
        self.loop, self.rng, self.latency = loop, rng, latency
        self.chaos = chaos or NetChaos()
        self.nodes: dict[str, Node] = {}
        self.sent = self.delayed = self.lost = self.timeouts = 0

    def add(self, node: Node) -> None:
        self.nodes[node.name] = node

    def _delay(self) -> float:
        c = self.chaos
        if c.slow_p and self.rng.random() < c.slow_p:
            self.delayed += 1
            return self.latency + self.rng.uniform(*c.slow_s)
        return self.latency

    def _lost(self) -> bool:
        if self.chaos.lost_p and self.rng.random() < self.chaos.lost_p:
            self.lost += 1
            return True
        return False

    def call(self, src: Node, dst: str, fn: Callable, *args, ack: Callable | None = None,
             tries: int | None = None, timeout: float = 5.0, backoff: tuple[float, float] = (0.25, 4.0),
             give_up: Callable | None = None) -> None:
        self._attempt(src, src.session, dst, fn, args, ack, tries, timeout, backoff, backoff[0],
                      give_up, 1)

    def _attempt(self, src, session, dst, fn, args, ack, tries, timeout, backoff, delay, give_up, n):
        if not src.up or src.session != session:
            return
        self.sent += 1
        sent_at = self.loop.now
        lost_request = self._lost()
        self.loop.at(sent_at + self._delay(), self._arrive, src, session, dst, fn, args, ack, tries,
                     timeout, backoff, delay, give_up, n, sent_at, lost_request)

    def _arrive(self, src, session, dst, fn, args, ack, tries, timeout, backoff, delay, give_up, n,
                sent_at, lost_request):
        node = self.nodes.get(dst)
        answered = not lost_request and node is not None and node.up
        if answered:
            result = fn(*args)
            if self._lost():
                answered = False
            elif ack is not None:
                self.loop.at(self.loop.now + self._delay(), self._answer, src, session, ack, result)
        if answered:
            return
        self.timeouts += 1
        if tries is not None and n >= tries:
            if give_up is not None:
                self.loop.at(sent_at + timeout, self._give_up, src, session, give_up)
            return
        self.loop.at(sent_at + timeout + delay, self._attempt, src, session, dst, fn, args, ack, tries,
                     timeout, backoff, min(delay * 2, backoff[1]), give_up, n + 1)

    def _answer(self, src, session, ack, result):
        if src.up and src.session == session:
            ack(result)

    def _give_up(self, src, session, give_up):
        if src.up and src.session == session:
            give_up()
