"""The scheduler core's inputs (events), outputs (commands), and their parts.

All are frozen msgspec Structs, tagged by class name, with a `cause` string saying why
they exist (commands inherit the cause of the event that produced them).
"""
from __future__ import annotations

from typing import Literal, Union

import msgspec

from zqnode.nodes.wire.sectors import SelTask, Selector, SectorRef, WorkerInfo, WorkerResources


class _Msg(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    pass


# ---- events -------------------------------------------------------------------------

class WorkerJoined(_Msg, frozen=True, kw_only=True):
    worker: str
    session: str
    info: WorkerInfo
    cause: str


class WorkerHeartbeat(_Msg, frozen=True, kw_only=True):
    worker: str
    session: str
    resources: WorkerResources
    cause: str


class WorkerLeft(_Msg, frozen=True, kw_only=True):
    worker: str
    cause: str


class TaskQueued(_Msg, frozen=True, kw_only=True):
    request: str
    sector: SectorRef
    task: str
    sector_size: int
    priority: int = 0  # larger is more urgent (deal sectors use 1024 in Lotus)
    selector: Selector = SelTask()
    prepare: str | None = None  # task type of the preparing step (usually "GET"), or none
    cause: str


class TaskCancelled(_Msg, frozen=True, kw_only=True):
    request: str
    cause: str


class TaskPrepared(_Msg, frozen=True, kw_only=True):
    request: str
    cause: str


class TaskFinished(_Msg, frozen=True, kw_only=True):
    request: str
    ok: bool = True
    cause: str


class TaskAdopted(_Msg, frozen=True, kw_only=True):
    """A worker reports running a request the scheduler does not know (the scheduler
    or the worker restarted): it is counted as running there, whether it fits or not."""

    request: str
    worker: str
    sector: SectorRef
    task: str
    sector_size: int
    priority: int = 0
    cause: str


class Tick(_Msg, frozen=True, kw_only=True):
    cause: str = "tick"


Event = Union[WorkerJoined, WorkerHeartbeat, WorkerLeft, TaskQueued, TaskCancelled,
              TaskPrepared, TaskFinished, TaskAdopted, Tick]


# ---- commands -----------------------------------------------------------------------

class WorkerAdded(_Msg, frozen=True, kw_only=True):
    worker: str
    session: str
    cause: str


class AssignWindow(_Msg, frozen=True, kw_only=True):
    """A window of a worker was filled with these requests, in this order."""

    worker: str
    window: int
    requests: tuple[str, ...]
    cause: str


class Prepare(_Msg, frozen=True, kw_only=True):
    """Run the request's preparing step (fetch) on the worker; answer TaskPrepared."""

    worker: str
    request: str
    cause: str


class Run(_Msg, frozen=True, kw_only=True):
    """Run the request's work on the worker; answer TaskFinished."""

    worker: str
    request: str
    cause: str


class Abort(_Msg, frozen=True, kw_only=True):
    """Stop a cancelled request that is preparing or running; answer TaskFinished."""

    worker: str
    request: str
    cause: str


class Cancelled(_Msg, frozen=True, kw_only=True):
    """The request was cancelled before it started and is gone."""

    request: str
    cause: str


class Requeued(_Msg, frozen=True, kw_only=True):
    """Requests that waited in the worker's windows went back to the queue."""

    worker: str
    requests: tuple[str, ...]
    cause: str


class WorkerDisabled(_Msg, frozen=True, kw_only=True):
    worker: str
    cause: str


class WorkerEnabled(_Msg, frozen=True, kw_only=True):
    worker: str
    cause: str


class WorkerRemoved(_Msg, frozen=True, kw_only=True):
    """The worker is forgotten. `lost` were preparing or running there; the scheduler
    forgets them too, and their owner (the manager's call tracker) decides what to do."""

    worker: str
    lost: tuple[str, ...]
    cause: str


Command = Union[WorkerAdded, AssignWindow, Prepare, Run, Abort, Cancelled, Requeued,
                WorkerDisabled, WorkerEnabled, WorkerRemoved]

ASSIGNERS = ("utilization", "spread", "experiment-spread-qcount", "experiment-spread-tasks",
             "experiment-spread-tasks-qcount")


class SchedulerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    assigner: Literal["utilization", "spread", "experiment-spread-qcount",
                      "experiment-spread-tasks", "experiment-spread-tasks-qcount"] = "utilization"
    windows_per_worker: int = 2  # Lotus SchedWindows
    disable_after_s: float = 15.0  # silent this long: disabled, its windows requeued
    remove_after_s: float = 600.0  # silent this long: removed
    # Lotus-style overrides applied to every worker (a worker's own ones win); unlike a
    # worker's (often taken from its process environment), unknown names are errors here
    resource_env: dict[str, str] = {}
