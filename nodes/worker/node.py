"""The worker's shell: runs the scheduler's requests as calls, each in a subprocess,
keeps every call in its call store until the manager and the scheduler acknowledged its
end, serves its sectors' files to other workers, and beats to the scheduler with fresh
resources and what it is running.

The calls' rules are the core's (nodes.worker.core): requests and answers go in as
events, and the shell carries out the commands that come back, in order: Save writes
the call store (a full disk holds the commands after it back, retried, and says so),
Announce / Return / Report / TellPrepared send until answered with capped back-off,
RunTask and Fetch run in a cancel scope that StopCall / StopFetch cancel. A restart
resumes every call from the store.
"""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import time
from typing import Callable
from pathlib import Path

import trio

from zqnode.bus.codec import ErrorCode, RemoteError
from zqnode.bus.permissions import ADMIN, ANYONE
from zqnode.bus.peer import CallTimeout, Peer, Refused, Request
from zqnode.bus.protocol import NodeUp
from zqnode.bus.ratelog import RateLimitedLog
from zqnode.bus.retry import backoff
from zqnode.nodes import observe
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.worker.config import WorkerConfig
from zqnode.nodes.wire.manager import CALL_REFUSED, CallReturn, CallStarted
from zqnode.nodes.wire.sectors import SectorRef, StoragePath, WorkerInfo, WorkerResources
from zqnode.nodes.wire.scheduler import RunningRequest, SchedTaskDone, SchedTaskPrepared, SchedWorkerBeat
from zqnode.nodes.worker import commands as C
from zqnode.nodes.worker import events as E
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
from zqnode.nodes.worker.calls import Call
from zqnode.nodes.worker.core import WorkerCore
from zqnode.nodes.worker.store import CallStore, new_call_id
from zqnode.nodes.worker.task import TaskInput, TaskOutput, load_table
from zqnode.proofs.cid import CidError, parse_piece_cid, parse_sealed_cid

log = logging.getLogger("zqnode.worker")

KEEP_ACKED_S = 7 * 86400          # acknowledged calls are forgotten after a week
MAX_SECTOR_FILES = 32             # a sector's files, all layers and trees, in sector sizes


class WorkerNode:
    def __init__(self, me: NodeIdentity, cfg: WorkerConfig, *, executor=None, resources_fn=None,
                 clock: Callable[[], float] = time.time):
        self.me, self.wcfg, self.clock = me, cfg, clock
        self.name = me.name
        self.repo = Path(me.repo)
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
        self.core = WorkerCore(new_call_id)
        self.tasks: list[str] = []
        self._scopes: dict[str, trio.CancelScope] = {}       # call id -> what runs for it
        self._fetches: dict[str, trio.CancelScope] = {}      # request -> its preparation's fetch
        self._held: list[C.Command] = []                     # behind a Save the disk refused
        self._kick = trio.Event()                            # the manager/scheduler came up
        self._store_log = RateLimitedLog(log, interval_s=60.0)
        self._nursery: trio.Nursery | None = None
        self.peer = Peer(name=me.name, role="worker", cfg=me.bus,
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
        self.store.prune(self.clock() - KEEP_ACKED_S)
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
                self.core.restore(self.store.pending())
                self._feed(E.Restarted(last_beat=self.last_beat))
                nursery.start_soon(self._beat_loop)
                task_status.started(self)
        finally:
            self.store.close()

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
        """What the scheduler should count as running here (the core's account)."""
        return self.core.running()

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
                self.store.set_setting("beat", self.clock())
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
        self._feed(E.Prepare(request=b.request, task=b.task, sector=b.sector,
                             sector_size=b.sector_size, params=b.params, sources=b.sources))
        return W.WorkerAck()

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
        try:     # CommD (v1) the chain checked; a Lotus node keeps none for a proven sector
            comm_d = parse_piece_cid(on_chain.unsealed_cid) if on_chain.unsealed_cid else b""
            comm_r = parse_sealed_cid(on_chain.sealed_cid)
            key = parse_sealed_cid(on_chain.sector_key_cid) if on_chain.sector_key_cid else b""
        except CidError as e:
            raise FetchError(f"the chain's s-{ref.miner}-{ref.number} does not read: {e}") from None
        return Expected(on_chain.seal_proof, comm_r=comm_r, comm_d=comm_d if isinstance(comm_d, bytes) else b"",
                        sector_key=key)

    async def _on_run(self, req: Request) -> W.WorkerAccepted:
        b: W.WorkerRun = req.body
        if b.task not in self.table_tasks:
            raise Refused(ErrorCode.INVALID, f"{self.name} cannot run {b.task}")
        commands = self.core.handle(E.Run(request=b.request, task=b.task, sector=b.sector,
                                          sector_size=b.sector_size, params=b.params,
                                          sources=b.sources), self.clock())
        call = self.core.live_for(b.request)
        if commands and isinstance(commands[0], C.Save):     # a new call: recorded before all
            try:
                self.store.save(commands[0].call)
            except sqlite3.OperationalError as e:          # a full disk: the scheduler asks again
                self.core.handle(E.Unrecorded(call_id=call.call_id), self.clock())
                why = self._store_failed(e, "WorkerRun refused for now")
                raise Refused(ErrorCode.BUSY, why, retry=True) from None
            self.peer.set_problem("store")
            commands = commands[1:]
        self._execute(commands)
        return W.WorkerAccepted(call_id=call.call_id)

    async def _on_abort(self, req: Request) -> W.WorkerAck:
        commands = self.core.handle(E.Abort(request=req.body.request), self.clock())
        self._execute(commands)
        return W.WorkerAck(found=any(isinstance(c, (C.StopCall, C.StopFetch)) for c in commands))

    # ---- the core's commands -------------------------------------------------------------

    def _feed(self, event: E.Event) -> None:
        self._execute(self.core.handle(event, self.clock()))

    def _execute(self, commands: list[C.Command]) -> None:
        """Carry the commands out in order. A Save the disk refuses (sqlite3.OperationalError)
        holds it and everything after it, and all later commands, back until a write
        succeeds: a full disk pauses calls, it never ends the worker (whose sectors' files
        other nodes need), and nothing is said before what it says is stored."""
        if self._held:
            self._held += commands
            return
        self._held = self._carry_out(commands)
        if self._held:
            self._nursery.start_soon(self._write_held)

    def _carry_out(self, commands: list[C.Command]) -> list[C.Command]:
        """What is left behind a Save the disk refused ([]: all carried out)."""
        for i, cmd in enumerate(commands):
            if isinstance(cmd, C.Save):
                try:
                    self._save(cmd)
                except sqlite3.OperationalError as e:
                    self._store_failed(e, "calls wait until a write succeeds")
                    return list(commands[i:])
            else:
                self._start(cmd)
        return []

    def _save(self, cmd: C.Save) -> None:
        self.store.save(cmd.call)
        self.peer.set_problem("store")
        if cmd.note:
            log.info("call %s (%s): %s", cmd.call.call_id, cmd.call.task, cmd.note,
                     extra={"cause": cmd.cause})

    async def _write_held(self) -> None:
        for delay in backoff(1.0, self.wcfg.retry_max_s):
            await trio.sleep(delay)
            self._held = self._carry_out(self._held)
            if not self._held:
                return

    def _start(self, cmd: C.Command) -> None:
        start = self._nursery.start_soon
        if isinstance(cmd, C.Announce):
            start(self._in_scope, self._scope(cmd.call.call_id), self._announce, cmd.call)
        elif isinstance(cmd, C.RunTask):
            start(self._in_scope, self._scope(cmd.call.call_id), self._run_task, cmd.call, cmd.fetch)
        elif isinstance(cmd, C.CountRerun):
            observe.worker_rerun(self, cmd.call.task, cmd.lost_s)
        elif isinstance(cmd, C.Return):
            start(self._return, cmd.call)
        elif isinstance(cmd, C.Report):
            start(self._report, cmd.call)
        elif isinstance(cmd, C.StopCall):
            self._scopes.get(cmd.call_id, trio.CancelScope()).cancel()
        elif isinstance(cmd, C.Fetch):
            scope = self._fetches[cmd.request] = trio.CancelScope()
            start(self._fetch, cmd, scope)
        elif isinstance(cmd, C.StopFetch):
            self._fetches.get(cmd.request, trio.CancelScope()).cancel()
        elif isinstance(cmd, C.TellPrepared):
            start(self._retry, f"{cmd.request[:12]} prepared", "@scheduler",
                  lambda: SchedTaskPrepared(request=cmd.request))
        else:
            raise TypeError(f"unknown command {cmd!r}")

    def _scope(self, call_id: str) -> trio.CancelScope:
        """What runs for the call from now on (made before its task starts: a StopCall
        right after still stops it)."""
        scope = self._scopes[call_id] = trio.CancelScope()
        return scope

    async def _in_scope(self, scope: trio.CancelScope, fn, call: Call, *args) -> None:
        """fn(call, *args) -> the event answering it, fed to the core unless StopCall
        cancelled it (the core already ended the call)."""
        event = None
        with scope:
            observe.set_cause(call.cause)                   # this call's log lines
            event = await fn(call, *args)
        if self._scopes.get(call.call_id) is scope:
            del self._scopes[call.call_id]
        if event is not None:
            self._feed(event)

    async def _announce(self, call: Call) -> E.Announced:
        """CallStarted until the manager answers: run it, or why not."""
        for delay in backoff(0.25, self.wcfg.retry_max_s):
            try:
                await self.peer.call("@manager", CallStarted(work_id=call.work_id, call_id=call.call_id),
                                     timeout=5.0, cause=call.cause)
                return E.Announced(call_id=call.call_id)
            except RemoteError as e:
                if e.code == CALL_REFUSED:
                    return E.Announced(call_id=call.call_id, refused=e.message)
                log.debug("CallStarted %s: %s", call.call_id, e)
            except CallTimeout:
                pass
            await self._pause(delay)

    async def _run_task(self, call: Call, fetch: bool) -> E.Ran:
        out = await self._outcome(call, fetch)
        return E.Ran(call_id=call.call_id, ok=out.ok, result=out.result, error=out.error)

    async def _outcome(self, call: Call, fetch: bool) -> TaskOutput:
        if fetch:
            try:
                files, size = await self.ensure_local(call.task, call.sector, call.sector_size,
                                                      call.params, call.sources)
            except (FetchError, P.ParamsError) as e:
                return TaskOutput(ok=False, error=f"fetch failed: {e}")
            if call.task == "GET":
                return TaskOutput(ok=True, result=P.encode(P.GETResult(files=files, size=size)))
        async with self.limits.hold(call.task, call.call_id):
            inp = TaskInput(table=self.wcfg.table, task=call.task, work_id=call.work_id,
                            call_id=call.call_id, worker=self.name, miner=call.miner,
                            number=call.number, sector_size=call.sector_size,
                            sector_dir=str(sector_dir(self.repo, call.miner, call.number)),
                            repo=str(self.repo), params=call.params, backend=self.wcfg.backend,
                            parent_cache=self.wcfg.parent_cache or os.environ.get("ZQNODE_PARENT_CACHE", ""),
                            cores=self.wcfg.cores)
            return await observe.worker_task(self.name, call.task, self.executor.run(inp),
                                             aborted=lambda: self._aborted(call.call_id))

    def _aborted(self, call_id: str) -> bool:
        scope = self._scopes.get(call_id)
        return scope is not None and scope.cancel_called

    async def _fetch(self, cmd: C.Fetch, scope: trio.CancelScope) -> None:
        """A preparation's fetch: Fetched, unless StopFetch cancelled it."""
        error = ""
        with scope:
            try:
                await self.ensure_local(cmd.task, cmd.sector, cmd.sector_size, cmd.params, cmd.sources)
            except (FetchError, P.ParamsError) as e:
                error = f"fetch failed: {e}"
        if self._fetches.get(cmd.request) is scope:
            del self._fetches[cmd.request]
        if not scope.cancelled_caught:
            self._feed(E.Fetched(request=cmd.request, error=error))

    async def _return(self, call: Call) -> None:
        msg = CallReturn(work_id=call.work_id, call_id=call.call_id, ok=bool(call.ok), error=call.error)
        await self._retry(f"return of {call.call_id}", "@manager", lambda: msg,
                          buffers=[call.result] if call.ok else [], cause=call.cause)
        self._feed(E.Returned(call_id=call.call_id))

    async def _report(self, call: Call) -> None:
        await self._retry(f"TaskDone of {call.call_id}", "@scheduler",
                          lambda: SchedTaskDone(request=call.work_id, ok=bool(call.ok)),
                          cause=call.cause)
        self._feed(E.Reported(call_id=call.call_id))

    async def _retry(self, what: str, to: str, make, buffers=(), cause: str = ""):
        """Send until answered, with capped back-off (woken early when the target's role
        comes up)."""
        for delay in backoff(0.25, self.wcfg.retry_max_s):
            try:
                return await self.peer.call(to, make(), buffers=buffers, timeout=5.0, cause=cause)
            except RemoteError as e:
                log.debug("%s: %s", what, e)
            except CallTimeout:
                pass
            await self._pause(delay)

    def _store_failed(self, e: sqlite3.OperationalError, then: str) -> str:
        why = f"cannot write {self.store.path}: {e}"
        self.peer.set_problem("store", why)
        self._store_log.warning("store", "%s; %s", why, then)
        return why

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
