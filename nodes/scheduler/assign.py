"""One scheduling pass: fill open worker windows from the queue (Lotus trySched).

Semantics, per request in queue order: the request may go to an open window of an
enabled worker that supports its task, passes its selector and could take it in an
empty window; if the selector marks some of those windows preferred, only those. Among
them it goes to the window that still fits it and is best by the assigner:

- utilization: least utilised worker, counting what this pass already added (Lotus
  LowestUtilizationWS); ties: selector order, fewer tasks this pass, join order.
- spread: fewest tasks this pass (plus its queued/running tasks for the -qcount
  variant); ties: selector order, join order.
- spread-tasks: the same, counting tasks of the request's type only.

The selector order is Lotus's Cmp: lower utilization at the start of the pass, and for
the task selector fewer supported task types first. A worker's older window goes
before its newer one. Lotus breaks out of its search at the first window that is not
better than the best so far; here the best window is found exactly.

Speed (Lotus is O(requests x windows)): requests that behave identically (a queue class:
same task, sector size, priority, selector) share one "family" of candidate workers per
pass (same task, size and selector outcome), a heap ordered by the assigner's key. Keys
only grow within a pass, so a stale entry is re-keyed when it surfaces; a window that
cannot fit a family's request is skipped by that family for the rest of the pass
(fitting is monotone), and a family with no window left is dead for all its classes.
The live classes are merged in queue order with another heap, and the pass stops when
no family is alive. A pass costs about O(classes + assignments x log) plus building
each family once over the workers with open windows. The caller may also limit a pass
to the classes that got new requests (see Scheduler.schedule).
"""
from __future__ import annotations

import heapq

from zqnode.nodes.wire.sectors import SelAlloc, SelExisting, SelMove, SelTask

from .queue import RequestClass, RequestQueue
from .usage import Usage, can_handle, utilization
from .workers import _EMPTY, Worker

UTILIZATION, SPREAD, SPREAD_TASKS = "utilization", "spread", "spread-tasks"
ASSIGNER_KINDS = {
    "utilization": (UTILIZATION, False),
    "spread": (SPREAD, False),
    "experiment-spread-qcount": (SPREAD, True),
    "experiment-spread-tasks": (SPREAD_TASKS, False),
    "experiment-spread-tasks-qcount": (SPREAD_TASKS, True),
}


class PassWindow:
    """An open window of a worker during one pass."""

    __slots__ = ("w", "k", "usage", "todo", "util")

    def __init__(self, w: Worker, k: int, util: float = 0.0) -> None:
        self.w, self.k = w, k
        self.usage = Usage()
        self.todo: list = []
        self.util = util  # utilization(usage, w.resources), kept up to date


class Family:
    """Candidate workers shared by all queue classes with the same task, sector size and
    selector outcome: a heap of workers by the assigner's key, and per worker the first
    of its open windows that may still fit this family's requests."""

    __slots__ = ("task", "size", "key", "by_ntypes", "heap", "slots", "dead")

    def __init__(self, task: str, size: int, by_ntypes: bool) -> None:
        self.task, self.size, self.by_ntypes = task, size, by_ntypes
        self.key = (task, size)
        self.heap: list[tuple] = []
        # worker -> [first open window that may fit, its needs, its threads]
        self.slots: dict[Worker, list] = {}
        self.dead = False


class Pass:
    def __init__(self, pass_id: int, workers: list[Worker], windows_per_worker: int,
                 assigner: str, path_owners: dict[str, list[Worker]]) -> None:
        self.id = pass_id
        self.windows_per_worker = windows_per_worker
        self.kind, self.qcount = ASSIGNER_KINDS[assigner]
        self.path_owners = path_owners
        self.open = [w for w in workers if w.enabled and len(w.windows) < windows_per_worker]
        # paths of workers with an open window: a sector elsewhere has no holder here
        self.open_paths = frozenset(p for w in self.open for p in w.path_ids)
        self._open_by_task: dict[str, list[Worker]] = {}
        self.families: dict[tuple, Family] = {}
        self._resolved: dict[tuple, Family | None] = {}
        self._all_seal: dict[str, bool] = {}
        self.touched: list[Worker] = []

    # ---- workers and their open windows ------------------------------------------------

    def _init_worker(self, w: Worker) -> None:
        w.pass_id = self.id
        w.u0 = w.utilization()
        w.du = 0.0
        w.n_pass = w.pver = 0
        w.n_task, w.q_task = {}, {}
        w.entries = [-1, None, None]  # [version, entry, entry with task-type count]
        w.q0 = w.task_count() if self.qcount and self.kind == SPREAD else 0
        empty = utilization(_EMPTY, w.resources)
        w.pass_windows = [PassWindow(w, k, empty)
                          for k in range(self.windows_per_worker - len(w.windows))]

    def _is_open(self, w: Worker) -> bool:
        return w.enabled and len(w.windows) < self.windows_per_worker

    def open_by_task(self, task: str) -> list[Worker]:
        found = self._open_by_task.get(task)
        if found is None:
            found = self._open_by_task[task] = [w for w in self.open if task in w.tasks]
        return found

    def all_seal(self, task: str) -> bool:
        """Do all open workers for this task have a sealing path (so a fetching request
        needs no look at who holds its sector)?"""
        found = self._all_seal.get(task)
        if found is None:
            found = self._all_seal[task] = all(w.seal_paths for w in self.open_by_task(task))
        return found

    def holders(self, locations: tuple[str, ...], task: str, size: int,
                store_only: bool = False, among: tuple[str, ...] = ()) -> list[Worker]:
        """Open workers able to take the task that have a path in `locations`."""
        if self.open_paths.isdisjoint(locations):
            return []
        found: dict[str, Worker] = {}
        for path in locations:
            if among and path not in among:
                continue
            for w in self.path_owners.get(path, ()):
                if store_only and path not in w.store_paths:
                    continue
                if (w.name not in found and task in w.tasks and self._is_open(w)
                        and w.fits_alone(task, size)):
                    found[w.name] = w
        return sorted(found.values(), key=lambda w: w.rank)

    # ---- heap keys ---------------------------------------------------------------------

    def entry(self, fam: Family, w: Worker) -> tuple:
        """The worker's heap entry in a family: its key, then its version and itself.
        (rank is unique, so comparisons never reach the version or the worker.) Built
        once per worker version and shared by its families, except for spread-tasks."""
        if self.kind == SPREAD_TASKS:
            count = w.n_task.get(fam.task, 0)
            if self.qcount:
                queued = w.q_task.get(fam.task)
                if queued is None:
                    queued = w.q_task[fam.task] = w.task_count(fam.task)
                count += queued
            ntypes = len(w.tasks) if fam.by_ntypes else 0
            return (count, ntypes, w.u0, w.rank, w.pver, w)
        cached = w.entries
        if cached[0] != w.pver:
            cached = w.entries = [w.pver, None, None]
        i = 2 if fam.by_ntypes else 1
        found = cached[i]
        if found is None:
            ntypes = len(w.tasks) if fam.by_ntypes else 0
            if self.kind == UTILIZATION:
                found = (w.u0 + w.du, ntypes, w.u0, w.n_pass, w.rank, w.pver, w)
            else:
                found = (w.n_pass + w.q0, ntypes, w.u0, w.rank, w.pver, w)
            cached[i] = found
        return found

    # ---- families ----------------------------------------------------------------------

    def family(self, cls: RequestClass) -> Family | None:
        if cls.fam_pass == self.id:
            return cls.fam
        task, size, sel = cls.task, cls.size, cls.selector
        same = (task, size, sel)  # classes differing only in priority share the answer
        if same in self._resolved:
            fam = self._resolved[same]
            cls.fam_pass, cls.fam = self.id, fam
            return fam
        kind = type(sel)
        chosen: list[Worker] | None = None  # candidates already known (holders)
        extras: frozenset[str] = frozenset()
        if kind is SelTask:
            key = ("task", task, size)
        elif kind is SelAlloc:
            key = ("alloc", task, size, sel.path_type, sel.storage_ids)
        elif kind is SelExisting:
            holders = ([] if sel.allow_fetch and self.all_seal(task)
                       else self.holders(sel.locations, task, size))
            if not sel.allow_fetch:
                chosen = holders
                key = ("holders", task, size, tuple(w.name for w in holders))
            else:  # any sealing path may fetch; holders without one are extra
                extras = frozenset(w.name for w in holders if not w.seal_paths)
                key = ("seal", task, size, tuple(sorted(extras)))
        elif kind is SelMove:
            preferred = self.holders(sel.locations, task, size, store_only=True,
                                     among=sel.storage_ids)
            if preferred:
                chosen = preferred
                key = ("holders", task, size, tuple(w.name for w in preferred))
            elif sel.allow_remote:
                key = ("alloc", task, size, "store", sel.storage_ids)
            else:
                key = None
        else:  # pragma: no cover - events are validated on the way in
            raise TypeError(f"unknown selector {sel!r}")

        fam = None
        if key is not None:
            fam = self.families.get(key)
            if fam is None:
                fam = self.families[key] = self._build(key, chosen, extras)
        self._resolved[same] = fam
        cls.fam_pass, cls.fam = self.id, fam
        return fam

    def _build(self, key: tuple, chosen: list[Worker] | None, extras: frozenset[str]) -> Family:
        what, task, size = key[0], key[1], key[2]
        fam = Family(task, size, by_ntypes=(what == "task"))
        if chosen is None:
            cands = [w for w in self.open_by_task(task) if w.fits_alone(task, size)]
            if what == "alloc":
                path_type, ids = key[3], key[4]
                cands = [w for w in cands
                         if (paths := w.seal_paths if path_type == "seal" else w.store_paths)
                         and (not ids or not paths.isdisjoint(ids))]
            elif what == "seal":
                cands = [w for w in cands if w.seal_paths or w.name in extras]
        else:
            cands = chosen
        heap, slots, key = fam.heap, fam.slots, fam.key
        for w in cands:
            if w.pass_id != self.id:
                self._init_worker(w)
            need = w.table[key]
            slots[w] = [0, need, need.threads(w.resources.cpus, w.ngpus)]
            heap.append(self.entry(fam, w))
        heapq.heapify(heap)
        fam.dead = not heap
        return fam

    def take(self, fam: Family) -> tuple[PassWindow, list] | None:
        """The best window of the family that still fits its request (the best worker's
        oldest window that fits) and the worker's slot in the family, or None."""
        heap, key = fam.heap, fam.key
        while heap:
            top = heap[0]
            w = top[-1]
            if top[-2] != w.pver:  # the worker took something since: re-key
                heapq.heapreplace(heap, self.entry(fam, w))
                continue
            slot = fam.slots[w]
            need, r, ignore = slot[1], w.resources, w.info.ignore_resources
            windows = w.pass_windows
            k = slot[0]
            while k < len(windows):
                if can_handle(windows[k].usage, need, r, key, None, ignore):
                    slot[0] = k
                    return windows[k], slot
                k += 1  # full for this family for the rest of the pass (monotone)
            heapq.heappop(heap)
        fam.dead = True
        return None

    def assign(self, fam: Family, pw: PassWindow, slot: list, req) -> None:
        w = pw.w
        need, threads = slot[1], slot[2]
        pw.usage.add(fam.key, req.rid, need, threads)
        if self.kind == UTILIZATION:
            util = utilization(pw.usage, w.resources)
            w.du += util - pw.util
            pw.util = util
        if not w.n_pass:
            self.touched.append(w)
        w.n_pass += 1
        if self.kind == SPREAD_TASKS:
            w.n_task[fam.task] = w.n_task.get(fam.task, 0) + 1
        w.pver += 1
        pw.todo.append(req)
        req.need, req.threads = need, threads
        heapq.heapreplace(fam.heap, self.entry(fam, w))  # w's entry is on top


def run_pass(pass_id: int, workers: list[Worker], queue: RequestQueue, windows_per_worker: int,
             assigner: str, path_owners: dict[str, list[Worker]],
             classes: list[RequestClass] | None = None) -> list[PassWindow]:
    """Fill open windows; returns the windows that got requests, by worker join order
    and window age. Assigned requests leave the queue. `classes` limits the pass to
    those queue classes (the caller knows the others cannot be assigned)."""
    if not queue.size:
        return []
    p = Pass(pass_id, workers, windows_per_worker, assigner, path_owners)
    if not p.open:
        return []
    if classes is None:
        classes = queue.classes.values()
    family, take, assign = p.family, p.take, p.assign
    # only classes with a live family take part; stop when every family is dead
    merge, heads = [], {}
    for cls in classes:
        if cls:
            fam = family(cls)
            if fam is not None and not fam.dead:
                merge.append((cls.entries[cls.head], cls))
                heads[cls] = cls.head
    heapq.heapify(merge)
    live = sum(not fam.dead for fam in p.families.values())
    heappop, heapreplace = heapq.heappop, heapq.heapreplace
    while merge and live:
        entry, cls = merge[0]
        fam = cls.fam
        if fam.dead:
            heappop(merge)
            continue
        found = take(fam)
        if found is None:  # the family just died
            live -= 1
            heappop(merge)
            continue
        assign(fam, found[0], found[1], entry[-1])
        cls.head += 1
        if cls.head < len(cls.entries):
            item = (cls.entries[cls.head], cls)
            n = len(merge)
            # still first (common: a class's requests are often next to each other)?
            if (n < 2 or item < merge[1]) and (n < 3 or item < merge[2]):
                merge[0] = item
            else:
                heapreplace(merge, item)
        else:
            heappop(merge)
    for cls, head in heads.items():
        if cls.head != head:
            queue.took(cls, cls.head - head)
    return [pw for w in sorted(p.touched, key=lambda w: w.rank)
            for pw in w.pass_windows if pw.todo]
