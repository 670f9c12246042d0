"""What each role exports. A node's shell calls its role's function once, at the end of
its constructor (`observe.manager(self)`, ...): its peer is instrumented
(nodes/observe/bus.py) and a collector reads its public state at every scrape. What
happens at a moment (a task ran, a deadline ended) is counted through the hooks the
shells call where it happens (`worker_task`, `post_outcome`, ...); nothing here patches a
node or imports a role.

Collectors only read: they never change a node, and a node that is gone is skipped.
Counters of failures start at 0 for every label set a node can have (a worker's tasks, a
poster's miners): a dashboard panel or an alert on them has a series on a healthy cluster,
and `increase()` sees the first failure."""
from __future__ import annotations

import shutil
import time
from typing import Awaitable, Callable

import trio

from zqnode.nodes.observe import catalog as K
from zqnode.nodes.observe.bus import instrument_hub, instrument_peer


def _by(items, key) -> dict:
    counts: dict = {}
    for item in items:
        k = key(item)
        counts[k] = counts.get(k, 0) + 1
    return counts


# -- hub ---------------------------------------------------------------------------------------
def hub(router, name: str = "hub") -> None:
    instrument_hub(router, name)


# -- manager (and the sealing state machine beside it) -------------------------------------------
def manager(node) -> None:
    instrument_peer(node.peer)
    K.REGISTRY.add_collector(_collect_manager, node)


def _collect_manager(node) -> None:
    name = node.me.name
    for (task, state), n in _by(node.tracker.works.values(), lambda w: (w.task, w.state)).items():
        K.MANAGER_WORKS.labels(name, task, state).set(n)
    K.MANAGER_BACKLOG.labels(name).set(node.backlog)
    sealing = node.sealing
    if sealing is not None:
        K.CORE_REFUSALS.labels(name, "sealing").set(sealing.refused)
    if sealing is not None and sealing.core is not None:
        sectors = list(sealing.core.sectors.values())
        for state, n in _by(sectors, lambda s: s.state).items():
            K.SEALING_SECTORS.labels(name, state).set(n)
        K.SEALING_PAUSED.labels(name).set(sum(1 for s in sectors if s.paused))


def work_ended(name: str, task: str, state: str, seconds: float) -> None:
    """A work the manager tracks ended (done, failed, aborted), committed: its duration."""
    K.MANAGER_WORK_SECONDS.labels(name, task, state).observe(max(0.0, seconds))


# -- scheduler ------------------------------------------------------------------------------------
def scheduler(node) -> None:
    instrument_peer(node.peer)
    K.REGISTRY.add_collector(_collect_scheduler, node)


def scheduler_sent(node, request: str) -> None:
    """A Run went out: how long the request waited since it was queued."""
    r = node.core.requests.get(request)
    if r is not None:
        K.SCHED_WAIT_SECONDS.labels(node.me.name, r.task).observe(
            max(0.0, node.clock() - r.queued_at))


def _collect_scheduler(node) -> None:
    name, core = node.me.name, node.core
    for (task, state), n in _by(core.requests.values(), lambda r: (r.task, r.state)).items():
        K.SCHED_REQUESTS.labels(name, task, state).set(n)
    K.SCHED_QUEUE.labels(name).set(len(core.queue))
    diag = core.diag()
    K.SCHED_OPEN_WINDOWS.labels(name).set(len(diag.open_windows))
    K.SCHED_WORKERS.labels(name, "enabled").set(sum(1 for w in diag.workers if w.enabled))
    K.SCHED_WORKERS.labels(name, "disabled").set(sum(1 for w in diag.workers if not w.enabled))
    for w in diag.workers:
        r = w.resources
        K.SCHED_WORKER_CPUS.labels(name, w.worker, "total").set(r.cpus)
        K.SCHED_WORKER_CPUS.labels(name, w.worker, "reserved").set(w.active.cpu_use)
        K.SCHED_WORKER_MEMORY.labels(name, w.worker, "total").set(r.mem_physical)
        K.SCHED_WORKER_MEMORY.labels(name, w.worker, "used").set(r.mem_used)
        K.SCHED_WORKER_MEMORY.labels(name, w.worker, "reserved").set(w.active.mem_used_min)
        K.SCHED_WORKER_GPUS.labels(name, w.worker, "total").set(len(r.gpus))
        K.SCHED_WORKER_GPUS.labels(name, w.worker, "reserved").set(w.active.gpu_used)
        K.SCHED_WORKER_UTILIZATION.labels(name, w.worker).set(w.utilization)


# -- worker ---------------------------------------------------------------------------------------
WASTED_WHY = ("failed", "aborted", "crashed")


def worker(node) -> None:
    instrument_peer(node.peer)
    for task in node.table_tasks:          # at 0 from the start: a dashboard shows none yet
        K.WORKER_RERUNS.labels(node.name, task)
        for why in WASTED_WHY:
            K.WORKER_WASTED.labels(node.name, task, why)
    K.REGISTRY.add_collector(_collect_worker, node)


async def worker_task(name: str, task: str, running: Awaitable, aborted: Callable[[], bool]):
    """`running` (a task's computation, which returns its TaskOutput), timed: ok or
    failed, and the time lost when it fails or is aborted (`aborted()` says whether a
    cancellation was the call's abort; a stop is counted as a crash at restart)."""
    gauge = K.WORKER_RUNNING.labels(name, task)
    gauge.inc()
    started = time.perf_counter()
    try:
        out = await running
    except trio.Cancelled:
        if aborted():
            K.WORKER_WASTED.labels(name, task, "aborted").inc(time.perf_counter() - started)
        raise
    finally:
        gauge.dec()
    outcome = "ok" if out.ok else "failed"
    seconds = time.perf_counter() - started
    K.WORKER_TASKS.labels(name, task, outcome).inc()
    K.WORKER_TASK_SECONDS.labels(name, task, outcome).observe(seconds)
    if not out.ok:
        K.WORKER_WASTED.labels(name, task, "failed").inc(seconds)
    return out


def worker_rerun(node, task: str, lost_s: float) -> None:
    """A call runs again after a restart; its last run died with the worker after `lost_s`."""
    K.WORKER_RERUNS.labels(node.name, task).inc()
    K.WORKER_WASTED.labels(node.name, task, "crashed").inc(lost_s)


def _collect_worker(node) -> None:
    from zqnode.nodes.sector_dirs import sectors_root
    name = node.name
    for task in node.tasks:
        K.WORKER_RUNNING.labels(name, task)
        for outcome in K.TASK_OUTCOMES:
            K.WORKER_TASKS.labels(name, task, outcome)
            K.WORKER_TASK_SECONDS.labels(name, task, outcome)
    root = sectors_root(node.repo)          # often a mount of its own
    try:
        disk = shutil.disk_usage(root if root.exists() else node.repo)
    except OSError:                         # the repo is gone: nothing to say
        disk = None
    if disk is not None:
        K.WORKER_STORAGE.labels(name, "total").set(disk.total)
        K.WORKER_STORAGE.labels(name, "free").set(disk.free)
    snap = node.peer.capabilities.get("resources") or {}
    if not snap:
        return
    K.WORKER_CPUS.labels(name).set(snap.get("cpus", 0))
    K.WORKER_CPU_PERCENT.labels(name).set(snap.get("cpu_percent", 0.0))
    K.WORKER_MEMORY.labels(name, "total").set(snap.get("memory_total", 0))
    K.WORKER_MEMORY.labels(name, "used").set(snap.get("memory_used", 0))
    K.WORKER_SWAP.labels(name, "total").set(snap.get("swap_total", 0))
    K.WORKER_SWAP.labels(name, "used").set(snap.get("swap_used", 0))
    K.WORKER_GPUS.labels(name).set(len(snap.get("gpus", ())))


# -- chain ----------------------------------------------------------------------------------------
def chain(node) -> None:
    instrument_peer(node.peer)
    K.REGISTRY.add_collector(_collect_chain, node)


def _collect_chain(node) -> None:
    c = node.chain
    if c is None:
        return
    name = node.me.name
    K.CHAIN_EPOCH.labels(name).set(c.head.epoch)
    K.CHAIN_POOL.labels(name).set(len(c.pool))
    K.CHAIN_REORGS.labels(name).set(c.fork)
    for actor in sorted(c.state.miners):
        m = c.miner_view(actor)
        miner = f"f0{actor}"
        K.CHAIN_POWER.labels(name, miner).set(m.power)
        for state in ("active", "unproven", "faulty", "recovering"):
            K.CHAIN_SECTORS.labels(name, miner, state).set(getattr(m, state))
        K.CHAIN_SECTORS.labels(name, miner, "precommitted").set(m.precommits)
        K.CHAIN_PENALTIES.labels(name, miner).set(m.penalties)


# -- poster ---------------------------------------------------------------------------------------
def poster(node) -> None:
    instrument_peer(node.peer)
    K.REGISTRY.add_collector(_collect_poster, node)


async def post_prove(name: str, miner: int, proving: Awaitable):
    """`proving` (a batch's proofs), timed as ok or failed."""
    started = time.perf_counter()
    outcome = "failed"
    try:
        proofs = await proving
        outcome = "ok"
        return proofs
    finally:
        K.POST_PROVE_SECONDS.labels(name, f"f0{miner}", outcome).observe(time.perf_counter() - started)


def post_outcome(name: str, miner: int, status: str, skipped: int) -> None:
    """A deadline ended (proven, missed, ...), with `skipped` sectors left out of its proofs."""
    K.POST_DEADLINES.labels(name, f"f0{miner}", status).inc()
    if skipped:
        K.POST_SKIPPED.labels(name, f"f0{miner}").inc(skipped)


def post_declared(name: str, miner: int, kind: str, sectors: int) -> None:
    """Sectors declared (`kind`: faults | recoveries)."""
    K.POST_DECLARED.labels(name, f"f0{miner}", kind).inc(sectors)


def _collect_poster(node) -> None:
    core = node.core
    if core is None:
        return
    name = node.me.name
    K.CORE_REFUSALS.labels(name, "poster").set(node.refused)
    K.POST_RUNNERS.labels(name).set(len(core.runners))
    for actor in core.miners:
        miner = f"f0{actor}"
        K.POST_SKIPPED.labels(name, miner)
        for status in K.POST_STATUSES:
            K.POST_DEADLINES.labels(name, miner, status)
        for kind in K.POST_DECLARED_KINDS:
            K.POST_DECLARED.labels(name, miner, kind)
        for outcome in K.TASK_OUTCOMES:
            K.POST_PROVE_SECONDS.labels(name, miner, outcome)
    if core.head is None:
        return
    for actor, d in core.current_deadlines().items():
        K.POST_DEADLINE.labels(name, f"f0{actor}").set(d.index)
