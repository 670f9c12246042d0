"""SimChain (tools/sim/chain.py) against the real chain core: the same messages, failing
ones included, give the same states and receipts; reorgs within what it keeps agree too."""
from __future__ import annotations

import pathlib
import sys

import msgspec
import pytest

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.core import Chain, Genesis, MinerSpec
from zqnode.nodes.chain.testing import ChainDriver, comm_r_of
from zqnode.nodes.chain.verifiers import FAKE

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
from sim.chain import SimChain, add_proving_sectors

_enc = msgspec.msgpack.Encoder()


def pair(keep_states: int = 0) -> tuple[ChainDriver, ChainDriver]:
    real, sim = ChainDriver("devnet", seed="pair"), ChainDriver("devnet", seed="pair")
    sim.chain = SimChain(Genesis(network="devnet", seed="pair", miners=[MinerSpec()]), FAKE,
                         keep_states=keep_states)
    return real, sim


def same(real: ChainDriver, sim: ChainDriver) -> None:
    assert _enc.encode(sim.chain.state) == _enc.encode(real.chain.state)
    assert sim.chain.head.key == real.chain.head.key
    assert [t.receipts for t in sim.chain.tipsets] == [t.receipts for t in real.chain.tipsets]


def both(real, sim, fn) -> list:
    return [fn(real), fn(sim)]


def test_the_same_messages_give_the_same_states_and_receipts_failures_included():
    real, sim = pair()
    miner = 1000
    for d in (real, sim):
        d.run_to(d.policy.seal_randomness_lookback)
        d.send(miner, d.precommit_params(miner, 1))
        d.send(miner, d.precommit_params(miner, 2))
        d.send(miner, d.precommit_params(miner, 2))                # twice: fails
        d.send(miner, d.precommit_params(miner, 3, seal_rand_epoch=10 ** 6))   # a future ticket
        d.step()
    same(real, sim)
    codes = [r.exit_code for r in sim.chain.head.receipts]
    assert codes[:2] == [0, 0] and all(c != 0 for c in codes[2:])
    for d in (real, sim):
        d.run_to(d.chain.precommit(miner, 1).seed_epoch)
        d.send(miner, M.ProveCommitSectorParams(sector_number=1, proof=d.porep(miner, 1)))
        d.send(miner, M.ProveCommitSectorParams(sector_number=2, proof=b"not a proof"))
        d.send(miner, M.ProveCommitSectorParams(sector_number=9, proof=b"no precommit"))
        d.step()
    same(real, sim)
    assert [r.exit_code == 0 for r in sim.chain.head.receipts] == [True, False, False]
    for d in (real, sim):
        d.send(miner, M.ProveCommitSectorParams(sector_number=2, proof=d.porep(miner, 2)))
        d.step()
    same(real, sim)
    # WindowPoSt: a good proof, a bad one, faults and recoveries
    dl = sim.chain.sector(miner, 1).deadline
    for d in (real, sim):
        d.run_to_open(miner, dl)
        d.send(miner, d.post_params(miner, [0], proof_for={0: b"bad"}))
        d.send(miner, d.post_params(miner, [0]))
        d.send(miner, M.DeclareFaultsParams(faults=[M.SectorDeclaration(deadline=dl, partition=0,
                                                                        sectors=[1])]))
        d.step()
    same(real, sim)
    for d in (real, sim):
        d.send(miner, M.DeclareFaultsRecoveredParams(recoveries=[M.SectorDeclaration(
            deadline=(dl + 3) % d.policy.period_deadlines, partition=0, sectors=[1])]))
        d.step(2 * d.policy.proving_period)
    same(real, sim)
    assert sum(r.exit_code != 0 for t in sim.chain.tipsets for r in t.receipts) >= 5


def test_reorgs_within_the_kept_states_match_and_deeper_ones_are_refused():
    real, sim = pair(keep_states=4)
    for d in (real, sim):
        d.run_to(d.policy.seal_randomness_lookback)
        d.send(1000, d.precommit_params(1000, 1))
        d.step(2)
    for d in (real, sim):
        d.chain.reorg(3, 0.0)
    same(real, sim)
    assert sim.chain.precommit(1000, 1) is None and len(sim.chain.pool) == 1
    for d in (real, sim):
        d.step()
    same(real, sim)
    with pytest.raises(ValueError, match="keeps 4 states"):
        sim.chain.reorg(4, 0.0)


def test_proving_sectors_are_placed_by_the_actor_and_already_proven():
    chain = SimChain(Genesis(network="devnet", seed="p", miners=[MinerSpec()]), FAKE)
    chain.advance(chain.policy.proving_period + 1)
    placed = add_proving_sectors(chain, 1000, 5, comm_r_of(1000, 0))
    m = chain.miner(1000)
    assert sorted(m.sectors) == [1, 2, 3, 4, 5]
    assert all(m.sectors[n].deadline == dl for n, dl in zip(range(1, 6), placed))
    assert all(not p.unproven for d in m.deadlines for p in d.partitions)
    with pytest.raises(ValueError, match="before anything else"):
        add_proving_sectors(chain, 1000, 1, comm_r_of(1000, 0))
    assert isinstance(chain, Chain)
