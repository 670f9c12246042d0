"""The devnet chain for simulations: nodes.chain.core.Chain with two costs taken out, and
the sectors a miner is already proving at the start.

The real core copies the whole miner state (msgpack out and in) around every message,
so a failing method leaves no trace, and encodes the whole state after every epoch so a
reorg can go back up to the policy's finality (900 epochs on mainnet). With 10,000
sectors that is ~7.5 ms per message and 2.6 MB per epoch kept (2.4 GB for mainnet's
finality). SimChain runs the same actor methods, with an undo record of just what each
method may change (restored when it fails), and keeps the states of the last
`keep_states` epochs only (reorgs up to that depth). tests/tools/test_sim_chain.py runs
the same messages, failing ones included, through both and compares states and receipts.
"""
from __future__ import annotations

import hashlib

import msgspec

from zqnode.nodes.chain import miner as actor
from zqnode.nodes.chain.core import Chain, Genesis, MinerSpec, ReorgError, Verifiers, failed_receipt
from zqnode.nodes.chain.funds import FIL
from zqnode.nodes.chain.messages import ExitCode, Receipt
from zqnode.nodes.chain.randomness import RandomnessError
from zqnode.proofs import cid as cids

_enc = msgspec.msgpack.Encoder()
_FUNDS = ("balance", "precommit_deposits", "initial_pledge", "locked_funds", "fee_debt", "burnt")
_deadline_dec = msgspec.msgpack.Decoder(actor.Deadline)
_miner_dec = msgspec.msgpack.Decoder(actor.MinerState)


def _copy_deadline(d: actor.Deadline) -> actor.Deadline:
    return _deadline_dec.decode(_enc.encode(d))


def _undo_for(m: actor.MinerState, method: str, params):
    """A function restoring what `method` may have changed in `m` before it failed."""
    pol_deadlines = len(m.deadlines)
    if method == "PreCommitSector":
        n = params.sector_number
        had, pc = n in m.allocated, m.precommits.get(n)

        def undo():
            if not had:
                m.allocated.discard(n)
            if pc is None:
                m.precommits.pop(n, None)
            else:
                m.precommits[n] = pc
        return undo
    if method == "ProveCommitSector":
        n = params.sector_number
        pc, sector = m.precommits.get(n), m.sectors.get(n)
        shape = [(len(d.partitions), len(d.partitions[-1].sectors) if d.partitions else 0)
                 for d in m.deadlines]

        def undo():
            if pc is not None:
                m.precommits[n] = pc
            if sector is None:
                m.sectors.pop(n, None)
            else:
                m.sectors[n] = sector
            for d, (parts, last) in zip(m.deadlines, shape):     # _add_sector, undone
                if len(d.partitions) > parts:
                    del d.partitions[parts:]
                elif d.partitions and len(d.partitions[-1].sectors) > last:
                    p = d.partitions[-1]
                    p.sectors.remove(n)
                    p.unproven.discard(n)
        return undo
    if method in ("SubmitWindowedPoSt", "DeclareFaults", "DeclareFaultsRecovered"):
        if method == "SubmitWindowedPoSt":
            indexes = {params.deadline}
        else:
            decls = params.faults if method == "DeclareFaults" else params.recoveries
            indexes = {d.deadline for d in decls}
        indexes = {i for i in indexes if 0 <= i < pol_deadlines}
        saved = {i: _copy_deadline(m.deadlines[i]) for i in indexes}
        counters = (m.skipped_faults, m.detected_faults, m.penalties)

        def undo():
            for i, d in saved.items():
                m.deadlines[i] = d
            m.skipped_faults, m.detected_faults, m.penalties = counters
        return undo
    whole = _enc.encode(m)                     # anything else: the core's own way

    def undo():
        fresh = _miner_dec.decode(whole)
        for f in m.__struct_fields__:
            setattr(m, f, getattr(fresh, f))
    return undo


class SimChain(Chain):
    def __init__(self, genesis: Genesis, verifiers: Verifiers, *, keep_states: int = 0):
        self.keep_states = keep_states         # before Chain.__init__ appends genesis
        super().__init__(genesis, verifiers)

    def _append(self, ts) -> None:
        self._index(ts)
        if self.keep_states:
            self._states[ts.epoch] = _enc.encode(self.state)
            self._states.pop(ts.epoch - self.keep_states, None)

    def reorg(self, depth: int, timestamp: float):
        if isinstance(depth, int) and not isinstance(depth, bool) and depth >= self.keep_states:
            raise ReorgError(f"this simulated chain keeps {self.keep_states} states: reorgs up to "
                             f"depth {self.keep_states - 1}, got {depth}")
        return super().reorg(depth, timestamp)

    def _apply_method(self, to: int, miner, rt, method: str, params, commit: bool, value: int) -> Receipt:
        """The method on the state itself, undone when it fails (the core copies it)."""
        if not commit:
            return super()._apply_method(to, miner, rt, method, params, commit, value)
        undo = _undo_for(miner, method, params)
        funds = {f: getattr(miner, f) for f in _FUNDS}
        miner.balance += value
        try:
            ret = actor.METHOD_IMPLS[method](miner, rt, params)
        except (actor.ActorError, RandomnessError) as e:
            undo()
            for f, v in funds.items():
                setattr(miner, f, v)
            return failed_receipt(e)
        return Receipt(exit_code=ExitCode.OK, return_value=ret or b"")


def proving_comm_r(miner: int, number: int) -> bytes:
    """comm_r of a sector that was sealed before the simulation (a valid field element)."""
    digest = bytearray(hashlib.sha256(b"sim comm_r %d %d" % (miner, number)).digest())
    digest[31] &= 0x3F
    return bytes(digest)


def add_proving_sectors(chain: Chain, miner: int, count: int, comm_d: bytes) -> list[int]:
    """`count` sectors (numbers 1..count) that the miner has been proving for a while,
    placed in deadlines and partitions by the actor's own assignment (assign_deadlines, as
    for one batch of new sectors at the head epoch), already proven (not 'unproven').
    Returns the deadline index of each."""
    m = chain.miner(miner)
    if m.sectors or m.precommits:
        raise ValueError("add proving sectors before anything else happens to the miner")
    pol, epoch = chain.policy, chain.head.epoch
    period_start = actor.proving_deadline(m, pol, epoch).period_start
    counts = [(0, 0) if actor.deadline_is_mutable(pol, period_start, i, epoch) else None
              for i in range(pol.period_deadlines)]
    placed = actor.assign_deadlines(pol, m.partition_sectors, pol.partitions_per_deadline_max,
                                    counts, count)
    unsealed = cids.piece_cid_v1(comm_d)
    for number, dl in enumerate(placed, start=1):
        comm_r = proving_comm_r(miner, number)
        part = actor._add_sector(m.deadlines[dl], m.partition_sectors, number)
        m.sectors[number] = actor.SectorOnChain(
            number=number, seal_proof=m.seal_proof, sealed_cid=cids.sealed_cid(comm_r),
            unsealed_cid=unsealed, comm_r=comm_r, activation=max(epoch - pol.proving_period, 0),
            deadline=dl, partition=part)
        m.allocated.add(number)
    for d in m.deadlines:
        for p in d.partitions:
            p.unproven = set()
    return placed


SIM_BALANCE = 10 ** 6 * FIL       # the worker's: a simulation studies sealing, not running dry


def new_chain(network: str, seal_proof: int, verifiers: Verifiers, *, miner: int = 1000,
              worker: str = "t0100", seed: str = "zqnode-sim", keep_states: int = 0) -> SimChain:
    return SimChain(Genesis(network=network, seed=seed, balance=SIM_BALANCE,
                            miners=[MinerSpec(actor_id=miner, worker=worker, seal_proof=seal_proof)]),
                    verifiers, keep_states=keep_states)
