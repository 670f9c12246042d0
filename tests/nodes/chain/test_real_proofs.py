"""The chain's actor with the real verifiers: sectors sealed by proofs/ are pre-committed,
proven and WindowPoSted with the randomness the chain draws."""
import msgspec

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain import miner as actor
from zqnode.nodes.chain.randomness import DomainTag, address_entropy
from zqnode.nodes.chain.testing import ChainDriver
from zqnode.nodes.chain.verifiers import proofs_verifiers
from zqnode.proofs import cid, post, seal


def seal_on_chain(d: ChainDriver, miner: int, number: int, tmp_path) -> str:
    """Seal a CC sector against the chain's ticket and seed; returns its directory."""
    chain, entropy = d.chain, address_entropy(miner)
    d.run_to(max(d.epoch, d.policy.seal_randomness_lookback))
    ticket_epoch = d.epoch + 1 - d.policy.seal_randomness_lookback
    ticket = chain.randomness(DomainTag.SealRandomness, ticket_epoch, entropy)
    sector_dir = str(tmp_path / f"s-{number}")
    seal.precommit1(sector_dir, ticket, seal_proof=5, miner=miner, sector=number)
    out = seal.precommit2(sector_dir)
    r = d.receipt_after(d.send(miner, M.PreCommitSectorParams(
        sector_number=number, seal_proof=5, sealed_cid=cid.sealed_cid(out.comm_r),
        unsealed_cid=cid.piece_cid_v1(out.comm_d), seal_rand_epoch=ticket_epoch)))
    assert r.exit_code == 0, r.error
    pc = chain.precommit(miner, number)
    d.run_to(pc.seed_epoch)
    seed = chain.randomness(DomainTag.InteractiveSealChallengeSeed, pc.seed_epoch, entropy)
    proof = seal.commit1(sector_dir, seed).proof
    r = d.receipt_after(d.send(miner, M.ProveCommitSectorParams(sector_number=number, proof=proof)))
    assert r.exit_code == 0, r.error
    return sector_dir


def test_real_seals_and_a_real_window_post_are_accepted(tmp_path):
    d = ChainDriver(verifiers=proofs_verifiers())
    miner = 1000
    dirs = {n: seal_on_chain(d, miner, n, tmp_path) for n in (1, 2)}
    where = {n: msgspec.structs.asdict(d.chain.sector(miner, n)) for n in dirs}
    deadline = where[1]["deadline"]
    assert where[2]["deadline"] == deadline and where[1]["partition"] == where[2]["partition"] == 0

    d.run_to_open(miner, deadline)
    di = d.chain.deadline(miner, d.epoch + 1)
    raw = d.chain.randomness(DomainTag.WindowedPoStChallengeSeed, di.challenge, address_entropy(miner))
    result = post.generate_window_post(5, post.canonical_randomness(raw),
                                       [post.SectorRef(n, dirs[n]) for n in sorted(dirs)])
    assert result.skipped == [] and len(result.partitions) == 1
    good = d.post_params(miner, [0], proof_for={0: result.partitions[0].proof})
    bad = d.post_params(miner, [0], proof_for={0: b"\x00" + result.partitions[0].proof[1:]})

    r = d.receipt_after(d.send(miner, bad))
    assert r.exit_code != 0 and "invalid PoSt proof" in r.error
    r = d.receipt_after(d.send(miner, good))
    assert r.exit_code == 0, r.error
    assert actor.power(d.chain.miner(miner)) == 2 * 2048
