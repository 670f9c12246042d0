"""How the poster's shells carry out the core's chain, check, prove and push commands,
without I/O: each procedure is a generator that yields what it needs to know or have
done (an Ask), gets the answer sent back, and returns the event for the core.

The Trio shell (nodes.poster.node.PosterNode) answers each Ask over the bus and from its
store; the simulator (tools/sim/poster.py) answers from its chain in process. Both run
the same decisions. An Ask that cannot be answered (the chain does not answer, a push is
refused, the prover fails) is thrown into the procedure as its exception: the procedure
decides what that means (a *Failed event, or looking again after the next head).

StoreProofs, RecordOutcome and Abort have no procedure: the shells carry them out at
once, before anything after them.
"""
from __future__ import annotations

from collections.abc import Generator

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.asks import Ask, Lookup, Randomness  # noqa: F401 - shared asks
from zqnode.nodes.chain.randomness import DomainTag, address_entropy
from zqnode.nodes.poster.core import PosterCore
from zqnode.nodes.poster.events import (
    BatchProven, CheckDone, CheckFailed, Command, DeadlineLoaded, DeclareFaults,
    DeclareRecoveries, Event, LoadDeadline, LoadFailed, MessageDropped, MessageLanded,
    MessagePushed, PartitionState, PartitionWork, ProveBatch, ProveFailed, PushFailed,
    PushSubmission, SkippedSector, StartCheck, StoredBatch, WaitMessage)


def reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


# ---- what a procedure asks its shell ----------------------------------------------------------
class Pause(Ask, frozen=True):
    """-> None, `seconds` later (the back-off the core put on the command)."""
    seconds: float


class NextHead(Ask, frozen=True):
    """-> None, after the core has seen the chain's next head."""


class PartitionsOf(Ask, frozen=True):
    """-> the chain's view of a deadline's partitions (nodes.chain.messages.DeadlineView)."""
    miner: int
    deadline: int


class StoredProofsOf(Ask, frozen=True):
    """-> the batches stored for this deadline and randomness, each with its latest message
    (nodes.poster.store.StoredBatchRow: batch, partitions (the proofs), skipped, msg_id)."""
    miner: int
    open: int
    randomness: bytes


class MarkMessage(Ask, frozen=True):
    """-> None: the stored message now stands at `status` (landed, failed, dropped)."""
    msg_id: str
    status: str
    reason: str = ""


class Check(Ask, frozen=True):
    """-> {sector: why} for the sectors that fail the check (the rest are healthy)."""
    miner: int
    seal_proof: int
    sectors: list[int]


class Prove(Ask, frozen=True):
    """-> one nodes.poster.events.PartitionProof per partition asked for."""
    miner: int
    seal_proof: int
    randomness: bytes
    partitions: list[PartitionWork]


class Push(Ask, frozen=True):
    """-> the id of a message from `sender` to `miner` with `params`, sent once and stored
    with what it carries (`kind`, for which deadline and batch)."""
    sender: str
    miner: int
    params: object
    kind: str                          # post | faults | recoveries
    deadline: int
    open: int
    randomness: bytes
    batch: int


Procedure = Generator[Ask, object, Event]


def procedure(core: PosterCore, cmd: Command) -> Procedure:
    """The procedure of a command (not StoreProofs, RecordOutcome or Abort)."""
    return _PROCEDURES[type(cmd)](core, cmd)


# ---- the procedures ---------------------------------------------------------------------------
def _load(core: PosterCore, cmd: LoadDeadline) -> Procedure:
    yield Pause(cmd.delay_s)
    try:
        rand = yield Randomness(DomainTag.WindowedPoStChallengeSeed, cmd.challenge,
                                address_entropy(cmd.miner))
        view = yield PartitionsOf(cmd.miner, cmd.index)
        ahead = yield PartitionsOf(cmd.miner, cmd.ahead_index)
        stored = yield from _stored(cmd.miner, cmd.open, rand)
    except Exception as e:
        return LoadFailed(cause=cmd.cause, runner=cmd.cause, reason=reason(e))
    return DeadlineLoaded(cause=cmd.cause, runner=cmd.cause, randomness=rand,
                          partitions=_partition_states(view), posted=view.posted,
                          ahead=_partition_states(ahead), stored=stored)


def _stored(miner: int, open_: int, rand: bytes):
    """The stored batches, each with where its latest message stands on chain now."""
    out = []
    for row in (yield StoredProofsOf(miner, open_, rand)):
        status = ""
        if row.msg_id:
            look = yield Lookup(row.msg_id)
            status = look.status
            if look.status == "landed" and look.receipt.exit_code != 0:
                status = "failed"
        out.append(StoredBatch(batch=row.batch, partitions=[p.index for p in row.partitions],
                               proofs=row.partitions, skipped=row.skipped, msg_id=row.msg_id,
                               msg_status=status))
    return out


def _partition_states(view) -> list[PartitionState]:
    """The core's view of a deadline's partitions (nodes.chain.messages.DeadlineView)."""
    return [PartitionState(index=p.index, sectors=list(p.sectors), faults=list(p.faults),
                           recoveries=list(p.recoveries)) for p in view.partitions]


def _check(core: PosterCore, cmd: StartCheck) -> Procedure:
    try:
        failed = yield Check(cmd.miner, core.miners[cmd.miner].seal_proof, cmd.sectors)
    except Exception as e:
        return CheckFailed(cause=cmd.cause, runner=cmd.cause, reason=reason(e))
    return CheckDone(cause=cmd.cause, runner=cmd.cause,
                     failed=[SkippedSector(n, why) for n, why in failed.items()])


def _prove(core: PosterCore, cmd: ProveBatch) -> Procedure:
    yield Pause(cmd.delay_s)
    try:
        proofs = yield Prove(cmd.miner, core.miners[cmd.miner].seal_proof, cmd.randomness,
                             cmd.partitions)
    except Exception as e:
        return ProveFailed(cause=cmd.cause, runner=cmd.cause, batch=cmd.batch, reason=reason(e))
    return BatchProven(cause=cmd.cause, runner=cmd.cause, batch=cmd.batch, partitions=proofs)


def _push_submission(core: PosterCore, cmd: PushSubmission) -> Procedure:
    try:
        commit = yield Randomness(DomainTag.PoStChainCommit, cmd.chain_commit_epoch)
        params = M.SubmitWindowedPoStParams(
            deadline=cmd.deadline, proofs=cmd.proofs, chain_commit_epoch=cmd.chain_commit_epoch,
            chain_commit_rand=commit,
            partitions=[M.PoStPartition(index=p.index, skipped=p.skipped) for p in cmd.partitions])
        msg_id = yield Push(core.miners[cmd.miner].sender, cmd.miner, params, kind="post",
                            deadline=cmd.deadline, open=cmd.open, randomness=cmd.randomness,
                            batch=cmd.batch)
    except Exception as e:
        return PushFailed(cause=cmd.cause, runner=cmd.cause, ref=cmd.ref, reason=reason(e))
    return MessagePushed(cause=cmd.cause, runner=cmd.cause, ref=cmd.ref, msg_id=msg_id)


def _push_declaration(core: PosterCore, cmd: DeclareFaults | DeclareRecoveries) -> Procedure:
    decls = [M.SectorDeclaration(deadline=d.deadline, partition=d.partition, sectors=d.sectors)
             for d in cmd.declarations]
    params = (M.DeclareFaultsParams(faults=decls) if isinstance(cmd, DeclareFaults)
              else M.DeclareFaultsRecoveredParams(recoveries=decls))
    runner = core.runner(cmd.cause)
    try:
        msg_id = yield Push(core.miners[cmd.miner].sender, cmd.miner, params, kind=cmd.ref,
                            deadline=cmd.declarations[0].deadline,
                            open=runner.dl.open if runner else -1, randomness=b"", batch=-1)
    except Exception as e:
        return PushFailed(cause=cmd.cause, runner=cmd.cause, ref=cmd.ref, reason=reason(e))
    return MessagePushed(cause=cmd.cause, runner=cmd.cause, ref=cmd.ref, msg_id=msg_id)


def _wait(core: PosterCore, cmd: WaitMessage) -> Procedure:
    """Until the message is dropped, fails, or landed `confidence` tipsets deep; looked up
    again after every head (a lookup the chain does not answer too)."""
    while True:
        try:
            look = yield Lookup(cmd.msg_id)
        except Exception:
            look = None
        if look is not None and look.status == "unknown":
            yield MarkMessage(cmd.msg_id, "dropped", "the chain knows no such message")
            return MessageDropped(cause=cmd.cause, runner=cmd.cause, ref=cmd.ref, msg_id=cmd.msg_id,
                                  reason="the chain knows no such message (dropped)")
        if look is not None and look.status == "landed":
            r = look.receipt
            if r.exit_code != 0:
                yield MarkMessage(cmd.msg_id, "failed", f"exit code {r.exit_code}: {r.error}")
                posted: list[int] = []
                if cmd.ref.startswith("batch-"):      # what the core may still prove
                    try:
                        posted = (yield PartitionsOf(cmd.miner, cmd.deadline)).posted
                    except Exception:
                        pass
                return MessageLanded(cause=cmd.cause, runner=cmd.cause, ref=cmd.ref, msg_id=cmd.msg_id,
                                     epoch=look.epoch, exit_code=r.exit_code, error=r.error,
                                     posted=posted)
            if look.confirmations >= cmd.confidence:
                yield MarkMessage(cmd.msg_id, "landed")
                return MessageLanded(cause=cmd.cause, runner=cmd.cause, ref=cmd.ref, msg_id=cmd.msg_id,
                                     epoch=look.epoch, exit_code=0)
        yield NextHead()


_PROCEDURES = {
    LoadDeadline: _load, StartCheck: _check, ProveBatch: _prove, PushSubmission: _push_submission,
    DeclareFaults: _push_declaration, DeclareRecoveries: _push_declaration, WaitMessage: _wait,
}
