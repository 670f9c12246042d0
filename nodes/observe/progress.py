"""Progress of long commands on stderr (`zqnode proofs commp` of a large file, `zqnode
proofs seal`). On a terminal a bar is redrawn in place; elsewhere (with --progress) it
is a line every `every` seconds. Commands show it when stderr is a terminal, or when
asked (--progress); --no-progress hides it.

    bytes = ByteProgress(stream, total=size, label="commp")
    bytes.update(done)            # redrawn at most every `every` seconds
    bytes.finish()

    steps = StepProgress(stream, total=5)
    steps("PC1 labels: 2 layers ...")   # one line per finished step: [ 12.3s] [##...] 2/5 ...
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

WIDTH = 24


def wanted(flag: bool | None, stream: TextIO | None = None) -> bool:
    """--progress (True), --no-progress (False), or neither (None): only on a terminal."""
    if flag is not None:
        return flag
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def bar(fraction: float, width: int = WIDTH) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def size_text(n: float) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def duration_text(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}h{s // 60 % 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def byte_line(label: str, done: int, total: int, elapsed: float) -> str:
    """`commp [######......] 25.0% 1.0 GiB of 4.0 GiB, 512.0 MiB/s, 6s left`"""
    fraction = done / total if total else 1.0
    line = f"{label} {bar(fraction)} {fraction * 100:5.1f}% {size_text(done)} of {size_text(total)}"
    if elapsed > 0 and done > 0:
        rate = done / elapsed
        line += f", {size_text(rate)}/s"
        if done < total:
            line += f", {duration_text((total - done) / rate)} left"
    return line


class ByteProgress:
    def __init__(self, stream: TextIO, total: int, label: str, *, every: float = 0.2,
                 clock: Callable[[], float] = time.monotonic):
        self.stream, self.total, self.label = stream, total, label
        self.every, self.clock = every, clock
        self.started = clock()
        self.shown_at: float | None = None
        self.done = 0
        self.inplace = bool(getattr(stream, "isatty", lambda: False)())

    def update(self, done: int) -> None:
        self.done = done
        now = self.clock()
        if self.shown_at is None or now - self.shown_at >= self.every:
            self.shown_at = now
            self._show(now)

    def finish(self) -> None:
        self._show(self.clock())
        if self.inplace:
            self.stream.write("\n")
        self.stream.flush()

    def _show(self, now: float) -> None:
        line = byte_line(self.label, self.done, self.total, now - self.started)
        self.stream.write(f"\r{line}\x1b[K" if self.inplace else line + "\n")
        self.stream.flush()


class CountingReader:
    """A binary file that reports the bytes read so far to `progress` (commp reads it)."""

    def __init__(self, raw, progress: ByteProgress):
        self.raw, self.progress, self.read_so_far = raw, progress, 0

    def readinto(self, buffer) -> int:
        got = self.raw.readinto(buffer)
        self.read_so_far += got or 0
        self.progress.update(self.read_so_far)
        return got


class StepProgress:
    """The finished steps of a known sequence, one line each with the elapsed time and a
    bar of the steps done (no bar when the count is unknown: total 0)."""

    def __init__(self, stream: TextIO | None, total: int = 0, *,
                 clock: Callable[[], float] = time.perf_counter):
        self.stream, self.total, self.clock = stream, total, clock
        self.started = clock()
        self.done = 0

    def elapsed(self) -> float:
        return self.clock() - self.started

    def line(self, message: str) -> str:
        head = f"[{self.elapsed():6.1f}s]"
        if self.total:
            head += f" {bar(self.done / self.total, 12)} {self.done}/{self.total}"
        return f"{head} {message}"

    def __call__(self, message: str) -> None:
        self.done += 1
        self.within(message)

    def within(self, message: str) -> None:
        """A line inside the current step (a chunk of it, with its ETA): not counted."""
        if self.stream is not None:
            self.stream.write(self.line(message) + "\n")
            self.stream.flush()
