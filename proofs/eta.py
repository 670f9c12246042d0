"""One progress line for long work: how far, how long so far, and the time left at the
rate so far (what `proofs seal` and the worker's task log print within a stage)."""
from __future__ import annotations

import time


class Eta:
    """Counts `total` units of work started now; `line` says where `done` of them stand."""

    def __init__(self, what: str, total: int):
        self.what, self.total, self.started = what, max(total, 1), time.perf_counter()

    def line(self, done: int, where: str = "") -> str:
        spent = time.perf_counter() - self.started
        left = spent / done * (self.total - done) if done else 0.0
        return (f"{self.what}{where} ({100 * done // self.total}%, {spent:.1f}s, "
                f"ETA {left:.0f}s)")
