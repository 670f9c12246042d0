"""The scheduler's shell: the pure core (nodes.scheduler.core) fed from the bus.

In: SchedEnqueue / SchedCancel / SchedSync from the manager; SchedWorkerBeat /
SchedTaskPrepared / SchedTaskDone from the workers; a Tick every second; `node.down`
(left) of a worker. Out: WorkerPrepare / WorkerRun / WorkerAbort to the workers.

State is in memory only, rebuilt after a restart: the manager enqueues its queued and
running work again (on `node.up` of the scheduler and in its periodic SchedSync), and
every worker's beat says who it is and what it runs. Reconciling the two:

- a request a worker reports running that the core does not know is adopted there
  (TaskAdopted), unless it finished here moments ago (its TaskDone overtook the beat);
- a request the manager says is running on worker W is parked until W's next beat:
  adopted if W lists it, queued if not (or if W never comes back within
  remove_after_s);
- requests the core counted as running on a worker that was removed or restarted are
  queued again, unless the worker (new session) lists them running (one it lists as
  preparing is not adopted: it would never get its Run);
- a request the core has running on W that W does not list for a while after it was
  sent (a lost WorkerRun) is finished as failed and queued again.
"""
from __future__ import annotations

import logging

import msgspec
import trio

from bus.codec import ErrorCode, RemoteError
from bus.permissions import ANYONE
from bus.peer import CallTimeout, Peer, Refused, Request
from bus.protocol import NodeDown
from nodes import observe
from nodes.config import NodeConfig
from nodes.scheduler import messages as m
from nodes.scheduler.core import Scheduler
from nodes.scheduler.errors import SchedulerError
from nodes.scheduler.wire import (SchedAck, SchedCancel, SchedDiagReply, SchedEnqueue,
                                  SchedGetDiag, SchedSync, SchedSyncReply, SchedTaskDone,
                                  SchedTaskPrepared, SchedWorkerBeat)
from nodes.worker.wire import WorkerAbort, WorkerPrepare, WorkerRun

log = logging.getLogger("zqnode.scheduler")

TICK_S = 1.0
LOST_AFTER_S = 10.0          # sent to a worker this long ago and not listed by it: lost
FORGET_FINISHED_S = 60.0     # a finished request is not adopted from a beat for this long


class SchedulerNode:
    def __init__(self, cfg: NodeConfig, core: Scheduler | None = None):
        self.cfg = cfg
        self.core = core or Scheduler(cfg.scheduler)
        self.jobs: dict[str, SchedEnqueue] = {}          # what to send with Prepare/Run
        self.parked: dict[str, tuple[str, float]] = {}   # request -> (worker, since)
        self.orphans: dict[str, str] = {}                # lost by a removed worker -> it
        self.finished: dict[str, float] = {}             # request -> when it finished
        self.sent: dict[str, float] = {}                 # request -> when Prepare/Run went out
        self._pending: list[m.Command] = []
        self._nursery: trio.Nursery | None = None
        self.peer = Peer(name=cfg.name, role="scheduler", cfg=cfg.bus)
        for kind, handler in {SchedEnqueue: self._on_enqueue, SchedCancel: self._on_cancel,
                              SchedSync: self._on_sync, SchedWorkerBeat: self._on_beat,
                              SchedTaskPrepared: self._on_prepared, SchedTaskDone: self._on_done,
                              SchedGetDiag: self._on_diag}.items():
            self.peer.on(kind, handler)
        self.peer.allow({SchedEnqueue: "manager", SchedCancel: "manager", SchedSync: "manager",
                         SchedWorkerBeat: "worker", SchedTaskPrepared: "worker",
                         SchedTaskDone: "worker", SchedGetDiag: ANYONE})
        observe.scheduler(self)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.peer.run)
            nursery.start_soon(self._tick_loop)
            nursery.start_soon(self._watch_nodes)
            task_status.started(self)

    # ---- the core -------------------------------------------------------------------

    def _apply(self, event: m.Event) -> list[m.Command]:
        """Apply an event (raising SchedulerError, nothing changed, when it is invalid);
        bookkeeping commands take effect now, the others go out at `_flush`."""
        commands = self.core.apply(event, trio.current_time())
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
        commands = self._pending + self.core.schedule(trio.current_time())
        self._pending = []
        now = trio.current_time()
        for c in commands:
            if isinstance(c, m.Run):
                self.sent[c.request] = now
                observe.scheduler_sent(self, c.request)
                self._nursery.start_soon(self._send_run, c)
            elif isinstance(c, m.Prepare):
                self.sent[c.request] = now
                self._nursery.start_soon(self._send_prepare, c)
            elif isinstance(c, m.Abort):
                self._nursery.start_soon(self._send, c.worker, WorkerAbort(request=c.request),
                                         c.cause)
            elif isinstance(c, (m.WorkerAdded, m.WorkerDisabled, m.WorkerEnabled, m.WorkerRemoved,
                                m.Requeued)):
                log.info("%s", c)

    def _queue(self, rid: str, cause: str) -> None:
        """Queue a request again from what the manager sent (if the manager never sent
        it here, its SchedSync will)."""
        job = self.jobs.get(rid)
        if job is None:
            log.warning("request %s lost its worker; waiting for the manager to enqueue it", rid[:12])
            return
        self._apply(m.TaskQueued(request=rid, sector=job.sector, task=job.task,
                                 sector_size=job.sector_size, priority=job.priority,
                                 selector=job.selector, prepare=job.prepare, cause=cause))

    def _requeue_orphans(self) -> None:
        orphans, self.orphans = self.orphans, {}
        for rid, worker in orphans.items():
            if rid not in self.core.requests:
                self._queue(rid, f"requeued: {worker} lost it")

    # ---- the manager ------------------------------------------------------------------

    async def _on_enqueue(self, req: Request) -> SchedAck:
        b: SchedEnqueue = req.body
        rid = b.request
        if rid in self.core.requests or rid in self.parked:
            self.jobs[rid] = b                          # fresher sources/params: keep them
            return SchedAck(known=True)
        if b.running_on:
            self.jobs[rid] = b
            self.parked[rid] = (b.running_on, trio.current_time())
            return SchedAck(known=False)
        try:
            self.jobs[rid] = b
            self._apply(m.TaskQueued(request=rid, sector=b.sector, task=b.task,
                                     sector_size=b.sector_size, priority=b.priority,
                                     selector=b.selector, prepare=b.prepare, cause=req.cause or rid))
        except SchedulerError as e:
            del self.jobs[rid]
            raise Refused(ErrorCode.INVALID, str(e)) from None
        self._flush()
        return SchedAck(known=False)

    async def _on_cancel(self, req: Request) -> SchedAck:
        rid = req.body.request
        if self.parked.pop(rid, None) is not None:
            self.jobs.pop(rid, None)
            return SchedAck(known=True)
        r = self.core.requests.get(rid)
        if r is None or r.cancelled:
            return SchedAck(known=r is not None)
        self._apply(m.TaskCancelled(request=rid, cause=req.cause or f"cancel {rid[:12]}"))
        self._flush()
        return SchedAck(known=True)

    async def _on_sync(self, req: Request) -> SchedSyncReply:
        return SchedSyncReply(unknown=[rid for rid in req.body.requests
                                       if rid not in self.core.requests and rid not in self.parked])

    async def _on_diag(self, req: Request) -> SchedDiagReply:
        return SchedDiagReply(diag=self.core.diag(), parked=sorted(self.parked))

    # ---- workers ----------------------------------------------------------------------

    async def _on_beat(self, req: Request) -> SchedAck:
        b: SchedWorkerBeat = req.body
        worker, now = req.sender, trio.current_time()
        w = self.core.workers.get(worker)
        known = w is not None and w.session == b.session
        cause = f"beat {worker}"
        try:
            if known and _same_offer(w.info, b.info):
                self._apply(m.WorkerHeartbeat(worker=worker, session=b.session,
                                              resources=b.info.resources, cause=cause))
            else:
                self._apply(m.WorkerJoined(worker=worker, session=b.session, info=b.info, cause=cause))
        except SchedulerError as e:
            raise Refused(ErrorCode.INVALID, str(e)) from None
        listed = {r.request: r for r in b.running}
        for rid, r in listed.items():
            try:
                self._reconcile_listed(worker, rid, r, now)
            except SchedulerError as e:          # one bad entry must not stop the rest
                log.warning("%s reports %s, which cannot be adopted: %s", worker, rid[:12], e,
                            extra=self._cause_of(rid))
        for rid, r in list(self.core.workers[worker].running.items()):
            sent = self.sent.get(rid)
            if (rid not in listed and r.state in ("preparing", "running") and sent is not None
                    and now - sent > LOST_AFTER_S):
                log.warning("%s does not run %s, sent %.0fs ago: queueing it again", worker,
                            rid[:12], now - sent, extra=self._cause_of(rid))
                self._apply(m.TaskFinished(request=rid, ok=False, cause=f"{cause}: not there"))
                self.sent.pop(rid, None)
                self._queue(rid, f"{cause}: lost")
        for rid, (expected, _) in list(self.parked.items()):
            if expected == worker and rid not in self.core.requests:
                del self.parked[rid]
                self._queue(rid, f"{cause}: does not run it")
        self._requeue_orphans()
        self._flush()
        return SchedAck(known=known)

    def _reconcile_listed(self, worker: str, rid: str, r, now: float) -> None:
        current = self.core.requests.get(rid)
        if r.state == "preparing":
            # never adopted: without a Run it would never end here; the manager enqueues
            # it again, and the worker finishes its fetch for whoever gets it
            if current is not None and current.worker == worker:
                self.sent[rid] = now
            return
        if current is None:
            if rid in self.finished:
                return                  # its TaskDone overtook this beat
            self.orphans.pop(rid, None)
            self.parked.pop(rid, None)
            job = self.jobs.get(rid)
            self._apply(m.TaskAdopted(request=rid, worker=worker, sector=r.sector, task=r.task,
                                      sector_size=r.sector_size,
                                      priority=job.priority if job else 0,
                                      cause=f"beat {worker}: runs it"))
            self.sent[rid] = now
        elif current.state in ("queued", "assigned"):
            job = self.jobs.get(rid)     # queued again while the worker still ran it: take it back
            self._apply(m.TaskCancelled(request=rid, cause=f"beat {worker}: runs it"))
            if job is not None:
                self.jobs[rid] = job
            self._apply(m.TaskAdopted(request=rid, worker=worker, sector=r.sector, task=r.task,
                                      sector_size=r.sector_size, priority=current.priority,
                                      cause=f"beat {worker}: runs it"))
            self.sent[rid] = now
        elif current.worker != worker:
            log.warning("%s and %s both run %s", worker, current.worker, rid[:12],
                        extra=self._cause_of(rid))
        else:
            self.sent[rid] = now        # listed: not lost

    async def _on_prepared(self, req: Request) -> SchedAck:
        b: SchedTaskPrepared = req.body
        r = self.core.requests.get(b.request)
        if r is None or r.worker != req.sender or r.state != "preparing":
            return SchedAck(known=False)
        if b.ok:
            self._apply(m.TaskPrepared(request=b.request, cause=req.cause or "prepared"))
        else:
            self._apply(m.TaskFinished(request=b.request, ok=False, cause=b.error or "prepare failed"))
            self._done(b.request)
        self._flush()
        return SchedAck()

    async def _on_done(self, req: Request) -> SchedAck:
        b: SchedTaskDone = req.body
        r = self.core.requests.get(b.request)
        self.finished[b.request] = trio.current_time()
        if r is None:
            return SchedAck(known=False)
        if r.state in ("queued", "assigned"):            # it was queued again meanwhile
            self._apply(m.TaskCancelled(request=b.request, cause=f"done at {req.sender}"))
        elif r.worker != req.sender:
            return SchedAck(known=False)
        else:
            self._apply(m.TaskFinished(request=b.request, ok=b.ok, cause=req.cause or "done"))
        self._done(b.request)
        self._flush()
        return SchedAck()

    def _done(self, rid: str) -> None:
        if rid not in self.core.requests:
            self.jobs.pop(rid, None)
            self.sent.pop(rid, None)

    # ---- time and the hub ---------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await trio.sleep(TICK_S)
            self.tick()

    def tick(self) -> None:
        now = trio.current_time()
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

    async def _watch_nodes(self) -> None:
        with self.peer.subscribe("node.down", kinds=[NodeDown]) as sub:
            async for ev in sub:
                d: NodeDown = ev.body
                if d.role == "worker" and d.reason == "left" and d.node_id in self.core.workers:
                    self._apply(m.WorkerLeft(worker=d.node_id, cause=f"{d.node_id} left"))
                    self._requeue_orphans()
                    self._flush()

    def _cause_of(self, rid: str) -> dict:
        """`extra` for a log line about request `rid`: its sector's cause id."""
        job = self.jobs.get(rid)
        return {"cause": observe.sector_cause(job.sector)} if job is not None else {}

    # ---- sending ----------------------------------------------------------------------

    async def _send_run(self, c: m.Run) -> None:
        job = self.jobs.get(c.request)
        if job is None:
            log.error("no params for %s: cannot run it", c.request[:12])
            return
        observe.set_cause(observe.sector_cause(job.sector))     # this task's log lines
        await self._send(c.worker, WorkerRun(request=c.request, task=job.task, sector=job.sector,
                                             sector_size=job.sector_size, params=job.params,
                                             sources=job.sources), c.cause)

    async def _send_prepare(self, c: m.Prepare) -> None:
        job = self.jobs.get(c.request)
        if job is None:
            log.error("no params for %s: cannot prepare it", c.request[:12])
            return
        observe.set_cause(observe.sector_cause(job.sector))
        await self._send(c.worker, WorkerPrepare(request=c.request, task=job.task, sector=job.sector,
                                                 sector_size=job.sector_size, params=job.params,
                                                 sources=job.sources), c.cause)

    async def _send(self, worker: str, msg, cause: str) -> None:
        """A few tries; if the worker stays away its liveness decides (disabled, removed,
        its requests queued again), and a lost request shows in its next beats."""
        for attempt in range(3):
            try:
                await self.peer.call(worker, msg, timeout=10.0, cause=cause)
                return
            except (RemoteError, CallTimeout) as e:
                if isinstance(e, RemoteError) and not e.retry and e.code != ErrorCode.NO_ROUTE:
                    log.error("%s refused %s: %s", worker, type(msg).__name__, e)
                    return
                log.info("%s to %s: %s (try %d)", type(msg).__name__, worker, e, attempt + 1)
            await trio.sleep(1.0)


def _same_offer(a: m.WorkerInfo, b: m.WorkerInfo) -> bool:
    """The same info but for resources (which change on every beat)."""
    return msgspec.structs.replace(a, resources=b.resources) == b
