"""A worker as the scheduler sees it: its info, windows, and preparing/active use."""
from __future__ import annotations

import msgspec

from zqnode.nodes.wire.sectors import WorkerInfo, WorkerResources
from .queue import Request
from .resources import Resources, ResourceTable
from .usage import Usage, can_handle, utilization


_EMPTY = Usage()  # never changed: what an empty window holds


class Window:
    """A filled window sent to the worker: requests waiting there, in order, and the
    resources the scheduler allotted to it (kept until the window drains, as Lotus
    does, so compaction only moves what still fits)."""

    __slots__ = ("id", "usage", "todo")

    def __init__(self, wid: int, usage: Usage, todo: list[Request]) -> None:
        self.id, self.usage, self.todo = wid, usage, todo


class Worker:
    def __init__(self, name: str, session: str, info: WorkerInfo, table: ResourceTable,
                 rank: int, now: float) -> None:
        self.name, self.session, self.rank = name, session, rank
        self.enabled = True
        self.last_seen = now
        self.windows: list[Window] = []  # filled windows at the worker, oldest first
        counters: dict = {}  # preparing and active count tasks together (as Lotus)
        self.preparing = Usage(counters)
        self.active = Usage(counters)
        self.waiting: list[Request] = []  # prepared, waiting for active resources
        self.running: dict[str, Request] = {}  # preparing, waiting or running here
        self.set_info(info, table)
        # per-pass scratch (see assign.py), reset when `pass_id` changes
        self.pass_id = -1
        self.u0 = self.du = 0.0
        self.n_pass = self.pver = self.q0 = 0
        self.n_task: dict[str, int] = {}
        self.q_task: dict[str, int] = {}
        self.pass_windows: list = []
        self.entries: list = [-1, None, None]

    def set_info(self, info: WorkerInfo, table: ResourceTable) -> None:
        self.info, self.table = info, table
        self.tasks = frozenset(info.tasks)
        self.seal_paths = frozenset(p.id for p in info.paths if p.can_seal)
        self.store_paths = frozenset(p.id for p in info.paths if p.can_store)
        self.path_ids = frozenset(p.id for p in info.paths)
        self.set_resources(info.resources)

    def set_resources(self, resources: WorkerResources) -> None:
        self.resources = resources
        self.ngpus = len(resources.gpus)
        self._fits_alone: dict[tuple[str, int], bool] = {}

    @property
    def ignore_resources(self) -> bool:
        return self.info.ignore_resources

    def need(self, task: str, size: int) -> Resources:
        return self.table[(task, size)]

    def prep_need(self, task: str, size: int, prepare: str | None) -> Resources:
        """Lotus PrepResourceSpec: the task's needs, with the preparing task's limit."""
        need = self.table[(task, size)]
        if prepare is not None and prepare != task:
            limit = self.table[(prepare, size)].max_concurrent
            if limit != need.max_concurrent:
                need = msgspec.structs.replace(need, max_concurrent=limit)
        return need

    def threads(self, need: Resources) -> int:
        return need.threads(self.resources.cpus, self.ngpus)

    def fits_alone(self, task: str, size: int) -> bool:
        """Could an empty window of this worker take the task (Lotus's trySched step 1)?"""
        key = (task, size)
        fits = self._fits_alone.get(key)
        if fits is None:
            fits = self._fits_alone[key] = can_handle(
                _EMPTY, self.table[key], self.resources, key, None, self.info.ignore_resources)
        return fits

    def utilization(self) -> float:
        """Lotus WorkerHandle.Utilization: active + preparing + every window's share."""
        r = self.resources
        u = utilization(self.active, r) + utilization(self.preparing, r)
        for window in self.windows:
            u += utilization(window.usage, r)
        return u

    def task_count(self, task: str | None = None) -> int:
        """Requests on this worker (preparing, waiting, running or in its windows)."""
        n = sum(1 for req in self.running.values() if task is None or req.task == task)
        for window in self.windows:
            n += sum(1 for req in window.todo if task is None or req.task == task)
        return n
