"""The scheduler's errors. All are ValueErrors: bad input, rejected before any change."""
from __future__ import annotations


class SchedulerError(ValueError):
    """An event the scheduler cannot apply; its state is unchanged."""


class ResourceEnvError(SchedulerError):
    """A resource override (Lotus-style env name or config entry) that does not parse."""


class UnknownWorker(SchedulerError):
    """An event names a worker the scheduler does not know (never joined, or removed)."""


class UnknownRequest(SchedulerError):
    """An event names a request the scheduler does not know (never queued, or gone)."""


class DuplicateRequest(SchedulerError):
    """A request id that is already known was queued again."""


class InvalidTransition(SchedulerError):
    """An event that does not fit the request's or worker's current state."""
