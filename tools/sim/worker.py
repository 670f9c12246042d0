"""A simulated worker: the worker's own core (nodes.worker.core.WorkerCore) with a
synchronous interpreter of its commands in place of nodes.worker.node.WorkerNode: the
profile's durations instead of task processes, copies of SectorFiles instead of
fetching, the simulated bus instead of retries over ZeroMQ.

Kept as the real worker keeps it (its 'calls.sqlite' and sector directories survive a
crash): the calls the core saved, and the sector files. A crash kills what runs and
what is being fetched; the restarted worker (a new session) is a new core restored from
the saved calls, which goes on with them as the real one does, and beats to the
scheduler with what it runs (the scheduler adopts those).

What remains here is the shell's part: timers for tasks and fetches (and their spans
for the timeline), the bus calls that carry Announce / Return / Report / TellPrepared
(retried until answered, as the real shell's), and a new session's start. Starting
calls after a restart is deferred to after what is due now, as the real shell starts a
task for each. Not modelled: the worker's own per-task semaphores and locks (the
scheduler is told the limits as MAX_CONCURRENT and never sends more), resources read
from the host (they are the cluster file's), and the bytes of a fetch (a fetch takes
the profile's GET time; WindowPoSt reads its challenged leaves in place, inside the WDP
time)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from zqnode.nodes.wire.sectors import SectorRef, StoragePath, WorkerInfo, WorkerResources
from zqnode.nodes.scheduler.resources import parse_resource_env
from zqnode.nodes.wire.scheduler import RunningRequest
from zqnode.nodes.worker import commands as C
from zqnode.nodes.worker import events as E
from zqnode.nodes.worker.calls import Call
from zqnode.nodes.worker.core import WorkerCore

from . import tasks as T
from .config import WorkerGroup
from .net import Node

FETCH_FAIL_S = 5.0                     # a fetch with no source answering fails after this
RETRY_MAX_S = 4.0                      # WorkerConfig.retry_max_s


@dataclass
class Need:
    threads: int
    mem: int
    gpu: float


@dataclass
class Span:
    """A task or fetch on a worker, for the timeline and the utilisation."""
    worker: str
    task: str
    start: float
    need: Need
    end: float = -1.0
    outcome: str = ""                  # ok | failed | killed | aborted
    work_id: str = ""
    extra: dict = field(default_factory=dict)


class SimWorker(Node):
    def __init__(self, sim, name: str, group: WorkerGroup):
        super().__init__(name)
        self.sim, self.group = sim, group
        self.loop, self.net = sim.loop, sim.net
        env = {f"{task}_MAX_CONCURRENT": str(n) for task, n in group.limits.items()}
        self.info = WorkerInfo(
            hostname=name, tasks=tuple(sorted(group.tasks)),
            resources=WorkerResources(cpus=group.cpus, mem_physical=group.ram, mem_swap=group.swap,
                                      gpus=tuple(f"gpu{i}" for i in range(group.gpus))),
            paths=(StoragePath(id=name, can_seal=True, can_store=True),), resource_env=env)
        table = parse_resource_env(env, base=sim.scheduler.core._table)
        size = sim.profile.sector_size
        self.needs = {task: Need(r.threads(group.cpus, group.gpus), r.min_memory + r.base_min_memory,
                                 r.gpu_utilization)
                      for (task, s), r in table.items() if s == size}
        # kept across crashes (the call store and the sector directories)
        self.store: dict[str, Call] = {}               # calls.sqlite (acknowledged calls dropped)
        self.files: dict[int, T.SectorFiles] = {}
        self._ids = itertools.count(1)
        self.core = self._new_core()
        # lost in a crash
        self.fetching: dict[str, tuple] = {}           # request -> (timer, plan): preparations
        self.active: dict[str, tuple] = {}             # call id -> (timer, span or None)
        self.crashes = 0

    @property
    def session_id(self) -> str:
        return f"{self.name}#{self.session}"

    def _new_core(self) -> WorkerCore:
        core = WorkerCore(lambda s: f"s-{s.miner}-{s.number}-{self.name}-{next(self._ids)}")
        core.restore(list(self.store.values()))
        return core

    # ---- start, crash, restart ------------------------------------------------------------
    def start(self) -> None:
        self.beat()

    def crash(self) -> None:
        """kill -9: what runs dies with the process; the call store and files stay."""
        self.up = False
        self.crashes += 1
        now = self.loop.now
        for timer, plan in self.fetching.values():
            timer.cancel()
            self._end_plan(plan, "killed")
        for timer, span in self.active.values():
            timer.cancel()
            if span is not None:
                self.sim.metrics.end_span(span, now, "killed")
        self.fetching.clear()
        self.active.clear()

    def restart(self) -> None:
        self.up = True
        self.session += 1
        self.core = self._new_core()
        self._execute(self.core.handle(E.Restarted(), self.loop.now), restarted=True)
        self.beat()

    # ---- the scheduler's view ----------------------------------------------------------------
    def running(self) -> list[RunningRequest]:
        return self.core.running()

    def beat(self) -> None:
        sched = self.sim.scheduler
        self.net.call(self, sched.name, sched.on_beat, self.name, self.session_id, self.info,
                      self.running(), tries=1)

    # ---- requests from the scheduler -------------------------------------------------------------
    def on_prepare(self, rid: str, task: str, miner: int, number: int, size: int, params: bytes,
                   sources: list[str]) -> None:
        self._feed(E.Prepare(request=rid, task=task, sector=SectorRef(miner=miner, number=number),
                             sector_size=size, params=params, sources=list(sources)))

    def on_run(self, rid: str, task: str, miner: int, number: int, size: int, params: bytes,
               sources: list[str]) -> str:
        self._feed(E.Run(request=rid, task=task, sector=SectorRef(miner=miner, number=number),
                         sector_size=size, params=params, sources=list(sources)))
        return self.core.live_for(rid).call_id

    def on_abort(self, rid: str) -> bool:
        commands = self.core.handle(E.Abort(request=rid), self.loop.now)
        self._execute(commands)
        return any(isinstance(c, (C.StopCall, C.StopFetch)) for c in commands)

    # ---- the core's commands -----------------------------------------------------------------------
    def _feed(self, event: E.Event) -> None:
        self._execute(self.core.handle(event, self.loop.now))

    def _execute(self, commands: list, restarted: bool = False) -> None:
        for cmd in commands:
            if isinstance(cmd, C.Save):
                self._save(cmd.call)
            elif isinstance(cmd, C.Announce):
                self.loop.soon(self._announce, cmd.call, self.session)
            elif isinstance(cmd, C.RunTask):
                if restarted:
                    self.loop.soon(self._run_task, cmd.call, cmd.fetch, self.session)
                else:
                    self._run_task(cmd.call, cmd.fetch, self.session)
            elif isinstance(cmd, C.Return):
                self._return(cmd.call)
            elif isinstance(cmd, C.Report):
                self._report(cmd.call)
            elif isinstance(cmd, C.StopCall):
                self._stop(cmd.call_id)
            elif isinstance(cmd, C.Fetch):
                self._prepare(cmd)
            elif isinstance(cmd, C.StopFetch):
                timer, plan = self.fetching.pop(cmd.request)
                timer.cancel()
                self._end_plan(plan, "aborted")
            elif isinstance(cmd, C.TellPrepared):
                sched = self.sim.scheduler
                self.net.call(self, sched.name, sched.on_prepared, self.name, cmd.request, True, "",
                              tries=None, backoff=(0.25, RETRY_MAX_S))
            # CountRerun: the lost run's span already ended as "killed"

    def _save(self, call: Call) -> None:
        """The store forgets a call both acknowledged at once (the real one keeps it a week)."""
        if call.returned and call.sched_done:
            self.store.pop(call.call_id, None)
        else:
            self.store[call.call_id] = call

    def _announce(self, call: Call, session: int) -> None:
        if not self.up or session != self.session:
            return
        mgr = self.sim.manager

        def ack(verdict: str) -> None:
            self._feed(E.Announced(call_id=call.call_id, refused="" if verdict == "run" else verdict))
        self.net.call(self, mgr.name, mgr.on_started, call.work_id, call.call_id, self.name, ack=ack,
                      tries=None, backoff=(0.25, RETRY_MAX_S))

    def _return(self, call: Call) -> None:
        mgr = self.sim.manager
        self.net.call(self, mgr.name, mgr.on_return, call.work_id, call.call_id, self.name,
                      bool(call.ok), call.result, call.error,
                      ack=lambda _: self._feed(E.Returned(call_id=call.call_id)), tries=None,
                      backoff=(0.25, RETRY_MAX_S))

    def _report(self, call: Call) -> None:
        sched = self.sim.scheduler
        self.net.call(self, sched.name, sched.on_done, self.name, call.work_id, bool(call.ok),
                      ack=lambda _: self._feed(E.Reported(call_id=call.call_id)), tries=None,
                      backoff=(0.25, RETRY_MAX_S))

    # ---- preparations and tasks ----------------------------------------------------------------------
    def _prepare(self, cmd: C.Fetch) -> None:
        delay, plan = self._fetch(cmd.task, cmd.sector.number, cmd.sources, cmd.request)
        timer = self.loop.after(delay, self._prepared, cmd.request, cmd.sector.number, plan)
        self.fetching[cmd.request] = (timer, plan)

    def _prepared(self, rid: str, number: int, plan) -> None:
        del self.fetching[rid]
        error = self._fetched(number, plan)
        self._feed(E.Fetched(request=rid, error=f"fetch failed: {error}" if error else ""))

    def _run_task(self, call: Call, fetch: bool, session: int) -> None:
        if not self.up or session != self.session:
            return
        if fetch:
            delay, plan = self._fetch(call.task, call.number, call.sources, call.work_id)
            if plan is not None:
                span = plan[2] if plan[0] == "from" else None
                self.active[call.call_id] = (self.loop.after(delay, self._run, call, plan), span)
                return
        self._run(call, None)

    def _run(self, call: Call, plan) -> None:
        error = self._fetched(call.number, plan)
        if error:
            self.active.pop(call.call_id, None)
            self._ran(call, False, b"", f"fetch failed: {error}")
            return
        if call.task == "GET":
            self.active.pop(call.call_id, None)
            out, _ = T.run("GET", call.miner, call.number, call.sector_size, self.sim.profile.seal_proof,
                           call.params, self.files.get(call.number))
            self._ran(call, True, out, "")
            return
        span = self.sim.metrics.start_span(self.name, call.task, self.loop.now, self.needs[call.task],
                                           call.work_id)
        timer = self.loop.after(self.sim.duration(call.task), self._done, call, span)
        self.active[call.call_id] = (timer, span)

    def _done(self, call: Call, span: Span) -> None:
        self.active.pop(call.call_id, None)
        try:
            out, files = T.run(call.task, call.miner, call.number, call.sector_size,
                               self.sim.profile.seal_proof, call.params, self.files.get(call.number))
        except (T.SimTaskError, ValueError) as e:
            self.sim.metrics.end_span(span, self.loop.now, "failed")
            self._ran(call, False, b"", str(e))
            return
        if files is not None:
            self.files[call.number] = files
        self.sim.metrics.end_span(span, self.loop.now, "ok")
        self.sim.metrics.ran(call.work_id, call.task)
        self._ran(call, True, out, "")

    def _ran(self, call: Call, ok: bool, result: bytes, error: str) -> None:
        self._feed(E.Ran(call_id=call.call_id, ok=ok, result=result, error=error))

    def _stop(self, call_id: str) -> None:
        timer, span = self.active.pop(call_id, (None, None))
        if timer is not None:
            timer.cancel()
        if span is not None:
            self.sim.metrics.end_span(span, self.loop.now, "aborted")

    # ---- sector files ----------------------------------------------------------------------------------
    def _fetch(self, task: str, number: int, sources, rid: str):
        """(seconds, plan) of getting the sector's files here. plan: None (nothing to
        fetch: this worker has them, they live nowhere yet, or the task is WDP, which
        reads its challenged leaves where the sectors are), ("from", worker, span), or
        ("fail", reason) when no source has them (noticed after FETCH_FAIL_S)."""
        if task == "WDP" or not sources or self.name in sources or number in self.files:
            return 0.0, None
        for name in sources:
            w = self.sim.workers.get(name)
            if w is not None and w.up and number in w.files:
                span = self.sim.metrics.start_span(self.name, "GET", self.loop.now, self.needs["GET"], rid)
                return self.sim.duration("GET"), ("from", w, span)
        return FETCH_FAIL_S, ("fail", f"no source of sector {number} answers ({', '.join(sources)})")

    def _end_plan(self, plan, outcome: str) -> None:
        if plan is not None and plan[0] == "from":
            self.sim.metrics.end_span(plan[2], self.loop.now, outcome)

    def _fetched(self, number: int, plan) -> str:
        """Copy the files once a fetch ends; the reason it failed, or ""."""
        if plan is None:
            return ""
        if plan[0] == "fail":
            return plan[1]
        source = plan[1]
        if not source.up or number not in source.files:
            self._end_plan(plan, "failed")
            return f"{source.name} went away during the fetch"
        self._end_plan(plan, "ok")
        self.files[number] = source.files[number].copy()
        return ""
