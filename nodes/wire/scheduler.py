"""Bus messages the scheduler node serves (requests from the manager and the workers).

The worker's name is always the sender the hub stamped, never a claimed field.
"""
from __future__ import annotations

from typing import Union

import msgspec

from zqnode.bus.codec import Msg
from zqnode.nodes.wire.sectors import (SectorRef, SelAlloc, SelExisting, SelMove, SelTask, WorkerInfo,
                                       WorkerResources)

Selector = Union[SelTask, SelAlloc, SelExisting, SelMove]


# ---- diagnostics (sched-diag) -------------------------------------------------------

class DiagRequest(msgspec.Struct, frozen=True, kw_only=True):
    request: str
    sector: SectorRef
    task: str
    priority: int
    sector_size: int
    queued_at: float


class DiagUsage(msgspec.Struct, frozen=True, kw_only=True):
    mem_used_min: int
    mem_used_max: int
    gpu_used: float
    cpu_use: int


class DiagWindow(msgspec.Struct, frozen=True, kw_only=True):
    window: int
    requests: tuple[str, ...]
    allocated: DiagUsage


class DiagWorker(msgspec.Struct, frozen=True, kw_only=True):
    worker: str
    session: str
    hostname: str
    enabled: bool
    last_seen: float
    tasks: tuple[str, ...]
    resources: WorkerResources
    utilization: float
    windows: tuple[DiagWindow, ...]
    open_windows: int
    preparing: DiagUsage
    active: DiagUsage
    task_counts: dict[str, int]  # "PC1:32G" -> requests counted against limits
    running: tuple[tuple[str, str], ...]  # (request, state) of preparing/waiting/running


class SchedDiag(msgspec.Struct, frozen=True, kw_only=True):
    requests: tuple[DiagRequest, ...]  # queue order
    open_windows: tuple[str, ...]  # one worker name per open window
    workers: tuple[DiagWorker, ...]


class SchedEnqueue(Msg):
    """Manager -> scheduler: schedule this work (the request id is the WorkID). Sent again
    whenever the manager is unsure the scheduler has it; a known request is fine.
    `sources`: workers holding the sector's files (fetch from them); `running_on`: a
    worker already runs it (wait for that worker's report before queueing it again)."""
    request: str
    sector: SectorRef
    task: str
    sector_size: int
    priority: int = 0
    selector: Selector = SelTask()
    prepare: str | None = None
    params: bytes = b""
    sources: list[str] = []
    running_on: str = ""


class SchedCancel(Msg):
    request: str


class SchedSync(Msg):
    """Manager -> scheduler: the works it has queued or running; the answer names the
    ones the scheduler does not know, which the manager then enqueues again."""
    requests: list[str]


class SchedSyncReply(Msg):
    unknown: list[str]


class SchedAssigned(Msg):
    """Manager -> scheduler: which worker is `request` given to? (Asked before the
    manager lets a worker start work: a worker key may claim any work.)"""
    request: str


class SchedAssignedReply(Msg):
    worker: str                   # "" when no worker has it


class RunningRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A request a worker is running (a call in its store) or preparing (fetching)."""
    request: str
    task: str
    sector: SectorRef
    sector_size: int
    state: str = "running"        # running | preparing


class SchedWorkerBeat(Msg):
    """Worker -> scheduler, every beat: who it is (a new session = it restarted), what it
    offers (fresh resources each time) and what it is running."""
    session: str
    info: WorkerInfo
    running: list[RunningRequest] = []


class SchedTaskPrepared(Msg):
    request: str
    ok: bool = True
    error: str = ""


class SchedTaskDone(Msg):
    request: str
    ok: bool = True


class SchedAck(Msg):
    known: bool = True


class SchedGetDiag(Msg):
    pass


class SchedDiagReply(Msg):
    diag: SchedDiag
    parked: list[str] = []        # reported running by the manager, awaiting the worker
