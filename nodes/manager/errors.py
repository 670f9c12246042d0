"""The manager's errors: the call tracker's refusals and what a requester's wait can
raise. Its clients (nodes.manager.api) raise the same classes from the codes on the wire."""
from __future__ import annotations


class TrackerError(ValueError):
    pass


class UnknownWork(TrackerError):
    """No work with that id (never asked for, or consumed)."""


class InvalidTransition(TrackerError):
    """The event does not fit the work's state (e.g. consuming unfinished work)."""


class AmbiguousJob(TrackerError):
    pass


class WorkFailed(Exception):
    """The work ran and failed (or its preparing step did); `error` says why."""

    def __init__(self, work_id: str, error: str):
        super().__init__(f"work {work_id[:12]} failed: {error}")
        self.work_id, self.error = work_id, error


class WorkAborted(WorkFailed):
    """The work was aborted (by an operator or the requester)."""

    def __init__(self, work_id: str, error: str = "aborted"):
        super().__init__(work_id, error)
        self.args = (f"work {work_id[:12]} was aborted",)
