"""The manager's shell: the call tracker (nodes.manager.tracker) with its SQLite store,
on the bus.

Every core step's changes are committed to manager.sqlite before anything is said on
the bus: a requester hears a WorkID only once its WorkState is stored, a worker's
result is acknowledged only once it is stored. Then the commands go out: SchedEnqueue
(retried until the scheduler takes it; all queued and running work is enqueued again
when the manager starts and whenever a scheduler comes up, and every `sync_s` the
scheduler is asked which it lacks), SchedCancel + WorkerAbort for an abort, and the
waiters are woken.

The Python API for requesters in this process (the sealing state machine) is the
`do / wait / consume / abort / jobs` methods; remote requesters (the poster, the CLI)
use the same over the bus (nodes.wire.manager, nodes.manager.api.BusRequester).
"""
from __future__ import annotations

import itertools
import logging
import pathlib
import time
from typing import Callable

import trio

from zqnode.bus.codec import ErrorCode, RemoteError
from zqnode.bus.permissions import ADMIN, ANYONE
from zqnode.bus.peer import CallTimeout, Peer, Refused, Request, refusing
from zqnode.bus.retry import backoff
from zqnode.bus.protocol import NodeUp
from zqnode.nodes import observe
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.manager.config import ManagerConfig
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.manager import tracker as T
from zqnode.nodes.wire import manager as W
from zqnode.nodes.manager.errors import WorkAborted, WorkFailed
from zqnode.nodes.manager.store import ManagerStore
from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.wire.scheduler import (SchedAssigned, SchedCancel, SchedDiagReply, SchedGetDiag,
                                         SchedSync)
from zqnode.nodes.wire.worker import WorkerAbort

log = logging.getLogger("zqnode.manager")

REQUESTERS = ("poster",)               # roles that may ask for work over the bus (and admins)
POSTER_TASKS = frozenset({"WDP"})      # what a poster's key may ask for, wait on and consume


class _Slot:
    __slots__ = ("event", "state", "result", "error")

    def __init__(self):
        self.event = trio.Event()
        self.state = self.error = ""
        self.result = b""


class ManagerNode:
    def __init__(self, me: NodeIdentity, cfg: ManagerConfig, sealing: SealingConfig, *,
                 clock: Callable[[], float] = time.time):
        self.me, self.mcfg, self.clock = me, cfg, clock
        self.store: ManagerStore | None = None
        self.tracker = T.Tracker()
        self._slots: dict[int, _Slot] = {}
        self._waiter_ids = itertools.count(1)
        self._to_enqueue: dict[str, T.Enqueue] = {}
        self._enqueue_wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.peer = Peer(name=me.name, role="manager", cfg=me.bus)
        for kind, handler in {W.MgrDo: self._on_do, W.MgrWait: self._on_wait,
                              W.MgrConsume: self._on_consume, W.MgrAbort: self._on_abort,
                              W.MgrJobs: self._on_jobs, W.CallStarted: self._on_started,
                              W.CallReturn: self._on_return}.items():
            self.peer.on(kind, handler)
        # workers start and return work (only what the scheduler gave them, see
        # _on_started); requesters over the bus are the poster (its WindowPoSt work only)
        # and operators; anyone may list jobs
        self.peer.allow({W.MgrDo: REQUESTERS, W.MgrWait: REQUESTERS, W.MgrConsume: REQUESTERS,
                         W.MgrAbort: ADMIN, W.CallStarted: "worker", W.CallReturn: "worker",
                         W.MgrJobs: ANYONE})
        self.sealing = None                # the sector state machine, beside the tracker
        if sealing.enabled:
            from zqnode.nodes.sealing.node import SealingService
            from zqnode.nodes.manager.sealing_tasks import TrackerTasks
            self.sealing = SealingService(me.repo, sealing, self.peer, TrackerTasks(self), clock=clock)
        observe.manager(self)

    # ---- start ------------------------------------------------------------------------

    def open(self) -> None:
        repo = pathlib.Path(self.me.repo)
        repo.mkdir(parents=True, exist_ok=True)
        self.store = ManagerStore(repo / "manager.sqlite")
        works, locations = self.store.load()
        self.tracker = T.Tracker.restore(works, locations)
        if works:
            log.info("resumed %d works (%d unfinished) from %s", len(works),
                     len(self.tracker.unfinished()), repo)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        if self.store is None:
            self.open()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.peer.run)
                nursery.start_soon(self._enqueue_loop)
                nursery.start_soon(self._watch_nodes)
                nursery.start_soon(self._sync_loop)
                self._effects(self.tracker.resend())
                if self.sealing is not None:
                    nursery.start_soon(self._run_sealing)
                task_status.started(self)
        finally:
            self.store.close()

    async def _run_sealing(self) -> None:
        """The sector state machine waits for a chain; one it cannot use turns it off,
        never the manager."""
        from zqnode.nodes.sealing.node import SealingStartError
        try:
            await self.sealing.run()
        except SealingStartError as e:
            log.error("the sector state machine is off: %s", e)

    @property
    def backlog(self) -> int:
        """Works waiting to be (re)sent to the scheduler."""
        return len(self._to_enqueue)

    # ---- the core's commands ------------------------------------------------------------

    def _commit(self, commands: list[T.Command]) -> None:
        """Persist first (committed), then act."""
        self.store.apply(commands)
        for c in commands:
            if isinstance(c, T.Save) and c.work.state in T.FINISHED:
                w = c.work
                observe.work_ended(self.me.name, w.task, w.state, w.updated - w.created)
        self._effects(commands)

    def _effects(self, commands: list[T.Command]) -> None:
        for c in commands:
            if isinstance(c, T.Enqueue):
                self._to_enqueue[c.work.work_id] = c
                self._enqueue_wake.set()
            elif isinstance(c, T.Cancel):
                self._to_enqueue.pop(c.work_id, None)
                self._nursery.start_soon(self._send_cancel, c)
            elif isinstance(c, T.Wake):
                slot = self._slots.get(c.waiter)
                if slot is not None:
                    slot.state, slot.result, slot.error = c.work.state, c.work.result, c.work.error
                    slot.event.set()

    # ---- the Python API for requesters ---------------------------------------------------

    async def do(self, task: str, params, sector: SectorRef, sector_size: int, *,
                 priority: int = 0, cause: str = "") -> str:
        """Ask for work; returns its WorkID once it is stored. The same work asked again
        (not yet consumed) is the same WorkID, and is not done twice."""
        work, commands = self.tracker.do(task, params, sector.miner, sector.number, sector_size,
                                         priority=priority, cause=cause, now=self.clock())
        self._commit(commands)
        await trio.lowlevel.checkpoint()
        return work.work_id

    async def wait(self, work_id: str, timeout: float | None = None) -> bytes:
        """The result (msgpack of the task's result struct) once the work is done.
        Raises WorkFailed / WorkAborted, UnknownWork, or trio.TooSlowError on timeout."""
        slot = await self._wait(work_id, timeout)
        if slot is None:
            raise trio.TooSlowError(f"work {work_id[:12]} not finished")
        return _outcome(work_id, slot)

    async def _wait(self, work_id: str, timeout: float | None) -> _Slot | None:
        waiter = next(self._waiter_ids)
        slot = self._slots[waiter] = _Slot()
        try:
            self._effects(self.tracker.wait(work_id, waiter))
            with trio.move_on_after(float("inf") if timeout is None else timeout):
                await slot.event.wait()
            return slot if slot.event.is_set() else None
        finally:
            del self._slots[waiter]
            self.tracker.unwait(work_id, waiter)

    async def consume(self, work_id: str) -> None:
        """Forget a finished work (its result is delivered)."""
        self._commit(self.tracker.consume(work_id))
        await trio.lowlevel.checkpoint()

    def drop_sector(self, miner: int, number: int) -> None:
        """Abort the sector's unfinished work and forget all of it."""
        commands = self.tracker.drop_sector(miner, number, self.clock())
        self._commit(commands)
        aborted = [c.work_id for c in commands if isinstance(c, T.Cancel)]
        if aborted:
            log.warning("sector %d: %d works aborted (%s)", number, len(aborted),
                        ", ".join(w[:12] for w in aborted), extra={"cause": f"s-{miner}-{number}"})

    def dropped(self, miner: int, number: int) -> None:
        """The sector's files were deleted: the storage index forgets where they were."""
        self._commit(self.tracker.dropped(miner, number))

    async def abort(self, job: str) -> str:
        """Abort the queued or running work whose id starts with `job`."""
        work_id = self.tracker.find(job)
        self._commit(self.tracker.abort(work_id, self.clock()))
        await trio.lowlevel.checkpoint()
        log.warning("work %s aborted", work_id[:12], extra={"cause": self.tracker.works[work_id].cause})
        return work_id

    def jobs(self) -> list[T.WorkState]:
        return sorted(self.tracker.works.values(), key=lambda w: (w.created, w.work_id))

    # ---- requesters over the bus ---------------------------------------------------------

    async def _on_do(self, req: Request) -> W.MgrWork:
        b: W.MgrDo = req.body
        _may_request(req, b.task)
        with _refusals():
            wid = await self.do(b.task, bytes(b.params), b.sector, b.sector_size,
                                priority=b.priority, cause=req.cause)
        return W.MgrWork(work_id=wid, state=self.tracker.works[wid].state)

    async def _on_wait(self, req: Request):
        b: W.MgrWait = req.body
        self._may_touch(req, b.work_id)
        with _refusals():
            slot = await self._wait(b.work_id, max(0.0, min(b.timeout_s, self.me.bus.call_timeout_s / 2)))
            if slot is None:
                return W.MgrResult(work_id=b.work_id, finished=False,
                                   state=self.tracker.works[b.work_id].state)
            result = _outcome(b.work_id, slot)
        return W.MgrResult(work_id=b.work_id, finished=True, state=slot.state), [result]

    async def _on_consume(self, req: Request) -> W.MgrAck:
        self._may_touch(req, req.body.work_id)
        with _refusals():
            await self.consume(req.body.work_id)
        return W.MgrAck()

    def _may_touch(self, req: Request, work_id: str) -> None:
        work = self.tracker.works.get(work_id)
        if work is not None:                     # unknown: the tracker answers that itself
            _may_request(req, work.task)

    async def _on_abort(self, req: Request) -> W.MgrAborted:
        with _refusals():
            return W.MgrAborted(work_id=await self.abort(req.body.job))

    async def _on_jobs(self, req: Request) -> W.MgrJobList:
        diag = None
        try:
            reply: SchedDiagReply = await self.peer.call("@scheduler", SchedGetDiag(), timeout=3.0)
            diag = reply.diag
        except (RemoteError, CallTimeout):
            pass
        return W.MgrJobList(jobs=job_list(self.jobs(), diag, self.clock()), scheduler=diag is not None)

    # ---- workers ------------------------------------------------------------------------

    async def _on_started(self, req: Request) -> W.MgrAck:
        b: W.CallStarted = req.body
        assigned = req.sender if self.tracker.runs(b.work_id, b.call_id, req.sender) else \
            await self._assigned(b.work_id)
        with _refusals():
            verdict, commands = self.tracker.started(b.work_id, b.call_id, req.sender, assigned,
                                                     self.clock())
        self._commit(commands)
        if verdict != "run":
            raise Refused(W.CALL_REFUSED, verdict)
        return W.MgrAck()

    async def _on_return(self, req: Request) -> W.ReturnAck:
        b: W.CallReturn = req.body
        result = bytes(memoryview(req.buffers[0])) if b.ok and req.buffers else b""
        with _refusals():
            outcome, commands = self.tracker.returned(b.work_id, b.call_id, req.sender, b.ok,
                                                      result, b.error, self.clock())
        self._commit(commands)
        if outcome != "stored":
            log.info("result of %s from %s (%s): %s", b.work_id[:12], req.sender, b.call_id, outcome)
        return W.ReturnAck(outcome=outcome)

    # ---- talking to the scheduler -----------------------------------------------------------

    async def _assigned(self, work_id: str) -> str:
        """The worker the scheduler gave `work_id` to; busy (the worker asks again) while
        the scheduler does not answer."""
        try:
            reply = await self.peer.call("@scheduler", SchedAssigned(request=work_id), timeout=5.0)
        except (RemoteError, CallTimeout) as e:
            raise Refused(ErrorCode.BUSY, f"cannot ask the scheduler who runs {work_id[:12]}: {e}",
                          retry=True) from None
        return reply.worker

    async def _enqueue_loop(self) -> None:
        waits = backoff(0.25, self.mcfg.retry_max_s)
        while True:
            if not self._to_enqueue:
                await self._enqueue_wake.wait()
                self._enqueue_wake = trio.Event()
                continue
            failed = False
            for wid, c in list(self._to_enqueue.items()):
                w = c.work
                try:
                    await self.peer.call("@scheduler", c.message(), timeout=5.0, cause=w.cause)
                except RemoteError as e:
                    if e.code == ErrorCode.INVALID:
                        log.error("the scheduler refused %s: %s", wid[:12], e.message,
                                  extra={"cause": w.cause})
                    else:
                        failed = True
                        break
                except CallTimeout:
                    failed = True
                    break
                if self._to_enqueue.get(wid) is c:
                    del self._to_enqueue[wid]
            if failed:
                with trio.move_on_after(next(waits)):
                    await self._enqueue_wake.wait()
                self._enqueue_wake = trio.Event()
            else:
                waits = backoff(0.25, self.mcfg.retry_max_s)

    async def _send_cancel(self, c: T.Cancel) -> None:
        targets = [("@scheduler", SchedCancel(request=c.work_id))]
        if c.worker:
            targets.append((c.worker, WorkerAbort(request=c.work_id)))
        for to, msg in targets:
            for _ in range(3):
                try:
                    await self.peer.call(to, msg, timeout=5.0)
                    break
                except (RemoteError, CallTimeout) as e:
                    log.info("%s to %s: %s", type(msg).__name__, to, e)
                    await trio.sleep(1.0)

    async def _watch_nodes(self) -> None:
        with self.peer.subscribe("node.up", kinds=[NodeUp]) as sub:
            async for ev in sub:
                if ev.body.node.role == "scheduler":
                    log.info("scheduler %s is up: enqueueing all unfinished work",
                             ev.body.node.node_id)
                    self._effects(self.tracker.resend())

    async def _sync_loop(self) -> None:
        while True:
            await trio.sleep(self.mcfg.sync_s)
            await self.sync()

    async def sync(self) -> int:
        """Enqueue again what the scheduler does not know; returns how many."""
        unfinished = self.tracker.unfinished()
        if not unfinished:
            return 0
        try:
            reply = await self.peer.call("@scheduler", SchedSync(requests=unfinished), timeout=5.0)
        except (RemoteError, CallTimeout):
            return 0
        if reply.unknown:
            log.info("the scheduler lacks %d works: enqueueing them again", len(reply.unknown))
            self._effects(self.tracker.resend(reply.unknown))
        return len(reply.unknown)


def _outcome(work_id: str, slot: _Slot) -> bytes:
    if slot.state == T.DONE:
        return slot.result
    if slot.state == T.ABORTED:
        raise WorkAborted(work_id, slot.error)
    raise WorkFailed(work_id, slot.error)


def job_list(works: list[T.WorkState], diag, now: float) -> list[W.JobInfo]:
    """WorkStates with where they are: queued / assigned / preparing / prepared /
    running (the scheduler's view), ret-wait (the manager counts it running, the
    scheduler has no worker running it: its result is on its way), returned, failed,
    aborted."""
    where: dict[str, tuple[str, str]] = {}
    if diag is not None:
        for w in diag.workers:
            for window in w.windows:
                for rid in window.requests:
                    where[rid] = ("assigned", w.worker)
            for rid, state in w.running:
                where[rid] = ({"preparing": "preparing", "waiting": "prepared"}.get(state, "running"),
                              w.worker)
    out = []
    for w in works:
        status, worker = w.state, w.worker
        if w.state == T.QUEUED:
            status, worker = where.get(w.work_id, ("queued", ""))
        elif w.state == T.RUNNING:
            seen = where.get(w.work_id)
            status = "running" if seen and seen[0] == "running" else ("ret-wait" if diag else "running")
        elif w.state == T.DONE:
            status = "returned"
        out.append(W.JobInfo(work_id=w.work_id, task=w.task,
                             sector=SectorRef(miner=w.miner, number=w.number), state=w.state,
                             status=status, worker=worker, call_id=w.call_id,
                             age_s=round(max(0.0, now - w.created), 3), error=w.error))
    return out


def _may_request(req: Request, task: str) -> None:
    """A poster's key asks only for WindowPoSt work (it could otherwise take a sector's
    results away from the sealing machine, or run any task on any sector)."""
    if req.role == "poster" and task not in POSTER_TASKS:
        raise Refused(ErrorCode.PERMISSION, f"a poster may not request {task} work")


def _refusals():
    """The tracker's errors and work failures as typed bus errors."""
    return refusing((T.UnknownWork, W.UNKNOWN_WORK), (T.InvalidTransition, W.INVALID_TRANSITION),
                    (T.TrackerError, ErrorCode.INVALID), (WorkAborted, W.WORK_ABORTED),
                    (WorkFailed, W.WORK_FAILED))
