"""The manager's call tracker: the pure core (no trio, bus, disk or clock; `now` is given).

A requester asks for work with `do`; the same work (task, sector, params) has the same
WorkID and is done once. Each WorkState moves through

    queued --started--> running --returned--> done | failed
    queued | running --abort--> aborted
    done | failed | aborted --consume--> (deleted)

and the pairs (state, event) allowed are the table TRANSITIONS; anything else raises a
TrackerError (a ValueError) and changes nothing. Methods return commands for the shell:
Save / Delete (persist, and commit, before anything is said on the bus), Enqueue (tell
the scheduler), Cancel (tell the scheduler and the worker), Wake (a waiter's work is
finished), Located (the storage index changed).

What Lotus drops and this keeps: a result stays until its requester consumes it, so a
manager restart between return and consumption recomputes nothing (the requester's
`do` again finds the stored result); a returned result is never replaced (a second
return of the same work is acknowledged and ignored); a worker asking to start work
whose result is stored, or which was aborted, is told not to run it.

A worker speaks only for work it was given (any worker key may be hostile): a start is
accepted from the worker the scheduler assigned the work to (the shell asks it, unless
the same call started before), and a result only from the call that runs the work.
"""
from __future__ import annotations

from typing import Union

import msgspec

from zqnode.nodes.wire.sectors import SectorRef, SelAlloc, SelExisting, SelTask
from zqnode.nodes.wire.tasks import SECTOR_SIZES
from zqnode.nodes.wire.scheduler import SchedEnqueue
from zqnode.nodes.manager.errors import AmbiguousJob, InvalidTransition, TrackerError, UnknownWork
from zqnode.nodes.wire.params import ParamsError, check_params, decode_params, work_id

QUEUED, RUNNING, DONE, FAILED, ABORTED = "queued", "running", "done", "failed", "aborted"
STATES = (QUEUED, RUNNING, DONE, FAILED, ABORTED)
FINISHED = frozenset({DONE, FAILED, ABORTED})
ABORTED_ERROR = "aborted"

# Tasks whose success leaves the sector's files at the worker that ran them.
MOVES_FILES = frozenset({"AP", "PC1", "PC2", "FIN", "GET", "UNS", "RU", "FRU"})
# Tasks that work on a sector's existing files (fetched first when elsewhere).
NEEDS_FILES = frozenset({"PC1", "PC2", "C1", "FIN", "UNS", "WDP", "RU", "PR1", "FRU"})


# event -> {state (None: no such work) -> what happens}
TRANSITIONS: dict[str, dict[str | None, str]] = {
    "do": {None: "create", QUEUED: "existing", RUNNING: "existing", DONE: "existing",
           FAILED: "existing", ABORTED: "existing"},
    "started": {QUEUED: "start", RUNNING: "start", DONE: "refuse", FAILED: "refuse",
                ABORTED: "refuse", None: "refuse"},
    "returned": {QUEUED: "refuse", RUNNING: "finish", DONE: "duplicate", FAILED: "duplicate",
                 ABORTED: "ignore", None: "ignore"},
    "abort": {QUEUED: "abort", RUNNING: "abort"},
    "wait": {QUEUED: "park", RUNNING: "park", DONE: "wake", FAILED: "wake", ABORTED: "wake"},
    "consume": {DONE: "delete", FAILED: "delete", ABORTED: "delete"},
    "resend": {QUEUED: "enqueue", RUNNING: "enqueue"},
}


class WorkState(msgspec.Struct, kw_only=True):
    work_id: str
    task: str
    params: bytes
    miner: int
    number: int
    sector_size: int
    priority: int
    cause: str
    state: str
    created: float
    updated: float
    call_id: str = ""            # the call running it (or that returned its result)
    worker: str = ""
    result: bytes = b""          # msgpack of the task's result struct (done)
    error: str = ""              # failed / aborted


# ---- commands -----------------------------------------------------------------------

class Save(msgspec.Struct, frozen=True):
    work: WorkState


class Delete(msgspec.Struct, frozen=True):
    work_id: str


class Located(msgspec.Struct, frozen=True):
    """The sector's files are now at `worker` (the storage index); "": nowhere."""
    miner: int
    number: int
    worker: str


class Enqueue(msgspec.Struct, frozen=True):
    """Send the work to the scheduler. `running_on`: a worker already runs it."""
    work: WorkState
    selector: Union[SelTask, SelAlloc, SelExisting]
    prepare: str | None
    sources: tuple[str, ...]
    running_on: str

    def message(self) -> SchedEnqueue:
        """What the shell sends the scheduler (cause: the work's)."""
        w = self.work
        return SchedEnqueue(request=w.work_id, sector=SectorRef(miner=w.miner, number=w.number),
                            task=w.task, sector_size=w.sector_size, priority=w.priority,
                            selector=self.selector, prepare=self.prepare, params=w.params,
                            sources=list(self.sources), running_on=self.running_on)


class Cancel(msgspec.Struct, frozen=True):
    work_id: str
    worker: str                  # "" when no worker started it


class Wake(msgspec.Struct, frozen=True):
    waiter: int
    work: WorkState


Command = Union[Save, Delete, Located, Enqueue, Cancel, Wake]


class Tracker:
    def __init__(self) -> None:
        self.works: dict[str, WorkState] = {}
        self.locations: dict[tuple[int, int], str] = {}
        self._waiters: dict[str, dict[int, None]] = {}

    @classmethod
    def restore(cls, works: list[WorkState], locations: dict[tuple[int, int], str]) -> "Tracker":
        t = cls()
        for w in works:
            if w.state not in STATES:
                raise TrackerError(f"stored work {w.work_id} has unknown state {w.state!r}")
            t.works[w.work_id] = w
        t.locations = dict(locations)
        return t

    # ---- the table ------------------------------------------------------------------

    def _what(self, event: str, work_id: str) -> tuple[WorkState | None, str]:
        work = self.works.get(work_id)
        state = None if work is None else work.state
        what = TRANSITIONS[event].get(state)
        if what is None:
            if work is None:
                raise UnknownWork(f"no work {work_id!r} (never asked for, or consumed)")
            raise InvalidTransition(f"work {work_id[:12]} is {state}: cannot {event} it")
        return work, what

    # ---- requesters -----------------------------------------------------------------

    def do(self, task: str, params, miner: int, number: int, sector_size: int, *,
           priority: int = 0, cause: str = "", now: float) -> tuple[WorkState, list[Command]]:
        """Ask for work; the existing work when the same was asked before (and not yet
        consumed), else a new queued one."""
        try:
            blob = check_params(task, params)
        except ParamsError as e:
            raise TrackerError(str(e)) from None
        for name, value in (("miner", miner), ("number", number), ("priority", priority)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TrackerError(f"{name} must be an int, got {value!r}")
        if miner < 0 or number < 0:
            raise TrackerError(f"miner and sector number must be >= 0, got {miner}, {number}")
        if sector_size not in SECTOR_SIZES:
            raise TrackerError(f"unsupported sector size {sector_size!r} "
                               f"(one of {sorted(SECTOR_SIZES)})")
        wid = work_id(task, miner, number, blob)
        work, what = self._what("do", wid)
        if what == "existing":
            return work, []
        work = WorkState(work_id=wid, task=task, params=blob, miner=miner, number=number,
                         sector_size=sector_size, priority=priority,
                         cause=cause or f"s-{miner}-{number}", state=QUEUED, created=now,
                         updated=now)
        self.works[wid] = work
        return work, [Save(work), self._enqueue(work)]

    def wait(self, work_id: str, waiter: int) -> list[Command]:
        """Wake `waiter` when the work is finished (at once if it is)."""
        work, what = self._what("wait", work_id)
        if what == "wake":
            return [Wake(waiter, work)]
        self._waiters.setdefault(work_id, {})[waiter] = None
        return []

    def unwait(self, work_id: str, waiter: int) -> None:
        """A waiter that gave up."""
        waiting = self._waiters.get(work_id)
        if waiting is not None:
            waiting.pop(waiter, None)
            if not waiting:
                del self._waiters[work_id]

    def consume(self, work_id: str) -> list[Command]:
        """The requester has the result: forget the work."""
        self._what("consume", work_id)
        del self.works[work_id]
        return [Delete(work_id)]

    def task_of(self, work_id: str) -> str:
        work = self.works.get(work_id)
        if work is None:
            raise UnknownWork(f"no work {work_id[:12]}")
        return work.task

    def find(self, prefix: str) -> str:
        """The work id starting with `prefix` (an operator's JOB argument)."""
        if not prefix:
            raise UnknownWork("give a work id or a prefix of one")
        found = [wid for wid in self.works if wid.startswith(prefix)]
        if not found:
            raise UnknownWork(f"no work id starts with {prefix!r}")
        if len(found) > 1:
            raise AmbiguousJob(f"{len(found)} work ids start with {prefix!r}: "
                               f"{', '.join(sorted(w[:12] for w in found))}")
        return found[0]

    def abort(self, work_id: str, now: float) -> list[Command]:
        """Stop work that is queued or running; its waiters hear 'aborted' now, and a
        late result is ignored."""
        work, _ = self._what("abort", work_id)
        worker = work.worker if work.state == RUNNING else ""
        work.state, work.error, work.updated = ABORTED, ABORTED_ERROR, now
        return [Save(work), Cancel(work_id, worker), *self._wake(work)]

    def drop_sector(self, miner: int, number: int, now: float) -> list[Command]:
        """A sector removed or started over: its unfinished work is aborted and all of
        its work forgotten (results included)."""
        commands: list[Command] = []
        for w in [w for w in self.works.values() if (w.miner, w.number) == (miner, number)]:
            if w.state not in FINISHED:
                commands += self.abort(w.work_id, now)
            commands += self.consume(w.work_id)
        return commands

    # ---- workers --------------------------------------------------------------------

    def runs(self, work_id: str, call_id: str, worker: str) -> bool:
        """Whether `worker`'s call `call_id` is the one running the work (a start said
        again, after a restart of either side, needs no new assignment)."""
        work = self.works.get(work_id)
        return (work is not None and work.state == RUNNING and work.call_id == call_id
                and work.worker == worker)

    def started(self, work_id: str, call_id: str, worker: str, assigned: str, now: float
                ) -> tuple[str, list[Command]]:
        """A worker is about to run the work as `call_id`; `assigned` is the worker the
        scheduler gave it to. Returns ("run", commands) or ("refuse: why", []) when it
        must not run it."""
        if not call_id or not worker:
            raise TrackerError("a started call needs a call id and a worker")
        work, what = self._what("started", work_id)
        if what == "refuse":
            why = "no such work (consumed, or never asked for)" if work is None else \
                f"work is {work.state}"
            return f"refuse: {why}", []
        if self.runs(work_id, call_id, worker):
            return "run", []                                # said twice: nothing new
        if assigned != worker:
            return f"refuse: not assigned to {worker} (the scheduler gave it to " \
                   f"{assigned or 'no worker'})", []
        work.state, work.call_id, work.worker, work.updated = RUNNING, call_id, worker, now
        return "run", [Save(work)]

    def returned(self, work_id: str, call_id: str, worker: str, ok: bool, result: bytes,
                 error: str, now: float) -> tuple[str, list[Command]]:
        """A worker's result. Returns (outcome, commands): "stored", "duplicate" (the work
        already has its result: kept as it is), "ignored" (aborted or unknown work) or
        "refused" (not from the call that runs the work: nothing changes)."""
        if not call_id or not worker:
            raise TrackerError("a result needs a call id and a worker")
        if not isinstance(ok, bool) or (not ok and not error):
            raise TrackerError("a result needs ok (bool) and, when not ok, an error text")
        work, what = self._what("returned", work_id)
        if what == "duplicate":
            return "duplicate", []
        if what == "ignore":
            return "ignored", []
        if what == "refuse" or not self.runs(work_id, call_id, worker):
            return "refused", []
        work.state = DONE if ok else FAILED
        work.call_id, work.worker, work.updated = call_id, worker, now
        work.result, work.error = (bytes(result), "") if ok else (b"", error)
        commands: list[Command] = [Save(work)]
        if ok and work.task in MOVES_FILES:
            key = (work.miner, work.number)
            if self.locations.get(key) != worker:
                self.locations[key] = worker
                commands.append(Located(work.miner, work.number, worker))
        return "stored", commands + self._wake(work)

    def dropped(self, miner: int, number: int) -> list[Command]:
        """The sector's files were deleted (a rebuild starts from nothing, a removal): no
        worker holds them, so no task is sent to fetch them from where they were."""
        if self.locations.pop((miner, number), None) is None:
            return []
        return [Located(miner, number, "")]

    def resend(self, work_ids=None) -> list[Command]:
        """Enqueue again what is queued or running (all, or those named), e.g. when the
        scheduler restarted; unknown or finished ones are skipped."""
        commands: list[Command] = []
        for wid in (self.works if work_ids is None else work_ids):
            work = self.works.get(wid)
            if work is not None and TRANSITIONS["resend"].get(work.state):
                commands.append(self._enqueue(work))
        return commands

    def unfinished(self) -> list[str]:
        return [w.work_id for w in self.works.values() if w.state not in FINISHED]

    # ---- helpers --------------------------------------------------------------------

    def _wake(self, work: WorkState) -> list[Command]:
        waiting = self._waiters.pop(work.work_id, {})
        return [Wake(waiter, work) for waiter in waiting]

    def _enqueue(self, work: WorkState) -> Enqueue:
        holders = [self.locations.get((work.miner, work.number))]
        if work.task == "WDP":
            holders += [self.locations.get((work.miner, n)) for n in _wdp_numbers(work)]
        sources = tuple(dict.fromkeys(h for h in holders if h))   # own sector's holder first
        if sources and (work.task in NEEDS_FILES or work.task == "AP"):
            selector, prepare = SelExisting(locations=sources[:1], allow_fetch=True), "GET"
        elif work.task == "AP":
            selector, prepare = SelAlloc(path_type="seal"), None
        else:
            selector, prepare = SelTask(), None
        running_on = work.worker if work.state == RUNNING else ""
        return Enqueue(work, selector, prepare, sources, running_on)


def _wdp_numbers(work: WorkState) -> list[int]:
    return [n for n, _ in decode_params("WDP", work.params).sectors]
