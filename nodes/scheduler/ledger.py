"""The scheduler's ledger: the node's logic without I/O or a clock, pure bookkeeping (the
shell, nodes.scheduler.node, does the I/O). The core (nodes.scheduler.core) plus what the
node remembers of each request, reconciled with the manager's enqueues and the workers'
beats. Used by the Trio shell and by the simulator (tools/sim/scheduler.py).

The node's state is in memory only: after a restart the manager enqueues its queued and
running work again, and every worker's beat says what it runs. Reconciling the two:

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

A worker speaks only for the work it was given (any worker key may be hostile): a
request is adopted from W's beat, taken back from the queue by W, or finished by W's
TaskDone only when this node sent it to W, the manager says W runs it, or W held it
when it was removed; `assigned(rid)` tells the manager which worker a request is
given to, before it lets a worker start it.

Every entry point takes `now`. What must go out (the core's commands at each flush:
Prepare / Run / Abort to send, worker changes to log) and what the shell should report
(LostRun, NotAdopted, RunTwice, NoJob) are handed to `emit` in order, as they happen.
An invalid enqueue or beat raises SchedulerError and changes nothing.
"""
from __future__ import annotations

from collections.abc import Callable

import msgspec

from zqnode.nodes.scheduler import events as m
from zqnode.nodes.scheduler.core import Scheduler
from zqnode.nodes.scheduler.errors import SchedulerError
from zqnode.nodes.wire import sectors
from zqnode.nodes.wire.scheduler import RunningRequest, SchedEnqueue

LOST_AFTER_S = 10.0          # sent to a worker this long ago and not listed by it: lost
FORGET_FINISHED_S = 60.0     # a finished request is not adopted from a beat for this long


class LostRun(msgspec.Struct, frozen=True):
    """`worker` does not list `request`, sent to it `age` seconds ago: queued again."""
    worker: str
    request: str
    age: float


class NotAdopted(msgspec.Struct, frozen=True):
    """`worker` reports running `request`, which the core refused to adopt."""
    worker: str
    request: str
    error: str


class RunTwice(msgspec.Struct, frozen=True):
    """`worker` reports running `request`, which the core has running on `other`."""
    worker: str
    other: str
    request: str


class NoJob(msgspec.Struct, frozen=True):
    """`request` must be queued again, but the manager never sent it here: its
    SchedSync will."""
    request: str


class SchedulerLedger:
    def __init__(self, core: Scheduler, emit: Callable[[object], None]):
        self.core = core
        self.emit = emit
        self.jobs: dict[str, SchedEnqueue] = {}          # what to send with Prepare/Run
        self.parked: dict[str, tuple[str, float]] = {}   # request -> (worker, since)
        self.orphans: dict[str, str] = {}                # lost by a removed worker -> it
        self.finished: dict[str, float] = {}             # request -> when it finished
        self.sent: dict[str, float] = {}                 # request -> when Prepare/Run went out
        self.given: dict[str, str] = {}                  # request -> the worker it was given to
        self.adopted = 0                                 # requests adopted from beats
        self.lost_runs = 0                               # requests queued again as LostRun
        self._pending: list[m.Command] = []

    # ---- the core -------------------------------------------------------------------------
    def _apply(self, event: m.Event, now: float) -> None:
        """Apply an event (raising SchedulerError, nothing changed, when it is invalid);
        bookkeeping commands take effect now, the others go out at `_flush`."""
        commands = self.core.apply(event, now)
        for c in commands:
            if isinstance(c, m.WorkerRemoved):
                for rid in c.lost:
                    self.orphans[rid] = c.worker
                    self.sent.pop(rid, None)
            elif isinstance(c, m.Cancelled):
                self.jobs.pop(c.request, None)
                self.sent.pop(c.request, None)
                self.given.pop(c.request, None)
        self._pending += commands

    def _flush(self, now: float) -> None:
        commands = self._pending + self.core.schedule(now)
        self._pending = []
        for c in commands:
            if isinstance(c, (m.Run, m.Prepare)):
                self.sent[c.request] = now
                self.given[c.request] = c.worker
            self.emit(c)

    def _queue(self, rid: str, cause: str, now: float) -> None:
        """Queue a request again from what the manager sent (if the manager never sent
        it here, its SchedSync will)."""
        job = self.jobs.get(rid)
        if job is None:
            self.emit(NoJob(rid))
            return
        self._apply(m.TaskQueued(request=rid, sector=job.sector, task=job.task,
                                 sector_size=job.sector_size, priority=job.priority,
                                 selector=job.selector, prepare=job.prepare, cause=cause), now)

    def _requeue_orphans(self, now: float) -> None:
        orphans, self.orphans = self.orphans, {}
        for rid, worker in orphans.items():
            if rid not in self.core.requests:
                self._queue(rid, f"requeued: {worker} lost it", now)

    # ---- the manager ------------------------------------------------------------------------
    def enqueue(self, job: SchedEnqueue, now: float, cause: str = "") -> bool:
        """Whether the request was known already."""
        rid = job.request
        if rid in self.core.requests or rid in self.parked:
            self.jobs[rid] = job                        # fresher sources/params: keep them
            return True
        self.jobs[rid] = job
        if job.running_on:
            self.parked[rid] = (job.running_on, now)
            return False
        try:
            self._apply(m.TaskQueued(request=rid, sector=job.sector, task=job.task,
                                     sector_size=job.sector_size, priority=job.priority,
                                     selector=job.selector, prepare=job.prepare,
                                     cause=cause or rid), now)
        except SchedulerError:
            del self.jobs[rid]
            raise
        self._flush(now)
        return False

    def cancel(self, rid: str, now: float, cause: str = "") -> bool:
        if self.parked.pop(rid, None) is not None:
            self.jobs.pop(rid, None)
            return True
        r = self.core.requests.get(rid)
        if r is None or r.cancelled:
            return r is not None
        self._apply(m.TaskCancelled(request=rid, cause=cause or f"cancel {rid[:12]}"), now)
        self._flush(now)
        return True

    def assigned(self, rid: str) -> str:
        """The worker `rid` is given to ("" when none): the one the core has it on, or
        the one the manager says runs it (parked until that worker's beat)."""
        r = self.core.requests.get(rid)
        if r is not None and r.worker:
            return r.worker
        parked = self.parked.get(rid)
        return parked[0] if parked is not None else ""

    def _gave(self, rid: str, worker: str) -> bool:
        """Whether `worker` may speak for `rid`: it was sent it, the manager says it runs
        it, or it held it when it was removed."""
        parked = self.parked.get(rid)
        return (self.given.get(rid) == worker or self.orphans.get(rid) == worker
                or (parked is not None and parked[0] == worker))

    def unknown(self, rids: list[str]) -> list[str]:
        """The requests of a SchedSync this node does not know."""
        return [rid for rid in rids if rid not in self.core.requests and rid not in self.parked]

    # ---- workers ----------------------------------------------------------------------------
    def beat(self, worker: str, session: str, info: sectors.WorkerInfo,
             running: list[RunningRequest], now: float) -> bool:
        """Whether the worker was known in this session."""
        w = self.core.workers.get(worker)
        known = w is not None and w.session == session
        cause = f"beat {worker}"
        if known and msgspec.structs.replace(w.info, resources=info.resources) == info:
            self._apply(m.WorkerHeartbeat(worker=worker, session=session, resources=info.resources,
                                          cause=cause), now)
        else:
            self._apply(m.WorkerJoined(worker=worker, session=session, info=info, cause=cause), now)
        listed = {r.request: r for r in running}
        for rid, r in listed.items():
            try:
                self._reconcile_listed(worker, rid, r, now)
            except SchedulerError as e:          # one bad entry must not stop the rest
                self.emit(NotAdopted(worker, rid, str(e)))
        for rid, r in list(self.core.workers[worker].running.items()):
            sent = self.sent.get(rid)
            if (rid not in listed and r.state in ("preparing", "running") and sent is not None
                    and now - sent > LOST_AFTER_S):
                self.lost_runs += 1
                self.emit(LostRun(worker, rid, now - sent))
                self._apply(m.TaskFinished(request=rid, ok=False, cause=f"{cause}: not there"), now)
                self.sent.pop(rid, None)
                self._queue(rid, f"{cause}: lost", now)
        for rid, (expected, _) in list(self.parked.items()):
            if expected == worker and rid not in self.core.requests:
                del self.parked[rid]
                self._queue(rid, f"{cause}: does not run it", now)
        self._requeue_orphans(now)
        self._flush(now)
        return known

    def _reconcile_listed(self, worker: str, rid: str, r: RunningRequest, now: float) -> None:
        current = self.core.requests.get(rid)
        if r.state == "preparing":
            # never adopted: without a Run it would never end here; the manager enqueues
            # it again, and the worker finishes its fetch for whoever gets it
            if current is not None and current.worker == worker:
                self.sent[rid] = now
            return
        taken = current is not None and current.state not in ("queued", "assigned")
        if not taken and not self._gave(rid, worker):
            if current is not None or rid in self.jobs:     # else: the manager enqueues it soon
                self.emit(NotAdopted(worker, rid, "it was not given to this worker"))
            return
        if current is None:
            if rid in self.finished:
                return                  # its TaskDone overtook this beat
            self.orphans.pop(rid, None)
            self.parked.pop(rid, None)
            job = self.jobs.get(rid)
            self.adopted += 1
            self._apply(m.TaskAdopted(request=rid, worker=worker, sector=r.sector, task=r.task,
                                      sector_size=r.sector_size,
                                      priority=job.priority if job else 0,
                                      cause=f"beat {worker}: runs it"), now)
            self.sent[rid] = now
            self.given[rid] = worker
        elif current.state in ("queued", "assigned"):
            job = self.jobs.get(rid)     # queued again while the worker still ran it: take it back
            self._apply(m.TaskCancelled(request=rid, cause=f"beat {worker}: runs it"), now)
            if job is not None:
                self.jobs[rid] = job
            self.adopted += 1
            self._apply(m.TaskAdopted(request=rid, worker=worker, sector=r.sector, task=r.task,
                                      sector_size=r.sector_size, priority=current.priority,
                                      cause=f"beat {worker}: runs it"), now)
            self.sent[rid] = now
            self.given[rid] = worker
        elif current.worker != worker:
            self.emit(RunTwice(worker, current.worker, rid))
        else:
            self.sent[rid] = now        # listed: not lost

    def prepared(self, worker: str, rid: str, ok: bool, error: str, now: float,
                 cause: str = "") -> bool:
        r = self.core.requests.get(rid)
        if r is None or r.worker != worker or r.state != "preparing":
            return False
        if ok:
            self._apply(m.TaskPrepared(request=rid, cause=cause or "prepared"), now)
        else:
            self._apply(m.TaskFinished(request=rid, ok=False, cause=error or "prepare failed"), now)
            self._done(rid)
        self._flush(now)
        return True

    def done(self, worker: str, rid: str, ok: bool, now: float, cause: str = "") -> bool:
        r = self.core.requests.get(rid)
        if r is None:
            if self._gave(rid, worker):
                self.finished[rid] = now
            return False
        if r.state in ("queued", "assigned"):            # it was queued again meanwhile
            if not self._gave(rid, worker):
                return False
            self._apply(m.TaskCancelled(request=rid, cause=f"done at {worker}"), now)
        elif r.worker != worker:
            return False
        else:
            self._apply(m.TaskFinished(request=rid, ok=ok, cause=cause or "done"), now)
        self.finished[rid] = now
        self._done(rid)
        self._flush(now)
        return True

    def _done(self, rid: str) -> None:
        if rid not in self.core.requests:
            self.jobs.pop(rid, None)
            self.sent.pop(rid, None)
            self.given.pop(rid, None)

    def left(self, worker: str, now: float) -> None:
        """The hub says `worker` left (a clean stop)."""
        if worker in self.core.workers:
            self._apply(m.WorkerLeft(worker=worker, cause=f"{worker} left"), now)
            self._requeue_orphans(now)
            self._flush(now)

    # ---- time -------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._apply(m.Tick(), now)
        limit = self.core.config.remove_after_s
        for rid, (worker, since) in list(self.parked.items()):
            if now - since > limit:
                del self.parked[rid]
                self._queue(rid, f"tick: {worker} did not come back in {limit:g}s", now)
        for rid, at in list(self.finished.items()):
            if now - at > FORGET_FINISHED_S:
                del self.finished[rid]
        self._requeue_orphans(now)
        self._flush(now)
