"""The scheduler's pure core: events in, commands out (see the package docstring)."""
from __future__ import annotations

import msgspec

from zqnode.nodes.wire import scheduler as wire
from zqnode.nodes.wire import sectors
from zqnode.nodes.wire.tasks import ORDER, SECTOR_SIZES

from zqnode.nodes.scheduler import events as m
from . import worker_loop
from .assign import ASSIGNER_KINDS, PassWindow, run_pass
from .errors import (DuplicateRequest, InvalidTransition, SchedulerError, UnknownRequest,
                     UnknownWorker)
from .queue import Request, RequestQueue
from .resources import ResourceTable, parse_resource_env
from .usage import Usage
from .workers import Window, Worker


class Scheduler:
    def __init__(self, config: m.SchedulerConfig | None = None) -> None:
        config = m.SchedulerConfig() if config is None else config
        if config.assigner not in ASSIGNER_KINDS:
            raise SchedulerError(f"unknown assigner {config.assigner!r} "
                                 f"(one of {', '.join(ASSIGNER_KINDS)})")
        if not isinstance(config.windows_per_worker, int) or config.windows_per_worker < 1:
            raise SchedulerError(f"windows_per_worker must be >= 1, "
                                 f"got {config.windows_per_worker!r}")
        if not 0 < config.disable_after_s <= config.remove_after_s:
            raise SchedulerError("need 0 < disable_after_s <= remove_after_s, got "
                                 f"{config.disable_after_s} and {config.remove_after_s}")
        self.config = config
        self._table = parse_resource_env(config.resource_env, strict=True)
        self.workers: dict[str, Worker] = {}  # join order
        self.requests: dict[str, Request] = {}
        self.queue = RequestQueue()
        self._path_owners: dict[str, list[Worker]] = {}
        self._seq = self._rank = self._window_ids = self._pass_id = 0
        self._rounds = 0  # passes that assigned something: "pass N" in causes
        self._dirty: dict[str, None] = {}  # workers whose windows need processing
        self._full_pass = False  # windows opened or workers changed: look at every class
        self._cause = ""
        self._handlers = {
            m.WorkerJoined: self._worker_joined, m.WorkerHeartbeat: self._heartbeat,
            m.WorkerLeft: self._worker_left, m.TaskQueued: self._task_queued,
            m.TaskCancelled: self._task_cancelled, m.TaskPrepared: self._task_prepared,
            m.TaskFinished: self._task_finished, m.TaskAdopted: self._task_adopted,
            m.Tick: self._tick,
        }

    # ---- public ------------------------------------------------------------------------

    def handle(self, event: m.Event, now: float) -> list[m.Command]:
        """Apply one event, then schedule."""
        commands = self.apply(event, now)
        commands += self.schedule(now)
        return commands

    def apply(self, event: m.Event, now: float) -> list[m.Command]:
        """Apply one event without a scheduling pass (a shell draining a burst of events
        calls this for each, then `schedule` once). Raises a SchedulerError, changing
        nothing, when the event is invalid."""
        handler = self._handlers.get(type(event))
        if handler is None:
            raise SchedulerError(f"not a scheduler event: {event!r}")
        commands = handler(event, now)
        self._cause = event.cause
        return commands

    def schedule(self, now: float) -> list[m.Command]:
        """Fill open windows from the queue and start what fits on the workers, until
        nothing more moves."""
        commands: list[m.Command] = []
        while True:
            if self._full_pass or self.queue.fresh:
                # After a pass every queued class is stuck, and stays so until windows
                # open or workers change (then _need_pass); until then only classes
                # with new requests need a look.
                classes = None if self._full_pass else list(self.queue.fresh.values())
                self._full_pass = False
                self.queue.fresh.clear()
                if self.queue.size:
                    self._pass_id += 1
                    filled = run_pass(self._pass_id, list(self.workers.values()), self.queue,
                                      self.config.windows_per_worker, self.config.assigner,
                                      self._path_owners, classes)
                    self._commit(filled, commands)
            if not self._dirty:
                break
            dirty, self._dirty = self._dirty, {}
            for name in dirty:
                w = self.workers.get(name)
                if w is not None and worker_loop.process(w, commands, self._cause):
                    self._full_pass = True
            if not self._full_pass:
                break
        return commands

    def diag(self) -> wire.SchedDiag:
        """A sched-diag snapshot: the queue in order, open windows, per-worker use."""
        per = self.config.windows_per_worker
        requests = tuple(wire.DiagRequest(request=r.rid, sector=r.sector, task=r.task,
                                       priority=r.priority, sector_size=r.size,
                                       queued_at=r.queued_at) for r in self.queue)
        open_windows = tuple(w.name for w in self.workers.values() if w.enabled
                             for _ in range(per - len(w.windows)))
        workers = tuple(self._diag_worker(w) for w in self.workers.values())
        return wire.SchedDiag(requests=requests, open_windows=open_windows, workers=workers)

    # ---- workers -----------------------------------------------------------------------

    def _check_resources(self, who: str, r: sectors.WorkerResources) -> None:
        ints = {"cpus": r.cpus, "mem_physical": r.mem_physical, "mem_used": r.mem_used,
                "mem_swap": r.mem_swap, "mem_swap_used": r.mem_swap_used}
        for name, value in ints.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SchedulerError(f"worker {who}: resources.{name} must be an int >= 0, "
                                     f"got {value!r}")
        if r.cpus < 1 or r.mem_physical < 1:
            raise SchedulerError(f"worker {who}: needs cpus >= 1 and mem_physical >= 1")
        if not all(isinstance(g, str) for g in r.gpus):
            raise SchedulerError(f"worker {who}: gpus must be names (strings)")

    def _worker_table(self, name: str, info: sectors.WorkerInfo) -> ResourceTable:
        unknown = [t for t in info.tasks if t not in ORDER]
        if unknown:
            raise SchedulerError(f"worker {name}: unknown task types {unknown}")
        self._check_resources(name, info.resources)
        if not info.resource_env:
            return self._table
        return parse_resource_env(info.resource_env, base=self._table)

    def _worker_joined(self, e: m.WorkerJoined, now: float) -> list[m.Command]:
        table = self._worker_table(e.worker, e.info)
        w = self.workers.get(e.worker)
        if w is not None and w.session == e.session:  # re-registration: new info
            self._unindex(w)
            w.set_info(e.info, table)
            self._index(w)
            w.last_seen = now
            commands = self._enable(w, e.cause)
            self._full_pass = True
            self._dirty[w.name] = None
            return commands
        commands = []
        if w is not None:
            commands += self._remove(w, f"{e.cause}: session changed from {w.session} "
                                        f"to {e.session} (worker restarted)")
        commands += self._add(e.worker, e.session, e.info, table, now, e.cause)
        return commands

    def _add(self, name: str, session: str, info: sectors.WorkerInfo, table: ResourceTable,
             now: float, cause: str) -> list[m.Command]:
        self._rank += 1
        w = self.workers[name] = Worker(name, session, info, table, self._rank, now)
        self._index(w)
        self._full_pass = True
        return [m.WorkerAdded(worker=name, session=session, cause=cause)]

    def _heartbeat(self, e: m.WorkerHeartbeat, now: float) -> list[m.Command]:
        w = self._worker(e.worker)
        self._check_resources(e.worker, e.resources)
        if w.session != e.session:  # restarted: drop it and add it back, fresh
            info = msgspec.structs.replace(w.info, resources=e.resources)
            table = w.table
            commands = self._remove(w, f"{e.cause}: session changed from {w.session} "
                                       f"to {e.session} (worker restarted)")
            return commands + self._add(e.worker, e.session, info, table, now, e.cause)
        w.last_seen = now
        if e.resources != w.resources:
            w.set_resources(e.resources)
            self._full_pass = True
            self._dirty[w.name] = None  # what fits may have changed
        return self._enable(w, e.cause)

    def _worker_left(self, e: m.WorkerLeft, now: float) -> list[m.Command]:
        return self._remove(self._worker(e.worker), e.cause)

    def _tick(self, e: m.Tick, now: float) -> list[m.Command]:
        commands: list[m.Command] = []
        for w in list(self.workers.values()):
            silent = now - w.last_seen
            if silent > self.config.remove_after_s:
                commands += self._remove(w, f"{e.cause}: silent for {silent:g}s "
                                            f"(> {self.config.remove_after_s:g}s)")
            elif w.enabled and silent > self.config.disable_after_s:
                commands += self._disable(w, f"{e.cause}: silent for {silent:g}s "
                                             f"(> {self.config.disable_after_s:g}s)")
        return commands

    def _worker(self, name: str) -> Worker:
        w = self.workers.get(name)
        if w is None:
            raise UnknownWorker(f"unknown worker {name!r} (not joined, or removed: "
                                f"it must join again)")
        return w

    def _index(self, w: Worker) -> None:
        for path in w.path_ids:
            self._path_owners.setdefault(path, []).append(w)

    def _unindex(self, w: Worker) -> None:
        for path in w.path_ids:
            owners = [o for o in self._path_owners.get(path, ()) if o is not w]
            if owners:
                self._path_owners[path] = owners
            else:
                self._path_owners.pop(path, None)

    def _enable(self, w: Worker, cause: str) -> list[m.Command]:
        if w.enabled:
            return []
        w.enabled = True
        self._full_pass = True
        return [m.WorkerEnabled(worker=w.name, cause=cause)]

    def _disable(self, w: Worker, cause: str) -> list[m.Command]:
        commands = self._requeue_windows(w, cause)
        w.enabled = False
        commands.append(m.WorkerDisabled(worker=w.name, cause=cause))
        return commands

    def _remove(self, w: Worker, cause: str) -> list[m.Command]:
        commands = self._requeue_windows(w, cause)
        lost = tuple(w.running)
        for rid in lost:
            del self.requests[rid]
        del self.workers[w.name]
        self._dirty.pop(w.name, None)
        self._unindex(w)
        commands.append(m.WorkerRemoved(worker=w.name, lost=lost, cause=cause))
        return commands

    def _requeue_windows(self, w: Worker, cause: str) -> list[m.Command]:
        """Requests waiting in the worker's windows go back to the queue."""
        rids = []
        for window in w.windows:
            for req in window.todo:
                req.worker = req.window = req.need = None
                req.threads = 0
                self.queue.push(req)
                rids.append(req.rid)
        w.windows = []
        if not rids:
            return []
        return [m.Requeued(worker=w.name, requests=tuple(rids), cause=cause)]

    # ---- requests ----------------------------------------------------------------------

    def _task_queued(self, e: m.TaskQueued, now: float) -> list[m.Command]:
        if e.request in self.requests:
            raise DuplicateRequest(f"request {e.request!r} is already known")
        if e.task not in ORDER:
            raise SchedulerError(f"request {e.request}: unknown task type {e.task!r}")
        if e.sector_size not in SECTOR_SIZES:
            raise SchedulerError(f"request {e.request}: unsupported sector size "
                                 f"{e.sector_size!r} (one of {sorted(SECTOR_SIZES)})")
        if e.prepare is not None and e.prepare not in ORDER:
            raise SchedulerError(f"request {e.request}: unknown prepare task {e.prepare!r}")
        if not isinstance(e.priority, int) or not isinstance(e.sector, sectors.SectorRef):
            raise SchedulerError(f"request {e.request}: priority must be an int and "
                                 f"sector a SectorRef")
        selector = _normalise(e.request, e.selector)
        self._seq += 1
        req = Request(e.request, e.sector, e.task, e.sector_size, e.priority, selector,
                      e.prepare, self._seq, now)
        self.requests[e.request] = req
        self.queue.push(req)
        return []

    def _task_adopted(self, e: m.TaskAdopted, now: float) -> list[m.Command]:
        if e.request in self.requests:
            raise DuplicateRequest(f"request {e.request!r} is already known")
        w = self._worker(e.worker)
        if e.task not in ORDER or e.sector_size not in SECTOR_SIZES:
            raise SchedulerError(f"request {e.request}: unknown task type {e.task!r} or "
                                 f"sector size {e.sector_size!r}")
        if not isinstance(e.priority, int) or not isinstance(e.sector, sectors.SectorRef):
            raise SchedulerError(f"request {e.request}: priority must be an int and "
                                 f"sector a SectorRef")
        self._seq += 1
        req = Request(e.request, e.sector, e.task, e.sector_size, e.priority, sectors.SelTask(),
                      None, self._seq, now)
        req.worker = w.name
        self.requests[req.rid] = req
        w.running[req.rid] = req
        worker_loop.start_active(w, req, [], e.cause)   # reserve 'active'; no Run to send
        self._dirty[w.name] = None
        return []

    def _request(self, rid: str) -> Request:
        req = self.requests.get(rid)
        if req is None:
            raise UnknownRequest(f"unknown request {rid!r}")
        return req

    def _task_cancelled(self, e: m.TaskCancelled, now: float) -> list[m.Command]:
        req = self._request(e.request)
        if req.cancelled:
            raise InvalidTransition(f"request {req.rid} is already being cancelled")
        if req.state == "queued":
            self.queue.remove(req)
        elif req.state == "assigned":
            w = self.workers[req.worker]
            window = next(win for win in w.windows if win.id == req.window)
            window.todo.remove(req)
            window.usage.free((req.task, req.size), req.rid, req.need, req.threads)
            if not window.todo:
                w.windows.remove(window)
                self._full_pass = True
            self._dirty[w.name] = None
        elif req.state == "waiting":
            w = self.workers[req.worker]
            w.waiting.remove(req)
            worker_loop.free_preparing(w, req)
            del w.running[req.rid]
            self._dirty[w.name] = None
        else:  # preparing or running: the worker must stop it, then answer TaskFinished
            req.cancelled = True
            return [m.Abort(worker=req.worker, request=req.rid, cause=e.cause)]
        del self.requests[req.rid]
        return [m.Cancelled(request=req.rid, cause=e.cause)]

    def _task_prepared(self, e: m.TaskPrepared, now: float) -> list[m.Command]:
        req = self._request(e.request)
        if req.state != "preparing":
            raise InvalidTransition(f"request {req.rid} is {req.state}, not preparing")
        if req.cancelled:  # aborted: its TaskFinished frees what it holds
            return []
        commands: list[m.Command] = []
        w = self.workers[req.worker]
        worker_loop.prepared(w, req, commands, e.cause)
        self._dirty[w.name] = None  # its preparing slot may be free for the next one
        return commands

    def _task_finished(self, e: m.TaskFinished, now: float) -> list[m.Command]:
        req = self._request(e.request)
        if req.state not in ("preparing", "waiting", "running"):
            raise InvalidTransition(f"request {req.rid} is {req.state}: it was not started")
        w = self.workers[req.worker]
        if req.state == "running":
            w.active.free((req.task, req.size), req.rid, req.need, req.threads)
        else:
            if req.state == "waiting":
                w.waiting.remove(req)
            worker_loop.free_preparing(w, req)
        del w.running[req.rid]
        del self.requests[req.rid]
        commands: list[m.Command] = []
        if req.cancelled:
            commands.append(m.Cancelled(request=req.rid, cause=e.cause))
        worker_loop.wake(w, commands, e.cause)
        self._dirty[w.name] = None
        return commands

    # ---- filled windows --------------------------------------------------------------

    def _commit(self, filled: list[PassWindow], commands: list[m.Command]) -> None:
        if not filled:
            return
        self._rounds += 1
        cause = f"pass {self._rounds}: {self._cause}"
        for pw in filled:
            w = pw.w
            self._window_ids += 1
            window = Window(self._window_ids, pw.usage, pw.todo)
            w.windows.append(window)
            for req in pw.todo:
                req.state, req.worker, req.window, req.cls = "assigned", w.name, window.id, None
            commands.append(m.AssignWindow(worker=w.name, window=window.id,
                                           requests=tuple(r.rid for r in pw.todo), cause=cause))
            self._dirty[w.name] = None

    # ---- diagnostics -------------------------------------------------------------------

    def _diag_worker(self, w: Worker) -> wire.DiagWorker:
        def usage(u: Usage) -> wire.DiagUsage:
            return wire.DiagUsage(mem_used_min=u.mem_min, mem_used_max=u.mem_max,
                               gpu_used=u.gpu, cpu_use=u.cpu)
        counts = {f"{task}:{SECTOR_SIZES[size]}": len(ids)
                  for (task, size), ids in sorted(w.active.counters.items(),
                                                  key=lambda kv: (str(kv[0][0]), kv[0][1]))}
        per = self.config.windows_per_worker
        return wire.DiagWorker(
            worker=w.name, session=w.session, hostname=w.info.hostname, enabled=w.enabled,
            last_seen=w.last_seen, tasks=tuple(sorted(w.tasks)), resources=w.resources,
            utilization=w.utilization(),
            windows=tuple(wire.DiagWindow(window=win.id, requests=tuple(r.rid for r in win.todo),
                                       allocated=usage(win.usage)) for win in w.windows),
            open_windows=per - len(w.windows) if w.enabled else 0,
            preparing=usage(w.preparing), active=usage(w.active), task_counts=counts,
            running=tuple((rid, req.state) for rid, req in w.running.items()))


def _normalise(rid: str, sel: object) -> object:
    """Selectors with their id lists sorted and de-duplicated, so identical requests
    share a queue class."""
    def ids(what: str, value: object) -> tuple[str, ...]:
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise SchedulerError(f"request {rid}: selector {what} must be a list of ids")
        return tuple(sorted(set(value)))

    if isinstance(sel, sectors.SelTask):
        return sel
    if isinstance(sel, sectors.SelAlloc):
        if sel.path_type not in ("seal", "store"):
            raise SchedulerError(f"request {rid}: SelAlloc.path_type must be 'seal' or "
                                 f"'store', got {sel.path_type!r}")
        return sectors.SelAlloc(path_type=sel.path_type, storage_ids=ids("storage_ids", sel.storage_ids))
    if isinstance(sel, sectors.SelExisting):
        return sectors.SelExisting(locations=ids("locations", sel.locations),
                             allow_fetch=bool(sel.allow_fetch))
    if isinstance(sel, sectors.SelMove):
        return sectors.SelMove(locations=ids("locations", sel.locations),
                         allow_remote=bool(sel.allow_remote),
                         storage_ids=ids("storage_ids", sel.storage_ids))
    raise SchedulerError(f"request {rid}: unknown selector {sel!r}")
