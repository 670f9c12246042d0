"""What a requester's wait can raise besides the tracker's errors."""
from __future__ import annotations


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
