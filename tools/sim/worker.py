"""A simulated worker: nodes.worker.node.WorkerNode's call handling (its calls are
nodes.worker.store.Call, following the rules of nodes.worker.calls), with the profile's
durations instead of task processes and copies of SectorFiles instead of fetching.

Kept as the real worker keeps it (its 'calls.sqlite' and sector directories survive a
crash): the calls and the sector files. A call goes accepted -> running (the manager
said run) -> done, is returned to the manager and reported to the scheduler, each
retried until acknowledged. A crash kills what runs and what is being fetched; the
restarted worker (a new session) reruns its running calls under the same call id,
returns stored results again, asks again about accepted ones, and beats to the
scheduler with what it runs (the scheduler adopts those).

Not modelled: the worker's own per-task semaphores and locks (the scheduler is told the
limits as MAX_CONCURRENT and never sends more), resources read from the host (they are
the cluster file's), and the bytes of a fetch (a fetch takes the profile's GET time;
WindowPoSt reads its challenged leaves in place, inside the WDP time)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from zqnode.nodes.wire.sectors import SectorRef, StoragePath, WorkerInfo, WorkerResources
from zqnode.nodes.scheduler.resources import parse_resource_env
from zqnode.nodes.wire.scheduler import RunningRequest
from zqnode.nodes.worker import calls
from zqnode.nodes.worker.node import ABORTED
from zqnode.nodes.worker.store import ACCEPTED, ENDED, RUNNING, Call, moved

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
        self.calls: dict[str, Call] = {}               # not yet acknowledged by both sides
        self.live: dict[str, Call] = {}                # work id -> its call not yet returned
        self.files: dict[int, T.SectorFiles] = {}
        self._ids = itertools.count(1)
        # lost in a crash
        self.preparing: dict[str, tuple] = {}          # request -> (timer, RunningRequest, span)
        self.prepared: set[str] = set()
        self.active: dict[str, tuple] = {}             # call id -> (timer or None, span or None)
        self.crashes = 0

    @property
    def session_id(self) -> str:
        return f"{self.name}#{self.session}"

    # ---- start, crash, restart ------------------------------------------------------------
    def start(self) -> None:
        self.beat()

    def crash(self) -> None:
        """kill -9: what runs dies with the process; the call store and files stay."""
        self.up = False
        self.crashes += 1
        now = self.loop.now
        for timer, _, plan, _ in self.preparing.values():
            timer.cancel()
            self._end_plan(plan, "killed")
        for timer, span in self.active.values():
            if timer is not None:
                timer.cancel()
            if span is not None:
                self.sim.metrics.end_span(span, now, "killed")
        self.preparing.clear()
        self.prepared.clear()
        self.active.clear()

    def restart(self) -> None:
        self.up = True
        self.session += 1
        for call in list(self.calls.values()):
            self._resume(call, restarted=True)
        self.beat()

    # ---- the scheduler's view ----------------------------------------------------------------
    def running(self) -> list[RunningRequest]:
        return calls.running_requests((c for c in self.calls.values() if not c.sched_done),
                                      (p[1] for p in self.preparing.values()))

    def beat(self) -> None:
        sched = self.sim.scheduler
        self.net.call(self, sched.name, sched.on_beat, self.name, self.session_id, self.info,
                      self.running(), tries=1)

    # ---- requests from the scheduler -------------------------------------------------------------
    def on_prepare(self, rid: str, task: str, miner: int, number: int, size: int, params: bytes,
                   sources: list[str]) -> None:
        if rid in self.preparing:
            return
        rr = RunningRequest(request=rid, task=task, sector=SectorRef(miner=miner, number=number),
                            sector_size=size, state="preparing")
        delay, plan = self._fetch(task, number, sources, rid)
        req = (rid, task, miner, number, size, params, sources)
        timer = self.loop.after(delay, self._prepared, req, plan)
        self.preparing[rid] = (timer, rr, plan, req)

    def _prepared(self, req, plan) -> None:
        rid = req[0]
        del self.preparing[rid]
        error = self._fetched(req[3], plan)
        if error:                          # the work ends here, as a failed call
            self._finish(self._add(*req), False, b"", f"fetch failed: {error}")
            return
        self.prepared.add(rid)
        sched = self.sim.scheduler
        self.net.call(self, sched.name, sched.on_prepared, self.name, rid, True, "",
                      tries=None, backoff=(0.25, RETRY_MAX_S))

    def on_run(self, rid: str, task: str, miner: int, number: int, size: int, params: bytes,
               sources: list[str]) -> str:
        call = self._live_for(rid)
        if call is None:
            call = self._add(rid, task, miner, number, size, params, sources)
            self.loop.soon(self._drive, call, self.session, False)
        elif call.state in ENDED:
            self._done_loop(call)
        return call.call_id

    def on_abort(self, rid: str) -> bool:
        found = False
        if rid in self.preparing:
            timer, _, plan, req = self.preparing.pop(rid)
            timer.cancel()
            self._end_plan(plan, "aborted")
            self._finish(self._add(*req), False, b"", ABORTED)
            found = True
        call = self._live_for(rid)
        if call is not None and call.call_id in self.active:
            timer, span = self.active.pop(call.call_id)
            if timer is not None:
                timer.cancel()
            if span is not None:
                self.sim.metrics.end_span(span, self.loop.now, "aborted")
            self._finish(call, False, b"", ABORTED)
            found = True
        return found

    def _live_for(self, rid: str) -> Call | None:
        """The call for this work not yet returned to the manager."""
        return self.live.get(rid)

    # ---- a call ------------------------------------------------------------------------------------
    def _add(self, rid, task, miner, number, size, params, sources) -> Call:
        call = Call(call_id=f"s-{miner}-{number}-{self.name}-{next(self._ids)}", work_id=rid,
                    task=task, miner=miner, number=number, sector_size=size, params=params,
                    sources=list(sources), state=ACCEPTED)
        self.calls[call.call_id] = self.live[rid] = call
        return call

    def _settle(self, call: Call) -> None:
        """Forget a call both sides acknowledged (the real store keeps it a week)."""
        if call.returned and self.live.get(call.work_id) is call:
            del self.live[call.work_id]
        if call.returned and call.sched_done:
            self.calls.pop(call.call_id, None)

    def _drive(self, call: Call, session: int, resumed: bool) -> None:
        if not self.up or session != self.session or call.state in ENDED:
            return
        self.active[call.call_id] = (None, None)
        if call.state == ACCEPTED:
            mgr = self.sim.manager
            self.net.call(self, mgr.name, mgr.on_started, call.work_id, call.call_id, self.name,
                          ack=lambda verdict: self._announced(call, verdict), tries=None,
                          backoff=(0.25, RETRY_MAX_S))
            return
        if resumed:                        # its computation died with the old process
            call.state = moved(call, "rerun")
            call.runs += 1
        self._execute(call)

    def _announced(self, call: Call, verdict: str) -> None:
        if call.call_id not in self.active or call.state != ACCEPTED:
            return                         # aborted meanwhile
        if verdict != "run":
            del self.active[call.call_id]
            call.state, call.returned, call.error = moved(call, "refuse"), True, verdict
            self._settle(call)
            self._resume(call)
            return
        call.state = moved(call, "start")
        call.runs += 1
        self._execute(call)

    def _execute(self, call: Call) -> None:
        plan = None
        if calls.needs_fetch(call, self.prepared):
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
            self._finish(call, False, b"", f"fetch failed: {error}")
            return
        self.prepared.discard(call.work_id)
        if call.task == "GET":
            self.active.pop(call.call_id, None)
            out, _ = T.run("GET", call.miner, call.number, call.sector_size, self.sim.profile.seal_proof,
                           call.params, self.files.get(call.number))
            self._finish(call, True, out, "")
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
            self._finish(call, False, b"", str(e))
            return
        if files is not None:
            self.files[call.number] = files
        self.sim.metrics.end_span(span, self.loop.now, "ok")
        self.sim.metrics.ran(call.work_id, call.task)
        self._finish(call, True, out, "")

    def _finish(self, call: Call, ok: bool, result: bytes, error: str) -> None:
        call.state, call.ok, call.result, call.error = moved(call, "finish"), ok, result, error
        self._resume(call)

    def _resume(self, call: Call, restarted: bool = False) -> None:
        for step in calls.next_steps(call):
            if step == calls.DRIVE:
                self.loop.soon(self._drive, call, self.session, restarted and call.state == RUNNING)
            elif step == calls.RETURN:
                self._return_loop(call)
            else:
                self._done_loop(call)

    def _return_loop(self, call: Call) -> None:
        mgr = self.sim.manager

        def ack(outcome):
            call.state, call.returned = moved(call, "returned"), True
            self._settle(call)
        self.net.call(self, mgr.name, mgr.on_return, call.work_id, call.call_id, self.name,
                      bool(call.ok), call.result, call.error, ack=ack, tries=None,
                      backoff=(0.25, RETRY_MAX_S))

    def _done_loop(self, call: Call) -> None:
        sched = self.sim.scheduler

        def ack(_):
            call.sched_done = True
            self._settle(call)
        self.net.call(self, sched.name, sched.on_done, self.name, call.work_id, bool(call.ok),
                      ack=ack, tries=None, backoff=(0.25, RETRY_MAX_S))

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
