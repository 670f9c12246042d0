"""Warnings about bad input that a flood cannot turn into a full disk.

At most one line per offender per interval (the next line says how many were held
back), and at most `burst` lines per interval from everyone together (then one line
saying how many were dropped). The table of offenders is bounded too.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Callable


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, *, interval_s: float = 10.0, burst: int = 50,
                 max_offenders: int = 1024, clock: Callable[[], float] = time.monotonic):
        self.logger, self.interval, self.burst = logger, interval_s, burst
        self.max_offenders, self.clock = max_offenders, clock
        self._offenders: OrderedDict[object, list] = OrderedDict()   # offender -> [since, held]
        self._window = -float("inf")
        self._lines = 0
        self._dropped = 0

    def warning(self, offender, msg: str, *args, exc_info: bool = False) -> bool:
        """Log `msg % args` for `offender` unless it was heard from within the interval
        (with the exception's traceback when `exc_info`). Returns whether a line was written."""
        now = self.clock()
        entry = self._offenders.get(offender)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return False
        if now - self._window >= self.interval:
            if self._dropped:
                self.logger.warning("%d more bad-input warnings were dropped in the last %gs",
                                    self._dropped, self.interval)
            self._window, self._lines, self._dropped = now, 0, 0
        held = entry[1] if entry is not None else 0
        if entry is None:
            entry = self._offenders[offender] = [now, 0]
            if len(self._offenders) > self.max_offenders:
                self._offenders.popitem(last=False)
        else:
            entry[0], entry[1] = now, 0
            self._offenders.move_to_end(offender)
        if self._lines >= self.burst:
            self._dropped += 1 + held
            return False
        self._lines += 1
        if held:
            msg += f" (and {held} more from this sender in the last %gs)"
            args = (*args, self.interval)
        self.logger.warning(msg, *args, exc_info=exc_info)
        return True
