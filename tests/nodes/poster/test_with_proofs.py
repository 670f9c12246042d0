"""The local prover and the sector check on real sealed 2 KiB sectors (proofs.seal and
proofs.post). Skipped where proofs.post is not there yet."""
import shutil

import pytest

post = pytest.importorskip("proofs.post")
seal = pytest.importorskip("proofs.seal")

from nodes.poster.checker import StorageLocator, check_sector_files  # noqa: E402
from nodes.poster.events import SkippedSector  # noqa: E402
from nodes.poster.prover import LocalProver, PartitionInput, ProveRequest, SectorInput  # noqa: E402

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
        PartitionInput(index=0, sectors=[*inputs(sectors, [1]),
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
