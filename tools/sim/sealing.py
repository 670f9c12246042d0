"""The sector state machine in the simulated manager: the real core
(nodes.sealing.core.SealingCore) behind a synchronous version of
nodes.sealing.node.SealingService's command handling.

Tasks go through the manager's call tracker (RunTask -> manager.do + wait, the params
built by nodes.sealing.tracker_tasks.task_params); chain commands read and push to the
SimChain in process (chain queries take no simulated time and are never lost: chaos is
on the cluster's bus). A command that waits for the chain is checked again at the
epoch it waits for (or at the next head after a revert), not on every head.

Persist first: Save goes to `store` before anything else; a manager restart drops the
commands in flight and restarts the core from the store, as the real service does.
Not done here: deal pieces (sectors are committed capacity), the operator RPC, the
post-restart tidy of unconsumed results, and terminations (the devnet chain has none)."""
from __future__ import annotations

import hashlib
import heapq

from nodes.chain import messages as M
from nodes.chain.randomness import DomainTag, address_entropy
from nodes.manager.tracker import DONE, FINISHED, TrackerError, UnknownWork
from nodes.scheduler.messages import SectorRef
from nodes.sealing import commands as C
from nodes.sealing import events as E
from nodes.sealing import states as S
from nodes.sealing.config import SealingConfig
from nodes.sealing.core import SealingCore, SealingError
from nodes.sealing.node import NO_TERMINATE
from nodes.sealing.sector import ChainFacts, MessageFact, PreCommitFact
from nodes.sealing.tracker_tasks import task_params
from nodes.worker import params as P
from proofs import cid as cids

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
        self.core: SealingCore | None = None
        self.session = 0
        self.up = False
        self.worker = ""
        self.errors: list[str] = []
        self._step: dict[int, int] = {}                # sector -> the step its command belongs to
        self._waits: list[tuple[int, int, int, int, C.Command]] = []    # heap: (epoch, seq, ...)
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

    def _answer(self, cmd: C.Command, session: int, event: E.Event | None) -> None:
        if event is not None and self._current(cmd, session):
            del self._step[cmd.sector]
            self._feed(event)

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
            event = getattr(self, f"_cmd_{type(cmd).__name__}")(cmd, session)
            self._answer(cmd, session, event)

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
        """The event nodes.sealing.node.SealingService._task makes of a result."""
        if state != DONE:
            return self._event(E.TaskFailed, cmd, task=cmd.task, work_id=wid, error=error)
        r = P.decode_result(cmd.task, blob)
        if isinstance(cmd, C.RunPreCommit1):
            return self._event(E.PreCommit1Done, cmd, work_id=wid, comm_d=r.comm_d, replica_id=r.replica_id)
        if isinstance(cmd, C.RunPreCommit2):
            return self._event(E.PreCommit2Done, cmd, work_id=wid, comm_d=r.comm_d, comm_r=r.comm_r)
        if isinstance(cmd, C.RunCommit1):
            return self._event(E.Commit1Done, cmd, work_id=wid, proof=r.proof)
        if isinstance(cmd, C.RunFinalize):
            return self._event(E.Finalized, cmd, work_id=wid)
        return self._event(E.TaskFailed, cmd, task=cmd.task, work_id=wid,
                           error=f"the simulation does not map {cmd.task} results")

    # ---- waiting for the chain ---------------------------------------------------------------------
    def _wait_until(self, epoch: int, cmd: C.Command, session: int) -> None:
        self._seq += 1
        heapq.heappush(self._waits, (epoch, self._seq, session, cmd.step, cmd))

    def on_head(self, head: int, reverted: bool) -> None:
        if not self.up:
            return
        self.core.set_head(head)
        waits = self._waits
        if reverted:                       # everything waited for may have changed
            due, self._waits = waits, []
        else:
            due = []
            while waits and waits[0][0] <= head:
                due.append(heapq.heappop(waits))
        for _, _, session, _, cmd in sorted(due, key=lambda w: w[1]):
            if self._current(cmd, session):
                self._do(cmd, session)
        if head >= self._next_fault_check:
            self._next_fault_check = head + FAULT_CHECK_EPOCHS
            self._check_faults()

    def _check_faults(self) -> None:
        """Proving sectors the chain lists as faulty are FaultReported, recovered ones Proving
        (nodes.sealing.node._check_faults, reading the chain's faulty set once)."""
        m = self.chain.miner(self.core.miner)
        faulty = {n for d in m.deadlines for p in d.partitions for n in p.faults}
        for number, s in list(self.core.sectors.items()):
            if number in faulty and s.state in (S.PROVING, S.FAULTY):
                self._feed(self.core.event(E.FaultReported, number))
            elif number not in faulty and s.state == S.FAULT_REPORTED:
                self._feed(self.core.event(E.FaultRecovered, number))

    # ---- chain commands (as nodes.sealing.node, synchronous) ---------------------------------------
    def _cmd_GetTicket(self, cmd: C.GetTicket, session: int):
        miner = self.core.miner
        pc = self.chain.precommit(miner, cmd.sector)
        if pc is not None:
            epoch = pc.seal_rand_epoch
        else:
            lookback = self.core.policy.seal_randomness_lookback
            head = self.chain.head.epoch
            if head < lookback:
                self._wait_until(lookback, cmd, session)
                return None
            epoch = head - lookback
        ticket = self.chain.randomness(DomainTag.SealRandomness, epoch, address_entropy(miner))
        return self._event(E.TicketReady, cmd, ticket=ticket, epoch=epoch)

    def _cmd_SendPreCommit(self, cmd: C.SendPreCommit, session: int):
        facts = self._facts(cmd.sector, ticket=cmd.ticket, ticket_epoch=cmd.ticket_epoch)
        decision = self.core.precommit_decision(self.core.sectors[cmd.sector], facts)
        if decision is not None:
            return decision
        params = M.PreCommitSectorParams(
            sector_number=cmd.sector, seal_proof=cmd.seal_proof, sealed_cid=cids.sealed_cid(cmd.comm_r),
            unsealed_cid=cids.piece_cid_v1(cmd.comm_d), seal_rand_epoch=cmd.ticket_epoch)
        msg_id = self._send(cmd.sector, f"precommit:{cmd.comm_r.hex()}:{cmd.ticket_epoch}", params)
        return self._event(E.PreCommitSent, cmd, msg_id=msg_id)

    def _landed(self, cmd, session: int, msg_id: str, failed):
        """The message's receipt once it has the confidence (None: waiting for it)."""
        look = self.chain.lookup(msg_id)
        if look.status == "unknown":
            return self._event(failed, cmd, error=f"the chain knows no message {msg_id[:16]}")
        if look.status == "landed":
            r = look.receipt
            if r.exit_code != 0:
                method = "PreCommitSector" if failed is E.ChainPreCommitFailed else "ProveCommitSector"
                return self._event(failed, cmd, error=f"{method} failed: exit code {r.exit_code}: {r.error}")
            if look.confirmations >= self.cfg.message_confidence:
                return look
            self._wait_until(look.epoch + self.cfg.message_confidence, cmd, session)
            return None
        self._wait_until(self.chain.head.epoch + 1, cmd, session)
        return None

    def _cmd_WaitPreCommit(self, cmd: C.WaitPreCommit, session: int):
        look = self._landed(cmd, session, cmd.msg_id, E.ChainPreCommitFailed)
        if not isinstance(look, M.MessageLookup):
            return look
        pc = self.chain.precommit(self.core.miner, cmd.sector)
        if pc is not None and pc.comm_r == cmd.comm_r:
            return self._event(E.PreCommitLanded, cmd, precommit_epoch=pc.precommit_epoch,
                               seed_epoch=pc.seed_epoch)
        return self._event(E.ChainPreCommitFailed, cmd, error="the pre-commit landed but the chain "
                           "does not hold it with our comm_r")

    def _cmd_WaitSeed(self, cmd: C.WaitSeed, session: int):
        miner = self.core.miner
        pc = self.chain.precommit(miner, cmd.sector)
        if pc is None:
            return self._event(E.ChainPreCommitFailed, cmd,
                               error="the pre-commit is no longer on chain (reverted?)")
        if pc.comm_r != cmd.comm_r:
            return self._event(E.ChainPreCommitFailed, cmd, error="the chain's pre-commit has another comm_r")
        ready = pc.seed_epoch + self.cfg.seed_confidence
        if self.core.head < ready:
            self._wait_until(ready, cmd, session)
            return None
        seed = self.chain.randomness(DomainTag.InteractiveSealChallengeSeed, pc.seed_epoch,
                                     address_entropy(miner))
        return self._event(E.SeedReady, cmd, seed=seed, epoch=pc.seed_epoch,
                           precommit_epoch=pc.precommit_epoch)

    def _cmd_SendProveCommit(self, cmd: C.SendProveCommit, session: int):
        facts = self._facts(cmd.sector, ticket=cmd.ticket, ticket_epoch=cmd.ticket_epoch,
                            seed=cmd.seed, proof=cmd.proof, comm_d=cmd.comm_d, comm_r=cmd.comm_r)
        decision = self.core.commit_decision(self.core.sectors[cmd.sector], facts)
        if decision is not None:
            return decision
        params = M.ProveCommitSectorParams(sector_number=cmd.sector, proof=cmd.proof)
        key = f"provecommit:{hashlib.sha256(cmd.proof).hexdigest()[:16]}:{cmd.seed_epoch}"
        return self._event(E.CommitSent, cmd, msg_id=self._send(cmd.sector, key, params))

    def _cmd_WaitProveCommit(self, cmd: C.WaitProveCommit, session: int):
        look = self._landed(cmd, session, cmd.msg_id, E.CommitFailed)
        if not isinstance(look, M.MessageLookup):
            return look
        view = self.chain.sector(self.core.miner, cmd.sector)
        if view is None:
            self._wait_until(self.chain.head.epoch + 1, cmd, session)
            return None
        return self._event(E.CommitLanded, cmd, epoch=view.activation)

    def _cmd_CheckChain(self, cmd: C.CheckChain, session: int):
        facts = self._facts(cmd.sector, ticket=cmd.ticket, ticket_epoch=cmd.ticket_epoch, seed=cmd.seed,
                            proof=cmd.proof, comm_d=cmd.comm_d, comm_r=cmd.comm_r,
                            precommit_msg=cmd.precommit_msg, commit_msg=cmd.commit_msg)
        return self._event(E.ChainChecked, cmd, facts=facts)

    def _cmd_VerifyProof(self, cmd: C.VerifyProof, session: int):
        s, miner = self.core.sectors[cmd.sector], self.core.miner
        view = self.chain.sector(miner, cmd.sector)
        if view is None:
            return self._event(E.ProofChecked, cmd, ok=False, error="the sector is not on chain")
        entropy = address_entropy(miner)
        ok = self._verify(seal_proof=s.seal_proof, miner=miner, sector=cmd.sector,
                          ticket=self.chain.randomness(DomainTag.SealRandomness, s.ticket_epoch, entropy),
                          seed=self.chain.randomness(DomainTag.InteractiveSealChallengeSeed,
                                                     s.seed_epoch, entropy),
                          comm_d=cids.parse_piece_cid(view.unsealed_cid),
                          comm_r=cids.parse_sealed_cid(view.sealed_cid), proof=cmd.proof)
        return self._event(E.ProofChecked, cmd, ok=ok, error="" if ok else "invalid against the chain")

    def _cmd_SendTerminate(self, cmd, session: int):
        return self._event(E.TerminateFailed, cmd, error=NO_TERMINATE)

    _cmd_WaitTerminate = _cmd_SendTerminate

    def _cmd_CleanSector(self, cmd: C.CleanSector, session: int):
        self.sim.drop_files(cmd.sector)
        return self._event(E.Cleaned, cmd)

    def _cmd_RemoveSector(self, cmd: C.RemoveSector, session: int):
        self._drop_work(cmd.sector)
        self.sim.drop_files(cmd.sector)
        return self._event(E.SectorRemoved, cmd)

    def _cmd_AbortWork(self, cmd: C.AbortWork, session: int):
        self._drop_work(cmd.sector)

    def _drop_work(self, number: int) -> None:
        """nodes.sealing.tracker_tasks.TrackerTasks.drop_sector."""
        mgr = self.sim.manager
        for w in [w for w in mgr.tracker.works.values() if (w.miner, w.number) == (self.core.miner, number)]:
            if w.state not in FINISHED:
                mgr.abort(w.work_id)
            self._consume(w.work_id)

    # ---- chain helpers ------------------------------------------------------------------------------
    def _verify(self, **kw) -> bool:
        try:
            return self.chain.verifiers.verify_seal(**kw) is True
        except Exception:                  # noqa: BLE001 - as the real shell: a crash is "invalid"
            return False

    def _facts(self, number: int, *, ticket: bytes = b"", ticket_epoch: int = -1, seed: bytes = b"",
               proof: bytes = b"", comm_d: bytes = b"", comm_r: bytes = b"", precommit_msg: str = "",
               commit_msg: str = "") -> ChainFacts:
        """nodes.sealing.node.SealingService._facts, reading the chain in process."""
        chain, miner = self.chain, self.core.miner
        entropy = address_entropy(miner)
        head = chain.head.epoch
        pc = chain.precommit(miner, number)
        view = chain.sector(miner, number)
        fact = None if pc is None else PreCommitFact(
            comm_r=pc.comm_r, seal_rand_epoch=pc.seal_rand_epoch, precommit_epoch=pc.precommit_epoch,
            seed_epoch=pc.seed_epoch, prove_by=pc.prove_by)
        ticket_matches = seed_matches = proof_valid = None
        chain_ticket = ticket
        if ticket and 0 <= ticket_epoch <= head:
            chain_ticket = chain.randomness(DomainTag.SealRandomness, ticket_epoch, entropy)
            ticket_matches = chain_ticket == ticket
        chain_seed = b""
        if pc is not None and pc.seed_epoch <= head:
            chain_seed = chain.randomness(DomainTag.InteractiveSealChallengeSeed, pc.seed_epoch, entropy)
            if seed:
                seed_matches = chain_seed == seed
        if proof and pc is not None and chain_seed:
            proof_valid = self._verify(seal_proof=self.core.sectors[number].seal_proof, miner=miner,
                                       sector=number, ticket=chain_ticket, seed=chain_seed,
                                       comm_d=pc.comm_d, comm_r=pc.comm_r, proof=proof)
        return ChainFacts(head=head, precommit=fact, on_chain=view is not None,
                          activation=view.activation if view is not None else -1,
                          precommit_msg=self._message_fact(precommit_msg),
                          commit_msg=self._message_fact(commit_msg), ticket_matches=ticket_matches,
                          seed_matches=seed_matches, proof_valid=proof_valid)

    def _message_fact(self, msg_id: str) -> MessageFact:
        if not msg_id:
            return MessageFact()
        look = self.chain.lookup(msg_id)
        if look.status == "landed":
            return MessageFact(status="landed", exit_code=look.receipt.exit_code, error=look.receipt.error)
        return MessageFact(status=look.status)

    def _send(self, number: int, key: str, params) -> str:
        """Send once (nodes.sealing.node.SealingService._send): a stored message under `key`
        that is pending or landed well is that message; else a new one, stored first."""
        sent = self.messages.setdefault((number, key), [])
        for msg_id in sent:
            look = self.chain.lookup(msg_id)
            if look.status == "pending" or (look.status == "landed" and look.receipt.exit_code == 0):
                return msg_id
        msg = M.Message.call(self.worker, self.core.miner, params, self.chain.next_nonce(self.worker))
        sent.append(msg.id)
        self.chain.push(msg)
        return msg.id
