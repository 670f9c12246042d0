"""Resource accounting on a worker: Lotus's ActiveResources, CanHandleRequest and
utilization, with Python integers (no unsigned wrap-around when use exceeds memory)."""
from __future__ import annotations

from zqnode.nodes.wire.sectors import WorkerResources
from .resources import Resources

CounterKey = tuple  # (task type or None, sector size)


class Usage:
    """Resources reserved by one group of tasks: a window, or a worker's preparing or
    active tasks. `counters` maps a (task, size) to the request ids counted against
    that type's max-concurrent limit; a worker's preparing and active share one."""

    __slots__ = ("mem_min", "mem_max", "gpu", "cpu", "counters")

    def __init__(self, counters: dict | None = None) -> None:
        self.mem_min = 0
        self.mem_max = 0
        self.gpu = 0.0
        self.cpu = 0
        self.counters: dict[CounterKey, dict[str, int]] = {} if counters is None else counters

    def add(self, key: CounterKey, rid: str, need: Resources, threads: int) -> None:
        """Reserve `need` (using `threads` CPU threads on this host) for request `rid`."""
        if need.gpu_utilization > 0:
            self.gpu += need.gpu_utilization
        self.cpu += threads
        self.mem_min += need.min_memory
        self.mem_max += need.max_memory
        ids = self.counters.get(key)
        if ids is None:
            ids = self.counters[key] = {}
        ids[rid] = ids.get(rid, 0) + 1

    def free(self, key: CounterKey, rid: str, need: Resources, threads: int) -> None:
        """Undo an `add` with the same arguments."""
        if need.gpu_utilization > 0:
            self.gpu -= need.gpu_utilization
        self.cpu -= threads
        self.mem_min -= need.min_memory
        self.mem_max -= need.max_memory
        ids = self.counters.get(key)
        if ids is not None and rid in ids:
            if ids[rid] <= 1:
                del ids[rid]
                if not ids:
                    del self.counters[key]
            else:
                ids[rid] -= 1

    def count(self, task: str | None = None) -> int:
        """Distinct requests counted, for one task type or all (Lotus taskCount)."""
        return sum(len(ids) for key, ids in self.counters.items()
                   if task is None or key[0] == task)

    def utilization(self, r: WorkerResources) -> float:
        return utilization(self, r)


def can_handle(u: Usage, need: Resources, r: WorkerResources, key: CounterKey,
               rid: str | None, ignore_resources: bool = False) -> bool:
    """Lotus CanHandleRequest: may a task needing `need` be added to `u` on this host?"""
    if need.max_concurrent > 0:
        ids = u.counters.get(key)
        if ids and len(ids) >= need.max_concurrent and (rid is None or rid not in ids):
            return False
    if ignore_resources:
        return True
    # min memory must fit in RAM; what the host uses itself is assumed swappable
    if need.min_memory + need.base_min_memory > r.mem_physical - u.mem_min:
        return False
    vmem_used = u.mem_max
    reserved = r.mem_used + r.mem_swap_used
    if vmem_used < reserved:
        vmem_used = reserved
    if need.max_memory + need.base_min_memory > r.mem_physical + r.mem_swap - vmem_used:
        return False
    if u.cpu + need.threads(r.cpus, len(r.gpus)) > r.cpus:
        return False
    if r.gpus and need.gpu_utilization > 0 and u.gpu + need.gpu_utilization > len(r.gpus):
        return False
    return True


def utilization(u: Usage, r: WorkerResources) -> float:
    """Fraction in use: the largest of the CPU, RAM, virtual memory and GPU ratios."""
    best = u.cpu / r.cpus
    mem = max(u.mem_min, r.mem_used) / r.mem_physical
    if mem > best:
        best = mem
    vmem = max(u.mem_max, r.mem_used + r.mem_swap_used) / (r.mem_physical + r.mem_swap)
    if vmem > best:
        best = vmem
    if r.gpus:
        gpu = u.gpu / len(r.gpus)
        if gpu > best:
            best = gpu
    return best
