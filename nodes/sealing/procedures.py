"""How the sealing shell carries out a sector's chain and storage commands, without I/O:
each procedure is a generator that yields what it needs to know or have done (an Ask)
and gets the answer sent back, and returns the event for the core (or None).

The Trio shell (nodes.sealing.node.SealingService) answers each Ask over the bus and
on disk; the simulator (tools/sim/sealing.py) answers from its chain in process. Both
run the same decisions. `NextHead(at)` asks to go on after the chain's next head: the
Trio shell waits one head and goes on; the simulator may sleep until epoch `at` (or a
revert), as nothing the procedure looks at changes before.
"""
from __future__ import annotations

import hashlib
from collections.abc import Generator

import msgspec

from zqnode.bus.codec import RemoteError
from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.asks import Ask, Lookup, Randomness  # noqa: F401 - shared asks
from zqnode.nodes.chain.funds import gas_used
from zqnode.nodes.chain.randomness import DomainTag, address_entropy
from zqnode.nodes.sealing import commands as C
from zqnode.nodes.sealing import events as E
from zqnode.nodes.sealing import states as S
from zqnode.nodes.sealing.core import MIN_AGGREGATED_SECTORS, SealingCore
from zqnode.nodes.sealing.sector import ChainFacts, MessageFact, PreCommitFact, SectorInfo
from zqnode.proofs import cid as cids
from zqnode.proofs.params import update_proof_id

# Lotus's TerminateFinality: the files of a terminated sector stay this many epochs after
# the TerminateSectors message landed (WinningPoStSectorSetLookback).
TERMINATE_LOOKBACK = 10
SNARK_PACK_V2 = 1                      # RegisteredAggregationProof of a commit aggregate
_enc = msgspec.msgpack.Encoder()


# ---- what a procedure asks its shell ----------------------------------------------------------
class Head(Ask, frozen=True):
    """-> the chain's head epoch."""


class NextHead(Ask, frozen=True):
    """-> None, after the next head (`at`: the first epoch worth looking again; -1: the next)."""
    at: int = -1


class PreCommitOf(Ask, frozen=True):
    """-> the chain's pre-commit of the sector (nodes.chain.messages), or None."""
    miner: int
    number: int


class SectorOf(Ask, frozen=True):
    """-> the chain's view of the sector, or None."""
    miner: int
    number: int


class CurrentDeadline(Ask, frozen=True):
    """-> the miner's proving deadline at the head (DeadlineInfo)."""
    miner: int


class Verify(Ask, frozen=True):
    """-> whether the seal proof verifies (False when the verifier fails)."""
    args: dict


class Send(Ask, frozen=True):
    """-> the id of the message sent once under `key`: a stored one that `still_counts`,
    or a new one. A refusal raises bus.codec.RemoteError."""
    number: int
    key: str
    params: object
    value: int = 0                     # nanoFIL for the miner actor: deposits and pledge


class DropWork(Ask, frozen=True):
    """-> None: the call tracker aborts and forgets the sector's work."""
    number: int


class DropFiles(Ask, frozen=True):
    """-> None: the sector's files are deleted."""
    number: int


class DropPieces(Ask, frozen=True):
    """-> None: piece files no other sector uses are deleted."""
    number: int


def still_counts(look: M.MessageLookup) -> bool:
    """Whether a message sent before stands for the next send under its key: it is in the
    pool, or it landed and succeeded."""
    return look.status == "pending" or (look.status == "landed" and look.receipt.exit_code == 0)


Procedure = Generator[Ask, object, "E.Event | list[E.Event] | None"]


def procedure(core: SealingCore, cmd: C.Command) -> Procedure:
    """The procedure of a chain or storage command (not Schedule, Save, Consume, RunTask)."""
    return _PROCEDURES[type(cmd)](core, cmd)


def _event(core: SealingCore, kind, cmd: C.Command, **fields) -> E.Event:
    return core.event(kind, cmd.sector, step=cmd.step, **fields)


# ---- the procedures ---------------------------------------------------------------------------
def _get_ticket(core: SealingCore, cmd: C.GetTicket) -> Procedure:
    miner = core.miner
    pc = yield PreCommitOf(miner, cmd.sector)
    if pc is not None:                 # already pre-committed: seal with its ticket
        epoch = pc.seal_rand_epoch
    else:
        lookback = core.policy.seal_randomness_lookback
        while (head := (yield Head())) < lookback:
            yield NextHead(lookback)   # a young chain: no ticket old enough yet
        epoch = head - lookback
    ticket = yield Randomness(DomainTag.SealRandomness, epoch, address_entropy(miner))
    return _event(core, E.TicketReady, cmd, ticket=ticket, epoch=epoch)


def _precommit_params(core: SealingCore, s: SectorInfo) -> M.PreCommitSectorParams:
    return M.PreCommitSectorParams(sector_number=s.number, seal_proof=s.seal_proof,
                                   sealed_cid=cids.sealed_cid(s.comm_r), unsealed_cid=cids.piece_cid_v1(s.comm_d),
                                   seal_rand_epoch=s.ticket_epoch, expiration=core.expiration(s))


def _deposit(core: SealingCore, sectors: int) -> int:
    """The pre-commit deposit of `sectors` sectors, sent with the message (as Lotus does
    unless CollateralFromMinerBalance)."""
    return sectors * core.policy.per_sector(core.policy.precommit_deposit, core.proof.sector_size)


def _pledge(core: SealingCore, sectors: int) -> int:
    """The initial pledge of `sectors` sectors less their released deposits (as Lotus sends)."""
    return max(sectors * core.policy.per_sector(core.policy.initial_pledge, core.proof.sector_size)
               - _deposit(core, sectors), 0)


def _send_precommit(core: SealingCore, cmd: C.SendPreCommit) -> Procedure:
    facts = yield from chain_facts(core, cmd.sector, ticket=cmd.ticket, ticket_epoch=cmd.ticket_epoch)
    decision = core.precommit_decision(core.sectors[cmd.sector], facts)
    if decision is not None:
        return decision
    if core.cfg.batch_precommits:      # checked: on to the batch (core.batches sends it)
        return _event(core, E.PreCommitBatch, cmd)
    params = _precommit_params(core, core.sectors[cmd.sector])
    try:
        msg_id = yield Send(cmd.sector, f"precommit:{cmd.comm_r.hex()}:{cmd.ticket_epoch}", params,
                            _deposit(core, 1))
    except RemoteError as e:           # Lotus: "pushing message to mpool" -> PreCommitFailed
        return _event(core, E.ChainPreCommitFailed, cmd, error=f"PreCommitSector refused: {e.message}")
    return _event(core, E.PreCommitSent, cmd, msg_id=msg_id)


def _send_precommit_batch(core: SealingCore, cmd: C.SendPreCommitBatch) -> Procedure:
    """One PreCommitSectorBatch2 for the members, sent once under the batch's id by its
    owner (the lowest member it was formed with, so a restart halfway finds the message).
    A refusal fails every member, each counted and checked on its own, as Lotus does."""
    def message(members):
        params = M.PreCommitSectorBatch2Params(sectors=[
            _precommit_params(core, core.sectors[m.number]) for m in members])
        return params, _deposit(core, len(members))
    return (yield from _send_batch(core, cmd, "precommit-batch", message, E.PreCommitBatchSent,
                                   E.ChainPreCommitFailed))


def _send_batch(core: SealingCore, cmd, what: str, message, sent, failed, members=None,
                part: str = "") -> Procedure:
    """A batch's message, sent once under the batch's id by its owner (the lowest member
    it was formed with, so a restart halfway finds the message): `sent` for every member,
    or `failed` for every member if the chain refuses it. `message(members)` gives the
    params and value. A message over the block gas limit is split in halves, each sent on
    its own (Lotus splits a batch that runs out of gas)."""
    members = cmd.members if members is None else members
    params, value = message(members)
    if len(members) > 1 and gas_used(M.method_of(params), params) > core.policy.block_gas_limit:
        half = len(members) // 2
        first = yield from _send_batch(core, cmd, what, message, sent, failed, members[:half], part + "a")
        return first + (yield from _send_batch(core, cmd, what, message, sent, failed, members[half:], part + "b"))
    owner = int(cmd.batch.split(":")[0])
    try:
        msg_id = yield Send(owner, f"{what}:{cmd.batch}{':' + part if part else ''}", params, value)
    except RemoteError as e:
        return [core.event(failed, m.number, step=m.step, error=f"{M.method_of(params)} refused: {e.message}")
                for m in members]
    return [core.event(sent, m.number, step=m.step, msg_id=msg_id) for m in members]


def _landed(core: SealingCore, cmd, msg_id: str, failed, method: str, retry=None):
    """The message's lookup once it landed well with the confidence; the `failed` event
    if it is unknown or failed, or `retry` if the sender could not pay for it (Lotus sends
    it again at once: SysErrInsufficientFunds, SysErrOutOfGas)."""
    while True:
        look = yield Lookup(msg_id)
        if look.status == "unknown":
            return _event(core, failed, cmd, error=f"the chain knows no message {msg_id[:16]}")
        if look.status != "landed":
            yield NextHead()
            continue
        r = look.receipt
        if retry is not None and r.exit_code in (M.ExitCode.SYS_INSUFFICIENT_FUNDS, M.ExitCode.SYS_OUT_OF_GAS):
            return _event(core, retry, cmd)
        if r.exit_code != 0:
            return _event(core, failed, cmd, error=f"{method} failed: exit code {r.exit_code}: {r.error}")
        if look.confirmations >= core.cfg.message_confidence:
            return look
        yield NextHead(look.epoch + core.cfg.message_confidence)


def _wait_precommit(core: SealingCore, cmd: C.WaitPreCommit) -> Procedure:
    look = yield from _landed(core, cmd, cmd.msg_id, E.ChainPreCommitFailed, "PreCommitSector",
                              E.RetryPreCommit)
    if not isinstance(look, M.MessageLookup):
        return look
    pc = yield PreCommitOf(core.miner, cmd.sector)
    if pc is not None and pc.comm_r == cmd.comm_r:
        return _event(core, E.PreCommitLanded, cmd, precommit_epoch=pc.precommit_epoch,
                      seed_epoch=pc.seed_epoch)
    return _event(core, E.ChainPreCommitFailed, cmd, error="the pre-commit landed but the chain "
                  "does not hold it with our comm_r")


def _wait_seed(core: SealingCore, cmd: C.WaitSeed) -> Procedure:
    miner = core.miner
    while True:
        pc = yield PreCommitOf(miner, cmd.sector)
        if pc is None:
            return _event(core, E.ChainPreCommitFailed, cmd,
                          error="the pre-commit is no longer on chain (reverted?)")
        if pc.comm_r != cmd.comm_r:
            return _event(core, E.ChainPreCommitFailed, cmd,
                          error="the chain's pre-commit has another comm_r")
        ready = pc.seed_epoch + core.cfg.seed_confidence
        if core.head >= ready:
            seed = yield Randomness(DomainTag.InteractiveSealChallengeSeed, pc.seed_epoch,
                                    address_entropy(miner))
            return _event(core, E.SeedReady, cmd, seed=seed, epoch=pc.seed_epoch,
                          precommit_epoch=pc.precommit_epoch)
        yield NextHead(ready)


def _send_provecommit(core: SealingCore, cmd: C.SendProveCommit) -> Procedure:
    facts = yield from chain_facts(core, cmd.sector, ticket=cmd.ticket, ticket_epoch=cmd.ticket_epoch,
                                   seed=cmd.seed, proof=cmd.proof, comm_d=cmd.comm_d, comm_r=cmd.comm_r)
    decision = core.commit_decision(core.sectors[cmd.sector], facts)
    if decision is not None:
        return decision
    if core.cfg.aggregate_commits:     # checked: on to the batch (core.batches sends it)
        return _event(core, E.CommitAggregate, cmd)
    params = M.ProveCommitSectorParams(sector_number=cmd.sector, proof=cmd.proof)
    key = f"provecommit:{hashlib.sha256(cmd.proof).hexdigest()[:16]}:{cmd.seed_epoch}"
    try:
        msg_id = yield Send(cmd.sector, key, params, _pledge(core, 1))
    except RemoteError as e:           # Lotus: "pushing message to mpool" -> CommitFailed
        return _event(core, E.CommitFailed, cmd, error=f"ProveCommitSector refused: {e.message}")
    return _event(core, E.CommitSent, cmd, msg_id=msg_id)


def _send_commit_aggregate(core: SealingCore, cmd: C.SendCommitAggregate) -> Procedure:
    """One ProveCommitSectors3 for the members (all must activate, as Lotus asks), sent
    once under the batch's id by its owner; a refusal fails every member."""
    def message(members):
        proofs = [core.sectors[m.number].proof for m in members]
        acts = [M.SectorActivationManifest(sector_number=m.number) for m in members]
        if cmd.aggregate and len(members) >= MIN_AGGREGATED_SECTORS:   # a split's small half: one by one
            params = M.ProveCommitSectors3Params(sector_activations=acts, aggregate_proof=_enc.encode(proofs),
                                                 aggregate_proof_type=SNARK_PACK_V2)
        else:
            params = M.ProveCommitSectors3Params(sector_activations=acts, sector_proofs=proofs)
        return params, _pledge(core, len(members))
    return (yield from _send_batch(core, cmd, "commit-batch", message, E.CommitAggregateSent,
                                   E.CommitFailed))


def _wait_provecommit(core: SealingCore, cmd: C.WaitProveCommit) -> Procedure:
    while True:
        look = yield from _landed(core, cmd, cmd.msg_id, E.CommitFailed, "ProveCommitSector",
                                  E.RetrySubmitCommit)
        if not isinstance(look, M.MessageLookup):
            return look
        view = yield SectorOf(core.miner, cmd.sector)
        if view is not None:
            return _event(core, E.CommitLanded, cmd, epoch=view.activation)
        yield NextHead()


def _quiet(core: SealingCore, deadline: int, di, spread: int) -> bool:
    """Whether `deadline` is at least `spread` deadlines away from the current one."""
    n = core.policy.period_deadlines
    return min((deadline - di.index) % n, (di.index - deadline) % n) > spread


def _send_replica_update(core: SealingCore, cmd: C.SendReplicaUpdate) -> Procedure:
    """ProveReplicaUpdates3 once, when the sector is active (a WindowPoSt proved it: the
    actor updates no other) and its deadline mutable (neither the one being proven nor the
    next), with the deal pieces that make comm_d_new."""
    new_cid = cids.sealed_cid(cmd.comm_r_new)
    while True:
        view = yield SectorOf(core.miner, cmd.sector)
        if view is None:
            return _event(core, E.ReplicaUpdateSubmitFailed, cmd, error="the sector is not on chain")
        if view.sealed_cid == new_cid:
            return _event(core, E.ReplicaUpdateLanded, cmd, epoch=(yield Head()))
        if view.state in ("faulty", "recovering"):
            return _event(core, E.ReplicaUpdateSubmitFailed, cmd, error=f"the sector is {view.state} on chain")
        di = yield CurrentDeadline(core.miner)
        ahead = (view.deadline - di.index) % core.policy.period_deadlines
        if view.state == "active" and ahead not in (0, 1, 2):     # 2: it may be next when it lands
            break
        yield NextHead(di.close)
    s = core.sectors[cmd.sector]
    params = M.ProveReplicaUpdates3Params(sector_updates=[M.SectorUpdateManifest(
        sector=cmd.sector, deadline=view.deadline, partition=view.partition, new_sealed_cid=new_cid,
        pieces=[M.PieceManifest(cid=cids.piece_cid_v1(p.comm_p), size=p.padded_size) for p in s.deal_pieces()])],
        sector_proofs=[cmd.proof], update_proofs_type=update_proof_id(core.proof.sector_size))
    try:
        msg_id = yield Send(cmd.sector, f"replica-update:{cmd.comm_r_new.hex()[:16]}", params)
    except RemoteError as e:
        return _event(core, E.ReplicaUpdateSubmitFailed, cmd, error=f"ProveReplicaUpdates3 refused: {e.message}")
    return _event(core, E.ReplicaUpdateSent, cmd, msg_id=msg_id)


def _wait_replica_update(core: SealingCore, cmd: C.WaitReplicaUpdate) -> Procedure:
    look = yield from _landed(core, cmd, cmd.msg_id, E.ReplicaUpdateSubmitFailed, "ProveReplicaUpdates3")
    if not isinstance(look, M.MessageLookup):
        return look
    view = yield SectorOf(core.miner, cmd.sector)
    if view is None or view.sealed_cid != cids.sealed_cid(cmd.comm_r_new):
        return _event(core, E.ReplicaUpdateSubmitFailed, cmd, error="ProveReplicaUpdates3 landed but the "
                      "chain's sector does not have the new replica")
    return _event(core, E.ReplicaUpdateLanded, cmd, epoch=look.epoch)


def _wait_update_active(core: SealingCore, cmd: C.WaitUpdateActive) -> Procedure:
    """Past finality (a reorg no longer takes the update back), and the sector's deadline
    neither being proven nor next to it: the release moves its files, which WindowPoSt
    must not find half moved."""
    new_cid = cids.sealed_cid(cmd.comm_r_new)
    until = max(cmd.landed, 0) + core.policy.chain_finality
    while True:
        view = yield SectorOf(core.miner, cmd.sector)
        if view is None or view.sealed_cid != new_cid:
            return _event(core, E.ReplicaUpdateSubmitFailed, cmd, error="the chain no longer has the update "
                          "(a reorg): it is sent again")
        head = yield Head()
        di = yield CurrentDeadline(core.miner)
        if head >= until and _quiet(core, view.deadline, di, 1):
            return _event(core, E.UpdateActive, cmd)
        yield NextHead(until if head < until else di.close)


def _check_chain(core: SealingCore, cmd: C.CheckChain) -> Procedure:
    facts = yield from chain_facts(core, cmd.sector, ticket=cmd.ticket, ticket_epoch=cmd.ticket_epoch,
                                   seed=cmd.seed, proof=cmd.proof, comm_d=cmd.comm_d, comm_r=cmd.comm_r,
                                   precommit_msg=cmd.precommit_msg, commit_msg=cmd.commit_msg)
    return _event(core, E.ChainChecked, cmd, facts=facts)


def _verify_proof(core: SealingCore, cmd: C.VerifyProof) -> Procedure:
    s, miner = core.sectors[cmd.sector], core.miner
    entropy = address_entropy(miner)
    view = yield SectorOf(miner, cmd.sector)
    if view is None:
        return _event(core, E.ProofChecked, cmd, ok=False, error="the sector is not on chain")
    try:        # a Lotus node's sector has no CommD: the one pre-committed, which the chain took
        comm_d = cids.parse_piece_cid(view.unsealed_cid) if view.unsealed_cid else cmd.comm_d
        comm_r = cids.parse_sealed_cid(view.sealed_cid)
    except cids.CidError as e:
        return _event(core, E.ProofChecked, cmd, ok=False, error=f"the chain's sector does not read: {e}")
    ticket = yield Randomness(DomainTag.SealRandomness, s.ticket_epoch, entropy)
    seed = yield Randomness(DomainTag.InteractiveSealChallengeSeed, s.seed_epoch, entropy)
    ok = yield Verify(dict(seal_proof=s.seal_proof, miner=miner, sector=cmd.sector, ticket=ticket,
                           seed=seed, comm_d=comm_d, comm_r=comm_r, proof=cmd.proof))
    return _event(core, E.ProofChecked, cmd, ok=ok, error="" if ok else "invalid against the chain")


def _send_terminate_batch(core: SealingCore, cmd: C.SendTerminateBatch) -> Procedure:
    """Lotus's TerminateBatcher: one TerminateSectors, sent once under the batch's id by
    its owner, for the live members whose deadline is neither the one being proven, the
    next nor the previous; the others wait for the next batch. A member the chain no
    longer has goes (a pre-commit not proven is refused: remove it instead)."""
    miner, count = core.miner, core.policy.period_deadlines
    di = yield CurrentDeadline(miner)
    blocked = {di.index, (di.index + 1) % count, (di.index - 1) % count}
    events, todo, where = [], [], {}
    for m in cmd.members:
        view = yield SectorOf(miner, m.number)
        if view is None:
            if (yield PreCommitOf(miner, m.number)) is not None:
                events.append(core.event(E.TerminateFailed, m.number, step=m.step,
                                         error="the sector is pre-committed, not proven: remove it instead"))
            else:
                events.append(core.event(E.Remove, m.number, step=m.step))   # terminated already
        elif view.deadline in blocked:
            events.append(core.event(E.TerminateDeferred, m.number, step=m.step))
        else:
            todo.append(m)
            where.setdefault((view.deadline, view.partition), []).append(m.number)
    if not todo:
        return events

    def message(members):
        mine = {m.number for m in members}
        return M.TerminateSectorsParams(terminations=[
            M.SectorDeclaration(deadline=d, partition=p, sectors=sorted(set(ns) & mine))
            for (d, p), ns in sorted(where.items()) if set(ns) & mine]), 0
    return events + (yield from _send_batch(core, cmd, "terminate-batch", message, E.TerminateSent,
                                            E.TerminateFailed, members=todo))


def _wait_terminate(core: SealingCore, cmd: C.WaitTerminate) -> Procedure:
    """Landed well, the sector gone from the chain, TERMINATE_LOOKBACK epochs on."""
    look = yield from _landed(core, cmd, cmd.msg_id, E.TerminateFailed, "TerminateSectors")
    if not isinstance(look, M.MessageLookup):
        return look
    until = look.epoch + TERMINATE_LOOKBACK
    while (yield Head()) < until:
        yield NextHead(until)
    if (yield SectorOf(core.miner, cmd.sector)) is not None:
        return _event(core, E.TerminateFailed, cmd, error="TerminateSectors landed, but the chain "
                      "still lists the sector")
    return _event(core, E.Terminated, cmd)


def _clean_sector(core: SealingCore, cmd: C.CleanSector) -> Procedure:
    yield DropFiles(cmd.sector)
    return _event(core, E.Cleaned, cmd)


def _remove_sector(core: SealingCore, cmd: C.RemoveSector) -> Procedure:
    yield DropWork(cmd.sector)
    yield DropFiles(cmd.sector)
    yield DropPieces(cmd.sector)
    return _event(core, E.SectorRemoved, cmd)


def _abort_work(core: SealingCore, cmd: C.AbortWork) -> Procedure:
    yield DropWork(cmd.sector)
    return None


_PROCEDURES = {
    C.GetTicket: _get_ticket, C.SendPreCommit: _send_precommit, C.WaitPreCommit: _wait_precommit,
    C.SendPreCommitBatch: _send_precommit_batch, C.WaitSeed: _wait_seed, C.SendProveCommit: _send_provecommit,
    C.SendCommitAggregate: _send_commit_aggregate, C.WaitProveCommit: _wait_provecommit, C.CheckChain: _check_chain,
    C.VerifyProof: _verify_proof, C.SendTerminateBatch: _send_terminate_batch, C.WaitTerminate: _wait_terminate,
    C.CleanSector: _clean_sector, C.RemoveSector: _remove_sector, C.AbortWork: _abort_work,
    C.SendReplicaUpdate: _send_replica_update, C.WaitReplicaUpdate: _wait_replica_update,
    C.WaitUpdateActive: _wait_update_active,
}


# ---- what the chain says about a sector -------------------------------------------------------
def chain_facts(core: SealingCore, number: int, *, ticket: bytes = b"", ticket_epoch: int = -1,
                seed: bytes = b"", proof: bytes = b"", comm_d: bytes = b"", comm_r: bytes = b"",
                precommit_msg: str = "", commit_msg: str = ""):
    """-> ChainFacts: what the core's decisions need to know from the chain."""
    miner, entropy = core.miner, address_entropy(core.miner)
    head = yield Head()
    pc = yield PreCommitOf(miner, number)
    view = yield SectorOf(miner, number)
    fact = None if pc is None else PreCommitFact(
        comm_r=pc.comm_r, seal_rand_epoch=pc.seal_rand_epoch, precommit_epoch=pc.precommit_epoch,
        seed_epoch=pc.seed_epoch, prove_by=pc.prove_by)
    ticket_matches = seed_matches = proof_valid = None
    chain_ticket = ticket
    if ticket and 0 <= ticket_epoch <= head:
        chain_ticket = yield Randomness(DomainTag.SealRandomness, ticket_epoch, entropy)
        ticket_matches = chain_ticket == ticket
    chain_seed = b""
    if pc is not None and pc.seed_epoch <= head:
        chain_seed = yield Randomness(DomainTag.InteractiveSealChallengeSeed, pc.seed_epoch, entropy)
        if seed:
            seed_matches = chain_seed == seed
    if proof and pc is not None and chain_seed:
        proof_valid = yield Verify(dict(seal_proof=core.sectors[number].seal_proof, miner=miner,
                                        sector=number, ticket=chain_ticket, seed=chain_seed,
                                        comm_d=pc.comm_d, comm_r=pc.comm_r, proof=proof))
    return ChainFacts(head=head, precommit=fact, on_chain=view is not None,
                      activation=view.activation if view is not None else -1,
                      precommit_msg=(yield from _message_fact(precommit_msg)),
                      commit_msg=(yield from _message_fact(commit_msg)),
                      ticket_matches=ticket_matches, seed_matches=seed_matches,
                      proof_valid=proof_valid)


def _message_fact(msg_id: str):
    if not msg_id:
        return MessageFact()
    look = yield Lookup(msg_id)
    if look.status == "landed":
        r = look.receipt
        return MessageFact(status="landed", exit_code=r.exit_code, error=r.error)
    return MessageFact(status=look.status)


# ---- faults ---------------------------------------------------------------------------------
def fault_change(core: SealingCore, number: int, faulty: bool) -> E.Event | None:
    """The event when the chain's fault flag of a watched sector differs from its state."""
    s = core.sectors.get(number)
    if s is None:
        return None
    if faulty and s.state in (S.PROVING, S.FAULTY):
        return core.event(E.FaultReported, number)
    if not faulty and s.state == S.FAULT_REPORTED:
        return core.event(E.FaultRecovered, number)
    return None


# ---- a task's result --------------------------------------------------------------------------
def task_done(core: SealingCore, cmd: C.RunTask, work_id: str, r) -> E.Event:
    """The event of a task's decoded result `r` (nodes.wire.params); RunUnseal's data is
    written to cmd.out by the shell first."""
    if isinstance(cmd, C.RunAddPiece):
        return _event(core, E.PieceAdded, cmd, work_id=work_id, comm_p=r.comm_p,
                      payload_size=r.payload_size, padded_size=r.padded_size, offset=r.offset)
    if isinstance(cmd, C.RunPreCommit1):
        return _event(core, E.PreCommit1Done, cmd, work_id=work_id, comm_d=r.comm_d,
                      replica_id=r.replica_id)
    if isinstance(cmd, C.RunPreCommit2):
        return _event(core, E.PreCommit2Done, cmd, work_id=work_id, comm_d=r.comm_d, comm_r=r.comm_r)
    if isinstance(cmd, C.RunCommit1):
        return _event(core, E.Commit1Done, cmd, work_id=work_id, proof=r.proof)
    if isinstance(cmd, C.RunFinalize):
        return _event(core, E.Finalized, cmd, work_id=work_id)
    if isinstance(cmd, C.RunUnseal):
        return _event(core, E.UnsealDone, cmd, work_id=work_id, size=len(r.data))
    if isinstance(cmd, C.RunReplicaUpdate):
        return _event(core, E.ReplicaUpdated, cmd, work_id=work_id, comm_r_new=r.comm_r_new,
                      comm_d_new=r.comm_d_new)
    if isinstance(cmd, C.RunProveReplicaUpdate):
        return _event(core, E.ReplicaUpdateProven, cmd, work_id=work_id, proof=r.proof)
    if isinstance(cmd, C.RunFinalizeReplicaUpdate):
        kind = E.UpgradeAborted if cmd.drop_update else E.SectorKeyReleased if cmd.release_key else E.Finalized
        return _event(core, kind, cmd, work_id=work_id)
    raise AssertionError(f"no result mapping for {type(cmd).__name__}")
