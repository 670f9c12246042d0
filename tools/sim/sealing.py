"""The sector state machine in the simulated manager: the real core
(nodes.sealing.core.SealingCore) and the real shell's procedures for chain and storage
commands (nodes.sealing.procedures), answered synchronously.

Tasks go through the manager's call tracker (RunTask -> manager.do + wait, the params
built by nodes.manager.sealing_tasks.task_params); the procedures read and push to the
SimChain in process (chain queries take no simulated time and are never lost: chaos is
on the cluster's bus). A procedure that waits for the chain goes on at the epoch it
waits for (or at the next head after a revert), not on every head.

Persist first: Save goes to `store` before anything else; a manager restart drops the
commands in flight and restarts the core from the store, as the real service does.
Not done here: deal pieces (sectors are committed capacity), the operator RPC, the
post-restart tidy of unconsumed results, and terminations (the devnet chain has none)."""
from __future__ import annotations

import heapq

from zqnode.bus.codec import ErrorCode, RemoteError
from zqnode.nodes.chain import messages as M
from zqnode.nodes.manager.errors import TrackerError, UnknownWork
from zqnode.nodes.manager.tracker import DONE
from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.sealing import commands as C
from zqnode.nodes.sealing import events as E
from zqnode.nodes.sealing import procedures
from zqnode.nodes.sealing import states as S
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.sealing.core import SealingCore, SealingError
from zqnode.nodes.manager.sealing_tasks import task_params
from zqnode.nodes.wire import params as WP

# the sector states that hold a PC1 slot or wait for one (the pledger keeps these full)
BEFORE_PC2 = frozenset({S.NEW, S.PACKING, S.GET_TICKET, S.PRE_COMMIT1, S.SEAL_PRE_COMMIT1_FAILED})
FAULT_CHECK_EPOCHS = 4


class SimSealing:
    def __init__(self, sim, cfg: SealingConfig):
        self.sim, self.loop, self.chain = sim, sim.loop, sim.chain
        self.cfg = cfg
        self.store: dict[int, object] = {}             # sealing.sqlite: sectors ...
        self.next_number = cfg.first_number
        self.messages: dict[tuple[int, str], list[str]] = {}   # ... and messages sent
        self.methods: dict[str, int] = {}              # messages pushed, by method
        self.core: SealingCore | None = None
        self.session = 0
        self.up = False
        self.worker = ""
        self.errors: list[str] = []
        self._step: dict[int, int] = {}                # sector -> the step its command belongs to
        self._waits: list[tuple] = []      # heap: (epoch, seq, session, command, its procedure)
        self._seq = 0
        self._next_fault_check = 0

    # ---- start, crash, restart ----------------------------------------------------------------
    def start(self) -> None:
        m = self.chain.miner(self.cfg.miner)
        self.worker = m.worker
        core = SealingCore(miner=self.cfg.miner, seal_proof=m.seal_proof, policy=self.chain.policy,
                           cfg=self.cfg)
        core.restore(list(self.store.values()), self.next_number)
        core.set_head(self.chain.head.epoch)
        self.core, self.up = core, True
        self.session += 1
        self._step.clear()
        self._waits = []
        self._execute(core.restart(self.loop.now))

    def crash(self) -> None:
        self.up = False
        self.session += 1

    def restart(self) -> None:
        self.start()

    # ---- requests -------------------------------------------------------------------------
    def pledge(self) -> int:
        number, commands = self.core.pledge(self.loop.now)
        self.sim.metrics.pledged += 1
        self._execute(commands)
        return number

    def waiting_for_pc1(self) -> int:
        return sum(1 for s in self.core.sectors.values() if s.state in BEFORE_PC2)

    # ---- events in, commands out ------------------------------------------------------------
    def _feed(self, event: E.Event) -> None:
        try:
            commands = self.core.handle(event, self.loop.now)
        except SealingError as e:
            self.errors.append(f"sector {event.sector}: {e}")
            return
        self._execute(commands)
        self._due()

    def _due(self) -> None:
        self._execute(self.core.due(self.loop.now))      # as the real shell

    def _execute(self, commands: list) -> None:
        for cmd in commands:
            if isinstance(cmd, C.Save):
                self.store[cmd.sector] = cmd.info
                self.next_number = max(self.next_number, cmd.next_number)
                if cmd.info.state == S.PROVING and cmd.sector not in self.sim.metrics.sealed:
                    self.sim.metrics.sealed[cmd.sector] = self.loop.now
            elif isinstance(cmd, C.Consume):
                self._consume(cmd.work_id)
            else:
                self._step[cmd.sector] = cmd.step
                self.loop.soon(self._do, cmd, self.session)

    def _current(self, cmd: C.Command, session: int) -> bool:
        return self.up and session == self.session and self._step.get(cmd.sector) == cmd.step

    def _answer(self, cmd: C.Command, session: int, event: E.Event | list | None) -> None:
        if event is not None and self._current(cmd, session):
            del self._step[cmd.sector]
            for one in event if isinstance(event, list) else [event]:   # a batch: each member
                self._feed(one)

    def _event(self, kind, cmd: C.Command, **fields) -> E.Event:
        return self.core.event(kind, cmd.sector, step=cmd.step, **fields)

    def _consume(self, work_id: str) -> None:
        try:
            self.sim.manager.consume(work_id)
        except UnknownWork:
            pass

    def _do(self, cmd: C.Command, session: int) -> None:
        if not self._current(cmd, session):
            return
        if isinstance(cmd, C.Schedule):
            self.loop.at(cmd.at, lambda: self._answer(cmd, session, self._event(E.Wake, cmd)))
        elif isinstance(cmd, C.RunTask):
            self._task(cmd, session)
        else:
            self._go_on(cmd, session, procedures.procedure(self.core, cmd), None)

    def _go_on(self, cmd: C.Command, session: int, proc: procedures.Procedure, answer) -> None:
        """Run a procedure (nodes.sealing.procedures) on, answering from the chain in
        process, until it ends or waits for a head. A refusal goes into the procedure as the
        shell's does; one it does not handle is a TemporaryError, as in the shell."""
        error = None
        while True:
            try:
                ask = proc.throw(error) if error is not None else proc.send(answer)
            except StopIteration as done:
                self._answer(cmd, session, done.value)
                return
            except RemoteError as e:
                self._answer(cmd, session, self._event(E.TemporaryError, cmd, error=e.message))
                return
            if isinstance(ask, procedures.NextHead):
                self._wait_until(ask.at if ask.at >= 0 else self.chain.head.epoch + 1, cmd, session,
                                 proc)
                return
            try:
                answer, error = self._ask(ask), None
            except M.MessageError as e:         # as the chain node refuses it over the bus
                answer, error = None, RemoteError(ErrorCode.INVALID, str(e))

    def _ask(self, ask: procedures.Ask):
        chain = self.chain
        if isinstance(ask, procedures.Head):
            return chain.head.epoch
        if isinstance(ask, procedures.PreCommitOf):
            return chain.precommit(ask.miner, ask.number)
        if isinstance(ask, procedures.SectorOf):
            return chain.sector(ask.miner, ask.number)
        if isinstance(ask, procedures.Randomness):
            return chain.randomness(ask.tag, ask.epoch, ask.entropy)
        if isinstance(ask, procedures.Lookup):
            return chain.lookup(ask.msg_id)
        if isinstance(ask, procedures.Verify):
            return self._verify(**ask.args)
        if isinstance(ask, procedures.Send):
            return self._send(ask.number, ask.key, ask.params, ask.value)
        if isinstance(ask, procedures.DropWork):
            return self._drop_work(ask.number)
        if isinstance(ask, procedures.DropFiles):
            self.sim.drop_files(ask.number)
            return self.sim.manager.dropped(self.core.miner, ask.number)
        if isinstance(ask, procedures.DropPieces):
            return None                    # the simulation's sectors hold no deal pieces
        raise AssertionError(f"no answer to {ask!r}")

    # ---- tasks --------------------------------------------------------------------------------------
    def _task(self, cmd: C.RunTask, session: int) -> None:
        mgr = self.sim.manager
        ref = SectorRef(miner=self.core.miner, number=cmd.sector)
        try:
            wid = mgr.do(cmd.task, task_params(cmd), ref, self.core.proof.sector_size,
                         priority=cmd.priority, cause=cmd.cause)
            mgr.wait(wid, lambda state, result, error: self._answer(
                cmd, session, self._result(cmd, wid, state, result, error)))
        except TrackerError as e:
            self._answer(cmd, session, self._event(E.TaskFailed, cmd, task=cmd.task, work_id="",
                                                   error=f"the call tracker refused {cmd.task}: {e}"))

    def _result(self, cmd: C.RunTask, wid: str, state: str, blob: bytes, error: str) -> E.Event:
        if state != DONE:
            return self._event(E.TaskFailed, cmd, task=cmd.task, work_id=wid, error=error)
        return procedures.task_done(self.core, cmd, wid, WP.decode_result(cmd.task, blob))

    # ---- waiting for the chain ---------------------------------------------------------------------
    def _wait_until(self, epoch: int, cmd: C.Command, session: int, proc: procedures.Procedure) -> None:
        self._seq += 1
        heapq.heappush(self._waits, (epoch, self._seq, session, cmd, proc))

    def on_head(self, head: int, reverted: bool) -> None:
        if not self.up:
            return
        self.core.set_head(head)
        self._execute(self.core.batches(self.loop.now))   # as the real shell: due at this height?
        waits = self._waits
        if reverted:                       # everything waited for may have changed
            due, self._waits = waits, []
        else:
            due = []
            while waits and waits[0][0] <= head:
                due.append(heapq.heappop(waits))
        for _, _, session, cmd, proc in sorted(due, key=lambda w: w[1]):
            if self._current(cmd, session):
                self._go_on(cmd, session, proc, None)
        if head >= self._next_fault_check:
            self._next_fault_check = head + FAULT_CHECK_EPOCHS
            self._check_faults()

    def _check_faults(self) -> None:
        """Proving sectors the chain lists as faulty are FaultReported, recovered ones Proving
        (nodes.sealing.node._check_faults, reading the chain's faulty set once)."""
        m = self.chain.miner(self.core.miner)
        faulty = {n for d in m.deadlines for p in d.partitions for n in p.faults}
        for number in list(self.core.sectors):
            event = procedures.fault_change(self.core, number, number in faulty)
            if event is not None:
                self._feed(event)

    # ---- answers ------------------------------------------------------------------------------------
    def _drop_work(self, number: int) -> None:
        self.sim.manager.drop_sector(self.core.miner, number)

    # ---- chain helpers ------------------------------------------------------------------------------
    def _verify(self, **kw) -> bool:
        try:
            return self.chain.verifiers.verify_seal(**kw) is True
        except Exception:                  # noqa: BLE001 - as the real shell: a crash is "invalid"
            return False

    def _send(self, number: int, key: str, params, value: int) -> str:
        """Send once (nodes.sealing.node.SealingService._send): a stored message under `key`
        that is pending or landed well is that message; else a new one (the sim does not crash
        mid-push, so it needs no uuid)."""
        sent = self.messages.setdefault((number, key), [])
        for msg_id in sent:
            if procedures.still_counts(self.chain.lookup(msg_id)):
                return msg_id
        msg = self.chain.push(M.Message.call(self.worker, self.core.miner, params, value=value))   # the pool's nonce
        sent.append(msg.id)
        self.methods[msg.method] = self.methods.get(msg.method, 0) + 1
        return msg.id
