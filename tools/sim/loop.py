"""A discrete-event loop: callbacks at simulated times, run in (time, arrival) order.

Not trio: trio's scheduler runs each batch of ready tasks in a random order (on purpose),
so a run under MockClock is not a function of its seed; here the same calls in the same
order give the same run, and a timer costs a heap push instead of a task."""
from __future__ import annotations

import heapq
from collections.abc import Callable


class Timer:
    __slots__ = ("args", "at", "fn")

    def __init__(self, at: float, fn: Callable, args: tuple):
        self.at, self.fn, self.args = at, fn, args

    def cancel(self) -> None:
        self.fn = None

    @property
    def active(self) -> bool:
        return self.fn is not None


class Loop:
    def __init__(self, start: float = 0.0):
        self.now = start
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = 0
        self.calls = 0                  # callbacks run (a measure of the work done)

    def at(self, when: float, fn: Callable, *args) -> Timer:
        """Call fn(*args) at simulated time `when` (never before now)."""
        t = Timer(max(when, self.now), fn, args)
        self._seq += 1
        heapq.heappush(self._heap, (t.at, self._seq, t))
        return t

    def after(self, delay: float, fn: Callable, *args) -> Timer:
        return self.at(self.now + delay, fn, *args)

    def soon(self, fn: Callable, *args) -> Timer:
        """After everything already due now (an answer that must not run inside its caller)."""
        return self.at(self.now, fn, *args)

    def run(self, until: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= until:
            when, _, t = heapq.heappop(heap)
            if t.fn is None:
                continue
            self.now = when
            fn, t.fn = t.fn, None
            self.calls += 1
            fn(*t.args)
        self.now = max(self.now, until)
