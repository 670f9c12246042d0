"""The local prover and the sector check on real sealed 2 KiB sectors (proofs.seal and
proofs.post). Skipped where proofs.post is not there yet."""
import shutil

import pytest

post = pytest.importorskip("zqnode.proofs.post", exc_type=ImportError)
seal = pytest.importorskip("zqnode.proofs.seal", exc_type=ImportError)

from zqnode.nodes.poster.checker import StorageLocator, check_sector_files  # noqa: E402
from zqnode.nodes.poster.events import SkippedSector  # noqa: E402
from zqnode.nodes.poster.prover import LocalProver, PartitionInput, ProveRequest, SectorInput  # noqa: E402

RAW = bytes([0xC7]) * 32                  # top bits of byte 31 set: the prover must mask them


@pytest.fixture(scope="module")
def sectors(tmp_path_factory):
    """Sectors 1 and 2 of f01000, sealed (2 KiB, seal proof 5): {number: (dir, comm_r)}."""
    base = tmp_path_factory.mktemp("storage")
    cache = tmp_path_factory.mktemp("parents")
    out = {}
    for n in (1, 2):
        d = base / f"s-t01000-{n}"
        seal.add_piece(d, bytes([n]) * 2032, seal_proof=5, miner=1000, sector=n, backend="cpu")
        seal.precommit1(d, bytes([9]) * 32, parent_cache_dir=cache, backend="cpu")
        out[n] = (str(d), seal.precommit2(d, backend="cpu").comm_r)
    return out


def inputs(sectors, numbers=(1, 2), path=None):
    return [SectorInput(number=n, comm_r=sectors[n][1], path=path or sectors[n][0]) for n in numbers]


async def test_local_prover_proves_a_partition_the_verifier_accepts(sectors):
    prover = LocalProver(mode="thread", backend="cpu", verify=True)
    (proof,) = await prover.prove(ProveRequest(miner=1000, seal_proof=5, randomness=RAW,
                                               partitions=[PartitionInput(index=4, sectors=inputs(sectors))]))
    assert (proof.index, proof.proven, proof.skipped) == (4, [1, 2], [])
    canonical = post.canonical_randomness(RAW)
    pairs = [(n, sectors[n][1]) for n in (1, 2)]
    assert post.verify_window_post(seal_proof=5, randomness=canonical, sectors=pairs, proof=proof.proof)
    assert not post.verify_window_post(seal_proof=5, randomness=bytes(32), sectors=pairs, proof=proof.proof)


async def test_local_prover_reports_a_sector_it_cannot_read(sectors, tmp_path):
    prover = LocalProver(mode="thread", backend="cpu")
    (proof,) = await prover.prove(ProveRequest(miner=1000, seal_proof=5, randomness=RAW, partitions=[
        PartitionInput(index=0, sectors=[
            *inputs(sectors, [1]),
            SectorInput(number=2, comm_r=sectors[2][1], path=str(tmp_path / "gone"))])]))
    assert proof.proof == b"" and proof.proven == [1]
    assert [s.number for s in proof.skipped] == [2] and isinstance(proof.skipped[0], SkippedSector)


def test_the_files_check_on_sealed_sectors(sectors, tmp_path):
    assert [check_sector_files(5, s) for s in inputs(sectors)] == ["", ""]
    wrong = SectorInput(number=1, comm_r=sectors[2][1], path=sectors[1][0])
    assert "comm_r" in check_sector_files(5, wrong)
    broken = tmp_path / "s-1"
    shutil.copytree(sectors[1][0], broken)
    with open(broken / "sealed", "r+b") as f:
        f.truncate(1024)
    assert check_sector_files(5, SectorInput(number=1, comm_r=sectors[1][1], path=str(broken))) == \
        f"sealed file {broken / 'sealed'} has 1024 bytes, expected 2048"
    (broken / "sealed").unlink()
    assert check_sector_files(5, SectorInput(number=1, comm_r=sectors[1][1], path=str(broken))) == \
        f"missing file {broken / 'sealed'}"


def test_the_locator_reads_the_sector_metadata_proofs_writes(sectors):
    root = str(sectors[1][0]).rsplit("/", 1)[0]
    loc = StorageLocator([root])
    assert (loc.locate(1000, 1), loc.locate(1000, 2)) == (sectors[1][0], sectors[2][0])


# -- end to end: a chain with the real verifier, the poster with the local prover ------------------

def seal_on_chain(d, number: int, storage) -> None:
    """A CC sector sealed against the chain's ticket and seed, pre-committed and proven."""
    from zqnode.nodes.chain import messages as M
    from zqnode.nodes.chain.randomness import DomainTag, address_entropy
    from zqnode.proofs import cid
    entropy = address_entropy(1000)
    d.run_to(max(d.epoch, d.policy.seal_randomness_lookback))
    ticket_epoch = d.epoch + 1 - d.policy.seal_randomness_lookback
    sector_dir = storage / f"s-t01000-{number}"
    seal.precommit1(sector_dir, d.chain.randomness(DomainTag.SealRandomness, ticket_epoch, entropy),
                    seal_proof=5, miner=1000, sector=number, backend="cpu")
    out = seal.precommit2(sector_dir, backend="cpu")
    r = d.receipt_after(d.send(1000, M.PreCommitSectorParams(
        sector_number=number, seal_proof=5, sealed_cid=cid.sealed_cid(out.comm_r),
        unsealed_cid=cid.piece_cid_v1(out.comm_d), seal_rand_epoch=ticket_epoch)))
    assert r.exit_code == 0, r.error
    seed_epoch = d.chain.precommit(1000, number).seed_epoch
    d.run_to(seed_epoch)
    seed_rand = d.chain.randomness(DomainTag.InteractiveSealChallengeSeed, seed_epoch, entropy)
    proof = seal.commit1(sector_dir, seed_rand, backend="cpu").proof
    r = d.receipt_after(d.send(1000, M.ProveCommitSectorParams(sector_number=number, proof=proof)))
    assert r.exit_code == 0, r.error


async def test_real_sectors_are_proven_on_a_chain_with_the_real_verifier(tmp_path):
    import trio

    from zqnode.bus.config import BusConfig
    from zqnode.bus.memory import MemoryHub
    from zqnode.nodes.chain.node import ChainConfig, ChainNode
    from zqnode.nodes.chain.testing import ChainDriver
    from zqnode.nodes.chain.verifiers import proofs_verifiers
    from zqnode.nodes.identity import NodeIdentity
    from zqnode.nodes.poster.config import PosterConfig, ProverConfig
    from zqnode.nodes.poster.node import PosterNode

    storage = tmp_path / "storage"
    d = ChainDriver(verifiers=proofs_verifiers())
    for n in (1, 2):
        seal_on_chain(d, n, storage)
    (index,) = {d.chain.sector(1000, n).deadline for n in (1, 2)}
    pol, di = d.policy, d.chain.deadline(1000)
    open_ = di.open + ((index - di.index) % pol.period_deadlines) * pol.challenge_window
    if open_ - pol.challenge_lookback - 2 <= d.epoch:
        open_ += pol.proving_period
    d.run_to(open_ - pol.challenge_lookback - 2)          # the poster sees the Challenge come

    async with trio.open_nursery() as nursery:
        bus = await nursery.start(MemoryHub(BusConfig(address="mem://real-post")).run)
        chain = ChainNode(NodeIdentity(name="chain-1", repo=str(tmp_path / "chain"),
                                     bus=BusConfig(address=bus)),
                          ChainConfig(verifier="proofs", epoch_seconds=0.1))
        chain.open()
        chain.chain = d.chain
        await nursery.start(chain.run)
        poster = PosterNode(NodeIdentity(name="poster-1", repo=str(tmp_path / "poster"),
                                       bus=BusConfig(address=bus)),
                            PosterConfig(storage=[str(storage)],
                                         prover=ProverConfig(kind="local", backend="cpu")))
        await nursery.start(poster.run)
        with trio.fail_after(30):
            while not (ended := poster.store.outcomes(1000, index)):
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    (outcome,) = ended
    assert (outcome.status, outcome.landed, outcome.skipped) == ("proven", [0], []), outcome.notes
    m = chain.chain.miner_view(1000)
    assert (m.active, m.penalties, m.detected_faults) == (2, 0, 0)
