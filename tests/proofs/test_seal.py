"""Sealing stages on a sector directory: the lotus-bench 2 KiB check values, piece
placement, unsealing, stage order and what a failure leaves behind."""
import io
import json
import os
import random

import numpy as np
import pytest

from zqnode.proofs import commp as commp_mod
from zqnode.proofs import fr32, seal
from zqnode.proofs.cid import piece_cid_v1, sealed_cid
from zqnode.proofs.porep import SealError
from zqnode.proofs.poseidon import P
from zqnode.proofs.sdr.labels import layer_path
from zqnode.proofs.sector import (P_AUX, TREE_C, TREE_D, TREE_R_LAST, SectorError, TreeShape,
                                  cache_file, load_meta, sealed_path, unsealed_path)

# PROOFS.md section 5: lotus-bench's `simple` seal of 2 KiB of zeros.
LOTUS_COMM_D = "baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy"
LOTUS_COMM_R = "bagboea4b5abcbrshxgmmpaucffwp2elaofbcrvb7hmcu3653o4lsw2arlor4hn3c"
LOTUS_REPLICA_ID = "2940faa406e4c6cbad015e2b08e76fd9e3b0e5b852cea7f8174c02ba33039a01"
LOTUS_COMM_C = "95dd0e3fd2b1226dfcff24b2c337b96a965aebea8fa2c3ed1a0470582191de0b"
LOTUS_COMM_R_LAST = "d75cfa6d30ece5e2d0354a1f855d7fb128e42e84a16a133278fd9ea8b72a8f15"


def test_lotus_bench_2kib_seal_of_zeros(tmp_path, seal_2k):
    sector_dir = tmp_path / "s"
    pc1, pc2 = seal_2k(sector_dir)           # no pieces: a CC sector of zeros
    assert pc1.replica_id.hex() == LOTUS_REPLICA_ID
    assert piece_cid_v1(pc1.comm_d) == LOTUS_COMM_D
    assert pc2.comm_c.hex() == LOTUS_COMM_C
    assert pc2.comm_r_last.hex() == LOTUS_COMM_R_LAST
    assert sealed_cid(pc2.comm_r) == LOTUS_COMM_R
    assert (pc2.comm_d_cid(), pc2.comm_r_cid()) == (LOTUS_COMM_D, LOTUS_COMM_R)
    assert pc1.backend == pc2.backend == "cpu"

    meta = load_meta(sector_dir)
    assert (meta.seal_proof, meta.miner, meta.sector, meta.sector_size) == (5, 1000, 1, 2048)
    assert (meta.ticket, meta.comm_d, meta.replica_id, meta.comm_r) == (
        "00" * 32, pc1.comm_d.hex(), LOTUS_REPLICA_ID, pc2.comm_r.hex())
    assert meta.stage == "pc2" and meta.pieces == []
    # Lotus's p_aux: comm_c || comm_r_last. 2 KiB tree-r-last keeps only its root.
    assert cache_file(sector_dir, P_AUX).read_bytes() == pc2.comm_c + pc2.comm_r_last
    assert cache_file(sector_dir, TREE_R_LAST).read_bytes() == pc2.comm_r_last
    assert cache_file(sector_dir, TREE_D).stat().st_size == (2 * 64 - 1) * 32
    assert cache_file(sector_dir, TREE_C).stat().st_size == (64 + 8 + 1) * 32
    assert unsealed_path(sector_dir).read_bytes() == bytes(2048)


def test_seal_sector_runs_every_stage_into_a_new_directory(tmp_path, parent_cache):
    said = []
    out = tmp_path / "deep" / "s"
    steps = seal.seal_steps(5, data=False, seed=bytes(32), then_finalize=True)
    sealed = seal.seal_sector(out, bytes(32), seal_proof=5, miner=1000, sector=1, seed=bytes(32),
                              then_finalize=True, parent_cache_dir=parent_cache, backend="cpu",
                              progress=said.append)
    assert sealed.sector_dir == out and sealed.pieces == []
    assert (sealed.pc2.comm_d_cid(), sealed.pc2.comm_r_cid()) == (LOTUS_COMM_D, LOTUS_COMM_R)
    assert sealed.proof_file == out / "commit1.proof"
    assert sealed.proof_file.read_bytes() == sealed.c1.proof
    assert load_meta(out).stage == "finalized"
    assert len(said) == steps == 7 and said[-2:] == [
        "C1 proof verified: True", "FIN: layers, tree-c, tree-d and the unsealed copy dropped"]
    assert os.listdir(out.parent) == ["s"]


def test_seal_sector_leaves_nothing_when_the_proof_does_not_verify(tmp_path, parent_cache,
                                                                  monkeypatch):
    monkeypatch.setattr(seal.porep, "verify_seal", lambda **kwargs: False)
    with pytest.raises(SectorError, match="does not verify"):
        seal.seal_sector(tmp_path / "s", bytes(32), seal_proof=5, miner=1000, sector=1,
                         seed=bytes(32), parent_cache_dir=parent_cache, backend="cpu")
    assert os.listdir(tmp_path) == []


def test_tree_shapes_follow_rows_to_discard():
    # Stored tree-r-last levels start above the discarded rows (rust-fil-proofs
    # default_rows_to_discard); 32 GiB re-reads a 512-leaf segment: 64 + 8 + 1 hashes.
    assert TreeShape.of(5).kept_from == 2                 # 2 KiB: only the root
    assert TreeShape.of(6).kept_from == 3                 # 8 MiB
    big = TreeShape.of("StackedDrg32GiBV1_1")
    assert big.kept_from == 3 and len(big.arities) == 10
    assert 8 ** big.kept_from == 512 and sum(8 ** k for k in range(big.kept_from)) == 73
    assert TreeShape.of(9).arities[-1] == 2               # 64 GiB: an arity-2 top


def test_add_piece_aligns_pieces_with_zero_fillers(tmp_path):
    rng = random.Random(5)
    small, large = rng.randbytes(100), rng.randbytes(600)
    sector_dir = tmp_path / "s"
    first = seal.add_piece(sector_dir, small, seal_proof=5, miner=1000, sector=9)
    second = seal.add_piece(sector_dir, io.BytesIO(large), size=len(large))
    assert (first.offset, first.padded_size, first.payload_size) == (0, 128, 100)
    assert (second.offset, second.padded_size, second.payload_size) == (1024, 1024, 600)
    assert first.comm_p == commp_mod.commp(small).commitment
    assert second.cid() == commp_mod.commp(large).cid()
    assert second.cid_v2() == commp_mod.commp(large).cid_v2()

    unsealed = unsealed_path(sector_dir).read_bytes()
    assert len(unsealed) == 2048
    assert unsealed[:128] == fr32.pad(small).ljust(128, b"\0")
    assert unsealed[128:1024] == bytes(896)               # zero filler pieces
    assert unsealed[1024:2048] == fr32.pad(large).ljust(1024, b"\0")
    meta = load_meta(sector_dir)
    assert [(p.offset, p.padded_size, p.payload_size, p.comm_p) for p in meta.pieces] == [
        (0, 128, 100, first.comm_p.hex()), (1024, 1024, 600, second.comm_p.hex())]

    pc1 = seal.precommit1(sector_dir, bytes(32), parent_cache_dir=tmp_path / "pc", backend="cpu")
    assert pc1.comm_d == commp_mod.commd([(128, first.comm_p), (1024, second.comm_p)], 2048)


def test_add_piece_refusals_change_nothing(tmp_path):
    sector_dir = tmp_path / "s"
    seal.add_piece(sector_dir, bytes(range(200)), seal_proof=5, miner=1000, sector=1)
    before = (unsealed_path(sector_dir).read_bytes(), load_meta(sector_dir))
    with pytest.raises(commp_mod.PayloadTooSmall, match="at least 65"):
        seal.add_piece(sector_dir, bytes(64))
    with pytest.raises(commp_mod.PiecesDoNotFit, match="does not fit"):
        seal.add_piece(sector_dir, bytes(1500))           # 2048 padded after a 256 piece
    with pytest.raises(SealError, match="needs its size"):
        seal.add_piece(sector_dir, io.BytesIO(bytes(100)))
    with pytest.raises(SealError, match="expected 300"):
        seal.add_piece(sector_dir, io.BytesIO(bytes(100)), size=300)   # a short stream
    with pytest.raises(SealError, match="more than the 100 bytes"):
        seal.add_piece(sector_dir, io.BytesIO(bytes(range(256)) * 7), size=100)   # a long one
    with pytest.raises(SectorError, match="sector 1, not 2"):
        seal.add_piece(sector_dir, bytes(100), sector=2)
    assert (unsealed_path(sector_dir).read_bytes(), load_meta(sector_dir)) == before


def test_first_piece_needs_the_ids(tmp_path):
    with pytest.raises(SectorError, match="seal_proof, miner, sector"):
        seal.add_piece(tmp_path / "s", bytes(100))
    with pytest.raises(SealError, match="unknown registered seal proof"):
        seal.add_piece(tmp_path / "s", bytes(100), seal_proof=99, miner=1, sector=1)
    assert not (tmp_path / "s").exists()


def test_unseal_gives_back_random_data(tmp_path, seal_2k, parent_cache):
    data = random.Random(11).randbytes(2032)
    sector_dir = tmp_path / "s"
    seal_2k(sector_dir, data, sector=4, ticket=bytes([3]) * 32)
    assert sealed_path(sector_dir).read_bytes() != unsealed_path(sector_dir).read_bytes()
    assert seal.unseal(sector_dir, tmp_path / "out", backend="cpu") == 2032
    assert (tmp_path / "out").read_bytes() == data
    # After finalize the layers are gone: unseal recomputes them.
    seal.finalize(sector_dir)
    assert seal.unseal(sector_dir, tmp_path / "again", parent_cache_dir=parent_cache) == 2032
    assert (tmp_path / "again").read_bytes() == data
    assert [p.name for p in sector_dir.iterdir() if p.name.startswith(".")] == []


def test_unseal_one_piece(tmp_path, seal_2k):
    sector_dir = tmp_path / "s"
    seal.add_piece(sector_dir, b"a" * 100, seal_proof=5, miner=1000, sector=1)
    seal.add_piece(sector_dir, b"b" * 700)
    seal_2k(sector_dir)
    assert seal.unseal(sector_dir, tmp_path / "p1", piece=1) == 700
    assert (tmp_path / "p1").read_bytes() == b"b" * 700
    # In chunks of 8 nodes (a 256-byte budget for a 2 KiB sector), the same bytes.
    assert seal.unseal(sector_dir, tmp_path / "c1", piece=1, chunk_bytes=256) == 700
    assert (tmp_path / "c1").read_bytes() == b"b" * 700
    assert seal.unseal(sector_dir, tmp_path / "c", chunk_bytes=256) == 2032
    assert (tmp_path / "c").read_bytes() == fr32.unpad(unsealed_path(sector_dir).read_bytes())
    with pytest.raises(SectorError, match="no piece 2"):
        seal.unseal(sector_dir, tmp_path / "p2", piece=2)


@pytest.mark.parametrize("change", [
    {"sector_size": 1 << 50},                                  # a size its proof does not have
    {"seal_proof": 99},
    {"pieces": [{"offset": 1024, "padded_size": 2048, "payload_size": 10, "comm_p": "00" * 32}]},
    {"pieces": [{"offset": -128, "padded_size": 128, "payload_size": 10, "comm_p": "00" * 32}]},
    {"pieces": [{"offset": 0, "padded_size": 128, "payload_size": 128, "comm_p": "00" * 32}]},
])
def test_a_sector_json_whose_sizes_do_not_fit_is_corrupt(sealed_sectors, copy_sector, tmp_path, change):
    # sector.json may come from another worker: no stage trusts a size it did not check
    sector_dir = copy_sector(sealed_sectors[1]["dir"])
    meta = json.loads((sector_dir / "sector.json").read_text())
    (sector_dir / "sector.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(SectorError, match="corrupt"):
        seal.unseal(sector_dir, tmp_path / "out", piece=0 if "pieces" in change else None)
    assert not (tmp_path / "out").exists()


def test_unseal_of_a_corrupt_replica_writes_nothing(sealed_sectors, copy_sector, tmp_path):
    sector_dir = copy_sector(sealed_sectors[1]["dir"])
    with open(sealed_path(sector_dir), "r+b") as f:
        f.seek(64)
        f.write(b"\x01")
    with pytest.raises(SectorError, match="does not hash to comm_d"):
        seal.unseal(sector_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_finalize_keeps_what_post_needs(sealed_sectors, copy_sector):
    sector_dir = copy_sector(sealed_sectors[2]["dir"])
    (sector_dir / ".unseal-killed").mkdir()                   # a killed unseal's relabelled layers
    (sector_dir / ".unseal-killed" / "sc-02-data-layer-1.dat").write_bytes(bytes(2048))
    removed = seal.finalize(sector_dir)
    assert sorted(removed) == sorted(["cache/sc-02-data-layer-1.dat", "cache/sc-02-data-layer-2.dat",
                                      "cache/sc-02-data-tree-c.dat", "cache/sc-02-data-tree-d.dat",
                                      "unsealed", ".unseal-killed"])
    assert sorted(str(p.relative_to(sector_dir)) for p in sector_dir.rglob("*") if p.is_file()) == [
        "cache/p_aux", "cache/sc-02-data-tree-r-last.dat", "sealed", "sector.json"]
    assert load_meta(sector_dir).stage == "finalized"
    with pytest.raises(SectorError, match="finalize dropped the layers"):
        seal.commit1(sector_dir, bytes(32))


def test_finalize_refuses_when_what_it_keeps_is_broken(sealed_sectors, copy_sector):
    sector_dir = copy_sector(sealed_sectors[2]["dir"])
    cache_file(sector_dir, TREE_R_LAST).write_bytes(bytes(32))
    with pytest.raises(SectorError, match="tree-r-last's root"):
        seal.finalize(sector_dir)
    assert layer_path(sector_dir / "cache", 1).exists()
    assert load_meta(sector_dir).stage == "pc2"


def test_stages_run_in_order(tmp_path, sealed_sectors, copy_sector):
    sector_dir = tmp_path / "s"
    seal.add_piece(sector_dir, bytes(100), seal_proof=5, miner=1000, sector=1)
    with pytest.raises(SectorError, match="not ready for PreCommit2"):
        seal.precommit2(sector_dir)
    with pytest.raises(SectorError, match="not ready for Commit1"):
        seal.commit1(sector_dir, bytes(32))
    with pytest.raises(SectorError, match="not sealed yet"):
        seal.finalize(sector_dir)
    with pytest.raises(SealError, match="ticket must be 32 bytes, got 31"):
        seal.precommit1(sector_dir, bytes(31))
    done = copy_sector(sealed_sectors[1]["dir"])
    with pytest.raises(SectorError, match="past AddPiece"):
        seal.add_piece(done, bytes(100))
    with pytest.raises(SealError, match="seed must be 32 bytes"):
        seal.commit1(done, None)
    seal.finalize(done)
    with pytest.raises(SectorError, match="sector 1 is finalized: PreCommit1 cannot run on it again"):
        seal.precommit1(done, bytes(32))


def test_precommit1_refuses_an_unsealed_file_that_lost_its_pieces(tmp_path, parent_cache):
    sector_dir = tmp_path / "s"
    seal.add_piece(sector_dir, bytes(range(256)) * 4, seal_proof=5, miner=1000, sector=1)
    with open(unsealed_path(sector_dir), "r+b") as f:
        f.seek(2000)
        f.write(b"\x05")                                   # inside the zero filler
    with pytest.raises(SectorError, match="does not hold the recorded pieces"):
        seal.precommit1(sector_dir, bytes(32), parent_cache_dir=parent_cache)
    assert load_meta(sector_dir).replica_id == ""


def test_precommit1_again_with_another_ticket_relabels(tmp_path, seal_2k, parent_cache):
    again = tmp_path / "again"
    seal.precommit1(again, bytes([1]) * 32, seal_proof=5, miner=1000, sector=1,
                    parent_cache_dir=parent_cache)
    pc1 = seal.precommit1(again, bytes([2]) * 32, parent_cache_dir=parent_cache)
    fresh = tmp_path / "fresh"
    seal_2k(fresh, ticket=bytes([2]) * 32)
    assert load_meta(again).replica_id == load_meta(fresh).replica_id == pc1.replica_id.hex()
    for layer in (1, 2):
        assert layer_path(again / "cache", layer).read_bytes() == \
            layer_path(fresh / "cache", layer).read_bytes()


def test_a_new_ticket_after_precommit2_seals_the_replica_again(sealed_sectors, copy_sector,
                                                               seal_2k, parent_cache, tmp_path):
    # the ticket expired after PC2: PC1 with a new one drops the old replica and its
    # layers and trees, keeps the piece, and seals what a fresh sector with it would
    old = sealed_sectors[1]
    sector_dir = copy_sector(old["dir"])
    stamp = unsealed_path(sector_dir).stat().st_mtime_ns
    new_ticket = bytes([8]) * 32
    seal.precommit1(sector_dir, new_ticket, parent_cache_dir=parent_cache)
    meta = load_meta(sector_dir)
    assert (meta.stage, meta.ticket, meta.comm_r) == ("pc1", new_ticket.hex(), "")
    assert meta.pieces == load_meta(old["dir"]).pieces
    assert unsealed_path(sector_dir).stat().st_mtime_ns == stamp
    assert not sealed_path(sector_dir).exists() and not cache_file(sector_dir, P_AUX).exists()
    assert not cache_file(sector_dir, TREE_R_LAST).exists()
    pc2 = seal.precommit2(sector_dir)
    _, fresh = seal_2k(tmp_path / "fresh", old["data"], ticket=new_ticket)
    assert pc2.comm_r == fresh.comm_r != old["pc2"].comm_r and pc2.comm_d == old["pc2"].comm_d


def test_replica_is_data_plus_last_layer(sealed_sectors):
    sector_dir = sealed_sectors[3]["dir"]
    data = np.frombuffer(unsealed_path(sector_dir).read_bytes(), np.uint8).reshape(-1, 32)
    key = np.frombuffer(layer_path(sector_dir / "cache", 2).read_bytes(), np.uint8).reshape(-1, 32)
    replica = sealed_path(sector_dir).read_bytes()
    for v in (0, 1, 31, 63):
        expected = (int.from_bytes(data[v], "little") + int.from_bytes(key[v], "little")) % P
        assert replica[32 * v:32 * v + 32] == expected.to_bytes(32, "little")


def test_files_are_written_with_the_umask_mode(sealed_sectors):
    umask = os.umask(0)
    os.umask(umask)
    for path in (sealed_path(sealed_sectors[1]["dir"]), cache_file(sealed_sectors[1]["dir"], P_AUX)):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_add_piece_of_whole_commp_chunks_into_an_8mib_sector(tmp_path):
    # Over 1 MiB of payload: CommP pads whole 127 * 8192-byte chunks as 2-D arrays.
    data = random.Random(12).randbytes(127 * 8192 + 5)
    sector_dir = tmp_path / "s"
    info = seal.add_piece(sector_dir, data, seal_proof=6, miner=1000, sector=1, backend="cpu")
    assert (info.offset, info.padded_size) == (0, 2 << 20)
    assert info.comm_p == commp_mod.commp(data).commitment
    with open(unsealed_path(sector_dir), "rb") as f:
        assert f.read(2 << 20) == fr32.pad(data).ljust(2 << 20, b"\0")
        assert f.read() == bytes(6 << 20)
