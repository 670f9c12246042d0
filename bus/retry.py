"""The one way zqnode waits before trying again: capped doubling. Shells that resend until
answered walk `backoff`; pure cores that count failures ask `doubling` for the wait."""
from __future__ import annotations

from collections.abc import Iterator


def doubling(first: float, cap: float, failures: int) -> float:
    """Seconds to wait after the `failures`-th consecutive failure (1, 2, ...): `first`,
    then twice as long each time, at most `cap`."""
    return min(first * 2.0 ** min(max(failures - 1, 0), 1000), cap)   # float: no overflow error


def backoff(first: float, cap: float) -> Iterator[float]:
    """The waits between attempts, forever: `first`, doubling, at most `cap`."""
    failures = 0
    while True:
        failures += 1
        yield doubling(first, cap, failures)
