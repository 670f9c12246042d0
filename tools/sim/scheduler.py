"""The scheduler: the real node logic (nodes.scheduler.ledger.SchedulerLedger around
the core) on the simulated bus: enqueue / cancel / sync from the manager; beats, prepared
and done from the workers; ticks. Commands go out as WorkerPrepare / WorkerRun /
WorkerAbort calls (3 tries, as the real shell).

Beats: a real worker beats every second. Here a worker beats when it starts, and every
live worker beats right before each tick, which is all the core's liveness needs (a
live worker's last_seen is 'now' whenever a tick looks); ticks come every `tick_s` and
just after each moment a silent worker may cross disable_after_s or remove_after_s."""
from __future__ import annotations

from zqnode.nodes.scheduler import events as m
from zqnode.nodes.scheduler.core import Scheduler
from zqnode.nodes.scheduler.errors import SchedulerError
from zqnode.nodes.scheduler.ledger import NotAdopted, RunTwice, SchedulerLedger
from zqnode.nodes.wire import sectors
from zqnode.nodes.wire.scheduler import SchedEnqueue

from .net import Node


class SimScheduler(Node):
    def __init__(self, sim, config: m.SchedulerConfig):
        super().__init__("scheduler")
        self.sim, self.loop, self.net = sim, sim.loop, sim.net
        self.ledger = SchedulerLedger(Scheduler(config), self._emit)
        self.errors: list[str] = []
        self.run_twice: set[str] = set()   # requests two workers ran (the real node logs a warning)

    core = property(lambda self: self.ledger.core)
    lost_runs = property(lambda self: self.ledger.lost_runs)
    adopted = property(lambda self: self.ledger.adopted)

    def _emit(self, c) -> None:
        if isinstance(c, m.Run):
            self._send_work(c, "on_run")
        elif isinstance(c, m.Prepare):
            self._send_work(c, "on_prepare")
        elif isinstance(c, m.Abort):
            w = self.sim.workers[c.worker]
            self.net.call(self, w.name, w.on_abort, c.request, tries=3, timeout=10.0,
                          backoff=(1.0, 1.0))
        elif isinstance(c, NotAdopted):
            self.errors.append(f"{c.worker} reports {c.request[:12]}, which cannot be adopted: "
                               f"{c.error}")
        elif isinstance(c, RunTwice):      # e.g. a worker back after remove_after_s reruns its call
            self.run_twice.add(c.request)

    def _send_work(self, c, method: str) -> None:
        job = self.ledger.jobs.get(c.request)
        if job is None:
            self.errors.append(f"no params for {c.request[:12]}: cannot send it")
            return
        w = self.sim.workers[c.worker]
        self.net.call(self, w.name, getattr(w, method), c.request, job.task, job.sector.miner,
                      job.sector.number, job.sector_size, job.params, job.sources, tries=3,
                      timeout=10.0, backoff=(1.0, 1.0))

    # ---- the manager ------------------------------------------------------------------------
    def on_enqueue(self, job: SchedEnqueue, cause: str) -> bool:
        try:
            return self.ledger.enqueue(job, self.loop.now, cause)
        except SchedulerError as e:
            self.errors.append(f"refused {job.request[:12]}: {e}")
            return False

    def on_cancel(self, rid: str) -> bool:
        return self.ledger.cancel(rid, self.loop.now)

    def on_sync(self, rids: list[str]) -> list[str]:
        return self.ledger.unknown(rids)

    # ---- workers ----------------------------------------------------------------------------
    def on_beat(self, worker: str, session: str, info: sectors.WorkerInfo, running: list) -> bool:
        try:
            return self.ledger.beat(worker, session, info, running, self.loop.now)
        except SchedulerError as e:
            self.errors.append(f"beat of {worker}: {e}")
            return False

    def on_prepared(self, worker: str, rid: str, ok: bool, error: str) -> bool:
        return self.ledger.prepared(worker, rid, ok, error, self.loop.now)

    def on_done(self, worker: str, rid: str, ok: bool) -> bool:
        return self.ledger.done(worker, rid, ok, self.loop.now)

    # ---- time -----------------------------------------------------------------------------------
    def tick(self) -> None:
        """Every live worker's beat, then the core's Tick (see the module docstring)."""
        for w in self.sim.workers.values():
            if w.up:
                self.on_beat(w.name, w.session_id, w.info, w.running())
        self.ledger.tick(self.loop.now)
