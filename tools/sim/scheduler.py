"""The scheduler: the real core (nodes.scheduler.core.Scheduler) behind a copy of
nodes.scheduler.node.SchedulerNode's logic, on the simulated bus: enqueue / cancel /
sync from the manager; beats, prepared and done from the workers; ticks. Commands go out
as WorkerPrepare / WorkerRun / WorkerAbort calls (3 tries, as the real shell).

Beats: a real worker beats every second. Here a worker beats when it starts, and every
live worker beats right before each tick, which is all the core's liveness needs (a
live worker's last_seen is 'now' whenever a tick looks); ticks come every `tick_s` and
just after each moment a silent worker may cross disable_after_s or remove_after_s."""
from __future__ import annotations

from dataclasses import dataclass

import msgspec

from nodes.scheduler import messages as m
from nodes.scheduler.core import Scheduler
from nodes.scheduler.errors import SchedulerError

from .net import Node

LOST_AFTER_S = 10.0
FORGET_FINISHED_S = 60.0


@dataclass
class Job:
    """What the manager's SchedEnqueue carried (nodes.scheduler.wire.SchedEnqueue)."""
    request: str
    sector: m.SectorRef
    task: str
    sector_size: int
    priority: int
    selector: object
    prepare: str | None
    params: bytes
    sources: tuple[str, ...]
    running_on: str
    cause: str


class SimScheduler(Node):
    def __init__(self, sim, config: m.SchedulerConfig):
        super().__init__("scheduler")
        self.sim, self.loop, self.net = sim, sim.loop, sim.net
        self.core = Scheduler(config)
        self.jobs: dict[str, Job] = {}
        self.parked: dict[str, tuple[str, float]] = {}
        self.orphans: dict[str, str] = {}
        self.finished: dict[str, float] = {}
        self.sent: dict[str, float] = {}
        self._pending: list = []
        self.events = 0
        self.errors: list[str] = []
        self.lost_runs = 0                 # requests requeued because their worker never listed them
        self.adopted = 0
        self.run_twice: set[str] = set()   # requests two workers ran (the real node logs a warning)

    # ---- the core -------------------------------------------------------------------------
    def _apply(self, event) -> list:
        self.events += 1
        commands = self.core.apply(event, self.loop.now)
        for c in commands:
            if isinstance(c, m.WorkerRemoved):
                for rid in c.lost:
                    self.orphans[rid] = c.worker
                    self.sent.pop(rid, None)
            elif isinstance(c, m.Cancelled):
                self.jobs.pop(c.request, None)
                self.sent.pop(c.request, None)
        self._pending += commands
        return commands

    def _flush(self) -> None:
        commands = self._pending + self.core.schedule(self.loop.now)
        self._pending = []
        now = self.loop.now
        for c in commands:
            if isinstance(c, m.Run):
                self.sent[c.request] = now
                self._send_work(c, "on_run")
            elif isinstance(c, m.Prepare):
                self.sent[c.request] = now
                self._send_work(c, "on_prepare")
            elif isinstance(c, m.Abort):
                w = self.sim.workers[c.worker]
                self.net.call(self, w.name, w.on_abort, c.request, tries=3, timeout=10.0,
                              backoff=(1.0, 1.0))

    def _send_work(self, c, method: str) -> None:
        job = self.jobs.get(c.request)
        if job is None:
            self.errors.append(f"no params for {c.request[:12]}: cannot send it")
            return
        w = self.sim.workers[c.worker]
        self.net.call(self, w.name, getattr(w, method), c.request, job.task, job.sector.miner,
                      job.sector.number, job.sector_size, job.params, job.sources, tries=3,
                      timeout=10.0, backoff=(1.0, 1.0))

    def _queue(self, rid: str, cause: str) -> None:
        job = self.jobs.get(rid)
        if job is None:
            return                         # the manager's sync enqueues it again
        self._apply(m.TaskQueued(request=rid, sector=job.sector, task=job.task,
                                 sector_size=job.sector_size, priority=job.priority,
                                 selector=job.selector, prepare=job.prepare, cause=cause))

    def _requeue_orphans(self) -> None:
        orphans, self.orphans = self.orphans, {}
        for rid, worker in orphans.items():
            if rid not in self.core.requests:
                self._queue(rid, f"requeued: {worker} lost it")

    # ---- the manager ------------------------------------------------------------------------
    def on_enqueue(self, job: Job) -> bool:
        rid = job.request
        if rid in self.core.requests or rid in self.parked:
            self.jobs[rid] = job
            return True
        self.jobs[rid] = job
        if job.running_on:
            self.parked[rid] = (job.running_on, self.loop.now)
            return False
        try:
            self._apply(m.TaskQueued(request=rid, sector=job.sector, task=job.task,
                                     sector_size=job.sector_size, priority=job.priority,
                                     selector=job.selector, prepare=job.prepare, cause=job.cause or rid))
        except SchedulerError as e:
            del self.jobs[rid]
            self.errors.append(f"refused {rid[:12]}: {e}")
            return False
        self._flush()
        return False

    def on_cancel(self, rid: str) -> bool:
        if self.parked.pop(rid, None) is not None:
            self.jobs.pop(rid, None)
            return True
        r = self.core.requests.get(rid)
        if r is None or r.cancelled:
            return r is not None
        self._apply(m.TaskCancelled(request=rid, cause=f"cancel {rid[:12]}"))
        self._flush()
        return True

    def on_sync(self, rids: list[str]) -> list[str]:
        return [rid for rid in rids if rid not in self.core.requests and rid not in self.parked]

    # ---- workers ----------------------------------------------------------------------------
    def on_beat(self, worker: str, session: str, info: m.WorkerInfo, running: list) -> bool:
        now = self.loop.now
        w = self.core.workers.get(worker)
        known = w is not None and w.session == session
        cause = f"beat {worker}"
        try:
            if known and msgspec.structs.replace(w.info, resources=info.resources) == info:
                self._apply(m.WorkerHeartbeat(worker=worker, session=session, resources=info.resources,
                                              cause=cause))
            else:
                self._apply(m.WorkerJoined(worker=worker, session=session, info=info, cause=cause))
        except SchedulerError as e:
            self.errors.append(f"beat of {worker}: {e}")
            return False
        listed = {r.request: r for r in running}
        for rid, r in listed.items():
            try:
                self._reconcile_listed(worker, rid, r, now)
            except SchedulerError as e:
                self.errors.append(f"{worker} reports {rid[:12]}, which cannot be adopted: {e}")
        for rid, r in list(self.core.workers[worker].running.items()):
            sent = self.sent.get(rid)
            if (rid not in listed and r.state in ("preparing", "running") and sent is not None
                    and now - sent > LOST_AFTER_S):
                self.lost_runs += 1
                self._apply(m.TaskFinished(request=rid, ok=False, cause=f"{cause}: not there"))
                self.sent.pop(rid, None)
                self._queue(rid, f"{cause}: lost")
        for rid, (expected, _) in list(self.parked.items()):
            if expected == worker and rid not in self.core.requests:
                del self.parked[rid]
                self._queue(rid, f"{cause}: does not run it")
        self._requeue_orphans()
        self._flush()
        return known

    def _reconcile_listed(self, worker: str, rid: str, r, now: float) -> None:
        current = self.core.requests.get(rid)
        if r.state == "preparing":
            if current is not None and current.worker == worker:
                self.sent[rid] = now
            return
        if current is None:
            if rid in self.finished:
                return
            self.orphans.pop(rid, None)
            self.parked.pop(rid, None)
            job = self.jobs.get(rid)
            self.adopted += 1
            self._apply(m.TaskAdopted(request=rid, worker=worker, sector=r.sector, task=r.task,
                                      sector_size=r.sector_size, priority=job.priority if job else 0,
                                      cause=f"beat {worker}: runs it"))
            self.sent[rid] = now
        elif current.state in ("queued", "assigned"):
            job = self.jobs.get(rid)
            self._apply(m.TaskCancelled(request=rid, cause=f"beat {worker}: runs it"))
            if job is not None:
                self.jobs[rid] = job
            self.adopted += 1
            self._apply(m.TaskAdopted(request=rid, worker=worker, sector=r.sector, task=r.task,
                                      sector_size=r.sector_size, priority=current.priority,
                                      cause=f"beat {worker}: runs it"))
            self.sent[rid] = now
        elif current.worker != worker:
            self.run_twice.add(rid)        # e.g. a worker back after remove_after_s reruns its call
        else:
            self.sent[rid] = now

    def on_prepared(self, worker: str, rid: str, ok: bool, error: str) -> bool:
        r = self.core.requests.get(rid)
        if r is None or r.worker != worker or r.state != "preparing":
            return False
        if ok:
            self._apply(m.TaskPrepared(request=rid, cause="prepared"))
        else:
            self._apply(m.TaskFinished(request=rid, ok=False, cause=error or "prepare failed"))
            self._done(rid)
        self._flush()
        return True

    def on_done(self, worker: str, rid: str, ok: bool) -> bool:
        r = self.core.requests.get(rid)
        self.finished[rid] = self.loop.now
        if r is None:
            return False
        if r.state in ("queued", "assigned"):
            self._apply(m.TaskCancelled(request=rid, cause=f"done at {worker}"))
        elif r.worker != worker:
            return False
        else:
            self._apply(m.TaskFinished(request=rid, ok=ok, cause="done"))
        self._done(rid)
        self._flush()
        return True

    def _done(self, rid: str) -> None:
        if rid not in self.core.requests:
            self.jobs.pop(rid, None)
            self.sent.pop(rid, None)

    # ---- time -----------------------------------------------------------------------------------
    def tick(self) -> None:
        """Every live worker's beat, then the core's Tick (see the module docstring)."""
        for w in self.sim.workers.values():
            if w.up:
                self.on_beat(w.name, w.session_id, w.info, w.running())
        now = self.loop.now
        self._apply(m.Tick())
        limit = self.core.config.remove_after_s
        for rid, (worker, since) in list(self.parked.items()):
            if now - since > limit:
                del self.parked[rid]
                self._queue(rid, f"tick: {worker} did not come back in {limit:g}s")
        for rid, at in list(self.finished.items()):
            if now - at > FORGET_FINISHED_S:
                del self.finished[rid]
        self._requeue_orphans()
        self._flush()
