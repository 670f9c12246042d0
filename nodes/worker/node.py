"""The worker's shell: runs the scheduler's requests as calls, each in a subprocess,
keeps every call in its call store until the manager and the scheduler acknowledged its
end, serves its sectors' files to other workers, and beats to the scheduler with fresh
resources and what it is running.

A call: WorkerRun -> recorded (accepted) -> CallStarted to the manager (retried; the
manager may refuse: its result is stored, or it was aborted) -> running under the
task's limit and locks -> result stored (done) -> CallReturn to the manager and
SchedTaskDone to the scheduler, each retried with back-off until acknowledged. A
restart resumes every call from the store (see nodes.worker.store).
"""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import time
from pathlib import Path

import trio

from zqnode.bus.codec import ErrorCode, RemoteError
from zqnode.bus.permissions import ADMIN, ANYONE
from zqnode.bus.peer import CallTimeout, Peer, Refused, Request
from zqnode.bus.protocol import NodeUp
from zqnode.bus.ratelog import RateLimitedLog
from zqnode.nodes import observe
from zqnode.nodes.config import NodeConfig
from zqnode.nodes.wire.manager import CALL_REFUSED, CallReturn, CallStarted
from zqnode.nodes.wire.sectors import SectorRef, StoragePath, WorkerInfo, WorkerResources
from zqnode.nodes.wire.scheduler import (RunningRequest, SchedTaskDone, SchedTaskPrepared,
                                         SchedWorkerBeat)
from zqnode.nodes.worker import calls
from zqnode.nodes.wire import params as P
from zqnode.nodes.worker import resources
from zqnode.nodes.wire import worker as W
from zqnode.nodes.worker.executor import SubprocessExecutor
from zqnode.nodes.wire import chain as CW
from zqnode.nodes.chain.api import BusChainAPI
from zqnode.nodes.fetched import Expected
from zqnode.nodes.worker.fetch import FetchError, check_fetched, fetch_sector, serve_chunk, serve_files
from zqnode.nodes.worker.limits import Limits
from zqnode.nodes.sector_dirs import sector_dir
from zqnode.nodes.worker.store import ACCEPTED, ENDED, RUNNING, Call, CallStore
from zqnode.nodes.worker.task import TaskInput, TaskOutput, load_table
from zqnode.proofs.cid import parse_piece_cid, parse_sealed_cid

log = logging.getLogger("zqnode.worker")

KEEP_ACKED_S = 7 * 86400          # acknowledged calls are forgotten after a week
MAX_SECTOR_FILES = 32             # a sector's files, all layers and trees, in sector sizes
ABORTED = "aborted"


class WorkerNode:
    def __init__(self, cfg: NodeConfig, *, executor=None, resources_fn=None):
        self.cfg, self.wcfg = cfg, cfg.worker
        self.name = cfg.name
        self.repo = Path(cfg.repo)
        self.table_tasks = sorted({*load_table(self.wcfg.table), "GET"})
        missing = [t for t in self.wcfg.tasks if t not in self.table_tasks]
        if missing:
            raise ValueError(f"worker tasks {missing} are not in the table {self.wcfg.table} "
                             f"(it has {', '.join(self.table_tasks)})")
        self.executor = executor or SubprocessExecutor(self.repo / "logs")
        self.limits = Limits(self.wcfg.limits, self.wcfg.locks)
        self._host = resources_fn is None
        self._resources = resources_fn or self._host_resources
        self._gpus = resources.gpus() if self._host else []
        self.store: CallStore | None = None
        self.tasks: list[str] = []
        self._scopes: dict[str, trio.CancelScope] = {}       # call id -> its running scope
        self._preparing: dict[str, tuple[trio.CancelScope, RunningRequest]] = {}
        self._prepared: set[str] = set()                    # requests whose files are here
        self._kick = trio.Event()                            # the manager/scheduler came up
        self._store_log = RateLimitedLog(log, interval_s=60.0)
        self._nursery: trio.Nursery | None = None
        self.peer = Peer(name=cfg.name, role="worker", cfg=cfg.bus,
                         capabilities={"resources": resources.snapshot(self._gpus)})
        for kind, handler in {W.WorkerPrepare: self._on_prepare, W.WorkerRun: self._on_run,
                              W.WorkerAbort: self._on_abort, W.WorkerSectorFiles: self._on_files,
                              W.WorkerFetch: self._on_fetch, W.WorkerSetTask: self._on_set_task,
                              W.WorkerListCalls: self._on_list_calls}.items():
            self.peer.on(kind, handler)
        self.peer.allow({W.WorkerPrepare: "scheduler", W.WorkerRun: "scheduler",
                         W.WorkerAbort: "scheduler", W.WorkerSetTask: ADMIN,
                         W.WorkerListCalls: ANYONE})
        observe.worker(self)

    # ---- start -----------------------------------------------------------------------

    def open(self) -> None:
        self.repo.mkdir(parents=True, exist_ok=True)
        self.store = CallStore(self.repo / "calls.sqlite")
        self.store.prune(time.time() - KEEP_ACKED_S)
        self.last_beat = self.store.setting("beat", 0.0)    # the old process's last sign of life
        self.tasks = self.store.setting("tasks") or list(self.wcfg.tasks or self.table_tasks)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        if self.store is None:
            self.open()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.peer.run)
                nursery.start_soon(self._watch_nodes)
                for call in self.store.pending():
                    self._resume(call)
                nursery.start_soon(self._beat_loop)
                task_status.started(self)
        finally:
            self.store.close()

    def _resume(self, call: Call) -> None:
        for step in calls.next_steps(call):
            if step == calls.DRIVE:
                self._nursery.start_soon(self._drive, call.call_id, True)
            elif step == calls.RETURN:
                self._nursery.start_soon(self._return_loop, call.call_id)
            else:
                self._nursery.start_soon(self._done_loop, call.call_id)

    # ---- resources and beats -----------------------------------------------------------

    def _host_resources(self) -> WorkerResources:
        snap = resources.snapshot(self._gpus)
        return WorkerResources(cpus=snap["cpus"], mem_physical=snap["memory_total"],
                               mem_used=snap["memory_used"], mem_swap=snap["swap_total"],
                               mem_swap_used=snap["swap_used"],
                               gpus=tuple(g["name"] for g in snap["gpus"]))

    def info(self) -> WorkerInfo:
        return WorkerInfo(hostname=socket.gethostname(), tasks=tuple(sorted(self.tasks)),
                          resources=self._resources(),
                          paths=(StoragePath(id=self.name, can_seal=True, can_store=True),),
                          resource_env={**self.wcfg.resource_env, **self.limits.max_concurrent_env()},
                          ignore_resources=self.wcfg.ignore_resources)

    def running(self) -> list[RunningRequest]:
        """What the scheduler should count as running here: calls whose end it has not
        acknowledged, and requests being prepared."""
        return calls.running_requests(self.store.unreported(),
                                      (rr for _, rr in self._preparing.values()))

    async def beat(self) -> bool:
        """One beat to the scheduler; whether it answered."""
        info = self.info()
        if self._host:
            self.peer.update_capabilities({**self.peer.capabilities,
                                           "resources": resources.snapshot(self._gpus)})
        try:
            await self.peer.call("@scheduler", SchedWorkerBeat(
                session=self.peer.session, info=info, running=self.running()),
                timeout=max(self.wcfg.beat_s * 3, 1.0))
            return True
        except (RemoteError, CallTimeout):
            return False

    async def _beat_loop(self) -> None:
        while True:
            try:                                  # how long a crashed run lasted
                self.store.set_setting("beat", time.time())
            except sqlite3.OperationalError as e:     # a full disk: beat all the same
                self._store_failed(e, "the last beat is not stamped")
            await self.beat()
            await self._pause(self.wcfg.beat_s)

    async def _watch_nodes(self) -> None:
        with self.peer.subscribe("node.up", kinds=[NodeUp]) as sub:
            async for ev in sub:
                if ev.body.node.role in ("manager", "scheduler"):
                    self._kick.set()
                    self._kick = trio.Event()

    async def _pause(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self._kick.wait()

    # ---- scheduler requests ------------------------------------------------------------

    async def _on_prepare(self, req: Request) -> W.WorkerAck:
        b: W.WorkerPrepare = req.body
        if b.request not in self._preparing:
            rr = RunningRequest(request=b.request, task=b.task, sector=b.sector,
                                sector_size=b.sector_size, state="preparing")
            scope = trio.CancelScope()
            self._preparing[b.request] = (scope, rr)
            self._nursery.start_soon(self._prepare, b, scope)
        return W.WorkerAck()

    async def _prepare(self, b: W.WorkerPrepare, scope: trio.CancelScope) -> None:
        error = ""
        with scope:
            try:
                await self.ensure_local(b.task, b.sector, b.sector_size, b.params, b.sources)
            except (FetchError, P.ParamsError) as e:
                error = f"fetch failed: {e}"
        del self._preparing[b.request]
        if not error and not scope.cancelled_caught:
            self._prepared.add(b.request)
        if scope.cancelled_caught:
            error = ABORTED
        if error:       # the work ends here: failed (or aborted) as a call, so the manager hears
            call = await self._persist(self.store.add, b.request, b.task, b.sector, b.sector_size,
                                       b.params, b.sources, time.time())
            await self._persist(self.store.finish, call.call_id, False, b"", error, time.time())
            self._resume(self.store.get(call.call_id))
            return
        await self._retry(f"{b.request[:12]} prepared", "@scheduler",
                          lambda: SchedTaskPrepared(request=b.request))

    async def ensure_local(self, task: str, sector: SectorRef, sector_size: int, params: bytes,
                           sources: list[str]) -> tuple[list[str], int]:
        """Fetch the sector's files (and, for WDP, every proven sector's) unless this
        worker is a holder, and check them against the sector's commitments. Returns
        (files, bytes) fetched."""
        if not sources or self.name in sources:
            return [], 0
        numbers = [sector.number]
        proven: dict[int, Expected] = {}     # WDP: the poster's comm_r of each sector
        if task == "WDP":
            wdp = P.decode_params("WDP", params)
            proven = {n: Expected(wdp.seal_proof, comm_r=bytes(c)) for n, c in wdp.sectors}
            numbers += [n for n in proven if n != sector.number]
        files, size = [], 0
        for number in numbers:
            ref = SectorRef(miner=sector.miner, number=number)
            dest = sector_dir(self.repo, sector.miner, number)
            got, n = await fetch_sector(self.peer, sources, ref, dest,
                                        chunk=self.wcfg.fetch_chunk, attempts=self.wcfg.fetch_attempts,
                                        max_bytes=MAX_SECTOR_FILES * sector_size + (64 << 20))
            expected = proven.get(number) or await self._expected(ref)
            await trio.to_thread.run_sync(check_fetched, dest, got, expected, sector_size)
            files += got
            size += n
        return files, size

    async def _expected(self, ref: SectorRef) -> Expected | None:
        """The sector's commitments by the chain's account: its precommit, or once proven
        its sealed and unsealed CIDs; None before it is precommitted."""
        chain = BusChainAPI(self.peer, timeout=10.0)
        try:
            pc = await chain.precommit(ref.miner, ref.number)
            if pc is not None:
                return Expected(pc.seal_proof, comm_r=pc.comm_r, comm_d=pc.comm_d)
            on_chain = await chain.sector(ref.miner, ref.number)
        except RemoteError as e:
            if e.code == CW.NOT_FOUND:          # a miner the chain does not know: nothing to check
                return None
            raise FetchError(f"cannot check s-{ref.miner}-{ref.number} against the chain: {e}") from None
        except CallTimeout as e:
            raise FetchError(f"cannot check s-{ref.miner}-{ref.number} against the chain: {e}") from None
        if on_chain is None:
            return None
        comm_d = parse_piece_cid(on_chain.unsealed_cid)   # v1 (CommD): the chain checked it
        return Expected(on_chain.seal_proof, comm_r=parse_sealed_cid(on_chain.sealed_cid),
                        comm_d=comm_d if isinstance(comm_d, bytes) else b"")

    async def _on_run(self, req: Request) -> W.WorkerAccepted:
        b: W.WorkerRun = req.body
        if b.task not in self.table_tasks:
            raise Refused(ErrorCode.INVALID, f"{self.name} cannot run {b.task}")
        call = self.store.live_for(b.request)
        if call is None:
            try:
                call = self.store.add(b.request, b.task, b.sector, b.sector_size, b.params,
                                      b.sources, time.time())
            except sqlite3.OperationalError as e:     # a full disk: the scheduler asks again
                why = self._store_failed(e, "WorkerRun refused for now")
                raise Refused(ErrorCode.BUSY, why, retry=True) from None
            self.peer.set_problem("store")
            self._nursery.start_soon(self._drive, call.call_id, False)
        elif call.state in ENDED:                    # the scheduler asks again: tell it again
            self._nursery.start_soon(self._done_loop, call.call_id)
        return W.WorkerAccepted(call_id=call.call_id)

    async def _on_abort(self, req: Request) -> W.WorkerAck:
        request = req.body.request
        found = False
        if request in self._preparing:
            self._preparing[request][0].cancel()
            found = True
        call = self.store.live_for(request)
        if call is not None and call.call_id in self._scopes:
            self._scopes[call.call_id].cancel()
            found = True
        return W.WorkerAck(found=found)

    # ---- the call store ------------------------------------------------------------------

    async def _persist(self, write, *args):
        """`write(*args)` on the call store, retried while the disk is full or failing
        (sqlite3.OperationalError), with the condition reported (log, `zqnode status`,
        metric) until a write succeeds: a full disk pauses calls, it never ends the
        worker (whose sectors' files other nodes need)."""
        delay = 1.0
        while True:
            try:
                result = write(*args)
            except sqlite3.OperationalError as e:
                self._store_failed(e, f"trying again in {delay:.0f}s")
                await trio.sleep(delay)
                delay = min(delay * 2, self.wcfg.retry_max_s)
                continue
            self.peer.set_problem("store")
            return result

    def _store_failed(self, e: sqlite3.OperationalError, then: str) -> str:
        why = f"cannot write {self.store.path}: {e}"
        self.peer.set_problem("store", why)
        self._store_log.warning("store", "%s; %s", why, then)
        return why

    # ---- a call, start to end ------------------------------------------------------------

    async def _drive(self, call_id: str, resumed: bool) -> None:
        scope = self._scopes[call_id] = trio.CancelScope()
        outcome: TaskOutput | None = None
        with scope:
            call = self.store.get(call_id)
            observe.set_cause(_cause(call))       # this call's log lines
            if call.state == ACCEPTED:
                verdict = await self._announce(call)
                if verdict:
                    await self._persist(self.store.refuse, call_id, verdict, time.time())
                    log.info("call %s: the manager refused it (%s)", call_id, verdict)
                else:
                    call = await self._persist(self.store.start, call_id, time.time())
            elif resumed:
                lost = max(0.0, self.last_beat - call.updated)   # updated: when the run began
                call = await self._persist(self.store.rerun, call_id, time.time())
                observe.worker_rerun(self, call.task, lost)
                log.info("call %s (%s): running again after a restart (run %d; about %.0fs of "
                         "the last run lost)", call_id, call.task, call.runs, lost)
            if call.state == RUNNING:
                outcome = await self._execute(call)
        del self._scopes[call_id]
        if scope.cancelled_caught and outcome is None and self.store.get(call_id).state != "dropped":
            outcome = TaskOutput(ok=False, error=ABORTED)
        if outcome is not None:
            await self._persist(self.store.finish, call_id, outcome.ok, outcome.result,
                                outcome.error, time.time())
            log.info("call %s (%s) %s", call_id, call.task,
                     "done" if outcome.ok else f"failed: {outcome.error}")
        self._resume(self.store.get(call_id))

    async def _announce(self, call: Call) -> str:
        """CallStarted until the manager answers: "" = run it, else why not."""
        delay = 0.25
        while True:
            try:
                await self.peer.call("@manager", CallStarted(work_id=call.work_id, call_id=call.call_id),
                                     timeout=5.0, cause=_cause(call))
                return ""
            except RemoteError as e:
                if e.code == CALL_REFUSED:
                    return e.message
                log.debug("CallStarted %s: %s", call.call_id, e)
            except CallTimeout:
                pass
            await self._pause(delay)
            delay = min(delay * 2, self.wcfg.retry_max_s)

    async def _execute(self, call: Call) -> TaskOutput:
        if calls.needs_fetch(call, self._prepared):
            try:
                files, size = await self.ensure_local(call.task, call.sector, call.sector_size,
                                                      call.params, call.sources)
            except (FetchError, P.ParamsError) as e:
                return TaskOutput(ok=False, error=f"fetch failed: {e}")
            if call.task == "GET":
                return TaskOutput(ok=True, result=P.encode(P.GETResult(files=files, size=size)))
        self._prepared.discard(call.work_id)
        async with self.limits.hold(call.task, call.call_id):
            inp = TaskInput(table=self.wcfg.table, task=call.task, work_id=call.work_id,
                            call_id=call.call_id, worker=self.name, miner=call.miner,
                            number=call.number, sector_size=call.sector_size,
                            sector_dir=str(sector_dir(self.repo, call.miner, call.number)),
                            repo=str(self.repo), params=call.params, backend=self.wcfg.backend,
                            parent_cache=self.wcfg.parent_cache or os.environ.get("ZQNODE_PARENT_CACHE", ""))
            return await self.executor.run(inp)

    async def _return_loop(self, call_id: str) -> None:
        call = self.store.get(call_id)
        msg = CallReturn(work_id=call.work_id, call_id=call_id, ok=bool(call.ok), error=call.error)
        await self._retry(f"return of {call_id}", "@manager", lambda: msg,
                          buffers=[call.result] if call.ok else [], cause=_cause(call))
        await self._persist(self.store.mark_returned, call_id, time.time())

    async def _done_loop(self, call_id: str) -> None:
        call = self.store.get(call_id)
        await self._retry(f"TaskDone of {call_id}", "@scheduler",
                          lambda: SchedTaskDone(request=call.work_id, ok=bool(call.ok)),
                          cause=_cause(call))
        await self._persist(self.store.mark_sched_done, call_id)

    async def _retry(self, what: str, to: str, make, buffers=(), cause: str = ""):
        """Send until answered, with capped back-off (woken early when the target's role
        comes up)."""
        delay = 0.25
        while True:
            try:
                return await self.peer.call(to, make(), buffers=buffers, timeout=5.0, cause=cause)
            except RemoteError as e:
                log.debug("%s: %s", what, e)
            except CallTimeout:
                pass
            await self._pause(delay)
            delay = min(delay * 2, self.wcfg.retry_max_s)

    # ---- files and operators -------------------------------------------------------------

    async def _on_files(self, req: Request) -> W.WorkerFileList:
        s = req.body.sector
        return serve_files(sector_dir(self.repo, s.miner, s.number))

    async def _on_fetch(self, req: Request):
        s = req.body.sector
        return await serve_chunk(sector_dir(self.repo, s.miner, s.number), req.body)

    async def _on_set_task(self, req: Request) -> W.WorkerTaskList:
        b: W.WorkerSetTask = req.body
        if b.task not in self.table_tasks:
            raise Refused(ErrorCode.INVALID, f"{self.name} has no task type {b.task!r} "
                                             f"(it has {', '.join(self.table_tasks)})")
        tasks = set(self.tasks)
        tasks = tasks | {b.task} if b.enabled else tasks - {b.task}
        self.store.set_setting("tasks", sorted(tasks))
        self.tasks = sorted(tasks)
        self._kick.set()                         # beat now: the scheduler hears at once
        self._kick = trio.Event()
        return W.WorkerTaskList(tasks=self.tasks)

    async def _on_list_calls(self, req: Request) -> W.WorkerCallList:
        return W.WorkerCallList(worker=self.name, calls=[
            W.CallInfo(call_id=c.call_id, work_id=c.work_id, task=c.task, sector=c.sector,
                       state=c.state, runs=c.runs, ok=c.ok, error=c.error, returned=c.returned,
                       sched_done=c.sched_done) for c in self.store.calls()])


def _cause(call: Call) -> str:
    return f"s-{call.miner}-{call.number}"
