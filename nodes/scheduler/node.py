"""The scheduler's shell: the scheduler's ledger (nodes.scheduler.ledger, around the pure
core nodes.scheduler.core) fed from the bus.

In: SchedEnqueue / SchedCancel / SchedSync / SchedAssigned from the manager; SchedWorkerBeat /
SchedTaskPrepared / SchedTaskDone from the workers; a Tick every second; `node.down`
(left) of a worker. Out: WorkerPrepare / WorkerRun / WorkerAbort to the workers (a few
tries each), and log lines for what the ledger reports.

State is in memory only, rebuilt after a restart: the manager enqueues its queued and
running work again (on `node.up` of the scheduler and in its periodic SchedSync), and
every worker's beat says who it is and what it runs (nodes.scheduler.ledger reconciles
the two).
"""
from __future__ import annotations

import logging
from typing import Callable

import trio

from zqnode.bus.codec import ErrorCode, RemoteError
from zqnode.bus.permissions import ANYONE
from zqnode.bus.peer import CallTimeout, Peer, Refused, Request
from zqnode.bus.protocol import NodeDown
from zqnode.nodes import observe
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.scheduler.config import SchedulerConfig
from zqnode.nodes.scheduler import events as m
from zqnode.nodes.scheduler.core import Scheduler
from zqnode.nodes.scheduler.errors import SchedulerError
from zqnode.nodes.scheduler.ledger import (LOST_AFTER_S, LostRun, NoJob, NotAdopted, RunTwice,
                                           SchedulerLedger)
from zqnode.nodes.wire.scheduler import (SchedAck, SchedAssigned, SchedAssignedReply, SchedCancel,
                                         SchedDiagReply, SchedEnqueue, SchedGetDiag, SchedSync,
                                         SchedSyncReply, SchedTaskDone, SchedTaskPrepared,
                                         SchedWorkerBeat)
from zqnode.nodes.wire.worker import WorkerAbort, WorkerPrepare, WorkerRun

__all__ = ["LOST_AFTER_S", "TICK_S", "SchedulerNode"]

log = logging.getLogger("zqnode.scheduler")

TICK_S = 1.0


class SchedulerNode:
    def __init__(self, me: NodeIdentity, cfg: SchedulerConfig, core: Scheduler | None = None, *,
                 clock: Callable[[], float] = trio.current_time):
        # its times are never stored: a monotonic clock, so a step of the wall clock
        # does not disable every worker
        self.me, self.clock = me, clock
        self.ledger = SchedulerLedger(core or Scheduler(cfg), self._emit)
        self._nursery: trio.Nursery | None = None
        self.peer = Peer(name=me.name, role="scheduler", cfg=me.bus)
        for kind, handler in {SchedEnqueue: self._on_enqueue, SchedCancel: self._on_cancel,
                              SchedSync: self._on_sync, SchedWorkerBeat: self._on_beat,
                              SchedTaskPrepared: self._on_prepared, SchedTaskDone: self._on_done,
                              SchedGetDiag: self._on_diag, SchedAssigned: self._on_assigned}.items():
            self.peer.on(kind, handler)
        self.peer.allow({SchedEnqueue: "manager", SchedCancel: "manager", SchedSync: "manager",
                         SchedAssigned: "manager",
                         SchedWorkerBeat: "worker", SchedTaskPrepared: "worker",
                         SchedTaskDone: "worker", SchedGetDiag: ANYONE})
        observe.scheduler(self)

    # the ledger's state, read by observe and the tests
    core = property(lambda self: self.ledger.core)
    jobs = property(lambda self: self.ledger.jobs)
    parked = property(lambda self: self.ledger.parked)
    orphans = property(lambda self: self.ledger.orphans)
    finished = property(lambda self: self.ledger.finished)
    sent = property(lambda self: self.ledger.sent)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.peer.run)
            nursery.start_soon(self._tick_loop)
            nursery.start_soon(self._watch_nodes)
            task_status.started(self)

    def _emit(self, c) -> None:
        """What the ledger hands out: work to send, changes to log."""
        if isinstance(c, m.Run):
            observe.scheduler_sent(self, c.request)
            self._nursery.start_soon(self._send_run, c)
        elif isinstance(c, m.Prepare):
            self._nursery.start_soon(self._send_prepare, c)
        elif isinstance(c, m.Abort):
            self._nursery.start_soon(self._send, c.worker, WorkerAbort(request=c.request), c.cause)
        elif isinstance(c, (m.WorkerAdded, m.WorkerDisabled, m.WorkerEnabled, m.WorkerRemoved,
                            m.Requeued)):
            log.info("%s", c)
        elif isinstance(c, LostRun):
            log.warning("%s does not run %s, sent %.0fs ago: queueing it again", c.worker,
                        c.request[:12], c.age, extra=self._cause_of(c.request))
        elif isinstance(c, NotAdopted):
            log.warning("%s reports %s, which cannot be adopted: %s", c.worker, c.request[:12],
                        c.error, extra=self._cause_of(c.request))
        elif isinstance(c, RunTwice):
            log.warning("%s and %s both run %s", c.worker, c.other, c.request[:12],
                        extra=self._cause_of(c.request))
        elif isinstance(c, NoJob):
            log.warning("request %s lost its worker; waiting for the manager to enqueue it",
                        c.request[:12])

    # ---- the manager ------------------------------------------------------------------

    async def _on_enqueue(self, req: Request) -> SchedAck:
        try:
            known = self.ledger.enqueue(req.body, self.clock(), req.cause)
        except SchedulerError as e:
            raise Refused(ErrorCode.INVALID, str(e)) from None
        return SchedAck(known=known)

    async def _on_cancel(self, req: Request) -> SchedAck:
        return SchedAck(known=self.ledger.cancel(req.body.request, self.clock(), req.cause))

    async def _on_sync(self, req: Request) -> SchedSyncReply:
        return SchedSyncReply(unknown=self.ledger.unknown(req.body.requests))

    async def _on_assigned(self, req: Request) -> SchedAssignedReply:
        return SchedAssignedReply(worker=self.ledger.assigned(req.body.request))

    async def _on_diag(self, req: Request) -> SchedDiagReply:
        return SchedDiagReply(diag=self.core.diag(), parked=sorted(self.parked))

    # ---- workers ----------------------------------------------------------------------

    async def _on_beat(self, req: Request) -> SchedAck:
        b: SchedWorkerBeat = req.body
        try:
            known = self.ledger.beat(req.sender, b.session, b.info, b.running, self.clock())
        except SchedulerError as e:
            raise Refused(ErrorCode.INVALID, str(e)) from None
        return SchedAck(known=known)

    async def _on_prepared(self, req: Request) -> SchedAck:
        b: SchedTaskPrepared = req.body
        return SchedAck(known=self.ledger.prepared(req.sender, b.request, b.ok, b.error,
                                                    self.clock(), req.cause))

    async def _on_done(self, req: Request) -> SchedAck:
        b: SchedTaskDone = req.body
        return SchedAck(known=self.ledger.done(req.sender, b.request, b.ok, self.clock(),
                                                req.cause))

    # ---- time and the hub ---------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await trio.sleep(TICK_S)
            self.tick()

    def tick(self) -> None:
        self.ledger.tick(self.clock())

    async def _watch_nodes(self) -> None:
        with self.peer.subscribe("node.down", kinds=[NodeDown]) as sub:
            async for ev in sub:
                d: NodeDown = ev.body
                if d.role == "worker" and d.reason == "left":
                    self.ledger.left(d.node_id, self.clock())

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

