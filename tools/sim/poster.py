"""The poster: the real core (nodes.poster.core.PosterCore) and the real shell's
procedures (nodes.poster.procedures), answered in process, with the scheduler prover
(nodes.poster.prover.SchedulerProver): one WDP task per partition, asked of the manager
over the simulated bus (do, wait, consume), run by a worker for the profile's time.

Chain reads and pushes go to the SimChain in process; proofs and messages are kept in
dicts (the real shell's poster.sqlite). The sector check finds every sector healthy (a
crashed worker keeps its disks). Each deadline's outcome is recorded with the epoch its
last proof landed at, so the summary can tell proofs that landed with little of the
window to spare ('late')."""
from __future__ import annotations

from zqnode.nodes.chain import messages as M
from zqnode.nodes.manager.errors import TrackerError
from zqnode.nodes.manager.tracker import DONE
from zqnode.nodes.poster import procedures
from zqnode.nodes.poster.config import PosterConfig, ProverConfig
from zqnode.nodes.poster.core import PosterCore
from zqnode.nodes.poster.events import (
    Abort,
    DeclareFaults,
    DeclareRecoveries,
    HeadChanged,
    MessageLanded,
    MinerInfo,
    MinerTracked,
    PushSubmission,
    RecordOutcome,
    StartCheck,
    StoreProofs,
    Tip,
    WaitMessage,
)
from zqnode.nodes.poster.prover import ProverError, wdp_proof, wdp_task
from zqnode.nodes.poster.store import StoredBatchRow
from zqnode.nodes.wire import params as WP
from zqnode.nodes.wire.sectors import SectorRef

from .net import Node


class SimPoster(Node):
    def __init__(self, sim, cfg: PosterConfig | None = None):
        super().__init__("poster")
        self.sim, self.loop, self.net, self.chain = sim, sim.loop, sim.net, sim.chain
        self.cfg = cfg or PosterConfig(prover=ProverConfig(kind="scheduler"))
        self.core = PosterCore(self.chain.policy, self.cfg)
        self.errors: list[str] = []
        self.live: set[str] = set()
        self.stored: dict[tuple, dict[int, StoredBatchRow]] = {}  # poster.sqlite's proofs
        self.landed_at: dict[str, int] = {}                       # runner -> last landing epoch
        self._waits: list[tuple] = []                             # (runner, procedure) at NextHead
        self._proving: dict[str, dict] = {}                       # work id -> its partition's job

    def start(self) -> None:
        for actor_id in sorted(self.chain.state.miners):
            m = self.chain.miner(actor_id)
            self._handle(MinerTracked(cause="config", miner=MinerInfo(
                actor_id=actor_id, sender=m.worker, seal_proof=m.seal_proof,
                period_offset=m.period_offset, partition_sectors=m.partition_sectors)))

    # ---- the core ------------------------------------------------------------------------------
    def on_head(self, change) -> None:
        self._handle(HeadChanged(cause=f"head {change.applied[-1].epoch}",
                                 reverted=[Tip(t.epoch, t.key) for t in change.reverted],
                                 applied=[Tip(t.epoch, t.key) for t in change.applied]))
        waits, self._waits = self._waits, []
        for runner, proc in waits:
            self._go_on(runner, proc, later=True)

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
            self.stored.setdefault(key, {})[cmd.batch] = StoredBatchRow(
                batch=cmd.batch, partitions=cmd.partitions, skipped=cmd.skipped, msg_id="")
        elif isinstance(cmd, RecordOutcome):
            o = cmd.outcome
            self.sim.metrics.deadlines.append({
                "index": o.index, "open": o.open, "close": o.close, "status": o.status,
                "needed": len(o.needed), "landed": len(o.landed),
                "last_landing": self.landed_at.pop(cmd.cause, -1)})
        elif isinstance(cmd, Abort):
            self.live.discard(cmd.cause)
        else:
            # Checks and pushes start after what is due now, like the Trio shell's tasks;
            # loads and proofs start with their Pause, a wait with one look at the chain.
            self.live.add(cmd.cause)
            proc = procedures.procedure(self.core, cmd)
            if isinstance(cmd, (StartCheck, PushSubmission, DeclareFaults, DeclareRecoveries)):
                self.loop.soon(self._go_on, cmd.cause, proc)
            else:
                self._go_on(cmd.cause, proc, later=isinstance(cmd, WaitMessage))

    # ---- the procedures ---------------------------------------------------------------------------
    def _go_on(self, runner: str, proc: procedures.Procedure, answer=None, error: Exception | None = None,
               later: bool = False) -> None:
        """Run a procedure (nodes.poster.procedures) on, answering from the chain in process,
        until it ends, pauses, or waits for a head or the prover. Its event goes back at once,
        or `later` where this runs inside the core's command list or a head change.
        In-process answers do not fail: an error here is the simulator's bug, and raises."""
        while runner in self.live:
            try:
                ask = proc.send(answer) if error is None else proc.throw(error)
            except StopIteration as done:
                event = done.value
                self._note_landing(runner, event)
                if later:
                    self.loop.soon(self._answer, runner, event)
                else:
                    self._answer(runner, event)
                return
            answer, error = None, None
            if isinstance(ask, procedures.Pause):
                self.loop.after(ask.seconds, self._go_on, runner, proc)
                return
            if isinstance(ask, procedures.NextHead):
                self._waits.append((runner, proc))
                return
            if isinstance(ask, procedures.Prove):
                self._prove(ask, lambda proofs, error: self._go_on(runner, proc, proofs, error))
                return
            answer = self._ask(ask)

    def _note_landing(self, runner: str, event) -> None:
        """The epoch the runner's last proof landed at, for the summary's 'late'."""
        if isinstance(event, MessageLanded) and event.exit_code == 0 and event.ref.startswith("batch-"):
            self.landed_at[runner] = max(self.landed_at.get(runner, -1), event.epoch)

    def _ask(self, ask: procedures.Ask):
        chain = self.chain
        if isinstance(ask, procedures.Randomness):
            return chain.randomness(ask.tag, ask.epoch, ask.entropy)
        if isinstance(ask, procedures.PartitionsOf):
            return chain.deadline_view(ask.miner, ask.deadline)
        if isinstance(ask, procedures.StoredProofsOf):
            return list(self.stored.get((ask.miner, ask.open, ask.randomness), {}).values())
        if isinstance(ask, procedures.Lookup):
            return chain.lookup(ask.msg_id)
        if isinstance(ask, procedures.MarkMessage):
            return None                        # a stored message's status is read from the chain
        if isinstance(ask, procedures.Check):
            return {}
        if isinstance(ask, procedures.Push):
            msg = chain.push(M.Message.call(ask.sender, ask.miner, ask.params))   # the pool's nonce
            row = self.stored.get((ask.miner, ask.open, ask.randomness), {}).get(ask.batch)
            if ask.kind == "post" and row is not None:
                row.msg_id = msg.id
            return msg.id
        raise AssertionError(f"no answer to {ask!r}")

    # ---- the prover ---------------------------------------------------------------------------------
    def _prove(self, ask: procedures.Prove, answer) -> None:
        """One WDP task per partition (SchedulerProver); `answer(proofs, error)` once all are back."""
        sectors = self.chain.miner(ask.miner).sectors
        size = self.sim.profile.sector_size
        batch = {"answer": answer, "out": [None] * len(ask.partitions), "failed": ""}
        for i, part in enumerate(ask.partitions):
            params, ref = wdp_task(ask.miner, ask.seal_proof, ask.randomness, part.index,
                                   [(n, sectors[n].comm_r) for n in part.sectors])
            job = {"batch": batch, "i": i, "part": part, "wid": "", "params": params,
                   "ref": ref, "size": size}
            self._ask_manager(job)

    def _ask_manager(self, job: dict) -> None:
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
        part = job["part"]
        try:
            proof = wdp_proof(part.index, part.sectors, WP.decode_result("WDP", result))
        except ProverError as e:
            self._partition_done(job, None, str(e))
            return
        self._partition_done(job, proof, "")

    def _partition_done(self, job: dict, proof, error: str) -> None:
        batch = job["batch"]
        if error:
            batch["failed"] = batch["failed"] or error
        batch["out"][job["i"]] = proof or error
        if any(x is None for x in batch["out"]):
            return
        if batch["failed"]:
            batch["answer"](None, ProverError(batch["failed"]))
        else:
            batch["answer"](batch["out"], None)


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
