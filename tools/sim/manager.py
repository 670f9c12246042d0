"""The manager: the real call tracker (nodes.manager.tracker.Tracker) behind a
synchronous version of nodes.manager.node.ManagerNode's routing of its commands, with
its store as a dict of committed WorkStates, and the sector state machine
(tools/sim/sealing.py) in the same process.

Persist first, then act: Save / Delete go to the store before an Enqueue, a Cancel or
a Wake takes effect. A restart drops everything else (waiters, enqueues in flight, the
sealing service's running commands), rebuilds the tracker from the store, enqueues all
unfinished work again, and restarts the sector state machine from its saved sectors."""
from __future__ import annotations

import itertools

import msgspec

from zqnode.nodes.manager import tracker as T
from zqnode.nodes.wire.sectors import SectorRef

from .net import Node


class SimManager(Node):
    def __init__(self, sim, sync_s: float = 10.0):
        super().__init__("manager")
        self.sim, self.loop, self.net = sim, sim.loop, sim.net
        self.sync_s = sync_s
        self.tracker = T.Tracker()
        self.store: dict[str, T.WorkState] = {}           # manager.sqlite: works ...
        self.locations: dict[tuple[int, int], str] = {}   # ... and the storage index
        self._waiters: dict[int, callable] = {}
        self._ids = itertools.count(1)
        self.sealing = None                                # set by the simulation
        self.outcomes = {"stored": 0, "duplicate": 0, "ignored": 0, "refused": 0}
        self.restarts = 0

    def start(self) -> None:
        self._effects(self.tracker.resend())
        self.loop.after(self.sync_s, self._sync_loop, self.session)

    # ---- persistence, then effects ------------------------------------------------------------
    def _commit(self, commands: list) -> None:
        for c in commands:
            if isinstance(c, T.Save):
                self.store[c.work.work_id] = msgspec.structs.replace(c.work)
            elif isinstance(c, T.Delete):
                self.store.pop(c.work_id, None)
            elif isinstance(c, T.Located) and c.worker:
                self.locations[(c.miner, c.number)] = c.worker
            elif isinstance(c, T.Located):
                self.locations.pop((c.miner, c.number), None)
        self._effects(commands)

    def _effects(self, commands: list) -> None:
        for c in commands:
            if isinstance(c, T.Enqueue):
                self._enqueue(c)
            elif isinstance(c, T.Cancel):
                sched = self.sim.scheduler
                self.net.call(self, sched.name, sched.on_cancel, c.work_id, tries=3,
                              backoff=(1.0, 1.0))
                if c.worker and c.worker in self.sim.workers:
                    w = self.sim.workers[c.worker]
                    self.net.call(self, w.name, w.on_abort, c.work_id, tries=3, backoff=(1.0, 1.0))
            elif isinstance(c, T.Wake):
                fn = self._waiters.pop(c.waiter, None)
                if fn is not None:
                    work = c.work
                    self.loop.soon(fn, work.state, work.result, work.error)

    def _enqueue(self, c: T.Enqueue) -> None:
        sched = self.sim.scheduler
        self.net.call(self, sched.name, sched.on_enqueue, c.message(), c.work.cause, tries=None,
                      backoff=(0.25, 4.0))

    # ---- requesters (the sector state machine in process; the poster over the bus) -------------
    def do(self, task: str, params, sector: SectorRef, size: int, priority: int = 0,
           cause: str = "") -> str:
        work, commands = self.tracker.do(task, params, sector.miner, sector.number, size,
                                         priority=priority, cause=cause, now=self.loop.now)
        if commands:
            self.sim.metrics.asked(work.work_id, task, self.loop.now)
        self._commit(commands)
        return work.work_id

    def wait(self, work_id: str, fn) -> int:
        """fn(state, result, error) once the work is finished. Raises UnknownWork."""
        waiter = next(self._ids)
        self._waiters[waiter] = fn
        try:
            self._effects(self.tracker.wait(work_id, waiter))
        except T.TrackerError:
            del self._waiters[waiter]
            raise
        return waiter

    def unwait(self, work_id: str, waiter: int) -> None:
        self._waiters.pop(waiter, None)
        self.tracker.unwait(work_id, waiter)

    def consume(self, work_id: str) -> None:
        self._commit(self.tracker.consume(work_id))

    def drop_sector(self, miner: int, number: int) -> None:
        self._commit(self.tracker.drop_sector(miner, number, self.loop.now))

    def dropped(self, miner: int, number: int) -> None:
        self._commit(self.tracker.dropped(miner, number))

    def abort(self, work_id: str) -> None:
        self._commit(self.tracker.abort(work_id, self.loop.now))

    # ---- workers ----------------------------------------------------------------------------------
    def on_started(self, work_id: str, call_id: str, worker: str) -> str:
        # the scheduler never crashes in the simulation: asked in process, like the shell over the bus
        assigned = worker if self.tracker.runs(work_id, call_id, worker) else \
            self.sim.scheduler.ledger.assigned(work_id)
        try:
            verdict, commands = self.tracker.started(work_id, call_id, worker, assigned, self.loop.now)
        except T.TrackerError as e:
            return f"refuse: {e}"
        self._commit(commands)
        return verdict

    def on_return(self, work_id: str, call_id: str, worker: str, ok: bool, result: bytes,
                  error: str) -> str:
        try:
            outcome, commands = self.tracker.returned(work_id, call_id, worker, ok, result,
                                                      error or ("" if ok else "failed"), self.loop.now)
        except T.TrackerError as e:
            return f"refused: {e}"
        self.outcomes[outcome] += 1
        self._commit(commands)
        return outcome

    # ---- the scheduler --------------------------------------------------------------------------------
    def _sync_loop(self, session: int) -> None:
        if not self.up or session != self.session:
            return
        unfinished = self.tracker.unfinished()
        if unfinished:
            sched = self.sim.scheduler
            self.net.call(self, sched.name, sched.on_sync, unfinished, tries=1,
                          ack=lambda unknown: self._effects(self.tracker.resend(unknown)))
        self.loop.after(self.sync_s, self._sync_loop, session)

    # ---- restarts ---------------------------------------------------------------------------------------
    def crash(self) -> None:
        self.up = False
        self.restarts += 1
        self._waiters.clear()
        if self.sealing is not None:
            self.sealing.crash()

    def restart(self) -> None:
        self.up = True
        self.session += 1
        works = [msgspec.structs.replace(w) for w in self.store.values()]
        self.tracker = T.Tracker.restore(works, self.locations)
        self.start()
        if self.sealing is not None:
            self.sealing.restart()
