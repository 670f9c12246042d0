"""Synthetic PoRep (seal proofs 10..14, FIP-0059): PC2 proves every synthetic challenge and
drops the layers; C1 takes the seed's selection from those proofs; it verifies, and a
damaged proofs file fails it."""
import msgspec
import numpy as np
import pytest
from click.testing import CliRunner

from zqnode.nodes.cli import main
from zqnode.proofs import porep, seal
from zqnode.proofs.sdr.labels import layer_path
from zqnode.proofs.sector import SYNTH_PROOFS, SectorError, cache_dir, cache_file, load_meta

SYNTH_2K = 10                               # StackedDrg2KiBV1_1_Feat_SyntheticPoRep
SEED = bytes([9]) * 32
TICKET = bytes([4]) * 32


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, parent_cache):
    sector = tmp_path_factory.mktemp("synth") / "s"
    seal.add_piece(sector, bytes(range(256)) * 7, seal_proof=SYNTH_2K, miner=1000, sector=3)
    seal.precommit1(sector, TICKET, parent_cache_dir=parent_cache, backend="cpu")
    pc2 = seal.precommit2(sector, backend="cpu")
    return sector, pc2


def _verify(pc2, proof: bytes, seed=SEED) -> bool:
    return porep.verify_seal(seal_proof=SYNTH_2K, miner=1000, sector=3, ticket=TICKET, seed=seed,
                             comm_d=pc2.comm_d, comm_r=pc2.comm_r, proof=proof)


def test_pc2_proves_the_synthetic_challenges_and_drops_the_layers(synthetic, copy_sector):
    sector, pc2 = synthetic
    assert cache_file(sector, SYNTH_PROOFS).stat().st_size > 64 * 1000      # 64 challenges' openings
    assert not layer_path(cache_dir(sector), 1).exists() and not layer_path(cache_dir(sector), 2).exists()
    copy = copy_sector(sector)
    assert seal.precommit2(copy, backend="cpu") == pc2                  # a rerun returns the record
    cache_file(copy, SYNTH_PROOFS).unlink()
    with pytest.raises(SectorError, match="PreCommit1 must run again"):
        seal.precommit2(copy, backend="cpu")


def test_commit1_from_the_synthetic_proofs_verifies(synthetic, copy_sector):
    sector, pc2 = synthetic
    copy = copy_sector(sector)
    c1 = seal.commit1(copy, SEED, backend="cpu")
    assert _verify(pc2, c1.proof)
    assert not _verify(pc2, c1.proof, seed=bytes([8]) * 32)       # another seed picks others
    other = seal.commit1(copy, bytes([8]) * 32, backend="cpu")
    assert other.challenges != c1.challenges and _verify(pc2, other.proof, seed=bytes([8]) * 32)


def test_a_damaged_synthetic_proofs_file_fails_commit1(synthetic, copy_sector):
    sector = copy_sector(synthetic[0])
    path = cache_file(sector, SYNTH_PROOFS)
    data = path.read_bytes()
    header = 16 + 8 * 65                                  # magic, count, 65 offsets
    offsets = np.frombuffer(data, "<u8", 65, 16).tolist()
    records = [msgspec.msgpack.decode(data[header + a:header + b]) for a, b in zip(offsets, offsets[1:])]
    for record in records:                                # one bit of every data leaf
        record[1] = bytes([record[1][0] ^ 1]) + record[1][1:]
    path.write_bytes(data[:header] + b"".join(msgspec.msgpack.encode(r) for r in records))
    with pytest.raises(SectorError, match="does not verify"):
        seal.commit1(sector, SEED, backend="cpu")
    path.write_bytes(data[:header] + bytes(len(data) - header))
    with pytest.raises(SectorError, match="corrupt"):
        seal.commit1(sector, SEED, backend="cpu")
    huge = np.full(65, 1 << 40, "<u8")                    # records claiming a TiB each
    huge[0] = 0
    path.write_bytes(data[:16] + huge.tobytes() + data[header:])
    with pytest.raises(SectorError, match="corrupt.*offsets do not fit"):
        seal.commit1(sector, SEED, backend="cpu")
    path.unlink()
    with pytest.raises(SectorError, match="synthetic proofs are missing"):
        seal.commit1(sector, SEED, backend="cpu")


def test_unseal_relabels_and_finalize_drops_the_proofs(synthetic, copy_sector, tmp_path, parent_cache):
    sector = copy_sector(synthetic[0])
    assert seal.unseal(sector, tmp_path / "piece", piece=0, parent_cache_dir=parent_cache) == 1792
    assert (tmp_path / "piece").read_bytes() == bytes(range(256)) * 7
    removed = seal.finalize(sector)
    assert f"cache/{SYNTH_PROOFS}" in removed and load_meta(sector).stage == "finalized"


def test_proofs_seal_runs_a_synthetic_proof(tmp_path, parent_cache):
    result = CliRunner().invoke(main, [
        "proofs", "seal", "--seal-proof", "StackedDrg2KiBV1_1_Feat_SyntheticPoRep", "--miner", "1000",
        "--sector", "3", "--ticket", TICKET.hex(), "--seed", SEED.hex(), "--out", str(tmp_path / "s"),
        "--parent-cache", str(parent_cache), "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert '"seal_proof": "StackedDrg2KiBV1_1_Feat_SyntheticPoRep"' in result.output
    assert (tmp_path / "s" / "commit1.proof").exists()
