"""The poster: the real core (nodes.poster.core.PosterCore) behind a synchronous version
of nodes.poster.node.PosterNode's command handling, with the scheduler prover
(nodes.poster.prover.SchedulerProver): one WDP task per partition, asked of the manager
over the simulated bus (do, wait, consume), run by a worker for the profile's time.

Chain reads and pushes go to the SimChain in process. The sector check finds every
sector healthy (a crashed worker keeps its disks). Each deadline's outcome is recorded
with the epoch its last proof landed at, so the summary can tell proofs that landed
with little of the window to spare ('late')."""
from __future__ import annotations

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.randomness import DomainTag, address_entropy
from zqnode.nodes.manager.errors import TrackerError
from zqnode.nodes.manager.tracker import DONE
from zqnode.nodes.poster.config import PosterConfig, ProverConfig
from zqnode.nodes.poster.core import PosterCore
from zqnode.nodes.poster.events import (
    Abort,
    BatchProven,
    CheckDone,
    DeadlineLoaded,
    DeclareFaults,
    DeclareRecoveries,
    HeadChanged,
    LoadDeadline,
    MessageDropped,
    MessageLanded,
    MessagePushed,
    MinerInfo,
    MinerTracked,
    PartitionProof,
    ProveBatch,
    ProveFailed,
    PushSubmission,
    RecordOutcome,
    StartCheck,
    StoredBatch,
    StoreProofs,
    Tip,
    WaitMessage,
)
from zqnode.nodes.poster.node import _states
from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.wire import params as P

from .net import Node


class SimPoster(Node):
    def __init__(self, sim, cfg: PosterConfig | None = None):
        super().__init__("poster")
        self.sim, self.loop, self.net, self.chain = sim, sim.loop, sim.net, sim.chain
        self.cfg = cfg or PosterConfig(prover=ProverConfig(kind="scheduler"))
        self.core = PosterCore(self.chain.policy, self.cfg)
        self.errors: list[str] = []
        self.live: set[str] = set()
        self.stored: dict[tuple, dict[int, StoredBatch]] = {}     # poster.sqlite: proofs ...
        self.msgs: dict[str, tuple] = {}                          # ... and messages: id -> key
        self.landed_at: dict[str, int] = {}                       # runner -> last landing epoch
        self._waits: list[tuple] = []                             # WaitMessage commands
        self._proving: dict[str, dict] = {}                       # work id -> its partition's job
        self._dl_open: dict[str, int] = {}

    def start(self) -> None:
        for actor_id in sorted(self.chain.state.miners):
            m = self.chain.miner(actor_id)
            self._handle(MinerTracked(cause="config", miner=MinerInfo(
                actor_id=actor_id, worker=m.worker, seal_proof=m.seal_proof,
                period_offset=m.period_offset, partition_sectors=m.partition_sectors)))

    # ---- the core ------------------------------------------------------------------------------
    def on_head(self, change) -> None:
        self._handle(HeadChanged(cause=f"head {change.applied[-1].epoch}",
                                 reverted=[Tip(t.epoch, t.key) for t in change.reverted],
                                 applied=[Tip(t.epoch, t.key) for t in change.applied]))
        waits, self._waits = self._waits, []
        for cmd in waits:
            if cmd.cause in self.live:
                self._wait(cmd)

    def _handle(self, event) -> None:
        try:
            commands = self.core.handle(event, self.loop.now)
        except ValueError as e:
            self.errors.append(f"{type(event).__name__}: {e}")
            return
        for cmd in commands:
            self._execute(cmd)

    def _answer(self, runner: str, event) -> None:
        if event is not None and runner in self.live:
            self._handle(event)

    def _execute(self, cmd) -> None:
        if isinstance(cmd, StoreProofs):
            key = (cmd.miner, cmd.open, cmd.randomness)
            self.stored.setdefault(key, {})[cmd.batch] = StoredBatch(
                batch=cmd.batch, partitions=[p.index for p in cmd.partitions], proofs=cmd.partitions,
                skipped=cmd.skipped)
        elif isinstance(cmd, RecordOutcome):
            o = cmd.outcome
            self.sim.metrics.deadlines.append({
                "index": o.index, "open": o.open, "close": o.close, "status": o.status,
                "needed": len(o.needed), "landed": len(o.landed),
                "last_landing": self.landed_at.pop(cmd.cause, -1)})
        elif isinstance(cmd, Abort):
            self.live.discard(cmd.cause)
        else:
            self.live.add(cmd.cause)
            if isinstance(cmd, LoadDeadline):
                self.loop.after(cmd.delay_s, self._answer_with, cmd.cause, self._load, cmd)
            elif isinstance(cmd, ProveBatch):
                self.loop.after(cmd.delay_s, self._prove, cmd)
            elif isinstance(cmd, WaitMessage):
                self._wait(cmd)
            else:
                fn = {StartCheck: self._check, PushSubmission: self._push_submission,
                      DeclareFaults: self._push_declaration, DeclareRecoveries: self._push_declaration}
                self.loop.soon(self._answer_with, cmd.cause, fn[type(cmd)], cmd)

    def _answer_with(self, runner: str, fn, cmd) -> None:
        if runner in self.live:
            self._answer(runner, fn(cmd))

    # ---- the work -------------------------------------------------------------------------------
    def _load(self, cmd: LoadDeadline):
        rand = self.chain.randomness(DomainTag.WindowedPoStChallengeSeed, cmd.challenge,
                                     address_entropy(cmd.miner))
        view = self.chain.deadline_view(cmd.miner, cmd.index)
        ahead = self.chain.deadline_view(cmd.miner, cmd.ahead_index)
        stored = []
        for sb in self.stored.get((cmd.miner, cmd.open, rand), {}).values():
            status = ""
            if sb.msg_id:
                look = self.chain.lookup(sb.msg_id)
                status = "failed" if look.status == "landed" and look.receipt.exit_code else look.status
            stored.append(StoredBatch(batch=sb.batch, partitions=sb.partitions, proofs=sb.proofs,
                                      skipped=sb.skipped, msg_id=sb.msg_id, msg_status=status))
        self._dl_open[cmd.cause] = cmd.open
        return DeadlineLoaded(cause=cmd.cause, runner=cmd.cause, randomness=rand,
                              partitions=_states(view), posted=view.posted, ahead=_states(ahead),
                              stored=stored)

    def _check(self, cmd: StartCheck):
        return CheckDone(cause=cmd.cause, runner=cmd.cause, failed=[])

    def _prove(self, cmd: ProveBatch) -> None:
        """One WDP task per partition (SchedulerProver); BatchProven once all are back."""
        if cmd.cause not in self.live:
            return
        sectors = self.chain.miner(cmd.miner).sectors
        size = self.sim.profile.sector_size
        seal_proof = self.core.miners[cmd.miner].seal_proof
        batch = {"cmd": cmd, "out": [None] * len(cmd.partitions), "failed": ""}
        for i, part in enumerate(cmd.partitions):
            params = P.WDPParams(seal_proof=seal_proof, randomness=cmd.randomness,
                                 sectors=[(n, sectors[n].comm_r) for n in part.sectors])
            job = {"batch": batch, "i": i, "part": part, "wid": "", "params": params,
                   "ref": SectorRef(miner=cmd.miner, number=part.sectors[0]), "size": size}
            self._ask(job)

    def _ask(self, job: dict) -> None:
        mgr = self.sim.manager

        def asked(wid):
            if isinstance(wid, str):
                job["wid"] = wid
                self._proving[wid] = job
                self._wait_work(job)
            else:
                self._partition_done(job, None, f"WDP task refused: {wid}")
        self.net.call(self, mgr.name, _do, mgr, job["params"], job["ref"], job["size"], ack=asked,
                      tries=None)

    def _wait_work(self, job: dict) -> None:
        mgr = self.sim.manager
        session = mgr.session
        net, me = self.net, self

        def finished(state, result, error):       # at the manager: the answer goes back on the bus
            net.loop.after(net.latency, me._finished, job, state, result, error)
        self.net.call(self, mgr.name, _wait, mgr, job["wid"], finished, session, tries=None)

    def manager_restarted(self) -> None:
        """The requester asks again once the manager is back (its waits died with it)."""
        for job in list(self._proving.values()):
            self._wait_work(job)

    def _finished(self, job: dict, state: str, result: bytes, error: str) -> None:
        wid = job["wid"]
        if self._proving.pop(wid, None) is None:
            return
        self.net.call(self, self.sim.manager.name, _consume, self.sim.manager, wid, tries=None)
        if state != DONE:
            self._partition_done(job, None, f"partition {job['part'].index}: WDP task: {error}")
            return
        res = P.decode_result("WDP", result)
        made = res.partitions[0]
        self._partition_done(job, PartitionProof(index=job["part"].index, proof=made.proof,
                                                 proven=[n for n, _ in made.sectors]), "")

    def _partition_done(self, job: dict, proof, error: str) -> None:
        batch = job["batch"]
        cmd = batch["cmd"]
        if error:
            batch["failed"] = batch["failed"] or error
        batch["out"][job["i"]] = proof or error
        if any(x is None for x in batch["out"]):
            return
        if batch["failed"]:
            event = ProveFailed(cause=cmd.cause, runner=cmd.cause, batch=cmd.batch, reason=batch["failed"])
        else:
            event = BatchProven(cause=cmd.cause, runner=cmd.cause, batch=cmd.batch, partitions=batch["out"])
        self._answer(cmd.cause, event)

    def _push_submission(self, cmd: PushSubmission):
        commit = self.chain.randomness(DomainTag.PoStChainCommit, cmd.chain_commit_epoch)
        params = M.SubmitWindowedPoStParams(
            deadline=cmd.deadline, proofs=cmd.proofs, chain_commit_epoch=cmd.chain_commit_epoch,
            chain_commit_rand=commit,
            partitions=[M.PoStPartition(index=p.index, skipped=p.skipped) for p in cmd.partitions])
        msg_id = self._push(cmd.miner, params, cmd)
        sb = self.stored.get((cmd.miner, cmd.open, cmd.randomness), {}).get(cmd.batch)
        if sb is not None:
            sb.msg_id = msg_id
        return MessagePushed(cause=cmd.cause, runner=cmd.cause, ref=cmd.ref, msg_id=msg_id)

    def _push_declaration(self, cmd):
        decls = [M.SectorDeclaration(deadline=d.deadline, partition=d.partition, sectors=d.sectors)
                 for d in cmd.declarations]
        params = (M.DeclareFaultsParams(faults=decls) if isinstance(cmd, DeclareFaults)
                  else M.DeclareFaultsRecoveredParams(recoveries=decls))
        return MessagePushed(cause=cmd.cause, runner=cmd.cause, ref=cmd.ref,
                             msg_id=self._push(cmd.miner, params, cmd))

    def _push(self, miner: int, params, cmd) -> str:
        worker = self.core.miners[miner].worker
        msg = M.Message.call(worker, miner, params, self.chain.next_nonce(worker))
        self.msgs[msg.id] = (cmd.cause, cmd.ref)
        self.chain.push(msg)
        return msg.id

    def _wait(self, cmd: WaitMessage) -> None:
        """Looked at on every head, as the real shell does (only a few are waiting)."""
        look = self.chain.lookup(cmd.msg_id)
        event = None
        if look.status == "unknown":
            event = MessageDropped(cause=cmd.cause, runner=cmd.cause, ref=cmd.ref, msg_id=cmd.msg_id,
                                   reason="the chain knows no such message (dropped)")
        elif look.status == "landed":
            r = look.receipt
            if r.exit_code != 0:
                posted = self.chain.deadline_view(cmd.miner, cmd.deadline).posted \
                    if cmd.ref.startswith("batch-") else []
                event = MessageLanded(cause=cmd.cause, runner=cmd.cause, ref=cmd.ref, msg_id=cmd.msg_id,
                                      epoch=look.epoch, exit_code=r.exit_code, error=r.error, posted=posted)
            elif look.confirmations >= cmd.confidence:
                if cmd.ref.startswith("batch-"):
                    self.landed_at[cmd.cause] = max(self.landed_at.get(cmd.cause, -1), look.epoch)
                event = MessageLanded(cause=cmd.cause, runner=cmd.cause, ref=cmd.ref, msg_id=cmd.msg_id,
                                      epoch=look.epoch, exit_code=0)
        if event is None:
            self._waits.append(cmd)
        else:
            self.loop.soon(self._answer, cmd.cause, event)


# ---- the manager's requester API, at the manager (over the simulated bus) ------------------------
def _do(mgr, params, ref: SectorRef, size: int):
    try:
        return mgr.do("WDP", params, ref, size)
    except TrackerError as e:
        return e


def _wait(mgr, wid: str, fn, session: int) -> bool:
    try:
        mgr.wait(wid, fn)
    except TrackerError as e:
        fn("failed", b"", str(e))
    return True


def _consume(mgr, wid: str) -> bool:
    try:
        mgr.consume(wid)
    except TrackerError:
        pass
    return True
