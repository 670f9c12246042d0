"""A brute-force scheduling pass, written the way Lotus's trySched is: for every queued
request, look at every open window. O(requests x windows). It has the same semantics as
assign.run_pass (same contract, same result), and exists as the oracle that tests
compare the fast pass with, and as the baseline tools/bench_sched.py measures."""
from __future__ import annotations

from zqnode.nodes.wire.sectors import SelAlloc, SelExisting, SelMove, SelTask

from .assign import ASSIGNER_KINDS, SPREAD, UTILIZATION, PassWindow
from .queue import RequestQueue
from .usage import can_handle, utilization
from .workers import Worker


def _selector_ok(sel, w: Worker) -> tuple[bool, bool]:
    """(ok, preferred) for one worker, as Lotus's selectors' Ok."""
    if isinstance(sel, SelTask):
        return True, False
    if isinstance(sel, SelAlloc):
        paths = w.seal_paths if sel.path_type == "seal" else w.store_paths
        return bool(paths) and (not sel.storage_ids or not paths.isdisjoint(sel.storage_ids)), False
    if isinstance(sel, SelExisting):
        holds = not w.path_ids.isdisjoint(sel.locations)
        return holds or (sel.allow_fetch and bool(w.seal_paths)), False
    if isinstance(sel, SelMove):
        stores = w.store_paths if not sel.storage_ids else w.store_paths & set(sel.storage_ids)
        preferred = not stores.isdisjoint(sel.locations)
        return (bool(stores) and sel.allow_remote) or preferred, preferred
    raise TypeError(sel)


def reference_pass(pass_id: int, workers: list[Worker], queue: RequestQueue,
                   windows_per_worker: int, assigner: str,
                   path_owners: dict | None = None) -> list[PassWindow]:
    kind, qcount = ASSIGNER_KINDS[assigner]
    open_workers = [w for w in workers if w.enabled and len(w.windows) < windows_per_worker]
    if not open_workers or not queue.size:
        return []
    util0, assigned, assigned_task, added = {}, {}, {}, {}
    windows: list[PassWindow] = []
    for w in open_workers:
        util0[w.name] = w.utilization()
        assigned[w.name] = added[w.name] = 0
        windows += [PassWindow(w, k) for k in range(windows_per_worker - len(w.windows))]

    def key(req, pw: PassWindow) -> tuple:
        w = pw.w
        ntypes = len(w.tasks) if isinstance(req.selector, SelTask) else 0
        u0 = util0[w.name]
        if kind == UTILIZATION:
            return (u0 + added[w.name], ntypes, u0, assigned[w.name], w.rank, pw.k)
        if kind == SPREAD:
            return (assigned[w.name] + (w.task_count() if qcount else 0), ntypes, u0,
                    w.rank, pw.k)
        count = assigned_task.get((w.name, req.task), 0)
        count += w.task_count(req.task) if qcount else 0
        return (count, ntypes, u0, w.rank, pw.k)

    for req in list(queue):
        tkey = (req.task, req.size)
        acceptable, have_preferred = [], False
        for pw in windows:  # step 1: every window, against an empty window
            w = pw.w
            if req.task not in w.tasks or not w.fits_alone(req.task, req.size):
                continue
            ok, preferred = _selector_ok(req.selector, w)
            if not ok or (have_preferred and not preferred):
                continue
            if preferred and not have_preferred:
                acceptable, have_preferred = [], True
            acceptable.append(pw)
        best, best_key = None, None
        for pw in acceptable:  # step 2: the best window that still fits
            w = pw.w
            if not can_handle(pw.usage, w.table[tkey], w.resources, tkey, None,
                              w.info.ignore_resources):
                continue
            k = key(req, pw)
            if best_key is None or k < best_key:
                best, best_key = pw, k
        if best is None:
            continue
        w = best.w
        need = w.table[tkey]
        threads = need.threads(w.resources.cpus, len(w.resources.gpus))
        before = utilization(best.usage, w.resources)
        best.usage.add(tkey, req.rid, need, threads)
        added[w.name] += utilization(best.usage, w.resources) - before
        assigned[w.name] += 1
        assigned_task[(w.name, req.task)] = assigned_task.get((w.name, req.task), 0) + 1
        best.todo.append(req)
        req.need, req.threads = need, threads
        queue.remove(req)
    return [pw for pw in windows if pw.todo]
